//! Every TOML example in scenarios/README.md parses, and every fault action has one.

use super::root;
use sim::fault::{Topology, ACTION_NAMES};
use sim::scenario::Scenario;

fn toml_blocks() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("scenarios/README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_example_in_the_schema_doc_parses_and_resolves() {
    // Roles as the schema doc's examples use them.
    let topology = Topology::new(vec!["h1".into(), "h2".into(), "h3".into()])
        .with_role("broker", ["h1"])
        .with_role("consumer", ["h2", "h3"])
        .with_dynamic_role("leader", "the broker that leads partition 0 now");
    let mut actions_seen = std::collections::BTreeSet::new();
    let blocks = toml_blocks();
    assert!(blocks.len() >= 8);
    for block in blocks {
        let text = if block.contains("design =") {
            block.clone()
        } else {
            format!("design = \"go-channel\"\n{block}")
        };
        let scenario = Scenario::parse("README.md", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        for fault in scenario
            .schedule(&topology)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
        {
            actions_seen.insert(fault.action.name());
        }
    }
    for action in ACTION_NAMES {
        assert!(actions_seen.contains(action), "no example for `{action}`");
    }
}
