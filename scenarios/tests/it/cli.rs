//! The CLI's contract: exit 0 when expectations hold, 1 when not, 2 for bad input with one
//! clear line naming the file, line and field.

use super::jetsam;
use std::io::Write;

fn scenario_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("jetsam-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let output = jetsam().args(args).output().unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn a_passing_scenario_exits_0_and_a_failing_expectation_exits_1() {
    let (code, stdout, _) = run(&["run", "scenarios/go-channel/fifo-no-faults.toml"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("seed 1 "), "the seed comes first: {stdout}");
    let (code, stdout, _) = run(&[
        "run",
        "scenarios/go-channel/kill-loses-buffered.toml",
        "--expect",
        "no-loss=holds",
    ]);
    assert_eq!(code, Some(1));
    assert!(stdout.contains("replay: jetsam replay scenarios/go-channel/kill-loses-buffered.toml --seed 1 --expect no-loss=holds"), "{stdout}");
}

#[test]
fn json_output_carries_what_the_issue_asks_for() {
    let (code, stdout, _) = run(&[
        "run",
        "scenarios/go-channel/kill-loses-buffered.toml",
        "--seed",
        "4",
        "--json",
    ]);
    assert_eq!(code, Some(0));
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["format"], scenarios::JSON_FORMAT);
    assert_eq!(report["design"], "go-channel");
    assert_eq!(report["seed"], 4);
    assert_eq!(report["history_hash"].as_str().unwrap().len(), 64);
    let properties = report["properties"].as_array().unwrap();
    let no_loss = properties.iter().find(|p| p["property"] == "no-loss").unwrap();
    assert_eq!(no_loss["verdict"], "violated");
    assert_eq!(no_loss["anomalies"][0]["kind"], "lost");
    assert!(no_loss["anomalies"][0]["id"].as_u64().unwrap() > 0);
}

#[test]
fn explore_and_shrink_print_json_with_the_format_and_the_replay_command() {
    let kill = "scenarios/go-channel/kill-loses-buffered.toml";
    let args = [
        "explore",
        kill,
        "--seeds",
        "3..6",
        "--expect",
        "no-loss=holds",
        "--json",
    ];
    let (code, stdout, _) = run(&args);
    assert_eq!(code, Some(1), "every seed loses the buffer: {stdout}");
    let found: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(found["format"], scenarios::JSON_FORMAT);
    assert_eq!(
        (found["passed"].as_bool(), found["first_failure"]["seed"].as_u64()),
        (Some(false), Some(3))
    );
    let replay = format!("jetsam replay {kill} --seed 3 --expect no-loss=holds");
    assert_eq!(found["replay"], replay.as_str());
    let (code, stdout, _) = run(&[
        "shrink",
        kill,
        "--seed",
        "3",
        "--expect",
        "no-loss=holds",
        "--json",
    ]);
    assert_eq!(code, Some(0), "{stdout}");
    let shrunk: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(shrunk["format"], scenarios::JSON_FORMAT);
    assert!(
        shrunk["shrunk"]["broken"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "no-loss"),
        "{shrunk}"
    );
    let kept = shrunk["shrunk"]["faults_after"].as_u64().unwrap();
    assert!(
        kept >= 1 && kept <= shrunk["shrunk"]["faults_before"].as_u64().unwrap(),
        "{shrunk}"
    );
    assert!(shrunk["shrunk"]["scenario"]
        .as_str()
        .unwrap()
        .contains("[[faults]]"));
}

#[test]
fn tracing_shows_with_rust_log_and_has_no_colour_off_a_terminal() {
    let output = jetsam()
        .args(["run", "scenarios/go-channel/fifo-no-faults.toml"])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("t_us=") && stderr.contains("event"),
        "the models' events: {stderr:.300}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no escape codes into a pipe: {stderr:.300}"
    );
}

#[test]
fn history_is_written_as_json_lines_that_parse_back() {
    let out = std::env::temp_dir().join(format!("jetsam-history-{}.jsonl", std::process::id()));
    let (code, _, _) = run(&[
        "run",
        "scenarios/go-channel/fifo-no-faults.toml",
        "--history",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("{\"format\":1}\n"), "the format line first");
    let history = sim::History::read_jsonl(&text).unwrap();
    assert!(history.len() > 150 * 4);
    std::fs::remove_file(out).unwrap();
}

#[test]
fn malformed_scenarios_get_one_line_naming_line_and_field_and_exit_2() {
    let cases = [
        (
            "typo.toml",
            "design = \"go-channel\"\n[config]\ncapacty = 3\n",
            ":3: ",
            "capacty",
        ),
        (
            "design.toml",
            "\ndesign = \"kafka-9\"\n",
            ":2: ",
            "unknown design `kafka-9`",
        ),
        (
            "channels.toml",
            "design = \"nsq\"\n[config]\nchannels = [\"billing\", \"bad name!\"]\n",
            ":3: ",
            "is not a valid NSQ channel name",
        ),
        (
            "channels-db.toml",
            "design = \"nsq\"\n[config]\nsink = \"db\"\nchannels = [\"a\", \"b\"]\n",
            ":4: ",
            "several channels need sink",
        ),
        (
            "direct.toml",
            "design = \"nsq\"\n[config]\nconsumer_nsqds = [\"nsqd7\"]\n",
            ":3: ",
            "not one of nsqd1..nsqd1",
        ),
        (
            "host.toml",
            "design = \"go-channel\"\n[[faults]]\nat_ms = 5\naction = \"kill\"\nhost = \"nsqd1\"\n",
            ":2: ",
            "unknown host `nsqd1`",
        ),
        (
            "truncated.toml",
            "design = \"go-channel\"\n[workload\nmessages =",
            ":2",
            "",
        ),
        (
            "value.toml",
            "design = \"go-channel\"\n[config]\nshutdown = \"sloppy\"\n",
            ":3: ",
            "sloppy",
        ),
        (
            "expect.toml",
            "design = \"go-channel\"\n[expect]\nno-loss = \"mostly\"\n",
            ":3: ",
            "holds",
        ),
    ];
    for (name, text, line, field) in cases {
        let path = scenario_file(name, text);
        let (code, stdout, stderr) = run(&["run", path.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{name}: {stdout}{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: one line, got {stderr}");
        assert!(stderr.starts_with("error: "), "{name}: {stderr}");
        assert!(
            stderr.contains(line) && stderr.contains(field),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}

#[test]
fn other_bad_input_exits_2() {
    for args in [
        vec!["run", "no/such/file.toml"],
        vec![
            "explore",
            "scenarios/go-channel/fifo-no-faults.toml",
            "--seeds",
            "5..5",
        ],
        vec![
            "explore",
            "scenarios/go-channel/fifo-no-faults.toml",
            "--seeds",
            "x..9",
        ],
        vec![
            "run",
            "scenarios/go-channel/fifo-no-faults.toml",
            "--expect",
            "no-loss=sometimes",
        ],
        vec!["frobnicate"],
    ] {
        let (code, _, stderr) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn list_shows_designs_config_defaults_actions_and_properties() {
    let (code, stdout, _) = run(&["list"]);
    assert_eq!(code, Some(0));
    for needle in [
        "go-channel",
        "config.capacity",
        "= 16",
        "power_fail",
        "lose_replies",
        "bridge",
        "ordered(producer)",
        "exactly-once",
    ] {
        assert!(stdout.contains(needle), "{needle} missing from:\n{stdout}");
    }
}
