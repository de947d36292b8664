//! Graph → executable: one pass over the nodes picks each op's dispatches
//! (fusing `Conv → Add(residual) [→ Act]` chains as the CPU backend does),
//! a lifetime scan assigns values to pool slots, and everything a run needs
//! is created once: constant buffers, the parameter blocks of every
//! dispatch in one uniform buffer, bind groups, pipelines and the staging
//! buffer results are read back through.

use std::sync::Arc;

use tessera_graph::tensor::numel;
use tessera_graph::{Activation, BinaryOp, Graph, NodeId, Op, Tensor};
use tessera_kernels::KernelError;

use crate::device::GpuContext;
use crate::exec::{GpuExecutable, Output, Pass};
use crate::ops::{self, Cx, Dispatch, Dst, Src};
use crate::pool::{size_class, SlotPlanner};

/// Where a value lives at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loc {
    /// The i-th graph input (its upload buffer).
    Input(usize),
    /// The i-th constant buffer (graph `Const` nodes).
    Const(usize),
    /// An activation slot.
    Slot(usize),
}

/// What one step computes, before slots are known.
struct Proto {
    /// The node timings are reported under.
    timed: NodeId,
    /// The node whose value the step produces.
    out: NodeId,
    inputs: Vec<NodeId>,
    dispatches: Vec<Dispatch>,
    /// A reshape: may adopt its input's slot instead of copying.
    alias_ok: bool,
}

fn unsupported(g: &Graph, id: NodeId, msg: impl Into<String>) -> KernelError {
    let n = g.node(id);
    KernelError::Unsupported { backend: "gpu".into(), node: n.name.clone(), op: n.op.name().into(), msg: msg.into() }
}

/// A conv folded into the residual `Add` that reads it.
#[derive(Clone, Copy, Debug)]
struct Fusion {
    conv: NodeId,
    residual: NodeId,
    out: NodeId,
    act: Activation,
}

/// `Conv (no activation) → Add(conv, r) [→ Act]` chains whose inner values
/// nothing else reads: `absorbed` nodes are computed by the fused step
/// emitted at `at[out]`. (The rule of the CPU backend.)
fn residual_fusions(g: &Graph) -> (Vec<bool>, Vec<Option<Fusion>>) {
    let consumers = g.consumers();
    let outputs = g.outputs();
    let sole = |i: NodeId| match consumers[i].as_slice() {
        [c] if !outputs.contains(&i) => Some(*c),
        _ => None,
    };
    let mut absorbed = vec![false; g.len()];
    let mut at: Vec<Option<Fusion>> = vec![None; g.len()];
    for (p, node) in g.nodes().iter().enumerate() {
        let Op::Conv(c) = &node.op else { continue };
        if c.act != Activation::Identity {
            continue;
        }
        let Some(j) = sole(p) else { continue };
        let add = g.node(j);
        if add.op != Op::Binary(BinaryOp::Add) || add.inputs.len() != 2 {
            continue;
        }
        let r = if add.inputs[0] == p { add.inputs[1] } else { add.inputs[0] };
        if r == p || add.shape != node.shape || g.node(r).shape != node.shape || absorbed[r] || at[j].is_some() || absorbed[j] {
            continue;
        }
        let mut f = Fusion { conv: p, residual: r, out: j, act: Activation::Identity };
        if let Some(a) = sole(j)
            && let Op::Act(act) = g.node(a).op
        {
            f.out = a;
            f.act = act;
            absorbed[j] = true;
        }
        absorbed[p] = true;
        at[f.out] = Some(f);
    }
    (absorbed, at)
}

/// The dispatches of one (unfused) op.
fn plan_op(cx: &mut Cx, op: &Op, ins: &[Vec<usize>], out: &[usize]) -> Result<(Vec<Dispatch>, bool), String> {
    let x = ins.first().map(|s| s.as_slice()).unwrap_or(&[]);
    Ok(match op {
        Op::Input | Op::Const(_) => unreachable!("handled by the caller"),
        Op::Conv(c) => (ops::conv::plan(cx, c, x, out, false)?, false),
        Op::Dense(d) => (ops::dense::plan(cx, d, x)?, false),
        Op::MaxPool(p) => (ops::pooling::window(p, true, x, out)?, false),
        Op::AveragePool(p) => (ops::pooling::window(p, false, x, out)?, false),
        Op::GlobalAveragePool => (ops::pooling::global(false, x)?, false),
        Op::GlobalMaxPool => (ops::pooling::global(true, x)?, false),
        Op::Act(a) => (ops::elementwise::activation(*a, x)?, false),
        Op::Binary(b) => (ops::elementwise::binary(*b, x, &ins[1])?, false),
        Op::BatchNorm(bn) => (ops::elementwise::batch_norm(cx, bn, x)?, false),
        Op::Concat { axis } => (ops::layout::concat(ins, *axis)?, false),
        Op::Flatten { .. } | Op::Reshape { .. } => (ops::layout::copy(x)?, true),
        Op::Transpose { perm } => (ops::layout::transpose(cx, x, perm)?, false),
        Op::Softmax { axis, flatten } => (ops::norm::softmax(x, *axis, *flatten)?, false),
        Op::Pad { begin, end, mode } => (ops::layout::pad(cx, x, begin, end, *mode)?, false),
        Op::Slice { starts, ends } => (ops::layout::slice(cx, x, starts, ends)?, false),
        Op::Resize(r) => (ops::layout::resize(cx, x, r)?, false),
        Op::Lrn(l) => (ops::norm::lrn(l, x)?, false),
        Op::SpaceToDepth { block } => (ops::layout::space_to_depth(cx, x, *block)?, false),
        Op::DepthToSpace { block, crd } => (ops::layout::depth_to_space(cx, x, *block, *crd)?, false),
    })
}

/// Binding size of a buffer holding `bytes` (at least 16, a multiple of 16).
fn binding_size(bytes: u64) -> u64 {
    bytes.max(16).div_ceil(16) * 16
}

/// Compiles `g` on `ctx`. Device errors raised while creating resources
/// are caught by the caller's error scopes.
pub(crate) fn compile(ctx: &Arc<GpuContext>, g: &Graph) -> Result<GpuExecutable, KernelError> {
    ctx.check_alive()?;
    let mut signature = Graph::new(g.name.clone());
    for &i in g.inputs() {
        signature.input(g.node(i).name.clone(), &g.node(i).shape)?;
    }
    let max_binding = ctx.max_binding();
    let (absorbed, fusions) = residual_fusions(g);
    let mut cx = Cx::new(ctx);
    let mut locs: Vec<Option<Loc>> = vec![None; g.len()];
    let mut const_tensors: Vec<Arc<Tensor>> = Vec::new();
    let mut const_index: Vec<usize> = Vec::new(); // const_tensors[i] lives in cx.consts[const_index[i]]
    let mut protos: Vec<Proto> = Vec::new();
    for (id, node) in g.nodes().iter().enumerate() {
        match &node.op {
            Op::Input => {
                let k = g.inputs().iter().position(|&i| i == id).ok_or_else(|| unsupported(g, id, "input node is not a declared graph input"))?;
                locs[id] = Some(Loc::Input(k));
            }
            Op::Const(t) => {
                let src = cx.f32_from(t, "const", || t.data().to_vec()).map_err(|m| unsupported(g, id, m))?;
                let Src::Const(ci) = src else { unreachable!() };
                locs[id] = Some(Loc::Const(const_tensors.len()));
                const_tensors.push(t.clone());
                const_index.push(ci);
            }
            _ if absorbed[id] => {}
            op => {
                if let Some(f) = fusions[id] {
                    let conv = g.node(f.conv);
                    let Op::Conv(c) = &conv.op else { unreachable!() };
                    let mut c = c.clone();
                    c.act = f.act;
                    let x = conv.inputs[0];
                    let d = ops::conv::plan(&mut cx, &c, &g.node(x).shape, &conv.shape, true).map_err(|m| unsupported(g, f.conv, m))?;
                    protos.push(Proto { timed: f.conv, out: f.out, inputs: vec![x, f.residual], dispatches: d, alias_ok: false });
                } else {
                    let ins: Vec<Vec<usize>> = node.inputs.iter().map(|&i| g.node(i).shape.clone()).collect();
                    let (d, alias_ok) = plan_op(&mut cx, op, &ins, &node.shape).map_err(|m| unsupported(g, id, m))?;
                    protos.push(Proto { timed: id, out: id, inputs: node.inputs.clone(), dispatches: d, alias_ok });
                }
            }
        }
    }

    // Lifetimes: the last step reading each value; graph outputs never die.
    let mut last_use: Vec<usize> = vec![usize::MAX - 1; g.len()];
    for (si, p) in protos.iter().enumerate() {
        last_use[p.out] = si;
        for &i in &p.inputs {
            last_use[i] = si;
        }
    }
    for (si, p) in protos.iter().enumerate() {
        last_use[p.out] = last_use[p.out].max(si);
    }
    for &o in g.outputs() {
        last_use[o] = usize::MAX;
    }

    // Slots.
    let mut slots = SlotPlanner::default();
    struct Step {
        timed: NodeId,
        inputs: Vec<Loc>,
        out: Loc,
        /// Slots held only while the step runs (split-K partials,
        /// Winograd transforms).
        scratch: Vec<Loc>,
        dispatches: Vec<Dispatch>,
    }
    let mut steps: Vec<Step> = Vec::with_capacity(protos.len());
    for (si, p) in protos.into_iter().enumerate() {
        let inputs: Vec<Loc> = p.inputs.iter().map(|&i| locs[i].ok_or_else(|| unsupported(g, p.out, "input computed later"))).collect::<Result<_, _>>()?;
        let bytes = 4 * numel(&g.node(p.out).shape) as u64;
        if bytes > max_binding {
            return Err(unsupported(g, p.out, format!("output needs a {:.1} MiB buffer, over the device's {:.1} MiB storage binding limit", bytes as f64 / 1048576.0, max_binding as f64 / 1048576.0)));
        }
        // A reshape adopts its input's storage when it is the last reader
        // of a slot, or always for graph inputs / constants (read-only).
        let first = p.inputs.first().copied();
        let alias = match (p.alias_ok, first, inputs.first()) {
            (true, Some(f), Some(Loc::Slot(_))) => last_use[f] == si && p.inputs.iter().filter(|&&i| i == f).count() == 1,
            (true, Some(_), Some(Loc::Input(_) | Loc::Const(_))) => true,
            _ => false,
        };
        let (out, dispatches) = if alias { (inputs[0], Vec::new()) } else { (Loc::Slot(slots.take(bytes)), p.dispatches) };
        locs[p.out] = Some(out);
        // Taken while the step's inputs and output are held, so distinct
        // from all of them; free again for the next step.
        // Taken while the step's inputs and output are held, so distinct
        // from all of them and from each other; free again for the next step.
        let scratch: Vec<usize> = ops::scratch_sizes(&dispatches).into_iter().map(|b| slots.take(b)).collect();
        for &s in &scratch {
            slots.release(s);
        }
        let scratch: Vec<Loc> = scratch.into_iter().map(Loc::Slot).collect();
        let mut released = Vec::new();
        for &i in &p.inputs {
            if let Some(Loc::Slot(s)) = locs[i]
                && last_use[i] == si
                && Loc::Slot(s) != out
                && !released.contains(&s)
            {
                released.push(s);
            }
        }
        for s in released {
            slots.release(s);
        }
        if last_use[p.out] == si
            && let Loc::Slot(s) = out
        {
            slots.release(s);
        }
        steps.push(Step { timed: p.timed, inputs, out, scratch, dispatches });
    }

    // Buffers: pool slots (k-th slot of a class -> k-th pool buffer), inputs.
    let max_buffer = ctx.limits.max_buffer_size / 256 * 256;
    let mut nth_of_class: std::collections::HashMap<u64, usize> = Default::default();
    let slot_buffers: Vec<(wgpu::Buffer, u64)> = slots
        .bytes
        .iter()
        .map(|&b| {
            let class = size_class(b).min(max_buffer).max(binding_size(b));
            let nth = nth_of_class.entry(class).or_insert(0);
            let buf = ctx.pool.get(&ctx.device, class, *nth);
            *nth += 1;
            (buf, binding_size(b))
        })
        .collect();
    let input_buffers: Vec<(wgpu::Buffer, u64)> = g
        .inputs()
        .iter()
        .map(|&i| {
            let size = binding_size(4 * numel(&g.node(i).shape) as u64);
            let b = ctx.device.create_buffer(&wgpu::BufferDescriptor { label: Some("tessera input"), size, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC, mapped_at_creation: false });
            (b, size)
        })
        .collect();
    for (k, &i) in g.inputs().iter().enumerate() {
        if input_buffers[k].1 > max_binding {
            return Err(unsupported(g, i, "input larger than the device's storage binding limit"));
        }
    }
    let dummy = ctx.device.create_buffer(&wgpu::BufferDescriptor { label: Some("tessera dummy"), size: 16, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
    let buffer_of = |l: Loc| -> (&wgpu::Buffer, u64) {
        match l {
            Loc::Input(i) => (&input_buffers[i].0, input_buffers[i].1),
            Loc::Const(i) => {
                let b = &cx.consts[const_index[i]];
                (b.as_ref(), b.size())
            }
            Loc::Slot(s) => (&slot_buffers[s].0, slot_buffers[s].1),
        }
    };

    // Parameter blocks: one 256-byte block per dispatch.
    let n_dispatch: usize = steps.iter().map(|s| s.dispatches.iter().filter(|d| d.groups.iter().all(|&v| v > 0)).count()).sum();
    let mut param_bytes = Vec::with_capacity(256 * n_dispatch.max(1));
    let params = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("tessera params"),
        size: 256 * n_dispatch.max(1) as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut passes = Vec::with_capacity(n_dispatch);
    for (si, step) in steps.iter().enumerate() {
        for d in &step.dispatches {
            if d.groups.contains(&0) {
                continue;
            }
            let offset = param_bytes.len() as u64;
            param_bytes.extend(d.params.bytes());
            let layout = ctx.pipelines.layout(&ctx.device, d.shader.reads());
            let pipeline = ctx.pipelines.get(&ctx.device, d.shader, ctx.f16);
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &params, offset, size: std::num::NonZeroU64::new(256) }),
            }];
            let mut bound: Vec<(&wgpu::Buffer, u64)> = Vec::new();
            for r in &d.reads {
                bound.push(match *r {
                    Src::Input(k) => buffer_of(step.inputs[k]),
                    Src::Const(k) => (cx.consts[k].as_ref(), cx.consts[k].size()),
                    Src::Dummy => (&dummy, 16),
                    Src::Scratch(k) => buffer_of(*step.scratch.get(k).ok_or_else(|| unsupported(g, step.timed, "a dispatch reads scratch its step does not have"))?),
                });
            }
            bound.push(match d.out {
                Dst::Output => buffer_of(step.out),
                Dst::Scratch { k, .. } => buffer_of(*step.scratch.get(k).ok_or_else(|| unsupported(g, step.timed, "a dispatch writes scratch its step does not have"))?),
            });
            for (b, (buf, size)) in bound.into_iter().enumerate() {
                entries.push(wgpu::BindGroupEntry { binding: b as u32 + 1, resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: buf, offset: 0, size: std::num::NonZeroU64::new(size) }) });
            }
            let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &layout, entries: &entries });
            passes.push(Pass { step: si, label: d.label(), pipeline, bind_group, groups: d.groups });
        }
    }
    ctx.queue.write_buffer(&params, 0, &param_bytes);

    // Outputs: slots are copied into one staging buffer; inputs and
    // constants are returned from host memory.
    let mut staging_len = 0u64;
    let mut outputs = Vec::new();
    let mut copies = Vec::new();
    for &o in g.outputs() {
        let shape = g.node(o).shape.clone();
        let loc = locs[o].ok_or_else(|| unsupported(g, o, "output never computed"))?;
        outputs.push(match loc {
            Loc::Input(i) => Output::Input { index: i, shape },
            Loc::Const(i) => Output::Host(Tensor::new(shape, const_tensors[i].data().to_vec())?),
            Loc::Slot(s) => {
                let bytes = 4 * numel(&shape) as u64;
                let offset = staging_len;
                staging_len += bytes.div_ceil(256) * 256;
                if bytes > 0 {
                    copies.push((slot_buffers[s].0.clone(), offset, bytes));
                }
                Output::Staged { offset, shape }
            }
        });
    }
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("tessera read-back"),
        size: staging_len.max(256),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let timed: Vec<NodeId> = steps.iter().map(|s| s.timed).collect();
    let input_buffers = input_buffers.into_iter().map(|(b, _)| b).collect();
    let exe = GpuExecutable::new(ctx.clone(), signature, input_buffers, cx.consts, passes, timed, copies, staging, staging_len, outputs, slots.bytes.iter().sum());
    Ok(exe.with_retune(cx.pending, g))
}
