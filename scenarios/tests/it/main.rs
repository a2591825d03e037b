//! The scenario suites: one integration-test binary, modules by topic.

mod bundled;
mod cli;
mod compare;
mod config_keys;
mod db;
mod determinism;
mod explain;
mod explore;
mod idle_ticks;
mod interop;
mod machines;
mod nsq;
mod reports;
mod schema_doc;
mod shrink;
mod tick;

use std::path::PathBuf;

/// The workspace root (scenario paths in files and commands are relative to it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every bundled scenario, relative to the root.
pub fn bundled() -> Vec<String> {
    let root = root();
    scenarios::scenario_files(&root.join("scenarios"))
        .unwrap()
        .into_iter()
        .map(|p| p.strip_prefix(&root).unwrap().to_string_lossy().into_owned())
        .collect()
}

pub fn load(path: &str) -> scenarios::Loaded {
    let full = root().join(path);
    let mut loaded = scenarios::Loaded::load(full.to_str().unwrap()).unwrap_or_else(|e| panic!("{e}"));
    loaded.scenario.path = path.to_string();
    loaded
}

pub fn jetsam() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_jetsam"));
    command.current_dir(root());
    command
}
