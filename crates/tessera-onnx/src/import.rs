//! ONNX `ModelProto` → Tessera [`Graph`].
//!
//! Every ONNX value is either a run-time tensor (a graph node, always f32 with
//! a static shape) or a constant known at import (initializers, `Constant`
//! nodes, shapes of run-time tensors and anything computed from those alone).
//! Nodes whose inputs are all constant are folded when the op is simple to
//! evaluate; run-time nodes map onto the IR's op set, with constants
//! materialised as `Const` nodes where an op reads them as data.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tessera_graph::op::{BatchNorm, CoordMode, Lrn, NearestMode, PadMode, Pool, Resize};
use tessera_graph::{Activation, BinaryOp, Conv, Dense, Graph, GraphError, NodeId, Op, Tensor};

use crate::attrs::Attrs;
use crate::error::OnnxError;
use crate::fold;
use crate::proto::{ModelProto, NodeProto, ValueInfoProto};
use crate::value::{dt, from_proto, transpose2, Const, Limits};
use crate::ImportOptions;

/// Oldest and newest default-domain opset the importer understands.
pub const MIN_OPSET: i64 = 6;
pub const MAX_OPSET: i64 = 27;

/// Largest kernel / stride / dilation / pad / block size accepted, so that
/// window arithmetic can never overflow (even on 32-bit wasm).
const MAX_ATTR: i64 = 1 << 20;

/// How many slices a run-time `Gather` may turn into.
const MAX_GATHER_RUNS: usize = 256;

#[derive(Clone, Debug)]
enum Val {
    Node(NodeId),
    Const(Arc<Const>),
}

type R<T> = Result<T, String>;

struct Importer {
    g: Graph,
    vals: HashMap<String, Val>,
    /// Const node materialised for a constant (keyed by the Arc's address;
    /// the Arc is kept so the address is never reused).
    materialized: HashMap<usize, (Arc<Const>, NodeId)>,
    /// Values read by some node or listed as graph outputs.
    used: HashSet<String>,
    opset: i64,
    lim: Limits,
}

/// An initializer held as external data: the weight `opts.external` has
/// at its `location`, which must match its type and dims.
fn external(t: &crate::proto::TensorProto, name: &str, opts: &ImportOptions) -> Result<Const, OnnxError> {
    let bad = |msg: String| OnnxError::Value { kind: "initializer", name: name.to_string(), msg };
    let location = t.external_data.iter().find(|e| e.key.as_deref() == Some("location")).and_then(|e| e.value.clone()).ok_or_else(|| bad("external data without a location".into()))?;
    let w = opts.external.0.get(&location).ok_or_else(|| OnnxError::MissingExternal { name: name.to_string(), location: location.clone() })?;
    if t.data_type != Some(dt::FLOAT) {
        return Err(bad(format!("external data of type {} (only float is held by reference)", dt::name(t.data_type.unwrap_or(0)))));
    }
    if t.dims.len() != w.shape().len() || t.dims.iter().zip(w.shape()).any(|(&d, &s)| d < 0 || d as u64 != s as u64) {
        return Err(bad(format!("dims {:?} do not match the held weight's {:?}", t.dims, w.shape())));
    }
    Ok(Const::shared(w.clone()))
}

/// Imports a decoded model.
pub fn import_model(mut model: ModelProto, opts: &ImportOptions) -> Result<Graph, OnnxError> {
    let opset = default_opset(&model)?;
    let mut graph = model.graph.take().ok_or_else(|| OnnxError::Model("the model has no graph".into()))?;
    let lim = Limits { max_elements: opts.max_elements };
    let mut imp = Importer {
        g: Graph::new(graph.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "onnx".into())),
        vals: HashMap::new(),
        materialized: HashMap::new(),
        used: HashSet::new(),
        opset,
        lim,
    };

    if !graph.sparse_initializer.is_empty() {
        return Err(OnnxError::Model("sparse initializers are not supported".into()));
    }
    // Initializers: decoded one by one, their raw bytes dropped as we go.
    for mut t in std::mem::take(&mut graph.initializer) {
        let name = t.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(OnnxError::Model("an initializer has no name".into()));
        }
        let c = if t.data_location == Some(1) || !t.external_data.is_empty() {
            external(&t, &name, opts)?
        } else {
            from_proto(&t, &lim).map_err(|msg| OnnxError::Value { kind: "initializer", name: name.clone(), msg })?
        };
        t.raw_data = None;
        imp.vals.insert(name, Val::Const(Arc::new(c)));
    }

    // Run-time inputs: graph inputs that are not initializers.
    for vi in &graph.input {
        let name = vi.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(OnnxError::Model("a graph input has no name".into()));
        }
        if imp.vals.contains_key(&name) {
            continue;
        }
        let shape = input_shape(vi, &name, opts, &lim)?;
        let id = imp.g.input(name.clone(), &shape)?;
        imp.vals.insert(name, Val::Node(id));
    }
    if imp.g.inputs().is_empty() {
        return Err(OnnxError::Model("the model has no run-time input (every graph input is an initializer)".into()));
    }

    for n in &graph.node {
        imp.used.extend(n.input.iter().filter(|s| !s.is_empty()).cloned());
    }
    for o in &graph.output {
        imp.used.insert(o.name.clone().unwrap_or_default());
    }

    for i in topo_order(&graph.node, &imp.vals, opset)? {
        let n = &graph.node[i];
        let domain = n.domain.as_deref().unwrap_or("");
        let op = n.op_type.clone().unwrap_or_default();
        let fail = |msg: String| OnnxError::Node { node: node_label(n), op: op.clone(), opset, msg };
        if !(domain.is_empty() || domain == "ai.onnx") {
            let v = model.opset_import.iter().find(|o| o.domain.as_deref() == Some(domain)).and_then(|o| o.version).unwrap_or(0);
            return Err(OnnxError::Node {
                node: node_label(n),
                op: format!("{domain}.{op}"),
                opset: v,
                msg: "op not supported (only the default ONNX domain is)".into(),
            });
        }
        imp.node(n, &op).map_err(fail)?;
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if !imp.vals.contains_key(o) && imp.used.contains(o) {
                return Err(fail(format!("output '{o}' is not supported")));
            }
        }
    }

    let mut outs = Vec::new();
    for vo in &graph.output {
        let name = vo.name.clone().unwrap_or_default();
        let v = imp.vals.get(&name).cloned().ok_or_else(|| OnnxError::Value { kind: "output", name: name.clone(), msg: "is not produced by any node".into() })?;
        let id = match v {
            Val::Node(id) => {
                if matches!(imp.g.node(id).op, Op::Input) || outs.contains(&id) {
                    imp.add(&name, Op::Act(Activation::Identity), &[id]).map_err(|msg| OnnxError::Value { kind: "output", name: name.clone(), msg })?
                } else {
                    id
                }
            }
            Val::Const(c) => {
                let t = c.tensor().ok_or_else(|| OnnxError::Value { kind: "output", name: name.clone(), msg: format!("is {} (only float32 outputs are supported)", dt::name(c.ty)) })?;
                imp.add(&name, Op::Const(t.clone()), &[]).map_err(|msg| OnnxError::Value { kind: "output", name: name.clone(), msg })?
            }
        };
        outs.push(id);
    }
    imp.g.set_outputs(&outs)?;
    Ok(imp.g)
}

fn node_label(n: &NodeProto) -> String {
    match n.name.as_deref() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => n.output.first().cloned().unwrap_or_default(),
    }
}

fn default_opset(model: &ModelProto) -> Result<i64, OnnxError> {
    let v = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .map(|o| o.version.unwrap_or(0))
        .ok_or_else(|| OnnxError::Model("the model imports no default-domain opset".into()))?;
    if !(MIN_OPSET..=MAX_OPSET).contains(&v) {
        return Err(OnnxError::Model(format!("opset {v} is not supported (supported: {MIN_OPSET} to {MAX_OPSET})")));
    }
    Ok(v)
}

fn input_shape(vi: &ValueInfoProto, name: &str, opts: &ImportOptions, lim: &Limits) -> Result<Vec<usize>, OnnxError> {
    use crate::proto::tensor_shape_proto::dimension::Value as D;
    use crate::proto::type_proto::Value as T;
    let err = |msg: String| OnnxError::Value { kind: "input", name: name.to_string(), msg };
    let tt = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(T::TensorType(t)) => t,
        Some(_) => return Err(err("is not a tensor".into())),
        None => return Err(err("has no type".into())),
    };
    let ty = tt.elem_type.unwrap_or(0);
    if ty != dt::FLOAT {
        return Err(err(format!("is {} (only float32 run-time inputs are supported)", dt::name(ty))));
    }
    if let Some((_, s)) = opts.input_shapes.iter().find(|(n, _)| n == name) {
        lim.numel(s).map_err(err)?;
        return Ok(s.clone());
    }
    let dims = &tt.shape.as_ref().ok_or_else(|| err("has no shape; pass one in ImportOptions::input_shapes".into()))?.dim;
    let mut shape = Vec::with_capacity(dims.len());
    for (axis, d) in dims.iter().enumerate() {
        let v = match &d.value {
            Some(D::DimValue(v)) if *v > 0 => usize::try_from(*v).map_err(|_| err(format!("dimension {v} too large")))?,
            other => {
                if axis == 0 {
                    opts.batch
                } else {
                    let what = match other {
                        Some(D::DimParam(p)) => format!("'{p}'"),
                        Some(D::DimValue(v)) => v.to_string(),
                        None => "unknown".into(),
                    };
                    return Err(err(format!("dimension {axis} is {what}; pass a fixed shape in ImportOptions::input_shapes")));
                }
            }
        };
        shape.push(v);
    }
    lim.numel(&shape).map_err(err)?;
    Ok(shape)
}

/// Node indices in an order where every input is defined before use (ONNX
/// requires topological order, but not every exporter obeys).
fn topo_order(nodes: &[NodeProto], known: &HashMap<String, Val>, opset: i64) -> Result<Vec<usize>, OnnxError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if known.contains_key(o.as_str()) || producer.insert(o.as_str(), i).is_some() {
                return Err(OnnxError::Model(format!("value '{o}' is defined more than once")));
            }
        }
    }
    let mut pending = vec![0usize; nodes.len()];
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for inp in n.input.iter().filter(|s| !s.is_empty()) {
            if known.contains_key(inp.as_str()) {
                continue;
            }
            match producer.get(inp.as_str()) {
                Some(&p) => {
                    pending[i] += 1;
                    readers[p].push(i);
                }
                None => {
                    return Err(OnnxError::Node {
                        node: node_label(n),
                        op: n.op_type.clone().unwrap_or_default(),
                        opset,
                        msg: format!("input '{inp}' is not defined"),
                    })
                }
            }
        }
    }
    let mut ready: Vec<usize> = (0..nodes.len()).filter(|&i| pending[i] == 0).rev().collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop() {
        order.push(i);
        // Readers in file order, so a sorted file keeps its order.
        for &r in readers[i].iter().rev() {
            pending[r] -= 1;
            if pending[r] == 0 {
                ready.push(r);
            }
        }
        ready.sort_unstable_by(|a, b| b.cmp(a));
    }
    if order.len() != nodes.len() {
        return Err(OnnxError::Model("the graph has a cycle".into()));
    }
    Ok(order)
}

fn dim_attr(v: i64, what: &str, min: i64) -> R<usize> {
    if v < min || v > MAX_ATTR {
        return Err(format!("{what} {v} out of range"));
    }
    Ok(v as usize)
}

fn dims_attr(v: &[i64], n: usize, what: &str, min: i64) -> R<Vec<usize>> {
    if v.len() != n {
        return Err(format!("{what} {v:?} should have {n} values"));
    }
    v.iter().map(|&x| dim_attr(x, what, min)).collect()
}

/// Window geometry of a conv / pool node: per spatial axis `(begin, end)` pads.
fn window_pads(a: &Attrs, input: &[usize], kernel: &[usize], stride: &[usize], dil: &[usize]) -> R<Vec<(usize, usize)>> {
    let sp = input.len();
    let auto = a.string("auto_pad", "NOTSET")?;
    match auto.as_str() {
        "NOTSET" | "" => {
            let p = a.ints("pads")?.unwrap_or_else(|| vec![0; 2 * sp]);
            let p = dims_attr(&p, 2 * sp, "pad", 0)?;
            Ok((0..sp).map(|d| (p[d], p[d + sp])).collect())
        }
        "VALID" => Ok(vec![(0, 0); sp]),
        "SAME_UPPER" | "SAME_LOWER" => Ok((0..sp)
            .map(|d| {
                let out = input[d].div_ceil(stride[d]);
                let eff = (kernel[d] - 1) * dil[d] + 1;
                let total = (out.saturating_sub(1) * stride[d] + eff).saturating_sub(input[d]);
                let small = total / 2;
                if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                }
            })
            .collect()),
        other => Err(format!("auto_pad '{other}' is not supported")),
    }
}

impl Importer {
    // ---- values -------------------------------------------------------

    fn val(&self, n: &NodeProto, i: usize) -> Option<Val> {
        let name = n.input.get(i).filter(|s| !s.is_empty())?;
        self.vals.get(name).cloned()
    }

    fn req(&self, n: &NodeProto, i: usize) -> R<Val> {
        self.val(n, i).ok_or_else(|| format!("input #{i} is required"))
    }

    /// Input `i` if given, which must then be a constant.
    fn cst(&self, n: &NodeProto, i: usize, what: &str) -> R<Option<Arc<Const>>> {
        match self.val(n, i) {
            None => Ok(None),
            Some(Val::Const(c)) => Ok(Some(c)),
            Some(Val::Node(_)) => Err(format!("{what} (input #{i}) must be a constant, not computed at run time")),
        }
    }

    fn cst_req(&self, n: &NodeProto, i: usize, what: &str) -> R<Arc<Const>> {
        self.cst(n, i, what)?.ok_or_else(|| format!("{what} (input #{i}) is required"))
    }

    /// A constant float input as an f32 tensor.
    fn weight(&self, n: &NodeProto, i: usize, what: &str) -> R<Option<Arc<Tensor>>> {
        match self.cst(n, i, what)? {
            None => Ok(None),
            Some(c) => c.tensor().cloned().map(Some).ok_or_else(|| format!("{what} must be a float tensor, got {}", dt::name(c.ty))),
        }
    }

    fn shape(&self, v: &Val) -> Vec<usize> {
        match v {
            Val::Node(id) => self.g.node(*id).shape.clone(),
            Val::Const(c) => c.shape().to_vec(),
        }
    }

    /// The graph node holding `v` (a constant becomes a `Const` node once).
    fn node_of(&mut self, v: &Val, hint: &str) -> R<NodeId> {
        match v {
            Val::Node(id) => Ok(*id),
            Val::Const(c) => {
                let key = Arc::as_ptr(c) as usize;
                if let Some((_, id)) = self.materialized.get(&key) {
                    return Ok(*id);
                }
                let t = c.tensor().ok_or_else(|| format!("'{hint}' is {}, but run-time tensors must be float32", dt::name(c.ty)))?.clone();
                let id = self.add(hint, Op::Const(t), &[])?;
                self.materialized.insert(key, (c.clone(), id));
                Ok(id)
            }
        }
    }

    fn node_in(&mut self, n: &NodeProto, i: usize) -> R<NodeId> {
        let v = self.req(n, i)?;
        let name = n.input[i].clone();
        self.node_of(&v, &name)
    }

    fn out_name(n: &NodeProto, i: usize) -> String {
        n.output.get(i).cloned().unwrap_or_default()
    }

    fn set(&mut self, n: &NodeProto, i: usize, v: Val) {
        if let Some(o) = n.output.get(i).filter(|o| !o.is_empty()) {
            self.vals.insert(o.clone(), v);
        }
    }

    fn set_const(&mut self, n: &NodeProto, i: usize, c: Const) -> R<()> {
        self.lim.numel(c.shape())?;
        self.set(n, i, Val::Const(Arc::new(c)));
        Ok(())
    }

    fn output_used(&self, n: &NodeProto, i: usize) -> bool {
        n.output.get(i).is_some_and(|o| !o.is_empty() && self.used.contains(o))
    }

    /// Appends a node under a unique name derived from `base`.
    fn add(&mut self, base: &str, op: Op, inputs: &[NodeId]) -> R<NodeId> {
        let base = if base.is_empty() { op.name() } else { base };
        let mut name = base.to_string();
        let mut k = 1;
        while self.g.find(&name).is_some() {
            name = format!("{base}#{k}");
            k += 1;
        }
        let id = self.g.add(name, op, inputs).map_err(|e| match e {
            GraphError::Shape { msg, .. } => msg,
            other => other.to_string(),
        })?;
        self.lim.numel(&self.g.node(id).shape)?;
        Ok(id)
    }

    /// `v` reshaped to `shape` (folded for constants).
    fn reshape(&mut self, name: &str, v: &Val, shape: Vec<usize>) -> R<Val> {
        match v {
            Val::Const(c) => {
                if c.numel() != shape.iter().product::<usize>() {
                    return Err(format!("cannot reshape {:?} to {shape:?}", c.shape()));
                }
                Ok(Val::Const(Arc::new(c.reshaped(shape))))
            }
            Val::Node(id) => Ok(Val::Node(self.add(name, Op::Reshape { shape }, &[*id])?)),
        }
    }

    /// A float constant materialised as a node.
    fn const_node(&mut self, name: &str, t: Tensor) -> R<NodeId> {
        let c = Arc::new(Const::f32(t));
        self.node_of(&Val::Const(c), name)
    }

    fn binary(&mut self, name: &str, op: BinaryOp, a: &Val, b: &Val) -> R<Val> {
        if let (Val::Const(x), Val::Const(y)) = (a, b) {
            let onnx = Op::Binary(op).name();
            return Ok(Val::Const(Arc::new(fold::binary(onnx, x, y, false, &self.lim)?)));
        }
        let x = self.node_of(a, &format!("{name}/a"))?;
        let y = self.node_of(b, &format!("{name}/b"))?;
        Ok(Val::Node(self.add(name, Op::Binary(op), &[x, y])?))
    }

    // ---- dispatch -----------------------------------------------------

    fn node(&mut self, n: &NodeProto, op: &str) -> R<()> {
        let a = Attrs(&n.attribute);
        for at in &n.attribute {
            if at.g.is_some() || !at.graphs.is_empty() {
                return Err("op not supported (sub-graphs)".into());
            }
        }
        let out = Self::out_name(n, 0);
        let all_const = n.input.iter().filter(|s| !s.is_empty()).all(|s| matches!(self.vals.get(s), Some(Val::Const(_))));
        match op {
            "Identity" => {
                let v = self.req(n, 0)?;
                self.set(n, 0, v);
            }
            "Dropout" => {
                if self.opset >= 12
                    && let Some(t) = self.cst(n, 2, "training_mode")?
                    && t.to_i64().first().copied().unwrap_or(0) != 0
                {
                    return Err("training mode is not supported".into());
                }
                if self.output_used(n, 1) {
                    return Err("the mask output is not supported".into());
                }
                let v = self.req(n, 0)?;
                self.set(n, 0, v);
            }
            "Constant" => self.constant(n, &a)?,
            "Conv" => self.conv(n, &a, &out)?,
            "MaxPool" | "AveragePool" => self.pool(n, &a, &out, op == "MaxPool")?,
            "GlobalAveragePool" | "GlobalMaxPool" => {
                let x = self.node_in(n, 0)?;
                let p = if op == "GlobalMaxPool" { Op::GlobalMaxPool } else { Op::GlobalAveragePool };
                let y = self.add(&out, p, &[x])?;
                self.set(n, 0, Val::Node(y));
            }
            "Gemm" => self.gemm(n, &a, &out)?,
            "MatMul" => self.matmul(n, &out)?,
            "Relu" => self.act(n, &out, Activation::Relu)?,
            "Sigmoid" => self.act(n, &out, Activation::Sigmoid)?,
            "Tanh" => self.act(n, &out, Activation::Tanh)?,
            "LeakyRelu" => self.act(n, &out, Activation::LeakyRelu { alpha: a.float("alpha", 0.01)? })?,
            "HardSigmoid" => self.act(n, &out, Activation::HardSigmoid { alpha: a.float("alpha", 0.2)?, beta: a.float("beta", 0.5)? })?,
            "HardSwish" => self.act(n, &out, Activation::HardSwish)?,
            "Clip" => self.clip(n, &a, &out)?,
            "PRelu" => {
                let (x, mut s) = (self.req(n, 0)?, self.req(n, 1)?);
                let (xs, ss) = (self.shape(&x), self.shape(&s));
                if self.opset < 7 && ss.len() == 1 && xs.len() > 2 && ss[0] == xs[1] && ss[0] != 1 {
                    // PRelu-6: a 1-D slope runs along the channel axis.
                    let mut shape = vec![ss[0]];
                    shape.resize(xs.len() - 1, 1);
                    s = self.reshape(&format!("{out}/slope"), &s, shape)?;
                }
                let y = self.binary(&out, BinaryOp::PRelu, &x, &s)?;
                self.set(n, 0, y);
            }
            "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" | "Sum" | "Mean" => self.variadic(n, op, &out)?,
            "BatchNormalization" => self.batchnorm(n, &a, &out)?,
            "Concat" => self.concat(n, &a, &out)?,
            "Flatten" => {
                let v = self.req(n, 0)?;
                let s = self.shape(&v);
                let ax = a.int("axis", 1)?;
                let ax = if ax < 0 { fold::axis(ax, s.len())? } else if ax as usize <= s.len() { ax as usize } else { return Err(format!("axis {ax} out of range for rank {}", s.len())) };
                let y = match v {
                    Val::Const(c) => {
                        let shape = vec![s[..ax].iter().product(), s[ax..].iter().product()];
                        Val::Const(Arc::new(c.reshaped(shape)))
                    }
                    Val::Node(id) => Val::Node(self.add(&out, Op::Flatten { axis: ax }, &[id])?),
                };
                self.set(n, 0, y);
            }
            "Reshape" => self.reshape_node(n, &a, &out)?,
            "Squeeze" | "Unsqueeze" => self.squeeze(n, &a, &out, op == "Unsqueeze")?,
            "Transpose" => {
                let v = self.req(n, 0)?;
                let r = self.shape(&v).len();
                let perm = match a.ints("perm")? {
                    Some(p) => {
                        let p = fold::axes(&p, r)?;
                        if p.len() != r {
                            return Err(format!("perm {p:?} is not a permutation of rank {r}"));
                        }
                        p
                    }
                    None => (0..r).rev().collect(),
                };
                let y = match v {
                    Val::Const(c) => Val::Const(Arc::new(fold::transpose(&c, &perm))),
                    Val::Node(id) => Val::Node(self.add(&out, Op::Transpose { perm }, &[id])?),
                };
                self.set(n, 0, y);
            }
            "Softmax" => {
                let x = self.node_in(n, 0)?;
                let r = self.g.node(x).shape.len();
                let (default, old) = if self.opset < 13 { (1, true) } else { (-1, false) };
                let ax = fold::axis(a.int("axis", default)?, r)?;
                let y = self.add(&out, Op::Softmax { axis: ax, flatten: old && ax + 1 < r }, &[x])?;
                self.set(n, 0, Val::Node(y));
            }
            "Pad" => self.pad(n, &a, &out)?,
            "Resize" | "Upsample" => self.resize(n, &a, &out, op == "Upsample")?,
            "LRN" => {
                let x = self.node_in(n, 0)?;
                let size = dim_attr(a.int_req("size")?, "size", 1)?;
                let l = Lrn { size, alpha: a.float("alpha", 1e-4)?, beta: a.float("beta", 0.75)?, bias: a.float("bias", 1.0)? };
                let y = self.add(&out, Op::Lrn(l), &[x])?;
                self.set(n, 0, Val::Node(y));
            }
            "SpaceToDepth" | "DepthToSpace" => {
                let x = self.node_in(n, 0)?;
                let block = dim_attr(a.int_req("blocksize")?, "blocksize", 1)?;
                let o = if op == "SpaceToDepth" {
                    Op::SpaceToDepth { block }
                } else {
                    let mode = if self.opset >= 11 { a.string("mode", "DCR")? } else { "DCR".into() };
                    let crd = match mode.as_str() {
                        "DCR" => false,
                        "CRD" => true,
                        m => return Err(format!("mode '{m}' is not supported")),
                    };
                    Op::DepthToSpace { block, crd }
                };
                let y = self.add(&out, o, &[x])?;
                self.set(n, 0, Val::Node(y));
            }
            "Slice" => self.slice(n, &a, &out)?,
            "Gather" => self.gather(n, &a, &out)?,
            "Split" => self.split(n, &a, &out)?,
            "Shape" => {
                let s = self.shape(&self.req(n, 0)?);
                let r = s.len() as i64;
                let (mut st, mut en) = (a.int("start", 0)?, a.int("end", r)?);
                if st < 0 {
                    st += r;
                }
                if en < 0 {
                    en += r;
                }
                let (st, en) = (st.clamp(0, r) as usize, en.clamp(0, r) as usize);
                let v: Vec<i64> = if st < en { s[st..en].iter().map(|&d| d as i64).collect() } else { vec![] };
                self.set_const(n, 0, Const::i64_vec(v))?;
            }
            "Size" => {
                let s = self.shape(&self.req(n, 0)?);
                self.set_const(n, 0, Const::ints(dt::INT64, vec![], vec![s.iter().product::<usize>() as i64]))?;
            }
            "Cast" | "CastLike" => {
                let to = if op == "Cast" {
                    a.int_req("to")? as i32
                } else {
                    match self.req(n, 1)? {
                        Val::Const(c) => c.ty,
                        Val::Node(_) => dt::FLOAT,
                    }
                };
                match self.req(n, 0)? {
                    Val::Const(c) => {
                        let y = c.cast(to)?;
                        self.set_const(n, 0, y)?;
                    }
                    v @ Val::Node(_) => {
                        if !dt::is_float(to) {
                            return Err(format!("cast of a run-time float tensor to {} is not supported", dt::name(to)));
                        }
                        self.set(n, 0, v);
                    }
                }
            }
            "ConstantOfShape" => {
                let s = self.cst_req(n, 0, "shape")?.ints_of("shape")?;
                let shape = s.iter().map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}"))).collect::<R<Vec<_>>>()?;
                let numel = self.lim.numel(&shape)?;
                let c = match a.tensor("value")? {
                    None => Const::floats(dt::FLOAT, shape, vec![0.0; numel]),
                    Some(t) => {
                        let v = from_proto(t, &self.lim)?;
                        if v.numel() != 1 {
                            return Err("value must hold one element".into());
                        }
                        if v.is_float() {
                            Const::floats(v.ty, shape, vec![v.to_f32()[0]; numel])
                        } else {
                            Const::ints(v.ty, shape, vec![v.to_i64()[0]; numel])
                        }
                    }
                };
                self.set_const(n, 0, c)?;
            }
            "Range" if all_const => {
                let (s, l, d) = (self.cst_req(n, 0, "start")?, self.cst_req(n, 1, "limit")?, self.cst_req(n, 2, "delta")?);
                let c = fold::range(&s, &l, &d, &self.lim)?;
                self.set_const(n, 0, c)?;
            }
            "Expand" => {
                let v = self.req(n, 0)?;
                let s = self.cst_req(n, 1, "shape")?.ints_of("shape")?;
                let shape = s.iter().map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}"))).collect::<R<Vec<_>>>()?;
                match v {
                    Val::Const(c) => {
                        let y = fold::expand(&c, &shape, &self.lim)?;
                        self.set_const(n, 0, y)?;
                    }
                    Val::Node(id) => {
                        let xs = self.g.node(id).shape.clone();
                        let target = crate::value::broadcast_shapes(&xs, &shape, &self.lim)?;
                        if target == xs {
                            self.set(n, 0, Val::Node(id));
                        } else {
                            // x * ones(shape) broadcasts exactly like Expand.
                            let numel = self.lim.numel(&shape)?;
                            let ones = self.const_node(&format!("{out}/ones"), Tensor::new(shape, vec![1.0; numel]).map_err(|e| e.to_string())?)?;
                            let y = self.add(&out, Op::Binary(BinaryOp::Mul), &[id, ones])?;
                            self.set(n, 0, Val::Node(y));
                        }
                    }
                }
            }
            "Tile" => {
                let v = self.req(n, 0)?;
                let xs = self.shape(&v);
                let reps = self.cst_req(n, 1, "repeats")?.ints_of("repeats")?;
                if reps.len() != xs.len() {
                    return Err(format!("repeats {reps:?} do not match rank {}", xs.len()));
                }
                let reps = reps.iter().map(|&d| usize::try_from(d).map_err(|_| format!("negative repeat {d}"))).collect::<R<Vec<_>>>()?;
                match v {
                    Val::Const(c) => {
                        let y = fold::tile(&c, &reps, &self.lim)?;
                        self.set_const(n, 0, y)?;
                    }
                    Val::Node(mut id) => {
                        // One Concat of copies per repeated axis.
                        let tiled: Vec<usize> = xs.iter().zip(&reps).map(|(d, r)| d.saturating_mul(*r)).collect();
                        self.lim.numel(&tiled)?;
                        if reps.contains(&0) || reps.iter().filter(|&&r| r > 1).map(|&r| r as u64).sum::<u64>() > MAX_GATHER_RUNS as u64 {
                            return Err(format!("repeats {reps:?} are not supported at run time"));
                        }
                        let axes: Vec<usize> = (0..reps.len()).filter(|&d| reps[d] > 1).collect();
                        for (k, &ax) in axes.iter().enumerate() {
                            let name = if k + 1 == axes.len() { out.clone() } else { format!("{out}/axis{ax}") };
                            id = self.add(&name, Op::Concat { axis: ax }, &vec![id; reps[ax]])?;
                        }
                        self.set(n, 0, Val::Node(id));
                    }
                }
            }
            "Where" if all_const => {
                let (c, x, y) = (self.cst_req(n, 0, "condition")?, self.cst_req(n, 1, "X")?, self.cst_req(n, 2, "Y")?);
                let r = fold::where_(&c, &x, &y, &self.lim)?;
                self.set_const(n, 0, r)?;
            }
            "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Xor" | "Pow" | "Mod" if all_const => {
                let (x, y) = (self.cst_req(n, 0, "A")?, self.cst_req(n, 1, "B")?);
                let r = fold::binary(op, &x, &y, a.int("fmod", 0)? != 0, &self.lim)?;
                self.set_const(n, 0, r)?;
            }
            "Pow" => {
                // x^1 and x^2 at run time; anything else is not in the IR.
                let x = self.req(n, 0)?;
                let e = self.cst_req(n, 1, "exponent")?.scalar_f32("exponent")?;
                if e == 1.0 {
                    self.set(n, 0, x);
                } else if e == 2.0 {
                    let y = self.binary(&out, BinaryOp::Mul, &x, &x)?;
                    self.set(n, 0, y);
                } else {
                    return Err(format!("exponent {e} at run time is not supported (only 1 and 2)"));
                }
            }
            "Not" | "Abs" | "Sqrt" | "Exp" | "Log" | "Floor" | "Ceil" | "Round" | "Sign" | "Sin" | "Cos" | "Tan" | "Softplus" | "Softsign" if all_const => {
                let c = self.cst_req(n, 0, "input")?;
                let r = fold::unary(op, &c)?;
                self.set_const(n, 0, r)?;
            }
            "Neg" | "Reciprocal" => {
                let x = self.req(n, 0)?;
                let y = match &x {
                    Val::Const(c) => Val::Const(Arc::new(fold::unary(op, c)?)),
                    Val::Node(_) if op == "Neg" => {
                        let m = Val::Const(Arc::new(Const::f32(Tensor::scalar(-1.0))));
                        self.binary(&out, BinaryOp::Mul, &x, &m)?
                    }
                    Val::Node(_) => {
                        let one = Val::Const(Arc::new(Const::f32(Tensor::scalar(1.0))));
                        self.binary(&out, BinaryOp::Div, &one, &x)?
                    }
                };
                self.set(n, 0, y);
            }
            "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceSumSquare" => self.reduce(n, &a, &out, op)?,
            "Range" | "Where" | "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Xor" | "Mod" | "Not" | "Abs"
            | "Sqrt" | "Exp" | "Log" | "Floor" | "Ceil" | "Round" | "Sign" | "Sin" | "Cos" | "Tan" | "Softplus" | "Softsign" => {
                return Err("op not supported on run-time tensors (only folded when its inputs are constant)".into())
            }
            _ => return Err("op not supported".into()),
        }
        Ok(())
    }

    // ---- ops ------------------------------------------------------------

    fn constant(&mut self, n: &NodeProto, a: &Attrs) -> R<()> {
        let c = if let Some(t) = a.tensor("value")? {
            from_proto(t, &self.lim)?
        } else if a.has("value_float") {
            Const::floats(dt::FLOAT, vec![], vec![a.float("value_float", 0.0)?])
        } else if let Some(v) = a.floats("value_floats")? {
            Const::floats(dt::FLOAT, vec![v.len()], v)
        } else if a.has("value_int") {
            Const::ints(dt::INT64, vec![], vec![a.int("value_int", 0)?])
        } else if let Some(v) = a.ints("value_ints")? {
            Const::i64_vec(v)
        } else if a.has("sparse_value") {
            return Err("sparse constants are not supported".into());
        } else {
            return Err("string or missing constant value is not supported".into());
        };
        self.set_const(n, 0, c)
    }

    fn conv(&mut self, n: &NodeProto, a: &Attrs, out: &str) -> R<()> {
        let xv = self.req(n, 0)?;
        let xs = self.shape(&xv);
        let w = self.weight(n, 1, "weight")?.ok_or("weight (input #1) is required")?;
        let b = self.weight(n, 2, "bias")?;
        let rank = xs.len();
        if rank != 3 && rank != 4 {
            return Err(format!("only 1-D and 2-D convolutions are supported (input shape {xs:?})"));
        }
        if w.shape().len() != rank {
            return Err(format!("weight shape {:?} does not match input rank {rank}", w.shape()));
        }
        let sp = rank - 2;
        let kernel = w.shape()[2..].to_vec();
        if let Some(k) = a.ints("kernel_shape")?
            && k.iter().copied().ne(kernel.iter().map(|&v| v as i64))
        {
            return Err(format!("kernel_shape {k:?} does not match weight {:?}", w.shape()));
        }
        for &k in &kernel {
            dim_attr(k as i64, "kernel size", 1)?;
        }
        let groups = dim_attr(a.int("group", 1)?, "group", 1)?;
        let stride = dims_attr(&a.ints("strides")?.unwrap_or_else(|| vec![1; sp]), sp, "stride", 1)?;
        let dil = dims_attr(&a.ints("dilations")?.unwrap_or_else(|| vec![1; sp]), sp, "dilation", 1)?;
        let pads = window_pads(a, &xs[2..], &kernel, &stride, &dil)?;
        let bias = match b {
            Some(b) => {
                if b.numel() != w.shape()[0] {
                    return Err(format!("bias shape {:?} does not match {} output channels", b.shape(), w.shape()[0]));
                }
                Some(if b.shape().len() == 1 { b } else { Arc::new((*b).clone().reshaped(vec![b.numel()]).map_err(|e| e.to_string())?) })
            }
            None => None,
        };
        let x = self.node_of(&xv, &n.input[0])?;
        if sp == 2 {
            let conv = Conv {
                weight: w,
                bias,
                stride: [stride[0], stride[1]],
                pads: [pads[0].0, pads[1].0, pads[0].1, pads[1].1],
                dilation: [dil[0], dil[1]],
                groups,
                act: Activation::Identity,
            };
            let y = self.add(out, Op::Conv(conv), &[x])?;
            self.set(n, 0, Val::Node(y));
        } else {
            // 1-D as 2-D with H = 1.
            let x4 = self.add(&format!("{out}/as2d"), Op::Reshape { shape: vec![xs[0], xs[1], 1, xs[2]] }, &[x])?;
            let ws = w.shape();
            let w4 = (*w).clone().reshaped(vec![ws[0], ws[1], 1, ws[2]]).map_err(|e| e.to_string())?;
            let conv = Conv {
                weight: Arc::new(w4),
                bias,
                stride: [1, stride[0]],
                pads: [0, pads[0].0, 0, pads[0].1],
                dilation: [1, dil[0]],
                groups,
                act: Activation::Identity,
            };
            let c = self.add(&format!("{out}/conv2d"), Op::Conv(conv), &[x4])?;
            let s = self.g.node(c).shape.clone();
            let y = self.add(out, Op::Reshape { shape: vec![s[0], s[1], s[3]] }, &[c])?;
            self.set(n, 0, Val::Node(y));
        }
        Ok(())
    }

    fn pool(&mut self, n: &NodeProto, a: &Attrs, out: &str, max: bool) -> R<()> {
        if max && self.output_used(n, 1) {
            return Err("the Indices output is not supported".into());
        }
        let x = self.node_in(n, 0)?;
        let xs = self.g.node(x).shape.clone();
        let rank = xs.len();
        if rank != 3 && rank != 4 {
            return Err(format!("only 1-D and 2-D pooling is supported (input shape {xs:?})"));
        }
        let sp = rank - 2;
        let kernel = dims_attr(&a.ints("kernel_shape")?.ok_or("attribute 'kernel_shape' is required")?, sp, "kernel size", 1)?;
        let stride = dims_attr(&a.ints("strides")?.unwrap_or_else(|| vec![1; sp]), sp, "stride", 1)?;
        let dil = dims_attr(&a.ints("dilations")?.unwrap_or_else(|| vec![1; sp]), sp, "dilation", 1)?;
        let pads = window_pads(a, &xs[2..], &kernel, &stride, &dil)?;
        let ceil_mode = a.int("ceil_mode", 0)? != 0;
        let count_include_pad = !max && a.int("count_include_pad", 0)? != 0;
        if max && a.int("storage_order", 0)? != 0 && self.output_used(n, 1) {
            return Err("storage_order is not supported".into());
        }
        let (pool, x4) = if sp == 2 {
            let p = Pool {
                kernel: [kernel[0], kernel[1]],
                stride: [stride[0], stride[1]],
                pads: [pads[0].0, pads[1].0, pads[0].1, pads[1].1],
                dilation: [dil[0], dil[1]],
                ceil_mode,
                count_include_pad,
            };
            (p, x)
        } else {
            let x4 = self.add(&format!("{out}/as2d"), Op::Reshape { shape: vec![xs[0], xs[1], 1, xs[2]] }, &[x])?;
            let p = Pool {
                kernel: [1, kernel[0]],
                stride: [1, stride[0]],
                pads: [0, pads[0].0, 0, pads[0].1],
                dilation: [1, dil[0]],
                ceil_mode,
                count_include_pad,
            };
            (p, x4)
        };
        let op = if max { Op::MaxPool(pool) } else { Op::AveragePool(pool) };
        let y = if sp == 2 {
            self.add(out, op, &[x4])?
        } else {
            let p = self.add(&format!("{out}/pool2d"), op, &[x4])?;
            let s = self.g.node(p).shape.clone();
            self.add(out, Op::Reshape { shape: vec![s[0], s[1], s[3]] }, &[p])?
        };
        self.set(n, 0, Val::Node(y));
        Ok(())
    }

    fn act(&mut self, n: &NodeProto, out: &str, act: Activation) -> R<()> {
        let y = match self.req(n, 0)? {
            Val::Const(c) => Val::Const(Arc::new(fold::activation(act, &c)?)),
            Val::Node(id) => Val::Node(self.add(out, Op::Act(act), &[id])?),
        };
        self.set(n, 0, y);
        Ok(())
    }

    fn clip(&mut self, n: &NodeProto, a: &Attrs, out: &str) -> R<()> {
        let (min, max) = if self.opset < 11 {
            (a.float("min", f32::NEG_INFINITY)?, a.float("max", f32::INFINITY)?)
        } else {
            let lo = match self.cst(n, 1, "min")? {
                Some(c) => c.scalar_f32("min")?,
                None => f32::NEG_INFINITY,
            };
            let hi = match self.cst(n, 2, "max")? {
                Some(c) => c.scalar_f32("max")?,
                None => f32::INFINITY,
            };
            (lo, hi)
        };
        if min == f32::NEG_INFINITY && max == f32::INFINITY {
            let v = self.req(n, 0)?;
            self.set(n, 0, v);
            return Ok(());
        }
        if let Val::Const(c) = self.req(n, 0)?
            && !c.is_float()
        {
            // Integer clip: clamp in i64 so large values stay exact.
            let (lo, hi) = (min.max(i64::MIN as f32) as i64, max.min(i64::MAX as f32) as i64);
            let v = c.to_i64().into_iter().map(|x| x.max(lo).min(hi)).collect();
            return self.set_const(n, 0, Const::ints(c.ty, c.shape().to_vec(), v));
        }
        self.act(n, out, Activation::Clip { min, max })
    }

    fn variadic(&mut self, n: &NodeProto, op: &str, out: &str) -> R<()> {
        let ins: Vec<Val> = (0..n.input.len()).filter_map(|i| self.val(n, i)).collect();
        let expected = matches!(op, "Add" | "Sub" | "Mul" | "Div");
        if ins.is_empty() || (expected && ins.len() != 2) {
            return Err(format!("{} input(s) given", ins.len()));
        }
        let mut ins = ins;
        if expected && self.opset < 7 {
            ins[1] = self.legacy_broadcast(n, &ins[0], &ins[1], out)?;
        }
        let bop = match op {
            "Add" | "Sum" | "Mean" => BinaryOp::Add,
            "Sub" => BinaryOp::Sub,
            "Mul" => BinaryOp::Mul,
            "Div" => BinaryOp::Div,
            "Max" => BinaryOp::Max,
            _ => BinaryOp::Min,
        };
        // Constants fold with ONNX integer semantics (Div truncates).
        if ins.iter().all(|v| matches!(v, Val::Const(_))) {
            let cs: Vec<Arc<Const>> = ins.iter().map(|v| if let Val::Const(c) = v { c.clone() } else { unreachable!() }).collect();
            let mut acc = (*cs[0]).clone();
            for c in &cs[1..] {
                acc = fold::binary(op, &acc, c, false, &self.lim)?;
            }
            if op == "Mean" {
                let k = Const::f32(Tensor::scalar(cs.len() as f32));
                acc = fold::binary("Div", &acc, &k, false, &self.lim)?;
            }
            return self.set_const(n, 0, acc);
        }
        let mut acc = ins[0].clone();
        let last = ins.len() - 1;
        for (i, v) in ins.iter().enumerate().skip(1) {
            let name = if i == last && op != "Mean" { out.to_string() } else { format!("{out}/{i}") };
            acc = self.binary(&name, bop, &acc, v)?;
        }
        if op == "Mean" && ins.len() > 1 {
            let k = Val::Const(Arc::new(Const::f32(Tensor::scalar(1.0 / ins.len() as f32))));
            acc = self.binary(out, BinaryOp::Mul, &acc, &k)?;
        }
        self.set(n, 0, acc);
        Ok(())
    }

    /// Opset < 7 arithmetic: with `broadcast=1`, B aligns with A from
    /// `axis` (default: trailing); without it the shapes must be equal.
    fn legacy_broadcast(&mut self, n: &NodeProto, a: &Val, b: &Val, out: &str) -> R<Val> {
        let at = Attrs(&n.attribute);
        let (sa, sb) = (self.shape(a), self.shape(b));
        if at.int("broadcast", 0)? == 0 {
            if sa != sb {
                return Err(format!("shapes {sa:?} and {sb:?} differ and broadcast is off"));
            }
            return Ok(b.clone());
        }
        if sb.len() > sa.len() {
            return Err(format!("B {sb:?} has a higher rank than A {sa:?}"));
        }
        let axis = match at.get("axis") {
            Some(_) => fold::axis(at.int("axis", 0)?, sa.len())?,
            None => sa.len() - sb.len(),
        };
        if axis + sb.len() > sa.len() {
            return Err(format!("B {sb:?} does not fit A {sa:?} from axis {axis}"));
        }
        let mut shape = sb.clone();
        shape.resize(sa.len() - axis, 1);
        if shape == sb {
            return Ok(b.clone());
        }
        self.reshape(&format!("{out}/b"), b, shape)
    }

    fn gemm(&mut self, n: &NodeProto, a: &Attrs, out: &str) -> R<()> {
        let (av, bv) = (self.req(n, 0)?, self.req(n, 1)?);
        let cv = self.val(n, 2);
        let alpha = a.float("alpha", 1.0)?;
        let beta = a.float("beta", 1.0)?;
        let ta = a.int("transA", 0)? != 0;
        let tb = a.int("transB", 0)? != 0;
        let (ash, bsh) = (self.shape(&av), self.shape(&bv));
        if ash.len() != 2 || bsh.len() != 2 {
            return Err(format!("A {ash:?} and B {bsh:?} must be 2-D"));
        }
        let scaled = |t: Tensor, s: f32| -> Tensor {
            if s == 1.0 {
                t
            } else {
                let mut t = t;
                t.data_mut().iter_mut().for_each(|v| *v *= s);
                t
            }
        };
        let (y, post) = if let Val::Const(bc) = &bv {
            // Y = A' · B' with B' = weightᵀ: a Dense over A's rows.
            let b = bc.tensor().ok_or("B must be a float tensor")?;
            let weight = match (tb, alpha == 1.0) {
                (true, true) => b.clone(),
                (true, false) => Arc::new(scaled((**b).clone(), alpha)),
                (false, _) => Arc::new(scaled(transpose2(b), alpha)),
            };
            let n_out = weight.shape()[0];
            let mut x = self.node_of(&av, &n.input[0])?;
            if ta {
                x = self.add(&format!("{out}/transA"), Op::Transpose { perm: vec![1, 0] }, &[x])?;
            }
            // A C of one value per output column becomes the bias.
            let mut bias = None;
            let mut post = cv.clone();
            if beta == 0.0 {
                post = None;
            } else if let Some(Val::Const(c)) = &cv {
                let cs: Vec<usize> = c.shape().iter().copied().skip_while(|&d| d == 1).collect();
                if c.is_float() && (cs.is_empty() || cs == [n_out]) && c.shape().len() <= 2 {
                    let v = c.to_f32();
                    let data = if v.len() == 1 { vec![v[0] * beta; n_out] } else { v.iter().map(|x| x * beta).collect() };
                    bias = Some(Arc::new(Tensor::new(vec![n_out], data).map_err(|e| e.to_string())?));
                    post = None;
                }
            }
            let name = if post.is_some() { format!("{out}/gemm") } else { out.to_string() };
            let y = self.add(&name, Op::Dense(Dense { weight, bias, act: Activation::Identity }), &[x])?;
            (Val::Node(y), post)
        } else if let Val::Const(ac) = &av {
            // Yᵀ = B'ᵀ · A'ᵀ: a Dense over B's columns, transposed back.
            let at = ac.tensor().ok_or("A must be a float tensor")?;
            let w = if ta { transpose2(at) } else { (**at).clone() };
            let weight = Arc::new(scaled(w, alpha));
            let mut x = self.node_of(&bv, &n.input[1])?;
            if !tb {
                x = self.add(&format!("{out}/transB"), Op::Transpose { perm: vec![1, 0] }, &[x])?;
            }
            let d = self.add(&format!("{out}/gemm"), Op::Dense(Dense { weight, bias: None, act: Activation::Identity }), &[x])?;
            let post = if beta == 0.0 { None } else { cv.clone() };
            let name = if post.is_some() { format!("{out}/t") } else { out.to_string() };
            let y = self.add(&name, Op::Transpose { perm: vec![1, 0] }, &[d])?;
            (Val::Node(y), post)
        } else {
            return Err("Gemm of two run-time tensors is not supported (A or B must be constant)".into());
        };
        let y = match post {
            None => y,
            Some(c) => {
                let c = if beta == 1.0 {
                    c
                } else {
                    let k = Val::Const(Arc::new(Const::f32(Tensor::scalar(beta))));
                    self.binary(&format!("{out}/betaC"), BinaryOp::Mul, &c, &k)?
                };
                self.binary(out, BinaryOp::Add, &y, &c)?
            }
        };
        self.set(n, 0, y);
        Ok(())
    }

    fn matmul(&mut self, n: &NodeProto, out: &str) -> R<()> {
        let (av, bv) = (self.req(n, 0)?, self.req(n, 1)?);
        let (ash, bsh) = (self.shape(&av), self.shape(&bv));
        if ash.is_empty() || bsh.is_empty() {
            return Err("MatMul of a scalar".into());
        }
        if let Val::Const(bc) = &bv {
            let b = bc.tensor().ok_or("B must be a float tensor")?;
            if bsh.len() > 2 && bsh[..bsh.len() - 2].iter().all(|&d| d == 1) {
                // B = [1, .., 1, K, N]: a Dense, then the broadcast leading dims.
                let (k, nn) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
                let weight = Arc::new(transpose2(&(**b).clone().reshaped(vec![k, nn]).map_err(|e| e.to_string())?));
                let x = self.node_of(&av, &n.input[0])?;
                let d = self.add(&format!("{out}/dense"), Op::Dense(Dense { weight, bias: None, act: Activation::Identity }), &[x])?;
                let mut shape = self.g.node(d).shape.clone();
                let rank = if ash.len() == 1 { bsh.len() - 1 } else { bsh.len() };
                while shape.len() < rank {
                    shape.insert(0, 1);
                }
                let y = self.add(out, Op::Reshape { shape }, &[d])?;
                self.set(n, 0, Val::Node(y));
                return Ok(());
            }
            let x = self.node_of(&av, &n.input[0])?;
            match bsh.len() {
                2 => {
                    let weight = Arc::new(transpose2(b));
                    let y = self.add(out, Op::Dense(Dense { weight, bias: None, act: Activation::Identity }), &[x])?;
                    self.set(n, 0, Val::Node(y));
                }
                1 => {
                    let weight = Arc::new((**b).clone().reshaped(vec![1, bsh[0]]).map_err(|e| e.to_string())?);
                    let d = self.add(&format!("{out}/dense"), Op::Dense(Dense { weight, bias: None, act: Activation::Identity }), &[x])?;
                    let s = self.g.node(d).shape.clone();
                    let y = self.add(out, Op::Reshape { shape: s[..s.len() - 1].to_vec() }, &[d])?;
                    self.set(n, 0, Val::Node(y));
                }
                _ => {
                    let y = self.batched_matmul(out, x, &ash, b)?;
                    self.set(n, 0, Val::Node(y));
                }
            }
            return Ok(());
        }
        if let Val::Const(ac) = &av {
            if ash.len() != 2 || bsh.len() < 2 {
                return Err(format!("constant left operand {ash:?} times run-time {bsh:?} is not supported"));
            }
            let weight = Arc::new((**ac.tensor().ok_or("A must be a float tensor")?).clone());
            let r = bsh.len();
            let mut perm: Vec<usize> = (0..r).collect();
            perm.swap(r - 2, r - 1);
            let x = self.node_of(&bv, &n.input[1])?;
            let t = self.add(&format!("{out}/bt"), Op::Transpose { perm: perm.clone() }, &[x])?;
            let d = self.add(&format!("{out}/dense"), Op::Dense(Dense { weight, bias: None, act: Activation::Identity }), &[t])?;
            let y = self.add(out, Op::Transpose { perm }, &[d])?;
            self.set(n, 0, Val::Node(y));
            return Ok(());
        }
        Err("MatMul of two run-time tensors is not supported (one operand must be constant)".into())
    }

    /// `A · B` for a constant `B` of shape `[batch.., K, N]`: one Dense per
    /// broadcast batch index on a slice of A, concatenated and reshaped.
    fn batched_matmul(&mut self, out: &str, x: NodeId, ash: &[usize], b: &Tensor) -> R<NodeId> {
        let bsh = b.shape();
        let (k, nn) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
        let vector = ash.len() == 1;
        let a3: Vec<usize> = if vector { vec![1, 1, ash[0]] } else { vec![ash[..ash.len() - 2].iter().product(), ash[ash.len() - 2], ash[ash.len() - 1]] };
        if a3[2] != k {
            return Err(format!("A {ash:?} and B {bsh:?} do not multiply"));
        }
        let a_batch: &[usize] = if vector { &[] } else { &ash[..ash.len() - 2] };
        let b_batch = &bsh[..bsh.len() - 2];
        let batch = crate::value::broadcast_shapes(a_batch, b_batch, &self.lim)?;
        let count: usize = batch.iter().product();
        if count == 0 || count > MAX_GATHER_RUNS {
            return Err(format!("batched MatMul over {count} matrices is not supported at run time"));
        }
        let ia = crate::value::broadcast_index(&batch, a_batch);
        let ib = crate::value::broadcast_index(&batch, b_batch);
        let xa = self.add(&format!("{out}/a3"), Op::Reshape { shape: a3.clone() }, &[x])?;
        let mut slices: HashMap<usize, NodeId> = HashMap::new();
        let mut parts = Vec::with_capacity(count);
        for o in 0..count {
            let s = match slices.get(&ia[o]) {
                Some(&s) => s,
                None if a3[0] == 1 => xa,
                None => {
                    let (mut starts, mut ends) = (vec![0; 3], a3.clone());
                    starts[0] = ia[o];
                    ends[0] = ia[o] + 1;
                    self.add(&format!("{out}/a{}", ia[o]), Op::Slice { starts, ends }, &[xa])?
                }
            };
            slices.insert(ia[o], s);
            let mat = Tensor::new(vec![k, nn], b.data()[ib[o] * k * nn..(ib[o] + 1) * k * nn].to_vec()).map_err(|e| e.to_string())?;
            let weight = Arc::new(transpose2(&mat));
            parts.push(self.add(&format!("{out}/b{o}"), Op::Dense(Dense { weight, bias: None, act: Activation::Identity }), &[s])?);
        }
        let cat = if parts.len() == 1 { parts[0] } else { self.add(&format!("{out}/concat"), Op::Concat { axis: 0 }, &parts)? };
        let mut shape = batch;
        if !vector {
            shape.push(a3[1]);
        }
        shape.push(nn);
        self.add(out, Op::Reshape { shape }, &[cat])
    }

    fn batchnorm(&mut self, n: &NodeProto, a: &Attrs, out: &str) -> R<()> {
        if self.opset >= 14 && a.int("training_mode", 0)? != 0 {
            return Err("training mode is not supported".into());
        }
        if self.opset < 9 && a.int("spatial", 1)? == 0 {
            return Err("spatial=0 is not supported".into());
        }
        if (1..5).any(|i| self.output_used(n, i)) {
            return Err("training outputs (running mean / variance) are not supported".into());
        }
        let x = self.node_in(n, 0)?;
        let xs = self.g.node(x).shape.clone();
        if xs.len() < 2 {
            return Err(format!("input {xs:?} has no channel axis"));
        }
        let c = xs[1];
        let mut parts = Vec::new();
        for (i, what) in [(1, "scale"), (2, "B"), (3, "mean"), (4, "var")] {
            let t = self.weight(n, i, what)?.ok_or_else(|| format!("{what} (input #{i}) is required"))?;
            if t.numel() != c {
                return Err(format!("{what} has shape {:?}, expected {c} values", t.shape()));
            }
            let t = if t.shape() == [c] { t } else { Arc::new((*t).clone().reshaped(vec![c]).map_err(|e| e.to_string())?) };
            parts.push(t);
        }
        let eps = a.float("epsilon", 1e-5)?;
        let var = parts.pop().unwrap();
        let mean = parts.pop().unwrap();
        let bias = parts.pop().unwrap();
        let scale = parts.pop().unwrap();
        let y = self.add(out, Op::BatchNorm(BatchNorm { scale, bias, mean, var, eps }), &[x])?;
        self.set(n, 0, Val::Node(y));
        Ok(())
    }

    fn concat(&mut self, n: &NodeProto, a: &Attrs, out: &str) -> R<()> {
        let ins: Vec<(Val, String)> = (0..n.input.len()).filter_map(|i| self.val(n, i).map(|v| (v, n.input[i].clone()))).collect();
        if ins.is_empty() {
            return Err("no inputs".into());
        }
        let rank = self.shape(&ins[0].0).len();
        let ax = fold::axis(a.int_req("axis")?, rank)?;
        if ins.iter().all(|(v, _)| matches!(v, Val::Const(_))) {
            let cs: Vec<&Const> = ins.iter().map(|(v, _)| if let Val::Const(c) = v { c.as_ref() } else { unreachable!() }).collect();
            let c = fold::concat(&cs, ax, &self.lim)?;
            return self.set_const(n, 0, c);
        }
        let mut ids = Vec::with_capacity(ins.len());
        for (v, name) in &ins {
            ids.push(self.node_of(v, name)?);
        }
        let y = if ids.len() == 1 { ids[0] } else { self.add(out, Op::Concat { axis: ax }, &ids)? };
        self.set(n, 0, Val::Node(y));
        Ok(())
    }

    fn reshape_node(&mut self, n: &NodeProto, a: &Attrs, out: &str) -> R<()> {
        let v = self.req(n, 0)?;
        let xs = self.shape(&v);
        let spec = self.cst_req(n, 1, "shape")?.ints_of("shape")?;
        let allowzero = self.opset >= 14 && a.int("allowzero", 0)? != 0;
        let mut shape = Vec::with_capacity(spec.len());
        let mut infer = None;
        for (i, &s) in spec.iter().enumerate() {
            shape.push(match s {
                0 if !allowzero => *xs.get(i).ok_or_else(|| format!("shape {spec:?}: no input dim {i} to copy"))?,
                -1 => {
                    if infer.replace(i).is_some() {
                        return Err(format!("shape {spec:?} has more than one -1"));
                    }
                    1
                }
                s if s < 0 => return Err(format!("invalid dimension {s} in shape {spec:?}")),
                s => usize::try_from(s).map_err(|_| format!("dimension {s} too large"))?,
            });
        }
        let total: usize = xs.iter().product();
        let known = self.lim.numel(&shape)?;
        if let Some(i) = infer {
            if known == 0 || !total.is_multiple_of(known) {
                return Err(format!("cannot reshape {xs:?} to {spec:?}"));
            }
            shape[i] = total / known;
        } else if known != total {
            return Err(format!("cannot reshape {xs:?} to {spec:?}"));
        }
        let y = self.reshape(out, &v, shape)?;
        self.set(n, 0, y);
        Ok(())
    }

    fn squeeze(&mut self, n: &NodeProto, a: &Attrs, out: &str, unsqueeze: bool) -> R<()> {
        let v = self.req(n, 0)?;
        let xs = self.shape(&v);
        let axes = if self.opset >= 13 {
            match self.cst(n, 1, "axes")? {
                Some(c) => Some(c.ints_of("axes")?),
                None => None,
            }
        } else {
            a.ints("axes")?
        };
        let shape = if unsqueeze {
            let axes = axes.ok_or("axes are required")?;
            let r = xs.len() + axes.len();
            let axes = fold::axes(&axes, r)?;
            let mut it = xs.iter();
            (0..r).map(|d| if axes.contains(&d) { 1 } else { *it.next().unwrap() }).collect()
        } else {
            match axes {
                None => xs.iter().copied().filter(|&d| d != 1).collect(),
                Some(ax) => {
                    let ax = fold::axes(&ax, xs.len())?;
                    if let Some(&bad) = ax.iter().find(|&&d| xs[d] != 1) {
                        return Err(format!("cannot squeeze axis {bad} of size {}", xs[bad]));
                    }
                    (0..xs.len()).filter(|d| !ax.contains(d)).map(|d| xs[d]).collect()
                }
            }
        };
        let y = self.reshape(out, &v, shape)?;
        self.set(n, 0, y);
        Ok(())
    }

    fn pad(&mut self, n: &NodeProto, a: &Attrs, out: &str) -> R<()> {
        let v = self.req(n, 0)?;
        let xs = self.shape(&v);
        let r = xs.len();
        let mode = a.string("mode", "constant")?;
        let (pads, value, axes) = if self.opset < 11 {
            let p = a.ints("pads")?.ok_or("attribute 'pads' is required")?;
            (p, a.float("value", 0.0)?, (0..r).collect::<Vec<_>>())
        } else {
            let p = self.cst_req(n, 1, "pads")?.ints_of("pads")?;
            let value = match self.cst(n, 2, "constant_value")? {
                Some(c) if c.numel() > 0 => c.to_f32()[0],
                _ => 0.0,
            };
            let axes = match self.cst(n, 3, "axes")? {
                Some(c) => fold::axes(&c.ints_of("axes")?, r)?,
                None => (0..r).collect(),
            };
            (p, value, axes)
        };
        if pads.len() != 2 * axes.len() {
            return Err(format!("pads {pads:?} do not match {} axes", axes.len()));
        }
        let mode = match mode.as_str() {
            "constant" => PadMode::Constant(value),
            "reflect" => PadMode::Reflect,
            "edge" => PadMode::Edge,
            m => return Err(format!("mode '{m}' is not supported")),
        };
        let k = axes.len();
        let mut begin = vec![0usize; r];
        let mut end = vec![0usize; r];
        // Negative pads crop: a Slice first.
        let mut starts = vec![0usize; r];
        let mut ends = xs.clone();
        let mut crop = false;
        for (j, &ax) in axes.iter().enumerate() {
            for (p, is_end) in [(pads[j], false), (pads[j + k], true)] {
                if p < -MAX_ATTR - (xs[ax] as i64) || p > MAX_ATTR {
                    return Err(format!("pad {p} out of range"));
                }
                if p >= 0 {
                    if is_end {
                        end[ax] = p as usize;
                    } else {
                        begin[ax] = p as usize;
                    }
                } else {
                    crop = true;
                    let c = (-p) as usize;
                    if is_end {
                        ends[ax] = ends[ax].saturating_sub(c);
                    } else {
                        starts[ax] = c;
                    }
                }
            }
            if starts[ax] > ends[ax] {
                return Err(format!("negative pads crop axis {ax} of size {} below zero", xs[ax]));
            }
        }
        let mut x = self.node_of(&v, &n.input[0])?;
        let no_pad = begin.iter().chain(&end).all(|&p| p == 0);
        if crop {
            let name = if no_pad { out.to_string() } else { format!("{out}/crop") };
            x = self.add(&name, Op::Slice { starts, ends }, &[x])?;
        }
        let y = if no_pad { x } else { self.add(out, Op::Pad { begin, end, mode }, &[x])? };
        self.set(n, 0, if no_pad && !crop { v } else { Val::Node(y) });
        Ok(())
    }

    fn resize(&mut self, n: &NodeProto, a: &Attrs, out: &str, upsample: bool) -> R<()> {
        let x = self.node_in(n, 0)?;
        let xs = self.g.node(x).shape.clone();
        let r = xs.len();
        let mode = a.string("mode", "nearest")?;
        if mode != "nearest" {
            return Err(format!("mode '{mode}' is not supported (only nearest)"));
        }
        let legacy = upsample || self.opset < 11;
        let (scales, sizes) = if upsample && self.opset < 9 {
            (Some(a.floats("scales")?.ok_or("attribute 'scales' is required")?), None)
        } else if legacy {
            (Some(self.cst_req(n, 1, "scales")?.to_f32()), None)
        } else {
            let s = self.cst(n, 2, "scales")?.filter(|c| c.numel() > 0).map(|c| c.to_f32());
            let z = match self.cst(n, 3, "sizes")?.filter(|c| c.numel() > 0) {
                Some(c) => Some(c.ints_of("sizes")?),
                None => None,
            };
            (s, z)
        };
        let axes = match a.ints("axes")? {
            Some(ax) if self.opset >= 18 && !legacy => fold::axes(&ax, r)?,
            _ => (0..r).collect(),
        };
        let mut out_shape = xs.clone();
        let mut scl = vec![1.0f32; r];
        match (scales, sizes) {
            (Some(s), None) => {
                if s.len() != axes.len() {
                    return Err(format!("{} scales for {} axes", s.len(), axes.len()));
                }
                for (&ax, &f) in axes.iter().zip(&s) {
                    if !(f.is_finite() && f > 0.0) {
                        return Err(format!("scale {f} is not positive"));
                    }
                    let o = (xs[ax] as f32 * f).floor();
                    if o as f64 > self.lim.max_elements as f64 {
                        return Err(format!("scale {f} makes axis {ax} too large"));
                    }
                    out_shape[ax] = o as usize;
                    scl[ax] = f;
                }
            }
            (None, Some(z)) => {
                if z.len() != axes.len() {
                    return Err(format!("{} sizes for {} axes", z.len(), axes.len()));
                }
                let mut sz = Vec::with_capacity(z.len());
                for &s in &z {
                    if s < 0 || s as u64 > self.lim.max_elements as u64 {
                        return Err(format!("size {s} out of range"));
                    }
                    sz.push(s as usize);
                }
                let policy = if self.opset >= 18 { a.string("keep_aspect_ratio_policy", "stretch")? } else { "stretch".into() };
                if axes.iter().any(|&ax| xs[ax] == 0) {
                    return Err("cannot resize an empty axis".into());
                }
                match policy.as_str() {
                    "stretch" => {
                        for (&ax, &s) in axes.iter().zip(&sz) {
                            out_shape[ax] = s;
                            scl[ax] = s as f32 / xs[ax] as f32;
                        }
                    }
                    "not_larger" | "not_smaller" => {
                        let ratios = axes.iter().zip(&sz).map(|(&ax, &s)| s as f32 / xs[ax] as f32);
                        let f = if policy == "not_larger" { ratios.fold(f32::INFINITY, f32::min) } else { ratios.fold(0.0, f32::max) };
                        for &ax in &axes {
                            out_shape[ax] = (f * xs[ax] as f32 + 0.5).floor() as usize;
                            scl[ax] = f;
                        }
                    }
                    p => return Err(format!("keep_aspect_ratio_policy '{p}' is not supported")),
                }
            }
            (Some(_), Some(_)) => return Err("only one of scales and sizes may be given".into()),
            (None, None) => return Err("one of scales and sizes is required".into()),
        }
        self.lim.numel(&out_shape)?;
        let (coord, nearest) = if legacy {
            // Upsample and Resize-10: x_in = x_out / scale, rounded down when
            // upsampling and up when downsampling (onnxruntime's rule).
            let up = scl.iter().all(|&s| s >= 1.0);
            let down = scl.iter().all(|&s| s <= 1.0);
            let nm = match (up, down) {
                (true, _) => NearestMode::Floor,
                (false, true) => NearestMode::Ceil,
                _ => return Err("mixed up- and down-sampling is not supported before opset 11".into()),
            };
            (CoordMode::Asymmetric, nm)
        } else {
            let coord = match a.string("coordinate_transformation_mode", "half_pixel")?.as_str() {
                "half_pixel" => CoordMode::HalfPixel,
                "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
                "align_corners" => CoordMode::AlignCorners,
                "asymmetric" => CoordMode::Asymmetric,
                "tf_half_pixel_for_nearest" => CoordMode::TfHalfPixelForNearest,
                m => return Err(format!("coordinate_transformation_mode '{m}' is not supported")),
            };
            let nearest = match a.string("nearest_mode", "round_prefer_floor")?.as_str() {
                "round_prefer_floor" => NearestMode::RoundPreferFloor,
                "round_prefer_ceil" => NearestMode::RoundPreferCeil,
                "floor" => NearestMode::Floor,
                "ceil" => NearestMode::Ceil,
                m => return Err(format!("nearest_mode '{m}' is not supported")),
            };
            (coord, nearest)
        };
        let y = self.add(out, Op::Resize(Resize { out_shape, scales: scl, coord, nearest }), &[x])?;
        self.set(n, 0, Val::Node(y));
        Ok(())
    }

    fn slice(&mut self, n: &NodeProto, a: &Attrs, out: &str) -> R<()> {
        let v = self.req(n, 0)?;
        let xs = self.shape(&v);
        let r = xs.len();
        let (starts, ends, axes, steps) = if self.opset < 10 {
            let s = a.ints("starts")?.ok_or("attribute 'starts' is required")?;
            let e = a.ints("ends")?.ok_or("attribute 'ends' is required")?;
            (s, e, a.ints("axes")?, None)
        } else {
            let s = self.cst_req(n, 1, "starts")?.ints_of("starts")?;
            let e = self.cst_req(n, 2, "ends")?.ints_of("ends")?;
            let ax = match self.cst(n, 3, "axes")? {
                Some(c) => Some(c.ints_of("axes")?),
                None => None,
            };
            let st = match self.cst(n, 4, "steps")? {
                Some(c) => Some(c.ints_of("steps")?),
                None => None,
            };
            (s, e, ax, st)
        };
        let k = starts.len();
        let axes = match axes {
            Some(ax) => fold::axes(&ax, r)?,
            None => (0..k).collect(),
        };
        let steps = steps.unwrap_or_else(|| vec![1; k]);
        if ends.len() != k || axes.len() != k || steps.len() != k || k > r {
            return Err(format!("starts {starts:?}, ends {ends:?}, axes {axes:?} and steps {steps:?} disagree"));
        }
        // Per axis: (first index, count, step).
        let mut spec: Vec<(usize, usize, i64)> = xs.iter().map(|&d| (0, d, 1)).collect();
        for j in 0..k {
            let (ax, step) = (axes[j], steps[j]);
            let dim = xs[ax] as i128;
            if step == 0 {
                return Err("step 0".into());
            }
            let norm = |v: i64| -> i128 { if v < 0 { v as i128 + dim } else { v as i128 } };
            let (mut s, mut e) = (norm(starts[j]), norm(ends[j]));
            let count = if step > 0 {
                s = s.clamp(0, dim);
                e = e.clamp(0, dim);
                if e > s { (e - s + step as i128 - 1) / step as i128 } else { 0 }
            } else {
                s = s.clamp(0, (dim - 1).max(0));
                e = e.clamp(-1, dim - 1);
                if s > e && dim > 0 { (s - e + (-step) as i128 - 1) / (-step) as i128 } else { 0 }
            };
            spec[ax] = (s as usize, count as usize, step);
        }
        let y = match v {
            Val::Const(c) => Val::Const(Arc::new(fold::slice(&c, &spec))),
            Val::Node(id) => {
                if spec.iter().any(|s| s.2 != 1 && s.1 > 1) {
                    return Err(format!("steps {steps:?} are not supported at run time (only 1)"));
                }
                let starts: Vec<usize> = spec.iter().map(|s| s.0).collect();
                let ends: Vec<usize> = spec.iter().map(|s| s.0 + s.1).collect();
                Val::Node(self.add(out, Op::Slice { starts, ends }, &[id])?)
            }
        };
        self.set(n, 0, y);
        Ok(())
    }

    fn gather(&mut self, n: &NodeProto, a: &Attrs, out: &str) -> R<()> {
        let v = self.req(n, 0)?;
        let xs = self.shape(&v);
        if xs.is_empty() {
            return Err("cannot gather from a scalar".into());
        }
        let ax = fold::axis(a.int("axis", 0)?, xs.len())?;
        let ic = self.cst_req(n, 1, "indices")?;
        let ishape = ic.shape().to_vec();
        let dim = xs[ax] as i64;
        let idx = ic
            .ints_of("indices")?
            .into_iter()
            .map(|i| {
                let j = if i < 0 { i + dim } else { i };
                if (0..dim).contains(&j) {
                    Ok(j as usize)
                } else {
                    Err(format!("index {i} out of range for axis {ax} of size {dim}"))
                }
            })
            .collect::<R<Vec<_>>>()?;
        let y = match &v {
            Val::Const(c) => Val::Const(Arc::new(fold::gather(c, ax, &idx, &ishape, &self.lim)?)),
            Val::Node(id) => {
                let mut out_shape = xs[..ax].to_vec();
                out_shape.extend_from_slice(&ishape);
                out_shape.extend_from_slice(&xs[ax + 1..]);
                self.lim.numel(&out_shape)?;
                // Runs of consecutive indices become slices, concatenated.
                let mut runs: Vec<(usize, usize)> = Vec::new();
                for &i in &idx {
                    match runs.last_mut() {
                        Some((s, e)) if *e == i => *e += 1,
                        _ => runs.push((i, i + 1)),
                    }
                    if runs.len() > MAX_GATHER_RUNS {
                        return Err(format!("more than {MAX_GATHER_RUNS} non-contiguous indices at run time"));
                    }
                }
                let mut parts = Vec::with_capacity(runs.len());
                for (k, (s, e)) in runs.iter().enumerate() {
                    if *s == 0 && *e == xs[ax] {
                        parts.push(*id);
                        continue;
                    }
                    let mut starts = vec![0; xs.len()];
                    let mut ends = xs.clone();
                    starts[ax] = *s;
                    ends[ax] = *e;
                    parts.push(self.add(&format!("{out}/run{k}"), Op::Slice { starts, ends }, &[*id])?);
                }
                let mut y = match parts.len() {
                    0 => return Err("empty indices are not supported at run time".into()),
                    1 => parts[0],
                    _ => self.add(&format!("{out}/concat"), Op::Concat { axis: ax }, &parts)?,
                };
                if self.g.node(y).shape != out_shape || y == *id {
                    y = self.add(out, Op::Reshape { shape: out_shape }, &[y])?;
                }
                Val::Node(y)
            }
        };
        self.set(n, 0, y);
        Ok(())
    }

    fn split(&mut self, n: &NodeProto, a: &Attrs, out: &str) -> R<()> {
        let v = self.req(n, 0)?;
        let xs = self.shape(&v);
        let ax = fold::axis(a.int("axis", 0)?, xs.len())?;
        let k = n.output.len();
        let dim = xs[ax];
        let given = if self.opset >= 13 {
            match self.cst(n, 1, "split")? {
                Some(c) => Some(c.ints_of("split")?),
                None => None,
            }
        } else {
            a.ints("split")?
        };
        let sizes: Vec<usize> = match given {
            Some(s) => {
                if s.len() != k || s.iter().any(|&x| x < 0) || s.iter().map(|&x| x as i128).sum::<i128>() != dim as i128 {
                    return Err(format!("split {s:?} does not divide axis {ax} of size {dim} into {k}"));
                }
                s.iter().map(|&x| x as usize).collect()
            }
            None => {
                let parts = if self.opset >= 18 && a.has("num_outputs") { a.int("num_outputs", 0)? } else { k as i64 };
                if parts <= 0 || parts as usize != k {
                    return Err(format!("num_outputs {parts} does not match {k} outputs"));
                }
                let chunk = dim.div_ceil(k);
                if self.opset < 18 && !dim.is_multiple_of(k) {
                    return Err(format!("axis {ax} of size {dim} does not split evenly into {k}"));
                }
                (0..k).map(|i| chunk.min(dim.saturating_sub(i * chunk))).collect()
            }
        };
        let mut start = 0;
        for (i, &len) in sizes.iter().enumerate() {
            let mut spec: Vec<(usize, usize, i64)> = xs.iter().map(|&d| (0, d, 1)).collect();
            spec[ax] = (start, len, 1);
            let y = match &v {
                Val::Const(c) => Val::Const(Arc::new(fold::slice(c, &spec))),
                Val::Node(id) => {
                    let starts: Vec<usize> = spec.iter().map(|s| s.0).collect();
                    let ends: Vec<usize> = spec.iter().map(|s| s.0 + s.1).collect();
                    let name = Self::out_name(n, i);
                    let name = if name.is_empty() { format!("{out}/{i}") } else { name };
                    Val::Node(self.add(&name, Op::Slice { starts, ends }, &[*id])?)
                }
            };
            self.set(n, i, y);
            start += len;
        }
        Ok(())
    }

    fn reduce(&mut self, n: &NodeProto, a: &Attrs, out: &str, op: &str) -> R<()> {
        let v = self.req(n, 0)?;
        let xs = self.shape(&v);
        let axes_input = op == "ReduceSum" && self.opset >= 13 || self.opset >= 18;
        let axes = if axes_input {
            match self.cst(n, 1, "axes")? {
                Some(c) => Some(c.ints_of("axes")?),
                None => None,
            }
        } else {
            a.ints("axes")?
        };
        let keep = a.int("keepdims", 1)? != 0;
        let noop = axes_input && a.int("noop_with_empty_axes", 0)? != 0;
        let axes = match axes {
            Some(ax) if !ax.is_empty() => fold::axes(&ax, xs.len())?,
            _ if noop => {
                self.set(n, 0, v);
                return Ok(());
            }
            _ => (0..xs.len()).collect(),
        };
        match &v {
            Val::Const(c) => {
                let r = if op == "ReduceSumSquare" {
                    fold::reduce("ReduceSum", &fold::binary("Mul", c, c, false, &self.lim)?, &axes, keep)?
                } else {
                    fold::reduce(op, c, &axes, keep)?
                };
                self.set_const(n, 0, r)
            }
            Val::Node(id) => {
                let y = self.reduce_runtime(out, op, *id, &xs, &axes, keep)?;
                self.set(n, 0, Val::Node(y));
                Ok(())
            }
        }
    }

    /// A reduction of a run-time tensor through global pooling: over all
    /// spatial axes of an NCHW tensor directly; over any other axes after a
    /// Transpose (kept axes first) and a Reshape to `[1, kept, 1, reduced]`.
    fn reduce_runtime(&mut self, out: &str, op: &str, x: NodeId, xs: &[usize], axes: &[usize], keep: bool) -> R<NodeId> {
        let mut sorted = axes.to_vec();
        sorted.sort_unstable();
        let out_shape: Vec<usize> =
            (0..xs.len()).filter_map(|d| if !sorted.contains(&d) { Some(xs[d]) } else if keep { Some(1) } else { None }).collect();
        let spatial: Vec<usize> = (2..xs.len()).collect();
        if xs.len() >= 3 && sorted == spatial && matches!(op, "ReduceMean" | "ReduceMax") {
            let pool = if op == "ReduceMean" { Op::GlobalAveragePool } else { Op::GlobalMaxPool };
            if keep {
                return self.add(out, pool, &[x]);
            }
            let p = self.add(&format!("{out}/pool"), pool, &[x])?;
            return self.add(out, Op::Reshape { shape: out_shape }, &[p]);
        }
        if !matches!(op, "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceSum" | "ReduceSumSquare") {
            return Err("op not supported at run time (only ReduceMean, ReduceMax, ReduceMin, ReduceSum and ReduceSumSquare are)".into());
        }
        let kept: Vec<usize> = (0..xs.len()).filter(|d| !sorted.contains(d)).collect();
        let m: usize = kept.iter().map(|&d| xs[d]).product();
        let r: usize = sorted.iter().map(|&d| xs[d]).product();
        if r == 0 {
            // Reducing nothing gives the reduction's identity, whatever x holds.
            let v = match op {
                "ReduceMax" => f32::NEG_INFINITY,
                "ReduceMin" => f32::INFINITY,
                "ReduceMean" => return Err("mean of an empty set".into()),
                _ => 0.0,
            };
            return self.add(out, Op::Const(Arc::new(Tensor::full(&out_shape, v))), &[]);
        }
        let perm: Vec<usize> = kept.iter().chain(&sorted).copied().collect();
        let mut y = x;
        if op == "ReduceSumSquare" {
            y = self.add(&format!("{out}/square"), Op::Binary(BinaryOp::Mul), &[y, y])?;
        }
        if perm.iter().enumerate().any(|(i, &p)| i != p) {
            y = self.add(&format!("{out}/transpose"), Op::Transpose { perm }, &[y])?;
        }
        y = self.add(&format!("{out}/as4d"), Op::Reshape { shape: vec![1, m, 1, r] }, &[y])?;
        let neg = Val::Const(Arc::new(Const::f32(Tensor::scalar(-1.0))));
        if op == "ReduceMin" {
            // min(x) = -max(-x)
            y = match self.binary(&format!("{out}/neg"), BinaryOp::Mul, &Val::Node(y), &neg)? {
                Val::Node(id) => id,
                Val::Const(_) => unreachable!("run-time operand"),
            };
        }
        let pool = if matches!(op, "ReduceMean" | "ReduceSum" | "ReduceSumSquare") { Op::GlobalAveragePool } else { Op::GlobalMaxPool };
        y = self.add(&format!("{out}/pool"), pool, &[y])?;
        let scale = match op {
            "ReduceSum" | "ReduceSumSquare" => Some(r as f32),
            "ReduceMin" => Some(-1.0),
            _ => None,
        };
        if let Some(k) = scale {
            let k = Val::Const(Arc::new(Const::f32(Tensor::scalar(k))));
            y = match self.binary(&format!("{out}/scale"), BinaryOp::Mul, &Val::Node(y), &k)? {
                Val::Node(id) => id,
                Val::Const(_) => unreachable!("run-time operand"),
            };
        }
        self.add(out, Op::Reshape { shape: out_shape }, &[y])
    }
}
