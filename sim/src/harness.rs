//! The harness: applies the schedule's faults to the turmoil `Sim` (and to the process
//! state host software watches), keeps what it took down, and heals everything after the
//! fault phase.
//!
//! Faults name processes; the network sees machines (`machine.rs`). A process alone on its
//! machine is its own turmoil host, as it always was. On a shared machine, kill, stop, restart
//! and pause act on the one process (through the machine's supervisor), while power_fail,
//! partitions, lost replies and latency act on its machine; every link below joins two
//! machines.

use crate::env::Env;
use crate::fault::{FaultAction, Topology};
use crate::history::EventKind;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

mod roles;

/// What a link between two hosts does with the packets sent over it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// Dropped both ways, with what was in flight (a host without power).
    Cut,
    /// Each direction on its own: `x` to `y`, then `y` to `x`.
    Ways(Way, Way),
}

/// One direction of a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    Open,
    /// Kept until the direction opens again, then delivered in order (TCP retransmits).
    Held,
    /// Lost for good (`lose_replies`).
    Dropped,
}

const OPEN: Link = Link::Ways(Way::Open, Way::Open);

/// A fault that names a role whose resolution broke the design's own declaration.
pub(crate) type BrokenDesign = String;

pub(crate) struct Harness {
    env: Env,
    topology: Topology,
    /// The machines the topology's processes run on, in the topology's order.
    machines: Vec<String>,
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
    /// Partitions the schedule applied and no heal has repaired yet, between machines:
    /// (from, to, oneway).
    partitions: BTreeSet<(String, String, bool)>,
    /// Machines that lost power: cut off from every peer until they restart.
    powered_off: BTreeSet<String>,
    /// The processes each shared machine's power failure took down, started again when it
    /// boots.
    power_took: BTreeMap<String, Vec<String>>,
    /// What each link (a, b with a < b) is doing now, as last told to turmoil.
    links: BTreeMap<(String, String), Link>,
    link_latency: Duration,
    stop_grace_ms: u64,
    faults_applied: usize,
}

impl Harness {
    pub(crate) fn new(env: Env, topology: Topology, link_latency: Duration, stop_grace_ms: u64) -> Harness {
        let mut role_rng = ChaCha8Rng::seed_from_u64(env.seed());
        role_rng.set_stream(3);
        let mut machines: Vec<String> = Vec::new();
        for host in &topology.hosts {
            let machine = env.machine_of(host);
            if !machines.contains(&machine) {
                machines.push(machine);
            }
        }
        Harness {
            env,
            machines,
            topology,
            role_rng,
            role_picks: Vec::new(),
            down: BTreeSet::new(),
            paused: BTreeSet::new(),
            stopping: BTreeMap::new(),
            lose_replies_until: Vec::new(),
            partitions: BTreeSet::new(),
            links: BTreeMap::new(),
            powered_off: BTreeSet::new(),
            power_took: BTreeMap::new(),
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
        // Called every step: with no fault in force and nothing blocked already (the drain,
        // most of a run), there is nothing to rebuild.
        if self.partitions.is_empty()
            && self.lose_replies_until.is_empty()
            && self.powered_off.is_empty()
            && self.env.0.unreachable.borrow().is_empty()
        {
            return;
        }
        let mut blocked = BTreeSet::new();
        for (x, y, oneway) in &self.partitions {
            blocked.insert((x.clone(), y.clone()));
            if !oneway {
                blocked.insert((y.clone(), x.clone()));
            }
        }
        for (_, from, to) in &self.lose_replies_until {
            let (from, to) = (self.env.machine_of(from), self.env.machine_of(to));
            if from != to {
                blocked.insert((from, to));
            }
        }
        for machine in &self.powered_off {
            for other in self.others(machine) {
                blocked.insert((machine.clone(), other.clone()));
                blocked.insert((other, machine.clone()));
            }
        }
        *self.env.0.unreachable.borrow_mut() = blocked;
    }

    fn others(&self, machine: &str) -> Vec<String> {
        self.machines.iter().filter(|m| *m != machine).cloned().collect()
    }

    /// Drops `host`'s software: its whole turmoil host when it is alone on its machine, else
    /// just its future in the machine's supervisor.
    fn take_down(&self, sim: &mut turmoil::Sim<'_>, host: &str) {
        match self.env.shared_machine(host) {
            Some(machine) => machine.take_down(host),
            None => sim.crash(host),
        }
    }

    /// Where the shared processes among `hosts` run, for the fault's detail ("" when none
    /// shares a machine, so histories without colocation keep their bytes).
    fn where_detail(&self, hosts: &[String]) -> String {
        let placement = self.env.0.placement.borrow();
        let named: Vec<String> = hosts
            .iter()
            .map(|h| placement.where_detail(h))
            .filter(|d| !d.is_empty())
            .collect();
        named.join(", ")
    }

    fn record(&mut self, action: &str, hosts: Vec<String>, detail: String) {
        self.sync_reachability();
        self.faults_applied += 1;
        self.env.record_now(EventKind::Fault {
            action: action.into(),
            hosts,
            detail: detail.into(),
        });
    }

    /// Time-driven bookkeeping: expire `lose_replies`, finish or escalate graceful stops.
    pub(crate) fn tend(&mut self, sim: &mut turmoil::Sim<'_>, now_ms: u64) {
        let (expired, open): (Vec<_>, Vec<_>) = self
            .lose_replies_until
            .drain(..)
            .partition(|(until, _, _)| *until <= now_ms);
        self.lose_replies_until = open;
        if !expired.is_empty() {
            self.settle_links(sim);
        }
        self.pass_open_ways(sim);
        for (_, from, to) in expired {
            self.record("lose_replies_end", vec![from, to], String::new());
        }
        self.sync_reachability();
        let stopping: Vec<(String, u64)> = self.stopping.iter().map(|(h, t)| (h.clone(), *t)).collect();
        for (host, deadline) in stopping {
            if !self.env.process(&host).is_running() {
                self.stopping.remove(&host);
                self.take_down(sim, &host); // the exited software's runtime is torn down
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
                self.take_down(sim, &host);
                self.mark_down(&host);
            }
        }
    }

    fn kill(&mut self, sim: &mut turmoil::Sim<'_>, host: &str) {
        self.unpause(sim, host);
        self.take_down(sim, host);
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
            self.settle_links(sim);
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
        let mut hosts = action.hosts();
        match action {
            FaultAction::Partition { a, b, oneway } => {
                // Between machines: two processes on one machine talk over loopback.
                for x in a {
                    for y in b {
                        let (x, y) = (self.env.machine_of(x), self.env.machine_of(y));
                        if x != y {
                            self.partitions.insert((x, y, *oneway));
                        }
                    }
                }
                self.settle_links(sim);
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
                if let Some((hosts, detail)) = self.power_fail(sim, host, *torn) {
                    self.record(action.name(), hosts, joined(role_detail, detail));
                }
                return;
            }
            FaultAction::Restart { host } => {
                if !self.down.remove(host) {
                    return; // not down: a restart of a running process is not a fault
                }
                hosts = self.bring_up(sim, host);
            }
            FaultAction::Pause { host } => {
                if self.down.contains(host) || !self.paused.insert(host.clone()) {
                    return;
                }
                let state = self.env.state(host);
                state.paused.set(true);
                state.changed.notify_waiters();
                self.settle_links(sim);
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
                self.lose_replies_until
                    .push((now_ms + duration_ms, from.clone(), to.clone()));
                self.settle_links(sim);
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
                        let (x, y) = (self.env.machine_of(x), self.env.machine_of(y));
                        if x == y {
                            continue; // loopback
                        }
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
        let detail = joined(&action.detail(), self.where_detail(&hosts));
        self.record(action.name(), hosts, joined(role_detail, detail));
    }

    /// `host`'s machine loses power. Returns the processes it took down (`host` first) and
    /// the detail to record, or `None` when the machine was already dark.
    fn power_fail(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        host: &str,
        torn: bool,
    ) -> Option<(Vec<String>, String)> {
        let machine = self.env.machine_of(host);
        let Some(shared) = self.env.shared_machine(host) else {
            if self.down.contains(host) {
                return None;
            }
            self.stopping.remove(host);
            // A machine that loses power sends nothing: no FIN, no RST. Its links are cut
            // before its software goes, so the closes its sockets would send are lost, and
            // peers learn of the crash only from their own timeouts. (A `kill` is a process
            // crash: the kernel closes the sockets and peers see it at once.)
            // Cut first (dropping what its links held), then resume and kill: nothing
            // the dying software sends gets out.
            self.powered_off.insert(machine);
            self.settle_links(sim);
            self.kill(sim, host);
            let detail = self.lose_unsynced(host, torn);
            return Some((vec![host.to_string()], detail));
        };
        if self.powered_off.contains(&machine) {
            return None;
        }
        // The same on a shared machine, for every process on it: cut, then the whole turmoil
        // host goes (supervisor, every process, loopback segments in flight).
        self.powered_off.insert(machine.clone());
        self.settle_links(sim);
        let members = self.env.0.placement.borrow().members(&machine);
        let mut taken: Vec<String> = members
            .iter()
            .filter(|p| !self.down.contains(*p))
            .cloned()
            .collect();
        if let Some(at) = taken.iter().position(|p| p == host) {
            let named = taken.remove(at);
            taken.insert(0, named);
        }
        for process in &taken {
            self.stopping.remove(process);
            self.unpause(sim, process);
            self.env.state(process).running.set(false);
            self.mark_down(process);
        }
        shared.power_off();
        sim.crash(machine.as_str());
        let disks: Vec<String> = members
            .iter()
            .map(|p| format!("{p}: {}", self.lose_unsynced(p, torn)))
            .collect();
        self.power_took.insert(machine.clone(), taken.clone());
        let detail = format!("machine {machine}; {}", disks.join("; "));
        let hosts = if taken.is_empty() {
            vec![host.to_string()]
        } else {
            taken
        };
        Some((hosts, detail))
    }

    /// Reverts `host`'s disk to what was fsynced, and says what that lost.
    fn lose_unsynced(&self, host: &str, torn: bool) -> String {
        let report = self.env.disk(host).power_fail(torn, &mut *self.env.rng());
        format!(
            "{}unsynced bytes lost: {}, files reverted: {}, torn bytes kept: {}",
            if torn { "torn last write; " } else { "" },
            report.bytes_lost,
            report.files_reverted,
            report.torn_bytes_kept
        )
    }

    /// Starts `host` again (already taken out of `down`). On a shared machine without power,
    /// the machine boots and starts what its power failure took down too. Returns the
    /// processes started, `host` first.
    fn bring_up(&mut self, sim: &mut turmoil::Sim<'_>, host: &str) -> Vec<String> {
        let machine = self.env.machine_of(host);
        let Some(shared) = self.env.shared_machine(host) else {
            self.power_on(sim, host);
            sim.bounce(host);
            return vec![host.to_string()];
        };
        let mut started = vec![host.to_string()];
        if self.powered_off.contains(&machine) {
            for process in self.power_took.remove(&machine).unwrap_or_default() {
                if process != host && self.down.remove(&process) {
                    started.push(process);
                }
            }
            for process in &started {
                shared.start(process);
            }
            self.power_on(sim, &machine);
            sim.bounce(machine.as_str()); // a new supervisor starts every process marked up
        } else {
            shared.start(host);
        }
        started
    }

    /// A powered-off machine comes back on the network, minus the scheduled partitions that
    /// still stand.
    fn power_on(&mut self, sim: &mut turmoil::Sim<'_>, machine: &str) {
        if self.powered_off.remove(machine) {
            self.settle_links(sim);
        }
    }

    fn heal_network(&mut self, sim: &mut turmoil::Sim<'_>) {
        self.partitions.clear();
        self.lose_replies_until.clear();
        for (i, x) in self.machines.iter().enumerate() {
            for y in &self.machines[i + 1..] {
                sim.set_link_latency(x.as_str(), y.as_str(), self.link_latency);
            }
        }
        // A host without power stays unreachable until it restarts; a paused one keeps
        // its links held until it resumes.
        self.settle_links(sim);
    }

    /// What link `x`-`y` should be doing, from every fault that stands on it.
    /// - A host without power is cut off: what was in flight is gone.
    /// - A partition, or a paused end, holds a direction: TCP retransmits what the
    ///   partition swallowed, so it arrives, in order, once the partition heals. (turmoil's
    ///   own `partition` drops segments for good, which leaves a hole in the stream no later
    ///   segment gets past, not even a FIN: a database session whose client vanished behind
    ///   a partition would keep its locks for ever, where a real one gets its client's
    ///   retransmitted statement or FIN after the heal.)
    /// - `lose_replies` drops what crosses it: the reply is lost and the connection with it.
    fn link_wanted(&self, x: &str, y: &str) -> Link {
        if self.powered_off.contains(x) || self.powered_off.contains(y) {
            return Link::Cut;
        }
        Link::Ways(self.way_wanted(x, y), self.way_wanted(y, x))
    }

    ///
    /// `from` and `to` are machines. A paused process alone on its machine holds the machine's
    /// links (its name is the machine's); one paused on a shared machine holds nothing, as
    /// the kernel keeps taking in what its sockets are sent while the process is stopped.
    fn way_wanted(&self, from: &str, to: &str) -> Way {
        let partitioned = self
            .partitions
            .iter()
            .any(|(a, b, oneway)| (a == from && b == to) || (!oneway && a == to && b == from));
        if partitioned || self.paused.contains(from) || self.paused.contains(to) {
            return Way::Held;
        }
        if self
            .lose_replies_until
            .iter()
            .any(|(_, f, t)| self.env.machine_of(f) == from && self.env.machine_of(t) == to)
        {
            return Way::Dropped;
        }
        Way::Open
    }

    /// Tells turmoil what changed on every link. turmoil holds a link both ways only, so a
    /// link held one way is held both ways and [`Harness::pass_open_ways`] delivers the open
    /// direction's packets every step; a drop under a hold the other way is held instead.
    fn settle_links(&mut self, sim: &mut turmoil::Sim<'_>) {
        for (i, x) in self.machines.iter().enumerate() {
            for y in &self.machines[i + 1..] {
                let wanted = self.link_wanted(x, y);
                let key = (x.clone(), y.clone());
                let now = self.links.get(&key).copied().unwrap_or(OPEN);
                if now == wanted {
                    continue;
                }
                let (x, y) = (x.as_str(), y.as_str());
                match wanted {
                    Link::Cut => sim.partition(x, y),
                    Link::Ways(a, b) if a == Way::Held || b == Way::Held => {
                        if !matches!(now, Link::Ways(Way::Held, _) | Link::Ways(_, Way::Held)) {
                            sim.release(x, y); // undo a cut or a drop first
                            sim.hold(x, y);
                        }
                    }
                    Link::Ways(a, b) => {
                        // Releasing delivers what was held, in order, and opens both ways.
                        sim.release(x, y);
                        if a == Way::Dropped {
                            sim.partition_oneway(x, y);
                        }
                        if b == Way::Dropped {
                            sim.partition_oneway(y, x);
                        }
                    }
                }
                self.links.insert(key, wanted);
            }
        }
    }

    /// On links held one way only, sends the open direction's packets on.
    fn pass_open_ways(&self, sim: &mut turmoil::Sim<'_>) {
        let mut open_from = BTreeSet::new();
        for ((x, y), link) in &self.links {
            match link {
                Link::Ways(Way::Held, Way::Open) => {
                    open_from.insert((sim.lookup(y.as_str()), sim.lookup(x.as_str())))
                }
                Link::Ways(Way::Open, Way::Held) => {
                    open_from.insert((sim.lookup(x.as_str()), sim.lookup(y.as_str())))
                }
                _ => false,
            };
        }
        if open_from.is_empty() {
            return;
        }
        sim.links(|links| {
            for link in links {
                for sent in link {
                    let (src, dst) = sent.pair();
                    if open_from.contains(&(src.ip(), dst.ip())) {
                        sent.deliver();
                    }
                }
            }
        });
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
        // One at a time: booting a shared machine starts others of `down` with it.
        while let Some(host) = self.down.pop_first() {
            let started = self.bring_up(sim, &host);
            let detail = joined("heal", self.where_detail(&started));
            self.record("restart", started, detail);
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
