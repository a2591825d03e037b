//! `jetsam compare`: the matrix counts what each seed showed, whatever the number of jobs.

use super::load;
use scenarios::compare::compare;

#[test]
fn the_matrix_counts_each_variants_seeds_and_does_not_depend_on_jobs() {
    let variants = vec![
        load("scenarios/go-channel/fifo-no-faults.toml"),
        load("scenarios/go-channel/kill-loses-buffered.toml"),
        load("scenarios/go-channel/swarm-careless.toml"),
    ];
    let one = compare(&variants, 0..8, 1, &|_, _| {});
    let three = compare(&variants, 0..8, 3, &|_, _| {});
    assert_eq!(one, three);
    let cell = |row: usize, property: &str| one.rows[row].cells[property].clone();
    assert_eq!(cell(0, "exactly-once").violated, 0, "no faults: held 8/8");
    assert_eq!(cell(0, "exactly-once").seeds, 8);
    assert_eq!(
        cell(1, "no-loss").violated,
        8,
        "the kill loses the buffer on every seed"
    );
    assert_eq!(cell(1, "no-loss").smallest_seed, Some(0));
    assert!(cell(1, "no-loss").anomaly_kinds.contains("lost"));
    // The careless shutdown's phantoms depend on the seed: the smallest one is reported.
    let phantom = cell(2, "no-phantom");
    assert!(phantom.violated > 0 && phantom.violated < 8, "{phantom:?}");
    let markdown = one.markdown();
    assert!(
        markdown.contains("| no-loss |")
            && markdown.contains("held 8/8")
            && markdown.contains("**violated 8/8**")
    );
}

#[test]
fn the_promise_column_counts_held_outside_and_broken_seeds() {
    let variants = vec![
        load("scenarios/go-channel/fifo-no-faults.toml"),
        load("scenarios/go-channel/kill-loses-buffered.toml"),
        load("scenarios/go-channel/careless-shutdown-phantom.toml"),
    ];
    let matrix = compare(&variants, 0..4, 2, &|_, _| {});
    let kept = |row: usize| matrix.rows[row].kept.clone();
    assert_eq!((kept(0).held, kept(0).outside, kept(0).broken), (4, 0, 0));
    assert_eq!(kept(1).outside, 4, "the kill is the documented window");
    assert!(kept(1).windows.contains("kill app"), "{:?}", kept(1).windows);
    assert!(kept(2).broken > 0, "phantoms break the promise with no excuse");
    assert_eq!(kept(2).smallest_broken_seed, Some(0));
    assert!(matrix.markdown().contains("**BROKEN"));
}

#[test]
fn the_matrix_breaks_anomalies_down_by_fault_kind_and_warns_of_vacuous_seeds() {
    // The same kill, once during the traffic and once long after the last message.
    let dir = super::root().join("target/compare-by-fault");
    std::fs::create_dir_all(&dir).unwrap();
    let text =
        std::fs::read_to_string(super::root().join("scenarios/go-channel/kill-loses-buffered.toml")).unwrap();
    let late = text
        .replace("at_ms = 300", "at_ms = 5000")
        .replace("at_ms = 400", "at_ms = 5100")
        .replace("fault_phase_ms = 1000", "fault_phase_ms = 6000");
    assert_ne!(late, text, "the fault times were moved");
    std::fs::write(dir.join("late-kill.toml"), late).unwrap();
    let variants = vec![
        load("scenarios/go-channel/fifo-no-faults.toml"),
        load("scenarios/go-channel/kill-loses-buffered.toml"),
        load("target/compare-by-fault/late-kill.toml"),
    ];
    let matrix = compare(&variants, 1..4, 2, &|_, _| {});
    assert!(matrix.rows[0].by_fault.is_empty(), "no faults, no breakdown");
    let kill = &matrix.rows[1].by_fault["kill"];
    assert_eq!((kill.runs, kill.outside, kill.broken), (3, 3, 0), "{kill:?}");
    assert_eq!(kill.anomalies.get("lost"), Some(&3), "{kill:?}");
    assert!(
        !matrix.rows[1].by_fault.contains_key("restart"),
        "a recovery is not a fault kind"
    );
    assert!(
        matrix.rows[1].vacuous.is_empty(),
        "the kill hit buffered messages"
    );
    assert_eq!(
        matrix.rows[2].vacuous,
        vec![1, 2, 3],
        "the late kill touched nothing"
    );
    let markdown = matrix.markdown();
    assert!(
        markdown.contains("## By fault kind")
            && markdown.contains("| `scenarios/go-channel/kill-loses-buffered.toml` | kill | 3 runs; promise outside 3; lost in 3")
            && markdown.contains("WARNING `target/compare-by-fault/late-kill.toml`: on seeds [1, 2, 3]"),
        "{markdown}"
    );
    assert_eq!(matrix.format, scenarios::JSON_FORMAT);
}

/// A compare over a small set, as the CLI sees it.
const VARIANTS: [&str; 3] = [
    "scenarios/go-channel/kill-loses-buffered.toml",
    "scenarios/go-channel/swarm-careless.toml",
    "scenarios/nsq/in-flight-lost-on-kill.toml",
];

fn run_jetsam(args: &[&str]) -> (i32, String, String) {
    let out = super::jetsam().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn compare_exits_1_on_a_broken_promise_and_with_fail_on_violation_on_any_violation() {
    let held = "scenarios/go-channel/fifo-no-faults.toml";
    let outside = "scenarios/go-channel/kill-loses-buffered.toml";
    let (code, _, stderr) = run_jetsam(&["compare", held, outside, "--seeds", "1..3"]);
    assert_eq!(code, 0, "held and outside (a documented window) pass: {stderr}");
    let (code, _, stderr) = run_jetsam(&["compare", held, outside, "--seeds", "1..3", "--fail-on-violation"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("kill-loses-buffered.toml: violated") && stderr.contains("no-loss (seed 1)"),
        "{stderr}"
    );
    assert!(!stderr.contains("fifo-no-faults"), "{stderr}");
}

#[test]
fn shards_merged_give_the_matrix_of_one_unsharded_run_and_bad_shards_are_refused() {
    let dir = super::root().join("target/shard-test");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut args: Vec<String> = vec!["compare".into()];
    args.extend(VARIANTS.iter().map(|v| v.to_string()));
    args.extend(["--seeds".into(), "1..6".into()]);
    let whole_json = dir.join("whole.json");
    let mut whole_args = args.clone();
    whole_args.extend(["--json".into(), whole_json.display().to_string()]);
    let (code, whole, stderr) = run_jetsam(&whole_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1, "the careless shutdown breaks its promise: {stderr}");
    assert!(stderr.contains("swarm-careless.toml: promise BROKEN"), "{stderr}");
    let mut shards = Vec::new();
    for i in 1..=4 {
        let file = dir.join(format!("shard-{i}.json"));
        let mut shard_args = args.clone();
        shard_args.extend([
            "--shard".into(),
            format!("{i}/4"),
            "--out".into(),
            file.display().to_string(),
        ]);
        let (code, stdout, stderr) = run_jetsam(&shard_args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.is_empty(), "a shard prints no matrix");
        shards.push(file.display().to_string());
    }
    let merged_json = dir.join("merged.json");
    let mut merge_args = vec!["merge".to_string()];
    merge_args.extend(shards.iter().rev().cloned()); // any order
    merge_args.extend(["--json".into(), merged_json.display().to_string()]);
    let (code, merged, stderr) = run_jetsam(&merge_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1, "merge judges as compare does: {stderr}");
    assert_eq!(merged, whole, "the merged matrix is the unsharded one");
    assert_eq!(
        std::fs::read_to_string(&merged_json).unwrap(),
        std::fs::read_to_string(&whole_json).unwrap()
    );

    // Refusals: one line on stderr, exit 2, naming the file.
    let refuse = |files: Vec<String>, needle: &str| {
        let mut a = vec!["merge".to_string()];
        a.extend(files);
        let (code, stdout, stderr) = run_jetsam(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code, 2, "{needle}: {stderr}");
        assert!(stdout.is_empty());
        assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    };
    refuse(shards[..3].to_vec(), "shard 4/4 is missing");
    refuse(
        vec![
            shards[0].clone(),
            shards[0].clone(),
            shards[1].clone(),
            shards[2].clone(),
        ],
        "given twice",
    );
    let text = std::fs::read_to_string(&shards[1]).unwrap();
    let truncated = dir.join("truncated.json");
    std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
    refuse(vec![truncated.display().to_string()], "not a jetsam shard file");
    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "{\"hello\": 1}").unwrap();
    refuse(
        vec![garbage.display().to_string()],
        "garbage.json: not a jetsam shard file",
    );
    // A shard that parses but lost records (edited or cut at a record boundary).
    let mut shard: scenarios::compare::Shard = serde_json::from_str(&text).unwrap();
    shard.records.pop();
    let short = dir.join("short.json");
    std::fs::write(&short, serde_json::to_string(&shard).unwrap()).unwrap();
    let mut files = shards.clone();
    files[1] = short.display().to_string();
    refuse(files, "truncated or edited");
    // Shards of another compare.
    let other = dir.join("other.json");
    let (code, _, stderr) = run_jetsam(&[
        "compare",
        VARIANTS[0],
        "--seeds",
        "1..6",
        "--shard",
        "1/4",
        "--out",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let mut files = shards.clone();
    files[0] = other.display().to_string();
    refuse(files, "a different compare");
    refuse(vec![dir.join("absent.json").display().to_string()], "absent.json");
}

#[test]
fn compare_refuses_bad_input_in_one_line() {
    let dir = super::root().join("target/compare-bad-input");
    std::fs::create_dir_all(&dir).unwrap();
    let unknown = dir.join("unknown.toml");
    std::fs::write(&unknown, "name = \"x\"\ndesign = \"rabbitmq\"\n").unwrap();
    for (args, needle) in [
        (
            vec!["compare", VARIANTS[0], "--seeds", "5..5"],
            "the range is empty",
        ),
        (
            vec![
                "compare",
                VARIANTS[0],
                "--seeds",
                "1..3",
                "--shard",
                "5/4",
                "--out",
                "x.json",
            ],
            "1 <= I <= N",
        ),
        (
            vec!["compare", unknown.to_str().unwrap(), "--seeds", "1..3"],
            "rabbitmq",
        ),
        (
            vec!["explore", VARIANTS[0], "--seeds", "1..3", "--shard", "0/2"],
            "1 <= I <= N",
        ),
    ] {
        let (code, _, stderr) = run_jetsam(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "expected `{needle}`: {stderr}");
    }
}
