//! `Findings`, keyed by anomaly kind, and `check_all`, which runs every registered checker.

use super::{Anomaly, AnomalyKind, PublishIndex, Runs, CHECKERS, WITNESSES_PER_KIND_MAX};
use crate::history::{EventKind, History, SimTime};
use serde::ser::SerializeMap;
use serde::Serialize;
use std::collections::BTreeMap;

/// The output of every registered checker over one history: anomalies by kind, each kind's
/// in the order its checker found them (group by group, in declaration order). Of each kind
/// the first `WITNESSES_PER_KIND_MAX` are kept as witnesses; all are counted.
///
/// **Invariant:** no kind maps to an empty list, so two `Findings` with the same anomalies
/// are equal, and a clean history's equals `Findings::default()`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Findings {
    by_kind: BTreeMap<AnomalyKind, Found>,
}

/// One kind's anomalies: the witnesses kept, how many were found, and the earliest time any
/// of them names (a promise's excuses are looked for from there).
#[derive(Clone, Debug, PartialEq)]
struct Found {
    witnesses: Vec<Anomaly>,
    count: usize,
    earliest: Option<SimTime>,
}

impl Findings {
    /// The kept anomalies of one kind (the first `WITNESSES_PER_KIND_MAX` found); empty if
    /// none were found (or no checker produces it). `count` says how many there were.
    pub fn get(&self, kind: AnomalyKind) -> &[Anomaly] {
        self.by_kind
            .get(&kind)
            .map_or(&[], |found| found.witnesses.as_slice())
    }

    /// How many anomalies of one kind were found, kept or not.
    pub fn count(&self, kind: AnomalyKind) -> usize {
        self.by_kind.get(&kind).map_or(0, |found| found.count)
    }

    /// The earliest time any anomaly of one kind names, kept or not.
    pub fn earliest(&self, kind: AnomalyKind) -> Option<SimTime> {
        self.by_kind.get(&kind).and_then(|found| found.earliest)
    }

    /// Every kept anomaly, kind by kind (kinds ordered by name, then scope).
    pub fn iter(&self) -> impl Iterator<Item = &Anomaly> {
        self.by_kind.values().flat_map(|found| &found.witnesses)
    }

    /// The kinds with at least one anomaly.
    pub fn kinds(&self) -> impl Iterator<Item = AnomalyKind> + '_ {
        self.by_kind.keys().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.by_kind.is_empty()
    }

    fn push(&mut self, anomaly: Anomaly) {
        let found = self.by_kind.entry(anomaly.kind).or_insert(Found {
            witnesses: Vec::new(),
            count: 0,
            earliest: None,
        });
        found.count += 1;
        if let Some(first) = anomaly.times.first() {
            found.earliest = Some(found.earliest.map_or(*first, |t| t.min(*first)));
        }
        if found.witnesses.len() < WITNESSES_PER_KIND_MAX {
            found.witnesses.push(anomaly);
        }
        assert!(found.witnesses.len() <= WITNESSES_PER_KIND_MAX && found.witnesses.len() <= found.count);
    }
}

/// A map from each kind's key (`lost`, `reorder(producer)`) to its anomalies: the key, not
/// the name, because reorder's four scopes share the name.
impl Serialize for Findings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.by_kind.len()))?;
        for (kind, found) in &self.by_kind {
            map.serialize_entry(&kind.key(), &found.witnesses)?;
        }
        map.end()
    }
}

/// Runs every registered checker, sharing one publish index per history judged. When the
/// history declares consumer groups (`groups`: NSQ channels, each owed a copy of every
/// message), the `Runs::PerGroup` checkers judge each group on its own history (publishes,
/// faults and everything else, with only that group's consumers' deliveries, effects and
/// acks), and each anomaly names its group. `Runs::Once` checkers judge the whole history.
pub fn check_all(history: &History) -> Findings {
    let mut findings = Findings::default();
    let whole = PublishIndex::build(history);
    match groups(history) {
        Some(groups) if groups.len() > 1 => {
            for (group, members) in groups {
                let projected = project(history, &members);
                let index = PublishIndex::build(&projected);
                run(Runs::PerGroup, &projected, &index, Some(&group), &mut findings);
            }
        }
        _ => run(Runs::PerGroup, history, &whole, None, &mut findings),
    }
    run(Runs::Once, history, &whole, None, &mut findings);
    findings
}

/// Runs the registered checkers of one kind of `runs` over `history`, in registry order.
fn run(runs: Runs, history: &History, index: &PublishIndex, group: Option<&str>, findings: &mut Findings) {
    for checker in CHECKERS.iter().filter(|checker| checker.runs == runs) {
        (checker.check)(history, index, &mut |mut anomaly| {
            // A kind the checker did not register would escape the property table's checks.
            assert!(
                checker.kinds.contains(&anomaly.kind),
                "a checker found {} but registers only {:?}",
                anomaly.kind.key(),
                checker.kinds.iter().map(|kind| kind.key()).collect::<Vec<_>>()
            );
            if let Some(group) = group {
                anomaly.detail = format!("[{group}] {}", anomaly.detail);
            }
            findings.push(anomaly);
        });
    }
}

/// The declared groups and their consumers, in the order first declared.
fn groups(history: &History) -> Option<Vec<(String, Vec<String>)>> {
    let members = history.events().iter().find_map(|e| match &e.kind {
        EventKind::Groups { members } => Some(members),
        _ => None,
    })?;
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (consumer, group) in members {
        match groups.iter_mut().find(|(g, _)| g == group) {
            Some((_, list)) => list.push(consumer.clone()),
            None => groups.push((group.clone(), vec![consumer.clone()])),
        }
    }
    Some(groups)
}

/// The history as one group sees it: other groups' consumers' deliveries, effects and acks
/// left out.
fn project(history: &History, members: &[String]) -> History {
    let keep = |consumer: &str| members.iter().any(|member| member == consumer);
    History::from_events(
        history
            .events()
            .iter()
            .filter(|e| match &e.kind {
                EventKind::Deliver { consumer, .. }
                | EventKind::Effect { consumer, .. }
                | EventKind::Ack { consumer, .. } => keep(consumer),
                _ => true,
            })
            .cloned()
            .collect(),
    )
}
