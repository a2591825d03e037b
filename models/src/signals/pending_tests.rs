use super::*;
use crate::signals::signo::{SIGKILL, SIGRTMIN, SIGSTOP, SIGTERM, SIGUSR1, SIGUSR2};

fn rt(n: u8) -> Signo {
    Signo(SIGRTMIN.0 + n)
}

fn caught(limit: u32, signals: &[Signo]) -> SigPending {
    let mut state = SigPending::new(limit);
    for &signo in signals {
        state.sigaction(signo).unwrap();
    }
    state
}

#[test]
fn a_standard_signal_pending_swallows_the_next_and_the_sender_never_knows() {
    let mut state = caught(8, &[SIGUSR1]);
    assert_eq!(state.sigqueue(SIGUSR1, 1), Ok(Sent::Queued { behind: 0 }));
    assert_eq!(state.sigqueue(SIGUSR1, 2), Ok(Sent::Coalesced));
    let first = state.dequeue().unwrap();
    assert_eq!(
        (first.signo, first.value),
        (SIGUSR1, Some(1)),
        "the first instance's value"
    );
    assert_eq!(state.dequeue(), None);
    assert_eq!(state.pending_count(), 0);
}

#[test]
fn while_its_handler_runs_one_more_instance_waits_and_a_third_is_lost() {
    let mut state = caught(8, &[SIGUSR1]);
    state.sigqueue(SIGUSR1, 1).unwrap();
    let running = state.dequeue().unwrap();
    assert_eq!(state.sigqueue(SIGUSR1, 2), Ok(Sent::Queued { behind: 0 }));
    assert_eq!(state.sigqueue(SIGUSR1, 3), Ok(Sent::Coalesced));
    assert_eq!(state.dequeue(), None, "blocked while its handler runs");
    state.handler_returned(running.signo);
    assert_eq!(state.dequeue().unwrap().value, Some(2));
}

#[test]
fn realtime_instances_queue_in_order_lowest_signal_first() {
    let mut state = caught(16, &[rt(0), rt(1), SIGUSR2]);
    state.sigqueue(rt(1), 10).unwrap();
    state.sigqueue(rt(0), 20).unwrap();
    assert_eq!(state.sigqueue(rt(0), 21), Ok(Sent::Queued { behind: 1 }));
    state.sigqueue(SIGUSR2, 30).unwrap();
    let mut order = Vec::new();
    while let Some(delivery) = state.dequeue() {
        order.push(delivery.value.unwrap());
        state.handler_returned(delivery.signo);
    }
    // SIGUSR2 (12) before SIGRTMIN (34) before SIGRTMIN+1, FIFO within SIGRTMIN.
    assert_eq!(order, vec![30, 20, 21, 10]);
}

#[test]
fn sigqueue_of_a_realtime_signal_past_the_limit_is_eagain_and_frees_with_delivery() {
    let mut state = caught(2, &[rt(0)]);
    state.sigqueue(rt(0), 1).unwrap();
    state.sigqueue(rt(0), 2).unwrap();
    assert_eq!(state.sigqueue(rt(0), 3), Err(Errno::Eagain));
    assert_eq!(state.pending_count(), 2, "the failed instance was not queued");
    let delivery = state.dequeue().unwrap();
    state.handler_returned(delivery.signo);
    assert_eq!(state.sigqueue(rt(0), 3), Ok(Sent::Queued { behind: 1 }));
}

#[test]
fn a_standard_signal_past_the_limit_is_pending_without_its_value() {
    let mut state = caught(1, &[rt(0), SIGUSR1]);
    state.sigqueue(rt(0), 1).unwrap();
    assert_eq!(state.sigqueue(SIGUSR1, 2), Ok(Sent::InfoLost));
    let delivery = state.dequeue().unwrap();
    assert_eq!((delivery.signo, delivery.value), (SIGUSR1, None));
    // kill(2) of a standard signal ignores the limit and keeps its (empty) siginfo.
    assert_eq!(state.kill(SIGTERM), Ok(Sent::Queued { behind: 0 }));
}

#[test]
fn sigkill_and_sigstop_cannot_be_caught() {
    let mut state = SigPending::new(4);
    assert_eq!(state.sigaction(SIGKILL), Err(Errno::Einval));
    assert_eq!(state.sigaction(SIGSTOP), Err(Errno::Einval));
    assert_eq!(state.sigqueue(Signo(65), 1), Err(Errno::Einval));
    assert_eq!(state.sigaction(SIGTERM), Ok(()));
}

#[test]
fn an_uncaught_signal_is_delivered_to_its_default_action_and_exit_discards_the_rest() {
    let mut state = caught(8, &[rt(0)]);
    state.sigqueue(rt(0), 1).unwrap();
    state.sigqueue(rt(0), 2).unwrap();
    state.kill(SIGTERM).unwrap();
    let term = state.dequeue().unwrap();
    assert_eq!(
        (term.signo, term.caught),
        (SIGTERM, false),
        "SIGTERM (15) before SIGRTMIN"
    );
    assert_eq!(state.discard(), 2);
    assert_eq!(state.dequeue(), None);
}

proptest::proptest! {
    /// Whatever is sent, each real-time signal's accepted values come out in send order, none
    /// twice, and the queue never holds more than the limit.
    #[test]
    fn realtime_fifo_per_signal_within_the_limit(
        sends in proptest::collection::vec((0u8..3, proptest::bool::ANY), 0..200),
        limit in 1u32..10,
    ) {
        let mut state = caught(limit, &[rt(0), rt(1), rt(2)]);
        let mut accepted: Vec<Vec<u32>> = vec![Vec::new(); 3];
        let mut delivered: Vec<Vec<u32>> = vec![Vec::new(); 3];
        for (value, (n, deliver)) in sends.into_iter().enumerate() {
            if deliver {
                if let Some(d) = state.dequeue() {
                    delivered[(d.signo.0 - SIGRTMIN.0) as usize].push(d.value.unwrap());
                    state.handler_returned(d.signo);
                }
            } else if state.sigqueue(rt(n), value as u32).is_ok() {
                accepted[n as usize].push(value as u32);
            }
            proptest::prop_assert!(state.pending_count() <= limit as usize);
        }
        while let Some(d) = state.dequeue() {
            delivered[(d.signo.0 - SIGRTMIN.0) as usize].push(d.value.unwrap());
            state.handler_returned(d.signo);
        }
        proptest::prop_assert_eq!(accepted, delivered);
    }
}

#[test]
fn kill_of_a_realtime_signal_queues_each_instance_without_a_value_and_past_the_limit_merges() {
    let mut state = caught(2, &[rt(0)]);
    assert_eq!(state.kill_from(rt(0), 1), Ok(Sent::Queued { behind: 0 }));
    assert_eq!(state.kill_from(rt(0), 2), Ok(Sent::Queued { behind: 1 }));
    // No EAGAIN for kill(2): pending without siginfo, and with instances still queued.
    assert_eq!(state.kill_from(rt(0), 3), Ok(Sent::InfoLost));
    let mut origins = Vec::new();
    while let Some(d) = state.dequeue() {
        assert_eq!(d.value, None, "kill carries no value");
        origins.push(d.origin);
        state.handler_returned(d.signo);
    }
    // The bit-only instance went with the last queued one: two handler runs for three sends.
    assert_eq!(origins, vec![Some(1), Some(2)]);
}

#[test]
fn kill_of_a_standard_signal_coalesces_and_the_pending_instance_is_the_first_send() {
    let mut state = caught(8, &[SIGUSR1]);
    assert_eq!(state.kill_from(SIGUSR1, 1), Ok(Sent::Queued { behind: 0 }));
    assert_eq!(state.kill_from(SIGUSR1, 2), Ok(Sent::Coalesced));
    assert_eq!(state.dequeue().map(|d| d.origin), Some(Some(1)));
}

#[test]
fn with_sa_nodefer_the_signal_is_deliverable_again_during_its_own_handler() {
    let mut state = SigPending::new(8);
    state.sigaction_with(SIGUSR1, true, 0).unwrap();
    state.sigqueue(SIGUSR1, 1).unwrap();
    let outer = state.dequeue().unwrap();
    assert_eq!(state.sigqueue(SIGUSR1, 2), Ok(Sent::Queued { behind: 0 }));
    let inner = state.dequeue().expect("not blocked: it nests");
    assert_eq!(inner.value, Some(2));
    state.handler_returned(inner.signo);
    state.handler_returned(outer.signo);
    // Without SA_NODEFER the same sequence waits for the handler to return.
    let mut deferred = caught(8, &[SIGUSR1]);
    deferred.sigqueue(SIGUSR1, 1).unwrap();
    deferred.dequeue().unwrap();
    deferred.sigqueue(SIGUSR1, 2).unwrap();
    assert_eq!(deferred.dequeue(), None);
}

#[test]
fn another_signal_interrupts_a_handler_even_without_sa_nodefer() {
    let mut state = caught(8, &[SIGUSR1, SIGUSR2]);
    state.sigqueue(SIGUSR1, 1).unwrap();
    let outer = state.dequeue().unwrap();
    state.sigqueue(SIGUSR2, 2).unwrap();
    assert_eq!(
        state.dequeue().map(|d| d.signo),
        Some(SIGUSR2),
        "an empty sa_mask"
    );
    state.handler_returned(SIGUSR2);
    state.handler_returned(outer.signo);
}

#[test]
fn sa_mask_blocks_sigterm_during_a_handler_and_sigreturn_restores_the_mask() {
    let mut state = SigPending::new(8);
    state.sigaction_with(SIGUSR1, false, SIGTERM.bit()).unwrap();
    state.sigaction(SIGTERM).unwrap();
    state.sigqueue(SIGUSR1, 1).unwrap();
    let running = state.dequeue().unwrap();
    state.kill(SIGTERM).unwrap();
    assert_eq!(state.dequeue(), None, "SIGTERM waits for the handler");
    // sigtimedwait takes a blocked signal all the same, and runs no handler.
    assert_eq!(state.take_waited().map(|d| d.signo), Some(SIGTERM));
    state.kill(SIGTERM).unwrap();
    state.handler_returned(running.signo);
    assert_eq!(state.dequeue().map(|d| d.signo), Some(SIGTERM));
}
