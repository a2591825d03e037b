//! The harness's network faults, pause and process faults, exercised with a minimal
//! request/reply design over turmoil TCP: a client publishes each message with a timeout,
//! a server applies it and replies.

mod echo;
mod faults;
mod machines;
mod roles;
