//! One source of truth per design config: what the parser accepts, `jetsam list` and the key
//! tables in scenarios/README.md all come from the config type, and these tests hold them
//! together.

use super::{jetsam, root};
use sim::scenario::Scenario;

/// The `[section]` header and the key line that set dotted `path` below `[config]`.
fn setting(path: &str, value: &str) -> String {
    match path.rsplit_once('.') {
        Some((section, key)) => format!("[config.{section}]\n{key} = {value}\n"),
        None => format!("[config]\n{path} = {value}\n"),
    }
}

#[test]
fn every_key_the_parser_accepts_is_listed_by_jetsam_list() {
    let listed = scenarios::listing::text();
    for design in models::designs() {
        let accepted = design.config.default_paths();
        assert!(accepted.len() >= 4, "{}: {accepted:?}", design.name);
        for path in &accepted {
            assert!(
                listed.contains(&format!("    config.{path} = ")),
                "{}: `{path}` is accepted by the parser but missing from `jetsam list`",
                design.name
            );
        }
        let mut keys: Vec<String> = design.config.keys().into_iter().map(|k| k.name).collect();
        let mut accepted = accepted;
        keys.sort();
        accepted.sort();
        assert_eq!(
            keys, accepted,
            "{}: listed keys and accepted keys differ",
            design.name
        );
    }
}

#[test]
fn every_listed_key_at_its_listed_default_parses_and_builds() {
    for design in models::designs() {
        for key in design.config.keys() {
            let text = format!(
                "design = \"{}\"\n{}",
                design.name,
                setting(&key.name, &key.default)
            );
            let scenario = Scenario::parse("keys.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            if let Err(e) = models::build(&scenario) {
                panic!(
                    "{}: `{}` = {} is listed but refused: {e}",
                    design.name, key.name, key.default
                );
            }
        }
    }
}

#[test]
fn a_key_outside_its_bounds_is_one_line_naming_its_line() {
    for (text, expected) in [
        (
            "design = \"nsq\"\n[config]\ntopic = \"t\"\nnsqds = 17\n",
            "keys.toml:4: config.nsqds: must be within 1..=16",
        ),
        (
            "design = \"nsq\"\n[config.db]\n\ninjected_deadlock_rate = 1.5\n",
            "keys.toml:4: config.db.injected_deadlock_rate: must be within 0..=1",
        ),
        (
            "design = \"nsq\"\n[config]\nnsqds = 2\nnode_ids = [7, 1024]\n",
            "keys.toml:4: config.node_ids: 1024 is not within 0..=1023",
        ),
        (
            "design = \"nsq\"\n[config]\nnode_ids = [7, 8]\n",
            "keys.toml:3: config.node_ids: 2 ids for 1 nsqds",
        ),
        (
            "design = \"go-channel\"\n[config]\ncapacity = 100001\n",
            "keys.toml:3: config.capacity: at most 100000",
        ),
    ] {
        let scenario = Scenario::parse("keys.toml", text).unwrap();
        let error = models::build(&scenario).err().expect("out of bounds");
        assert_eq!(error.to_string(), expected);
    }
}

#[test]
fn the_key_tables_in_the_schema_doc_are_the_generated_ones() {
    let readme = std::fs::read_to_string(root().join("scenarios/README.md")).unwrap();
    let tables = scenarios::listing::key_tables();
    let generated = scenarios::listing::readme_with(&readme, &tables).expect("the markers are there");
    assert!(
        generated == readme,
        "scenarios/README.md's key tables differ from the config types: run `just reports`"
    );
    for design in models::designs() {
        for key in design.config.keys() {
            assert!(readme.contains(&format!("| `{}` |", key.name)), "{}", key.name);
        }
    }
}

#[test]
fn jetsam_list_prints_the_keys_and_the_real_servers() {
    let output = jetsam().arg("list").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for key in [
        "config.lookupd_poll_interval_ms",
        "config.db.strategy",
        "config.nsqd.max_rdy_count",
    ] {
        assert!(text.contains(key), "{key} missing from:\n{text}");
    }
    assert!(text.contains("`inbox`: "), "enumerations list their values");
    assert!(text.contains("jetsam serve nsq nsqd|lookupd"));
}

#[test]
fn serve_names_the_designs_and_roles_it_has() {
    let output = jetsam().args(["serve", "rabbitmq", "broker"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        stderr.trim(),
        "error: unknown design `rabbitmq`; designs are: go-channel, nsq, kafka, mqtt, signals, outbox"
    );

    let output = jetsam().args(["serve", "go-channel", "app"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("it runs only in the simulation"), "{stderr}");

    let output = jetsam().args(["serve", "nsq", "broker"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("its roles are: nsqd, lookupd"), "{stderr}");

    let output = jetsam().args(["serve", "mqtt"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        stderr.trim(),
        "error: name the role to serve: jetsam serve mqtt ROLE; its roles are: broker"
    );

    let output = jetsam()
        .args(["serve", "nsq", "nsqd", "--msg-timeout", "2d"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("unknown unit `d`"), "{stderr}");

    for alias in [vec!["nsqd", "--help"], vec!["serve", "nsq", "lookupd", "--help"]] {
        let output = jetsam().args(&alias).output().unwrap();
        assert!(output.status.success(), "{alias:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(stdout.contains("--tcp-address"), "{alias:?}: {stdout}");
    }
}
