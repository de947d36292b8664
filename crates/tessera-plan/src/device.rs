//! Device and link profiles: how long a (partial) layer takes on a device,
//! how much memory a device offers, and how fast bytes cross its link.
//!
//! Latency is a measured table per op class (FLOPs → ms), interpolated in
//! log-log space, because per-layer latency is not linear in work (seed 004
//! §V-G, Fig. 14: a linear ratio mis-balances tiles on real devices).

use serde::{Deserialize, Serialize};
use tessera_graph::{Graph, NodeId, Op};

/// Kernel families with distinct efficiency on real hardware.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpClass {
    /// k×k convolution, k > 1, dense in channels.
    Conv,
    /// 1×1 convolution (a GEMM on the feature map).
    Pointwise,
    /// Depthwise / grouped convolution (low arithmetic intensity).
    Depthwise,
    /// Fully-connected (GEMV at batch 1: memory bound).
    Dense,
    /// Pooling windows.
    Pool,
    /// Everything else: activations, adds, normalisation, layout ops.
    Eltwise,
}

impl OpClass {
    pub const ALL: [OpClass; 6] = [OpClass::Conv, OpClass::Pointwise, OpClass::Depthwise, OpClass::Dense, OpClass::Pool, OpClass::Eltwise];

    /// The class of an op.
    pub fn of(op: &Op) -> OpClass {
        match op {
            Op::Conv(c) if c.groups > 1 => OpClass::Depthwise,
            Op::Conv(c) if c.kernel() == [1, 1] => OpClass::Pointwise,
            Op::Conv(_) => OpClass::Conv,
            Op::Dense(_) => OpClass::Dense,
            Op::MaxPool(_) | Op::AveragePool(_) | Op::GlobalAveragePool | Op::GlobalMaxPool => OpClass::Pool,
            _ => OpClass::Eltwise,
        }
    }
}

/// Measured latency of one op class: points `(flops, ms)` sorted by FLOPs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyTable {
    pub points: Vec<(f64, f64)>,
}

impl LatencyTable {
    /// Latency of `flops` of work: log-log interpolation between points,
    /// the first point's latency below the table (launch floor), and the
    /// last point's rate above it.
    pub fn ms(&self, flops: f64) -> f64 {
        let p = &self.points;
        if flops <= 0.0 || p.is_empty() {
            return 0.0;
        }
        if flops <= p[0].0 {
            return p[0].1;
        }
        let last = p[p.len() - 1];
        if flops >= last.0 {
            return last.1 * flops / last.0;
        }
        let i = p.partition_point(|q| q.0 <= flops);
        let (a, b) = (p[i - 1], p[i]);
        let t = (flops.ln() - a.0.ln()) / (b.0.ln() - a.0.ln());
        (a.1.ln() + t * (b.1.ln() - a.1.ln())).exp()
    }

    /// Checks the table is usable: positive, strictly increasing FLOPs.
    pub fn validate(&self) -> Result<(), String> {
        if self.points.is_empty() {
            return Err("empty latency table".into());
        }
        for w in self.points.windows(2) {
            if w[1].0 <= w[0].0 {
                return Err("latency table FLOPs must increase strictly".into());
            }
        }
        if self.points.iter().any(|(f, ms)| !(f.is_finite() && ms.is_finite() && *f > 0.0 && *ms > 0.0)) {
            return Err("latency table values must be positive and finite".into());
        }
        Ok(())
    }
}

/// A device's compute behaviour and memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceProfile {
    /// Short name (`nano`, `pi3`, `local`).
    pub name: String,
    /// Where the figures come from.
    #[serde(default)]
    pub source: String,
    /// Physical memory.
    pub memory_mb: f64,
    /// Memory taken by the OS and runtime, unavailable to tasks.
    #[serde(default)]
    pub reserved_mb: f64,
    /// Fixed cost of starting one task (receive, dispatch, kernel launch).
    #[serde(default)]
    pub task_overhead_ms: f64,
    /// Latency per op class.
    pub ops: std::collections::BTreeMap<OpClass, LatencyTable>,
}

impl DeviceProfile {
    /// Bytes a task may use.
    pub fn usable_bytes(&self) -> f64 {
        (self.memory_mb - self.reserved_mb).max(0.0) * 1024.0 * 1024.0
    }

    /// Latency of `flops` of class `class` (0 if the class is missing and
    /// the work is empty; the Eltwise table otherwise).
    pub fn op_ms(&self, class: OpClass, flops: f64) -> f64 {
        if flops <= 0.0 {
            return 0.0;
        }
        match self.ops.get(&class).or_else(|| self.ops.get(&OpClass::Eltwise)) {
            Some(t) => t.ms(flops),
            None => f64::INFINITY,
        }
    }

    /// Latency of node `id` of `g` run whole on this device.
    pub fn node_ms(&self, g: &Graph, id: NodeId) -> f64 {
        let c = tessera_graph::node_cost(g, id);
        self.op_ms(OpClass::of(&g.node(id).op), c.flops() as f64)
    }

    /// Checks the profile's tables and figures.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.memory_mb > 0.0 && self.memory_mb.is_finite()) {
            return Err(format!("profile '{}': memory must be positive", self.name));
        }
        if self.reserved_mb < 0.0 || self.reserved_mb >= self.memory_mb {
            return Err(format!("profile '{}': reserved memory must be in [0, memory)", self.name));
        }
        if !(self.task_overhead_ms >= 0.0 && self.task_overhead_ms.is_finite()) {
            return Err(format!("profile '{}': task overhead must be >= 0", self.name));
        }
        if self.ops.is_empty() {
            return Err(format!("profile '{}': no latency tables", self.name));
        }
        for (class, t) in &self.ops {
            t.validate().map_err(|e| format!("profile '{}', {class:?}: {e}", self.name))?;
        }
        Ok(())
    }
}

/// A device's network link to the hub (the coordinator / access point).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// Sustained throughput in Mbit/s.
    pub mbps: f64,
    /// One-way latency per message in ms (includes I/O read/write).
    #[serde(default)]
    pub latency_ms: f64,
    /// Optional throughput trace: `(start_s, mbps)` steps, repeating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Vec<(f64, f64)>>,
}

impl Link {
    /// A constant-rate link.
    pub fn new(mbps: f64, latency_ms: f64) -> Link {
        Link { mbps, latency_ms, trace: None }
    }

    /// Checks the link can carry data.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.mbps > 0.0 && self.mbps.is_finite()) {
            return Err(format!("link bandwidth must be positive, got {} Mbit/s", self.mbps));
        }
        if !(self.latency_ms >= 0.0 && self.latency_ms.is_finite()) {
            return Err("link latency must be >= 0".into());
        }
        if let Some(t) = &self.trace {
            if t.is_empty() || t.iter().any(|(s, r)| !(*r > 0.0 && r.is_finite() && *s >= 0.0)) {
                return Err("link trace needs positive rates and non-negative times".into());
            }
            if t.windows(2).any(|w| w[1].0 <= w[0].0) || t[0].0 != 0.0 {
                return Err("link trace must start at 0 s with increasing times".into());
            }
        }
        Ok(())
    }

    /// Rate in bytes per ms at time `t_ms`.
    fn bytes_per_ms(&self, t_ms: f64) -> f64 {
        let mbps = match &self.trace {
            None => self.mbps,
            Some(tr) => {
                let period = tr.last().map_or(0.0, |l| l.0) + 1.0;
                let t = (t_ms / 1e3) % period;
                tr[tr.partition_point(|p| p.0 <= t).saturating_sub(1)].1
            }
        };
        mbps * 1e6 / 8.0 / 1e3
    }

    /// Time to move `bytes` starting at `t_ms` (latency + serialisation,
    /// integrating the trace when there is one).
    pub fn transfer_ms(&self, bytes: f64, t_ms: f64) -> f64 {
        if bytes <= 0.0 {
            return 0.0;
        }
        if self.trace.is_none() {
            return self.latency_ms + bytes / self.bytes_per_ms(t_ms);
        }
        // Step through the trace in 1 ms slices (traces are seconds-scale).
        let mut left = bytes;
        let mut t = t_ms;
        loop {
            let r = self.bytes_per_ms(t);
            if left <= r {
                return self.latency_ms + (t - t_ms) + left / r;
            }
            left -= r;
            t += 1.0;
        }
    }
}

/// One member of a cluster: a profile and its link.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Display name, unique in the cluster (`nano#2`).
    pub name: String,
    pub profile: DeviceProfile,
    pub link: Link,
}

/// The devices a plan runs on; index = device id in plans.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub devices: Vec<Device>,
}

impl Cluster {
    /// Checks every device and link.
    pub fn validate(&self) -> Result<(), String> {
        if self.devices.is_empty() {
            return Err("a cluster needs at least one device".into());
        }
        for d in &self.devices {
            d.profile.validate()?;
            d.link.validate().map_err(|e| format!("device '{}': {e}", d.name))?;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_interpolates_log_log_and_extrapolates_rate() {
        let t = LatencyTable { points: vec![(1e3, 0.1), (1e6, 1.0), (1e9, 100.0)] };
        assert!((t.ms(1e6) - 1.0).abs() < 1e-9);
        // Halfway in log space between (1e3, 0.1) and (1e6, 1.0).
        assert!((t.ms(10f64.powf(4.5)) - 10f64.powf(-0.5)).abs() < 1e-9);
        assert_eq!(t.ms(10.0), 0.1);
        assert!((t.ms(2e9) - 200.0).abs() < 1e-9);
        let mid = t.ms(3e7);
        assert!(mid > 1.0 && mid < 100.0);
    }

    #[test]
    fn transfer_time_follows_bandwidth_and_trace() {
        let l = Link::new(80.0, 1.0); // 10 bytes/us = 10_000 bytes/ms
        assert!((l.transfer_ms(1e5, 0.0) - 11.0).abs() < 1e-9);
        let mut tr = Link::new(80.0, 0.0);
        tr.trace = Some(vec![(0.0, 80.0), (1.0, 8.0)]);
        // 1e5 bytes in the fast first second: 10 ms.
        assert!((tr.transfer_ms(1e5, 0.0) - 10.0).abs() < 1e-6);
        // Starting in the slow second: 100 ms.
        assert!((tr.transfer_ms(1e5, 1000.0) - 100.0).abs() < 1e-6);
        assert!(Link::new(0.0, 0.0).validate().is_err());
    }
}
