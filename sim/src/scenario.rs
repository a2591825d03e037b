//! Scenario files (TOML): design, design config, workload, run settings, faults (an explicit
//! schedule or a swarm profile) and expected verdicts. The schema is documented in
//! `scenarios/README.md`. Every error names the file, the line and the field.

use crate::fault::{
    FaultAction, RoleField, RoleTargets, ScheduledFault, Shape, SwarmProfile, Topology, ACTION_NAMES,
    SWARM_ACTIONS,
};
use crate::verdict::{Expectation, Property};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

/// A scenario file that could not be used. Displays as one line: `path:line: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.path, line, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

impl std::error::Error for ScenarioError {}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// Turns a toml error into one line with the line number of its span.
pub fn toml_error(path: &str, text: &str, error: &toml::de::Error) -> ScenarioError {
    ScenarioError {
        path: path.to_string(),
        line: error.span().map(|span| line_of(text, span.start)),
        message: error.message().trim().replace('\n', " "),
    }
}

/// The messages producers publish. Designs read what applies to them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Messages to publish, numbered 1..=messages across all producers (id 0 is the zero
    /// value).
    #[schemars(range(max = 10_000_000))]
    pub messages: u64,
    /// Producers sharing the message source.
    #[schemars(range(min = 1))]
    pub producers: u32,
    /// Pause between one producer's publishes.
    pub publish_interval_ms: u64,
    /// When > 0, message i carries key `k{i % keys}` (for per-key ordering).
    pub keys: u32,
    /// Simulated time before the first publish (consumers may start earlier).
    pub start_ms: u64,
}

impl Default for Workload {
    fn default() -> Workload {
        Workload {
            messages: 100,
            producers: 1,
            publish_interval_ms: 1,
            keys: 0,
            start_ms: 0,
        }
    }
}

/// Upper bound on `workload.messages`, so a typo cannot ask for a run that never ends.
pub const WORKLOAD_MESSAGES_MAX: u64 = 10_000_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RunSettings {
    /// Simulated time per turmoil step. Coarser ticks run faster: packets land on tick
    /// boundaries, a host's timers stay exact. 1 ms is tokio's resolution.
    #[schemars(range(min = 1, max = 1000))]
    pub tick_ms: u64,
    /// Length of the fault phase; then everything is healed and the run drains.
    pub fault_phase_ms: u64,
    /// Budget for the drain; a design not quiescent by then is a liveness verdict.
    pub drain_ms: u64,
    /// Default one-way latency of every link.
    pub link_latency_ms: u64,
    /// After `stop`, how long a process may take to shut down before it is killed.
    pub stop_grace_ms: u64,
    /// The seed `jetsam run` and the test suite use when none is given (a regression case
    /// records the seed it failed on).
    pub seed: u64,
    /// Processes that share a machine, one list per machine (`[["producer1", "nsqd1"]]`),
    /// replacing the design's own placement. A machine's processes talk over loopback;
    /// kill, stop, restart and pause act on one process, power_fail and partitions on the
    /// machine. Empty: each process on a machine of its own (or the design's placement).
    pub colocate: Vec<Vec<String>>,
}

impl Default for RunSettings {
    fn default() -> RunSettings {
        RunSettings {
            tick_ms: 1,
            fault_phase_ms: 5_000,
            drain_ms: 60_000,
            link_latency_ms: 1,
            stop_grace_ms: 5_000,
            seed: 1,
            colocate: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at_ms: u64,
    action: String,
    host: Option<String>,
    a: Option<Vec<String>>,
    b: Option<Vec<String>>,
    shape: Option<String>,
    role: Option<String>,
    from_role: Option<String>,
    to_role: Option<String>,
    oneway: Option<bool>,
    torn: Option<bool>,
    from: Option<String>,
    to: Option<String>,
    duration_ms: Option<u64>,
    latency_ms: Option<u64>,
    jitter_ms: Option<u64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSwarm {
    actions: Option<Vec<String>>,
    interval_ms: Option<[u64; 2]>,
    duration_ms: Option<[u64; 2]>,
    torn_write_probability: Option<f64>,
    roles: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize)]
struct RawExpect {
    #[serde(default)]
    sometimes: Vec<String>,
    #[serde(default)]
    crash: bool,
    #[serde(default = "yes")]
    drains: bool,
    #[serde(flatten)]
    properties: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    description: Option<String>,
    design: Spanned<String>,
    #[serde(default)]
    #[allow(dead_code)] // parsed by the design itself, with spans (see `design_config`)
    config: toml::Table,
    #[serde(default)]
    workload: Workload,
    #[serde(default)]
    run: RunSettings,
    #[serde(default)]
    faults: Vec<Spanned<RawFault>>,
    swarm: Option<RawSwarm>,
    expect: Option<RawExpect>,
}

/// What a scenario asserts about its runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Expect {
    pub properties: Vec<(Property, Expectation)>,
    /// Counters (see `verdict::counters`) that must be non-zero: the fault path ran.
    pub sometimes: Vec<String>,
    /// Whether a model crash is the expected outcome.
    pub crash: bool,
    /// Whether the run must drain within its budget (default true; false expects a liveness
    /// failure, e.g. a design that hangs).
    pub drains: bool,
}

impl Default for Expect {
    fn default() -> Expect {
        Expect {
            properties: Vec::new(),
            sometimes: Vec::new(),
            crash: false,
            drains: true,
        }
    }
}

#[derive(Clone, Debug)]
pub enum FaultPlan {
    None,
    /// Explicit faults, each with the line it was written on.
    Schedule(Vec<(usize, RawFaultEntry)>),
    Swarm(SwarmProfile),
}

/// A fault as written, before its hosts are checked against a design's topology.
#[derive(Clone, Debug)]
pub struct RawFaultEntry(RawFault);

#[derive(Clone, Debug)]
pub struct Scenario {
    pub path: String,
    pub text: String,
    pub name: String,
    pub description: String,
    pub design: String,
    design_line: usize,
    /// The line of `[swarm]`'s `roles`, for errors found once the design is known.
    swarm_roles_line: Option<usize>,
    pub workload: Workload,
    pub run: RunSettings,
    pub faults: FaultPlan,
    pub expect: Expect,
}

impl Scenario {
    pub fn load(path: &str) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            path: path.to_string(),
            line: None,
            message: format!("cannot read scenario: {e}"),
        })?;
        Scenario::parse(path, &text)
    }

    pub fn parse(path: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let raw: RawScenario = toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
        let error = |line: Option<usize>, message: String| ScenarioError {
            path: path.to_string(),
            line,
            message,
        };
        let run = raw.run;
        if run.tick_ms == 0 || run.tick_ms > 1_000 {
            return Err(error(
                find_key_line(text, "tick_ms"),
                "run.tick_ms: must be 1..=1000".into(),
            ));
        }
        if raw.workload.messages > WORKLOAD_MESSAGES_MAX {
            return Err(error(
                find_key_line(text, "messages"),
                format!("workload.messages: at most {WORKLOAD_MESSAGES_MAX}"),
            ));
        }
        if raw.workload.producers == 0 {
            return Err(error(
                find_key_line(text, "producers"),
                "workload.producers: must be at least 1".into(),
            ));
        }
        let swarm_roles_line = find_key_line_after(text, "[swarm]", "roles");
        let faults = match (raw.faults.is_empty(), raw.swarm) {
            (false, Some(_)) => {
                return Err(error(
                    find_key_line(text, "[swarm]"),
                    "a scenario has either [[faults]] or [swarm], not both".into(),
                ))
            }
            (true, None) => FaultPlan::None,
            (false, None) => {
                let mut entries = Vec::new();
                for (index, spanned) in raw.faults.into_iter().enumerate() {
                    let line = line_of(text, spanned.span().start);
                    let fault = spanned.into_inner();
                    if !ACTION_NAMES.contains(&fault.action.as_str()) {
                        return Err(error(
                            Some(line),
                            format!(
                                "faults[{index}].action: unknown action `{}`; actions are: {}",
                                fault.action,
                                ACTION_NAMES.join(", ")
                            ),
                        ));
                    }
                    if fault.at_ms >= run.fault_phase_ms {
                        return Err(error(
                            Some(line),
                            format!(
                                "faults[{index}].at_ms: {} is not inside the fault phase (run.fault_phase_ms = {})",
                                fault.at_ms, run.fault_phase_ms
                            ),
                        ));
                    }
                    entries.push((line, RawFaultEntry(fault)));
                }
                FaultPlan::Schedule(entries)
            }
            (true, Some(swarm)) => FaultPlan::Swarm(parse_swarm(swarm, text, &error)?),
        };
        let raw_expect = raw.expect.unwrap_or(RawExpect {
            sometimes: Vec::new(),
            crash: false,
            drains: true,
            properties: BTreeMap::new(),
        });
        let mut expect = Expect {
            properties: Vec::new(),
            sometimes: raw_expect.sometimes,
            crash: raw_expect.crash,
            drains: raw_expect.drains,
        };
        for (key, value) in raw_expect.properties {
            let line = find_key_line(text, &key);
            let property = Property::parse(&key).ok_or_else(|| {
                error(
                    line,
                    format!(
                        "expect.{key}: unknown property; properties are: {}",
                        Property::names().join(", ")
                    ),
                )
            })?;
            let expectation = value
                .as_str()
                .and_then(Expectation::parse)
                .ok_or_else(|| error(line, format!("expect.{key}: must be \"holds\" or \"violated\"")))?;
            expect.properties.push((property, expectation));
        }
        Ok(Scenario {
            path: path.to_string(),
            text: text.to_string(),
            name: raw.name.unwrap_or_else(|| path.to_string()),
            description: raw.description.unwrap_or_default(),
            design_line: line_of(text, raw.design.span().start),
            design: raw.design.into_inner(),
            swarm_roles_line,
            workload: raw.workload,
            run,
            faults,
            expect,
        })
    }

    /// An error about the `design = ...` line (e.g. an unknown design).
    pub fn design_error(&self, message: String) -> ScenarioError {
        ScenarioError {
            path: self.path.clone(),
            line: Some(self.design_line),
            message,
        }
    }

    /// Parses the `[config]` table into a design's own config type, so errors keep their
    /// line numbers. Missing keys take the type's defaults; keys outside the bounds the type
    /// declares (`#[schemars(range(...))]`) are errors on their line.
    pub fn design_config<T>(&self) -> Result<T, ScenarioError>
    where
        T: DeserializeOwned + Default + Serialize + schemars::JsonSchema,
    {
        #[derive(Deserialize)]
        struct Section<T> {
            #[serde(default)]
            config: T,
        }
        let config = toml::from_str::<Section<T>>(&self.text)
            .map(|s| s.config)
            .map_err(|e| toml_error(&self.path, &self.text, &e))?;
        crate::config::check_bounds(&config).map_err(|(key, message)| self.config_error(&key, message))?;
        Ok(config)
    }

    /// An error about a `[config]` key (a dotted path for nested sections), with its line.
    pub fn config_error(&self, key: &str, message: String) -> ScenarioError {
        let leaf = key.rsplit('.').next().unwrap_or(key);
        ScenarioError {
            path: self.path.clone(),
            line: find_key_line(&self.text, leaf),
            message: format!("config.{key}: {message}"),
        }
    }

    /// The explicit schedule, resolved against the design's hosts and roles. For a swarm,
    /// checks its `roles` against the design's and returns no faults (the seed draws them).
    pub fn schedule(&self, topology: &Topology) -> Result<Vec<ScheduledFault>, ScenarioError> {
        crate::machine::check_colocate(&self.run.colocate, &topology.hosts).map_err(|message| {
            ScenarioError {
                path: self.path.clone(),
                line: find_key_line(&self.text, "colocate"),
                message: format!("run.{message}"),
            }
        })?;
        let entries = match &self.faults {
            FaultPlan::Schedule(entries) => entries,
            FaultPlan::Swarm(profile) => {
                self.check_swarm_roles(profile, topology)?;
                return Ok(Vec::new());
            }
            FaultPlan::None => return Ok(Vec::new()),
        };
        let mut schedule = Vec::with_capacity(entries.len());
        for (index, (line, RawFaultEntry(raw))) in entries.iter().enumerate() {
            let (action, roles) = resolve(raw, topology).map_err(|message| ScenarioError {
                path: self.path.clone(),
                line: Some(*line),
                message: format!("faults[{index}]: {message}"),
            })?;
            schedule.push(ScheduledFault {
                at_ms: raw.at_ms,
                action,
                roles,
            });
        }
        schedule.sort_by_key(|f| f.at_ms);
        Ok(schedule)
    }
}

impl Scenario {
    /// A swarm draws its hosts before the run, so its `roles` must be static roles that some
    /// host plays.
    fn check_swarm_roles(&self, profile: &SwarmProfile, topology: &Topology) -> Result<(), ScenarioError> {
        let error = |message: String| ScenarioError {
            path: self.path.clone(),
            line: self.swarm_roles_line,
            message: format!("swarm.roles: {message}"),
        };
        for role in &profile.roles {
            topology.check_role(role).map_err(error)?;
            if topology.hosts_of(role).is_none() {
                return Err(error(format!(
                    "`{role}` is a dynamic role; a swarm draws hosts before the run, so it takes static roles: {}",
                    topology.roles.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        if !profile.roles.is_empty() && topology.hosts_with_any_role(&profile.roles).is_empty() {
            return Err(error("no host plays any of these roles".into()));
        }
        Ok(())
    }
}

/// The `[swarm]` table, checked as far as it can be without the design (its roles are
/// checked against the design's in `Scenario::schedule`).
fn parse_swarm(
    swarm: RawSwarm,
    text: &str,
    error: &dyn Fn(Option<usize>, String) -> ScenarioError,
) -> Result<SwarmProfile, ScenarioError> {
    let line = find_key_line(text, "[swarm]");
    let mut profile = SwarmProfile::default();
    if let Some(actions) = swarm.actions {
        for action in &actions {
            if !SWARM_ACTIONS.contains(&action.as_str()) {
                return Err(error(
                    line,
                    format!(
                        "swarm.actions: `{action}` cannot be drawn; swarm actions are: {}",
                        SWARM_ACTIONS.join(", ")
                    ),
                ));
            }
        }
        profile.actions = actions;
    }
    for (field, value, slot) in [
        ("interval_ms", swarm.interval_ms, &mut profile.interval_ms),
        ("duration_ms", swarm.duration_ms, &mut profile.duration_ms),
    ] {
        if let Some([low, high]) = value {
            if low == 0 || low > high {
                return Err(error(
                    line,
                    format!("swarm.{field}: needs [low, high] with 0 < low <= high"),
                ));
            }
            *slot = (low, high);
        }
    }
    if let Some(p) = swarm.torn_write_probability {
        if !(0.0..=1.0).contains(&p) {
            return Err(error(
                line,
                "swarm.torn_write_probability: must be within 0..=1".into(),
            ));
        }
        profile.torn_write_probability = p;
    }
    if let Some(roles) = swarm.roles {
        if roles.is_empty() {
            return Err(error(
                find_key_line_after(text, "[swarm]", "roles"),
                "swarm.roles: names no role".into(),
            ));
        }
        profile.roles = roles;
    }
    Ok(profile)
}

/// The first line that sets `key` (`key =`, `"key" =`) or opens section `key`.
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    find_key_line_after(text, "", key)
}

/// The first line that sets `key` at or after the line that opens `section` (`""`: anywhere).
fn find_key_line_after(text: &str, section: &str, key: &str) -> Option<usize> {
    let start = if section.is_empty() {
        0
    } else {
        text.lines()
            .position(|line| line.trim_start().starts_with(section))?
    };
    text.lines()
        .skip(start)
        .position(|line| {
            let line = line.trim_start();
            if key.starts_with('[') {
                return line.starts_with(key);
            }
            let rest = line
                .strip_prefix(key)
                .or_else(|| line.strip_prefix(&format!("\"{key}\"")));
            rest.is_some_and(|r| r.trim_start().starts_with('='))
        })
        .map(|i| start + i + 1)
}

/// A fault as written, resolved against the design's hosts and roles. Roles stay names
/// here; the harness picks their hosts when the fault fires.
fn resolve(raw: &RawFault, topology: &Topology) -> Result<(FaultAction, RoleTargets), String> {
    check_fields(raw)?;
    let mut roles = RoleTargets::default();
    let known = |host: &str| known_host(topology, host);
    let group = |field: &str, value: &Option<Vec<String>>| -> Result<Vec<String>, String> {
        let hosts = value
            .as_ref()
            .ok_or_else(|| format!("`{}` needs `{field}`", raw.action))?;
        if hosts.is_empty() {
            return Err(format!("`{field}` names no host"));
        }
        hosts.iter().map(|h| known(h)).collect()
    };
    let mut target = |field: &str, host: &Option<String>, role: &Option<String>, slot: RoleField| {
        target(raw, topology, &mut roles, (field, host), (slot, role))
    };
    let action = match raw.action.as_str() {
        "partition" => {
            let isolated = match (&raw.host, &raw.role) {
                (None, None) => None,
                (host, role) => Some(target("host", host, role, RoleField::Host)?),
            };
            resolve_partition(raw, topology, isolated, group)?
        }
        "heal" => FaultAction::Heal,
        "kill" | "restart" | "pause" | "resume" | "stop" | "power_fail" => {
            let host = target("host", &raw.host, &raw.role, RoleField::Host)?;
            match raw.action.as_str() {
                "kill" => FaultAction::Kill { host },
                "restart" => FaultAction::Restart { host },
                "pause" => FaultAction::Pause { host },
                "resume" => FaultAction::Resume { host },
                "stop" => FaultAction::Stop { host },
                _ => FaultAction::PowerFail {
                    host,
                    torn: raw.torn.unwrap_or(false),
                },
            }
        }
        "lose_replies" => {
            let from = target("from", &raw.from, &raw.from_role, RoleField::From)?;
            let to = target("to", &raw.to, &raw.to_role, RoleField::To)?;
            if !from.is_empty() && from == to {
                return Err("`from` and `to` are the same host".into());
            }
            FaultAction::LoseReplies {
                from,
                to,
                duration_ms: raw.duration_ms.ok_or("`lose_replies` needs `duration_ms`")?,
            }
        }
        "latency" => FaultAction::Latency {
            a: group("a", &raw.a)?,
            b: group("b", &raw.b)?,
            latency_ms: raw.latency_ms.ok_or("`latency` needs `latency_ms`")?,
            jitter_ms: raw.jitter_ms.unwrap_or(0),
        },
        other => unreachable!("action {other} checked above"),
    };
    Ok((action, roles))
}

/// `host` or `role` (`from` or `from_role`, ...): a known host now, or (an empty host and)
/// a declared role, noted in `roles` for the harness to resolve when the fault fires.
fn target(
    raw: &RawFault,
    topology: &Topology,
    roles: &mut RoleTargets,
    (field, host): (&str, &Option<String>),
    (slot, role): (RoleField, &Option<String>),
) -> Result<String, String> {
    let role_field = match slot {
        RoleField::Host => "role",
        RoleField::From => "from_role",
        RoleField::To => "to_role",
    };
    match (host, role) {
        (Some(_), Some(_)) => Err(format!("give `{field}` or `{role_field}`, not both")),
        (Some(host), None) => known_host(topology, host),
        (None, Some(role)) => {
            topology.check_role(role)?;
            let slot = match slot {
                RoleField::Host => &mut roles.role,
                RoleField::From => &mut roles.from_role,
                RoleField::To => &mut roles.to_role,
            };
            *slot = Some(role.clone());
            Ok(String::new())
        }
        (None, None) => Err(format!("`{}` needs `{field}` or `{role_field}`", raw.action)),
    }
}

fn known_host(topology: &Topology, host: &str) -> Result<String, String> {
    if topology.hosts.iter().any(|h| h == host) {
        Ok(host.to_string())
    } else {
        Err(format!(
            "unknown host `{host}`; this design's hosts are: {}",
            topology.hosts.join(", ")
        ))
    }
}

/// Every field given must belong to the action.
fn check_fields(raw: &RawFault) -> Result<(), String> {
    let given: Vec<&str> = [
        ("host", raw.host.is_some()),
        ("role", raw.role.is_some()),
        ("a", raw.a.is_some()),
        ("b", raw.b.is_some()),
        ("shape", raw.shape.is_some()),
        ("oneway", raw.oneway.is_some()),
        ("torn", raw.torn.is_some()),
        ("from", raw.from.is_some()),
        ("from_role", raw.from_role.is_some()),
        ("to", raw.to.is_some()),
        ("to_role", raw.to_role.is_some()),
        ("duration_ms", raw.duration_ms.is_some()),
        ("latency_ms", raw.latency_ms.is_some()),
        ("jitter_ms", raw.jitter_ms.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(name, _)| name)
    .collect();
    let allowed: &[&str] = match raw.action.as_str() {
        "partition" => &["host", "role", "a", "b", "shape", "oneway"],
        "heal" => &[],
        "kill" | "restart" | "pause" | "resume" | "stop" => &["host", "role"],
        "power_fail" => &["host", "role", "torn"],
        "lose_replies" => &["from", "from_role", "to", "to_role", "duration_ms"],
        "latency" => &["a", "b", "latency_ms", "jitter_ms"],
        other => return Err(format!("unknown action `{other}`")),
    };
    match given.iter().find(|g| !allowed.contains(g)) {
        Some(extra) => Err(format!("`{}` does not take `{extra}`", raw.action)),
        None => Ok(()),
    }
}

/// A partition's sides: `a` and `b`, or a shape. `isolated` is the `host` (or, for a role,
/// empty: the sides are drawn when the fault fires).
fn resolve_partition(
    raw: &RawFault,
    topology: &Topology,
    isolated: Option<String>,
    group: impl Fn(&str, &Option<Vec<String>>) -> Result<Vec<String>, String>,
) -> Result<FaultAction, String> {
    let oneway = raw.oneway.unwrap_or(false);
    let (a, b) = match raw.shape.as_deref() {
        Some(shape_name) => {
            let shape = Shape::parse(shape_name).ok_or_else(|| {
                format!("unknown shape `{shape_name}`; shapes are: isolate, halves, bridge")
            })?;
            if raw.a.is_some() || raw.b.is_some() {
                return Err("give either `shape` or `a` and `b`, not both".into());
            }
            let too_few = || format!("shape `{shape_name}` needs more hosts than this design has");
            match (shape, isolated) {
                (Shape::Isolate, None) => return Err("`partition` needs `host` or `role`".into()),
                // A role: the isolated host is picked when the fault fires.
                (Shape::Isolate, Some(host)) if host.is_empty() => {
                    if topology.hosts.len() < 2 {
                        return Err(too_few());
                    }
                    (Vec::new(), Vec::new())
                }
                (Shape::Isolate, Some(host)) => {
                    shape.sides(&topology.hosts, Some(&host)).ok_or_else(too_few)?
                }
                (_, Some(_)) => {
                    let field = if raw.role.is_some() { "role" } else { "host" };
                    return Err(format!("shape `{shape_name}` does not take `{field}`"));
                }
                (_, None) => shape.sides(&topology.hosts, None).ok_or_else(too_few)?,
            }
        }
        None => {
            if raw.host.is_some() || raw.role.is_some() {
                return Err("`host` and `role` go with `shape = \"isolate\"`".into());
            }
            (group("a", &raw.a)?, group("b", &raw.b)?)
        }
    };
    if let Some(both) = a.iter().find(|h| b.contains(h)) {
        return Err(format!("host `{both}` is on both sides"));
    }
    Ok(FaultAction::Partition { a, b, oneway })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        Topology::new(vec!["a".into(), "b".into(), "c".into()])
    }

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse("s.toml", text)
    }

    #[test]
    fn a_full_scenario_parses() {
        let s = parse(
            r#"
name = "x"
design = "go-channel"
[config]
capacity = 4
[workload]
messages = 10
[run]
fault_phase_ms = 1000
[[faults]]
at_ms = 10
action = "partition"
shape = "isolate"
host = "b"
[[faults]]
at_ms = 20
action = "heal"
[expect]
no-loss = "violated"
"ordered(producer)" = "holds"
sometimes = ["fault.kill"]
"#,
        )
        .unwrap();
        assert_eq!(s.workload.messages, 10);
        assert_eq!(s.expect.properties.len(), 2);
        let schedule = s.schedule(&topology()).unwrap();
        assert_eq!(
            schedule[0].action,
            FaultAction::Partition {
                a: vec!["b".into()],
                b: vec!["a".into(), "c".into()],
                oneway: false
            }
        );
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let err = parse("design = \"x\"\n[workload]\nmesages = 3\n").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.to_string().contains("mesages"), "{err}");

        let err =
            parse("design = \"x\"\n\n[[faults]]\nat_ms = 1\naction = \"kil\"\nhost = \"a\"\n").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(
            err.to_string().contains("faults[0].action: unknown action `kil`"),
            "{err}"
        );

        let s = parse("design = \"x\"\n[[faults]]\nat_ms = 1\naction = \"kill\"\nhost = \"z\"\n").unwrap();
        let err = s.schedule(&topology()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "s.toml:2: faults[0]: unknown host `z`; this design's hosts are: a, b, c"
        );

        let s =
            parse("design = \"x\"\n[[faults]]\nat_ms = 1\naction = \"kill\"\nhost = \"a\"\ntorn = true\n")
                .unwrap();
        assert!(s
            .schedule(&topology())
            .unwrap_err()
            .message
            .contains("`kill` does not take `torn`"));

        let err = parse("design = \"x\"\n[expect]\nno-los = \"holds\"\n").unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(err.message.contains("unknown property"));

        let err = parse("design = \"x\"\n[expect]\nno-loss = \"maybe\"\n").unwrap_err();
        assert!(err.message.contains("\"holds\" or \"violated\""));

        let err = parse("design = 3\n").unwrap_err();
        assert_eq!(err.line, Some(1));

        let err = parse("design = \"x\"\n[[faults]]\nat_ms = 99999\naction = \"heal\"\n").unwrap_err();
        assert!(err.message.contains("fault phase"), "{err}");

        let err = parse("design = \"x\"\n[[faults]]\nat_ms = 1\naction = \"heal\"\n[swarm]\n").unwrap_err();
        assert_eq!(err.line, Some(5));
    }

    #[test]
    fn truncated_file_is_an_error_not_a_panic() {
        let err = parse("design = \"go-channel\"\n[workload\nmessages = ").unwrap_err();
        assert!(err.line.is_some());
    }

    #[test]
    fn design_config_keeps_spans() {
        #[derive(Deserialize, Serialize, schemars::JsonSchema, Default, Debug)]
        #[serde(deny_unknown_fields)]
        struct C {
            #[allow(dead_code)]
            capacity: u32,
        }
        let s = parse("design = \"x\"\n\n[config]\ncapacty = 3\n").unwrap();
        let err = s.design_config::<C>().unwrap_err();
        assert_eq!(err.line, Some(4), "{err}");
        assert!(err.message.contains("capacty"));
    }

    #[test]
    fn a_role_stays_a_name_until_the_fault_fires() {
        let with_roles = topology().with_role("consumer", ["b", "c"]);
        let s = parse(
            "design = \"x\"\n[[faults]]\nat_ms = 1\naction = \"power_fail\"\nrole = \"consumer\"\ntorn = true\n",
        )
        .unwrap();
        let schedule = s.schedule(&with_roles).unwrap();
        assert_eq!(
            schedule[0].action,
            FaultAction::PowerFail {
                host: String::new(),
                torn: true
            }
        );
        assert_eq!(schedule[0].roles.role.as_deref(), Some("consumer"));
        // Serialized as written: the role, no empty host.
        assert_eq!(
            serde_json::to_string(&schedule[0]).unwrap(),
            r#"{"at_ms":1,"action":"power_fail","torn":true,"role":"consumer"}"#
        );
        let err = s.schedule(&topology()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "s.toml:2: faults[0]: unknown role `consumer`; this design declares no roles"
        );
    }
}
