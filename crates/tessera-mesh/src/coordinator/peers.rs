//! The coordinator's peer table: who joined, what they said about
//! themselves, what the probes measured, how their tasks actually ran, and
//! whether they have drifted from their profile.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use tessera_plan::{DeviceProfile, Link};

use crate::PeerId;

/// Where a peer is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// Channel open, no Hello yet.
    Joining,
    /// Hello received; RTT and throughput probes running.
    Probing,
    /// Profiled: can be planned on (loading / ready / idle follow from plans).
    Live,
    /// Left, timed out or evicted.
    Dead,
}

/// Everything the coordinator knows about one peer.
pub(crate) struct PeerEntry {
    pub id: PeerId,
    pub name: String,
    pub backend: String,
    pub agent: String,
    pub caps: Vec<String>,
    pub state: PeerState,
    /// Profile from Hello (None: the configured default is assumed).
    pub profile: Option<DeviceProfile>,
    /// Live slowdown relative to the profile (1 = as profiled); drift
    /// detection multiplies it by the observed ratio.
    pub speed: f64,
    pub joined_ms: f64,
    pub ready_ms: Option<f64>,
    pub last_heard_ms: f64,
    pub rtt_ms: Option<f64>,
    /// Smallest RTT seen: the link's own delay, free of busy-peer noise.
    pub rtt_min_ms: Option<f64>,
    pub mbps: Option<f64>,
    pub ping_seq: u32,
    pub pings: HashMap<u32, f64>,
    pub last_ping_ms: f64,
    /// Outstanding throughput probe: (seq, sent at, bytes).
    pub probe: Option<(u32, f64, usize)>,
    pub tasks_done: u64,
    /// Tasks sent and not done, per plan (a plan abandoned or dropped
    /// takes only its own with it).
    pub in_flight: BTreeMap<u32, u64>,
    /// When it last finished a task, or got work while idle.
    pub progress_ms: f64,
    pub compute_total_ms: f64,
    pub compute_last_ms: f64,
    pub predicted_total_ms: f64,
    /// (completion time, compute ms) of recent tasks, for utilisation.
    pub busy: VecDeque<(f64, f64)>,
    pub drift_streak: usize,
    pub drift_ratios: Vec<f64>,
    /// A drift re-plan was requested and has not taken effect yet.
    pub drift_pending: bool,
    /// Weight bytes shipped in the newest LoadPlan / acknowledged.
    pub weight_bytes: u64,
    pub weight_bytes_total: u64,
    /// Wire bytes of every LoadPlan sent.
    pub plan_wire_bytes: u64,
    /// The peer resolves weight references (capability `weight-refs`).
    pub weight_refs: bool,
    /// Content hashes of the weights of each plan shipped to it and not
    /// unloaded: what a new plan may refer to instead of sending.
    pub held_weights: BTreeMap<u32, HashSet<u64>>,
    /// Weight bytes a plan referred to rather than sent.
    pub weight_bytes_reused: u64,
    pub tensor_bytes_out: u64,
    pub tensor_bytes_in: u64,
    pub dead_reason: Option<String>,
}

impl PeerEntry {
    pub fn new(id: PeerId, now: f64) -> PeerEntry {
        PeerEntry {
            id,
            name: format!("peer-{id}"),
            backend: String::new(),
            agent: String::new(),
            caps: Vec::new(),
            state: PeerState::Joining,
            profile: None,
            speed: 1.0,
            joined_ms: now,
            ready_ms: None,
            last_heard_ms: now,
            rtt_ms: None,
            rtt_min_ms: None,
            mbps: None,
            ping_seq: 0,
            pings: HashMap::new(),
            last_ping_ms: f64::NEG_INFINITY,
            probe: None,
            tasks_done: 0,
            in_flight: BTreeMap::new(),
            progress_ms: now,
            compute_total_ms: 0.0,
            compute_last_ms: 0.0,
            predicted_total_ms: 0.0,
            busy: VecDeque::new(),
            drift_streak: 0,
            drift_ratios: Vec::new(),
            drift_pending: false,
            weight_bytes: 0,
            weight_bytes_total: 0,
            plan_wire_bytes: 0,
            weight_refs: false,
            held_weights: BTreeMap::new(),
            weight_bytes_reused: 0,
            tensor_bytes_out: 0,
            tensor_bytes_in: 0,
            dead_reason: None,
        }
    }

    /// Alive (not dead).
    pub fn alive(&self) -> bool {
        self.state != PeerState::Dead
    }

    /// The unique device name used in plans.
    pub fn device_name(&self) -> String {
        format!("{}#{}", self.name, self.id)
    }

    /// Records an RTT sample (exponentially smoothed).
    pub fn rtt_sample(&mut self, ms: f64) {
        let ms = ms.max(0.0);
        self.rtt_min_ms = Some(self.rtt_min_ms.map_or(ms, |m| m.min(ms)));
        self.rtt_ms = Some(match self.rtt_ms {
            None => ms,
            Some(r) => 0.7 * r + 0.3 * ms,
        });
    }

    /// The profile to plan with: the peer's own (or `default`), scaled by
    /// its measured slowdown.
    pub fn effective_profile(&self, default: &DeviceProfile) -> DeviceProfile {
        let mut p = self.profile.clone().unwrap_or_else(|| default.clone());
        if (self.speed - 1.0).abs() > 1e-9 {
            for t in p.ops.values_mut() {
                for pt in &mut t.points {
                    pt.1 *= self.speed;
                }
            }
            p.task_overhead_ms *= self.speed;
        }
        p
    }

    /// The link to plan with: measured throughput (default 1 Gbit/s until a
    /// probe says otherwise) and half the measured RTT.
    pub fn link(&self) -> Link {
        Link::new(self.mbps.unwrap_or(1000.0), self.rtt_ms.map_or(0.5, |r| r / 2.0))
    }

    /// Records a finished task; returns the observed/predicted ratios if
    /// the peer has now been slower than `ratio` × its prediction (and by
    /// at least `min_ms`) for `n` consecutive tasks.
    /// Tasks sent and not done, over all plans.
    pub fn in_flight_total(&self) -> u64 {
        self.in_flight.values().sum()
    }

    /// A task of plan `epoch` was sent.
    pub fn task_sent(&mut self, epoch: u32, now: f64) {
        if self.in_flight_total() == 0 {
            self.progress_ms = now;
        }
        *self.in_flight.entry(epoch).or_insert(0) += 1;
    }

    #[allow(clippy::too_many_arguments)]
    pub fn task_done(&mut self, epoch: u32, now: f64, compute_ms: f64, predicted_ms: f64, ratio: f64, min_ms: f64, n: usize) -> Option<f64> {
        if let Some(k) = self.in_flight.get_mut(&epoch) {
            *k = k.saturating_sub(1);
            if *k == 0 {
                self.in_flight.remove(&epoch);
            }
        }
        self.progress_ms = now;
        self.tasks_done += 1;
        self.compute_total_ms += compute_ms;
        self.compute_last_ms = compute_ms;
        self.predicted_total_ms += predicted_ms;
        self.busy.push_back((now, compute_ms));
        while self.busy.len() > 256 || self.busy.front().is_some_and(|b| b.0 < now - UTIL_WINDOW_MS) {
            self.busy.pop_front();
        }
        if self.drift_pending || predicted_ms <= 0.0 {
            return None;
        }
        if compute_ms >= ratio * predicted_ms && compute_ms - predicted_ms >= min_ms {
            self.drift_streak += 1;
            self.drift_ratios.push(compute_ms / predicted_ms);
        } else {
            self.drift_streak = 0;
            self.drift_ratios.clear();
        }
        if self.drift_streak >= n.max(1) {
            let mut r = std::mem::take(&mut self.drift_ratios);
            r.sort_by(|a, b| a.total_cmp(b));
            self.drift_streak = 0;
            return Some(r[r.len() / 2]);
        }
        None
    }

    /// Fraction of the last few seconds spent computing.
    /// Median kernel time of its tasks in the last `UTIL_WINDOW_MS` (its
    /// last task's if none): its speed now, where the lifetime mean also
    /// holds every backend it had before (a GPU that fell back to the CPU).
    pub fn compute_recent_ms(&self, now: f64) -> f64 {
        let mut recent: Vec<f64> = self.busy.iter().filter(|b| b.0 >= now - UTIL_WINDOW_MS).map(|b| b.1).collect();
        if recent.is_empty() {
            return self.compute_last_ms;
        }
        recent.sort_by(f64::total_cmp);
        recent[recent.len() / 2]
    }

    pub fn utilisation(&self, now: f64) -> f64 {
        let busy: f64 = self.busy.iter().filter(|b| b.0 >= now - UTIL_WINDOW_MS).map(|b| b.1).sum();
        let span = (now - self.ready_ms.unwrap_or(now)).clamp(1.0, UTIL_WINDOW_MS);
        (busy / span).min(1.0)
    }
}

/// Window of the utilisation figure.
pub const UTIL_WINDOW_MS: f64 = 5000.0;

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer whose GPU fell back to its CPU: 20 ms tasks, then 1 ms ones
    /// 10 s later. The recent median is its speed now; the lifetime mean is
    /// not.
    #[test]
    fn recent_compute_follows_a_change_of_backend() {
        let mut p = PeerEntry::new(1, 0.0);
        assert_eq!(p.compute_recent_ms(0.0), 0.0, "no task yet");
        for i in 0..20 {
            p.task_done(1, i as f64 * 10.0, 20.0, 0.0, 1.2, 1.0, 3);
        }
        assert_eq!(p.compute_recent_ms(200.0), 20.0);
        let later = 10_000.0;
        for (i, ms) in [1.0, 1.2, 0.9, 40.0, 1.1].into_iter().enumerate() {
            p.task_done(1, later + i as f64, ms, 0.0, 1.2, 1.0, 3);
        }
        assert_eq!(p.compute_recent_ms(later + 5.0), 1.1, "the median shrugs off one slow task");
        assert!(p.compute_total_ms / p.tasks_done as f64 > 10.0);
        // Nothing in the window: the last task.
        assert_eq!(p.compute_recent_ms(later + 60_000.0), 1.1);
    }
}
