//! Tessera's CPU backend.
//!
//! `compile` turns a [`Graph`] into a flat list of steps: convolution and
//! dense weights are packed into GEMM panels once, broadcasts and gathers are
//! planned once, and every intermediate value is assigned a buffer slot by
//! a lifetime scan (a slot is reused as soon as the last consumer of the
//! value it holds has run; element-wise ops and reshapes overwrite or adopt
//! their input's slot when they are its last reader). A convolution whose
//! only reader is a residual `Add` (optionally followed by an activation)
//! absorbs both: the skip connection is added in the GEMM epilogue. `run`
//! then executes the steps over those slots, which are kept between runs,
//! so a warm run allocates little beyond its output tensors.
//!
//! Natively the kernels spread work over a private rayon pool of the
//! requested size; on wasm32 everything runs on the calling thread.

mod conv;
mod dense;
mod depthwise;
mod elementwise;
pub(crate) mod gemm;
mod layout;
mod norm;
pub(crate) mod par;
mod pool;
mod simd;
pub mod winograd;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use tessera_graph::tensor::numel;
use tessera_graph::{Activation, Graph, NodeId, Op, Pool, Tensor};

use crate::backend::{Backend, Clock, Executable, KernelError, NodeTiming};
use conv::ConvPlan;
use dense::DensePlan;
use elementwise::BinaryPlan;
use layout::Gather;
use par::Par;
pub use simd::Isa;

/// The CPU backend: SIMD GEMM-based kernels (AVX-512 / AVX2 natively,
/// `simd128` in the browser, portable Rust elsewhere), multi-threaded
/// natively. Cheap to clone; clones share the thread pool.
#[derive(Clone)]
pub struct CpuBackend {
    isa: Isa,
    par: Arc<Par>,
}

impl CpuBackend {
    /// A backend on the best SIMD path of this machine with `threads`
    /// worker threads (0 is taken as 1; always 1 on wasm32). If the OS
    /// refuses to start the threads, it runs on the calling thread.
    pub fn new(threads: usize) -> CpuBackend {
        CpuBackend::with_isa(threads, Isa::detect()).unwrap_or_else(|_| CpuBackend { isa: Isa::detect(), par: Arc::new(single()) })
    }

    /// A backend on a chosen SIMD path (to compare paths, or to test the
    /// portable one); fails if this machine cannot run `isa` or the
    /// threads cannot be started.
    pub fn with_isa(threads: usize, isa: Isa) -> Result<CpuBackend, KernelError> {
        if !isa.is_available() {
            return Err(KernelError::Device { backend: "cpu".into(), msg: format!("this machine cannot run the {} path", isa.name()) });
        }
        let par = Par::new(threads).map_err(|msg| KernelError::Device { backend: "cpu".into(), msg })?;
        Ok(CpuBackend { isa, par: Arc::new(par) })
    }

    /// The SIMD path in use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Worker threads in use.
    pub fn threads(&self) -> usize {
        self.par.threads()
    }
}

fn single() -> Par {
    Par::new(1).expect("one thread needs no pool")
}

impl Default for CpuBackend {
    /// The best SIMD path, one thread per available core.
    fn default() -> CpuBackend {
        #[cfg(not(target_arch = "wasm32"))]
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        #[cfg(target_arch = "wasm32")]
        let threads = 1;
        CpuBackend::new(threads)
    }
}

impl std::fmt::Debug for CpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        format!("cpu {} x{}", self.isa.name(), self.par.threads())
    }

    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>, KernelError> {
        Ok(Box::new(CpuExecutable::new(self, graph)?))
    }
}

/// Where a value lives at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loc {
    /// The i-th run-time input tensor.
    Input(usize),
    /// The i-th constant.
    Const(usize),
    /// A buffer slot of the executable.
    Slot(usize),
}

/// The prepared work of one node.
enum Kernel {
    /// `residual`: the step's second input is added before the activation.
    Conv { plan: ConvPlan, residual: bool },
    Dense(DensePlan),
    Pool { pool: Pool, max: bool },
    GlobalPool { max: bool },
    Act(Activation),
    Binary(BinaryPlan),
    /// Unfused BatchNorm as a per-channel affine map.
    Affine { mul: Vec<f32>, add: Vec<f32> },
    Concat { axis: usize },
    /// Reshape / Flatten: the same data (adopted in place when possible).
    Copy,
    Gather(Gather),
    Softmax { axis: usize, flatten: bool },
    Lrn(tessera_graph::op::Lrn),
    SpaceToDepth { block: usize },
    DepthToSpace { block: usize, crd: bool },
}

impl Kernel {
    /// Whether the output may overwrite the first input's buffer.
    fn in_place_ok(&self) -> bool {
        match self {
            Kernel::Act(_) | Kernel::Affine { .. } | Kernel::Copy => true,
            Kernel::Binary(b) => b.a_is_dense(),
            _ => false,
        }
    }
}

struct Step {
    /// The node timed for this step (a fused conv reports under the conv).
    node: NodeId,
    kernel: Kernel,
    inputs: Vec<Loc>,
    in_shapes: Vec<Vec<usize>>,
    out: usize,
    out_shape: Vec<usize>,
    /// The output overwrites `inputs[0]`'s slot.
    in_place: bool,
}

/// A graph compiled for the CPU backend.
struct CpuExecutable {
    isa: Isa,
    par: Arc<Par>,
    /// The graph's inputs alone, to validate run-time tensors.
    signature: Graph,
    consts: Vec<Arc<Tensor>>,
    steps: Vec<Step>,
    /// Elements each slot must hold.
    slot_len: Vec<usize>,
    /// The slots themselves, allocated on first run and kept.
    slots: Vec<Vec<f32>>,
    outputs: Vec<(Loc, Vec<usize>)>,
}

fn unsupported(g: &Graph, id: NodeId, msg: impl Into<String>) -> KernelError {
    let n = g.node(id);
    KernelError::Unsupported { backend: "cpu".into(), node: n.name.clone(), op: n.op.name().into(), msg: msg.into() }
}

impl CpuExecutable {
    fn new(be: &CpuBackend, g: &Graph) -> Result<CpuExecutable, KernelError> {
        let isa = be.isa;
        let mut signature = Graph::new(g.name.clone());
        for &i in g.inputs() {
            signature.input(g.node(i).name.clone(), &g.node(i).shape)?;
        }
        let fusions = find_residual_fusions(g);
        // What each step computes: (timed node, node whose value it produces,
        // nodes it reads, kernel).
        let mut protos: Vec<(NodeId, NodeId, Vec<NodeId>, Kernel)> = Vec::new();
        let mut locs: Vec<Option<Loc>> = vec![None; g.len()];
        let mut consts = Vec::new();
        let input_index = |id: NodeId| g.inputs().iter().position(|&i| i == id);
        for (id, node) in g.nodes().iter().enumerate() {
            let in_shapes: Vec<Vec<usize>> = node.inputs.iter().map(|&i| g.node(i).shape.clone()).collect();
            match &node.op {
                Op::Input => {
                    let k = input_index(id).ok_or_else(|| unsupported(g, id, "input node is not a declared graph input"))?;
                    locs[id] = Some(Loc::Input(k));
                }
                Op::Const(t) => {
                    locs[id] = Some(Loc::Const(consts.len()));
                    consts.push(t.clone());
                }
                _ if fusions.absorbed[id] => {}
                op => {
                    if let Some(f) = fusions.at[id] {
                        // The Add (or the activation after it) of a fused conv.
                        let conv_node = g.node(f.conv);
                        let Op::Conv(c) = &conv_node.op else { unreachable!() };
                        let x = conv_node.inputs[0];
                        let plan = ConvPlan::new(isa, c, &g.node(x).shape, &conv_node.shape).map_err(|m| unsupported(g, f.conv, m))?.with_act(f.act);
                        protos.push((f.conv, f.out, vec![x, f.residual], Kernel::Conv { plan, residual: true }));
                    } else {
                        let kernel = plan_kernel(isa, op, &in_shapes, &node.shape).map_err(|m| unsupported(g, id, m))?;
                        protos.push((id, id, node.inputs.clone(), kernel));
                    }
                }
            }
        }

        // Last step reading every value; graph outputs live to the end.
        let mut last_use: Vec<usize> = vec![usize::MAX - 1; g.len()];
        for (si, (_, out, inputs, _)) in protos.iter().enumerate() {
            last_use[*out] = si; // unread values die right away
            for &i in inputs {
                last_use[i] = si;
            }
        }
        for (si, (_, out, _, _)) in protos.iter().enumerate() {
            last_use[*out] = last_use[*out].max(si);
        }
        for &o in g.outputs() {
            last_use[o] = usize::MAX;
        }

        let mut steps = Vec::with_capacity(protos.len());
        let mut slot_len: Vec<usize> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        for (si, (timed, out_node, in_nodes, kernel)) in protos.into_iter().enumerate() {
            let mut inputs = Vec::with_capacity(in_nodes.len());
            for &i in &in_nodes {
                inputs.push(locs[i].ok_or_else(|| unsupported(g, out_node, "input computed later"))?);
            }
            let out_shape = g.node(out_node).shape.clone();
            let len = numel(&out_shape);
            // Overwrite the first input when this is its last reader and it
            // is not read twice by this step.
            let first = in_nodes.first().copied();
            let in_place = match (first, inputs.first()) {
                (Some(f), Some(Loc::Slot(_))) => kernel.in_place_ok() && last_use[f] == si && in_nodes.iter().filter(|&&i| i == f).count() == 1,
                _ => false,
            };
            let out = if in_place {
                let Some(Loc::Slot(s)) = inputs.first().copied() else { unreachable!() };
                s
            } else {
                take_slot(&mut free, &mut slot_len, len)
            };
            slot_len[out] = slot_len[out].max(len);
            locs[out_node] = Some(Loc::Slot(out));
            // Release inputs read for the last time (each once).
            let mut released: Vec<usize> = Vec::new();
            for &i in &in_nodes {
                if let Some(Loc::Slot(s)) = locs[i]
                    && last_use[i] == si
                    && s != out
                    && !released.contains(&s)
                {
                    released.push(s);
                }
            }
            free.extend(released);
            if last_use[out_node] == si {
                free.push(out); // nobody reads it
            }
            let in_shapes = in_nodes.iter().map(|&i| g.node(i).shape.clone()).collect();
            steps.push(Step { node: timed, kernel, inputs, in_shapes, out, out_shape, in_place });
        }
        let outputs = g
            .outputs()
            .iter()
            .map(|&o| Ok((locs[o].ok_or_else(|| unsupported(g, o, "output never computed"))?, g.node(o).shape.clone())))
            .collect::<Result<_, KernelError>>()?;
        Ok(CpuExecutable { isa, par: be.par.clone(), signature, consts, steps, slots: vec![Vec::new(); slot_len.len()], slot_len, outputs })
    }

    fn execute(&mut self, inputs: &[Tensor], clock: Option<Clock>) -> Result<(Vec<Tensor>, Vec<NodeTiming>), KernelError> {
        self.signature.check_inputs(inputs)?;
        for (s, &len) in self.slots.iter_mut().zip(&self.slot_len) {
            if s.len() < len {
                s.resize(len, 0.0);
            }
        }
        let mut timings = Vec::new();
        for step in &self.steps {
            let t0 = clock.map(|c| c());
            let mut out = std::mem::take(&mut self.slots[step.out]);
            {
                let slots = &self.slots;
                let consts = &self.consts;
                let get = |l: Loc| -> &[f32] {
                    match l {
                        Loc::Input(i) => inputs[i].data(),
                        Loc::Const(i) => consts[i].data(),
                        Loc::Slot(s) => &slots[s],
                    }
                };
                let len = numel(&step.out_shape);
                let xs: Vec<&[f32]> = if step.in_place { step.inputs[1..].iter().map(|&l| get(l)).collect() } else { step.inputs.iter().map(|&l| get(l)).collect() };
                run_step(self.isa, &self.par, step, &xs, &mut out[..len]);
            }
            self.slots[step.out] = out;
            if let (Some(c), Some(t0)) = (clock, t0) {
                timings.push(NodeTiming { node: step.node, ms: c() - t0 });
            }
        }
        let outs = self
            .outputs
            .iter()
            .map(|(l, shape)| {
                let n = numel(shape);
                let data = match *l {
                    Loc::Input(i) => inputs[i].data().to_vec(),
                    Loc::Const(i) => self.consts[i].data().to_vec(),
                    Loc::Slot(s) => self.slots[s][..n].to_vec(),
                };
                Tensor::new(shape.clone(), data).map_err(KernelError::from)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((outs, timings))
    }
}

/// A conv folded into the residual `Add` that reads it.
#[derive(Clone, Copy, Debug)]
struct Fusion {
    conv: NodeId,
    /// The other operand of the `Add`.
    residual: NodeId,
    /// The node whose value the fused step produces (the `Add`, or the
    /// activation after it).
    out: NodeId,
    act: Activation,
}

struct Fusions {
    /// Nodes computed by a fused step elsewhere (the conv, the `Add` when
    /// an activation follows it).
    absorbed: Vec<bool>,
    /// The fused step emitted at this node's position.
    at: Vec<Option<Fusion>>,
}

/// Finds `Conv (no activation) → Add(conv, r) [→ Act]` chains whose inner
/// values nothing else reads, with `r` of the output's shape. The fused step
/// runs where the last node of the chain was, when `r` is surely computed.
fn find_residual_fusions(g: &Graph) -> Fusions {
    let consumers = g.consumers();
    let outputs = g.outputs();
    let sole = |i: NodeId| match consumers[i].as_slice() {
        [c] if !outputs.contains(&i) => Some(*c),
        _ => None,
    };
    let mut f = Fusions { absorbed: vec![false; g.len()], at: vec![None; g.len()] };
    for (p, node) in g.nodes().iter().enumerate() {
        let Op::Conv(c) = &node.op else { continue };
        if c.act != Activation::Identity {
            continue;
        }
        let Some(j) = sole(p) else { continue };
        let add = g.node(j);
        if add.op != Op::Binary(tessera_graph::BinaryOp::Add) || add.inputs.len() != 2 {
            continue;
        }
        let r = if add.inputs[0] == p { add.inputs[1] } else { add.inputs[0] };
        // One conv per Add (both operands may qualify; the other stays a value).
        if r == p || add.shape != node.shape || g.node(r).shape != node.shape || f.absorbed[r] || f.at[j].is_some() || f.absorbed[j] {
            continue;
        }
        let mut fusion = Fusion { conv: p, residual: r, out: j, act: Activation::Identity };
        if let Some(a) = sole(j)
            && let Op::Act(act) = g.node(a).op
        {
            fusion.out = a;
            fusion.act = act;
            f.absorbed[j] = true;
        }
        f.absorbed[p] = true;
        f.at[fusion.out] = Some(fusion);
    }
    f
}

/// Picks a free slot for `len` elements: the smallest that fits, else the
/// largest (grown), else a new one.
fn take_slot(free: &mut Vec<usize>, slot_len: &mut Vec<usize>, len: usize) -> usize {
    let fit = free.iter().enumerate().filter(|(_, s)| slot_len[**s] >= len).min_by_key(|(_, s)| slot_len[**s]).map(|(i, _)| i);
    let pick = fit.or_else(|| free.iter().enumerate().max_by_key(|(_, s)| slot_len[**s]).map(|(i, _)| i));
    match pick {
        Some(i) => free.swap_remove(i),
        None => {
            slot_len.push(0);
            slot_len.len() - 1
        }
    }
}

/// Prepares the kernel of one op.
fn plan_kernel(isa: Isa, op: &Op, ins: &[Vec<usize>], out: &[usize]) -> Result<Kernel, String> {
    let x = ins.first().map(|s| s.as_slice()).unwrap_or(&[]);
    Ok(match op {
        Op::Input | Op::Const(_) => unreachable!("handled by the caller"),
        Op::Conv(c) => Kernel::Conv { plan: ConvPlan::new(isa, c, x, out)?, residual: false },
        Op::Dense(d) => Kernel::Dense(DensePlan::new(isa, d, x)?),
        Op::MaxPool(p) | Op::AveragePool(p) => {
            if x.len() != 4 {
                return Err(format!("expected an NCHW input, got {x:?}"));
            }
            Kernel::Pool { pool: p.clone(), max: matches!(op, Op::MaxPool(_)) }
        }
        Op::GlobalAveragePool => Kernel::GlobalPool { max: false },
        Op::GlobalMaxPool => Kernel::GlobalPool { max: true },
        Op::Act(a) => Kernel::Act(*a),
        Op::Binary(b) => Kernel::Binary(BinaryPlan::new(*b, x, &ins[1])?),
        Op::BatchNorm(bn) => {
            let (mul, add) = bn.affine();
            if x.len() < 2 || x[1] != mul.len() {
                return Err(format!("input {x:?} does not have {} channels", mul.len()));
            }
            Kernel::Affine { mul, add }
        }
        Op::Concat { axis } => Kernel::Concat { axis: *axis },
        Op::Flatten { .. } | Op::Reshape { .. } => Kernel::Copy,
        Op::Transpose { perm } => Kernel::Gather(Gather::transpose(x, perm)),
        Op::Softmax { axis, flatten } => Kernel::Softmax { axis: *axis, flatten: *flatten },
        Op::Pad { begin, end, mode } => Kernel::Gather(Gather::pad(x, begin, end, *mode)),
        Op::Slice { starts, ends } => Kernel::Gather(Gather::slice(x, starts, ends)),
        Op::Resize(r) => Kernel::Gather(Gather::resize(x, r)),
        Op::Lrn(l) => Kernel::Lrn(*l),
        Op::SpaceToDepth { block } => Kernel::SpaceToDepth { block: *block },
        Op::DepthToSpace { block, crd } => Kernel::DepthToSpace { block: *block, crd: *crd },
    })
}

/// Runs one step. `xs` are the inputs, minus the first when the step runs
/// in place (then `y` already holds it).
fn run_step(isa: Isa, par: &Par, step: &Step, xs: &[&[f32]], y: &mut [f32]) {
    let x0 = || xs[0];
    let xshape = &step.in_shapes[0];
    match &step.kernel {
        Kernel::Conv { plan, residual } => plan.run(isa, par, x0(), residual.then(|| xs[1]), y),
        Kernel::Dense(d) => d.run(isa, par, x0(), y),
        Kernel::Pool { pool: p, max } => pool::pool(isa, par, p, *max, xshape, &step.out_shape, x0(), y),
        Kernel::GlobalPool { max } => {
            let planes = xshape[0] * xshape[1];
            pool::global_pool(isa, *max, planes, numel(&xshape[2..]), x0(), y)
        }
        Kernel::Act(a) => elementwise::activation(isa, par, *a, (!step.in_place).then(x0), y),
        Kernel::Affine { mul, add } => {
            let inner = numel(&xshape[2..]);
            elementwise::affine(isa, par, xshape[0], xshape[1], inner, mul, add, (!step.in_place).then(x0), y)
        }
        Kernel::Binary(b) => {
            let out = y.as_mut_ptr();
            // SAFETY: the plan was made for these shapes; in place, `a` is `y`
            // itself (dense, read before written at each index).
            unsafe {
                if step.in_place {
                    b.run(isa, par, out, xs[0].as_ptr(), out)
                } else {
                    b.run(isa, par, xs[0].as_ptr(), xs[1].as_ptr(), out)
                }
            }
        }
        Kernel::Concat { axis } => {
            let shapes: Vec<&[usize]> = step.in_shapes.iter().map(|s| s.as_slice()).collect();
            layout::concat(*axis, &shapes, xs, y)
        }
        Kernel::Copy => {
            if !step.in_place {
                y.copy_from_slice(&x0()[..y.len()]);
            }
        }
        Kernel::Gather(gt) => gt.run(x0(), y),
        Kernel::Softmax { axis, flatten } => norm::softmax(isa, xshape, *axis, *flatten, x0(), y),
        Kernel::Lrn(l) => norm::lrn(isa, par, l, xshape, x0(), y),
        Kernel::SpaceToDepth { block } => layout::space_to_depth(xshape, *block, x0(), y),
        Kernel::DepthToSpace { block, crd } => layout::depth_to_space(xshape, *block, *crd, x0(), y),
    }
}

impl Executable for CpuExecutable {
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, KernelError> {
        Ok(self.execute(inputs, None)?.0)
    }

    fn run_profiled(&mut self, inputs: &[Tensor], clock: Clock) -> Result<(Vec<Tensor>, Vec<NodeTiming>), KernelError> {
        self.execute(inputs, Some(clock))
    }
}
