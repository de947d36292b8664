//! Discrete-event simulator: a stream of frames through a costed plan.
//!
//! Topology is the mesh's: a star around the hub (the coordinator), which
//! holds every stage's inputs and outputs (HyPS's communication hub). Each
//! device has three FIFO resources: its downlink, its compute unit and its
//! uplink. A task fetches from the hub only what its device does not already
//! hold from earlier tasks of the same frame, computes, and uploads its part;
//! a stage is done when every part has reached the hub. Frames are admitted
//! with at most `window` in flight, so pipelining across frames emerges
//! from the queues.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use serde::Serialize;

use crate::device::Cluster;
use crate::estimate::CostedPlan;
use crate::plan::SplitKind;

/// Simulation settings.
#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    /// Frames streamed through the plan.
    pub frames: usize,
    /// Most frames in flight at once (1: one image at a time, as seed 004
    /// measures; more: a camera stream, as pipelined planners assume).
    pub window: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig { frames: 24, window: 4 }
    }
}

/// Per-device outcome.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceStats {
    pub name: String,
    pub busy_ms: f64,
    pub utilization: f64,
    pub bytes_down: f64,
    pub bytes_up: f64,
}

/// Outcome of a simulation.
#[derive(Clone, Debug, Serialize)]
pub struct SimReport {
    /// Steady-state images per second.
    pub ips: f64,
    /// Mean time from a frame's admission to its result at the hub.
    pub latency_ms: f64,
    pub makespan_ms: f64,
    pub devices: Vec<DeviceStats>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Down,
    Compute,
    Up,
}

#[derive(Clone, Copy, Debug)]
struct Job {
    frame: usize,
    stage: usize,
    task: usize,
    kind: Kind,
}

#[derive(Clone, Copy, Debug)]
enum Event {
    Arrive(usize),
    Done { resource: usize, job: Job },
}

struct Timed(f64, u64, Event);
impl PartialEq for Timed {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0 && self.1 == o.1
    }
}
impl Eq for Timed {}
impl PartialOrd for Timed {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Timed {
    // Min-heap on time, then insertion order.
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.total_cmp(&self.0).then(o.1.cmp(&self.1))
    }
}

/// Static reuse and dependency structure of one task.
struct TaskDeps {
    /// Stages whose merge at the hub this task waits for.
    hub: Vec<usize>,
    /// Earlier tasks (same device, same frame) whose outputs it reads locally.
    local: Vec<(usize, usize)>,
    /// Bytes fetched from the hub.
    fetch: f64,
}

struct Resource {
    busy: bool,
    queue: VecDeque<Job>,
}

/// Runs the simulation.
pub fn simulate(cp: &CostedPlan, cluster: &Cluster, cfg: SimConfig) -> SimReport {
    let frames = cfg.frames.max(1);
    let window = cfg.window.max(1);
    let ns = cp.stages.len();
    let nd = cluster.len();
    let deps = task_deps(cp);
    // Reverse maps: who waits for a stage merge, who waits for a task.
    let mut on_merge: Vec<Vec<(usize, usize)>> = vec![Vec::new(); ns];
    let mut on_compute: Vec<Vec<Vec<(usize, usize)>>> = cp.stages.iter().map(|s| vec![Vec::new(); s.tasks.len()]).collect();
    for (s, st) in deps.iter().enumerate() {
        for (k, d) in st.iter().enumerate() {
            for &h in &d.hub {
                on_merge[h].push((s, k));
            }
            for &(ps, pk) in &d.local {
                on_compute[ps][pk].push((s, k));
            }
        }
    }
    let output_stages: Vec<usize> = {
        let mut v: Vec<usize> = cp.graph_outputs.iter().filter_map(|&o| cp.producer[o]).collect();
        v.sort_unstable();
        v.dedup();
        v
    };

    // Per frame state.
    let tasks_per_stage: Vec<usize> = cp.stages.iter().map(|s| s.tasks.len()).collect();
    let runs = |f: usize, s: usize, k: usize| cp.stages[s].kind != SplitKind::Replicas || f % tasks_per_stage[s] == k;
    let mut hub_missing: Vec<Vec<Vec<usize>>> = vec![Vec::new(); frames];
    let mut local_missing: Vec<Vec<Vec<usize>>> = vec![Vec::new(); frames];
    let mut down_done: Vec<Vec<Vec<bool>>> = vec![Vec::new(); frames];
    let mut parts_left: Vec<Vec<usize>> = vec![Vec::new(); frames];
    let mut outputs_left = vec![output_stages.len(); frames];
    let mut arrive_at = vec![0.0; frames];
    let mut done_at = vec![f64::NAN; frames];

    // Resources: 3 per device.
    let mut res: Vec<Resource> = (0..3 * nd).map(|_| Resource { busy: false, queue: VecDeque::new() }).collect();
    let mut busy_ms = vec![0.0; nd];
    let (mut bytes_down, mut bytes_up) = (vec![0.0; nd], vec![0.0; nd]);
    let mut heap = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |heap: &mut BinaryHeap<Timed>, t: f64, e: Event| {
        seq += 1;
        heap.push(Timed(t, seq, e));
    };
    for f in 0..frames.min(window) {
        push(&mut heap, 0.0, Event::Arrive(f));
    }

    let resource_of = |job: &Job| {
        let d = cp.stages[job.stage].tasks[job.task].device;
        3 * d + match job.kind {
            Kind::Down => 0,
            Kind::Compute => 1,
            Kind::Up => 2,
        }
    };
    // Duration of a job started at `t`.
    let duration = |job: &Job, t: f64| {
        let task = &cp.stages[job.stage].tasks[job.task];
        let link = &cluster.devices[task.device].link;
        match job.kind {
            Kind::Down => link.transfer_ms(deps[job.stage][job.task].fetch, t),
            Kind::Compute => task.compute_ms,
            Kind::Up => link.transfer_ms(task.out_bytes, t),
        }
    };

    let mut ready: Vec<(f64, Job)> = Vec::new();
    let mut makespan: f64 = 0.0;
    while let Some(Timed(t, _, ev)) = heap.pop() {
        makespan = makespan.max(t);
        match ev {
            Event::Arrive(f) => {
                arrive_at[f] = t;
                hub_missing[f] = deps.iter().map(|st| st.iter().map(|d| d.hub.len()).collect()).collect();
                local_missing[f] = deps.iter().map(|st| st.iter().map(|d| d.local.len()).collect()).collect();
                down_done[f] = deps.iter().map(|st| vec![false; st.len()]).collect();
                parts_left[f] = (0..ns).map(|s| if cp.stages[s].kind == SplitKind::Replicas { 1 } else { tasks_per_stage[s] }).collect();
                for s in 0..ns {
                    for k in 0..tasks_per_stage[s] {
                        if runs(f, s, k) && hub_missing[f][s][k] == 0 {
                            ready.push((t, Job { frame: f, stage: s, task: k, kind: Kind::Down }));
                        }
                    }
                }
            }
            Event::Done { resource, job } => {
                res[resource].busy = false;
                let (f, s, k) = (job.frame, job.stage, job.task);
                let dev = cp.stages[s].tasks[k].device;
                match job.kind {
                    Kind::Down => {
                        down_done[f][s][k] = true;
                        if local_missing[f][s][k] == 0 {
                            ready.push((t, Job { kind: Kind::Compute, ..job }));
                        }
                    }
                    Kind::Compute => {
                        for &(ds, dk) in &on_compute[s][k] {
                            if !runs(f, ds, dk) {
                                continue;
                            }
                            local_missing[f][ds][dk] -= 1;
                            if local_missing[f][ds][dk] == 0 && down_done[f][ds][dk] {
                                ready.push((t, Job { frame: f, stage: ds, task: dk, kind: Kind::Compute }));
                            }
                        }
                        ready.push((t, Job { kind: Kind::Up, ..job }));
                    }
                    Kind::Up => {
                        bytes_up[dev] += cp.stages[s].tasks[k].out_bytes;
                        parts_left[f][s] -= 1;
                        if parts_left[f][s] == 0 {
                            for &(ds, dk) in &on_merge[s] {
                                if !runs(f, ds, dk) {
                                    continue;
                                }
                                hub_missing[f][ds][dk] -= 1;
                                if hub_missing[f][ds][dk] == 0 {
                                    ready.push((t, Job { frame: f, stage: ds, task: dk, kind: Kind::Down }));
                                }
                            }
                            if output_stages.contains(&s) {
                                outputs_left[f] -= 1;
                                if outputs_left[f] == 0 {
                                    done_at[f] = t;
                                    if f + window < frames {
                                        push(&mut heap, t, Event::Arrive(f + window));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        // Enqueue ready jobs; start whatever can start.
        for (rt, job) in ready.drain(..) {
            let r = resource_of(&job);
            res[r].queue.push_back(job);
            let _ = rt;
        }
        for (r, resource) in res.iter_mut().enumerate() {
            if resource.busy {
                continue;
            }
            if let Some(job) = resource.queue.pop_front() {
                let d = duration(&job, t);
                let dev = r / 3;
                match job.kind {
                    Kind::Compute => busy_ms[dev] += d,
                    Kind::Down => bytes_down[dev] += deps[job.stage][job.task].fetch,
                    Kind::Up => {}
                }
                resource.busy = true;
                push(&mut heap, t + d, Event::Done { resource: r, job });
            }
        }
    }

    let finished: Vec<f64> = done_at.iter().copied().filter(|v| v.is_finite()).collect();
    let latency_ms = (0..frames).filter(|&f| done_at[f].is_finite()).map(|f| done_at[f] - arrive_at[f]).sum::<f64>() / finished.len().max(1) as f64;
    let ips = if frames >= 2 && finished.len() == frames {
        // Throughput over the second half of the stream (past the fill).
        let a = frames / 2;
        let span = done_at[frames - 1] - done_at[a - 1];
        if span > 0.0 { 1000.0 * (frames - a) as f64 / span } else { f64::INFINITY }
    } else if finished.len() == 1 {
        1000.0 / latency_ms
    } else {
        0.0
    };
    let devices = (0..nd)
        .map(|d| DeviceStats {
            name: cluster.devices[d].name.clone(),
            busy_ms: busy_ms[d],
            utilization: if makespan > 0.0 { busy_ms[d] / makespan } else { 0.0 },
            bytes_down: bytes_down[d],
            bytes_up: bytes_up[d],
        })
        .collect();
    SimReport { ips, latency_ms, makespan_ms: makespan, devices }
}

/// Which earlier tasks a task can read locally, and what it must fetch
/// (the rule of [`crate::reuse`]).
fn task_deps(cp: &CostedPlan) -> Vec<Vec<TaskDeps>> {
    let fetches = cp.fetch_plan();
    fetches
        .iter()
        .zip(&cp.stages)
        .map(|(st, cst)| {
            st.iter()
                .zip(&cst.tasks)
                .map(|(inputs, t)| {
                    let mut hub = Vec::new();
                    let mut local = Vec::new();
                    let mut fetch = 0.0;
                    for (f, p) in inputs.iter().zip(&t.inputs) {
                        if let Some((s, k, _)) = &f.local {
                            if !local.contains(&(*s, *k)) {
                                local.push((*s, *k));
                            }
                        }
                        if !f.remote.is_empty() {
                            fetch += f.remote_bytes();
                            if let Some(ps) = cp.producer[p.value] {
                                if !hub.contains(&ps) {
                                    hub.push(ps);
                                }
                            }
                        }
                    }
                    TaskDeps { hub, local, fetch }
                })
                .collect()
        })
        .collect()
}
