//! jetsam patch (VENDORED.md): the switch and counters of the idle-tick shortcut, per thread
//! (a simulation runs on one thread). A test turns the shortcut off to show a run's history
//! is the same either way, and reads the counters to show the shortcut did run.

use std::cell::Cell;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(true) };
    static SKIPPED: Cell<u64> = const { Cell::new(0) };
    static RAN: Cell<u64> = const { Cell::new(0) };
}

/// Turns the shortcut on (the default) or off for simulations on this thread.
pub fn set_enabled(enabled: bool) {
    ENABLED.with(|cell| cell.set(enabled));
}

/// Whether the shortcut is on for this thread.
pub fn enabled() -> bool {
    ENABLED.with(Cell::get)
}

/// Runtime ticks on this thread so far: (applied without running, run).
pub fn ticks() -> (u64, u64) {
    (SKIPPED.with(Cell::get), RAN.with(Cell::get))
}

pub(crate) fn count(skipped: bool) {
    let counter = if skipped { &SKIPPED } else { &RAN };
    counter.with(|cell| cell.set(cell.get() + 1));
}
