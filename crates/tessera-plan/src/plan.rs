//! The plan IR: a model cut into stages (layer volumes), each run whole on
//! one device, replicated across devices frame by frame, or split across
//! devices by a split law. Serialisable to JSON, printable as a table,
//! validated against its graph and cluster.

use serde::{Deserialize, Serialize};
use tessera_graph::{Graph, NodeId};

use crate::device::Cluster;
use crate::error::{PlanError, Result};
use crate::region::Span;
use crate::volume::Volume;

/// How a stage's work is divided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitKind {
    /// One device runs the stage (a pipeline stage, seed 000 / 001).
    Whole,
    /// Several devices each run the whole stage on alternate frames
    /// (data parallelism, seed 001 §4).
    Replicas,
    /// Horizontal bands of the output (seed 004's height split; tiles with
    /// halos back-propagated by the Vertical-Splitting Law, Eq. 1-2).
    Rows,
    /// A 2-D grid of output tiles (DeepThings' fused tile partitioning).
    Grid,
    /// Output channels / neurons per device (seed 001 channel & output
    /// splitting, seed 003 LOP).
    OutChannels,
    /// Input channels per device, partial sums merged by addition (seed 001
    /// filter & input splitting, seed 003 LIP).
    InChannels,
    /// A LOP layer feeding a LIP layer with no exchange between them (seed
    /// 003 §4.2, FUSE).
    Fused,
}

impl SplitKind {
    pub fn name(self) -> &'static str {
        match self {
            SplitKind::Whole => "whole",
            SplitKind::Replicas => "replicas",
            SplitKind::Rows => "rows",
            SplitKind::Grid => "grid",
            SplitKind::OutChannels => "out-channels",
            SplitKind::InChannels => "in-channels",
            SplitKind::Fused => "fused",
        }
    }
}

/// A stage's split: its kind, the cut points and the device of each part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub kind: SplitKind,
    /// Cut points along the split axis, `[0, .., extent]`; for `Grid` the
    /// row cuts. Empty for `Whole` / `Replicas`.
    #[serde(default)]
    pub cuts: Vec<usize>,
    /// Column cuts of a `Grid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub col_cuts: Vec<usize>,
    /// Device of each part (row-major for a grid); for `Replicas` the
    /// devices taking turns; for `Whole` exactly one.
    pub devices: Vec<usize>,
}

impl Split {
    /// One device runs everything.
    pub fn whole(device: usize) -> Split {
        Split { kind: SplitKind::Whole, cuts: vec![], col_cuts: vec![], devices: vec![device] }
    }
    /// A 1-D split with cut points and one device per part.
    pub fn cut(kind: SplitKind, cuts: Vec<usize>, devices: Vec<usize>) -> Split {
        Split { kind, cuts, col_cuts: vec![], devices }
    }
}

/// One part of a split stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartSpec {
    /// The whole stage.
    Whole,
    /// Output rows × columns of the stage's last node.
    Tile { rows: Span, cols: Span },
    /// Output channels of the (first) mixing op.
    OutChannels(Span),
    /// Input channels of the mixing op.
    InChannels(Span),
    /// Channels between the two mixing ops of a fused pair.
    Fused(Span),
}

/// One stage: nodes `[start, end)` of the graph and their split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub start: NodeId,
    pub end: NodeId,
    /// Names of the first and last nodes, checked when a plan is loaded.
    #[serde(default)]
    pub first: String,
    #[serde(default)]
    pub last: String,
    pub split: Split,
}

/// A complete plan for one model on one cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub model: String,
    pub planner: String,
    /// Device names, index = device id (checked against the cluster).
    pub devices: Vec<String>,
    pub stages: Vec<Stage>,
}

impl Stage {
    /// A stage over `[start, end)` with the node names filled in.
    pub fn new(g: &Graph, start: NodeId, end: NodeId, split: Split) -> Stage {
        Stage { start, end, first: g.node(start).name.clone(), last: g.node(end - 1).name.clone(), split }
    }

    /// The parts of this stage and their devices; empty parts are dropped.
    pub fn parts(&self) -> Vec<(PartSpec, usize)> {
        let s = &self.split;
        let spans = |c: &[usize]| -> Vec<Span> { c.windows(2).map(|w| Span::new(w[0], w[1])).collect() };
        let mut out = Vec::new();
        match s.kind {
            SplitKind::Whole => out.push((PartSpec::Whole, s.devices[0])),
            SplitKind::Replicas => out.extend(s.devices.iter().map(|&d| (PartSpec::Whole, d))),
            SplitKind::Rows => {
                for (sp, &d) in spans(&s.cuts).into_iter().zip(&s.devices) {
                    out.push((PartSpec::Tile { rows: sp, cols: Span::new(0, usize::MAX) }, d));
                }
            }
            SplitKind::Grid => {
                let cols = spans(&s.col_cuts);
                for (i, r) in spans(&s.cuts).into_iter().enumerate() {
                    for (j, c) in cols.iter().enumerate() {
                        out.push((PartSpec::Tile { rows: r, cols: *c }, s.devices[i * cols.len() + j]));
                    }
                }
            }
            SplitKind::OutChannels => out.extend(spans(&s.cuts).into_iter().zip(&s.devices).map(|(sp, &d)| (PartSpec::OutChannels(sp), d))),
            SplitKind::InChannels => out.extend(spans(&s.cuts).into_iter().zip(&s.devices).map(|(sp, &d)| (PartSpec::InChannels(sp), d))),
            SplitKind::Fused => out.extend(spans(&s.cuts).into_iter().zip(&s.devices).map(|(sp, &d)| (PartSpec::Fused(sp), d))),
        }
        out.retain(|(p, _)| match p {
            PartSpec::Tile { rows, cols } => !rows.is_empty() && !cols.is_empty(),
            PartSpec::OutChannels(s) | PartSpec::InChannels(s) | PartSpec::Fused(s) => !s.is_empty(),
            PartSpec::Whole => true,
        });
        out
    }
}

fn check_cuts(cuts: &[usize], extent: usize, what: &str) -> std::result::Result<(), String> {
    if cuts.len() < 2 || cuts[0] != 0 || *cuts.last().unwrap() != extent {
        return Err(format!("{what} cuts {cuts:?} must run from 0 to {extent}"));
    }
    if cuts.windows(2).any(|w| w[1] < w[0]) {
        return Err(format!("{what} cuts {cuts:?} must not decrease"));
    }
    Ok(())
}

impl Plan {
    /// Checks the plan against its graph (coverage, split laws, cut points)
    /// and cluster (device ids, names). Memory is checked by
    /// [`crate::estimate::check_memory`].
    pub fn validate(&self, g: &Graph, cluster: &Cluster) -> Result<()> {
        let inv = |m: String| PlanError::Invalid(m);
        if self.devices.len() != cluster.len() {
            return Err(inv(format!("plan is for {} devices, cluster has {}", self.devices.len(), cluster.len())));
        }
        for (i, (n, d)) in self.devices.iter().zip(&cluster.devices).enumerate() {
            if *n != d.name {
                return Err(inv(format!("device {i} is '{}' in the plan but '{}' in the cluster", n, d.name)));
            }
        }
        let consumers = g.consumers();
        let first_compute = (0..g.len()).find(|&n| !crate::volume::is_free(&g.node(n).op));
        let mut next = first_compute.ok_or_else(|| inv("the model has no computation".into()))?;
        let mut used = vec![false; cluster.len()];
        for (i, st) in self.stages.iter().enumerate() {
            let err = |msg: String| PlanError::Split { stage: i, first: st.first.clone(), last: st.last.clone(), msg };
            // Stages cover the compute nodes in order; inputs/constants in between are skipped.
            while next < g.len() && crate::volume::is_free(&g.node(next).op) && next < st.start {
                next += 1;
            }
            if st.start != next {
                return Err(inv(format!("stage {i} starts at node {} but node {next} is not covered by any stage", st.start)));
            }
            if st.end <= st.start || st.end > g.len() {
                return Err(inv(format!("stage {i} has an empty or out-of-range node range {}..{}", st.start, st.end)));
            }
            if !st.first.is_empty() && (g.node(st.start).name != st.first || g.node(st.end - 1).name != st.last) {
                return Err(err(format!("node names do not match the model ({}..{})", g.node(st.start).name, g.node(st.end - 1).name)));
            }
            let vol = Volume::new(g, &consumers, st.start, st.end).map_err(err)?;
            vol.supports(g, st.split.kind).map_err(err)?;
            let s = &st.split;
            let parts = match s.kind {
                SplitKind::Whole => 1,
                SplitKind::Replicas => s.devices.len().max(1),
                SplitKind::Grid => {
                    let h = vol.extent(g, SplitKind::Rows).unwrap_or(0);
                    let w = vol.extent(g, SplitKind::Grid).unwrap_or(0);
                    check_cuts(&s.cuts, h, "row").map_err(err)?;
                    check_cuts(&s.col_cuts, w, "column").map_err(err)?;
                    (s.cuts.len() - 1) * (s.col_cuts.len() - 1)
                }
                k => {
                    check_cuts(&s.cuts, vol.extent(g, k).unwrap_or(0), k.name()).map_err(err)?;
                    s.cuts.len() - 1
                }
            };
            if s.devices.len() != parts {
                return Err(err(format!("{} parts but {} devices", parts, s.devices.len())));
            }
            if let Some(&d) = s.devices.iter().find(|&&d| d >= cluster.len()) {
                return Err(err(format!("device {d} does not exist (cluster has {})", cluster.len())));
            }
            if s.kind == SplitKind::Replicas {
                let mut seen = std::collections::HashSet::new();
                if s.devices.is_empty() || !s.devices.iter().all(|d| seen.insert(*d)) {
                    return Err(err("replicas need distinct devices".into()));
                }
            }
            for (_, d) in st.parts() {
                used[d] = true;
            }
            next = st.end;
        }
        while next < g.len() && crate::volume::is_free(&g.node(next).op) {
            next += 1;
        }
        if next != g.len() {
            return Err(inv(format!("nodes from {} ('{}') on are not covered by any stage", next, g.node(next).name)));
        }
        Ok(())
    }

    /// Readable table: one line per stage.
    pub fn render(&self, g: &Graph) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "plan '{}' for {} on {} device(s)", self.planner, self.model, self.devices.len());
        for (i, st) in self.stages.iter().enumerate() {
            let layers = (st.start..st.end).filter(|&n| !crate::volume::is_free(&g.node(n).op)).count();
            let parts: Vec<String> = st
                .parts()
                .iter()
                .map(|(p, d)| {
                    let dev = &self.devices[*d];
                    match p {
                        PartSpec::Whole => dev.clone(),
                        PartSpec::Tile { rows, cols } if cols.end == usize::MAX => format!("{dev}[rows {}..{}]", rows.start, rows.end),
                        PartSpec::Tile { rows, cols } => format!("{dev}[{}..{} x {}..{}]", rows.start, rows.end, cols.start, cols.end),
                        PartSpec::OutChannels(c) | PartSpec::InChannels(c) | PartSpec::Fused(c) => format!("{dev}[ch {}..{}]", c.start, c.end),
                    }
                })
                .collect();
            let _ = writeln!(s, "  {i:>2}  {:<22} {:>3} layer(s)  {:<12} {}", format!("{}..{}", st.first, st.last), layers, st.split.kind.name(), parts.join("  "));
        }
        s
    }
}
