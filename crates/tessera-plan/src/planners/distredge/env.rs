//! The split MDP of seed 004 §IV-C: step `l` splits layer-volume `V_l` by
//! the action's height coordinates; the state carries each device's
//! accumulated latency `T_{l-1}` and the last layer's (H, C, F, S) (Eq. 7);
//! the reward is `1/T` at the end (Eq. 8). Latencies come from the device
//! profiles and links, with the mesh's star topology: a part fetches from
//! the hub the input rows its own device did not compute in `V_{l-1}`.

use tessera_graph::{Graph, Op};

use crate::device::Cluster;
use crate::planners::models::BandModel;
use crate::region::Span;
use crate::volume::Volume;

/// One sliding window on the rows of a chain volume.
#[derive(Clone, Copy, Debug)]
struct Win {
    eff: usize,
    stride: usize,
    pad: usize,
    in_h: usize,
}

/// A layer-volume as the environment sees it.
pub struct EnvVolume {
    pub band: BandModel,
    /// Windows from the last node back to the input (None: not a chain).
    wins: Option<Vec<Win>>,
    /// (H, C, F, S) of the last conv/pool layer, normalised.
    pub conf: [f32; 4],
    /// Bytes of one row of the volume's input.
    in_row_bytes: f64,
    /// Compute ms per (device index, rows), filled on demand: planners ask
    /// the same sizes many times.
    memo: std::cell::RefCell<std::collections::HashMap<(usize, usize), f64>>,
}

impl EnvVolume {
    pub fn new(g: &Graph, vol: &Volume) -> EnvVolume {
        let band = BandModel::new(g, vol);
        let nodes: Vec<usize> = vol.compute_nodes(g).collect();
        let chain = nodes.windows(2).all(|w| g.node(w[1]).inputs.iter().filter(|&&i| !matches!(g.node(i).op, Op::Const(_))).eq([w[0]].iter()));
        let wins = chain.then(|| {
            nodes
                .iter()
                .rev()
                .filter_map(|&n| {
                    let node = g.node(n);
                    let in_h = g.node(node.inputs[0]).shape[2];
                    match &node.op {
                        Op::Conv(c) => Some(Win { eff: (c.kernel()[0] - 1) * c.dilation[0] + 1, stride: c.stride[0], pad: c.pads[0], in_h }),
                        Op::MaxPool(p) | Op::AveragePool(p) => Some(Win { eff: (p.kernel[0] - 1) * p.dilation[0] + 1, stride: p.stride[0], pad: p.pads[0], in_h }),
                        _ => None,
                    }
                })
                .collect()
        });
        let (mut h, mut c, mut f, mut s) = (1.0, 1.0, 1.0, 1.0);
        for &n in nodes.iter().rev() {
            let node = g.node(n);
            let (k, st) = match &node.op {
                Op::Conv(cv) => (cv.kernel()[0], cv.stride[0]),
                Op::MaxPool(p) | Op::AveragePool(p) => (p.kernel[0], p.stride[0]),
                _ => continue,
            };
            h = node.shape[2] as f32;
            c = node.shape[1] as f32;
            f = k as f32;
            s = st as f32;
            break;
        }
        let input = vol.inputs.iter().copied().find(|&v| !matches!(g.node(v).op, Op::Const(_))).unwrap_or(0);
        let ish = &g.node(input).shape;
        let in_row_bytes = 4.0 * g.node(input).out_elems() as f64 / ish.get(2).copied().unwrap_or(1).max(1) as f64;
        EnvVolume { band, wins, conf: [h / 224.0, c / 1024.0, f / 11.0, s / 4.0], in_row_bytes, memo: Default::default() }
    }

    /// Compute ms of `rows` output rows on device `i` of `cluster` (memoised).
    pub fn compute_ms(&self, cluster: &Cluster, i: usize, rows: usize) -> f64 {
        if let Some(v) = self.memo.borrow().get(&(i, rows)) {
            return *v;
        }
        let v = self.band.compute_ms(&cluster.devices[i], rows as f64);
        self.memo.borrow_mut().insert((i, rows), v);
        v
    }

    /// Input rows needed for output rows `o` (exact for chains).
    fn input_span(&self, o: Span) -> Option<Span> {
        let wins = self.wins.as_ref()?;
        let mut s = o;
        for w in wins {
            let u0 = (s.start * w.stride) as isize - w.pad as isize;
            let u1 = ((s.end - 1) * w.stride + w.eff) as isize - w.pad as isize;
            s = Span::new(u0.max(0) as usize, (u1.min(w.in_h as isize)).max(u0.max(0)) as usize);
        }
        Some(s)
    }
}

/// The environment: volumes in order, the cluster, and the tail after the
/// last volume (dense layers) that runs on one device.
pub struct Env<'a> {
    pub vols: Vec<std::rc::Rc<EnvVolume>>,
    pub cluster: &'a Cluster,
    /// Bytes and per-device ms of the tail (0 when there is none).
    pub tail_in_bytes: f64,
    pub tail_out_bytes: f64,
    pub tail_ms: Vec<f64>,
    /// Latency scale for the state.
    pub t_scale: f64,
}

/// Outcome of one volume step.
pub struct StepState {
    /// Accumulated latency per device.
    pub t: Vec<f64>,
    /// Output span per device of the last split volume.
    pub spans: Vec<Span>,
}

impl Env<'_> {
    pub fn devices(&self) -> usize {
        self.cluster.len()
    }

    /// State vector for step `l` given the accumulated latencies.
    pub fn state(&self, l: usize, t: &[f64]) -> Vec<f32> {
        let mut s: Vec<f32> = t.iter().map(|v| (*v / self.t_scale) as f32).collect();
        s.extend_from_slice(&self.vols[l].conf);
        s
    }

    /// Initial accumulated latencies.
    pub fn start(&self) -> StepState {
        StepState { t: vec![0.0; self.devices()], spans: vec![Span::new(0, 0); self.devices()] }
    }

    /// When device `i` finishes output rows `o` of volume `l`, given the
    /// state after volume `l - 1` (its own rows are reused locally, the
    /// rest is fetched from the hub once their producers have uploaded).
    pub fn part_finish(&self, l: usize, prev: &StepState, i: usize, o: Span) -> f64 {
        let v = &self.vols[l];
        let nd = self.devices();
        let d = &self.cluster.devices[i];
        let rows = o.len() as f64;
        let (ready, fetch_bytes) = if l == 0 {
            (0.0, v.band.in_bytes(rows))
        } else {
            let up = |j: usize| prev.t[j] + self.cluster.devices[j].link.transfer_ms(self.vols[l - 1].band.out_bytes(prev.spans[j].len() as f64), 0.0);
            match v.input_span(o) {
                Some(need) => {
                    let mut ready: f64 = 0.0;
                    let mut own = 0;
                    for j in 0..nd {
                        let overlap = need.intersect(prev.spans[j]).len();
                        if overlap == 0 {
                            continue;
                        }
                        if j == i {
                            own = overlap;
                            ready = ready.max(prev.t[i]);
                        } else {
                            ready = ready.max(up(j));
                        }
                    }
                    (ready, (need.len() - own) as f64 * v.in_row_bytes)
                }
                None => ((0..nd).filter(|&j| !prev.spans[j].is_empty()).map(up).fold(0.0, f64::max), v.band.in_bytes(rows)),
            }
        };
        ready.max(prev.t[i]) + d.link.transfer_ms(fetch_bytes, 0.0) + v.compute_ms(self.cluster, i, o.len())
    }

    /// Splits volume `l` with output-row cut points `cuts` (|D|+1 values).
    pub fn step(&self, l: usize, prev: &StepState, cuts: &[usize]) -> StepState {
        let nd = self.devices();
        let mut t = prev.t.clone();
        let mut spans = vec![Span::new(0, 0); nd];
        for i in 0..nd {
            let o = Span::new(cuts[i], cuts[i + 1]);
            if o.is_empty() {
                continue;
            }
            t[i] = self.part_finish(l, prev, i, o);
            spans[i] = o;
        }
        StepState { t, spans }
    }

    /// Cut points for volume `l` that minimise its latest finish given the
    /// state after `l - 1`: binary search on the finish time, each device
    /// in order taking as many rows as fit (finish is monotone in rows).
    pub fn balanced_cuts(&self, l: usize, prev: &StepState) -> Vec<usize> {
        let h = self.vols[l].band.height;
        let nd = self.devices();
        let sweep = |limit: f64| -> Vec<usize> {
            let mut cuts = vec![0];
            let mut c = 0;
            for i in 0..nd {
                let fits = |x: usize| x == 0 || self.part_finish(l, prev, i, Span::new(c, c + x)) <= limit;
                let (mut lo, mut hi) = (0usize, h - c);
                while lo < hi {
                    let mid = (lo + hi).div_ceil(2);
                    if fits(mid) {
                        lo = mid;
                    } else {
                        hi = mid - 1;
                    }
                }
                c += lo;
                cuts.push(c);
            }
            cuts
        };
        let (mut lo, mut hi) = (0.0, (0..nd).map(|i| self.part_finish(l, prev, i, Span::new(0, h))).fold(f64::INFINITY, f64::min));
        for _ in 0..40 {
            let mid = 0.5 * (lo + hi);
            if *sweep(mid).last().unwrap() >= h {
                hi = mid;
            } else {
                lo = mid;
            }
            if hi - lo <= 1e-3 * hi {
                break;
            }
        }
        let mut cuts = sweep(hi);
        // The sweep may overshoot; the last device that got rows ends at h.
        for c in cuts.iter_mut() {
            *c = (*c).min(h);
        }
        *cuts.last_mut().unwrap() = h;
        cuts
    }

    /// End-to-end latency after the last volume: parts upload, the tail runs
    /// on the device with the most rows, the result reaches the hub.
    pub fn finish(&self, last: &StepState) -> (f64, usize) {
        let nd = self.devices();
        let lv = &self.vols[self.vols.len() - 1];
        let merged = (0..nd).filter(|&j| !last.spans[j].is_empty()).map(|j| last.t[j] + self.cluster.devices[j].link.transfer_ms(lv.band.out_bytes(last.spans[j].len() as f64), 0.0)).fold(0.0, f64::max);
        if self.tail_ms.iter().all(|&m| m == 0.0) {
            return (merged, 0);
        }
        let k = (0..nd).max_by_key(|&j| last.spans[j].len()).unwrap_or(0);
        let link = &self.cluster.devices[k].link;
        (merged + link.transfer_ms(self.tail_in_bytes, 0.0) + self.tail_ms[k] + link.transfer_ms(self.tail_out_bytes, 0.0), k)
    }

    /// Latency of a whole decision (cut points per volume).
    pub fn evaluate(&self, decisions: &[Vec<usize>]) -> f64 {
        let mut s = self.start();
        for (l, cuts) in decisions.iter().enumerate() {
            s = self.step(l, &s, cuts);
        }
        self.finish(&s).0
    }
}
