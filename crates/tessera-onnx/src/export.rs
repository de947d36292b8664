//! Tessera [`Graph`] → ONNX model bytes (opset 13), with every weight as an
//! initializer. Used to check each zoo model against onnxruntime and to
//! hand Tessera graphs to other tools.
//!
//! Each IR op maps onto one ONNX node, except: fused activations of
//! Conv/Dense become a separate node; Dense on a rank other than 2 becomes
//! MatMul (+ Add); Softmax with `flatten` (opset < 13 semantics) becomes
//! Flatten → Softmax → Reshape; HardSwish (opset 14) becomes
//! `x * HardSigmoid(x)`. The only IR feature opset 13 cannot express,
//! dilated average pooling, raises the model to opset 19.
//!
//! [`export_with`] may leave chosen weights out, as ONNX external data
//! whose `location` names them (the mesh ships a re-plan's weights that a
//! peer already holds this way: see `ImportOptions::external`).

use std::collections::HashSet;

use prost::Message;
use tessera_graph::op::{CoordMode, NearestMode, PadMode};
use tessera_graph::{Activation, Graph, Op, Tensor};

use crate::proto::tensor_shape_proto::{dimension, Dimension};
use crate::proto::type_proto;
use crate::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use crate::value::{dt, transpose2};

/// The opset exported models declare (19 where dilated average pooling needs it).
pub const EXPORT_OPSET: i64 = 13;

/// `TensorProto.data_location` of data kept outside the model.
const EXTERNAL: i32 = 1;
const A_FLOAT: i32 = 1;
const A_INT: i32 = 2;
const A_STRING: i32 = 3;
const A_INTS: i32 = 7;

fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(A_INT), i: Some(v), ..Default::default() }
}
fn attr_ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(A_INTS), ints: v.iter().map(|&x| x as i64).collect(), ..Default::default() }
}
fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(A_FLOAT), f: Some(v), ..Default::default() }
}
fn attr_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(A_STRING), s: Some(v.as_bytes().to_vec().into()), ..Default::default() }
}

/// A float32 `ValueInfoProto` of a fixed shape.
pub(crate) fn value_info(name: &str, shape: &[usize]) -> ValueInfoProto {
    let dim = shape.iter().map(|&d| Dimension { value: Some(dimension::Value::DimValue(d as i64)), denotation: None }).collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: Some(dt::FLOAT), shape: Some(TensorShapeProto { dim }) })),
            denotation: None,
        }),
        ..Default::default()
    }
}

/// A float32 `TensorProto` (raw little-endian data).
pub(crate) fn tensor_proto(name: &str, t: &Tensor) -> TensorProto {
    let mut raw = Vec::with_capacity(t.bytes());
    for v in t.data() {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    TensorProto {
        name: Some(name.into()),
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: Some(dt::FLOAT),
        raw_data: Some(raw.into()),
        ..Default::default()
    }
}

fn tensor_i64(name: &str, v: &[i64]) -> TensorProto {
    TensorProto { name: Some(name.into()), dims: vec![v.len() as i64], data_type: Some(dt::INT64), int64_data: v.to_vec(), ..Default::default() }
}

struct Exporter<'a> {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    names: HashSet<String>,
    external: &'a mut dyn FnMut(&Tensor) -> Option<String>,
}

impl Exporter<'_> {
    /// A value name not used yet, derived from `base`.
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while !self.names.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        name
    }

    fn init_f32(&mut self, base: &str, t: &Tensor) -> String {
        let name = self.fresh(base);
        self.push_f32(&name, t);
        name
    }

    /// An f32 initializer, inline or, where `external` says so, by reference.
    fn push_f32(&mut self, name: &str, t: &Tensor) {
        let proto = match (self.external)(t) {
            Some(location) => TensorProto {
                name: Some(name.into()),
                dims: t.shape().iter().map(|&d| d as i64).collect(),
                data_type: Some(dt::FLOAT),
                data_location: Some(EXTERNAL),
                external_data: vec![StringStringEntryProto { key: Some("location".into()), value: Some(location) }],
                ..Default::default()
            },
            None => tensor_proto(name, t),
        };
        self.inits.push(proto);
    }

    fn init_i64(&mut self, base: &str, v: &[i64]) -> String {
        let name = self.fresh(base);
        self.inits.push(tensor_i64(&name, v));
        name
    }

    fn node(&mut self, op: &str, name: &str, inputs: Vec<String>, output: &str, attrs: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(name.into()),
            input: inputs,
            output: vec![output.into()],
            attribute: attrs,
            ..Default::default()
        });
    }

    /// `output = act(input)`.
    fn act(&mut self, a: Activation, input: &str, output: &str) {
        let i = vec![input.to_string()];
        match a {
            Activation::Identity => self.node("Identity", output, i, output, vec![]),
            Activation::Relu => self.node("Relu", output, i, output, vec![]),
            Activation::Sigmoid => self.node("Sigmoid", output, i, output, vec![]),
            Activation::Tanh => self.node("Tanh", output, i, output, vec![]),
            Activation::LeakyRelu { alpha } => self.node("LeakyRelu", output, i, output, vec![attr_f("alpha", alpha)]),
            Activation::HardSigmoid { alpha, beta } => {
                self.node("HardSigmoid", output, i, output, vec![attr_f("alpha", alpha), attr_f("beta", beta)])
            }
            Activation::Clip { min, max } => {
                let lo = if min == f32::NEG_INFINITY { String::new() } else { self.init_f32(&format!("{output}::min"), &Tensor::scalar(min)) };
                let hi = if max == f32::INFINITY { String::new() } else { self.init_f32(&format!("{output}::max"), &Tensor::scalar(max)) };
                let mut ins = vec![input.to_string(), lo, hi];
                while ins.last().is_some_and(|s| s.is_empty()) {
                    ins.pop();
                }
                self.node("Clip", output, ins, output, vec![])
            }
            Activation::HardSwish => {
                let hs = self.fresh(&format!("{output}::hardsigmoid"));
                self.node("HardSigmoid", &hs, i, &hs, vec![attr_f("alpha", 1.0 / 6.0), attr_f("beta", 0.5)]);
                self.node("Mul", output, vec![input.to_string(), hs], output, vec![]);
            }
        }
    }

    /// Emits `op` (which writes its raw result to `out`), then the fused
    /// activation into `name` if there is one.
    fn with_act(&mut self, name: &str, act: Activation) -> String {
        if act == Activation::Identity {
            name.to_string()
        } else {
            self.fresh(&format!("{name}::preact"))
        }
    }
}

/// Writes `graph` as an ONNX model (see the module docs for the mapping).
pub fn export(graph: &Graph) -> Vec<u8> {
    export_with(graph, &mut |_| None)
}

/// [`export`], writing each f32 initializer for which `external` returns a
/// location as ONNX external data at that location (no bytes) instead.
pub fn export_with(graph: &Graph, external: &mut dyn FnMut(&Tensor) -> Option<String>) -> Vec<u8> {
    let mut ex = Exporter { nodes: Vec::new(), inits: Vec::new(), names: graph.nodes().iter().map(|n| n.name.clone()).collect(), external };
    let mut inputs = Vec::new();
    let mut opset = EXPORT_OPSET;
    let nodes = graph.nodes();
    for n in nodes {
        let name = n.name.as_str();
        let x = || -> Vec<String> { n.inputs.iter().map(|&i| nodes[i].name.clone()).collect() };
        let in_shape = |k: usize| -> &[usize] { &nodes[n.inputs[k]].shape };
        match &n.op {
            Op::Input => inputs.push(value_info(name, &n.shape)),
            Op::Const(t) => ex.push_f32(name, t),
            Op::Conv(c) => {
                let w = ex.init_f32(&format!("{name}::weight"), &c.weight);
                let mut ins = vec![x()[0].clone(), w];
                if let Some(b) = &c.bias {
                    ins.push(ex.init_f32(&format!("{name}::bias"), b));
                }
                let out = ex.with_act(name, c.act);
                let attrs = vec![
                    attr_ints("kernel_shape", &c.kernel()),
                    attr_ints("strides", &c.stride),
                    attr_ints("pads", &c.pads),
                    attr_ints("dilations", &c.dilation),
                    attr_i("group", c.groups as i64),
                ];
                ex.node("Conv", &out, ins, &out, attrs);
                if c.act != Activation::Identity {
                    ex.act(c.act, &out, name);
                }
            }
            Op::Dense(d) => {
                let out = ex.with_act(name, d.act);
                if in_shape(0).len() == 2 {
                    let w = ex.init_f32(&format!("{name}::weight"), &d.weight);
                    let mut ins = vec![x()[0].clone(), w];
                    if let Some(b) = &d.bias {
                        ins.push(ex.init_f32(&format!("{name}::bias"), b));
                    }
                    ex.node("Gemm", &out, ins, &out, vec![attr_i("transB", 1)]);
                } else {
                    let wt = transpose2(&d.weight);
                    let w = ex.init_f32(&format!("{name}::weight_t"), &wt);
                    match &d.bias {
                        None => ex.node("MatMul", &out, vec![x()[0].clone(), w], &out, vec![]),
                        Some(b) => {
                            let mm = ex.fresh(&format!("{name}::matmul"));
                            ex.node("MatMul", &mm, vec![x()[0].clone(), w], &mm, vec![]);
                            let b = ex.init_f32(&format!("{name}::bias"), b);
                            ex.node("Add", &out, vec![mm, b], &out, vec![]);
                        }
                    }
                }
                if d.act != Activation::Identity {
                    ex.act(d.act, &out, name);
                }
            }
            Op::MaxPool(p) | Op::AveragePool(p) => {
                let max = matches!(n.op, Op::MaxPool(_));
                let mut attrs = vec![attr_ints("kernel_shape", &p.kernel), attr_ints("strides", &p.stride), attr_ints("pads", &p.pads)];
                if p.dilation != [1, 1] {
                    attrs.push(attr_ints("dilations", &p.dilation));
                    if !max {
                        opset = opset.max(19);
                    }
                }
                if p.ceil_mode {
                    attrs.push(attr_i("ceil_mode", 1));
                }
                if !max && p.count_include_pad {
                    attrs.push(attr_i("count_include_pad", 1));
                }
                ex.node(if max { "MaxPool" } else { "AveragePool" }, name, x(), name, attrs);
            }
            Op::GlobalAveragePool => ex.node("GlobalAveragePool", name, x(), name, vec![]),
            Op::GlobalMaxPool => ex.node("GlobalMaxPool", name, x(), name, vec![]),
            Op::Act(a) => ex.act(*a, &x()[0], name),
            Op::Binary(_) => ex.node(n.op.name(), name, x(), name, vec![]),
            Op::BatchNorm(b) => {
                let mut ins = vec![x()[0].clone()];
                for (t, what) in [(&b.scale, "scale"), (&b.bias, "bias"), (&b.mean, "mean"), (&b.var, "var")] {
                    ins.push(ex.init_f32(&format!("{name}::{what}"), t));
                }
                ex.node("BatchNormalization", name, ins, name, vec![attr_f("epsilon", b.eps)]);
            }
            Op::Concat { axis } => ex.node("Concat", name, x(), name, vec![attr_i("axis", *axis as i64)]),
            Op::Flatten { axis } => ex.node("Flatten", name, x(), name, vec![attr_i("axis", *axis as i64)]),
            Op::Reshape { shape } => {
                let s = ex.init_i64(&format!("{name}::shape"), &shape.iter().map(|&d| d as i64).collect::<Vec<_>>());
                ex.node("Reshape", name, vec![x()[0].clone(), s], name, vec![]);
            }
            Op::Transpose { perm } => ex.node("Transpose", name, x(), name, vec![attr_ints("perm", perm)]),
            Op::Softmax { axis, flatten } => {
                let r = n.shape.len();
                if *flatten && axis + 1 < r {
                    let f = ex.fresh(&format!("{name}::flat"));
                    ex.node("Flatten", &f, x(), &f, vec![attr_i("axis", *axis as i64)]);
                    let s = ex.fresh(&format!("{name}::softmax"));
                    ex.node("Softmax", &s, vec![f], &s, vec![attr_i("axis", 1)]);
                    let shape = ex.init_i64(&format!("{name}::shape"), &n.shape.iter().map(|&d| d as i64).collect::<Vec<_>>());
                    ex.node("Reshape", name, vec![s, shape], name, vec![]);
                } else {
                    ex.node("Softmax", name, x(), name, vec![attr_i("axis", *axis as i64)]);
                }
            }
            Op::Pad { begin, end, mode } => {
                let pads: Vec<i64> = begin.iter().chain(end).map(|&p| p as i64).collect();
                let p = ex.init_i64(&format!("{name}::pads"), &pads);
                let (m, ins) = match mode {
                    PadMode::Constant(v) => {
                        let c = ex.init_f32(&format!("{name}::value"), &Tensor::scalar(*v));
                        ("constant", vec![x()[0].clone(), p, c])
                    }
                    PadMode::Reflect => ("reflect", vec![x()[0].clone(), p]),
                    PadMode::Edge => ("edge", vec![x()[0].clone(), p]),
                };
                ex.node("Pad", name, ins, name, vec![attr_s("mode", m)]);
            }
            Op::Slice { starts, ends } => {
                let r = starts.len();
                let s = ex.init_i64(&format!("{name}::starts"), &starts.iter().map(|&v| v as i64).collect::<Vec<_>>());
                let e = ex.init_i64(&format!("{name}::ends"), &ends.iter().map(|&v| v as i64).collect::<Vec<_>>());
                let a = ex.init_i64(&format!("{name}::axes"), &(0..r as i64).collect::<Vec<_>>());
                ex.node("Slice", name, vec![x()[0].clone(), s, e, a], name, vec![]);
            }
            Op::Resize(r) => {
                let inp = in_shape(0);
                // Scales reproduce both the output size and the coordinate
                // mapping when floor(in * scale) == out; else give sizes.
                let exact = inp.iter().zip(&r.out_shape).zip(&r.scales).all(|((&i, &o), &s)| (i as f32 * s).floor() == o as f32);
                let ins = if exact {
                    let s = ex.init_f32(&format!("{name}::scales"), &Tensor::new(vec![r.scales.len()], r.scales.clone()).expect("1-D"));
                    vec![x()[0].clone(), String::new(), s]
                } else {
                    let z = ex.init_i64(&format!("{name}::sizes"), &r.out_shape.iter().map(|&d| d as i64).collect::<Vec<_>>());
                    vec![x()[0].clone(), String::new(), String::new(), z]
                };
                let coord = match r.coord {
                    CoordMode::HalfPixel => "half_pixel",
                    CoordMode::PytorchHalfPixel => "pytorch_half_pixel",
                    CoordMode::AlignCorners => "align_corners",
                    CoordMode::Asymmetric => "asymmetric",
                    CoordMode::TfHalfPixelForNearest => "tf_half_pixel_for_nearest",
                };
                let nearest = match r.nearest {
                    NearestMode::RoundPreferFloor => "round_prefer_floor",
                    NearestMode::RoundPreferCeil => "round_prefer_ceil",
                    NearestMode::Floor => "floor",
                    NearestMode::Ceil => "ceil",
                };
                let attrs = vec![attr_s("mode", "nearest"), attr_s("coordinate_transformation_mode", coord), attr_s("nearest_mode", nearest)];
                ex.node("Resize", name, ins, name, attrs);
            }
            Op::Lrn(l) => {
                let attrs = vec![attr_i("size", l.size as i64), attr_f("alpha", l.alpha), attr_f("beta", l.beta), attr_f("bias", l.bias)];
                ex.node("LRN", name, x(), name, attrs);
            }
            Op::SpaceToDepth { block } => ex.node("SpaceToDepth", name, x(), name, vec![attr_i("blocksize", *block as i64)]),
            Op::DepthToSpace { block, crd } => {
                let attrs = vec![attr_i("blocksize", *block as i64), attr_s("mode", if *crd { "CRD" } else { "DCR" })];
                ex.node("DepthToSpace", name, x(), name, attrs);
            }
        }
    }

    let mut outputs = Vec::new();
    let mut seen = HashSet::new();
    for &o in graph.outputs() {
        let n = &nodes[o];
        // ONNX outputs must be node outputs, each listed once.
        let name = if matches!(n.op, Op::Input | Op::Const(_)) || !seen.insert(o) {
            let alias = ex.fresh(&format!("{}::out", n.name));
            ex.node("Identity", &alias, vec![n.name.clone()], &alias, vec![]);
            alias
        } else {
            n.name.clone()
        };
        outputs.push(value_info(&name, &n.shape));
    }

    let model = ModelProto {
        ir_version: Some(if opset >= 19 { 9 } else { 7 }),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        producer_name: Some("tessera".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(GraphProto {
            name: Some(if graph.name.is_empty() { "tessera".into() } else { graph.name.clone() }),
            node: ex.nodes,
            initializer: ex.inits,
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}
