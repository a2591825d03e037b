//! A model's panic is a crash verdict, not a crash of jetsam: the first panic of a step is
//! kept with its location, and the run reports it.

use std::cell::{Cell, RefCell};
use std::panic::AssertUnwindSafe;

thread_local! {
    /// Set while this thread runs a simulation: panics are a verdict, not a crash of jetsam.
    static IN_RUN: Cell<bool> = const { Cell::new(false) };
    /// The first panic of the current run, with its location.
    static FIRST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once per process) a panic hook that, on a thread running a simulation, keeps the
/// first panic's message and location for the crash verdict instead of printing it. tokio
/// re-panics with its own message when a task panics, so the first one is the model's.
fn capture_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_RUN.with(Cell::get) {
                return previous(info);
            }
            FIRST_PANIC.with(|first| {
                let mut first = first.borrow_mut();
                if first.is_none() {
                    let location = info
                        .location()
                        .map(|l| format!(" at {}:{}", l.file(), l.line()))
                        .unwrap_or_default();
                    *first = Some(format!("{}{location}", payload_text(info.payload())));
                }
            });
        }));
    });
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-string panic payload)".to_string())
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let first = FIRST_PANIC.with(|first| first.borrow_mut().take());
    format!(
        "model panicked: {}",
        first.unwrap_or_else(|| payload_text(panic.as_ref()))
    )
}

/// Runs one turmoil step; a host's error or a model's panic comes back as the crash message.
pub(crate) fn step_catching_panics(sim: &mut turmoil::Sim<'_>) -> Option<String> {
    capture_panics();
    IN_RUN.with(|in_run| in_run.set(true));
    FIRST_PANIC.with(|first| first.borrow_mut().take());
    let step = std::panic::catch_unwind(AssertUnwindSafe(|| sim.step()));
    IN_RUN.with(|in_run| in_run.set(false));
    match step {
        Ok(Ok(_)) => None,
        Ok(Err(error)) => Some(format!("host software failed: {error}")),
        Err(panic) => Some(panic_message(&panic)),
    }
}
