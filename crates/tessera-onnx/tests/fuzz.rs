//! The importer never panics, whatever the bytes: seeded property tests over
//! truncated, bit-flipped, byte-mutated and spliced versions of valid models,
//! and over structurally mutated models (attribute values, dims, data types,
//! op types, wiring and opsets changed at random, then re-encoded).

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use common::*;
use prost::Message;
use tessera_graph::op::{BatchNorm, Lrn, PadMode, Resize};
use tessera_graph::rng::Rng;
use tessera_graph::{zoo, Activation, BinaryOp, Conv, Dense, Graph, Op, Pool, Tensor};
use tessera_onnx::proto::ModelProto;
use tessera_onnx::{export, import, import_with, ImportOptions};

fn t(rng: &mut Rng, shape: &[usize]) -> Arc<Tensor> {
    let n = shape.iter().product();
    Arc::new(Tensor::new(shape.to_vec(), rng.fill(n, 1.0)).unwrap())
}

/// A small graph with one of nearly every IR op, exported.
fn mixed_graph() -> Graph {
    let mut r = Rng::new(7);
    let mut g = Graph::new("mixed");
    let x = g.input("x", &[1, 4, 8, 8]).unwrap();
    let conv = Conv { weight: t(&mut r, &[8, 2, 3, 3]), bias: Some(t(&mut r, &[8])), stride: [1, 1], pads: [1, 0, 1, 2], dilation: [1, 1], groups: 2, act: Activation::HardSwish };
    let c = g.add("conv", Op::Conv(conv), &[x]).unwrap();
    let bn = BatchNorm { scale: t(&mut r, &[8]), bias: t(&mut r, &[8]), mean: t(&mut r, &[8]), var: Arc::new(Tensor::full(&[8], 1.0)), eps: 1e-5 };
    let b = g.add("bn", Op::BatchNorm(bn), &[c]).unwrap();
    let l = g.add("lrn", Op::Lrn(Lrn { size: 3, alpha: 1e-3, beta: 0.75, bias: 1.0 }), &[b]).unwrap();
    let p = g.add("pool", Op::AveragePool(Pool { kernel: [3, 3], stride: [2, 2], pads: [1, 1, 1, 1], dilation: [1, 1], ceil_mode: true, count_include_pad: true }), &[l]).unwrap();
    let pd = g.add("pad", Op::Pad { begin: vec![0, 0, 1, 0], end: vec![0, 0, 0, 1], mode: PadMode::Reflect }, &[p]).unwrap();
    let s2d = g.add("s2d", Op::SpaceToDepth { block: 2 }, &[pd]).unwrap();
    let d2s = g.add("d2s", Op::DepthToSpace { block: 2, crd: true }, &[s2d]).unwrap();
    let up = g.add("up", Op::Resize(Resize::upsample(&[1, 8, 6, 6], 2)), &[d2s]).unwrap();
    let sl = g.add("slice", Op::Slice { starts: vec![0, 0, 1, 0], ends: vec![1, 8, 9, 8] }, &[up]).unwrap();
    let slope = g.add("slope", Op::Const(t(&mut r, &[8, 1, 1])), &[]).unwrap();
    let pr = g.add("prelu", Op::Binary(BinaryOp::PRelu), &[sl, slope]).unwrap();
    let gm = g.add("gmax", Op::GlobalMaxPool, &[pr]).unwrap();
    let ga = g.add("gavg", Op::GlobalAveragePool, &[pr]).unwrap();
    let cat = g.add("cat", Op::Concat { axis: 1 }, &[gm, ga]).unwrap();
    let rs = g.add("reshape", Op::Reshape { shape: vec![1, 2, 8] }, &[cat]).unwrap();
    let tr = g.add("transpose", Op::Transpose { perm: vec![0, 2, 1] }, &[rs]).unwrap();
    let d = Dense { weight: t(&mut r, &[5, 2]), bias: Some(t(&mut r, &[5])), act: Activation::LeakyRelu { alpha: 0.1 } };
    let dn = g.add("dense3d", Op::Dense(d), &[tr]).unwrap();
    let sm = g.add("softmax", Op::Softmax { axis: 1, flatten: true }, &[dn]).unwrap();
    let fl = g.add("flatten", Op::Flatten { axis: 1 }, &[sm]).unwrap();
    let d2 = Dense { weight: t(&mut r, &[3, 40]), bias: None, act: Activation::Clip { min: 0.0, max: 6.0 } };
    let y = g.add("fc", Op::Dense(d2), &[fl]).unwrap();
    let mx = g.add("max", Op::Binary(BinaryOp::Max), &[y, y]).unwrap();
    g.set_outputs(&[mx, x]).unwrap();
    g
}

/// Opset-6 legacy forms (attribute pads, broadcast flags, is_test).
fn legacy_model() -> ModelProto {
    let nodes = vec![
        node("Pad", &["x"], &["p"], vec![ais("pads", &[0, 0, 1, 1, 0, 0, 1, 1]), as_("mode", "edge")]),
        node("BatchNormalization", &["p", "s", "b", "m", "v"], &["bn"], vec![ai("is_test", 1), af("epsilon", 1e-3)]),
        node("PRelu", &["bn", "slope"], &["pr"], vec![]),
        node("Add", &["pr", "bias"], &["a"], vec![ai("broadcast", 1), ai("axis", 1)]),
        node("Upsample", &["a"], &["u"], vec![afs("scales", &[1.0, 1.0, 2.0, 2.0])]),
        node("Squeeze", &["u"], &["sq"], vec![ais("axes", &[0])]),
        node("Unsqueeze", &["sq"], &["us"], vec![ais("axes", &[0])]),
        node("Slice", &["us"], &["sl"], vec![ais("starts", &[1]), ais("ends", &[-1]), ais("axes", &[3])]),
        node("Softmax", &["sl"], &["y"], vec![ai("axis", 1)]),
    ];
    let inits = vec![
        tf("s", &[2], &[1.0, 0.5]),
        tf("b", &[2], &[0.0, 0.1]),
        tf("m", &[2], &[0.2, 0.0]),
        tf("v", &[2], &[1.0, 2.0]),
        tf("slope", &[2], &[0.1, 0.2]),
        tf("bias", &[2], &[1.0, -1.0]),
    ];
    model(6, vec![vi("x", &[1, 2, 3, 3])], nodes, inits, &["y"])
}

/// Constant folding of everything a shape sub-graph may contain.
fn folding_model() -> ModelProto {
    let nodes = vec![
        node("Shape", &["x"], &["shp"], vec![ai("start", 1)]),
        node("ConstantOfShape", &["shp"], &["ones"], vec![at("value", tf("", &[1], &[1.0]))]),
        node("Range", &["r0", "r1", "r2"], &["rng"], vec![]),
        node("Equal", &["rng", "two"], &["eq"], vec![]),
        node("Where", &["eq", "rng", "two"], &["wh"], vec![]),
        node("Cast", &["wh"], &["whf"], vec![ai("to", 1)]),
        node("ReduceSum", &["whf", "ax0"], &["rs"], vec![ai("keepdims", 1)]),
        node("Tile", &["rs", "reps"], &["tl"], vec![]),
        node("Size", &["x"], &["sz"], vec![]),
        node("Cast", &["sz"], &["szf"], vec![ai("to", 1)]),
        node("Div", &["tl", "szf"], &["k"], vec![]),
        node("Mul", &["x", "k"], &["xk"], vec![]),
        node("Mul", &["xk", "ones"], &["xo"], vec![]),
        node("Split", &["xo"], &["a", "b"], vec![ai("axis", 2)]),
        node("Sum", &["a", "b", "a"], &["s"], vec![]),
        node("Mean", &["s", "b"], &["mn"], vec![]),
        node("ReduceMean", &["mn"], &["gap"], vec![ais("axes", &[2, 3]), ai("keepdims", 0)]),
        node("Neg", &["gap"], &["ng"], vec![]),
        node("Reciprocal", &["ng"], &["rc"], vec![]),
        node("Pow", &["rc", "two_f"], &["y"], vec![]),
    ];
    let inits = vec![
        ti("r0", &[], &[0]),
        ti("r1", &[], &[4]),
        ti("r2", &[], &[1]),
        ti("two", &[], &[2]),
        ti("ax0", &[1], &[0]),
        ti("reps", &[1], &[4]),
        tf("two_f", &[], &[2.0]),
    ];
    model(13, vec![vi("x", &[1, 3, 4, 4])], nodes, inits, &["y"])
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let lenet = zoo::build("lenet").unwrap();
    vec![
        ("pytorch_style", bytes(&pytorch_style())),
        ("mixed", export(&mixed_graph())),
        ("legacy", bytes(&legacy_model())),
        ("folding", bytes(&folding_model())),
        ("lenet", export(&lenet)),
    ]
}

#[test]
fn seeds_are_valid() {
    for (name, b) in seeds() {
        let g = import(&b).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!g.is_empty());
    }
    let g = mixed_graph();
    let back = import(&export(&g)).unwrap();
    assert_eq!(back.output_shape(), g.output_shape());
}

/// Iteration multiplier: `TESSERA_FUZZ_SCALE=50` for a long campaign.
fn scale() -> usize {
    std::env::var("TESSERA_FUZZ_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1)
}

fn check(label: &str, bytes: &[u8], opts: Option<&ImportOptions>) {
    let r = catch_unwind(AssertUnwindSafe(|| match opts {
        None => import(bytes).map(|_| ()),
        Some(o) => import_with(bytes, o).map(|_| ()),
    }));
    if r.is_err() {
        let path = std::env::temp_dir().join("tessera-onnx-fuzz-crash.onnx");
        let _ = std::fs::write(&path, bytes);
        panic!("import panicked on {label} (input saved to {})", path.display());
    }
}

#[test]
fn byte_mutations_never_panic() {
    let mut rng = Rng::new(0x5eed);
    let mut runs = 0;
    let mut ok = 0;
    for (name, seed) in seeds() {
        let iters = scale() * if name == "lenet" { 500 } else { 2500 };
        for it in 0..iters {
            let mut b = seed.clone();
            let kind = rng.range(0, 5);
            match kind {
                0 => b.truncate(rng.range(0, b.len())),
                1 => {
                    for _ in 0..rng.range(1, 8) {
                        let i = rng.range(0, b.len() - 1);
                        b[i] ^= 1 << rng.range(0, 7);
                    }
                }
                2 => {
                    for _ in 0..rng.range(1, 16) {
                        let i = rng.range(0, b.len() - 1);
                        b[i] = [0x00, 0xff, 0x7f, 0x80, rng.next_u64() as u8][rng.range(0, 4)];
                    }
                }
                3 => {
                    let i = rng.range(0, b.len());
                    let n = rng.range(1, 16);
                    let ins: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                    b.splice(i..i, ins);
                }
                4 => {
                    let i = rng.range(0, b.len() - 1);
                    let j = rng.range(i, (i + 64).min(b.len()));
                    b.drain(i..j);
                }
                _ => {
                    // Splice a chunk of the model into another place (repeats fields).
                    let i = rng.range(0, b.len() - 1);
                    let j = rng.range(i, (i + 256).min(b.len()));
                    let chunk = b[i..j].to_vec();
                    let at = rng.range(0, b.len());
                    b.splice(at..at, chunk);
                }
            }
            check(&format!("{name} byte mutation {kind} #{it}"), &b, None);
            if import(&b).is_ok() {
                ok += 1;
            }
            runs += 1;
        }
    }
    eprintln!("{ok} of {runs} byte-mutated models imported");
    assert!(runs > 5000);
}

const OPS: &[&str] = &[
    "Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "Gemm", "MatMul", "Relu", "Clip", "PRelu", "Add", "Sum", "Max", "BatchNormalization",
    "Concat", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Softmax", "Pad", "Resize", "Upsample", "LRN", "SpaceToDepth",
    "DepthToSpace", "Slice", "Gather", "Split", "Shape", "Size", "Cast", "ConstantOfShape", "Range", "Expand", "Tile", "Where", "Equal",
    "ReduceMean", "ReduceSum", "ReduceMin", "ReduceSumSquare", "Neg", "Pow", "Identity", "Dropout", "Constant", "Mod", "Div",
];

fn interesting_int(rng: &mut Rng) -> i64 {
    match rng.range(0, 9) {
        0 => 0,
        1 => -1,
        2 => 1,
        3 => i64::MAX,
        4 => i64::MIN,
        5 => 1 << 31,
        6 => -(1 << 40),
        7 => 1 << 40,
        _ => rng.range(0, 12) as i64 - 4,
    }
}

fn interesting_f32(rng: &mut Rng) -> f32 {
    [0.0, -1.0, f32::NAN, f32::INFINITY, -f32::INFINITY, 1e30, 1e-30, 0.5, 3.0][rng.range(0, 8)]
}

/// One random structural change to a decoded model.
fn mutate(m: &mut ModelProto, rng: &mut Rng) {
    let g = m.graph.as_mut().unwrap();
    let names: Vec<String> = g.node.iter().flat_map(|n| n.output.clone()).chain(g.initializer.iter().filter_map(|t| t.name.clone())).collect();
    match rng.range(0, 9) {
        0 | 1 if !g.node.is_empty() => {
            let k = rng.range(0, g.node.len() - 1);
            let n = &mut g.node[k];
            if n.attribute.is_empty() {
                n.attribute.push(ai(["axis", "group", "to", "blocksize", "keepdims", "size"][rng.range(0, 5)], interesting_int(rng)));
            } else {
                let a = rng.range(0, n.attribute.len() - 1);
                let at = &mut n.attribute[a];
                match rng.range(0, 4) {
                    0 => at.i = Some(interesting_int(rng)),
                    1 => at.f = Some(interesting_f32(rng)),
                    2 => {
                        let len = rng.range(0, 9);
                        at.ints = (0..len).map(|_| interesting_int(rng)).collect();
                    }
                    3 => at.r#type = Some(rng.range(0, 14) as i32),
                    _ => at.s = Some([b"SAME_UPPER".as_slice(), b"reflect", b"CRD", b"linear", b"", b"\xff"][rng.range(0, 5)].to_vec().into()),
                }
            }
        }
        2 if !g.node.is_empty() => {
            let k = rng.range(0, g.node.len() - 1);
            g.node[k].op_type = Some(OPS[rng.range(0, OPS.len() - 1)].to_string());
        }
        3 if !g.node.is_empty() => {
            let k = rng.range(0, g.node.len() - 1);
            let n = &mut g.node[k];
            match rng.range(0, 2) {
                0 if !n.input.is_empty() => {
                    let i = rng.range(0, n.input.len() - 1);
                    n.input[i] = if rng.range(0, 3) == 0 { String::new() } else { names[rng.range(0, names.len() - 1)].clone() };
                }
                1 => n.input.push(names[rng.range(0, names.len() - 1)].clone()),
                _ => {
                    n.output.push(format!("extra{}", rng.range(0, 3)));
                }
            }
        }
        4 | 5 if !g.initializer.is_empty() => {
            let k = rng.range(0, g.initializer.len() - 1);
            let t = &mut g.initializer[k];
            match rng.range(0, 3) {
                0 => {
                    if let Some(d) = t.dims.first_mut() {
                        *d = interesting_int(rng);
                    } else {
                        t.dims.push(interesting_int(rng));
                    }
                }
                1 => t.data_type = Some(rng.range(0, 25) as i32),
                2 => {
                    t.float_data.clear();
                    t.int64_data.truncate(t.int64_data.len() / 2);
                }
                _ => t.dims.push(rng.range(0, 3) as i64),
            }
        }
        6 => {
            use tessera_onnx::proto::tensor_shape_proto::dimension::Value;
            use tessera_onnx::proto::type_proto::Value as T;
            if let Some(T::TensorType(tt)) = g.input[0].r#type.as_mut().and_then(|t| t.value.as_mut())
                && let Some(s) = tt.shape.as_mut()
            {
                if rng.range(0, 4) == 0 {
                    s.dim.pop();
                } else if !s.dim.is_empty() {
                    let i = rng.range(0, s.dim.len() - 1);
                    s.dim[i].value = Some(Value::DimValue(interesting_int(rng)));
                }
            }
        }
        7 => m.opset_import[0].version = Some(rng.range(1, 30) as i64),
        _ => {
            if !g.node.is_empty() {
                let i = rng.range(0, g.node.len() - 1);
                let j = rng.range(0, g.node.len() - 1);
                g.node.swap(i, j);
            }
        }
    }
}

#[test]
fn structural_mutations_never_panic() {
    let mut rng = Rng::new(0xf00d);
    // A modest element cap keeps folded constants small while fuzzing.
    let opts = ImportOptions { max_elements: 1 << 22, ..Default::default() };
    let mut ok = 0;
    let mut runs = 0;
    for (name, seed) in seeds() {
        if name == "lenet" {
            continue;
        }
        let model = ModelProto::decode(seed.as_slice()).unwrap();
        for it in 0..2500 * scale() {
            let mut m = model.clone();
            for _ in 0..rng.range(1, 4) {
                mutate(&mut m, &mut rng);
            }
            let b = m.encode_to_vec();
            check(&format!("{name} structural mutation #{it}"), &b, Some(&opts));
            if import_with(&b, &opts).is_ok() {
                ok += 1;
            }
            runs += 1;
        }
    }
    // Some mutations must leave a valid model, or this tests only decoding.
    eprintln!("{ok} of {runs} structurally mutated models imported");
    assert!(ok > runs / 20, "{ok} of {runs} mutated models imported");
}

