//! `jetsam shrink`: reduce a failing run to a minimal reproduction that fails the same way.
//!
//! The run's concrete schedule (explicit, or drawn by the swarm profile) is reduced by delta
//! debugging (ddmin: try removing chunks, then single faults), then the workload's message
//! count by halving. "The same way" means every property the original run broke is still
//! broken. The result is a scenario with an explicit `[[faults]]` schedule, so it replays on
//! the same seed without the swarm draw.

use crate::Loaded;
use sim::fault::{FaultAction, ScheduledFault};
use sim::world::{run, schedule_for};
use std::collections::BTreeSet;

/// Bound on shrinking runs, whatever the schedule's size.
pub const SHRINK_RUNS_MAX: usize = 2_000;

#[derive(serde::Serialize)]
pub struct Shrunk {
    pub seed: u64,
    pub broken: BTreeSet<String>,
    pub faults_before: usize,
    pub faults_after: usize,
    pub messages_before: u64,
    pub messages_after: u64,
    pub schedule: Vec<ScheduledFault>,
    pub runs: usize,
    /// The shrunk scenario as TOML.
    pub scenario: String,
}

/// The properties an outcome breaks, by name (what "fails the same way" compares).
fn broken(loaded: &Loaded, schedule: &[ScheduledFault], messages: u64, seed: u64) -> BTreeSet<String> {
    let mut scenario = loaded.scenario.clone();
    scenario.workload.messages = messages;
    let design = loaded.design_for(&scenario).expect("checked when loaded");
    let outcome = run(&scenario, design.as_ref(), schedule.to_vec(), seed);
    let mut names: BTreeSet<String> = loaded
        .unmet(&outcome)
        .iter()
        .filter_map(|line| line.split(':').next().map(str::to_string))
        .collect();
    // An unexpected crash breaks the run; an expected one is what the scenario shows, and
    // its absence is already an unmet line named `crash` (which must not count as broken the
    // same way, or a shrink would "keep" a crash the candidate no longer has).
    if outcome.verdicts.crash.is_some() && !loaded.scenario.expect.crash {
        names.insert("crash".into());
    }
    names
}

pub fn shrink(loaded: &Loaded, seed: u64) -> Result<Shrunk, String> {
    shrink_within(loaded, seed, SHRINK_RUNS_MAX)
}

/// [`shrink`] within `runs_max` runs (at most [`SHRINK_RUNS_MAX`]), for a caller that must
/// answer quickly (the `jetsam` library's test helper); the result is the smallest case found
/// within the budget.
pub fn shrink_within(loaded: &Loaded, seed: u64, runs_max: usize) -> Result<Shrunk, String> {
    let runs_max = runs_max.min(SHRINK_RUNS_MAX);
    let design = loaded.design_for(&loaded.scenario).map_err(|e| e.to_string())?;
    let original = schedule_for(&loaded.scenario, &design.topology(), seed).map_err(|e| e.to_string())?;
    let messages_before = loaded.scenario.workload.messages;
    let target = broken(loaded, &original, messages_before, seed);
    if target.is_empty() {
        return Err(format!("seed {seed} meets every expectation: nothing to shrink"));
    }
    let mut runs = 1;
    let still_fails = |schedule: &[ScheduledFault], messages: u64, runs: &mut usize| -> bool {
        *runs += 1;
        *runs <= runs_max && target.is_subset(&broken(loaded, schedule, messages, seed))
    };

    // ddmin over the schedule.
    let mut schedule = original.clone();
    let mut chunks = 2usize;
    while schedule.len() >= 2 && runs < runs_max {
        let size = schedule.len().div_ceil(chunks);
        let mut reduced = false;
        for start in (0..schedule.len()).step_by(size.max(1)) {
            let candidate: Vec<ScheduledFault> = schedule
                .iter()
                .enumerate()
                .filter(|(i, _)| *i < start || *i >= start + size)
                .map(|(_, f)| f.clone())
                .collect();
            if still_fails(&candidate, messages_before, &mut runs) {
                schedule = candidate;
                chunks = (chunks - 1).max(2);
                reduced = true;
                break;
            }
        }
        if !reduced {
            if chunks >= schedule.len() {
                break;
            }
            chunks = (chunks * 2).min(schedule.len());
        }
    }
    if schedule.len() == 1 && still_fails(&[], messages_before, &mut runs) {
        schedule.clear();
    }

    // Then, until nothing improves: shorter faults, faults at other times, fewer messages.
    let mut messages = messages_before;
    for _pass in 0..8 {
        let mut improved = false;
        for i in 0..schedule.len() {
            for candidate in variants(&schedule[i]) {
                if runs >= runs_max {
                    break;
                }
                let mut trial = schedule.clone();
                trial[i] = candidate;
                trial.sort_by_key(|f| f.at_ms);
                if trial != schedule && still_fails(&trial, messages, &mut runs) {
                    schedule = trial;
                    improved = true;
                    break;
                }
            }
        }
        while messages > 1 && runs < runs_max {
            let fewer = [messages / 2, messages - (messages / 10).max(1)];
            if let Some(m) = fewer
                .into_iter()
                .find(|m| *m < messages && still_fails(&schedule, *m, &mut runs))
            {
                messages = m;
                improved = true;
                continue;
            }
            // Fewer messages publish for less time: bring the faults forward with them, so a
            // fault that must hit while messages are in flight still does.
            let compressed: Option<(u64, Vec<ScheduledFault>)> = fewer.into_iter().find_map(|m| {
                if m >= messages || m == 0 {
                    return None;
                }
                let mut trial: Vec<ScheduledFault> = schedule
                    .iter()
                    .map(|f| ScheduledFault {
                        at_ms: f.at_ms * m / messages,
                        ..f.clone()
                    })
                    .collect();
                trial.sort_by_key(|f| f.at_ms);
                still_fails(&trial, m, &mut runs).then_some((m, trial))
            });
            match compressed {
                Some((m, trial)) => {
                    messages = m;
                    schedule = trial;
                    improved = true;
                }
                None => break,
            }
        }
        if !improved {
            break;
        }
    }

    let scenario = render(loaded, &schedule, messages, seed, &target);
    Ok(Shrunk {
        seed,
        broken: target,
        faults_before: original.len(),
        faults_after: schedule.len(),
        messages_before,
        messages_after: messages,
        schedule,
        runs,
        scenario,
    })
}

/// The original scenario with an explicit schedule and the smaller workload.
fn render(
    loaded: &Loaded,
    schedule: &[ScheduledFault],
    messages: u64,
    seed: u64,
    broken: &BTreeSet<String>,
) -> String {
    let mut doc: toml::Table = toml::from_str(&loaded.scenario.text).expect("the scenario parsed before");
    doc.remove("swarm");
    doc.remove("faults");
    let name = doc
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or(&loaded.scenario.name)
        .to_string();
    doc.insert(
        "name".into(),
        toml::Value::String(format!("{name} (shrunk from seed {seed})")),
    );
    // The case carries its seed and what it showed: its expectations are the properties it
    // broke, as "violated", so replaying it checks it still fails the same way. When a model
    // fix makes it pass, flip them to "holds" and say so in the description.
    let run = doc
        .entry("run")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(table) = run.as_table_mut() {
        table.insert("seed".into(), toml::Value::Integer(seed as i64));
    }
    let mut expect = toml::Table::new();
    for property in broken
        .iter()
        .filter(|p| sim::verdict::Property::parse(p).is_some())
    {
        expect.insert(property.clone(), toml::Value::String("violated".into()));
    }
    doc.insert("expect".into(), toml::Value::Table(expect));
    doc.insert(
        "description".into(),
        toml::Value::String(format!(
            "Shrunk by `jetsam shrink` (jetsam {}) from {} seed {seed}; it still breaks: {}. It replays on its own seed (run.seed).",
            env!("CARGO_PKG_VERSION"),
            loaded.scenario.path,
            broken.iter().cloned().collect::<Vec<_>>().join(", ")
        )),
    );
    let workload = doc
        .entry("workload")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(table) = workload.as_table_mut() {
        table.insert("messages".into(), toml::Value::Integer(messages as i64));
    }
    let faults: Vec<toml::Value> = schedule
        .iter()
        .map(|f| toml::Value::Table(fault_table(f)))
        .collect();
    if !faults.is_empty() {
        doc.insert("faults".into(), toml::Value::Array(faults));
    }
    toml::to_string(&doc).expect("a table serializes")
}

/// Simpler versions of one fault: earlier (so fewer messages are needed before it), later,
/// and shorter where it has a duration.
fn variants(fault: &ScheduledFault) -> Vec<ScheduledFault> {
    let mut out = Vec::new();
    // Big jumps first: a fault that must land while messages are in flight often needs to
    // come much earlier once there are fewer messages.
    for at_ms in [
        fault.at_ms / 8,
        fault.at_ms / 4,
        fault.at_ms / 2,
        fault.at_ms * 3 / 4,
        fault.at_ms + fault.at_ms / 4,
    ] {
        if at_ms != fault.at_ms {
            out.push(ScheduledFault {
                at_ms,
                ..fault.clone()
            });
        }
    }
    if let FaultAction::LoseReplies {
        from,
        to,
        duration_ms,
    } = &fault.action
    {
        if *duration_ms > 1 {
            out.push(ScheduledFault {
                action: FaultAction::LoseReplies {
                    from: from.clone(),
                    to: to.clone(),
                    duration_ms: duration_ms / 2,
                },
                ..fault.clone()
            });
        }
    }
    out
}

fn strings(hosts: &[String]) -> toml::Value {
    toml::Value::Array(hosts.iter().map(|h| toml::Value::String(h.clone())).collect())
}

fn fault_table(fault: &ScheduledFault) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("at_ms".into(), toml::Value::Integer(fault.at_ms as i64));
    t.insert(
        "action".into(),
        toml::Value::String(fault.action.name().to_string()),
    );
    match &fault.action {
        FaultAction::Partition { a, b, oneway } => {
            t.insert("a".into(), strings(a));
            t.insert("b".into(), strings(b));
            t.insert("oneway".into(), toml::Value::Boolean(*oneway));
        }
        FaultAction::Heal => {}
        FaultAction::Kill { host }
        | FaultAction::Restart { host }
        | FaultAction::Pause { host }
        | FaultAction::Resume { host }
        | FaultAction::Stop { host } => {
            t.insert("host".into(), toml::Value::String(host.clone()));
        }
        FaultAction::PowerFail { host, torn } => {
            t.insert("host".into(), toml::Value::String(host.clone()));
            t.insert("torn".into(), toml::Value::Boolean(*torn));
        }
        FaultAction::LoseReplies {
            from,
            to,
            duration_ms,
        } => {
            t.insert("from".into(), toml::Value::String(from.clone()));
            t.insert("to".into(), toml::Value::String(to.clone()));
            t.insert("duration_ms".into(), toml::Value::Integer(*duration_ms as i64));
        }
        FaultAction::Latency {
            a,
            b,
            latency_ms,
            jitter_ms,
        } => {
            t.insert("a".into(), strings(a));
            t.insert("b".into(), strings(b));
            t.insert("latency_ms".into(), toml::Value::Integer(*latency_ms as i64));
            t.insert("jitter_ms".into(), toml::Value::Integer(*jitter_ms as i64));
        }
    }
    // A fault on a role leaves the host fields the role fills empty until it fires: write
    // the role instead (a partition on a role is `shape = "isolate"`).
    for key in ["host", "from", "to"] {
        if t.get(key).and_then(toml::Value::as_str) == Some("") {
            t.remove(key);
        }
    }
    if matches!(&fault.action, FaultAction::Partition { a, .. } if a.is_empty()) {
        t.remove("a");
        t.remove("b");
        t.insert("shape".into(), toml::Value::String("isolate".into()));
    }
    for (key, role) in [
        ("role", &fault.roles.role),
        ("from_role", &fault.roles.from_role),
        ("to_role", &fault.roles.to_role),
    ] {
        if let Some(role) = role {
            t.insert(key.into(), toml::Value::String(role.clone()));
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::fault::Topology;
    use sim::scenario::Scenario;

    /// A shrunk case writes its faults back as scenario text: a fault on a role must come
    /// back as the same fault on the role, not on an empty host.
    #[test]
    fn faults_on_roles_are_written_back_as_roles() {
        let topology = Topology::new(vec!["a".into(), "b".into(), "c".into()])
            .with_role("consumer", ["b", "c"])
            .with_dynamic_role("leader", "a test leader");
        let text = "design = \"x\"\n\
            [[faults]]\nat_ms = 1\naction = \"power_fail\"\nrole = \"consumer\"\ntorn = true\n\
            [[faults]]\nat_ms = 2\naction = \"partition\"\nshape = \"isolate\"\nrole = \"leader\"\noneway = true\n\
            [[faults]]\nat_ms = 3\naction = \"lose_replies\"\nfrom = \"a\"\nto_role = \"consumer\"\nduration_ms = 5\n\
            [[faults]]\nat_ms = 4\naction = \"kill\"\nhost = \"a\"\n";
        let schedule = Scenario::parse("x.toml", text)
            .unwrap()
            .schedule(&topology)
            .unwrap();
        let mut doc = toml::Table::new();
        doc.insert("design".into(), toml::Value::String("x".into()));
        let faults = schedule
            .iter()
            .map(|f| toml::Value::Table(fault_table(f)))
            .collect();
        doc.insert("faults".into(), toml::Value::Array(faults));
        let written = toml::to_string(&doc).unwrap();
        let again = Scenario::parse("x.toml", &written)
            .and_then(|s| s.schedule(&topology))
            .unwrap_or_else(|e| panic!("{e}\n{written}"));
        assert_eq!(again, schedule, "{written}");
    }
}
