//! The coordinator page's session, transport-free: the loaded model, the
//! [`Coordinator`] state machine, what each submitted frame was (source,
//! label, a thumbnail), and the results next to a local-only run of the same
//! frame on the page's own CPU backend with a match indicator. The wasm
//! [`crate::CoordinatorApp`] drives it over WebRTC; the native tests drive it
//! with in-process peers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tessera_graph::{Graph, Tensor};
use tessera_kernels::{Backend, CpuBackend, Executable};
use tessera_mesh::coordinator::CoordinatorStatus;
use tessera_mesh::{Coordinator, CoordinatorConfig, FrameId, Input, Output};

use crate::input::{self, Normalize};
use crate::view::{self, ModelInfo, PlanView};

/// Outputs at most this long are returned whole in result rows (logits of
/// a classifier), for the page and the end-to-end tests.
const LOGITS_KEPT: usize = 16;
/// Rows and thumbnails kept.
const ROWS_KEPT: usize = 10_000;
const THUMBS_KEPT: usize = 48;
/// Relative difference (max norm) under which a mesh result matches the
/// local run: the 1e-4.
pub const MATCH_TOLERANCE: f32 = 1e-4;

/// The session's knobs, from the page as JSON (every field optional).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionConfig {
    /// The coordinator's own configuration (planner, window, model secret...).
    pub coordinator: CoordinatorConfig,
    /// Compare every n-th frame with a local run (0: automatic — every
    /// frame for models under 100 M MACs, else every 10th).
    pub compare_every: usize,
    /// "imagenet" or "unit" normalisation of 3-channel images.
    pub normalize: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        let coordinator = CoordinatorConfig {
            // HyPS's model secret: with two or more peers nobody gets the whole model.
            model_secret: true,
            local_fallback: true,
            ..CoordinatorConfig::default()
        };
        SessionConfig { coordinator, compare_every: 0, normalize: "auto".into() }
    }
}

/// Where a model comes from.
pub enum ModelSource<'a> {
    /// A zoo name.
    Zoo(&'a str),
    /// An ONNX file's bytes and its file name.
    Onnx { name: &'a str, bytes: &'a [u8] },
}

/// Builds and optimises a model.
pub fn load_model(src: ModelSource) -> Result<(Arc<Graph>, ModelInfo), String> {
    let (raw, name, source) = match src {
        ModelSource::Zoo(name) => (tessera_graph::zoo::build(name).map_err(|e| e.to_string())?, name.to_string(), "zoo"),
        ModelSource::Onnx { name, bytes } => {
            let g = tessera_onnx::import(bytes).map_err(|e| format!("{name}: {e}"))?;
            let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
            (g, stem.to_string(), "onnx")
        }
    };
    let g = tessera_graph::passes::optimize(&raw).map_err(|e| format!("optimising {name}: {e}"))?;
    let info = ModelInfo::of(&g, &name, source);
    Ok((Arc::new(g), info))
}

struct FrameMeta {
    source: String,
    label: Option<String>,
    submitted_ms: f64,
    /// Kept for the local comparison run.
    input: Option<Tensor>,
}

/// One result as the page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ResultRow {
    pub frame: FrameId,
    /// "mnist #12", "file cat.jpg", "camera", "synthetic #3".
    pub source: String,
    /// The true class, where known (MNIST digits).
    pub label: Option<String>,
    /// Top classes (index, probability), highest first.
    pub top: Vec<(usize, f32)>,
    /// The top class as text ("7", "class 281").
    pub class: String,
    pub confidence: f32,
    /// The top class of the local run, when compared.
    pub local_class: Option<String>,
    /// Max-norm relative difference to the local run, when compared.
    pub max_rel_diff: Option<f32>,
    /// `max_rel_diff ≤ 1e-4` and the same top class.
    pub matched: Option<bool>,
    /// The top class equals the label (MNIST).
    pub correct: Option<bool>,
    /// Submit → result, ms.
    pub latency_ms: f64,
    /// The local run's time, ms.
    pub local_ms: Option<f64>,
    /// The whole output when it is small (classifier logits).
    pub logits: Option<Vec<f32>>,
}

/// Running totals over every result.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub results: u64,
    pub compared: u64,
    pub matched: u64,
    pub mismatched: u64,
    /// Largest relative difference seen.
    pub worst_rel_diff: f32,
    pub labelled: u64,
    pub correct: u64,
    /// Mean time of the local-only runs (the single-device figure).
    pub local_ms_avg: f64,
    /// Results delivered out of submission order (must stay 0).
    pub out_of_order: u64,
    /// Frames that produced no result (must stay 0).
    pub skipped: u64,
}

/// What the dashboard polls.
#[derive(Serialize)]
pub struct SessionStatus<'a> {
    pub model: &'a ModelInfo,
    pub coordinator: CoordinatorStatus,
    pub plan_view: Option<PlanView>,
    pub totals: &'a Totals,
    /// Rows so far (the index the next row will have).
    pub rows: usize,
    /// The newest rows (up to 24), newest last.
    pub recent: Vec<&'a ResultRow>,
    pub compare_every: usize,
}

/// A coordinator session on one model.
pub struct Session {
    pub info: ModelInfo,
    graph: Arc<Graph>,
    coord: Coordinator,
    local: Box<dyn Executable>,
    frames: BTreeMap<FrameId, FrameMeta>,
    rows: Vec<ResultRow>,
    rows_dropped: usize,
    thumbs: VecDeque<(FrameId, usize, usize, Vec<u8>)>,
    totals: Totals,
    compare_every: usize,
    normalize: Normalize,
    clock: Arc<dyn Fn() -> f64>,
    digits: Option<Vec<tessera_graph::zoo::Digit>>,
    digit_cursor: usize,
    synthetic_cursor: u64,
    last_delivered: Option<FrameId>,
    local_total_ms: f64,
    submitted: FrameId,
}

impl Session {
    /// A session on `graph` (optimised) with `cfg`, timed by `clock` (ms).
    pub fn new(graph: Arc<Graph>, info: ModelInfo, cfg: &SessionConfig, clock: Arc<dyn Fn() -> f64>) -> Result<Session, String> {
        let mut ccfg = cfg.coordinator.clone();
        ccfg.model = info.name.clone();
        let c1 = clock.clone();
        let coord = Coordinator::new(graph.clone(), ccfg)
            .map_err(|e| e.to_string())?
            .with_clock(Box::new(move || c1()))
            .with_local_backend(Box::new(|| Box::new(CpuBackend::new(1))));
        let local = CpuBackend::new(1).compile(&graph).map_err(|e| format!("compiling the local reference run: {e}"))?;
        let compare_every = match cfg.compare_every {
            0 if info.macs <= 100_000_000 => 1,
            0 => 10,
            n => n,
        };
        let normalize = match cfg.normalize.as_str() {
            "unit" => Normalize::Unit,
            "imagenet" => Normalize::ImageNet,
            _ if info.name.starts_with("yolo") => Normalize::Unit,
            _ => Normalize::ImageNet,
        };
        Ok(Session {
            info,
            graph,
            coord,
            local,
            frames: BTreeMap::new(),
            rows: Vec::new(),
            rows_dropped: 0,
            thumbs: VecDeque::new(),
            totals: Totals::default(),
            compare_every,
            normalize,
            clock,
            digits: None,
            digit_cursor: 0,
            synthetic_cursor: 0,
            last_delivered: None,
            local_total_ms: 0.0,
            submitted: 0,
        })
    }

    /// The state machine (for `handle`, `replan`, `set_planner`...).
    pub fn coordinator(&mut self) -> &mut Coordinator {
        &mut self.coord
    }

    /// The model graph.
    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }

    /// Feeds one transport event; returns what to send.
    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        let out = self.coord.handle(input);
        self.collect();
        out
    }

    /// Messages queued by submits and re-plans.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        let out = self.coord.take_outputs();
        self.collect();
        out
    }

    /// Sets how often frames are compared with a local run (≥ 1).
    pub fn set_compare_every(&mut self, n: usize) {
        self.compare_every = n.max(1);
    }

    /// Submits one model input with its description.
    pub fn submit(&mut self, input: Tensor, source: String, label: Option<String>) -> Result<FrameId, String> {
        // Frame ids count up from 0 in submission order.
        let next = self.submitted;
        let keep = (next as usize).is_multiple_of(self.compare_every.max(1)).then(|| input.clone());
        let thumb = input::tensor_to_rgba(&input);
        let now = (self.clock)();
        let id = self.coord.submit(vec![input]).map_err(|e| e.to_string())?;
        self.submitted = id + 1;
        self.frames.insert(id, FrameMeta { source, label, submitted_ms: now, input: if id == next { keep } else { None } });
        if let Some((w, h, px)) = thumb {
            if self.thumbs.len() == THUMBS_KEPT {
                self.thumbs.pop_front();
            }
            self.thumbs.push_back((id, w, h, px));
        }
        self.collect();
        Ok(id)
    }

    /// Submits the next `n` bundled MNIST test digits (cycling through the
    /// 1000); needs a 1×1×28×28 model.
    pub fn submit_mnist(&mut self, n: usize) -> Result<Vec<FrameId>, String> {
        if self.info.input_shape != [1, 1, 28, 28] {
            return Err(format!("MNIST digits are 1×1×28×28; {} takes {:?}", self.info.name, self.info.input_shape));
        }
        if self.digits.is_none() {
            self.digits = Some(tessera_graph::zoo::test_digits().map_err(|e| e.to_string())?);
        }
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let digits = self.digits.as_ref().expect("loaded");
            let i = self.digit_cursor % digits.len();
            let d = digits[i].clone();
            self.digit_cursor += 1;
            ids.push(self.submit(d.image, format!("mnist #{i}"), Some(d.label.to_string()))?);
        }
        Ok(ids)
    }

    /// Submits an RGBA image (files, camera), resized and normalised.
    pub fn submit_rgba(&mut self, rgba: &[u8], w: usize, h: usize, source: String, label: Option<String>) -> Result<FrameId, String> {
        let t = input::image_to_tensor(rgba, w, h, &self.info.input_shape, self.normalize)?;
        self.submit(t, source, label)
    }

    /// Submits `n` procedural images (or MNIST digits for a digit model).
    pub fn submit_synthetic(&mut self, n: usize) -> Result<Vec<FrameId>, String> {
        if self.info.digits {
            return self.submit_mnist(n);
        }
        let (_, h, w) = input::image_geometry(&self.info.input_shape)?;
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.synthetic_cursor;
            self.synthetic_cursor += 1;
            let rgba = input::synthetic_rgba(k, w, h);
            ids.push(self.submit_rgba(&rgba, w, h, format!("synthetic #{k}"), None)?);
        }
        Ok(ids)
    }

    /// Takes finished frames from the coordinator, in order, and compares
    /// them with local runs.
    fn collect(&mut self) {
        let results = self.coord.take_results();
        for (id, outs) in results {
            match self.last_delivered {
                Some(l) if id <= l => self.totals.out_of_order += 1,
                Some(l) => self.totals.skipped += id - l - 1,
                None => self.totals.skipped += id,
            }
            self.last_delivered = Some(id);
            let meta = self.frames.remove(&id);
            let now = (self.clock)();
            let Some(out) = outs.into_iter().next() else { continue };
            let row = self.row(id, out, meta, now);
            if self.rows.len() == ROWS_KEPT {
                self.rows.remove(0);
                self.rows_dropped += 1;
            }
            self.rows.push(row);
        }
    }

    fn class_name(&self, i: usize) -> String {
        if self.info.digits { i.to_string() } else { format!("class {i}") }
    }

    fn row(&mut self, frame: FrameId, out: Tensor, meta: Option<FrameMeta>, now: f64) -> ResultRow {
        let top = view::top_classes(&out, 3);
        let (best, confidence) = top.first().copied().unwrap_or((0, 0.0));
        let (source, label, submitted, input) = match meta {
            Some(m) => (m.source, m.label, m.submitted_ms, m.input),
            None => (String::new(), None, now, None),
        };
        let mut row = ResultRow {
            frame,
            source,
            class: self.class_name(best),
            confidence,
            correct: label.as_ref().map(|l| *l == self.class_name(best)),
            label,
            top,
            local_class: None,
            max_rel_diff: None,
            matched: None,
            latency_ms: now - submitted,
            local_ms: None,
            logits: (out.numel() <= LOGITS_KEPT).then(|| out.data().to_vec()),
        };
        if let Some(x) = input {
            let t0 = (self.clock)();
            let local = self.local.run(std::slice::from_ref(&x));
            let ms = (self.clock)() - t0;
            self.totals.compared += 1;
            match local {
                Ok(l) if !l.is_empty() => {
                    let diff = out.max_rel_diff(&l[0]);
                    let same_top = out.argmax() == l[0].argmax();
                    let matched = diff <= MATCH_TOLERANCE && same_top;
                    row.local_class = Some(self.class_name(l[0].argmax()));
                    row.max_rel_diff = Some(diff);
                    row.matched = Some(matched);
                    row.local_ms = Some(ms);
                    self.local_total_ms += ms;
                    self.totals.local_ms_avg = self.local_total_ms / self.totals.compared as f64;
                    self.totals.worst_rel_diff = self.totals.worst_rel_diff.max(diff);
                    if matched {
                        self.totals.matched += 1;
                    } else {
                        self.totals.mismatched += 1;
                    }
                }
                _ => {
                    row.matched = Some(false);
                    self.totals.mismatched += 1;
                }
            }
        }
        self.totals.results += 1;
        if let Some(c) = row.correct {
            self.totals.labelled += 1;
            self.totals.correct += c as u64;
        }
        row
    }

    /// Result rows from index `from` (0 = the first of the session).
    pub fn rows_from(&self, from: usize) -> &[ResultRow] {
        let i = from.saturating_sub(self.rows_dropped).min(self.rows.len());
        &self.rows[i..]
    }

    /// Totals over every result.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// The thumbnail of frame `id` (RGBA, width, height), if still kept.
    pub fn thumb(&self, id: FrameId) -> Option<(usize, usize, &[u8])> {
        self.thumbs.iter().find(|t| t.0 == id).map(|t| (t.1, t.2, t.3.as_slice()))
    }

    /// Frames submitted and not yet delivered.
    pub fn pending(&self) -> usize {
        self.coord.pending_frames()
    }

    /// The dashboard's snapshot.
    pub fn status(&self) -> SessionStatus<'_> {
        let coordinator = self.coord.status();
        let plan_view = coordinator.plan.as_ref().map(|p| {
            let names: Vec<String> = p
                .members
                .iter()
                .map(|m| {
                    let peer = m.strip_prefix("peer ").and_then(|id| id.parse::<u32>().ok());
                    match peer.and_then(|id| coordinator.peers.iter().find(|q| q.id == id)) {
                        Some(q) => format!("{m} ({})", q.name),
                        None => m.clone(),
                    }
                })
                .collect();
            view::plan_view(&self.graph, &p.plan, names)
        });
        let n = self.rows.len();
        SessionStatus {
            model: &self.info,
            coordinator,
            plan_view,
            totals: &self.totals,
            rows: self.rows_dropped + n,
            recent: self.rows[n.saturating_sub(24)..].iter().collect(),
            compare_every: self.compare_every,
        }
    }
}
