//! Running a compiled graph: upload the inputs, record every dispatch of
//! the graph into one compute pass, copy the outputs to the staging buffer,
//! submit once, and read back. Nothing returns to the CPU between layers.

use std::sync::Arc;

use tessera_graph::{Graph, NodeId, Tensor};
use tessera_kernels::{Clock, Executable, KernelError, NodeTiming, RunFuture};

use crate::device::{bounded, device_error, f32_bytes, read_back_async, GpuContext, PoppedScopes};

/// One recorded dispatch.
pub(crate) struct Pass {
    /// Index of the step (graph node) it belongs to.
    pub step: usize,
    /// The kernel (and GEMM tile), for reports.
    pub label: String,
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub groups: [u32; 3],
}

/// Where a graph output comes from.
pub(crate) enum Output {
    /// `bytes` at `offset` of the staging buffer.
    Staged { offset: u64, shape: Vec<usize> },
    /// The run's i-th input, unchanged (reshaped).
    Input { index: usize, shape: Vec<usize> },
    /// A constant known at compile time.
    Host(Tensor),
}

/// A graph compiled for the GPU. Implements [`Executable`] natively; in
/// the browser use [`GpuExecutable::run_async`] (a blocking wait is
/// impossible there).
pub struct GpuExecutable {
    ctx: Arc<GpuContext>,
    signature: Graph,
    inputs: Vec<wgpu::Buffer>,
    /// Keeps cached weights alive while this executable exists.
    _consts: Vec<Arc<wgpu::Buffer>>,
    passes: Vec<Pass>,
    /// The node timed for each step.
    timed: Vec<NodeId>,
    /// (slot buffer, staging offset, bytes) copied after the last pass.
    copies: Vec<(wgpu::Buffer, u64, u64)>,
    staging: wgpu::Buffer,
    staging_len: u64,
    outputs: Vec<Output>,
    activation_bytes: u64,
    /// Layers whose tiles are measured before the first run, and the graph
    /// to recompile with the measured tiles (browser, `TileChoice::Measured`).
    retune: Option<(Vec<crate::tune::Pending>, Graph)>,
}

impl GpuExecutable {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        ctx: Arc<GpuContext>,
        signature: Graph,
        inputs: Vec<wgpu::Buffer>,
        consts: Vec<Arc<wgpu::Buffer>>,
        passes: Vec<Pass>,
        timed: Vec<NodeId>,
        copies: Vec<(wgpu::Buffer, u64, u64)>,
        staging: wgpu::Buffer,
        staging_len: u64,
        outputs: Vec<Output>,
        activation_bytes: u64,
    ) -> GpuExecutable {
        GpuExecutable { ctx, signature, inputs, _consts: consts, passes, timed, copies, staging, staging_len, outputs, activation_bytes, retune: None }
    }

    /// Measures `pending` layers' tiles before the first run, then
    /// recompiles `graph` with them.
    pub(crate) fn with_retune(mut self, pending: Vec<crate::tune::Pending>, graph: &Graph) -> GpuExecutable {
        if !pending.is_empty() {
            self.retune = Some((pending, graph.clone()));
        }
        self
    }

    /// Whether layer tiles are still to be measured (on the next run).
    pub fn tiles_pending(&self) -> bool {
        self.retune.is_some()
    }

    /// Measures the pending layers' tiles on the device and swaps in an
    /// executable compiled with them (their measurements are cached, so
    /// that compile measures nothing). Only a lost device is an error: if
    /// measuring or recompiling fails otherwise, this executable keeps its
    /// heuristic tiles (never re-measured: the pending list is taken).
    async fn retune(&mut self) -> Result<(), KernelError> {
        let Some((pending, graph)) = self.retune.take() else { return Ok(()) };
        for p in &pending {
            if crate::tune::measure(&self.ctx, p).await.is_err() {
                return self.ctx.check_alive();
            }
        }
        let scopes = self.ctx.scopes();
        let fresh = crate::compile::compile(&self.ctx, &graph);
        let verdict = bounded(&self.ctx, scopes.pop().check(&format!("recompiling '{}' with measured tiles", graph.name))).await;
        match (fresh, verdict) {
            (Ok(fresh), Ok(())) => *self = fresh,
            _ => self.ctx.check_alive()?,
        }
        Ok(())
    }

    /// Compute dispatches one run records (all in one submission).
    pub fn dispatches(&self) -> usize {
        self.passes.len()
    }

    /// The kernels each graph node runs as (its label per dispatch, joined
    /// by "+"), for per-layer reports; nodes fused into another step or
    /// computed by none (an aliased reshape) are absent.
    pub fn kernels(&self) -> Vec<(NodeId, String)> {
        let mut out: Vec<(NodeId, String)> = Vec::new();
        for p in &self.passes {
            let node = self.timed[p.step];
            match out.last_mut() {
                Some((n, label)) if *n == node => {
                    if !label.split('+').any(|x| x == p.label) {
                        label.push('+');
                        label.push_str(&p.label);
                    }
                }
                _ => out.push((node, p.label.clone())),
            }
        }
        out
    }

    /// Bytes of activation memory this graph's slots need (before pooling).
    pub fn activation_bytes(&self) -> u64 {
        self.activation_bytes
    }

    /// Writes the inputs and records `passes` (all when `None`) plus, with
    /// `read`, the output copies; submits once.
    fn submit(&self, inputs: &[Tensor], passes: Option<std::ops::Range<usize>>, write_inputs: bool, read: bool) -> Result<(wgpu::SubmissionIndex, PoppedScopes), KernelError> {
        self.ctx.check_alive()?;
        let _guard = self.ctx.submit_lock.lock().unwrap_or_else(|e| e.into_inner());
        let scopes = self.ctx.scopes();
        if write_inputs {
            for (buf, t) in self.inputs.iter().zip(inputs) {
                if t.numel() > 0 {
                    self.ctx.queue.write_buffer(buf, 0, &f32_bytes(t.data()));
                }
            }
        }
        let mut enc = self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("tessera run") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("tessera graph"), timestamp_writes: None });
            for p in &self.passes[passes.unwrap_or(0..self.passes.len())] {
                pass.set_pipeline(&p.pipeline);
                pass.set_bind_group(0, &p.bind_group, &[]);
                pass.dispatch_workgroups(p.groups[0], p.groups[1], p.groups[2]);
            }
        }
        if read {
            for (src, offset, bytes) in &self.copies {
                enc.copy_buffer_to_buffer(src, 0, &self.staging, *offset, *bytes);
            }
        }
        let index = self.ctx.queue.submit([enc.finish()]);
        Ok((index, scopes.pop()))
    }

    /// Splits the staging data into output tensors.
    fn collect(&self, inputs: &[Tensor], staged: &[f32]) -> Result<Vec<Tensor>, KernelError> {
        self.outputs
            .iter()
            .map(|o| match o {
                Output::Staged { offset, shape } => {
                    let start = (*offset / 4) as usize;
                    let n: usize = shape.iter().product();
                    let data = staged.get(start..start + n).ok_or_else(|| device_error("read-back returned too little data"))?;
                    Ok(Tensor::new(shape.clone(), data.to_vec())?)
                }
                Output::Input { index, shape } => Ok(Tensor::new(shape.clone(), inputs[*index].data().to_vec())?),
                Output::Host(t) => Ok(t.clone()),
            })
            .collect()
    }

    /// Runs the graph and awaits the results: the browser's entry point
    /// (natively it blocks inside, like [`Executable::run`]).
    pub async fn run_async(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, KernelError> {
        self.signature.check_inputs(inputs)?;
        self.retune().await?;
        let (index, scopes) = self.submit(inputs, None, true, true)?;
        let staged = bounded(&self.ctx, async {
            scopes.check("run").await?;
            read_back_async(&self.ctx, &self.staging, self.staging_len, index).await
        })
        .await?;
        self.ctx.check_alive()?;
        self.collect(inputs, &staged)
    }

    /// Native blocking run.
    #[cfg(not(target_arch = "wasm32"))]
    fn run_blocking(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, KernelError> {
        self.signature.check_inputs(inputs)?;
        let (index, scopes) = self.submit(inputs, None, true, true)?;
        scopes.check_now("run")?;
        let staged = crate::device::read_back_blocking(&self.ctx, &self.staging, self.staging_len, index)?;
        self.ctx.check_alive()?;
        self.collect(inputs, &staged)
    }

    /// Native profiled run. With timestamp queries, one submission with a
    /// compute pass per step, each step timed on the GPU itself; otherwise
    /// each step submitted and waited for alone and timed with `clock` (so
    /// a step's time includes one submission's overhead).
    #[cfg(not(target_arch = "wasm32"))]
    fn run_profiled_blocking(&mut self, inputs: &[Tensor], clock: Clock) -> Result<(Vec<Tensor>, Vec<NodeTiming>), KernelError> {
        self.signature.check_inputs(inputs)?;
        if self.ctx.timestamps && !self.timed.is_empty() && 2 * self.timed.len() <= wgpu::QUERY_SET_MAX_QUERIES as usize {
            return self.run_timestamped(inputs);
        }
        let mut timings = Vec::with_capacity(self.timed.len());
        // Upload first, so the first step's time is its own.
        let (index, scopes) = self.submit(inputs, Some(0..0), true, false)?;
        scopes.check_now("upload")?;
        crate::device::wait(&self.ctx, Some(index))?;
        let mut p = 0;
        for (si, &node) in self.timed.iter().enumerate() {
            let start = p;
            while p < self.passes.len() && self.passes[p].step == si {
                p += 1;
            }
            let t0 = clock();
            let (index, scopes) = self.submit(inputs, Some(start..p), false, false)?;
            scopes.check_now("run")?;
            crate::device::wait(&self.ctx, Some(index))?;
            timings.push(NodeTiming { node, ms: clock() - t0 });
        }
        let (index, scopes) = self.submit(inputs, Some(0..0), false, true)?;
        scopes.check_now("read-back")?;
        let staged = crate::device::read_back_blocking(&self.ctx, &self.staging, self.staging_len, index)?;
        self.ctx.check_alive()?;
        Ok((self.collect(inputs, &staged)?, timings))
    }
}

impl GpuExecutable {
    /// A profiled run timed by GPU timestamps around each step's pass.
    #[cfg(not(target_arch = "wasm32"))]
    fn run_timestamped(&mut self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Vec<NodeTiming>), KernelError> {
        let ctx = &self.ctx;
        ctx.check_alive()?;
        let steps = self.timed.len();
        let bytes = 16 * steps as u64;
        let (index, scopes, times) = {
            let _guard = ctx.submit_lock.lock().unwrap_or_else(|e| e.into_inner());
            let scopes = ctx.scopes();
            let queries = ctx.device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("tessera profile"), ty: wgpu::QueryType::Timestamp, count: 2 * steps as u32 });
            let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: bytes, usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC, mapped_at_creation: false });
            let times = ctx.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: bytes, usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
            for (buf, t) in self.inputs.iter().zip(inputs) {
                if t.numel() > 0 {
                    ctx.queue.write_buffer(buf, 0, &f32_bytes(t.data()));
                }
            }
            let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("tessera profiled run") });
            let mut p = 0;
            for si in 0..steps {
                let writes = wgpu::ComputePassTimestampWrites { query_set: &queries, beginning_of_pass_write_index: Some(2 * si as u32), end_of_pass_write_index: Some(2 * si as u32 + 1) };
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: Some(writes) });
                while p < self.passes.len() && self.passes[p].step == si {
                    let d = &self.passes[p];
                    pass.set_pipeline(&d.pipeline);
                    pass.set_bind_group(0, &d.bind_group, &[]);
                    pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
                    p += 1;
                }
            }
            enc.resolve_query_set(&queries, 0..2 * steps as u32, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &times, 0, bytes);
            for (src, offset, n) in &self.copies {
                enc.copy_buffer_to_buffer(src, 0, &self.staging, *offset, *n);
            }
            (ctx.queue.submit([enc.finish()]), scopes.pop(), times)
        };
        scopes.check_now("profiled run")?;
        let staged = crate::device::read_back_blocking(ctx, &self.staging, self.staging_len, index.clone())?;
        let raw = crate::device::read_bytes_blocking(ctx, &times, bytes, index)?;
        ctx.check_alive()?;
        let ticks: Vec<u64> = raw.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))).collect();
        let period_ns = ctx.queue.get_timestamp_period() as f64;
        let timings = self.timed.iter().enumerate().map(|(si, &node)| NodeTiming { node, ms: ticks[2 * si + 1].saturating_sub(ticks[2 * si]) as f64 * period_ns / 1e6 }).collect();
        Ok((self.collect(inputs, &staged)?, timings))
    }
}

impl Executable for GpuExecutable {
    fn run_async<'a>(&'a mut self, inputs: &'a [Tensor]) -> RunFuture<'a> {
        Box::pin(GpuExecutable::run_async(self, inputs))
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, KernelError> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.run_blocking(inputs)
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = inputs;
            Err(device_error("the browser cannot block on the GPU: call GpuExecutable::run_async"))
        }
    }

    fn run_profiled(&mut self, inputs: &[Tensor], clock: Clock) -> Result<(Vec<Tensor>, Vec<NodeTiming>), KernelError> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.run_profiled_blocking(inputs, clock)
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = (inputs, clock);
            Err(device_error("the browser cannot block on the GPU: call GpuExecutable::run_async"))
        }
    }
}
