//! The messages between hub and devices. The in-process executor passes
//! them over channels; the mesh serialises them into wire frames.

use tessera_graph::Tensor;

/// Hub → device: run task `task` of stage `stage` for `frame`.
#[derive(Clone, Debug)]
pub struct RunTask {
    pub frame: u64,
    pub stage: usize,
    pub task: usize,
    /// For every task input, the boxes the hub sends (in the order of the
    /// task's fetch plan); what the device already holds is not sent.
    pub remote: Vec<Vec<Tensor>>,
}

impl RunTask {
    /// Payload bytes.
    pub fn bytes(&self) -> usize {
        self.remote.iter().flatten().map(|t| t.bytes()).sum()
    }
}

/// Device → hub: the outputs of a task.
#[derive(Clone, Debug)]
pub struct TaskDone {
    pub device: usize,
    pub frame: u64,
    pub stage: usize,
    pub task: usize,
    /// One tensor per output piece of the task.
    pub outputs: Vec<Tensor>,
    /// Time the kernels took on the device.
    pub compute_ms: f64,
}

impl TaskDone {
    /// Payload bytes.
    pub fn bytes(&self) -> usize {
        self.outputs.iter().map(|t| t.bytes()).sum()
    }
}
