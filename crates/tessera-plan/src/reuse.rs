//! Data reuse between stages: a device keeps what it computed for a frame,
//! so a later task on the same device fetches from the hub only what it
//! does not already hold (seed 003's o_{l-1} reuse, DistrEdge's chained
//! volumes). One rule, used by the simulator, the in-process executor and
//! the mesh: each input piece reads from the single earlier task of the
//! same frame on the same device whose output overlaps it most (never
//! across replica stages, whose device depends on the frame, and never from
//! partial sums, which only mean something once merged); the rest comes
//! from the hub as disjoint boxes.

use crate::plan::SplitKind;
use crate::region::Region;
use crate::split::Piece;

/// What one task reads and writes, for reuse planning.
#[derive(Clone, Debug)]
pub struct TaskIo {
    pub device: usize,
    pub inputs: Vec<Piece>,
    pub outputs: Vec<Piece>,
}

/// One stage's tasks.
#[derive(Clone, Debug)]
pub struct StageIo {
    pub kind: SplitKind,
    pub tasks: Vec<TaskIo>,
}

/// Where one input piece of a task comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct Fetch {
    /// The earlier task (stage, task) whose output covers part of the
    /// piece, and the covered region (in value coordinates).
    pub local: Option<(usize, usize, Region)>,
    /// Boxes (value coordinates) the hub must send, disjoint.
    pub remote: Vec<Region>,
}

impl Fetch {
    /// Bytes sent by the hub.
    pub fn remote_bytes(&self) -> f64 {
        self.remote.iter().map(|r| 4.0 * r.numel() as f64).sum()
    }
}

/// Fetch plan of every input of every task: `[stage][task][input]`.
pub fn plan(stages: &[StageIo], producer: &dyn Fn(usize) -> Option<usize>) -> Vec<Vec<Vec<Fetch>>> {
    stages
        .iter()
        .map(|st| {
            st.tasks
                .iter()
                .map(|t| {
                    t.inputs
                        .iter()
                        .map(|p| {
                            let mut best: Option<(usize, usize, Region)> = None;
                            if let Some(ps) = producer(p.value) {
                                let partial = matches!(stages[ps].kind, SplitKind::InChannels | SplitKind::Fused);
                                if st.kind != SplitKind::Replicas && stages[ps].kind != SplitKind::Replicas && !partial {
                                    for (pk, pt) in stages[ps].tasks.iter().enumerate().filter(|(_, pt)| pt.device == t.device) {
                                        for o in pt.outputs.iter().filter(|o| o.value == p.value) {
                                            let common = p.region.intersect(&o.region);
                                            if !common.is_empty() && best.as_ref().is_none_or(|b| common.numel() > b.2.numel()) {
                                                best = Some((ps, pk, common));
                                            }
                                        }
                                    }
                                }
                            }
                            let remote = match &best {
                                Some((_, _, held)) => p.region.minus(held),
                                None => vec![p.region.clone()],
                            };
                            Fetch { local: best, remote }
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}
