//! Linux signal numbers on x86-64 and arm64 (signal(7)): the standard signals 1..=31 and the
//! real-time signals SIGRTMIN (34, since glibc keeps 32 and 33 for NPTL) to SIGRTMAX (64).

// A sans-I/O core: its functions stay within clippy.toml's too-many-lines-threshold.
#![deny(clippy::too_many_lines)]

use std::fmt;

pub const SIGUSR1: Signo = Signo(10);
pub const SIGUSR2: Signo = Signo(12);
pub const SIGKILL: Signo = Signo(9);
pub const SIGTERM: Signo = Signo(15);
pub const SIGSTOP: Signo = Signo(19);
/// What glibc's `SIGRTMIN` evaluates to on Linux (the kernel's is 32; NPTL takes two).
pub const SIGRTMIN: Signo = Signo(34);
pub const SIGRTMAX: Signo = Signo(64);
/// `_NSIG - 1`: the highest signal number; the pending set is one bit per number.
pub const SIGNO_MAX: u8 = 64;

/// A signal number, 1..=64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Signo(pub u8);

impl Signo {
    pub fn is_valid(self) -> bool {
        (1..=SIGNO_MAX).contains(&self.0)
    }

    /// signal(7): "Real-time signals are distinguished by the following: multiple instances
    /// of real-time signals can be queued" (the kernel's test is `sig >= SIGRTMIN`, 32).
    pub fn is_realtime(self) -> bool {
        self.0 >= 32
    }

    /// sigaction(2): "signum ... can be any valid signal except SIGKILL and SIGSTOP".
    pub fn can_be_caught(self) -> bool {
        self.is_valid() && self != SIGKILL && self != SIGSTOP
    }

    /// The bit of this signal in a pending or blocked set (`sigmask(sig)`: bit sig - 1).
    pub fn bit(self) -> u64 {
        assert!(self.is_valid(), "signal {} out of range", self.0);
        1u64 << (self.0 - 1)
    }

    /// Its slot in a per-signal table (sig - 1).
    pub fn index(self) -> usize {
        assert!(self.is_valid(), "signal {} out of range", self.0);
        usize::from(self.0 - 1)
    }
}

impl fmt::Display for Signo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            SIGKILL => "SIGKILL",
            SIGUSR1 => "SIGUSR1",
            SIGUSR2 => "SIGUSR2",
            SIGTERM => "SIGTERM",
            SIGSTOP => "SIGSTOP",
            _ => "",
        };
        match (name, self.0) {
            ("", n) if n == SIGRTMIN.0 => f.write_str("SIGRTMIN"),
            ("", n) if n > SIGRTMIN.0 => write!(f, "SIGRTMIN+{}", n - SIGRTMIN.0),
            ("", n) => write!(f, "signal {n}"),
            (name, _) => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_and_realtime_signals_and_their_names() {
        assert!(!SIGUSR1.is_realtime() && !SIGTERM.is_realtime());
        assert!(SIGRTMIN.is_realtime() && SIGRTMAX.is_realtime());
        assert_eq!(SIGUSR1.to_string(), "SIGUSR1");
        assert_eq!(Signo(36).to_string(), "SIGRTMIN+2");
        assert_eq!(SIGRTMIN.to_string(), "SIGRTMIN");
        assert_eq!(SIGRTMAX.bit(), 1 << 63);
        assert!(!SIGKILL.can_be_caught() && !SIGSTOP.can_be_caught());
        assert!(SIGTERM.can_be_caught() && !Signo(0).can_be_caught() && !Signo(65).can_be_caught());
    }
}
