//! The coordinator's status snapshot: plain serialisable data for the
//! dashboard (JSON through serde), the CLI's demo summary and the tests.

use serde::Serialize;
use tessera_plan::Plan;

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
    /// Mean time the cost model predicted for those tasks.
    pub predicted_avg_ms: f64,
    /// Fraction of the last 5 s spent computing.
    pub utilisation: f64,
    /// Consecutive tasks ≥ `drift_ratio` × slower than predicted.
    pub drift_streak: usize,
    /// Weight bytes of its slice in the newest plan, and in all plans.
    pub weight_bytes: u64,
    /// (all plans)
    pub weight_bytes_total: u64,
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
