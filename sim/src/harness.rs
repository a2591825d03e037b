//! The harness: applies the schedule's faults to the turmoil `Sim` (and to the process
//! state host software watches), keeps what it took down, and heals everything after the
//! fault phase.

use crate::env::Env;
use crate::fault::{FaultAction, Topology};
use crate::history::EventKind;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

mod roles;

/// A fault that names a role whose resolution broke the design's own declaration.
pub(crate) type BrokenDesign = String;

pub(crate) struct Harness {
    env: Env,
    topology: Topology,
    hosts: Vec<String>,
    /// Draws the host of a static role when a fault on it fires: its own stream of the run's
    /// seed (stream 3), so role faults do not shift the swarm's or the models' draws.
    role_rng: ChaCha8Rng,
    /// Hosts that role faults took down or paused and no role fault has paired yet:
    /// (role, opening action, host). A `restart`/`resume` on the role takes the latest.
    role_picks: Vec<(String, &'static str, String)>,
    /// Hosts whose software the harness took down (kill, power_fail, stop).
    down: BTreeSet<String>,
    paused: BTreeSet<String>,
    /// Hosts asked to stop, with the time by which they are killed if still running.
    stopping: BTreeMap<String, u64>,
    /// Open `lose_replies` faults: (until_ms, from, to).
    lose_replies_until: Vec<(u64, String, String)>,
    /// Partitions the schedule applied and no heal has repaired yet: (from, to, oneway).
    partitions: BTreeSet<(String, String, bool)>,
    /// Hosts that lost power: cut off from every peer until they restart.
    powered_off: BTreeSet<String>,
    link_latency: Duration,
    stop_grace_ms: u64,
    faults_applied: usize,
}

impl Harness {
    pub(crate) fn new(env: Env, topology: Topology, link_latency: Duration, stop_grace_ms: u64) -> Harness {
        let mut role_rng = ChaCha8Rng::seed_from_u64(env.seed());
        role_rng.set_stream(3);
        Harness {
            env,
            hosts: topology.hosts.clone(),
            topology,
            role_rng,
            role_picks: Vec::new(),
            down: BTreeSet::new(),
            paused: BTreeSet::new(),
            stopping: BTreeMap::new(),
            lose_replies_until: Vec::new(),
            partitions: BTreeSet::new(),
            powered_off: BTreeSet::new(),
            link_latency,
            stop_grace_ms,
            faults_applied: 0,
        }
    }

    /// Whether a graceful stop is still in progress (the drain waits for it).
    pub(crate) fn stopping_any(&self) -> bool {
        !self.stopping.is_empty()
    }

    pub(crate) fn faults_applied(&self) -> usize {
        self.faults_applied
    }

    /// Tells [`connect`] which links drop packets now.
    fn sync_reachability(&self) {
        let mut blocked = BTreeSet::new();
        for (x, y, oneway) in &self.partitions {
            blocked.insert((x.clone(), y.clone()));
            if !oneway {
                blocked.insert((y.clone(), x.clone()));
            }
        }
        for (_, from, to) in &self.lose_replies_until {
            blocked.insert((from.clone(), to.clone()));
        }
        for host in &self.powered_off {
            for other in self.others(host) {
                blocked.insert((host.clone(), other.clone()));
                blocked.insert((other, host.clone()));
            }
        }
        *self.env.0.unreachable.borrow_mut() = blocked;
    }

    fn others(&self, host: &str) -> Vec<String> {
        self.hosts.iter().filter(|h| *h != host).cloned().collect()
    }

    fn record(&mut self, action: &str, hosts: Vec<String>, detail: String) {
        self.sync_reachability();
        self.faults_applied += 1;
        self.env.record_now(EventKind::Fault {
            action: action.to_string(),
            hosts,
            detail,
        });
    }

    /// Time-driven bookkeeping: expire `lose_replies`, finish or escalate graceful stops.
    pub(crate) fn tend(&mut self, sim: &mut turmoil::Sim<'_>, now_ms: u64) {
        let (expired, open): (Vec<_>, Vec<_>) = self
            .lose_replies_until
            .drain(..)
            .partition(|(until, _, _)| *until <= now_ms);
        self.lose_replies_until = open;
        for (_, from, to) in expired {
            sim.repair_oneway(from.as_str(), to.as_str());
            self.record("lose_replies_end", vec![from, to], String::new());
        }
        self.sync_reachability();
        let stopping: Vec<(String, u64)> = self.stopping.iter().map(|(h, t)| (h.clone(), *t)).collect();
        for (host, deadline) in stopping {
            if !self.env.process(&host).is_running() {
                self.stopping.remove(&host);
                sim.crash(host.as_str()); // the exited software's runtime is torn down
                let how = if self.env.state(&host).exited.get() {
                    "exited on its own while shutting down (its crash or exit note says how)"
                } else {
                    "shut down gracefully"
                };
                self.record("stopped", vec![host.clone()], how.into());
                self.mark_down(&host);
            } else if now_ms >= deadline {
                self.stopping.remove(&host);
                self.kill(sim, &host);
                self.record("kill", vec![host], "stop grace expired".into());
            }
        }
        // A program that exited on its own (a Go panic, `os.Exit`) recorded why; its host is
        // down like a killed one. One that exited during a stop was marked down just above.
        for host in self.env.take_exited() {
            if !self.down.contains(&host) {
                sim.crash(host.as_str());
                self.mark_down(&host);
            }
        }
    }

    fn kill(&mut self, sim: &mut turmoil::Sim<'_>, host: &str) {
        self.unpause(sim, host);
        sim.crash(host);
        // Dropping the runtime drops every task and with it the RunningGuard.
        self.env.state(host).running.set(false);
        self.mark_down(host);
    }

    /// The host's software is gone; a stop request dies with it, so the next incarnation
    /// starts as a fresh process would.
    fn mark_down(&mut self, host: &str) {
        self.env.state(host).stop_requested.set(false);
        self.down.insert(host.to_string());
    }

    fn unpause(&mut self, sim: &mut turmoil::Sim<'_>, host: &str) {
        if self.paused.remove(host) {
            self.env.state(host).resume();
            let others = self.others(host);
            for other in &others {
                sim.release(host, other.as_str());
            }
        }
    }

    /// Applies `action`. `role_detail` says which roles it was resolved from (empty for a
    /// fault on hosts); the history's fault event carries it before the action's own detail.
    pub(crate) fn apply(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        action: &FaultAction,
        now_ms: u64,
        role_detail: &str,
    ) {
        tracing::info!(t_ms = now_ms, action = action.name(), detail = %action.detail(), role_detail, "fault");
        let hosts = action.hosts();
        match action {
            FaultAction::Partition { a, b, oneway } => {
                for x in a {
                    for y in b {
                        self.partitions.insert((x.clone(), y.clone(), *oneway));
                        if *oneway {
                            sim.partition_oneway(x.as_str(), y.as_str());
                        } else {
                            sim.partition(x.as_str(), y.as_str());
                        }
                    }
                }
            }
            FaultAction::Heal => self.heal_network(sim),
            FaultAction::Kill { host } => {
                if self.down.contains(host) {
                    return; // already down: nothing to kill, nothing recorded
                }
                self.stopping.remove(host);
                self.kill(sim, host);
            }
            FaultAction::PowerFail { host, torn } => {
                if self.down.contains(host) {
                    return;
                }
                self.stopping.remove(host);
                // A machine that loses power sends nothing: no FIN, no RST. Its links are cut
                // before its software goes, so the closes its sockets would send are lost, and
                // peers learn of the crash only from their own timeouts. (A `kill` is a process
                // crash: the kernel closes the sockets and peers see it at once.)
                self.unpause(sim, host); // releasing held links first, so the cut stays
                for other in self.others(host) {
                    sim.partition(host.as_str(), other.as_str());
                }
                self.powered_off.insert(host.clone());
                self.kill(sim, host);
                let report = self.env.disk(host).power_fail(*torn, &mut *self.env.rng());
                let detail = format!(
                    "{}unsynced bytes lost: {}, files reverted: {}, torn bytes kept: {}",
                    if *torn { "torn last write; " } else { "" },
                    report.bytes_lost,
                    report.files_reverted,
                    report.torn_bytes_kept
                );
                self.record(action.name(), hosts, joined(role_detail, detail));
                return;
            }
            FaultAction::Restart { host } => {
                if !self.down.remove(host) {
                    return; // not down: a restart of a running process is not a fault
                }
                self.power_on(sim, host);
                sim.bounce(host.as_str());
            }
            FaultAction::Pause { host } => {
                if self.down.contains(host) || !self.paused.insert(host.clone()) {
                    return;
                }
                let state = self.env.state(host);
                state.paused.set(true);
                state.changed.notify_waiters();
                for other in self.others(host) {
                    sim.hold(host.as_str(), other.as_str());
                }
            }
            FaultAction::Resume { host } => {
                if !self.paused.contains(host) {
                    return;
                }
                self.unpause(sim, host);
            }
            FaultAction::Stop { host } => {
                if self.down.contains(host) || self.stopping.contains_key(host) {
                    return;
                }
                self.unpause(sim, host);
                let state = self.env.state(host);
                state.stop_requested.set(true);
                state.changed.notify_waiters();
                self.stopping.insert(host.clone(), now_ms + self.stop_grace_ms);
            }
            FaultAction::LoseReplies {
                from,
                to,
                duration_ms,
            } => {
                sim.partition_oneway(from.as_str(), to.as_str());
                self.lose_replies_until
                    .push((now_ms + duration_ms, from.clone(), to.clone()));
            }
            FaultAction::Latency {
                a,
                b,
                latency_ms,
                jitter_ms,
            } => {
                let low = Duration::from_millis(*latency_ms);
                for x in a {
                    for y in b {
                        sim.set_link_latency(x.as_str(), y.as_str(), low);
                        sim.set_link_max_message_latency(
                            x.as_str(),
                            y.as_str(),
                            low + Duration::from_millis(*jitter_ms),
                        );
                    }
                }
            }
        }
        self.record(action.name(), hosts, joined(role_detail, action.detail()));
    }

    /// A powered-off host comes back on the network, minus the scheduled partitions that
    /// still stand.
    fn power_on(&mut self, sim: &mut turmoil::Sim<'_>, host: &str) {
        if !self.powered_off.remove(host) {
            return;
        }
        self.sync_reachability();
        for other in self.others(host) {
            sim.repair(host, other.as_str());
        }
        for (x, y, oneway) in &self.partitions {
            if x == host || y == host {
                if *oneway {
                    sim.partition_oneway(x.as_str(), y.as_str());
                } else {
                    sim.partition(x.as_str(), y.as_str());
                }
            }
        }
    }

    fn heal_network(&mut self, sim: &mut turmoil::Sim<'_>) {
        self.partitions.clear();
        for (i, x) in self.hosts.iter().enumerate() {
            for y in &self.hosts[i + 1..] {
                sim.set_link_latency(x.as_str(), y.as_str(), self.link_latency);
                // A host without power stays unreachable until it restarts.
                if !self.powered_off.contains(x) && !self.powered_off.contains(y) {
                    sim.repair(x.as_str(), y.as_str());
                }
            }
        }
        self.lose_replies_until.clear();
        self.sync_reachability();
    }

    /// End of the fault phase: heal every partition, resume every pause, restart every host
    /// the harness took down. A graceful stop in progress is not cut short: it finishes (or
    /// is killed after its grace period, as in any phase) and [`Harness::restart_down`]
    /// brings the host back during the drain.
    pub(crate) fn heal_everything(&mut self, sim: &mut turmoil::Sim<'_>) {
        self.heal_network(sim);
        for host in self.paused.clone() {
            self.unpause(sim, &host);
        }
        self.restart_down(sim);
    }

    /// During the drain, nothing stays down.
    pub(crate) fn restart_down(&mut self, sim: &mut turmoil::Sim<'_>) {
        for host in std::mem::take(&mut self.down) {
            self.power_on(sim, &host);
            sim.bounce(host.as_str());
            self.record("restart", vec![host], "heal".into());
        }
    }
}

/// `first; second`, leaving out whichever is empty.
fn joined(first: &str, second: String) -> String {
    match (first.is_empty(), second.is_empty()) {
        (true, _) => second,
        (false, true) => first.to_string(),
        (false, false) => format!("{first}; {second}"),
    }
}
