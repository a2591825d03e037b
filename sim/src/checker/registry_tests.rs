//! The registry drives everything: every kind a property judges is found by a registered
//! checker, every registered kind is judged or declared informational, and `check_all` files
//! each checker's anomalies under their kinds.

use super::test_support::Build;
use super::*;
use crate::verdict::{Property, Verdicts, INFORMATIONAL, PROPERTIES};

fn registered() -> Vec<AnomalyKind> {
    CHECKERS
        .iter()
        .flat_map(|checker| checker.kinds.iter().copied())
        .collect()
}

#[test]
fn no_two_registered_kinds_share_a_key_and_every_checker_registers_one() {
    assert!(CHECKERS.iter().all(|checker| !checker.kinds.is_empty()));
    let kinds = registered();
    let keys: std::collections::BTreeSet<String> = kinds.iter().map(|kind| kind.key()).collect();
    assert_eq!(
        keys.len(),
        kinds.len(),
        "a kind key is registered twice: {kinds:?}"
    );
}

#[test]
fn every_kind_the_property_table_names_is_found_by_a_registered_checker() {
    let kinds = registered();
    for rule in &PROPERTIES {
        for kind in rule.safety.iter().chain(rule.liveness) {
            assert!(
                kinds.contains(kind),
                "{} judges {}, which no registered checker finds",
                rule.property,
                kind.key()
            );
        }
    }
}

#[test]
fn every_registered_kind_is_judged_by_a_property_or_declared_informational() {
    for kind in registered() {
        let judged = PROPERTIES
            .iter()
            .any(|rule| rule.safety.contains(&kind) || rule.liveness.contains(&kind));
        let informational = INFORMATIONAL.contains(&kind);
        assert!(
            judged != informational,
            "{}: judged by a property {judged}, informational {informational}; exactly one must hold",
            kind.key()
        );
    }
}

#[test]
fn property_all_is_the_table_in_order_and_every_name_parses_back() {
    assert_eq!(Property::ALL.len(), PROPERTIES.len());
    for (property, rule) in Property::ALL.iter().zip(&PROPERTIES) {
        assert_eq!(*property, rule.property);
        assert_eq!(Property::parse(&property.name()), Some(*property));
    }
}

/// One history with an anomaly of every message kind the registry finds on a drained run:
/// each lands under its own kind, and each property is broken by exactly its table's kinds.
#[test]
fn check_all_files_anomalies_by_kind_and_judge_reads_them_through_the_table() {
    let history = Build::new()
        .published(1..=4)
        .processed([2, 1]) // reorder in the producer and global scopes
        .deliver(3, 1)
        .deliver(3, 2)
        .effect(3)
        .effect(3) // duplicate delivery and duplicate effect
        .deliver(99, 1) // phantom; 4 is lost
        .drained()
        .history();
    let findings = check_all(&history);
    let found: Vec<String> = findings.kinds().map(|kind| kind.key()).collect();
    assert_eq!(
        found,
        [
            "duplicate-delivery",
            "duplicate-effect",
            "lost",
            "phantom",
            "reorder(global)",
            "reorder(producer)",
        ]
    );
    for kind in findings.kinds() {
        assert!(findings.get(kind).iter().all(|anomaly| anomaly.kind == kind));
    }
    let verdicts = Verdicts::judge(&history, &findings);
    for rule in &PROPERTIES {
        let verdict = verdicts.get(rule.property);
        let expected: usize = rule.safety.iter().map(|kind| findings.get(*kind).len()).sum();
        assert_eq!(verdict.safety.len(), expected, "{}", rule.property);
        assert!(verdict
            .safety
            .iter()
            .all(|anomaly| rule.safety.contains(&anomaly.kind)));
    }
}
