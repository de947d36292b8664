//! The tile shape of the conv GEMM (`shaders/conv_gemm.wgsl`) per layer.
//!
//! Which tile is fastest depends on the GPU (register file, shared memory,
//! number of cores to fill) as much as on the layer, so besides a fixed
//! heuristic the backend can measure: with [`TileChoice::Measured`] every
//! candidate tile of a layer runs on the device at compile time (on scratch
//! buffers of the layer's sizes, best of a few timed batches) and the
//! fastest is kept — cached per device and layer shape, so re-plans, tiles
//! of the same layer and later frames compile at once. The browser cannot
//! block on the GPU while compiling: there an executable starts with the
//! heuristic tiles, measures its layers at the start of its first run, and
//! recompiles itself with the fastest.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use crate::device::GpuContext;
use crate::ops::{Cx, Dispatch};

/// How one conv layer runs on the GEMM kernel: rows (`tm`) by columns
/// (`tn`) of the output one invocation computes (a 16×16 workgroup covers
/// `16·tm × 16·tn`), the number of slices (`splits`) the reduction
/// dimension K is cut into, and whether the layer runs as a Winograd
/// F(2×2, 3×3) or F(4×4, 3×3) convolution (`ops::winograd`; 3×3 stride-1
/// layers only, ignored elsewhere).
///
/// Split-K: a layer with few output tiles but a long K (ResNet's 7×7
/// stages: 49 pixels × 512 channels, K = 4608) gives a big GPU a handful
/// of workgroups, each running thousands of steps. With `splits = S` each
/// workgroup sums one K slice into a partial product, and a second
/// dispatch adds the S partials with bias, residual and activation — S
/// times the workgroups for one extra pass over the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemmTile {
    /// Output channels per invocation: 1, 2, 4 or 8.
    pub tm: u32,
    /// Output pixels per invocation: 4 or 8.
    pub tn: u32,
    /// K slices summed by a second dispatch: 1 (none), 2, 4, 8 or 16.
    pub splits: u32,
    /// Winograd output tile side: 0 (direct), 2 (F(2×2, 3×3): 16 GEMMs,
    /// 2.25× fewer multiplications) or 4 (F(4×4, 3×3): 36 GEMMs, 4×).
    pub winograd: u32,
}

/// The K splits the kernel supports.
pub const SPLITS: [u32; 5] = [1, 2, 4, 8, 16];

/// Below this many workgroups a layer also tries split-K candidates (a
/// large GPU holds a few hundred 256-invocation workgroups at once).
const SPLIT_BELOW_WORKGROUPS: usize = 256;

/// Each K slice keeps at least this many K rows (4 BK-deep steps), so the
/// partial sums do not cost more than they save.
const MIN_SLICE_K: usize = 64;

impl GemmTile {
    /// Every register tile the kernel is compiled for (unsplit).
    pub const ALL: [GemmTile; 8] = [
        GemmTile::new(1, 4),
        GemmTile::new(2, 4),
        GemmTile::new(4, 4),
        GemmTile::new(8, 4),
        GemmTile::new(1, 8),
        GemmTile::new(2, 8),
        GemmTile::new(4, 8),
        GemmTile::new(8, 8),
    ];

    /// An unsplit direct `tm × tn` tile.
    pub const fn new(tm: u32, tn: u32) -> GemmTile {
        GemmTile { tm, tn, splits: 1, winograd: 0 }
    }

    /// This tile for the Winograd F(2×2, 3×3) form of the layer.
    pub const fn winograd(self) -> GemmTile {
        GemmTile { winograd: 2, ..self }
    }

    /// This tile for the Winograd F(4×4, 3×3) form of the layer.
    pub const fn winograd4(self) -> GemmTile {
        GemmTile { winograd: 4, ..self }
    }

    /// This tile with K cut into `splits` slices.
    pub const fn split(self, splits: u32) -> GemmTile {
        GemmTile { splits, ..self }
    }

    /// Output channels per workgroup.
    pub fn bm(self) -> usize {
        16 * self.tm as usize
    }

    /// Output pixels per workgroup.
    pub fn bn(self) -> usize {
        16 * self.tn as usize
    }

    /// Workgroup memory the kernel declares for this tile: the A slice
    /// (16 × BM floats) and the B slice (16 × BN floats).
    pub fn workgroup_bytes(self) -> u32 {
        1024 * (self.tm + self.tn)
    }

    /// Whether the kernel is compiled for this tile.
    pub fn is_valid(self) -> bool {
        GemmTile::ALL.contains(&GemmTile::new(self.tm, self.tn)) && SPLITS.contains(&self.splits) && [0, 2, 4].contains(&self.winograd)
    }

    /// The K slices actually used for a reduction of `k` rows (at most
    /// one BK-deep step per slice, no empty slice): K rows per slice (a
    /// multiple of 16) and the number of slices.
    pub fn slices(self, k: usize) -> (usize, usize) {
        let steps = k.div_ceil(16).max(1);
        let per = steps.div_ceil(self.splits as usize);
        (16 * per, steps.div_ceil(per))
    }

    /// The tiles worth trying for `m` output channels (per group), `n`
    /// output pixels, reduction length `k` and `groups` groups: a
    /// workgroup tile no larger than the next power of two of either side
    /// (larger ones would compute mostly padding), and for grids too small
    /// to fill a large GPU, the splits of K that keep every slice at least
    /// MIN_SLICE_K long and the grid within 4 × SPLIT_BELOW_WORKGROUPS.
    pub fn candidates(m: usize, n: usize, k: usize, groups: usize) -> Vec<GemmTile> {
        let (mmax, nmax) = (m.next_power_of_two().max(16), n.next_power_of_two().max(64));
        let mut out = Vec::new();
        for t in GemmTile::ALL.into_iter().filter(|t| t.bm() <= mmax && t.bn() <= nmax) {
            out.push(t);
            let grid = m.div_ceil(t.bm()) * n.div_ceil(t.bn()) * groups;
            if grid >= SPLIT_BELOW_WORKGROUPS {
                continue;
            }
            for s in SPLITS.into_iter().skip(1) {
                if k / s as usize >= MIN_SLICE_K && grid * s as usize <= 4 * SPLIT_BELOW_WORKGROUPS {
                    out.push(t.split(s));
                }
            }
        }
        out
    }
}

impl fmt::Display for GemmTile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.tm, self.tn)?;
        if self.splits > 1 {
            write!(f, "k{}", self.splits)?;
        }
        match self.winograd {
            0 => {}
            2 => f.write_str("w")?,
            m => write!(f, "w{m}")?,
        }
        Ok(())
    }
}

impl FromStr for GemmTile {
    type Err = String;

    fn from_str(s: &str) -> Result<GemmTile, String> {
        let bad = || format!("bad GEMM tile '{s}': expected TMxTN[kS][w|w4] with TM in 1, 2, 4, 8, TN in 4, 8, S (K splits) in 2, 4, 8, 16, w / w4: Winograd F(2x2, 3x3) / F(4x4, 3x3) on 3x3 layers (e.g. 8x4, 4x4k8, 8x8w, 8x8w4)");
        let (s2, winograd) = if let Some(rest) = s.strip_suffix("w4") {
            (rest, 4)
        } else if let Some(rest) = s.strip_suffix('w') {
            (rest, 2)
        } else {
            (s, 0)
        };
        let (m, rest) = s2.split_once('x').ok_or_else(bad)?;
        let (n, k) = match rest.split_once('k') {
            Some((n, k)) => (n, Some(k)),
            None => (rest, None),
        };
        let splits = match k {
            Some(k) => k.trim().parse().map_err(|_| bad())?,
            None => 1,
        };
        let t = GemmTile { tm: m.trim().parse().map_err(|_| bad())?, tn: n.trim().parse().map_err(|_| bad())?, splits, winograd };
        t.is_valid().then_some(t).ok_or_else(bad)
    }
}

/// How the backend picks each layer's GEMM tile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TileChoice {
    /// `Measured` on a hardware GPU, `Heuristic` on a software adapter
    /// (where measuring costs seconds per model and predicts no real GPU).
    #[default]
    Auto,
    /// A fixed rule from the layer's shape (no measurement; the only
    /// choice in the browser).
    Heuristic,
    /// The fastest candidate measured on this device (in the browser,
    /// measured on an executable's first run).
    Measured,
    /// The same tile for every layer (tests, sweeps).
    Fixed(GemmTile),
}

impl fmt::Display for TileChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TileChoice::Auto => f.write_str("auto"),
            TileChoice::Heuristic => f.write_str("heuristic"),
            TileChoice::Measured => f.write_str("measured"),
            TileChoice::Fixed(t) => write!(f, "{t}"),
        }
    }
}

impl FromStr for TileChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<TileChoice, String> {
        match s {
            "auto" => Ok(TileChoice::Auto),
            "heuristic" => Ok(TileChoice::Heuristic),
            "measured" => Ok(TileChoice::Measured),
            other => other.parse().map(TileChoice::Fixed).map_err(|e| format!("{e}, or 'auto' / 'heuristic' / 'measured'")),
        }
    }
}

/// What measuring one layer found.
#[derive(Clone, Debug, PartialEq)]
pub struct TileMeasurement {
    /// The layer's shape, as the cache key ("conv 1x64x56x56 -> ...").
    pub layer: String,
    /// The tile kept.
    pub chosen: GemmTile,
    /// Each measured candidate's time per run of the layer on the
    /// device, in ms: every register tile, then the K splits of the two
    /// fastest.
    pub times: Vec<(GemmTile, f64)>,
    /// Candidates that could not run this layer, and why (a weight
    /// padding over the binding limit, a grid over the per-axis limit).
    pub failed: Vec<(GemmTile, String)>,
}

/// Layer shapes whose measurements a device keeps (oldest dropped first).
const MAX_REMEMBERED: usize = 4096;

/// The per-device choice of tiles and the cache of measurements.
#[derive(Default)]
pub(crate) struct Tuner {
    /// Never `Auto` (resolved when the device opens).
    pub choice: TileChoice,
    measured: Mutex<HashMap<String, TileMeasurement>>,
    /// Keys in the order they were measured (for reports).
    order: Mutex<Vec<String>>,
}

impl Tuner {
    /// Resolves `Auto` for a hardware (`software == false`) or software
    /// adapter; refuses a fixed tile the kernel is not compiled for.
    pub fn new(choice: TileChoice, software: bool) -> Result<Tuner, String> {
        let choice = match choice {
            TileChoice::Auto if software => TileChoice::Heuristic,
            TileChoice::Auto => TileChoice::Measured,
            TileChoice::Fixed(t) if !t.is_valid() => return Err(format!("GEMM tile {t} is not one of the kernel's tiles (TM 1, 2, 4, 8 by TN 4, 8, K split 1, 2, 4, 8 or 16 ways)")),
            other => other,
        };
        Ok(Tuner { choice, ..Tuner::default() })
    }

    fn remember(&self, m: TileMeasurement) {
        let mut map = self.measured.lock().unwrap_or_else(|e| e.into_inner());
        let mut order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: a long-lived peer sees new tile shapes with every re-plan.
        if order.len() >= MAX_REMEMBERED {
            let old = order.remove(0);
            map.remove(&old);
        }
        if map.insert(m.layer.clone(), m.clone()).is_none() {
            order.push(m.layer);
        }
    }

    /// Every measurement so far, in order.
    pub fn report(&self) -> Vec<TileMeasurement> {
        let map = self.measured.lock().unwrap_or_else(|e| e.into_inner());
        let order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        order.iter().filter_map(|k| map.get(k).cloned()).collect()
    }
}

/// Sizes of the buffers a layer's dispatches bind: the step's inputs
/// (`Src::Input(k)`) and its output, in bytes.
pub(crate) struct LayerIo {
    pub inputs: Vec<u64>,
    pub output: u64,
}

/// Builds a layer's dispatches with a given tile (on a scratch context
/// while measuring).
pub(crate) type BuildFn = Box<dyn Fn(&mut Cx, GemmTile) -> Result<Vec<Dispatch>, String> + Send + Sync>;

/// A layer whose tile is to be measured before the executable's next run
/// (in the browser, where compiling cannot wait for the GPU).
pub(crate) struct Pending {
    key: String,
    heuristic: GemmTile,
    candidates: Vec<GemmTile>,
    io: LayerIo,
    build: BuildFn,
}

/// The tile for one layer: per the backend's [`TileChoice`], measuring the
/// `candidates` (each built by `build` on a scratch context) when asked to
/// and not yet cached under `key`. Natively the measurement happens here;
/// in the browser the heuristic tile is used for now and the layer is left
/// in `pending` for the executable to measure on its first run.
pub(crate) fn choose(cx: &mut Cx, key: &str, heuristic: GemmTile, candidates: &[GemmTile], io: LayerIo, build: BuildFn) -> Result<GemmTile, String> {
    let ctx = cx.ctx;
    let tuner = &ctx.tuner;
    let wg_limit = ctx.limits.max_compute_workgroup_storage_size;
    let fits = |t: &GemmTile| t.workgroup_bytes() <= wg_limit;
    match tuner.choice {
        TileChoice::Heuristic | TileChoice::Auto => Ok(heuristic),
        TileChoice::Fixed(t) if !fits(&t) => Err(format!("GEMM tile {t} needs {} bytes of workgroup memory, over the device's {wg_limit}", t.workgroup_bytes())),
        TileChoice::Fixed(t) => Ok(t),
        TileChoice::Measured => {
            let candidates: Vec<GemmTile> = candidates.iter().copied().filter(fits).collect();
            if candidates.len() < 2 {
                return Ok(candidates.first().copied().unwrap_or(heuristic));
            }
            if let Some(m) = tuner.measured.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
                return Ok(m.chosen);
            }
            let pending = Pending { key: key.to_string(), heuristic, candidates, io, build };
            #[cfg(not(target_arch = "wasm32"))]
            {
                pollster::block_on(measure(ctx, &pending))
            }
            #[cfg(target_arch = "wasm32")]
            {
                cx.pending.push(pending);
                Ok(heuristic)
            }
        }
    }
}

/// Measures every candidate of `p` on the device and remembers the fastest
/// (returned; the heuristic tile when none could run, whose own build then
/// reports why). Natively every wait in here blocks; in the browser they
/// are awaited.
pub(crate) async fn measure(ctx: &GpuContext, p: &Pending) -> Result<GemmTile, String> {
    if let Some(m) = ctx.tuner.measured.lock().unwrap_or_else(|e| e.into_inner()).get(&p.key) {
        return Ok(m.chosen);
    }
    let (times, failed) = time_candidates(ctx, p).await?;
    let chosen = times.iter().min_by(|a, b| a.1.total_cmp(&b.1)).map_or(p.heuristic, |t| t.0);
    ctx.tuner.remember(TileMeasurement { layer: p.key.clone(), chosen, times, failed });
    Ok(chosen)
}

/// Length of one timed batch of a candidate, in ms: longer in the browser,
/// whose clock and submit-to-read-back round trip are coarser.
const BATCH_MS: f64 = if cfg!(target_arch = "wasm32") { 4.0 } else { 1.0 };

/// One candidate's dispatches, bound to the scratch buffers.
type Passes = Vec<(wgpu::ComputePipeline, wgpu::BindGroup, [u32; 3])>;

/// Times each candidate's dispatches on scratch buffers of the layer's
/// sizes (their contents do not matter; not pool buffers, which a
/// profiled run on another thread may hold values in between its
/// submissions). A candidate that cannot be built, fails the device's
/// validation (in its own error scopes) or gives no valid timing is listed
/// with the reason; a lost device ends the measurement with an error.
#[allow(clippy::type_complexity)]
async fn time_candidates(ctx: &GpuContext, p: &Pending) -> Result<(Vec<(GemmTile, f64)>, Vec<(GemmTile, String)>), String> {
    let binding = |b: u64| b.max(16).div_ceil(16) * 16;
    let scratch = |bytes: u64| {
        let size = binding(bytes);
        (ctx.device.create_buffer(&wgpu::BufferDescriptor { label: Some("tessera tune scratch"), size, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC, mapped_at_creation: false }), size)
    };
    let inputs: Vec<(wgpu::Buffer, u64)> = p.io.inputs.iter().map(|&b| scratch(b)).collect();
    let output = scratch(p.io.output);
    let mut times: Vec<(GemmTile, f64)> = Vec::with_capacity(p.candidates.len());
    let mut failed = Vec::new();
    // Two rounds: every register tile unsplit, then the K splits of the
    // SPLIT_FINALISTS fastest only (a split changes the grid, not the
    // inner loop, so it rarely rescues a slow register tile) — about half
    // the candidates of a late ResNet layer.
    let (unsplit, split): (Vec<GemmTile>, Vec<GemmTile>) = p.candidates.iter().partition(|t| t.splits == 1);
    let mut round = unsplit;
    for last in [false, true] {
        for tile in round {
            match time_candidate(ctx, p, tile, &inputs, &output).await? {
                Ok(ms) => times.push((tile, ms)),
                Err(why) => failed.push((tile, why)),
            }
        }
        if last {
            break;
        }
        let mut ranked = times.clone();
        ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
        let finalists: Vec<GemmTile> = ranked.iter().take(SPLIT_FINALISTS).map(|t| t.0).collect();
        round = split.iter().copied().filter(|t| finalists.contains(&t.split(1))).collect();
    }
    ctx.check_alive().map_err(|e| e.to_string())?;
    Ok((times, failed))
}

/// Register tiles whose K splits are measured.
const SPLIT_FINALISTS: usize = 2;

/// One candidate's time per dispatch in ms, or why it cannot run (`Err`
/// of the outer result: the device was lost). Built and run once first (a
/// warm-up: browsers finish compiling a pipeline on its first use) inside
/// the candidate's own error scopes.
async fn time_candidate(ctx: &GpuContext, p: &Pending, tile: GemmTile, inputs: &[(wgpu::Buffer, u64)], output: &(wgpu::Buffer, u64)) -> Result<Result<f64, String>, String> {
    let scopes = ctx.scopes();
    let mut tcx = Cx::new(ctx);
    let built = (p.build)(&mut tcx, tile).and_then(|d| bind(ctx, &tcx, &d, inputs, output));
    let warm_up = built.as_ref().ok().map(|passes| submit_timed(ctx, passes, 1, &output.0));
    let verdict = crate::device::bounded(ctx, scopes.pop().check(&format!("tile {tile}"))).await;
    let passes = match (built, verdict) {
        (Err(e), _) => return Ok(Err(e)),
        (_, Err(e)) => return Ok(Err(e.to_string())),
        (Ok(passes), Ok(())) => passes,
    };
    if let Some(w) = warm_up {
        w.finish(ctx).await?;
    }
    Ok(time_passes(ctx, &passes, &output.0).await?.ok_or_else(|| "no valid timing".to_string()))
}

/// Binds a candidate's dispatches to the scratch buffers.
fn bind(ctx: &GpuContext, tcx: &Cx, dispatches: &[Dispatch], inputs: &[(wgpu::Buffer, u64)], output: &(wgpu::Buffer, u64)) -> Result<Passes, String> {
    use crate::ops::{Dst, Src};
    let dummy = ctx.device.create_buffer(&wgpu::BufferDescriptor { label: Some("tessera tune dummy"), size: 16, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
    let scratch: Vec<(wgpu::Buffer, u64)> = crate::ops::scratch_sizes(dispatches)
        .into_iter()
        .map(|b| {
            let size = b.max(16).div_ceil(16) * 16;
            (ctx.device.create_buffer(&wgpu::BufferDescriptor { label: Some("tessera tune scratch"), size, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false }), size)
        })
        .collect();
    let scratch_of = |k: usize| scratch.get(k).map(|(b, s)| (b, *s)).ok_or_else(|| format!("tuning: dispatch uses scratch {k} of {}", scratch.len()));
    let params = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("tessera tune params"),
        size: 256 * dispatches.len().max(1) as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut passes: Passes = Vec::new();
    for (i, d) in dispatches.iter().enumerate() {
        ctx.queue.write_buffer(&params, 256 * i as u64, &d.params.bytes());
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &params, offset: 256 * i as u64, size: std::num::NonZeroU64::new(256) }) }];
        let mut bound: Vec<(&wgpu::Buffer, u64)> = d
            .reads
            .iter()
            .map(|r| match *r {
                Src::Input(k) => inputs.get(k).map(|(b, s)| (b, *s)).ok_or_else(|| format!("tuning: dispatch reads input {k} of {}", inputs.len())),
                Src::Const(k) => tcx.consts.get(k).map(|b| (b.as_ref(), b.size())).ok_or_else(|| "tuning: unknown constant".to_string()),
                Src::Dummy => Ok((&dummy, 16)),
                Src::Scratch(k) => scratch_of(k),
            })
            .collect::<Result<_, _>>()?;
        bound.push(match d.out {
            Dst::Output => (&output.0, output.1),
            Dst::Scratch { k, .. } => scratch_of(k)?,
        });
        for (b, (buf, size)) in bound.into_iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: b as u32 + 1, resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: buf, offset: 0, size: std::num::NonZeroU64::new(size) }) });
        }
        let layout = ctx.pipelines.layout(&ctx.device, d.shader.reads());
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &layout, entries: &entries });
        passes.push((ctx.pipelines.get(&ctx.device, d.shader, ctx.f16), bind_group, d.groups));
    }
    Ok(passes)
}

/// A validated candidate's time per run, in ms: batches doubled until one
/// takes about BATCH_MS, then the best of three. Natively a batch's own
/// time (GPU timestamps, or the wall clock around submit and wait); in the
/// browser, whose submit-to-read-back round trip costs about a millisecond
/// on a coarse clock, the difference between batches of 2r and r runs, so
/// that fixed cost cancels. `None`: no positive time came out. One run
/// only for layers slower than 50 ms (software adapters).
async fn time_passes(ctx: &GpuContext, passes: &Passes, output: &wgpu::Buffer) -> Result<Option<f64>, String> {
    let run = |reps: usize| async move { submit_timed(ctx, passes, reps, output).finish(ctx).await };
    let mut reps = 1;
    let mut t = run(reps).await?;
    if t > 50.0 {
        return Ok((t > 0.0).then_some(t));
    }
    while t < BATCH_MS && reps < 1024 {
        reps *= 2;
        t = run(reps).await?;
    }
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let per_run = if cfg!(target_arch = "wasm32") { (run(2 * reps).await? - run(reps).await?) / reps as f64 } else { run(reps).await? / reps as f64 };
        if per_run > 0.0 && per_run.is_finite() {
            best = best.min(per_run);
        }
    }
    Ok(best.is_finite().then_some(best))
}

/// A submitted timed batch, to be awaited with [`Timed::finish`].
struct Timed {
    index: wgpu::SubmissionIndex,
    /// Natively with timestamps: the buffer they are copied to.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    stamps: Option<wgpu::Buffer>,
    /// The clock at submission (ms).
    t0: f64,
    /// In the browser: a few bytes of the output, read back to know the
    /// work is done.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    read: Option<wgpu::Buffer>,
}

/// Records `passes` `reps` times in one compute pass and submits it.
fn submit_timed(ctx: &GpuContext, passes: &Passes, reps: usize, output: &wgpu::Buffer) -> Timed {
    let native = !cfg!(target_arch = "wasm32");
    let queries = (native && ctx.timestamps).then(|| ctx.device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("tessera tune"), ty: wgpu::QueryType::Timestamp, count: 2 }));
    let buffer = |usage| ctx.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 16, usage, mapped_at_creation: false });
    let resolve = queries.as_ref().map(|_| buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC));
    let stamps = queries.as_ref().map(|_| buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST));
    let read = (!native).then(|| buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST));
    let guard = ctx.submit_lock.lock().unwrap_or_else(|e| e.into_inner());
    let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("tessera tune") });
    {
        let timestamp_writes = queries.as_ref().map(|q| wgpu::ComputePassTimestampWrites { query_set: q, beginning_of_pass_write_index: Some(0), end_of_pass_write_index: Some(1) });
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("tessera tune"), timestamp_writes });
        for _ in 0..reps {
            for (pipeline, bind_group, g) in passes {
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, bind_group, &[]);
                pass.dispatch_workgroups(g[0], g[1], g[2]);
            }
        }
    }
    if let (Some(q), Some(resolve), Some(stamps)) = (&queries, &resolve, &stamps) {
        enc.resolve_query_set(q, 0..2, resolve, 0);
        enc.copy_buffer_to_buffer(resolve, 0, stamps, 0, 16);
    }
    if let Some(read) = &read {
        enc.copy_buffer_to_buffer(output, 0, read, 0, 16);
    }
    let t0 = clock::now_ms();
    let index = ctx.queue.submit([enc.finish()]);
    drop(guard);
    Timed { index, stamps, t0, read }
}

impl Timed {
    /// Waits for the batch; its GPU time in ms.
    async fn finish(self, ctx: &GpuContext) -> Result<f64, String> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            match &self.stamps {
                Some(stamps) => {
                    let raw = crate::device::read_bytes_blocking(ctx, stamps, 16, self.index).map_err(|e| e.to_string())?;
                    let raw: &[u8; 16] = raw.get(..16).and_then(|r| r.try_into().ok()).ok_or("tuning: the timestamps could not be read back")?;
                    let tick = |i: usize| u64::from_le_bytes(raw[8 * i..8 * i + 8].try_into().expect("8 of 16 bytes"));
                    Ok(tick(1).saturating_sub(tick(0)) as f64 * ctx.queue.get_timestamp_period() as f64 / 1e6)
                }
                None => {
                    crate::device::wait(ctx, Some(self.index)).map_err(|e| e.to_string())?;
                    Ok(clock::now_ms() - self.t0)
                }
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let read = self.read.as_ref().expect("browser batches read back");
            crate::device::bounded(ctx, crate::device::read_back_async(ctx, read, 16, self.index)).await.map_err(|e| e.to_string())?;
            Ok(clock::now_ms() - self.t0)
        }
    }
}

/// A monotonic clock in ms: the page's `performance.now()` in the browser.
mod clock {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen::prelude::*;

    #[cfg(target_arch = "wasm32")]
    #[wasm_bindgen]
    extern "C" {
        #[wasm_bindgen(js_namespace = performance, js_name = now)]
        fn performance_now() -> f64;
    }

    /// Milliseconds since an arbitrary start.
    pub fn now_ms() -> f64 {
        #[cfg(target_arch = "wasm32")]
        {
            performance_now()
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64() * 1e3
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_parse_and_print() {
        for t in GemmTile::ALL {
            assert_eq!(t.to_string().parse::<GemmTile>(), Ok(t));
            for s in SPLITS {
                for w in [t.split(s), t.split(s).winograd(), t.split(s).winograd4()] {
                    assert_eq!(w.to_string().parse::<GemmTile>(), Ok(w));
                }
            }
        }
        assert_eq!("4x4k8".parse::<GemmTile>(), Ok(GemmTile::new(4, 4).split(8)));
        assert_eq!(GemmTile::new(8, 4).split(16).to_string(), "8x4k16");
        assert_eq!("8x8k2w".parse::<GemmTile>(), Ok(GemmTile::new(8, 8).split(2).winograd()));
        assert_eq!(GemmTile::new(2, 4).winograd().to_string(), "2x4w");
        assert_eq!("4x8k4w4".parse::<GemmTile>(), Ok(GemmTile::new(4, 8).split(4).winograd4()));
        assert_eq!(GemmTile::new(1, 4).winograd4().to_string(), "1x4w4");
        for bad in ["3x4", "8", "4x4k3", "4x4k", "4x4k32", "x4", "4xk2", "4x4ww", "w", "4x4wk2", "4x4w3", "4x4w4w"] {
            assert!(bad.parse::<GemmTile>().is_err(), "{bad}");
        }
        assert_eq!("measured".parse::<TileChoice>(), Ok(TileChoice::Measured));
        assert_eq!("4x8".parse::<TileChoice>(), Ok(TileChoice::Fixed(GemmTile::new(4, 8))));
        assert!("fast".parse::<TileChoice>().unwrap_err().contains("heuristic"));
        assert_eq!(Tuner::new(TileChoice::Auto, true).unwrap().choice, TileChoice::Heuristic);
        assert_eq!(Tuner::new(TileChoice::Auto, false).unwrap().choice, TileChoice::Measured);
        let bad = Tuner::new(TileChoice::Fixed(GemmTile::new(3, 5)), false).err().unwrap();
        assert!(bad.contains("3x5"), "{bad}");
        assert!(Tuner::new(TileChoice::Fixed(GemmTile::new(4, 4).split(3)), false).is_err());
        assert_eq!(GemmTile::new(8, 8).workgroup_bytes(), 16384);
        for c in [TileChoice::Auto, TileChoice::Heuristic, TileChoice::Measured, TileChoice::Fixed(GemmTile::new(2, 8)), TileChoice::Fixed(GemmTile::new(2, 8).split(4))] {
            assert_eq!(c.to_string().parse::<TileChoice>(), Ok(c));
        }
    }

    #[test]
    fn slices_cover_k_without_empty_slices() {
        for k in [1, 15, 16, 17, 100, 160, 4608, 4609] {
            for s in SPLITS {
                let (per, n) = GemmTile::new(4, 4).split(s).slices(k);
                assert!(per % 16 == 0 && per > 0, "k {k} s {s}: {per}");
                assert!(n >= 1 && n <= s as usize, "k {k} s {s}: {n}");
                assert!(per * n >= k && per * (n - 1) < k.max(1), "k {k} s {s}: {per} x {n}");
            }
        }
        assert_eq!(GemmTile::new(1, 4).split(16).slices(4608), (288, 16));
        // 3 BK steps cannot make 4 slices.
        assert_eq!(GemmTile::new(1, 4).split(4).slices(48), (16, 3));
    }

    #[test]
    fn candidates_skip_tiles_of_mostly_padding() {
        // 16 channels, 49 pixels, short K: only the smallest tile.
        assert_eq!(GemmTile::candidates(16, 49, 32, 1), vec![GemmTile::new(1, 4)]);
        // Wide layers try every register tile and no split.
        let wide = GemmTile::candidates(512, 50176, 576, 1);
        assert_eq!(wide, GemmTile::ALL.to_vec());
        // 96 channels, 200 pixels: every tile, each with K splits while
        // slices stay >= 64 deep (K = 288: 2 and 4 ways).
        let c = GemmTile::candidates(96, 200, 288, 1);
        assert!(c.contains(&GemmTile::new(8, 8)) && c.contains(&GemmTile::new(8, 8).split(4)) && !c.contains(&GemmTile::new(8, 8).split(8)), "{c:?}");
        // ResNet-50's last stage (512 x 49 pixels, K 4608): 4 row tiles,
        // each unsplit and split 2..16 ways.
        let late = GemmTile::candidates(512, 49, 4608, 1);
        assert_eq!(late.len(), 20, "{late:?}");
        assert!(late.contains(&GemmTile::new(8, 4).split(16)));
    }
}
