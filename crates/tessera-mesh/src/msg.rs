//! The messages coordinator and peers exchange, and their payload encodings.
//!
//! Payload layouts (after the frame header of [`crate::wire`]; `str` and
//! `bytes` are u32 length + data, `[T]` is u32 count + items, `tensor` is
//! u8 rank + rank × u32 dims + f32 data, all little-endian):
//!
//! | kind | message   | payload |
//! |-----:|-----------|---------|
//! | 1  | Hello     | `str name, str backend, str agent, [str] caps, str profile_json` (empty: none) |
//! | 2  | Welcome   | `u32 peer_id, str model, str planner` |
//! | 3  | LoadPlan  | `u32 plan, u32 device, str summary, [task]`; task = `u32 stage, u32 task, str meta_json, bytes onnx` |
//! | 4  | LoadAck   | `u32 plan, u32 tasks, u64 weight_bytes, u64 bytes_received, f64 load_ms` |
//! | 5  | Run       | `u32 plan, u64 frame, u32 stage, u32 task, [[tensor]] remote` |
//! | 6  | Done      | `u32 plan, u64 frame, u32 stage, u32 task, f64 compute_ms, [tensor] outputs` |
//! | 7  | Forget    | `u64 frame` |
//! | 8  | Unload    | `u32 plan` |
//! | 9  | Ping      | `u32 seq, f64 sent_ms` |
//! | 10 | Pong      | `u32 seq, f64 sent_ms (echoed), f64 peer_ms` |
//! | 11 | Probe     | `u32 seq, bytes filler` |
//! | 12 | ProbeAck  | `u32 seq, u64 bytes` |
//! | 13 | Bye       | `str reason` |
//! | 14 | Error     | `u16 code, u32 about (message id), str text` |
//! | 15 | Backend   | `str backend, [str] notes, str profile_json` (empty: none) |
//!
//! A task's `meta_json` is [`TaskMeta`]: its label, the regions it reads and
//! writes, its fetch plan and the regions of its locally held inputs. Its
//! `onnx` is the task's sub-graph exported by `tessera_onnx::export`, with
//! exactly the weights of its slice — a peer never receives anything else
//! of the model.

use serde::{Deserialize, Serialize};
use tessera_graph::Tensor;
use tessera_plan::DeviceProfile;
use tessera_plan::region::Region;
use tessera_plan::reuse::Fetch;
use tessera_plan::split::Piece;
use tessera_runtime::{PeerTask, RunTask, TaskDone};

use crate::PeerId;
use crate::codec::{DecodeResult, Reader, Writer, tensor_len};
use crate::error::{ErrorCode, MeshError, WireError};
use crate::wire::{self, Kind};

/// Peer → coordinator: who I am and what I can do.
#[derive(Clone, Debug, PartialEq)]
pub struct Hello {
    /// Display name ("pixel-7", "jetson-nano").
    pub name: String,
    /// Backend description from `Backend::name()`.
    pub backend: String,
    /// Software and version ("tessera-mesh 0.1.0 (wasm32)").
    pub agent: String,
    /// Capabilities: "webgpu", "simd128", "threads", ...
    pub caps: Vec<String>,
    /// The device's measured latency tables, if it profiled itself.
    pub profile: Option<DeviceProfile>,
}

/// Peer → coordinator: the peer's backend changed while it served (its GPU
/// was lost, or a layer could not run there and moved to the CPU).
#[derive(Clone, Debug)]
pub struct BackendNote {
    /// The backend now in use, as `Backend::name()` says.
    pub backend: String,
    /// What happened, one line each.
    pub notes: Vec<String>,
    /// A fresh profile of the new backend, if the peer measured one.
    pub profile: Option<DeviceProfile>,
}

/// Coordinator → peer: accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct Welcome {
    /// The id the coordinator knows this peer by.
    pub peer: PeerId,
    pub model: String,
    pub planner: String,
}

/// Where a task's pieces are, in a form serde can carry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PieceMeta {
    pub value: usize,
    pub region: Region,
}

/// A task input's fetch plan, in a form serde can carry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FetchMeta {
    /// `(stage, task, region held)` of the same-device task it reuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<(usize, usize, Region)>,
    pub remote: Vec<Region>,
}

/// Everything about a task except its sub-graph (sent as JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskMeta {
    /// Human-readable description for the peer page ("stage 1: conv1..pool1, rows 0..12").
    pub label: String,
    pub inputs: Vec<PieceMeta>,
    pub outputs: Vec<PieceMeta>,
    pub fetch: Vec<FetchMeta>,
    pub local_regions: Vec<Option<Region>>,
    /// Weight bytes of the sub-graph, as the coordinator counted them.
    pub weight_bytes: u64,
}

/// One task of a LoadPlan: indices, metadata, ONNX sub-graph.
#[derive(Clone, Debug, PartialEq)]
pub struct WireTask {
    /// Stage index in the plan.
    pub stage: usize,
    /// Task index within the stage.
    pub task: usize,
    /// Regions, fetch plan and label.
    pub meta: TaskMeta,
    /// The task's sub-graph as an ONNX model (its weight slice only).
    pub onnx: Vec<u8>,
}

impl WireTask {
    /// Packs a runtime task: exports its sub-graph (its weights only).
    pub fn from_peer_task(t: &PeerTask, label: String) -> WireTask {
        WireTask::from_peer_task_with(t, label, &mut |_| None)
    }

    /// [`Self::from_peer_task`], leaving out each weight for which
    /// `external` gives a location (one the peer holds: see [`crate::weights`]).
    pub fn from_peer_task_with(t: &PeerTask, label: String, external: &mut dyn FnMut(&tessera_graph::Tensor) -> Option<String>) -> WireTask {
        let piece = |p: &Piece| PieceMeta { value: p.value, region: p.region.clone() };
        WireTask {
            stage: t.stage,
            task: t.task,
            meta: TaskMeta {
                label,
                inputs: t.inputs.iter().map(piece).collect(),
                outputs: t.outputs.iter().map(piece).collect(),
                fetch: t.fetch.iter().map(|f| FetchMeta { local: f.local.clone(), remote: f.remote.clone() }).collect(),
                local_regions: t.local_regions.clone(),
                weight_bytes: t.weight_bytes() as u64,
            },
            onnx: tessera_onnx::export_with(&t.graph, external),
        }
    }

    /// Unpacks into a runtime task: imports and optimises the sub-graph and
    /// checks it against the metadata (input count and shapes, output
    /// count), so that a malformed plan fails here, not in a kernel.
    pub fn into_peer_task(self) -> Result<PeerTask, MeshError> {
        self.into_peer_task_with(tessera_onnx::ExternalWeights::default())
    }

    /// [`Self::into_peer_task`], resolving weights sent by reference from
    /// `held`.
    pub fn into_peer_task_with(self, held: tessera_onnx::ExternalWeights) -> Result<PeerTask, MeshError> {
        let opts = tessera_onnx::ImportOptions { external: held, ..Default::default() };
        let graph = tessera_graph::passes::optimize(&tessera_onnx::import_owned(self.onnx, &opts)?)?;
        let m = self.meta;
        let bad = |msg: String| MeshError::Invalid(format!("task {}/{}: {msg}", self.stage, self.task));
        if m.inputs.len() != graph.inputs().len() || m.fetch.len() != m.inputs.len() || m.local_regions.len() != m.inputs.len() {
            return Err(bad(format!(
                "{} inputs in the sub-graph, {} pieces, {} fetch plans, {} local regions",
                graph.inputs().len(),
                m.inputs.len(),
                m.fetch.len(),
                m.local_regions.len()
            )));
        }
        if m.outputs.len() != graph.outputs().len() {
            return Err(bad(format!("{} outputs in the sub-graph, {} pieces", graph.outputs().len(), m.outputs.len())));
        }
        for (p, &id) in m.inputs.iter().zip(graph.inputs()) {
            if p.region.shape() != graph.node(id).shape {
                return Err(bad(format!("input piece {:?} does not match sub-graph input shape {:?}", p.region.shape(), graph.node(id).shape)));
            }
        }
        for (p, &id) in m.outputs.iter().zip(graph.outputs()) {
            if p.region.shape() != graph.node(id).shape {
                return Err(bad(format!("output piece {:?} does not match sub-graph output shape {:?}", p.region.shape(), graph.node(id).shape)));
            }
        }
        for (i, (p, f)) in m.inputs.iter().zip(&m.fetch).enumerate() {
            let inside = |r: &Region| r.0.len() == p.region.0.len() && p.region.contains(r);
            if !f.remote.iter().all(inside) || f.local.as_ref().is_some_and(|(_, _, r)| !inside(r)) {
                return Err(bad(format!("fetch plan of input {i} reaches outside its piece")));
            }
            if f.local.is_some() != m.local_regions[i].is_some() {
                return Err(bad(format!("input {i}: local fetch and local region disagree")));
            }
            if let (Some((_, _, have)), Some(out)) = (&f.local, &m.local_regions[i])
                && !(out.0.len() == have.0.len() && out.contains(have))
            {
                return Err(bad(format!("input {i}: held region lies outside the producing output")));
            }
        }
        let piece = |p: PieceMeta| Piece { value: p.value, region: p.region };
        Ok(PeerTask {
            stage: self.stage,
            task: self.task,
            graph,
            inputs: m.inputs.into_iter().map(piece).collect(),
            outputs: m.outputs.into_iter().map(piece).collect(),
            fetch: m.fetch.into_iter().map(|f| Fetch { local: f.local, remote: f.remote }).collect(),
            local_regions: m.local_regions,
        })
    }
}

/// Coordinator → peer: the peer's tasks of one plan.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadPlan {
    /// Plan epoch (increases with every re-plan).
    pub plan: u32,
    /// The peer's device index in the plan.
    pub device: usize,
    /// One line about the plan, for the peer page.
    pub summary: String,
    /// The peer's tasks, in (stage, task) order.
    pub tasks: Vec<WireTask>,
}

/// Peer → coordinator: plan loaded and compiled.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadAck {
    /// The plan acknowledged.
    pub plan: u32,
    /// Tasks compiled.
    pub tasks: usize,
    /// Weight bytes the peer now holds for this plan.
    pub weight_bytes: u64,
    /// Payload bytes of the LoadPlan message as received.
    pub bytes_received: u64,
    /// Import + compile time on the peer.
    pub load_ms: f64,
}

/// An Error message.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorMsg {
    /// What kind of problem ([`ErrorCode`] constants).
    pub code: ErrorCode,
    /// Message id (header) of the offending message, 0 if unknown.
    pub about: u32,
    /// Human-readable detail.
    pub text: String,
}

/// Every message of the protocol. (Not `PartialEq`: the runtime's task
/// messages are not; compare encodings instead.)
#[derive(Clone, Debug)]
#[allow(missing_docs)] // fields are described on each variant
pub enum Msg {
    /// Peer → coordinator, first message: who I am.
    Hello(Hello),
    /// Coordinator → peer: accepted.
    Welcome(Welcome),
    /// Coordinator → peer: your tasks of a plan.
    LoadPlan(LoadPlan),
    /// Peer → coordinator: plan compiled.
    LoadAck(LoadAck),
    /// Run one task (the hub's `RunTask`) of plan `plan`.
    Run { plan: u32, task: RunTask },
    /// A task's outputs (`TaskDone`; its `device` is the plan's device
    /// index, filled in by the coordinator, not carried on the wire).
    Done { plan: u32, done: TaskDone },
    /// `frame` completed: drop what you hold for it.
    Forget { frame: u64 },
    /// Drop plan `plan`.
    Unload { plan: u32 },
    /// RTT probe, stamped with the sender's clock.
    Ping { seq: u32, sent_ms: f64 },
    /// Answer to a Ping, echoing its stamp, with the answerer's clock.
    Pong { seq: u32, sent_ms: f64, peer_ms: f64 },
    /// Throughput probe carrying `filler.len()` bytes.
    Probe { seq: u32, filler: Vec<u8> },
    /// Answer to a Probe: bytes received.
    ProbeAck { seq: u32, bytes: u64 },
    /// Orderly goodbye.
    Bye { reason: String },
    /// Something the other side sent was rejected.
    Error(ErrorMsg),
    /// Peer → coordinator: its backend changed.
    Backend(BackendNote),
}

impl Msg {
    /// The header kind of this message.
    pub fn kind(&self) -> Kind {
        match self {
            Msg::Hello(_) => Kind::Hello,
            Msg::Welcome(_) => Kind::Welcome,
            Msg::LoadPlan(_) => Kind::LoadPlan,
            Msg::LoadAck(_) => Kind::LoadAck,
            Msg::Run { .. } => Kind::Run,
            Msg::Done { .. } => Kind::Done,
            Msg::Forget { .. } => Kind::Forget,
            Msg::Unload { .. } => Kind::Unload,
            Msg::Ping { .. } => Kind::Ping,
            Msg::Pong { .. } => Kind::Pong,
            Msg::Probe { .. } => Kind::Probe,
            Msg::ProbeAck { .. } => Kind::ProbeAck,
            Msg::Bye { .. } => Kind::Bye,
            Msg::Backend(_) => Kind::Backend,
            Msg::Error(_) => Kind::Error,
        }
    }

    /// An Error message.
    pub fn error(code: ErrorCode, about: u32, text: impl Into<String>) -> Msg {
        Msg::Error(ErrorMsg { code, about, text: text.into() })
    }

    /// The payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = match self {
            Msg::Run { task, .. } => Writer::with_capacity(32 + task.remote.iter().flatten().map(tensor_len).sum::<usize>()),
            Msg::Done { done, .. } => Writer::with_capacity(40 + done.outputs.iter().map(tensor_len).sum::<usize>()),
            Msg::LoadPlan(p) => Writer::with_capacity(64 + p.tasks.iter().map(|t| t.onnx.len() + 1024).sum::<usize>()),
            _ => Writer::new(),
        };
        match self {
            Msg::Hello(h) => {
                w.str(&h.name);
                w.str(&h.backend);
                w.str(&h.agent);
                w.len(h.caps.len());
                for c in &h.caps {
                    w.str(c);
                }
                w.str(&profile_json(&h.profile));
            }
            Msg::Welcome(m) => {
                w.u32(m.peer);
                w.str(&m.model);
                w.str(&m.planner);
            }
            Msg::LoadPlan(p) => {
                w.u32(p.plan);
                w.len(p.device);
                w.str(&p.summary);
                w.len(p.tasks.len());
                for t in &p.tasks {
                    w.len(t.stage);
                    w.len(t.task);
                    w.str(&serde_json::to_string(&t.meta).unwrap_or_default());
                    w.bytes(&t.onnx);
                }
            }
            Msg::LoadAck(a) => {
                w.u32(a.plan);
                w.len(a.tasks);
                w.u64(a.weight_bytes);
                w.u64(a.bytes_received);
                w.f64(a.load_ms);
            }
            Msg::Run { plan, task } => {
                w.u32(*plan);
                w.u64(task.frame);
                w.len(task.stage);
                w.len(task.task);
                w.len(task.remote.len());
                for boxes in &task.remote {
                    w.len(boxes.len());
                    for t in boxes {
                        w.tensor(t);
                    }
                }
            }
            Msg::Done { plan, done } => {
                w.u32(*plan);
                w.u64(done.frame);
                w.len(done.stage);
                w.len(done.task);
                w.f64(if done.compute_ms.is_finite() { done.compute_ms } else { 0.0 });
                w.len(done.outputs.len());
                for t in &done.outputs {
                    w.tensor(t);
                }
            }
            Msg::Forget { frame } => w.u64(*frame),
            Msg::Unload { plan } => w.u32(*plan),
            Msg::Ping { seq, sent_ms } => {
                w.u32(*seq);
                w.f64(*sent_ms);
            }
            Msg::Pong { seq, sent_ms, peer_ms } => {
                w.u32(*seq);
                w.f64(*sent_ms);
                w.f64(*peer_ms);
            }
            Msg::Probe { seq, filler } => {
                w.u32(*seq);
                w.bytes(filler);
            }
            Msg::ProbeAck { seq, bytes } => {
                w.u32(*seq);
                w.u64(*bytes);
            }
            Msg::Bye { reason } => w.str(reason),
            Msg::Backend(b) => {
                w.str(&b.backend);
                w.len(b.notes.len());
                for n in &b.notes {
                    w.str(n);
                }
                w.str(&profile_json(&b.profile));
            }
            Msg::Error(e) => {
                w.u16(e.code.0);
                w.u32(e.about);
                w.str(&e.text);
            }
        }
        w.finish()
    }

    /// Frames of this message (see [`wire::frames`]).
    pub fn to_frames(&self, id: u32, chunk: usize) -> Result<Vec<Vec<u8>>, WireError> {
        wire::frames(self.kind(), id, &self.encode(), chunk)
    }

    /// Decodes a reassembled payload. Never panics.
    pub fn decode(kind: Kind, payload: &[u8]) -> Result<Msg, WireError> {
        let mut r = Reader::new(payload);
        let m = decode_body(kind, &mut r).and_then(|m| r.end().map(|_| m));
        m.map_err(|msg| WireError::Payload { kind: kind.name(), msg })
    }
}

fn decode_body(kind: Kind, r: &mut Reader) -> DecodeResult<Msg> {
    Ok(match kind {
        Kind::Hello => {
            let name = r.str()?;
            let backend = r.str()?;
            let agent = r.str()?;
            let n = r.count(4)?;
            let mut caps = Vec::with_capacity(n);
            for _ in 0..n {
                caps.push(r.str()?);
            }
            let profile = read_profile(r)?;
            Msg::Hello(Hello { name, backend, agent, caps, profile })
        }
        Kind::Welcome => Msg::Welcome(Welcome { peer: r.u32()?, model: r.str()?, planner: r.str()? }),
        Kind::LoadPlan => {
            let plan = r.u32()?;
            let device = r.index()?;
            let summary = r.str()?;
            let n = r.count(16)?;
            let mut tasks = Vec::with_capacity(n);
            for _ in 0..n {
                let stage = r.index()?;
                let task = r.index()?;
                let meta: TaskMeta = serde_json::from_str(&r.str()?).map_err(|e| format!("task {stage}/{task} metadata: {e}"))?;
                let onnx = r.bytes()?.to_vec();
                tasks.push(WireTask { stage, task, meta, onnx });
            }
            Msg::LoadPlan(LoadPlan { plan, device, summary, tasks })
        }
        Kind::LoadAck => Msg::LoadAck(LoadAck { plan: r.u32()?, tasks: r.index()?, weight_bytes: r.u64()?, bytes_received: r.u64()?, load_ms: r.f64()? }),
        Kind::Run => {
            let plan = r.u32()?;
            let frame = r.u64()?;
            let stage = r.index()?;
            let task = r.index()?;
            let n = r.count(4)?;
            let mut remote = Vec::with_capacity(n);
            for _ in 0..n {
                let k = r.count(1)?;
                let mut boxes = Vec::with_capacity(k);
                for _ in 0..k {
                    boxes.push(r.tensor()?);
                }
                remote.push(boxes);
            }
            Msg::Run { plan, task: RunTask { frame, stage, task, remote } }
        }
        Kind::Done => {
            let plan = r.u32()?;
            let frame = r.u64()?;
            let stage = r.index()?;
            let task = r.index()?;
            let compute_ms = r.f64()?;
            let n = r.count(1)?;
            let mut outputs: Vec<Tensor> = Vec::with_capacity(n);
            for _ in 0..n {
                outputs.push(r.tensor()?);
            }
            Msg::Done { plan, done: TaskDone { device: usize::MAX, frame, stage, task, outputs, compute_ms } }
        }
        Kind::Forget => Msg::Forget { frame: r.u64()? },
        Kind::Unload => Msg::Unload { plan: r.u32()? },
        Kind::Ping => Msg::Ping { seq: r.u32()?, sent_ms: r.f64()? },
        Kind::Pong => Msg::Pong { seq: r.u32()?, sent_ms: r.f64()?, peer_ms: r.f64()? },
        Kind::Probe => Msg::Probe { seq: r.u32()?, filler: r.bytes()?.to_vec() },
        Kind::ProbeAck => Msg::ProbeAck { seq: r.u32()?, bytes: r.u64()? },
        Kind::Bye => Msg::Bye { reason: r.str()? },
        Kind::Error => Msg::Error(ErrorMsg { code: ErrorCode(r.u16()?), about: r.u32()?, text: r.str()? }),
        Kind::Backend => {
            let backend = r.str()?;
            let n = r.count(4)?;
            let mut notes = Vec::with_capacity(n);
            for _ in 0..n {
                notes.push(r.str()?);
            }
            Msg::Backend(BackendNote { backend, notes, profile: read_profile(r)? })
        }
    })
}

/// A profile as its JSON string (empty: none).
fn profile_json(p: &Option<DeviceProfile>) -> String {
    p.as_ref().map(|p| serde_json::to_string(p).unwrap_or_default()).unwrap_or_default()
}

/// An optional profile written by [`profile_json`], validated.
fn read_profile(r: &mut Reader) -> DecodeResult<Option<DeviceProfile>> {
    let pj = r.str()?;
    if pj.is_empty() {
        return Ok(None);
    }
    let p: DeviceProfile = serde_json::from_str(&pj).map_err(|e| format!("profile: {e}"))?;
    p.validate().map_err(|e| format!("profile: {e}"))?;
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tessera_graph::{passes, zoo};
    use tessera_kernels::{Backend, CpuBackend};
    use tessera_runtime::Program;

    fn round_trip(m: &Msg) -> Msg {
        let bytes = m.encode();
        let back = Msg::decode(m.kind(), &bytes).unwrap();
        if let (Msg::Hello(a), Msg::Hello(b)) = (m, &back) {
            // JSON floats may differ in the last bit: compare the profile numerically.
            assert_eq!((&a.name, &a.backend, &a.agent, &a.caps), (&b.name, &b.backend, &b.agent, &b.caps));
            assert_eq!(a.profile.is_some(), b.profile.is_some());
            if let (Some(p), Some(q)) = (&a.profile, &b.profile) {
                for (c, t) in &p.ops {
                    for (x, y) in t.points.iter().zip(&q.ops[c].points) {
                        assert!((x.0 - y.0).abs() <= 1e-12 * x.0 && (x.1 - y.1).abs() <= 1e-12 * x.1);
                    }
                }
            }
            return back;
        }
        assert!(back.encode() == bytes, "{:?} does not round-trip", m.kind());
        back
    }

    #[test]
    fn every_kind_round_trips() {
        let t = Tensor::new(vec![1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let msgs = vec![
            Msg::Hello(Hello {
                name: "pi".into(),
                backend: "cpu".into(),
                agent: "x".into(),
                caps: vec!["simd128".into()],
                profile: Some(tessera_plan::cluster::profile("pi3").unwrap()),
            }),
            Msg::Hello(Hello { name: String::new(), backend: String::new(), agent: String::new(), caps: vec![], profile: None }),
            Msg::Welcome(Welcome { peer: 7, model: "lenet".into(), planner: "tessera".into() }),
            Msg::LoadAck(LoadAck { plan: 3, tasks: 2, weight_bytes: 1 << 40, bytes_received: 12, load_ms: 1.5 }),
            Msg::Run { plan: 2, task: RunTask { frame: u64::MAX, stage: 1, task: 2, remote: vec![vec![t.clone(), t.clone()], vec![]] } },
            Msg::Done { plan: 2, done: TaskDone { device: 0, frame: 5, stage: 1, task: 0, outputs: vec![t.clone()], compute_ms: 0.25 } },
            Msg::Forget { frame: 8 },
            Msg::Unload { plan: 1 },
            Msg::Ping { seq: 1, sent_ms: 10.5 },
            Msg::Pong { seq: 1, sent_ms: 10.5, peer_ms: 11.0 },
            Msg::Probe { seq: 4, filler: vec![0; 1000] },
            Msg::ProbeAck { seq: 4, bytes: 1000 },
            Msg::Bye { reason: "tab closed".into() },
            Msg::error(ErrorCode::TASK_FAILED, 99, "boom"),
            Msg::Backend(BackendNote { backend: "cpu avx2 x1".into(), notes: vec!["gpu backend: device lost".into()], profile: None }),
        ];
        for m in &msgs {
            round_trip(m);
            // Trailing bytes are an error.
            let mut b = m.encode();
            b.push(0);
            assert!(Msg::decode(m.kind(), &b).is_err());
        }
        // Done carries no device on the wire: the coordinator knows who sent it.
        if let Msg::Done { done, .. } = round_trip(&msgs[5]) {
            assert_eq!(done.device, usize::MAX);
        }
    }

    #[test]
    fn a_task_survives_the_wire() {
        let g = Arc::new(passes::optimize(&zoo::build("lenet").unwrap()).unwrap());
        let cluster = tessera_plan::cluster::parse("3").unwrap();
        let req = tessera_plan::planners::Request { model: "lenet", graph: &g, cluster: &cluster, sim: Default::default(), seed: 1, options: &[] };
        let plan = tessera_plan::planners::by_name("deeperthings").unwrap().plan(&req).unwrap();
        let program = Program::new(g.clone(), &plan).unwrap();
        let tasks = tessera_runtime::PeerTask::for_device(&program, 1);
        let wire: Vec<WireTask> = tasks.iter().map(|t| WireTask::from_peer_task(t, format!("task {}", t.task))).collect();
        let msg = Msg::LoadPlan(LoadPlan { plan: 1, device: 1, summary: "s".into(), tasks: wire });
        let Msg::LoadPlan(back) = round_trip(&msg) else { unreachable!() };
        for (orig, w) in tasks.iter().zip(back.tasks) {
            assert_eq!(w.meta.weight_bytes, orig.weight_bytes() as u64);
            let t = w.into_peer_task().unwrap();
            assert_eq!((t.stage, t.task), (orig.stage, orig.task));
            assert_eq!(t.inputs, orig.inputs);
            assert_eq!(t.outputs, orig.outputs);
            assert_eq!(t.fetch, orig.fetch);
            assert_eq!(t.local_regions, orig.local_regions);
            assert_eq!(t.weight_bytes(), orig.weight_bytes());
            let ins: Vec<Tensor> = t.graph.inputs().iter().map(|&i| Tensor::full(&t.graph.node(i).shape, 0.5)).collect();
            let a = CpuBackend::new(1).compile(&orig.graph).unwrap().run(&ins).unwrap();
            let b = CpuBackend::new(1).compile(&t.graph).unwrap().run(&ins).unwrap();
            for (x, y) in a.iter().zip(&b) {
                assert!(x.max_rel_diff(y) <= 1e-6);
            }
        }
    }

    #[test]
    fn inconsistent_task_metadata_is_refused() {
        let g = Arc::new(passes::optimize(&zoo::build("lenet").unwrap()).unwrap());
        let cluster = tessera_plan::cluster::parse("2").unwrap();
        let req = tessera_plan::planners::Request { model: "lenet", graph: &g, cluster: &cluster, sim: Default::default(), seed: 1, options: &[] };
        let plan = tessera_plan::planners::by_name("dpm").unwrap().plan(&req).unwrap();
        let program = Program::new(g.clone(), &plan).unwrap();
        let t = &tessera_runtime::PeerTask::for_device(&program, 0)[0];
        let good = WireTask::from_peer_task(t, String::new());
        let mut bad = good.clone();
        bad.meta.inputs.clear();
        assert!(bad.into_peer_task().unwrap_err().to_string().contains("inputs"));
        let mut bad = good.clone();
        bad.meta.outputs[0].region.0[1].end += 1;
        assert!(bad.into_peer_task().unwrap_err().to_string().contains("output piece"));
        let mut bad = good.clone();
        bad.meta.fetch[0].remote.push(tessera_plan::region::Region(vec![tessera_plan::region::Span::new(0, 99); 4]));
        assert!(bad.into_peer_task().unwrap_err().to_string().contains("outside"));
        let mut bad = good;
        bad.onnx.truncate(10);
        assert!(matches!(bad.into_peer_task(), Err(MeshError::Onnx(_))));
    }
}
