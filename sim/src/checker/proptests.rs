//! A faithful FIFO queue's histories pass every checker; one injected anomaly is found by
//! exactly the checker of its kind.

use super::test_support::Build;
use super::*;
use proptest::prelude::*;

#[derive(Clone, Copy, Debug)]
enum Inject {
    None,
    Loss,
    DuplicateDelivery,
    DuplicateEffect,
    Reorder,
    Phantom,
}

/// Publishes 1..=n (with some never-completed `info` publishes mixed in), then processes them
/// in order, applying the one injected anomaly at message `at`.
fn history(n: u64, info_every: u64, inject: Inject, at: u64) -> History {
    let mut b = Build::new();
    for id in 1..=n {
        b.publish(id);
        if info_every > 0 && id % info_every == 0 {
            b.info(id);
        } else {
            b.ok(id);
        }
    }
    let mut id = 1;
    while id <= n {
        match inject {
            Inject::Loss if id == at => {}
            Inject::DuplicateDelivery if id == at => {
                b.deliver(id, 1).deliver(id, 2).effect(id);
            }
            Inject::DuplicateEffect if id == at => {
                b.deliver(id, 1).effect(id).effect(id);
            }
            Inject::Reorder if id == at && id < n => {
                b.processed([id + 1, id]);
                id += 1;
            }
            _ => {
                b.processed([id]);
            }
        }
        id += 1;
    }
    if let Inject::Phantom = inject {
        b.deliver(n + 1000, 1).effect(n + 1000);
    }
    b.drained().history()
}

/// The names of the kinds found: reorder's scopes count as one name.
fn kinds_found(findings: &Findings) -> Vec<&'static str> {
    let mut kinds: Vec<&'static str> = findings.kinds().map(AnomalyKind::name).collect();
    kinds.dedup();
    kinds
}

proptest! {
    #[test]
    fn faithful_queue_passes(n in 1u64..300, info_every in 0u64..7) {
        let findings = check_all(&history(n, info_every, Inject::None, 0));
        prop_assert_eq!(findings, Findings::default());
    }

    #[test]
    fn one_injected_anomaly_is_found_by_exactly_its_checker(
        n in 2u64..300,
        at_fraction in 0.0f64..1.0,
        which in 0usize..5,
    ) {
        // The injected message must be acknowledged for `lost` to owe it, so no info here.
        let at = 1 + ((n - 1) as f64 * at_fraction) as u64;
        let at = at.min(n - 1).max(1);
        let (inject, expected) = [
            (Inject::Loss, lost::LOST),
            (Inject::DuplicateDelivery, duplicate_delivery::DUPLICATE_DELIVERY),
            (Inject::DuplicateEffect, duplicate_effect::DUPLICATE_EFFECT),
            (Inject::Reorder, reorder::kind(OrderScope::Global)),
            (Inject::Phantom, phantom::PHANTOM),
        ][which];
        let findings = check_all(&history(n, 0, inject, at));
        let kinds = kinds_found(&findings);
        prop_assert_eq!(kinds, vec![expected.name()]);
        if let Inject::Reorder = inject {
            // A swap of two messages is one reorder in every scope that orders them.
            prop_assert_eq!(findings.get(reorder::kind(OrderScope::Global)).len(), 1);
            prop_assert_eq!(findings.get(reorder::kind(OrderScope::Producer)).len(), 1);
            prop_assert!(findings.get(reorder::kind(OrderScope::Key)).is_empty());
        } else {
            let total = findings.iter().count();
            prop_assert_eq!(total, 1);
        }
    }
}
