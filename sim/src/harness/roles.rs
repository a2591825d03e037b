//! Faults on roles: which host a role names when its fault fires.
//!
//! The rule (documented for scenario writers in `scenarios/README.md`):
//! - a fault that ends a process fault (`restart`, `resume`) on a role acts on the host the
//!   latest unpaired opening fault on that role picked (`kill`/`power_fail`/`stop` for
//!   `restart`, `pause` for `resume`), so pairs written by role stay paired; with none, it
//!   applies nothing;
//! - otherwise a static role picks one of its hosts, drawn from the run's seed (stream 3),
//!   among those the fault can still act on (a process fault skips hosts already down,
//!   paused or stopping; if every host is, it draws among all and the fault is the no-op a
//!   fault on such a host is);
//! - a dynamic role asks the design (`Design::resolve_role`) at that moment.
//!
//! The fault event records `role R -> host`; a role that names no host now records an
//! `unresolved` fault event that says why, and nothing is applied.

use super::{BrokenDesign, Harness};
use crate::fault::{FaultAction, ScheduledFault};
use crate::history::EventKind;
use crate::world::Design;
use rand::Rng;

/// Why a role fault applies nothing now.
type Unresolved = String;

impl Harness {
    /// Applies a scheduled fault, resolving its roles first. `Err` only when the design
    /// resolved a dynamic role to a host it does not have: a broken model, reported as a
    /// crash by the run.
    pub(crate) fn fire(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        fault: &ScheduledFault,
        design: &dyn Design,
        now_ms: u64,
    ) -> Result<(), BrokenDesign> {
        if fault.roles.is_empty() {
            self.apply(sim, &fault.action, now_ms, "");
            return Ok(());
        }
        match self.resolve(fault, design)? {
            Ok((action, role_detail)) => self.apply(sim, &action, now_ms, &role_detail),
            Err(why) => {
                tracing::info!(
                    t_ms = now_ms,
                    action = fault.action.name(),
                    why,
                    "role fault unresolved"
                );
                // Recorded, not counted in `faults_applied`: nothing was applied.
                self.env.record_now(EventKind::Fault {
                    action: "unresolved".into(),
                    hosts: Vec::new(),
                    detail: format!("{} {why}; nothing applied", fault.action.name()).into(),
                });
            }
        }
        Ok(())
    }

    /// The action with every role's host filled in, and `role R -> host, ...` for the
    /// history; or why it cannot be applied now.
    fn resolve(
        &mut self,
        fault: &ScheduledFault,
        design: &dyn Design,
    ) -> Result<Result<(FaultAction, String), Unresolved>, BrokenDesign> {
        let mut action = fault.action.clone();
        let mut resolved = Vec::new();
        for (field, role) in fault.roles.bindings() {
            let host = match self.host_for(&action, role, design)? {
                Ok(host) => host,
                Err(why) => return Ok(Err(why)),
            };
            if action.fill(field, &host, &self.topology.hosts).is_none() {
                return Ok(Err(format!(
                    "role {role} -> {host}: no other host to cut it from"
                )));
            }
            resolved.push(format!("role {role} -> {host}"));
        }
        if let FaultAction::LoseReplies { from, to, .. } = &action {
            if from == to {
                return Ok(Err(format!("from and to are both {from}")));
            }
        }
        // Remember what an opening process fault picked, for its restart or resume.
        if let (Some(role), "kill" | "power_fail" | "stop" | "pause") = (&fault.roles.role, action.name()) {
            let host = action.hosts().remove(0);
            self.role_picks.push((role.clone(), action.name(), host));
        }
        Ok(Ok((action, resolved.join(", "))))
    }

    /// The host `role` names for `action` now (see the module's rule).
    fn host_for(
        &mut self,
        action: &FaultAction,
        role: &str,
        design: &dyn Design,
    ) -> Result<Result<String, Unresolved>, BrokenDesign> {
        if matches!(action, FaultAction::Restart { .. } | FaultAction::Resume { .. }) {
            let paired = self
                .role_picks
                .iter()
                .rposition(|(r, opening, _)| r == role && action.closes(opening));
            return Ok(match paired {
                Some(index) => Ok(self.role_picks.remove(index).2),
                None => Err(format!("role {role}: no earlier fault on this role to pair with")),
            });
        }
        if let Some(members) = self.topology.hosts_of(role) {
            let members = members.to_vec();
            return Ok(self.draw(action, role, &members));
        }
        match design.resolve_role(role, &self.env) {
            None => Ok(Err(format!("role {role}: no host holds it now"))),
            Some(host) if self.topology.hosts.contains(&host) => Ok(Ok(host)),
            Some(host) => Err(format!(
                "design resolved role `{role}` to `{host}`, which is not one of its hosts: {}",
                self.topology.hosts.join(", ")
            )),
        }
    }

    /// One host of a static role, drawn from the seed among those the fault can act on.
    fn draw(&mut self, action: &FaultAction, role: &str, members: &[String]) -> Result<String, Unresolved> {
        if members.is_empty() {
            return Err(format!("role {role}: no host plays it"));
        }
        let process_fault = matches!(
            action,
            FaultAction::Kill { .. }
                | FaultAction::PowerFail { .. }
                | FaultAction::Pause { .. }
                | FaultAction::Stop { .. }
        );
        let able: Vec<&String> = members
            .iter()
            .filter(|h| {
                !process_fault
                    || !(self.down.contains(*h) || self.paused.contains(*h) || self.stopping.contains_key(*h))
            })
            .collect();
        let pool: Vec<&String> = if able.is_empty() {
            members.iter().collect()
        } else {
            able
        };
        Ok(pool[self.role_rng.random_range(0..pool.len())].clone())
    }
}
