//! Planning inside the coordinator: when to re-plan (joins wait for
//! peers still probing, losses do not wait), building the cluster from the
//! live peers, running the planner (with the model-secret fallback),
//! shipping each peer its slice, and switching plans once every ack is in.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use tessera_plan::planners::{self, Request};
use tessera_plan::sim::SimConfig;
use tessera_plan::{Cluster, Device, Link, Plan};
use tessera_runtime::{Hub, PeerTask, Program, Runner};

use super::plans::{self, Active, Member, PlanState, Traffic};
use super::{Coordinator, PeerState, Want};
use crate::PeerId;
use crate::error::{MeshError, Result};
use crate::msg::{LoadPlan, Msg, WireTask};
use crate::weights;

/// A peer's tasks packed for the wire: weights in `held` go by reference.
struct Packed {
    tasks: Vec<WireTask>,
    /// Content hashes of every weight the tasks need (held after loading).
    hashes: HashSet<u64>,
    /// Weight bytes referred to instead of sent.
    reused: u64,
}

fn pack(tasks: &[PeerTask], label: impl Fn(&PeerTask) -> String, held: &HashSet<u64>) -> Packed {
    let mut cache = weights::HashCache::default();
    let mut hashes = HashSet::new();
    for t in tasks {
        let named = weights::named(&t.graph);
        cache.remember(&named);
        hashes.extend(named.keys().copied());
    }
    let mut reused = 0u64;
    let mut wire = Vec::with_capacity(tasks.len());
    for t in tasks {
        let mut refer = |w: &tessera_graph::Tensor| {
            if w.bytes() < weights::MIN_BYTES || held.is_empty() {
                return None;
            }
            let h = cache.hash(w);
            held.contains(&h).then(|| {
                reused += w.bytes() as u64;
                weights::location(h)
            })
        };
        wire.push(WireTask::from_peer_task_with(t, label(t), &mut refer));
    }
    Packed { tasks: wire, hashes, reused }
}

impl Coordinator {
    pub(super) fn want_replan(&mut self, reason: &str, urgent: bool) {
        match &mut self.want {
            Some(w) => {
                w.urgent |= urgent;
                if !w.reason.contains(reason) {
                    w.reason = format!("{}; {reason}", w.reason);
                }
            }
            None => self.want = Some(Want { reason: reason.to_string(), urgent }),
        }
    }

    pub(super) fn candidates(&self) -> Vec<PeerId> {
        self.peers.values().filter(|p| p.state == PeerState::Live).map(|p| p.id).collect()
    }

    pub(super) fn maybe_replan(&mut self) {
        let work = !self.queue.is_empty() || self.in_flight() > 0;
        if self.want.is_none() && self.current.is_none() && self.loading.is_none() && work && self.local_fallback_possible() {
            self.want_replan("no live peers: running on the coordinator", true);
        }
        let Some(w) = &self.want else { return };
        if self.loading.is_some() && !w.urgent {
            return; // after the plan being shipped is in
        }
        if self.current.is_some() && self.plans.values().any(|a| a.state == PlanState::Draining) {
            // At most one superseded plan at a time (peers hold at most
            // three: draining, running, loading); it drains within a window.
            return;
        }
        if !w.urgent {
            let now = self.now;
            let settling = self.peers.values().any(|p| matches!(p.state, PeerState::Joining | PeerState::Probing) && now - p.joined_ms < self.cfg.settle_ms);
            if settling {
                return;
            }
        }
        let w = self.want.take().expect("checked");
        self.plan_now(&w.reason);
    }

    pub(super) fn local_fallback_possible(&self) -> bool {
        self.cfg.local_fallback && self.candidates().is_empty()
    }

    /// Builds, ships and (when nothing needs loading) activates a new plan.
    pub(super) fn plan_now(&mut self, reason: &str) {
        let cands = self.candidates();
        if cands.is_empty() {
            let work = !self.queue.is_empty() || self.in_flight() > 0;
            if self.cfg.local_fallback && work {
                if self.current.is_some_and(|c| self.plans[&c].members == [Member::Local]) {
                    return; // already running locally
                }
                if let Err(e) = self.plan_local(reason) {
                    self.last_error = Some(format!("local plan: {e}"));
                    self.event(format!("cannot run locally: {e}; local fallback disabled"));
                    self.cfg.local_fallback = false;
                }
            }
            return;
        }
        let devices: Vec<Device> = cands
            .iter()
            .map(|id| {
                let p = &self.peers[id];
                Device { name: p.device_name(), profile: p.effective_profile(&self.default_profile), link: p.link() }
            })
            .collect();
        let cluster = Cluster { devices };
        let members = cands.iter().map(|id| Member::Peer(*id)).collect();
        let res = self.run_planner(&cluster).and_then(|plan| self.ship(plan, cluster, members, reason));
        if let Err(e) = res {
            self.last_error = Some(format!("planner {}: {e}", self.cfg.planner));
            self.event(format!("planning on the peers failed: {e}"));
            // Keep the room working: the old plan if it still runs, else the coordinator itself.
            let work = !self.queue.is_empty() || self.in_flight() > 0;
            if self.current.is_none()
                && self.cfg.local_fallback
                && work
                && let Err(e) = self.plan_local(&format!("{reason}; planning on the peers failed"))
            {
                self.last_error = Some(format!("local plan: {e}"));
                self.cfg.local_fallback = false;
            }
        }
    }

    pub(super) fn run_planner(&self, cluster: &Cluster) -> Result<Plan> {
        let sim = SimConfig { frames: 24, window: self.cfg.window.max(1) };
        let secret = self.cfg.model_secret && cluster.len() >= 2;
        // Planners that understand `secret=1` (tessera) honour it themselves.
        let mut options = self.cfg.planner_options.clone();
        if secret {
            options.push(("secret".into(), "1".into()));
        }
        let req = Request { model: &self.cfg.model, graph: &self.graph, cluster, sim, seed: self.cfg.seed, options: &options };
        let plan = planners::by_name(&self.cfg.planner)?.plan(&req)?;
        plan.validate(&self.graph, cluster)?;
        if !secret || tessera_plan::estimate::keeps_model_secret(&self.graph, &plan, cluster) {
            return Ok(plan);
        }
        let req = Request { options: &[], ..req };
        for name in &self.cfg.secret_planners {
            if let Ok(p) = planners::by_name(name).and_then(|pl| pl.plan(&req))
                && p.validate(&self.graph, cluster).is_ok()
                && tessera_plan::estimate::keeps_model_secret(&self.graph, &p, cluster)
            {
                return Ok(p);
            }
        }
        Err(MeshError::Invalid(format!("no plan keeps the model secret on {} peers (planner {} gives one peer every weight)", cluster.len(), self.cfg.planner)))
    }

    pub(super) fn plan_local(&mut self, reason: &str) -> Result<()> {
        let cluster = Cluster { devices: vec![Device { name: "coordinator".into(), profile: self.default_profile.clone(), link: Link::new(100_000.0, 0.0) }] };
        let sim = SimConfig { frames: 1, window: 1 };
        let req = Request { model: &self.cfg.model, graph: &self.graph, cluster: &cluster, sim, seed: self.cfg.seed, options: &[] };
        let plan = planners::by_name("single")?.plan(&req)?;
        self.ship(plan, cluster, vec![Member::Local], reason)
    }

    /// A peer lacked weights a LoadPlan referred to (it dropped a plan
    /// meanwhile): forget what it was thought to hold and send its tasks of
    /// every plan still loading again, in full.
    pub(super) fn resend_in_full(&mut self, id: PeerId) {
        let Some(p) = self.peers.get_mut(&id) else { return };
        p.held_weights.clear();
        let name = p.name.clone();
        let loading: Vec<u32> = self.plans.values().filter(|a| a.state == PlanState::Loading && a.pending.contains(&id)).map(|a| a.epoch).collect();
        for epoch in loading {
            let act = &self.plans[&epoch];
            let Some(d) = act.device_of(id) else { continue };
            let tasks = PeerTask::for_device(&act.program, d);
            let packed = pack(&tasks, |t| plans::task_label(&self.graph, &act.plan, t.stage, t.task), &HashSet::new());
            let summary = format!("plan {epoch} ({}) for {}: device {d} of {}", act.plan.planner, act.plan.model, act.members.len());
            let wb = act.weight_bytes[d];
            let bytes = self.ep.send(id, &Msg::LoadPlan(LoadPlan { plan: epoch, device: d, summary, tasks: packed.tasks }), &mut self.out);
            let p = self.peers.get_mut(&id).expect("checked above");
            p.plan_wire_bytes += bytes;
            p.weight_bytes_total += wb;
            self.weight_bytes_sent += wb;
            p.held_weights.insert(epoch, packed.hashes);
            self.event(format!("peer {name} lacked weights of plan {epoch}: sent them in full"));
        }
    }

    pub(super) fn ship(&mut self, plan: Plan, cluster: Cluster, members: Vec<Member>, reason: &str) -> Result<()> {
        let program = Arc::new(Program::new(self.graph.clone(), &plan)?);
        let epoch = self.next_epoch;
        let predicted_ms = plans::predicted_ms(&self.graph, &plan, &cluster);
        let bound = plans::bound(&self.graph, &plan, &cluster);
        let mut local = None;
        let mut loads = Vec::new();
        let mut weight_bytes = vec![0u64; members.len()];
        for (d, m) in members.iter().enumerate() {
            let tasks = PeerTask::for_device(&program, d);
            weight_bytes[d] = tasks.iter().map(|t| t.weight_bytes() as u64).sum();
            match m {
                Member::Local => {
                    let backend = (self.local_backend)();
                    local = Some(Runner::new(d, tasks, backend.as_ref())?);
                }
                Member::Peer(id) if !tasks.is_empty() => {
                    // Not the plan still loading: this one supersedes it, and it is unloaded first.
                    let superseded = self.loading;
                    let held: HashSet<u64> = self
                        .peers
                        .get(id)
                        .filter(|p| p.weight_refs)
                        .map(|p| p.held_weights.iter().filter(|(e, _)| Some(**e) != superseded).flat_map(|(_, h)| h.iter().copied()).collect())
                        .unwrap_or_default();
                    let packed = pack(&tasks, |t| plans::task_label(&self.graph, &plan, t.stage, t.task), &held);
                    let summary = format!("plan {epoch} ({}) for {}: device {d} of {}", plan.planner, plan.model, members.len());
                    loads.push((*id, LoadPlan { plan: epoch, device: d, summary, tasks: packed.tasks }, weight_bytes[d], packed.hashes, packed.reused));
                }
                Member::Peer(_) => {}
            }
        }
        self.next_epoch += 1;
        // A plan being shipped is superseded by this one.
        if let Some(old) = self.loading.take() {
            self.drop_plan(old);
        }
        let mut pending = BTreeSet::new();
        for (id, lp, wb, hashes, reused) in loads {
            let bytes = self.ep.send(id, &Msg::LoadPlan(lp), &mut self.out);
            let p = self.peers.get_mut(&id).expect("candidate");
            p.plan_wire_bytes += bytes;
            p.weight_bytes = wb;
            p.weight_bytes_total += wb - reused;
            p.weight_bytes_reused += reused;
            p.held_weights.insert(epoch, hashes);
            self.weight_bytes_sent += wb - reused;
            pending.insert(id);
        }
        let act = Active {
            epoch,
            reason: reason.to_string(),
            predicted_bytes_per_frame: plans::predicted_bytes_per_frame(&program),
            hub: Hub::new(program.clone()),
            plan,
            cluster,
            program,
            members,
            pending,
            state: PlanState::Loading,
            predicted_ms,
            frames: BTreeSet::new(),
            local,
            started_ms: self.now,
            ready_ms: None,
            bound,
            weight_bytes,
            traffic: Traffic::default(),
        };
        let waiting = !act.pending.is_empty();
        self.plans.insert(epoch, act);
        self.replans += 1;
        self.last_reason = Some(reason.to_string());
        self.event(format!("plan {epoch} ({}) shipped: {reason}", self.cfg.planner));
        if waiting {
            self.loading = Some(epoch);
        } else {
            self.activate(epoch);
        }
        Ok(())
    }

    /// Every member acked: new frames go to `epoch`; the previous plan drains.
    pub(super) fn activate(&mut self, epoch: u32) {
        let now = self.now;
        let Some(act) = self.plans.get_mut(&epoch) else { return };
        act.state = PlanState::Running;
        act.ready_ms = Some(now);
        let members = act.members.clone();
        if self.loading == Some(epoch) {
            self.loading = None;
        }
        for m in &members {
            if let Member::Peer(id) = m
                && let Some(p) = self.peers.get_mut(id)
            {
                p.ready_ms.get_or_insert(now);
            }
        }
        // Predictions now reflect every live peer's measured speed.
        for p in self.peers.values_mut() {
            if p.alive() {
                p.drift_pending = false;
                p.drift_streak = 0;
                p.drift_ratios.clear();
            }
        }
        if let Some(old) = self.current.replace(epoch)
            && let Some(o) = self.plans.get_mut(&old)
        {
            o.state = PlanState::Draining;
            if o.frames.is_empty() {
                self.drop_plan(old);
            }
        }
        if let Some(since) = self.recovering_since.take() {
            self.last_recovery_ms = Some(now - since);
        }
        self.event(format!("plan {epoch} running"));
    }
}
