//! `jetsam`: run, replay and explore scenarios; list designs, faults and properties.
//!
//! Exit status: 0 when every expectation holds, 1 when one does not, 2 for bad input.

use anyhow::Context;
use clap::{Parser, Subcommand};
use scenarios::explore::{explore as explore_seeds, parse_seeds};
use scenarios::report::RunReport;
use scenarios::{parse_expect_override, scenario_files, timeline, Loaded};
use sim::verdict::{Expectation, Property};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "jetsam",
    version,
    about = "Deterministic simulation testbed for message-queue delivery semantics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenario files (or every scenario under a directory) on one seed and judge them.
    Run(RunArgs),
    /// Replay one seed of a scenario as a timeline with simulated timestamps.
    Replay(ReplayArgs),
    /// Run a scenario over a seed range in parallel; stop at the first seed that breaks an
    /// expectation and print the command that replays it.
    Explore(ExploreArgs),
    /// Shrink a failing seed to a minimal explicit fault schedule and workload that fail the
    /// same way, written as a scenario file.
    Shrink(ShrinkArgs),
    /// Run several scenarios (design variants) over the same seeds and print the guarantee
    /// matrix: per variant and property, held in N/N or violated in k/N (smallest seed, kinds).
    Compare(CompareArgs),
    /// Combine `compare --shard` outputs into the matrix one unsharded compare prints.
    Merge(MergeArgs),
    /// Regenerate the published reports under reports/ (run from the workspace root), or with
    /// --check say which differ from what is committed.
    Reports(ReportsArgs),
    /// List designs (with every config key, its default and meaning), fault actions and
    /// properties. `--markdown` prints the config key tables scenarios/README.md carries.
    List(ListArgs),
    /// Run one role of a design as a real server: the model's code on real sockets, a real
    /// data directory and the real clock (`jetsam serve nsq nsqd --help` for its flags).
    #[command(disable_help_flag = true)]
    Serve(ServeArgs),
    /// `jetsam serve nsq nsqd`.
    #[command(disable_help_flag = true)]
    Nsqd(ServerFlags),
    /// `jetsam serve nsq lookupd`.
    #[command(disable_help_flag = true)]
    Lookupd(ServerFlags),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Scenario files or directories.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The seed; defaults to the scenario's `run.seed` (1 unless the file says).
    #[arg(long)]
    seed: Option<u64>,
    /// Print JSON (one object per scenario, one per line).
    #[arg(long)]
    json: bool,
    /// Write the history as JSON lines to this file (one scenario only).
    #[arg(long)]
    history: Option<PathBuf>,
    /// Add or replace an expectation: PROPERTY=holds|violated (repeatable).
    #[arg(long = "expect", value_name = "PROPERTY=holds|violated")]
    expect: Vec<String>,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// The scenario file.
    path: PathBuf,
    /// The seed; defaults to the scenario's `run.seed`.
    #[arg(long)]
    seed: Option<u64>,
    /// Add or replace an expectation: PROPERTY=holds|violated (repeatable).
    #[arg(long = "expect", value_name = "PROPERTY=holds|violated")]
    expect: Vec<String>,
}

#[derive(clap::Args)]
struct ExploreArgs {
    /// The scenario file.
    path: PathBuf,
    /// Seed range A..B (B exclusive).
    #[arg(long)]
    seeds: String,
    /// Worker threads (default: available cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Add or replace an expectation: PROPERTY=holds|violated (repeatable); the search
    /// stops at the first seed that does not meet them.
    #[arg(long = "expect", value_name = "PROPERTY=holds|violated")]
    expect: Vec<String>,
    /// Run only shard I of N of the seed range (every N-th seed), e.g. from a CI matrix
    /// or a Kubernetes indexed Job.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Print the result as one JSON object (format, seeds run, the first failing seed, its
    /// unmet expectations and replay command) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct ShrinkArgs {
    /// The scenario file.
    path: PathBuf,
    /// The failing seed to shrink.
    #[arg(long)]
    seed: u64,
    /// Add or replace an expectation: PROPERTY=holds|violated (repeatable); the shrunk
    /// schedule must still fail it.
    #[arg(long = "expect", value_name = "PROPERTY=holds|violated")]
    expect: Vec<String>,
    /// Where to write the shrunk scenario (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Save it to the regression corpus (scenarios/regressions/), where every test run
    /// replays it and checks it still fails the same way.
    #[arg(long, conflicts_with = "out")]
    save: bool,
    /// Print the result as one JSON object on standard output (the counts, the properties
    /// still broken, the shrunk schedule, the scenario text and where it was written).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct CompareArgs {
    /// Scenario files or directories.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Seed range A..B (B exclusive).
    #[arg(long)]
    seeds: String,
    /// Worker threads (default: available cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Exit 1 when any property is violated in any run, not only when a promise is BROKEN.
    #[arg(long)]
    fail_on_violation: bool,
    /// Also write the matrix as Markdown here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Also write the matrix as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write the HTML report here (the matrix, and a timeline per violation).
    #[arg(long)]
    html: Option<PathBuf>,
    /// Run only shard I of N of the runs and write them to --out, for `jetsam merge`.
    #[arg(long, value_name = "I/N", requires = "out")]
    shard: Option<String>,
    /// Where a shard writes its runs.
    #[arg(long, requires = "shard")]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct MergeArgs {
    /// The shard files `compare --shard I/N --out FILE` wrote, all N of them.
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// Exit 1 when any property is violated in any run, not only when a promise is BROKEN.
    #[arg(long)]
    fail_on_violation: bool,
    /// Also write the matrix as Markdown here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Also write the matrix as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write the HTML report here (the matrix, and a timeline per violation).
    #[arg(long)]
    html: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ReportsArgs {
    /// Write nothing; exit 1 naming the reports that differ from what the code produces.
    #[arg(long)]
    check: bool,
    /// Worker threads (default: available cores).
    #[arg(long)]
    jobs: Option<usize>,
}

#[derive(clap::Args)]
struct ListArgs {
    /// Print the config key tables as Markdown (what scenarios/README.md carries).
    #[arg(long)]
    markdown: bool,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The design (`jetsam list`).
    design: String,
    /// The role to run; the design's roles are listed when it is missing or unknown.
    role: Option<String>,
    /// The server's own flags (see `jetsam serve DESIGN ROLE --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    flags: Vec<String>,
}

/// Flags handed to a server unparsed: the server parses them itself.
#[derive(clap::Args)]
struct ServerFlags {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    flags: Vec<String>,
}

/// `println!` that ignores a closed stdout (`jetsam replay ... | head`), instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` likewise.
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// A progress bar on stderr (drawn only when stderr is a terminal).
fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{bar:40}} {{pos}}/{{len}} runs, eta {{eta}}"
        ))
        .expect("a valid template"),
    );
    bar
}

/// Bad input: reported as one line, exit status 2.
struct BadInput(anyhow::Error);

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("RUST_LOG"))
        .with_writer(std::io::stderr)
        // Colour only on a terminal, and never with NO_COLOR set (no-color.org).
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none(),
        )
        .without_time()
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match dispatch(cli.command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(BadInput(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn bad<T>(result: Result<T, impl Into<anyhow::Error>>) -> Result<T, BadInput> {
    result.map_err(|e| BadInput(e.into()))
}

fn overrides(expect: &[String]) -> Result<Vec<(Property, Expectation)>, BadInput> {
    expect
        .iter()
        .map(|e| parse_expect_override(e).map_err(|m| BadInput(anyhow::anyhow!(m))))
        .collect()
}

fn expect_flags(expect: &[String]) -> String {
    expect.iter().map(|e| format!(" --expect {e}")).collect()
}

/// Every scenario file under the given files and directories; a path with none is bad input.
fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, BadInput> {
    let mut files = Vec::new();
    for path in paths {
        let found = bad(scenario_files(path).with_context(|| format!("{}", path.display())))?;
        if found.is_empty() {
            return Err(BadInput(anyhow::anyhow!("{}: no scenario files", path.display())));
        }
        files.extend(found);
    }
    Ok(files)
}

/// Prints the matrix as Markdown, and writes it in each form asked for.
fn write_matrix(
    matrix: &scenarios::compare::Matrix,
    markdown: Option<PathBuf>,
    json: Option<PathBuf>,
    html: Option<PathBuf>,
) -> Result<(), BadInput> {
    let text = matrix.markdown();
    if let Some(file) = &markdown {
        bad(std::fs::write(file, &text).with_context(|| format!("{}", file.display())))?;
    }
    if let Some(file) = &json {
        let body = serde_json::to_string_pretty(matrix).expect("the matrix serializes");
        bad(std::fs::write(file, body).with_context(|| format!("{}", file.display())))?;
    }
    if let Some(file) = &html {
        let page =
            bad(scenarios::html::report(matrix, std::path::Path::new("")).map_err(anyhow::Error::msg))?;
        bad(std::fs::write(file, page).with_context(|| format!("{}", file.display())))?;
    }
    say_raw!("{text}");
    Ok(())
}

fn load(path: &std::path::Path, expect: &[String]) -> Result<Loaded, BadInput> {
    let text = path.to_string_lossy();
    let mut loaded = bad(Loaded::load(&text))?;
    loaded.override_expectations(&overrides(expect)?);
    Ok(loaded)
}

fn dispatch(command: Command) -> Result<bool, BadInput> {
    match command {
        Command::Run(args) => run(args),
        Command::Replay(args) => replay(args),
        Command::Explore(args) => explore(args),
        Command::Shrink(args) => shrink(args),
        Command::Compare(args) => compare(args),
        Command::Merge(args) => merge(args),
        Command::Reports(args) => reports(args),
        Command::Serve(args) => serve(&args.design, args.role.as_deref(), &args.flags),
        Command::Nsqd(args) => serve("nsq", Some("nsqd"), &args.flags),
        Command::Lookupd(args) => serve("nsq", Some("lookupd"), &args.flags),
        Command::List(args) => list(&args),
    }
}

fn run(args: RunArgs) -> Result<bool, BadInput> {
    let RunArgs {
        paths,
        seed,
        json,
        history,
        expect,
    } = args;
    let files = collect_files(&paths)?;
    if history.is_some() && files.len() != 1 {
        return Err(BadInput(anyhow::anyhow!("--history takes exactly one scenario")));
    }
    // Load everything first: one malformed file is bad input before anything runs.
    let loaded: Vec<Loaded> = files.iter().map(|f| load(f, &expect)).collect::<Result<_, _>>()?;
    let mut failed = 0usize;
    for scenario in &loaded {
        let outcome = scenario.run(seed.unwrap_or(scenario.scenario.run.seed));
        if let Some(path) = &history {
            let file = bad(std::fs::File::create(path).with_context(|| format!("{}", path.display())))?;
            bad(outcome.history.write_jsonl_file(std::io::BufWriter::new(file)))?;
        }
        let report = RunReport::new(scenario, &outcome);
        failed += usize::from(!report.passed);
        if json {
            say!("{}", serde_json::to_string(&report).expect("reports serialize"));
        } else {
            say_raw!("{}", report.human());
            if !report.passed {
                say!("replay: {}", report.replay_command(&expect_flags(&expect)));
            }
            if loaded.len() > 1 {
                say!();
            }
        }
    }
    if loaded.len() > 1 && !json {
        say!(
            "{} scenario(s) on {}: {} met every expectation, {failed} did not",
            loaded.len(),
            seed.map_or("their own seeds".to_string(), |s| format!("seed {s}")),
            loaded.len() - failed
        );
    }
    Ok(failed == 0)
}

fn replay(args: ReplayArgs) -> Result<bool, BadInput> {
    let ReplayArgs { path, seed, expect } = args;
    let loaded = load(&path, &expect)?;
    let seed = seed.unwrap_or(loaded.scenario.run.seed);
    let outcome = loaded.run(seed);
    say!("seed {seed}  {}", loaded.scenario.name);
    say_raw!("{}", timeline::render(&outcome.history));
    let report = RunReport::new(&loaded, &outcome);
    say!();
    say_raw!("{}", report.human());
    Ok(report.passed)
}

fn explore(args: ExploreArgs) -> Result<bool, BadInput> {
    let ExploreArgs {
        path,
        seeds,
        jobs,
        expect,
        shard,
        json,
    } = args;
    let range = bad(parse_seeds(&seeds).map_err(anyhow::Error::msg))?;
    let shard = match &shard {
        Some(text) => bad(scenarios::compare::parse_shard(text).map_err(anyhow::Error::msg))?,
        None => (1, 1),
    };
    let seed_list = scenarios::explore::shard_seeds(range.clone(), shard);
    let loaded = load(&path, &expect)?;
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if jobs == 0 {
        return Err(BadInput(anyhow::anyhow!("--jobs must be at least 1")));
    }
    let total = seed_list.len();
    eprintln!(
        "exploring {} on seeds {}..{}{} with {jobs} job(s)",
        path.display(),
        range.start,
        range.end,
        if shard.1 > 1 {
            format!(" (shard {}/{}: {total} seeds)", shard.0, shard.1)
        } else {
            String::new()
        }
    );
    let bar = progress_bar(total as u64, "explore");
    let result = explore_seeds(&loaded, &seed_list, jobs, &|_| bar.inc(1));
    bar.finish_and_clear();
    let replay = result.first_failure.as_ref().map(|failure| {
        format!(
            "jetsam replay {} --seed {}{}",
            path.display(),
            failure.seed,
            expect_flags(&expect)
        )
    });
    if json {
        let body = serde_json::json!({
            "format": scenarios::JSON_FORMAT,
            "path": path.display().to_string(),
            "seeds": [range.start, range.end],
            "shard": [shard.0, shard.1],
            "passed": result.first_failure.is_none(),
            "seeds_run": result.seeds_run,
            "first_failure": result.first_failure,
            "replay": replay,
        });
        say!("{body}");
        return Ok(result.first_failure.is_none());
    }
    match result.first_failure {
        None => {
            say!("PASS  {total} seed(s), every expectation met on each");
            Ok(true)
        }
        Some(failure) => {
            say!(
                "FAIL  seed {} breaks an expectation ({} seed(s) run):",
                failure.seed,
                result.seeds_run
            );
            for line in &failure.unmet {
                say!("UNMET {line}");
            }
            say!("replay: {}", replay.unwrap_or_default());
            Ok(false)
        }
    }
}

fn shrink(args: ShrinkArgs) -> Result<bool, BadInput> {
    let ShrinkArgs {
        path,
        seed,
        expect,
        out,
        save,
        json,
    } = args;
    let loaded = load(&path, &expect)?;
    let shrunk = bad(scenarios::shrink::shrink(&loaded, seed).map_err(anyhow::Error::msg))?;
    let out = if save {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = PathBuf::from("scenarios/regressions");
        bad(std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display())))?;
        let broken: Vec<String> = shrunk.broken.iter().cloned().collect();
        Some(dir.join(format!("{stem}-seed-{seed}-{}.toml", broken.join("-"))))
    } else {
        out
    };
    match &out {
        Some(file) => {
            bad(std::fs::write(file, &shrunk.scenario).with_context(|| format!("{}", file.display())))?
        }
        None if json => {}
        None => say_raw!("{}", shrunk.scenario),
    }
    if json {
        let body = serde_json::json!({
            "format": scenarios::JSON_FORMAT,
            "path": path.display().to_string(),
            "shrunk": shrunk,
            "written_to": out.as_ref().map(|f| f.display().to_string()),
            "replay": out.as_ref().map(|f| format!("jetsam replay {}", f.display())),
        });
        say!("{body}");
        return Ok(true);
    }
    eprintln!(
        "shrank seed {seed}: {} fault(s) -> {}, {} message(s) -> {}, in {} runs; still breaks: {}",
        shrunk.faults_before,
        shrunk.faults_after,
        shrunk.messages_before,
        shrunk.messages_after,
        shrunk.runs,
        shrunk.broken.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    if let Some(file) = &out {
        // The file carries its seed and its expectations.
        eprintln!("replay: jetsam replay {}", file.display());
    }
    Ok(true)
}

fn compare(args: CompareArgs) -> Result<bool, BadInput> {
    let CompareArgs {
        paths,
        seeds,
        jobs,
        fail_on_violation,
        markdown,
        json,
        html,
        shard,
        out,
    } = args;
    let range = bad(parse_seeds(&seeds).map_err(anyhow::Error::msg))?;
    let shard = match &shard {
        Some(text) => Some(bad(
            scenarios::compare::parse_shard(text).map_err(anyhow::Error::msg)
        )?),
        None => None,
    };
    let files = collect_files(&paths)?;
    let loaded: Vec<Loaded> = files.iter().map(|f| load(f, &[])).collect::<Result<_, _>>()?;
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if jobs == 0 {
        return Err(BadInput(anyhow::anyhow!("--jobs must be at least 1")));
    }
    let variants = scenarios::compare::variants(&loaded);
    let bar = progress_bar(0, "compare");
    let records = scenarios::compare::run_records(
        &loaded,
        range.clone(),
        shard.unwrap_or((1, 1)),
        jobs,
        &|done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    );
    bar.finish_and_clear();
    if let (Some(shard), Some(out)) = (shard, &out) {
        let file = scenarios::compare::Shard {
            format: scenarios::compare::SHARD_FORMAT,
            jetsam: env!("CARGO_PKG_VERSION").to_string(),
            shard,
            seeds: (range.start, range.end),
            variants,
            records,
        };
        let body = serde_json::to_string(&file).expect("a shard serializes");
        bad(std::fs::write(out, body).with_context(|| format!("{}", out.display())))?;
        eprintln!(
            "shard {}/{}: {} run(s) written to {}",
            shard.0,
            shard.1,
            file.records.len(),
            out.display()
        );
        return Ok(true);
    }
    let matrix = scenarios::compare::Matrix::build(variants, (range.start, range.end), records);
    write_matrix(&matrix, markdown, json, html)?;
    Ok(matrix_passes(&matrix, fail_on_violation))
}

/// Whether a compare's matrix lets CI pass: no BROKEN promise, no crash (and, when asked,
/// no violated property at all). Says why on stderr when it does not.
fn matrix_passes(matrix: &scenarios::compare::Matrix, fail_on_violation: bool) -> bool {
    let failures = matrix.failures(fail_on_violation);
    for failure in &failures {
        eprintln!("compare: {failure}");
    }
    failures.is_empty()
}

fn merge(args: MergeArgs) -> Result<bool, BadInput> {
    let MergeArgs {
        shards,
        fail_on_violation,
        markdown,
        json,
        html,
    } = args;
    let mut read = Vec::new();
    for path in &shards {
        let name = path.display().to_string();
        let text = bad(std::fs::read_to_string(path).with_context(|| name.clone()))?;
        let shard: scenarios::compare::Shard =
            bad(serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{name}: not a jetsam shard file ({e})")))?;
        read.push((name, shard));
    }
    let matrix = bad(scenarios::compare::Matrix::merge(&read).map_err(anyhow::Error::msg))?;
    write_matrix(&matrix, markdown, json, html)?;
    Ok(matrix_passes(&matrix, fail_on_violation))
}

fn reports(args: ReportsArgs) -> Result<bool, BadInput> {
    let ReportsArgs { check, jobs } = args;
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let root = bad(std::env::current_dir().context("the current directory"))?;
    if !root.join("reports").is_dir() || !root.join("scenarios").is_dir() {
        return Err(BadInput(anyhow::anyhow!(
            "reports: run from the workspace root (no reports/ and scenarios/ here)"
        )));
    }
    let mut stale = Vec::new();
    let mut generated = vec![readme_key_tables(&root)?];
    for report in scenarios::published::published() {
        generated.extend(bad(
            scenarios::published::render(&report, &root, jobs).map_err(anyhow::Error::msg)
        )?);
    }
    for (path, contents) in generated {
        let committed = std::fs::read_to_string(root.join(&path)).unwrap_or_default();
        if committed == contents {
            continue;
        }
        if check {
            stale.push(path.display().to_string());
        } else {
            bad(std::fs::write(root.join(&path), contents).with_context(|| format!("{}", path.display())))?;
            eprintln!("wrote {}", path.display());
        }
    }
    if stale.is_empty() {
        eprintln!("reports: {}", if check { "up to date" } else { "written" });
        Ok(true)
    } else {
        say!(
            "reports differ from what the code produces (run `just reports`): {}",
            stale.join(", ")
        );
        Ok(false)
    }
}

/// `scenarios/README.md` with its key tables as the config types say them.
fn readme_key_tables(root: &std::path::Path) -> Result<(PathBuf, String), BadInput> {
    let path = PathBuf::from("scenarios/README.md");
    let readme =
        bad(std::fs::read_to_string(root.join(&path)).with_context(|| format!("{}", path.display())))?;
    let tables = scenarios::listing::key_tables();
    let updated = scenarios::listing::readme_with(&readme, &tables).ok_or_else(|| {
        BadInput(anyhow::anyhow!(
            "{}: the generated key tables' markers are missing",
            path.display()
        ))
    })?;
    Ok((path, updated))
}

fn list(args: &ListArgs) -> Result<bool, BadInput> {
    if args.markdown {
        say_raw!("{}", scenarios::listing::key_tables());
    } else {
        say_raw!("{}", scenarios::listing::text());
    }
    Ok(true)
}

/// Runs a design's real server from the registry; the server parses its own flags.
fn serve(design: &str, role: Option<&str>, flags: &[String]) -> Result<bool, BadInput> {
    let designs = models::designs();
    let Some(info) = designs.iter().find(|d| d.name == design) else {
        let names: Vec<&str> = designs.iter().map(|d| d.name).collect();
        return Err(BadInput(anyhow::anyhow!(
            "unknown design `{design}`; designs are: {}",
            names.join(", ")
        )));
    };
    let roles: Vec<&str> = info.servers.iter().map(|s| s.role).collect();
    let server = info.servers.iter().find(|s| Some(s.role) == role);
    let Some(server) = server else {
        let offered = match roles.is_empty() {
            true => "it runs only in the simulation".to_string(),
            false => format!("its roles are: {}", roles.join(", ")),
        };
        let message = match role {
            Some(r) => format!("design `{design}` has no real server for role `{r}`; {offered}"),
            None if roles.is_empty() => format!("design `{design}` has no real server; {offered}"),
            None => format!("name the role to serve: jetsam serve {design} ROLE; {offered}"),
        };
        return Err(BadInput(anyhow::anyhow!(message)));
    };
    match (server.run)(flags) {
        Ok(()) => Ok(true),
        Err(models::server::ServeError::Usage(error)) if !error.use_stderr() => {
            let _ = error.print(); // --help or --version
            Ok(true)
        }
        Err(models::server::ServeError::Usage(error)) => {
            // clap's first line says what is wrong; the rest points at --help.
            let text = error.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            Err(BadInput(anyhow::anyhow!(
                "{}",
                first.trim_start_matches("error: ")
            )))
        }
        Err(models::server::ServeError::Io(error)) => Err(BadInput(error.into())),
    }
}
