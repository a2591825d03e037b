//! Design configs, written once.
//!
//! A design's config struct is the only place a key, its default, its meaning and its bounds
//! are written: its fields, their doc comments, its `Default` and `#[schemars(range(...))]`.
//! schemars derives a JSON schema from it, and this module reads that schema to list the keys
//! (`jetsam list`, the key tables in `scenarios/README.md`) and to check bounds when a
//! scenario is parsed, naming the key's line.
//!
//! Why schemars rather than a derive of our own: serde already parses the configs, and
//! schemars reads the same serde attributes (`rename_all`, `default`, `skip`,
//! `deny_unknown_fields`), so the schema cannot disagree with the parser about which keys
//! exist or what they default to. It is widely used and kept up.

use schemars::{JsonSchema, Schema};
use serde::Serialize;
use serde_json::Value;

/// One key a config section accepts, as `jetsam list` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConfigKey {
    /// The dotted path below the section: `nsqds`, `nsqd.mem_queue_size`, `db.strategy`.
    pub name: String,
    /// The default, written as TOML.
    pub default: String,
    /// The field's doc comment, on one line.
    pub doc: String,
    /// For an enumeration: each accepted value with its doc comment.
    pub choices: Vec<(String, String)>,
    /// Inclusive bounds, where the config declares them (`#[schemars(range(...))]`).
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
}

impl ConfigKey {
    /// The doc comment with the bounds, if any: `Hosts to run (must be within 1..=4).`
    pub fn meaning(&self) -> String {
        match bounds_text(self.minimum, self.maximum) {
            Some(bounds) => format!("{} ({bounds}).", self.doc.trim_end_matches('.')),
            None => self.doc.clone(),
        }
    }

    /// Each accepted value of an enumeration with its doc: `` `careful`: Carefully. ``
    pub fn choice_lines(&self) -> Vec<String> {
        self.choices
            .iter()
            .map(|(value, doc)| match doc.is_empty() {
                true => format!("`{value}`"),
                false => format!("`{value}`: {doc}"),
            })
            .collect()
    }
}

/// A config type's schema and defaults, held by a design's registry entry.
#[derive(Clone, Copy)]
pub struct ConfigSchema {
    schema: fn() -> Schema,
    defaults: fn() -> Value,
}

fn schema_of<T: JsonSchema>() -> Schema {
    schemars::schema_for!(T)
}

fn defaults_of<T: Serialize + Default>() -> Value {
    serde_json::to_value(T::default()).expect("a config's defaults serialize")
}

impl ConfigSchema {
    pub fn of<T: JsonSchema + Serialize + Default>() -> ConfigSchema {
        ConfigSchema {
            schema: schema_of::<T>,
            defaults: defaults_of::<T>,
        }
    }

    /// Every key, top-level keys first (alphabetically), then each nested section's.
    pub fn keys(&self) -> Vec<ConfigKey> {
        let schema = (self.schema)();
        let root = schema.as_value();
        let mut keys = Vec::new();
        walk(root, root, "", &mut keys);
        keys
    }

    /// The dotted path of every leaf of the default config as the parser reads it back: the
    /// keys a scenario may set. A test holds [`ConfigSchema::keys`] against this.
    pub fn default_paths(&self) -> Vec<String> {
        let mut paths = Vec::new();
        leaf_paths(&(self.defaults)(), "", &mut paths);
        paths
    }
}

/// Checks `config` (as parsed) against the bounds its schema declares; the first key out of
/// bounds comes back as (dotted path, message).
pub fn check_bounds<T: JsonSchema + Serialize>(config: &T) -> Result<(), (String, String)> {
    let schema = schema_of::<T>();
    let root = schema.as_value();
    let value = serde_json::to_value(config).expect("a parsed config serializes");
    check_node(root, root, &value, "")
}

fn check_node(root: &Value, node: &Value, value: &Value, prefix: &str) -> Result<(), (String, String)> {
    let Some(properties) = resolve(root, node).get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (name, property) in properties {
        let Some(field) = value.get(name) else { continue };
        let path = join(prefix, name);
        if field.is_object() {
            check_node(root, property, field, &path)?;
            continue;
        }
        let (minimum, maximum) = bounds(property);
        let Some(number) = field.as_f64() else { continue };
        let below = minimum.is_some_and(|low| number < low);
        let above = maximum.is_some_and(|high| number > high);
        if below || above {
            let text = bounds_text(minimum, maximum).expect("a bound was broken, so one exists");
            return Err((path, text));
        }
    }
    Ok(())
}

fn join(prefix: &str, name: &str) -> String {
    match prefix.is_empty() {
        true => name.to_string(),
        false => format!("{prefix}.{name}"),
    }
}

/// Follows a `$ref` into `$defs`.
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    node.get("$ref")
        .and_then(Value::as_str)
        .and_then(|reference| reference.strip_prefix("#/$defs/"))
        .and_then(|name| root.get("$defs")?.get(name))
        .unwrap_or(node)
}

fn walk(root: &Value, node: &Value, prefix: &str, keys: &mut Vec<ConfigKey>) {
    let Some(properties) = resolve(root, node).get("properties").and_then(Value::as_object) else {
        return;
    };
    let mut sections = Vec::new();
    for (name, property) in properties {
        let target = resolve(root, property);
        let path = join(prefix, name);
        if target.get("properties").is_some() {
            sections.push((path, property));
            continue;
        }
        let (minimum, maximum) = bounds(property);
        keys.push(ConfigKey {
            name: path,
            default: property.get("default").map(toml_text).unwrap_or_default(),
            doc: doc(property).unwrap_or_else(|| doc(target).unwrap_or_default()),
            choices: choices(target),
            minimum,
            maximum,
        });
    }
    for (path, property) in sections {
        walk(root, property, &path, keys);
    }
}

/// The bounds a config declares. schemars gives every unsigned integer `minimum: 0`; that
/// says nothing a reader needs, so it is dropped unless a maximum comes with it.
fn bounds(property: &Value) -> (Option<f64>, Option<f64>) {
    let minimum = property.get("minimum").and_then(Value::as_f64);
    let maximum = property.get("maximum").and_then(Value::as_f64);
    match (minimum, maximum) {
        (Some(0.0), None) => (None, None),
        other => other,
    }
}

fn bounds_text(minimum: Option<f64>, maximum: Option<f64>) -> Option<String> {
    match (minimum, maximum) {
        (Some(low), Some(high)) if low == 0.0 && high > 1.0 => Some(format!("at most {high}")),
        (Some(low), Some(high)) => Some(format!("must be within {low}..={high}")),
        (Some(low), None) => Some(format!("at least {low}")),
        (None, Some(high)) => Some(format!("at most {high}")),
        (None, None) => None,
    }
}

/// A schema node's title and description (schemars splits a doc comment's first paragraph
/// off as the title), as one line.
fn doc(node: &Value) -> Option<String> {
    let parts: Vec<&str> = ["title", "description"]
        .iter()
        .filter_map(|key| node.get(*key).and_then(Value::as_str))
        .collect();
    (!parts.is_empty()).then(|| parts.join(". ").split_whitespace().collect::<Vec<_>>().join(" "))
}

/// An enumeration's values: `enum: [...]`, or `oneOf` of `const`s when variants have docs.
fn choices(node: &Value) -> Vec<(String, String)> {
    if let Some(values) = node.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .filter_map(Value::as_str)
            .map(|v| (v.to_string(), String::new()))
            .collect();
    }
    let Some(variants) = node.get("oneOf").and_then(Value::as_array) else {
        return Vec::new();
    };
    variants
        .iter()
        .flat_map(|variant| {
            let docs = doc(variant).unwrap_or_default();
            let values: Vec<String> = match variant.get("const").and_then(Value::as_str) {
                Some(value) => vec![value.to_string()],
                None => variant
                    .get("enum")
                    .and_then(Value::as_array)
                    .map(|all| all.iter().filter_map(Value::as_str).map(String::from).collect())
                    .unwrap_or_default(),
            };
            values.into_iter().map(move |v| (v, docs.clone()))
        })
        .collect()
}

/// A JSON default written as the TOML a scenario would use.
fn toml_text(value: &Value) -> String {
    match value {
        Value::String(text) => format!("{text:?}"),
        Value::Array(items) => format!("[{}]", items.iter().map(toml_text).collect::<Vec<_>>().join(", ")),
        Value::Null => "(none)".to_string(),
        other => other.to_string(),
    }
}

fn leaf_paths(value: &Value, prefix: &str, paths: &mut Vec<String>) {
    match value.as_object() {
        Some(map) => {
            for (name, child) in map {
                leaf_paths(child, &join(prefix, name), paths);
            }
        }
        None => paths.push(prefix.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// A config in miniature.
    #[derive(Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields, default)]
    struct Example {
        /// Hosts to run.
        #[schemars(range(min = 1, max = 4))]
        hosts: u32,
        /// What to do.
        mode: Mode,
        nested: Nested,
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        /// Carefully.
        Careful,
        /// Carelessly.
        Careless,
    }

    #[derive(Serialize, Deserialize, JsonSchema, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Nested {
        /// A rate.
        #[schemars(range(min = 0.0, max = 1.0))]
        rate: f64,
    }

    impl Default for Example {
        fn default() -> Example {
            Example {
                hosts: 2,
                mode: Mode::Careful,
                nested: Nested::default(),
            }
        }
    }

    #[test]
    fn keys_come_from_the_struct_with_defaults_docs_choices_and_bounds() {
        let keys = ConfigSchema::of::<Example>().keys();
        let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["hosts", "mode", "nested.rate"]);
        assert_eq!(keys[0].default, "2");
        assert_eq!(keys[0].doc, "Hosts to run.");
        assert_eq!((keys[0].minimum, keys[0].maximum), (Some(1.0), Some(4.0)));
        assert_eq!(keys[1].default, "\"careful\"");
        assert_eq!(
            keys[1].choices,
            [
                ("careful".to_string(), "Carefully.".to_string()),
                ("careless".to_string(), "Carelessly.".to_string())
            ]
        );
        assert_eq!(keys[2].default, "0.0");
        assert_eq!(
            ConfigSchema::of::<Example>().default_paths(),
            ["hosts", "mode", "nested.rate"]
        );
    }

    #[test]
    fn bounds_are_checked_with_the_dotted_path() {
        assert_eq!(check_bounds(&Example::default()), Ok(()));
        let config = Example {
            hosts: 5,
            ..Example::default()
        };
        assert_eq!(
            check_bounds(&config),
            Err(("hosts".to_string(), "must be within 1..=4".to_string()))
        );
        let config = Example {
            nested: Nested { rate: 1.5 },
            ..Example::default()
        };
        assert_eq!(
            check_bounds(&config),
            Err(("nested.rate".to_string(), "must be within 0..=1".to_string()))
        );
    }
}
