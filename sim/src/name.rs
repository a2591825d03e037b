//! [`Name`]: the names a history repeats on every event (hosts, consumers, producers,
//! partitions, gauges, notes), each held once and shared.
//!
//! A million-message run records millions of events naming the same few dozen hosts and
//! consumers; with a `String` each, the names were most of the history's memory (issue 14).
//! A `Name` is an `Arc<String>` taken from the thread's interner: one thin pointer (8 bytes,
//! where `Arc<str>` is 16 and `String` 24, and `Option<Name>` is 8 too), so an event stays
//! small and building one allocates nothing once the name has been seen.
//!
//! The interner is per thread, not per run: a run lives on one thread, `From<&str>` needs no
//! `Env` (models build events far from it), and the names of one design repeat from seed to
//! seed, so a thread sweeping seeds keeps the same few entries. `Arc`, not `Rc`, because a
//! history leaves its thread (`jetsam check` runs seeds on worker threads). Interning never
//! changes what is recorded: a `Name` compares, orders, prints and serializes as its text.
//! The interner is bounded ([`INTERNED_MAX`] names, each at most [`INTERNED_LEN_MAX`]
//! bytes): past that a name is allocated on its own, as a `String` was.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// Distinct names one thread's interner keeps; a design names a few dozen.
pub const INTERNED_MAX: usize = 4096;

/// Longer text (a free-form detail passed as a name) is not worth keeping.
pub const INTERNED_LEN_MAX: usize = 128;

/// The interner's set: looked up once per recorded event, so it hashes (foldhash, with a
/// fixed seed) rather than searching a tree of string compares, which cost about 330
/// instructions a lookup. Only looked up, never iterated, so its order cannot leak into a run.
type Interned = indexmap::IndexSet<Name, foldhash::fast::FixedState>;

thread_local! {
    static INTERNED: RefCell<Interned> = const { RefCell::new(Interned::with_hasher(foldhash::fast::FixedState::with_seed(0))) };
}

/// An interned, cheap-to-clone name: reads as `&str` through `Deref`, and compares, orders
/// and hashes as its text.
#[derive(Clone)]
pub struct Name(Arc<String>);

impl Name {
    /// The thread's shared copy of `text`, made on first use.
    pub fn new(text: &str) -> Name {
        if text.len() > INTERNED_LEN_MAX {
            return Name(Arc::new(text.to_owned()));
        }
        INTERNED.with(|interned| {
            let mut interned = interned.borrow_mut();
            if let Some(shared) = interned.get(text) {
                return shared.clone();
            }
            let name = Name(Arc::new(text.to_owned()));
            if interned.len() < INTERNED_MAX {
                interned.insert(name.clone());
            }
            name
        })
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// For `skip_serializing_if`: an empty detail is left out of the JSON line.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The empty name, as `String::default()` (a fault without a detail).
impl Default for Name {
    fn default() -> Name {
        Name::new("")
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.0.as_str()
    }
}

/// Orders and compares as its text, so maps keyed by `Name` look up by `&str`.
impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Name {
        Name::new(text)
    }
}

impl From<&String> for Name {
    fn from(text: &String) -> Name {
        Name::new(text)
    }
}

impl From<String> for Name {
    fn from(text: String) -> Name {
        Name::new(&text)
    }
}

impl From<&Name> for Name {
    fn from(name: &Name) -> Name {
        name.clone()
    }
}

impl From<Name> for String {
    fn from(name: Name) -> String {
        name.as_str().to_owned()
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

/// Prints as a `String` would (quoted), so debug output and snapshots do not change.
impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Name, D::Error> {
        struct NameVisitor;
        impl serde::de::Visitor<'_> for NameVisitor {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Name, E> {
                Ok(Name::new(text))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_one_thin_pointer() {
        assert_eq!(std::mem::size_of::<Name>(), 8);
        assert_eq!(std::mem::size_of::<Option<Name>>(), 8);
    }

    #[test]
    fn equal_names_share_one_allocation_and_read_as_their_text() {
        let a = Name::from("consumer1");
        let b = Name::from(String::from("consumer1"));
        assert!(Arc::ptr_eq(&a.0, &b.0), "interned");
        assert_eq!(a, "consumer1");
        assert_eq!(format!("{a} {a:?}"), "consumer1 \"consumer1\"");
        assert_eq!(Name::from("a").cmp(&Name::from("b")), std::cmp::Ordering::Less);
        let map: std::collections::BTreeMap<Name, u32> = [(a.clone(), 1)].into();
        assert_eq!(map.get("consumer1"), Some(&1));
    }

    #[test]
    fn a_name_serializes_as_a_string_and_reads_back_interned() {
        let name = Name::from("nsqd1");
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(json, "\"nsqd1\"");
        let back: Name = serde_json::from_str(&json).unwrap();
        assert!(Arc::ptr_eq(&back.0, &name.0));
        let escaped: Name = serde_json::from_str(r#""a\"b""#).unwrap();
        assert_eq!(escaped, "a\"b");
    }

    #[test]
    fn long_names_and_names_past_the_bound_are_not_kept() {
        let long = "x".repeat(INTERNED_LEN_MAX + 1);
        let (a, b) = (Name::from(long.as_str()), Name::from(long.as_str()));
        assert!(!Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a, b);
        // A fresh thread has its own interner: fill it to the bound.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for i in 0..INTERNED_MAX {
                    Name::new(&format!("n{i}"));
                }
                let (c, d) = (Name::from("past"), Name::from("past"));
                assert!(!Arc::ptr_eq(&c.0, &d.0), "past the bound: allocated alone");
                assert_eq!(c, d);
                assert_eq!(INTERNED.with(|i| i.borrow().len()), INTERNED_MAX);
            });
        });
    }
}
