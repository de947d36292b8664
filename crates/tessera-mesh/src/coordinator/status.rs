//! The coordinator's status snapshot: plain serialisable data for the
//! dashboard (JSON through serde), the CLI's demo summary and the tests.

use serde::Serialize;
use tessera_plan::Plan;

use super::Coordinator;
use super::peers::PeerState;
use super::plans::{self, Active, Member, PlanState};
use crate::PeerId;
use crate::endpoint::LinkCounters;

/// Everything the dashboard shows.
#[derive(Clone, Debug, Serialize)]
pub struct CoordinatorStatus {
    /// Always "coordinator" (the peer's status says "peer").
    pub role: &'static str,
    /// Model name.
    pub model: String,
    /// Planner name.
    pub planner: String,
    /// The coordinator's clock (last Tick).
    pub now_ms: f64,
    /// "waiting" (no plan), "loading" (first plan shipping), "running",
    /// "local" (running on the coordinator itself).
    pub phase: &'static str,
    /// The plan new frames run on.
    pub plan: Option<PlanInfo>,
    /// A plan being shipped.
    pub loading: Option<PlanInfo>,
    /// Superseded plans still finishing frames.
    pub draining: Vec<u32>,
    /// Every peer, dead ones included (the last few).
    pub peers: Vec<PeerInfo>,
    /// Frame counters.
    pub frames: FrameCounts,
    /// Frames per second over the recent completions.
    pub ips: f64,
    /// Mean submit → result time over the recent completions.
    pub latency_ms: f64,
    /// Plans shipped so far.
    pub replans: u32,
    /// Why the newest plan was made.
    pub last_replan_reason: Option<String>,
    /// Time from a peer's loss to the replacement plan running.
    pub last_recovery_ms: Option<f64>,
    /// Weight bytes of the whole model.
    pub model_weight_bytes: u64,
    /// Weight bytes shipped to peers, all plans.
    pub weight_bytes_sent: u64,
    /// The last problem (planner failure, peer error, ...).
    pub last_error: Option<String>,
    /// Recent events, oldest first.
    pub events: Vec<String>,
}

/// One plan.
#[derive(Clone, Debug, Serialize)]
pub struct PlanInfo {
    /// Plan id (increases with every re-plan).
    pub epoch: u32,
    /// loading, running or draining.
    pub state: &'static str,
    /// Why it was made.
    pub reason: String,
    /// The plan itself (JSON as `tessera plan --json` prints it).
    pub plan: Plan,
    /// `Plan::render`: one line per stage.
    pub render: String,
    /// Member of each device index: "peer 3" or "coordinator".
    pub members: Vec<String>,
    /// The cluster the plan was made for: what the planner assumed of each
    /// device index.
    pub devices: Vec<DeviceInfo>,
    /// Weight bytes shipped per device index.
    pub weight_bytes: Vec<u64>,
    /// The cost model's throughput bound and one-frame latency.
    pub predicted_ips: Option<f64>,
    /// (see `predicted_ips`)
    pub predicted_latency_ms: Option<f64>,
    /// Task tensor bytes per frame the plan implies (hub ↔ devices).
    pub predicted_bytes_per_frame: f64,
    /// Frames completed by this plan and the bytes they actually moved.
    pub frames_done: u64,
    /// Task tensor bytes actually moved per frame (compare with the prediction).
    pub tensor_bytes_per_frame: f64,
    /// Wire bytes of Run and Done frames per frame (headers and fields included).
    pub wire_bytes_per_frame: f64,
    /// Time from shipping to every ack.
    pub load_ms: Option<f64>,
}

/// A device of a plan's cluster as the planner saw it.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceInfo {
    /// Device name in the plan (`name#peer-id`).
    pub name: String,
    /// Profile name.
    pub profile: String,
    /// Predicted ms of a 1 GFLOP 3x3 convolution (a speed figure to compare devices).
    pub conv_gflop_ms: f64,
    /// Link throughput assumed, Mbit/s.
    pub mbps: f64,
    /// One-way link latency assumed.
    pub latency_ms: f64,
}

/// One peer.
#[derive(Clone, Debug, Serialize)]
pub struct PeerInfo {
    /// Its id in the room.
    pub id: PeerId,
    /// Name from its Hello.
    pub name: String,
    /// Backend from its Hello.
    pub backend: String,
    /// Software from its Hello.
    pub agent: String,
    /// Capabilities from its Hello.
    pub caps: Vec<String>,
    /// joining, probing, loading, ready, idle, dead.
    pub state: &'static str,
    /// Why it was dropped.
    pub dead_reason: Option<String>,
    /// The profile planned with ("nano", "local (default)") and the live
    /// slowdown factor applied to it.
    pub profile: String,
    /// Live slowdown applied to the profile (1 = as profiled).
    pub speed_factor: f64,
    /// Smoothed round-trip time from pings.
    pub rtt_ms: Option<f64>,
    /// Throughput measured by the probe, Mbit/s.
    pub mbps: Option<f64>,
    /// Device index in the current plan.
    pub device: Option<usize>,
    /// One line per task it runs in the current plan.
    pub tasks: Vec<String>,
    /// Tasks completed (all plans).
    pub tasks_done: u64,
    /// Tasks sent and not yet done.
    pub in_flight: u64,
    /// Kernel time of its last task, as it reported.
    pub compute_last_ms: f64,
    /// Mean kernel time per task.
    pub compute_avg_ms: f64,
    /// Median kernel time of its tasks in the last 5 s: its speed now (the
    /// mean spans every backend it has had).
    pub compute_recent_ms: f64,
    /// Mean time the cost model predicted for those tasks.
    pub predicted_avg_ms: f64,
    /// Fraction of the last 5 s spent computing.
    pub utilisation: f64,
    /// Consecutive tasks ≥ `drift_ratio` × slower than predicted.
    pub drift_streak: usize,
    /// Weight bytes of its slice in the newest plan, and in all plans.
    pub weight_bytes: u64,
    /// Weight bytes sent to it over all plans (weights it already held are
    /// referred to, not sent again).
    pub weight_bytes_total: u64,
    /// Weight bytes re-plans referred to instead of sending.
    pub weight_bytes_reused: u64,
    /// Wire bytes of every LoadPlan sent to it.
    pub plan_wire_bytes: u64,
    /// Task input bytes sent to it / output bytes received from it.
    pub tensor_bytes_out: u64,
    /// (see `tensor_bytes_out`)
    pub tensor_bytes_in: u64,
    /// Frame and byte counters of its link.
    pub link: LinkCounters,
    /// Channel open → first plan loaded.
    pub join_to_ready_ms: Option<f64>,
}

/// Frame counters.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FrameCounts {
    /// Frames submitted.
    pub submitted: u64,
    /// Frames completed.
    pub done: u64,
    /// Frames returned by `take_results`.
    pub delivered: u64,
    /// Frames admitted to a plan and not complete.
    pub in_flight: u64,
    /// Frames waiting for a plan or a window slot.
    pub queued: u64,
    /// Frames that will never complete (0 unless the model cannot run).
    pub lost: u64,
    /// Frame restarts after a member of their plan was lost.
    pub reruns: u64,
}

impl Coordinator {
    fn plan_info(&self, a: &Active) -> PlanInfo {
        let t = a.traffic;
        let per = |b: u64| if t.frames_done > 0 { b as f64 / t.frames_done as f64 } else { 0.0 };
        PlanInfo {
            epoch: a.epoch,
            state: a.state.name(),
            reason: a.reason.clone(),
            render: a.plan.render(&self.graph),
            plan: a.plan.clone(),
            members: a
                .members
                .iter()
                .map(|m| match m {
                    Member::Peer(id) => format!("peer {id}"),
                    Member::Local => "coordinator".into(),
                })
                .collect(),
            devices: a
                .cluster
                .devices
                .iter()
                .map(|d| DeviceInfo {
                    name: d.name.clone(),
                    profile: d.profile.name.clone(),
                    conv_gflop_ms: d.profile.op_ms(tessera_plan::OpClass::Conv, 1e9),
                    mbps: d.link.mbps,
                    latency_ms: d.link.latency_ms,
                })
                .collect(),
            weight_bytes: a.weight_bytes.clone(),
            predicted_ips: a.bound.map(|b| b.ips),
            predicted_latency_ms: a.bound.map(|b| b.latency_ms),
            predicted_bytes_per_frame: a.predicted_bytes_per_frame,
            frames_done: t.frames_done,
            tensor_bytes_per_frame: per(t.run_tensor + t.done_tensor),
            wire_bytes_per_frame: per(t.run_wire + t.done_wire),
            load_ms: a.ready_ms.map(|r| r - a.started_ms),
        }
    }

    /// A serialisable snapshot for dashboards, the CLI and tests.
    pub fn status(&self) -> CoordinatorStatus {
        let now = self.now;
        let cur = self.current.and_then(|e| self.plans.get(&e));
        let loading = self.loading.and_then(|e| self.plans.get(&e));
        let peers = self
            .peers
            .values()
            .map(|p| {
                let in_cur = cur.and_then(|a| a.device_of(p.id));
                let tasks: Vec<String> = match (cur, in_cur) {
                    (Some(a), Some(d)) => a
                        .program
                        .stages
                        .iter()
                        .enumerate()
                        .flat_map(|(s, st)| st.tasks.iter().enumerate().filter(move |(_, t)| t.device == d).map(move |(k, _)| (s, k)))
                        .map(|(s, k)| plans::task_label(&self.graph, &a.plan, s, k))
                        .collect(),
                    _ => Vec::new(),
                };
                let state = match p.state {
                    PeerState::Joining => "joining",
                    PeerState::Probing => "probing",
                    PeerState::Dead => "dead",
                    PeerState::Live if loading.is_some_and(|a| a.pending.contains(&p.id)) => "loading",
                    PeerState::Live if !tasks.is_empty() => "ready",
                    PeerState::Live => "idle",
                };
                let n = p.tasks_done.max(1) as f64;
                PeerInfo {
                    id: p.id,
                    name: p.name.clone(),
                    backend: p.backend.clone(),
                    agent: p.agent.clone(),
                    caps: p.caps.clone(),
                    state,
                    dead_reason: p.dead_reason.clone(),
                    profile: p.profile.as_ref().map_or_else(|| format!("{} (default)", self.default_profile.name), |q| q.name.clone()),
                    speed_factor: p.speed,
                    rtt_ms: p.rtt_ms,
                    mbps: p.mbps,
                    device: in_cur,
                    tasks,
                    tasks_done: p.tasks_done,
                    in_flight: p.in_flight_total(),
                    compute_last_ms: p.compute_last_ms,
                    compute_avg_ms: p.compute_total_ms / n,
                    compute_recent_ms: p.compute_recent_ms(now),
                    predicted_avg_ms: p.predicted_total_ms / n,
                    utilisation: p.utilisation(now),
                    drift_streak: p.drift_streak,
                    weight_bytes: p.weight_bytes,
                    weight_bytes_total: p.weight_bytes_total,
                    weight_bytes_reused: p.weight_bytes_reused,
                    plan_wire_bytes: p.plan_wire_bytes,
                    tensor_bytes_out: p.tensor_bytes_out,
                    tensor_bytes_in: p.tensor_bytes_in,
                    link: self.ep.counters(p.id),
                    join_to_ready_ms: p.ready_ms.map(|r| r - p.joined_ms),
                }
            })
            .collect();
        let (ips, latency_ms) = match (self.completions.front(), self.completions.back()) {
            (Some(a), Some(b)) if self.completions.len() >= 2 && b.0 > a.0 => {
                let n = self.completions.len();
                ((n - 1) as f64 * 1000.0 / (b.0 - a.0), self.completions.iter().map(|c| c.1).sum::<f64>() / n as f64)
            }
            _ => (0.0, self.completions.iter().map(|c| c.1).sum::<f64>() / self.completions.len().max(1) as f64),
        };
        let phase = match (cur, loading) {
            (Some(a), _) if a.members == [Member::Local] => "local",
            (Some(_), _) => "running",
            (None, Some(_)) => "loading",
            (None, None) => "waiting",
        };
        CoordinatorStatus {
            role: "coordinator",
            model: self.cfg.model.clone(),
            planner: self.cfg.planner.clone(),
            now_ms: now,
            phase,
            plan: cur.map(|a| self.plan_info(a)),
            loading: loading.map(|a| self.plan_info(a)),
            draining: self.plans.values().filter(|a| a.state == PlanState::Draining).map(|a| a.epoch).collect(),
            peers,
            frames: FrameCounts {
                submitted: self.submitted,
                done: self.done,
                delivered: self.delivered,
                in_flight: self.in_flight() as u64,
                queued: self.queue.len() as u64,
                lost: self.lost,
                reruns: self.reruns,
            },
            ips,
            latency_ms,
            replans: self.replans,
            last_replan_reason: self.last_reason.clone(),
            last_recovery_ms: self.last_recovery_ms,
            model_weight_bytes: self.model_weight_bytes,
            weight_bytes_sent: self.weight_bytes_sent,
            last_error: self.last_error.clone(),
            events: self.events.iter().cloned().collect(),
        }
    }
}
