//! What a coarser `run.tick_ms` changes: a turmoil step moves the network, so every packet
//! lands on a tick boundary; a host's own timers (its sleeps, intervals and timeouts) fire at
//! their exact simulated time inside the step.

use sim::history::EventKind;

#[test]
fn a_coarser_tick_quantizes_the_network_and_keeps_timers_exact() {
    let text =
        std::fs::read_to_string(super::root().join("scenarios/nsq/ambiguous-pub-retried.toml")).unwrap();
    let coarse = text.replace("[run]\n", "[run]\ntick_ms = 3\n");
    assert_ne!(coarse, text);
    let loaded = scenarios::Loaded::parse("tick-3.toml", &coarse).unwrap();
    assert_eq!(loaded.scenario.run.tick_ms, 3);
    let history = loaded.run(1).history;
    let (mut deliveries, mut publishes_off_tick, mut effects) = (0, 0, 0);
    let mut delivered_at = std::collections::BTreeMap::new();
    for event in history.events() {
        match &event.kind {
            // A delivery is a packet from nsqd read by the consumer: on a tick boundary.
            EventKind::Deliver { id, .. } => {
                assert_eq!(event.time.0 % 3_000, 0, "a delivery between ticks: {event:?}");
                deliveries += 1;
                delivered_at.insert(*id, event.time.0);
            }
            // The producer publishes on its own interval timer, wherever that falls.
            EventKind::Publish { .. } if event.time.0 % 3_000 != 0 => publishes_off_tick += 1,
            // The effect comes `processing_ms` after the delivery, to the microsecond.
            EventKind::Effect { id, .. } => {
                let processing_us = 5_000;
                if delivered_at.get(id) == Some(&(event.time.0 - processing_us)) {
                    effects += 1;
                }
            }
            _ => {}
        }
    }
    assert!(deliveries > 10, "{deliveries} deliveries");
    assert!(
        publishes_off_tick > 5,
        "timers are not rounded to the tick: {publishes_off_tick}"
    );
    assert!(
        effects > 10,
        "effects exactly processing_ms after their delivery: {effects}"
    );
}
