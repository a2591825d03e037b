//! A scenario for the user's handler: loaded from a file, parsed from text, or built in code.

use sim::scenario::ScenarioError;

/// A scenario file's contents, parsed: its shape, workload, run settings and expectations
/// are checked here; its design's `[config]` keys and its faults' hosts when a handler is
/// plugged in ([`crate::Check::new`]), all as one-line errors naming the line.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub(crate) inner: sim::Scenario,
}

impl Scenario {
    /// Reads and parses a scenario file (`design = "nsq"`, `sink = "db"`, `[config.db]
    /// strategy = "user"` for a handler: see `scenarios/README.md` for every key).
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref().to_string_lossy().into_owned();
        Ok(Scenario {
            inner: sim::Scenario::load(&path)?,
        })
    }

    /// Parses scenario text; `name` stands for its path in errors.
    pub fn parse(name: &str, text: &str) -> Result<Scenario, ScenarioError> {
        Ok(Scenario {
            inner: sim::Scenario::parse(name, text)?,
        })
    }

    /// Starts a scenario in code: the nsq design with the database sink running the user's
    /// handler (`sink = "db"`, `strategy = "user"`), everything else at its defaults.
    pub fn builder(name: &str) -> ScenarioBuilder {
        let mut builder = ScenarioBuilder {
            doc: toml::Table::new(),
            faults: Vec::new(),
            error: None,
        };
        builder.doc.insert("name".into(), name.into());
        builder.doc.insert("design".into(), "nsq".into());
        builder.set("config.sink", "db").set("config.db.strategy", "user")
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Where it came from (the path, or the name given to [`Scenario::parse`]).
    pub fn path(&self) -> &str {
        &self.inner.path
    }
}

/// Builds scenario text key by key, then parses it as a file would be ([`Self::build`]), so
/// a bad key gets the same one-line error as in a file.
#[derive(Clone, Debug)]
pub struct ScenarioBuilder {
    doc: toml::Table,
    faults: Vec<toml::Value>,
    /// The first bad key, reported by [`Self::build`].
    error: Option<String>,
}

/// Bound on the depth of a dotted key, so a typo cannot build a deep table.
const KEY_DEPTH_MAX: usize = 8;

impl ScenarioBuilder {
    /// Sets a key by its dotted path, as in the file: `config.msg_timeout_ms`,
    /// `config.db.ack_delay_ms`, `workload.messages`, `run.fault_phase_ms`.
    pub fn set(mut self, key: &str, value: impl Into<toml::Value>) -> ScenarioBuilder {
        let parts: Vec<&str> = key.split('.').collect();
        if parts.len() > KEY_DEPTH_MAX || parts.iter().any(|p| p.is_empty()) {
            self.error.get_or_insert(format!(
                "key `{key}`: a dotted path of at most {KEY_DEPTH_MAX} names"
            ));
            return self;
        }
        let (leaf, tables) = parts.split_last().expect("split yields at least one part");
        let mut table = &mut self.doc;
        for name in tables {
            let entry = table
                .entry(name.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    self.error
                        .get_or_insert(format!("key `{key}`: `{name}` is a value, not a table"));
                    return self;
                }
            };
        }
        table.insert(leaf.to_string(), value.into());
        self
    }

    /// A scheduled fault on one host: `kill`, `restart`, `pause`, `resume`, `stop`,
    /// `power_fail` at `at_ms`.
    pub fn fault(mut self, at_ms: u64, action: &str, host: &str) -> ScenarioBuilder {
        let mut fault = toml::Table::new();
        fault.insert(
            "at_ms".into(),
            toml::Value::Integer(at_ms.min(i64::MAX as u64) as i64),
        );
        fault.insert("action".into(), action.into());
        fault.insert("host".into(), host.into());
        self.faults.push(toml::Value::Table(fault));
        self
    }

    /// Replies from `from` to `to` are lost for `duration_ms` (a FIN that never arrives).
    pub fn lose_replies(mut self, at_ms: u64, from: &str, to: &str, duration_ms: u64) -> ScenarioBuilder {
        let mut fault = toml::Table::new();
        fault.insert(
            "at_ms".into(),
            toml::Value::Integer(at_ms.min(i64::MAX as u64) as i64),
        );
        fault.insert("action".into(), "lose_replies".into());
        fault.insert("from".into(), from.into());
        fault.insert("to".into(), to.into());
        fault.insert(
            "duration_ms".into(),
            toml::Value::Integer(duration_ms.min(i64::MAX as u64) as i64),
        );
        self.faults.push(toml::Value::Table(fault));
        self
    }

    /// What the handler claims: `expect("exactly-once", "holds")`.
    pub fn expect(self, property: &str, expectation: &str) -> ScenarioBuilder {
        self.set(&format!("expect.{property}"), expectation)
    }

    /// A "sometimes" condition the run must meet (a fault that must have fired, a note that
    /// must have been recorded), so a run whose faults never hit fails instead of passing.
    pub fn sometimes(mut self, what: &str) -> ScenarioBuilder {
        let expect = self
            .doc
            .entry("expect")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(expect) = expect {
            let list = expect
                .entry("sometimes")
                .or_insert_with(|| toml::Value::Array(Vec::new()));
            if let toml::Value::Array(list) = list {
                list.push(what.into());
            }
        }
        self
    }

    /// The scenario's text, as a file would hold it.
    pub fn text(&self) -> String {
        let mut doc = self.doc.clone();
        if !self.faults.is_empty() {
            doc.insert("faults".into(), toml::Value::Array(self.faults.clone()));
        }
        toml::to_string(&doc).expect("a table serializes")
    }

    /// Parses the text as a file would be parsed (the design's keys are checked by
    /// [`crate::Check::new`]).
    pub fn build(&self) -> Result<Scenario, ScenarioError> {
        let name = self
            .doc
            .get("name")
            .and_then(toml::Value::as_str)
            .unwrap_or("scenario")
            .to_string();
        let path = format!("{name} (built in code)");
        if let Some(message) = &self.error {
            return Err(ScenarioError {
                path,
                line: None,
                message: message.clone(),
            });
        }
        Scenario::parse(&path, &self.text())
    }
}
