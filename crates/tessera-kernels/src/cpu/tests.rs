//! The CPU backend against naive reference implementations written plainly
//! here (f64 accumulation, index arithmetic straight from the ONNX
//! definitions), over many random configurations from a seeded generator,
//! on every SIMD path this machine has and with one and two threads.

use std::sync::Arc;

use tessera_graph::op::{window_out, CoordMode, Lrn, NearestMode, PadMode, Resize};
use tessera_graph::rng::Rng;
use tessera_graph::tensor::strides;
use tessera_graph::{passes, zoo, Activation, BinaryOp, Conv, Dense, Graph, GraphError, Op, Pool, Tensor};

use super::*;
use super::conv::ConvPath;

// ---------- helpers ----------

fn rand_tensor(rng: &mut Rng, shape: &[usize]) -> Tensor {
    Tensor::new(shape.to_vec(), rng.fill(numel(shape), 1.0)).unwrap()
}

fn arc(t: Tensor) -> Arc<Tensor> {
    Arc::new(t)
}

/// One-node graph over fresh inputs of `shapes`; `None` if shape inference rejects it.
fn single(op: Op, shapes: &[&[usize]]) -> Option<Graph> {
    let mut g = Graph::new("t");
    let ids: Vec<NodeId> = shapes.iter().enumerate().map(|(i, s)| g.input(format!("x{i}"), s).unwrap()).collect();
    let y = g.add("y", op, &ids).ok()?;
    g.set_outputs(&[y]).unwrap();
    Some(g)
}

/// Every SIMD path with one thread, plus the best path with two.
fn backends() -> Vec<CpuBackend> {
    let mut v: Vec<CpuBackend> = Isa::all_available().into_iter().map(|i| CpuBackend::with_isa(1, i).unwrap()).collect();
    v.push(CpuBackend::with_isa(2, Isa::detect()).unwrap());
    v
}

/// The best path with one and two threads (ops whose code is ISA-independent).
fn quick_backends() -> Vec<CpuBackend> {
    vec![CpuBackend::with_isa(1, Isa::detect()).unwrap(), CpuBackend::with_isa(2, Isa::detect()).unwrap()]
}

fn run1(be: &CpuBackend, g: &Graph, inputs: &[Tensor]) -> Tensor {
    let mut exe = be.compile(g).unwrap_or_else(|e| panic!("{}: compile: {e}", be.name()));
    let mut out = exe.run(inputs).unwrap_or_else(|e| panic!("{}: run: {e}", be.name()));
    out.remove(0)
}

fn check(bes: &[CpuBackend], g: &Graph, inputs: &[Tensor], want: &Tensor, tol: f32, what: &str) {
    for be in bes {
        let got = run1(be, g, inputs);
        let d = got.max_rel_diff(want);
        assert!(d <= tol, "{what} on {}: rel diff {d} (shape {:?} vs {:?})", be.name(), got.shape(), want.shape());
    }
}

/// Like `check`, but each element may be off by `tol` relative to the
/// magnitude of its computation (`mag`, e.g. `Σ|x·w|`) rather than to its
/// value: the error of any f32 sum is proportional to the former, and an
/// indexing bug is off by the order of the terms themselves.
fn check_mag(bes: &[CpuBackend], g: &Graph, inputs: &[Tensor], want: &Tensor, mag: &Tensor, tol: f32, what: &str) {
    for be in bes {
        let got = run1(be, g, inputs);
        assert_eq!(got.shape(), want.shape(), "{what} on {}", be.name());
        for (i, ((a, b), m)) in got.data().iter().zip(want.data()).zip(mag.data()).enumerate() {
            let ok = (a - b).abs() <= tol * b.abs().max(*m).max(1e-30) || (a.is_nan() && b.is_nan());
            assert!(ok, "{what} on {}: element {i}: got {a}, want {b} (magnitude {m})", be.name());
        }
    }
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(strides(shape)).map(|(i, s)| i * s).sum()
}

const ACTS: [Activation; 8] = [
    Activation::Identity,
    Activation::Relu,
    Activation::LeakyRelu { alpha: 0.1 },
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::Clip { min: 0.0, max: 0.3 },
    Activation::HardSigmoid { alpha: 0.2, beta: 0.5 },
    Activation::HardSwish,
];

// ---------- naive references ----------

/// The convolution and, per output, the magnitude `|bias| + Σ|x·w|` that
/// bounds its f32 rounding error.
fn conv_ref_mag(x: &Tensor, c: &Conv) -> (Tensor, Tensor) {
    let [n, ci, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    let [kh, kw] = c.kernel();
    let oc = c.out_channels();
    let (icg, ocg) = (ci / c.groups, oc / c.groups);
    let oh = window_out(h, c.pads[0], c.pads[2], kh, c.stride[0], c.dilation[0], false).unwrap();
    let ow = window_out(w, c.pads[1], c.pads[3], kw, c.stride[1], c.dilation[1], false).unwrap();
    let mut y = Tensor::zeros(&[n, oc, oh, ow]);
    let mut mag = Tensor::zeros(&[n, oc, oh, ow]);
    let (xd, wd) = (x.data(), c.weight.data());
    for b in 0..n {
        for o in 0..oc {
            let g = o / ocg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = c.bias.as_ref().map_or(0.0, |bb| bb.data()[o] as f64);
                    let mut m = s.abs();
                    for i in 0..icg {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * c.stride[0] + ky * c.dilation[0]) as isize - c.pads[0] as isize;
                                let ix = (ox * c.stride[1] + kx * c.dilation[1]) as isize - c.pads[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xv = xd[((b * ci + g * icg + i) * h + iy as usize) * w + ix as usize];
                                let wv = wd[((o * icg + i) * kh + ky) * kw + kx];
                                s += xv as f64 * wv as f64;
                                m += (xv as f64 * wv as f64).abs();
                            }
                        }
                    }
                    y.data_mut()[((b * oc + o) * oh + oy) * ow + ox] = c.act.apply(s as f32);
                    mag.data_mut()[((b * oc + o) * oh + oy) * ow + ox] = m as f32;
                }
            }
        }
    }
    (y, mag)
}

fn conv_ref(x: &Tensor, c: &Conv) -> Tensor {
    conv_ref_mag(x, c).0
}

fn dense_ref_mag(x: &Tensor, d: &Dense) -> (Tensor, Tensor) {
    let (i_f, o_f) = (d.in_features(), d.out_features());
    let rows = x.numel() / i_f;
    let mut shape = x.shape().to_vec();
    *shape.last_mut().unwrap() = o_f;
    let mut y = Tensor::zeros(&shape);
    let mut mag = Tensor::zeros(&shape);
    for r in 0..rows {
        for o in 0..o_f {
            let mut s = d.bias.as_ref().map_or(0.0, |b| b.data()[o] as f64);
            let mut m = s.abs();
            for i in 0..i_f {
                let t = x.data()[r * i_f + i] as f64 * d.weight.data()[o * i_f + i] as f64;
                s += t;
                m += t.abs();
            }
            y.data_mut()[r * o_f + o] = d.act.apply(s as f32);
            mag.data_mut()[r * o_f + o] = m as f32;
        }
    }
    (y, mag)
}

fn dense_ref(x: &Tensor, d: &Dense) -> Tensor {
    dense_ref_mag(x, d).0
}

/// Pooling as onnxruntime computes it (checked against ORT 1.32 on random
/// configurations): max over taps inside the input (lowest f32 if none);
/// average over taps inside the input, divided by that count or, with
/// `count_include_pad`, by the taps inside input + padding.
fn pool_ref(x: &Tensor, p: &Pool, max: bool) -> Tensor {
    let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    let oh = window_out(h, p.pads[0], p.pads[2], p.kernel[0], p.stride[0], p.dilation[0], p.ceil_mode).unwrap();
    let ow = window_out(w, p.pads[1], p.pads[3], p.kernel[1], p.stride[1], p.dilation[1], p.ceil_mode).unwrap();
    let mut y = Tensor::zeros(&[n, c, oh, ow]);
    for pl in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut best, mut sum, mut valid, mut ny, mut nx) = (f32::MIN, 0.0f64, 0usize, 0usize, 0usize);
                for ky in 0..p.kernel[0] {
                    let iy = (oy * p.stride[0] + ky * p.dilation[0]) as isize - p.pads[0] as isize;
                    if iy < (h + p.pads[2]) as isize {
                        ny += 1;
                    }
                }
                for kx in 0..p.kernel[1] {
                    let ix = (ox * p.stride[1] + kx * p.dilation[1]) as isize - p.pads[1] as isize;
                    if ix < (w + p.pads[3]) as isize {
                        nx += 1;
                    }
                }
                for ky in 0..p.kernel[0] {
                    for kx in 0..p.kernel[1] {
                        let iy = (oy * p.stride[0] + ky * p.dilation[0]) as isize - p.pads[0] as isize;
                        let ix = (ox * p.stride[1] + kx * p.dilation[1]) as isize - p.pads[1] as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let v = x.data()[(pl * h + iy as usize) * w + ix as usize];
                        best = best.max(v);
                        sum += v as f64;
                        valid += 1;
                    }
                }
                let out = if max {
                    best
                } else {
                    let count = if p.count_include_pad { ny * nx } else { valid };
                    (sum / count as f64) as f32
                };
                y.data_mut()[(pl * oh + oy) * ow + ox] = out;
            }
        }
    }
    y
}

fn binary_ref(a: &Tensor, b: &Tensor, op: BinaryOp) -> Tensor {
    let out = tessera_graph::op::broadcast(a.shape(), b.shape()).unwrap();
    let rank = out.len();
    let mut y = Tensor::zeros(&out);
    for i in 0..y.numel() {
        let idx = unravel(i, &out);
        let pick = |t: &Tensor| -> f32 {
            let s = t.shape();
            let off = rank - s.len();
            let j: Vec<usize> = (0..s.len()).map(|d| if s[d] == 1 { 0 } else { idx[d + off] }).collect();
            t.data()[ravel(&j, s)]
        };
        y.data_mut()[i] = op.apply(pick(a), pick(b));
    }
    y
}

fn softmax_ref(x: &Tensor, axis: usize, flatten: bool) -> Tensor {
    let s = x.shape();
    let mut y = x.clone();
    let outer: usize = s[..axis].iter().product();
    let (len, inner) = if flatten { (s[axis..].iter().product(), 1) } else { (s[axis], s[axis + 1..].iter().product::<usize>()) };
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * len + k) * inner + i;
            let m = (0..len).map(|k| x.data()[at(k)]).fold(f32::NEG_INFINITY, f32::max);
            let z: f64 = (0..len).map(|k| ((x.data()[at(k)] - m) as f64).exp()).sum();
            for k in 0..len {
                y.data_mut()[at(k)] = (((x.data()[at(k)] - m) as f64).exp() / z) as f32;
            }
        }
    }
    y
}

fn lrn_ref(x: &Tensor, l: &Lrn) -> Tensor {
    let s = x.shape();
    let (n, c, plane) = (s[0], s[1], s[2] * s[3]);
    let mut y = x.clone();
    // ONNX: [c - floor((size-1)/2), c + ceil((size-1)/2)].
    let lo = (l.size - 1) / 2;
    let hi_onnx = (l.size - 1).div_ceil(2);
    for b in 0..n {
        for ci in 0..c {
            for p in 0..plane {
                let mut sq = 0.0f64;
                for cj in ci.saturating_sub(lo)..=(ci + hi_onnx).min(c - 1) {
                    let v = x.data()[(b * c + cj) * plane + p] as f64;
                    sq += v * v;
                }
                let i = (b * c + ci) * plane + p;
                let d = (l.bias as f64 + l.alpha as f64 / l.size as f64 * sq).powf(l.beta as f64);
                y.data_mut()[i] = (x.data()[i] as f64 / d) as f32;
            }
        }
    }
    y
}

fn pad_ref(x: &Tensor, begin: &[usize], end: &[usize], mode: PadMode) -> Tensor {
    let s = x.shape();
    let out: Vec<usize> = (0..s.len()).map(|d| s[d] + begin[d] + end[d]).collect();
    let mut y = Tensor::zeros(&out);
    for i in 0..y.numel() {
        let idx = unravel(i, &out);
        let mut src = Vec::new();
        let mut inside = true;
        for d in 0..s.len() {
            let n = s[d] as isize;
            let mut j = idx[d] as isize - begin[d] as isize;
            if j < 0 || j >= n {
                match mode {
                    PadMode::Constant(_) => inside = false,
                    PadMode::Edge => j = j.clamp(0, n - 1),
                    PadMode::Reflect => j = if j < 0 { -j } else { 2 * (n - 1) - j },
                }
            }
            src.push(j.max(0) as usize);
        }
        y.data_mut()[i] = match (inside, mode) {
            (false, PadMode::Constant(v)) => v,
            _ => x.data()[ravel(&src, s)],
        };
    }
    y
}

fn resize_ref(x: &Tensor, r: &Resize) -> Tensor {
    let mut y = Tensor::zeros(&r.out_shape);
    for i in 0..y.numel() {
        let idx = unravel(i, &r.out_shape);
        let src: Vec<usize> = (0..idx.len()).map(|d| r.source_index(d, idx[d], x.shape()[d])).collect();
        y.data_mut()[i] = x.data()[ravel(&src, x.shape())];
    }
    y
}

fn transpose_ref(x: &Tensor, perm: &[usize]) -> Tensor {
    let out: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let mut y = Tensor::zeros(&out);
    for i in 0..y.numel() {
        let idx = unravel(i, &out);
        let mut src = vec![0; idx.len()];
        for (d, &p) in perm.iter().enumerate() {
            src[p] = idx[d];
        }
        y.data_mut()[i] = x.data()[ravel(&src, x.shape())];
    }
    y
}

fn s2d_ref(x: &Tensor, b: usize) -> Tensor {
    let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    let mut y = Tensor::zeros(&[n, c * b * b, h / b, w / b]);
    for i in 0..x.numel() {
        let [ni, ci, hi, wi] = <[usize; 4]>::try_from(unravel(i, x.shape())).unwrap();
        let oc = (hi % b * b + wi % b) * c + ci;
        let o = ravel(&[ni, oc, hi / b, wi / b], y.shape());
        y.data_mut()[o] = x.data()[i];
    }
    y
}

fn d2s_ref(x: &Tensor, b: usize, crd: bool) -> Tensor {
    let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    let oc = c / (b * b);
    let mut y = Tensor::zeros(&[n, oc, h * b, w * b]);
    for i in 0..x.numel() {
        let [ni, ci, hi, wi] = <[usize; 4]>::try_from(unravel(i, x.shape())).unwrap();
        let (co, by, bx) = if crd { (ci / (b * b), ci % (b * b) / b, ci % b) } else { (ci % oc, ci / oc / b, ci / oc % b) };
        let o = ravel(&[ni, co, hi * b + by, wi * b + bx], y.shape());
        y.data_mut()[o] = x.data()[i];
    }
    y
}

/// Whole-graph reference interpreter built from the naive kernels.
fn interpret(g: &Graph, inputs: &[Tensor]) -> Vec<Tensor> {
    let mut vals: Vec<Option<Tensor>> = vec![None; g.len()];
    for (id, n) in g.nodes().iter().enumerate() {
        let x = |k: usize| vals[n.inputs[k]].as_ref().unwrap();
        let y = match &n.op {
            Op::Input => inputs[g.inputs().iter().position(|&i| i == id).unwrap()].clone(),
            Op::Const(t) => (**t).clone(),
            Op::Conv(c) => conv_ref(x(0), c),
            Op::Dense(d) => dense_ref(x(0), d),
            Op::MaxPool(p) => pool_ref(x(0), p, true),
            Op::AveragePool(p) => pool_ref(x(0), p, false),
            Op::GlobalAveragePool | Op::GlobalMaxPool => {
                let s = x(0).shape();
                let len: usize = s[2..].iter().product();
                let data = x(0)
                    .data()
                    .chunks(len)
                    .map(|c| if matches!(n.op, Op::GlobalMaxPool) { c.iter().copied().fold(f32::MIN, f32::max) } else { (c.iter().map(|&v| v as f64).sum::<f64>() / len as f64) as f32 })
                    .collect();
                Tensor::new(n.shape.clone(), data).unwrap()
            }
            Op::Act(a) => Tensor::new(n.shape.clone(), x(0).data().iter().map(|&v| a.apply(v)).collect()).unwrap(),
            Op::Binary(b) => binary_ref(x(0), x(1), *b),
            Op::BatchNorm(bn) => {
                let s = x(0).shape();
                let inner: usize = s[2..].iter().product();
                let mut y = x(0).clone();
                for (i, v) in y.data_mut().iter_mut().enumerate() {
                    let c = i / inner % s[1];
                    let (m, var) = (bn.mean.data()[c] as f64, bn.var.data()[c] as f64);
                    *v = ((*v as f64 - m) / (var + bn.eps as f64).sqrt() * bn.scale.data()[c] as f64 + bn.bias.data()[c] as f64) as f32;
                }
                y
            }
            Op::Concat { axis } => Tensor::concat(&(0..n.inputs.len()).map(x).collect::<Vec<_>>(), *axis).unwrap(),
            Op::Flatten { .. } | Op::Reshape { .. } => x(0).clone().reshaped(n.shape.clone()).unwrap(),
            Op::Transpose { perm } => transpose_ref(x(0), perm),
            Op::Softmax { axis, flatten } => softmax_ref(x(0), *axis, *flatten),
            Op::Pad { begin, end, mode } => pad_ref(x(0), begin, end, *mode),
            Op::Slice { starts, ends } => {
                let mut t = x(0).clone();
                for d in 0..starts.len() {
                    t = t.slice_axis(d, starts[d], ends[d]).unwrap();
                }
                t
            }
            Op::Resize(r) => resize_ref(x(0), r),
            Op::Lrn(l) => lrn_ref(x(0), l),
            Op::SpaceToDepth { block } => s2d_ref(x(0), *block),
            Op::DepthToSpace { block, crd } => d2s_ref(x(0), *block, *crd),
        };
        assert_eq!(y.shape(), n.shape.as_slice(), "reference shape of {}", n.name);
        vals[id] = Some(y);
    }
    g.outputs().iter().map(|&o| vals[o].clone().unwrap()).collect()
}

// ---------- per-op property tests ----------

#[test]
fn conv_matches_reference_on_random_configs() {
    let bes = backends();
    let mut rng = Rng::new(11);
    let mut tested = 0;
    let mut strategies = std::collections::HashSet::new();
    while tested < 160 {
        let depthwise = rng.range(0, 3) == 0;
        let groups = if depthwise { rng.range(1, 6) } else { rng.range(1, 3) };
        let icg = if depthwise { 1 } else { rng.range(1, 7) };
        let ocg = if depthwise { rng.range(1, 2) } else { rng.range(1, 11) };
        let (kh, kw) = (rng.range(1, 4), rng.range(1, 4));
        let pointwise = rng.range(0, 5) == 0;
        let (kh, kw) = if pointwise { (1, 1) } else { (kh, kw) };
        let stride = if pointwise { [1, 1] } else { [rng.range(1, 3), rng.range(1, 3)] };
        let dilation = if pointwise { [1, 1] } else { [rng.range(1, 2), rng.range(1, 2)] };
        let pads = if pointwise { [0; 4] } else { [rng.range(0, kh - 1), rng.range(0, kw - 1), rng.range(0, kh), rng.range(0, kw)] };
        let (n, h, w) = (rng.range(1, 2), rng.range(1, 17), rng.range(1, 17));
        let (ci, oc) = (groups * icg, groups * ocg);
        let weight = rand_tensor(&mut rng, &[oc, icg, kh, kw]);
        let bias = (rng.range(0, 2) > 0).then(|| arc(rand_tensor(&mut rng, &[oc])));
        let act = ACTS[rng.range(0, ACTS.len() - 1)];
        let conv = Conv { weight: arc(weight), bias, stride, pads, dilation, groups, act };
        let Some(g) = single(Op::Conv(conv.clone()), &[&[n, ci, h, w]]) else { continue };
        let x = rand_tensor(&mut rng, &[n, ci, h, w]);
        let (want, mag) = conv_ref_mag(&x, &conv);
        check_mag(&bes, &g, std::slice::from_ref(&x), &want, &mag, 1e-4, &format!("conv {conv:?} on {:?}", x.shape()));
        let plan = ConvPlan::new(Isa::detect(), &conv, x.shape(), want.shape()).unwrap();
        // The depthwise loops have their own test below.
        strategies.insert(plan.strategy_name().trim_end_matches("-shared"));
        tested += 1;
    }
    assert_eq!(strategies.len(), 4, "every strategy exercised: {strategies:?}");
}

/// One random conv case: the graph `conv` on a random input of shape `x`,
/// followed, with `residual`, by `+ r` (a second random input) and that
/// activation (the executor fuses both into the conv); its inputs, and
/// the magnitude of the products behind every output (residual included).
/// `None` where the layer has no valid output.
fn conv_case(rng: &mut Rng, conv: &Conv, x: &[usize], residual: Option<Activation>) -> Option<(Graph, Vec<Tensor>, Tensor)> {
    let mut g = Graph::new("conv");
    let xi = g.input("x", x).unwrap();
    let c = g.add("c", Op::Conv(conv.clone()), &[xi]).ok()?;
    let yshape = g.node(c).shape.clone();
    let mut inputs = vec![rand_tensor(rng, x)];
    let (_, mut mag) = conv_ref_mag(&inputs[0], conv);
    if let Some(act) = residual {
        let r = g.input("r", &yshape).unwrap();
        let s = g.add("s", Op::Binary(BinaryOp::Add), &[c, r]).unwrap();
        let y = g.add("y", Op::Act(act), &[s]).unwrap();
        g.set_outputs(&[y]).unwrap();
        inputs.push(rand_tensor(rng, &yshape));
        mag = Tensor::new(yshape, mag.data().iter().zip(inputs[1].data()).map(|(m, r)| m + r.abs()).collect()).unwrap();
    } else {
        g.set_outputs(&[c]).unwrap();
    }
    Some((g, inputs, mag))
}

/// Winograd F(2x2, 3x3): random 3x3 stride-1 layers with enough channels
/// (odd, even and tiny planes, asymmetric padding 0-2, batches, bias,
/// activations, a fused residual, several blocks of tiles, blocks spread
/// over the threads whole) equal the reference
/// within 1e-4 of the magnitude of their products, on every ISA and with
/// two threads; and the plan is Winograd exactly when it should be.
#[test]
fn winograd_convs_match_the_reference() {
    let bes = backends();
    let mut rng = Rng::new(31);
    let mut used = 0;
    let mut forms = std::collections::HashSet::new();
    for case in 0..40 {
        let (ci, oc) = (rng.range(60, 80), rng.range(60, 80));
        // Mostly small planes; every 8th large enough for several blocks of
        // tiles, every 16th for enough blocks to go to the threads whole.
        let (h, w) = match case % 16 {
            15 => (rng.range(96, 110), rng.range(96, 110)),
            7 => (rng.range(40, 60), rng.range(40, 60)),
            _ => (rng.range(4, 24), rng.range(4, 24)),
        };
        let pads = [rng.range(0, 2), rng.range(0, 2), rng.range(0, 2), rng.range(0, 2)];
        let n = rng.range(1, 2);
        let residual = case % 3 == 0;
        let conv = Conv {
            weight: arc(rand_tensor(&mut rng, &[oc, ci, 3, 3])),
            bias: (rng.range(0, 1) == 1).then(|| arc(rand_tensor(&mut rng, &[oc]))),
            stride: [1, 1],
            pads,
            dilation: [1, 1],
            groups: 1,
            act: if residual { Activation::Identity } else { ACTS[rng.range(0, ACTS.len() - 1)] },
        };
        let Some((g, inputs, mag)) = conv_case(&mut rng, &conv, &[n, ci, h, w], residual.then_some(Activation::Relu)) else { continue };
        let yshape = g.node(g.outputs()[0]).shape.clone();
        let want = interpret(&g, &inputs).remove(0);
        check_mag(&bes, &g, &inputs, &want, &mag, 1e-4, &format!("winograd conv {conv:?} on {:?}", inputs[0].shape()));
        let plan = ConvPlan::new(Isa::detect(), &conv, inputs[0].shape(), &yshape).unwrap();
        let tiles = yshape[2].div_ceil(2) * yshape[3].div_ceil(2);
        let expect = ci >= super::winograd::MIN_CHANNELS && oc >= super::winograd::MIN_CHANNELS && tiles >= super::winograd::MIN_TILES;
        assert_eq!(plan.strategy_name().starts_with("winograd"), expect, "{ci}->{oc} {yshape:?}: {}", plan.strategy_name());
        used += expect as usize;
        forms.insert(plan.strategy_name());
    }
    assert!(used >= 15, "only {used} Winograd cases");
    assert!(forms.contains("winograd-f2") && forms.contains("winograd-f4"), "{forms:?}");
}

/// Depthwise convolutions: random layers of every shared tap loop (3×3 /
/// 5×5, stride 1 / 2) and of the per-tap loop (any kernel, stride and
/// dilation), planes from 1 pixel to several blocks and vector chunks,
/// padding from none to the kernel's size, batches, bias, activations and a
/// fused residual, equal the reference within 1e-4 of the magnitude of their
/// products on every ISA and with two threads.
#[test]
fn depthwise_convs_match_the_reference() {
    let bes = backends();
    let mut rng = Rng::new(41);
    let mut loops = std::collections::HashSet::new();
    for case in 0..60 {
        let (kh, kw, stride, dilation) = match case % 4 {
            0 | 1 => {
                let k = if case % 4 == 0 { 3 } else { 5 };
                let s = rng.range(1, 2);
                (k, k, [s, s], [1, 1])
            }
            _ => (rng.range(1, 7), rng.range(1, 7), [rng.range(1, 3), rng.range(1, 3)], [rng.range(1, 2), rng.range(1, 2)]),
        };
        let (h, w) = if case % 8 == 3 { (rng.range(30, 70), rng.range(30, 70)) } else { (rng.range(1, 20), rng.range(1, 40)) };
        let pads = [rng.range(0, kh), rng.range(0, kw), rng.range(0, kh), rng.range(0, kw)];
        let (n, c) = (rng.range(1, 2), rng.range(1, 6));
        let residual = case % 3 == 0;
        let conv = Conv {
            weight: arc(rand_tensor(&mut rng, &[c, 1, kh, kw])),
            bias: (rng.range(0, 1) == 1).then(|| arc(rand_tensor(&mut rng, &[c]))),
            stride,
            pads,
            dilation,
            groups: c,
            act: if residual { Activation::Identity } else { ACTS[rng.range(0, ACTS.len() - 1)] },
        };
        let Some((g, inputs, mag)) = conv_case(&mut rng, &conv, &[n, c, h, w], residual.then_some(Activation::Clip { min: 0.0, max: 6.0 })) else { continue };
        let yshape = g.node(g.outputs()[0]).shape.clone();
        let want = interpret(&g, &inputs).remove(0);
        check_mag(&bes, &g, &inputs, &want, &mag, 1e-4, &format!("depthwise {conv:?} on {:?}", inputs[0].shape()));
        let plan = ConvPlan::new(Isa::detect(), &conv, inputs[0].shape(), &yshape).unwrap();
        assert_eq!(plan.strategy_name() == "depthwise-shared", case % 4 < 2, "{conv:?}: {}", plan.strategy_name());
        loops.insert((kh, stride[0], plan.strategy_name()));
    }
    for k in [3, 5] {
        for s in [1, 2] {
            assert!(loops.contains(&(k, s, "depthwise-shared")), "{k}x{k} stride {s} untested: {loops:?}");
        }
    }
}

#[test]
fn convs_fused_with_a_residual_add_and_activation() {
    // act(conv(x) + r), built as Conv → Add → Act and fused by the executor.
    let bes = backends();
    let mut rng = Rng::new(21);
    let mut strategies = std::collections::HashSet::new();
    let mut tested = 0;
    while tested < 80 {
        let depthwise = tested % 4 == 0;
        let groups = if depthwise { rng.range(1, 6) } else { rng.range(1, 2) };
        let (icg, ocg) = if depthwise { (1, 1) } else { (rng.range(1, 9), rng.range(1, 20)) };
        let (kh, kw) = if tested % 5 == 1 { (1, 1) } else { (rng.range(1, 3), rng.range(1, 3)) };
        let stride = if tested % 5 == 1 { [1, 1] } else { [rng.range(1, 2), rng.range(1, 2)] };
        let pads = if tested % 5 == 1 { [0; 4] } else { [rng.range(0, kh - 1), rng.range(0, kw - 1), rng.range(0, kh - 1), rng.range(0, kw - 1)] };
        let (n, h, w) = (rng.range(1, 2), rng.range(2, 30), rng.range(2, 30));
        let conv = Conv {
            weight: arc(rand_tensor(&mut rng, &[groups * ocg, icg, kh, kw])),
            bias: (rng.range(0, 1) == 1).then(|| arc(rand_tensor(&mut rng, &[groups * ocg]))),
            stride,
            pads,
            dilation: [1, rng.range(1, 2)],
            groups,
            act: Activation::Identity,
        };
        let act = ACTS[rng.range(0, ACTS.len() - 1)];
        let mut g = Graph::new("res");
        let x = g.input("x", &[n, groups * icg, h, w]).unwrap();
        let Ok(c) = g.add("c", Op::Conv(conv.clone()), &[x]) else { continue };
        let yshape = g.node(c).shape.clone();
        let r = g.input("r", &yshape).unwrap();
        let (a, b) = if tested % 2 == 0 { (c, r) } else { (r, c) };
        let s = g.add("s", Op::Binary(BinaryOp::Add), &[a, b]).unwrap();
        let y = g.add("y", Op::Act(act), &[s]).unwrap();
        g.set_outputs(&[y]).unwrap();
        let inputs = [rand_tensor(&mut rng, &[n, groups * icg, h, w]), rand_tensor(&mut rng, &yshape)];
        let want = interpret(&g, &inputs).remove(0);
        let (_, mag) = conv_ref_mag(&inputs[0], &conv);
        let mag = Tensor::new(yshape.clone(), mag.data().iter().zip(inputs[1].data()).map(|(m, r)| m + r.abs()).collect()).unwrap();
        check_mag(&bes, &g, &inputs, &want, &mag, 1e-4, &format!("residual conv {conv:?} act {act:?} on {:?}", inputs[0].shape()));
        let exe = CpuExecutable::new(&bes[0], &g).unwrap();
        assert_eq!(exe.steps.len(), 1, "conv, add and activation fuse into one step");
        strategies.insert(ConvPlan::new(Isa::detect(), &conv, inputs[0].shape(), &yshape).unwrap().strategy_name());
        tested += 1;
    }
    assert_eq!(strategies.len(), 5, "every strategy exercised: {strategies:?}");
}

#[test]
fn conv_blocks_across_k_and_n_and_threads() {
    // K = 40·9 = 360 (two k blocks), N = 26·26 = 676 (more than one nc block),
    // M = 37 (not a multiple of any MR), stride 1 and 2, batch 2.
    let bes = backends();
    let mut rng = Rng::new(5);
    for (stride, pads, act) in [(1, [1, 1, 1, 1], Activation::Relu), (2, [0, 1, 2, 0], Activation::LeakyRelu { alpha: 0.1 })] {
        let conv = Conv { weight: arc(rand_tensor(&mut rng, &[37, 40, 3, 3])), bias: Some(arc(rand_tensor(&mut rng, &[37]))), stride: [stride; 2], pads, dilation: [1, 1], groups: 1, act };
        let g = single(Op::Conv(conv.clone()), &[&[2, 40, 26, 26]]).unwrap();
        let x = rand_tensor(&mut rng, &[2, 40, 26, 26]);
        let (want, mag) = conv_ref_mag(&x, &conv);
        check_mag(&bes, &g, std::slice::from_ref(&x), &want, &mag, 1e-4, "big conv");
    }
    // A 1×1 conv over a wide map: the pointwise path with several N blocks.
    let conv = Conv { weight: arc(rand_tensor(&mut rng, &[19, 300, 1, 1])), bias: None, stride: [1, 1], pads: [0; 4], dilation: [1, 1], groups: 1, act: Activation::Identity };
    let g = single(Op::Conv(conv.clone()), &[&[1, 300, 31, 33]]).unwrap();
    let x = rand_tensor(&mut rng, &[1, 300, 31, 33]);
    let (want, mag) = conv_ref_mag(&x, &conv);
    check_mag(&bes, &g, std::slice::from_ref(&x), &want, &mag, 1e-4, "wide 1x1 conv");
}

#[test]
fn dense_matches_reference() {
    let bes = backends();
    let mut rng = Rng::new(12);
    for case in 0..40 {
        let (i_f, o_f) = (rng.range(1, 300), rng.range(1, 70));
        let lead: Vec<usize> = match case % 4 {
            0 => vec![1],
            1 => vec![rng.range(2, 4)],
            2 => vec![rng.range(5, 20)],
            _ => vec![2, rng.range(1, 3)],
        };
        let shape: Vec<usize> = lead.iter().copied().chain([i_f]).collect();
        let d = Dense { weight: arc(rand_tensor(&mut rng, &[o_f, i_f])), bias: (case % 3 != 0).then(|| arc(rand_tensor(&mut rng, &[o_f]))), act: ACTS[case % ACTS.len()] };
        let g = single(Op::Dense(d.clone()), &[&shape]).unwrap();
        let x = rand_tensor(&mut rng, &shape);
        let (want, mag) = dense_ref_mag(&x, &d);
        check_mag(&bes, &g, std::slice::from_ref(&x), &want, &mag, 1e-4, &format!("dense {i_f}->{o_f} on {shape:?}"));
    }
}

#[test]
fn pooling_matches_onnxruntime_rules() {
    let bes = backends();
    let mut rng = Rng::new(13);
    let mut tested = 0;
    while tested < 200 {
        let kernel = [rng.range(1, 3), rng.range(1, 3)];
        let p = Pool {
            kernel,
            stride: [rng.range(1, 3), rng.range(1, 3)],
            pads: [rng.range(0, kernel[0] - 1), rng.range(0, kernel[1] - 1), rng.range(0, kernel[0] - 1), rng.range(0, kernel[1] - 1)],
            dilation: [rng.range(1, 2), rng.range(1, 2)],
            ceil_mode: rng.range(0, 1) == 1,
            count_include_pad: rng.range(0, 1) == 1,
        };
        // Every fourth plane wide enough for whole vectors of stride-2
        // outputs (the even / odd column split).
        let w = if tested % 4 == 1 { rng.range(33, 80) } else { rng.range(1, 12) };
        let shape = [rng.range(1, 2), rng.range(1, 3), rng.range(1, 12), w];
        let max = tested % 2 == 0;
        let op = if max { Op::MaxPool(p.clone()) } else { Op::AveragePool(p.clone()) };
        let Some(g) = single(op, &[&shape]) else { continue };
        let x = rand_tensor(&mut rng, &shape);
        check(&bes, &g, std::slice::from_ref(&x), &pool_ref(&x, &p, max), 1e-5, &format!("pool max={max} {p:?} on {shape:?}"));
        tested += 1;
    }
}

#[test]
fn global_pools_activations_and_batchnorm() {
    let bes = quick_backends();
    let mut rng = Rng::new(14);
    for shape in [vec![1, 3, 5, 7], vec![2, 4, 1, 1], vec![1, 2, 3, 4, 5], vec![3, 5, 300, 301]] {
        let x = rand_tensor(&mut rng, &shape);
        for op in [Op::GlobalAveragePool, Op::GlobalMaxPool] {
            let g = single(op.clone(), &[&shape]).unwrap();
            let want = interpret(&g, std::slice::from_ref(&x)).remove(0);
            let len: usize = shape[2..].iter().product();
            let mag = Tensor::new(want.shape().to_vec(), x.data().chunks(len).map(|c| c.iter().map(|v| v.abs()).sum::<f32>() / len as f32).collect()).unwrap();
            check_mag(&bes, &g, std::slice::from_ref(&x), &want, &mag, 1e-5, op.name());
        }
        for a in ACTS {
            let g = single(Op::Act(a), &[&shape]).unwrap();
            check(&bes, &g, std::slice::from_ref(&x), &interpret(&g, std::slice::from_ref(&x))[0], 1e-5, a.name());
        }
        let c = shape[1];
        let bn = tessera_graph::op::BatchNorm {
            scale: arc(rand_tensor(&mut rng, &[c])),
            bias: arc(rand_tensor(&mut rng, &[c])),
            mean: arc(rand_tensor(&mut rng, &[c])),
            var: arc(Tensor::new(vec![c], (0..c).map(|_| rng.uniform(0.5, 2.0)).collect()).unwrap()),
            eps: 1e-5,
        };
        let g = single(Op::BatchNorm(bn), &[&shape]).unwrap();
        // x·mul + add in f32 against the f64 definition: cancellation near 0.
        check(&bes, &g, std::slice::from_ref(&x), &interpret(&g, std::slice::from_ref(&x))[0], 1e-4, "batchnorm");
    }
}

#[test]
fn binary_ops_broadcast_like_numpy() {
    let bes = quick_backends();
    let mut rng = Rng::new(15);
    let ops = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Max, BinaryOp::Min, BinaryOp::PRelu];
    let fixed: Vec<(Vec<usize>, Vec<usize>)> = vec![
        (vec![1, 3, 4, 4], vec![3, 1, 1]),
        (vec![2, 1], vec![1, 5]),
        (vec![4], vec![2, 3, 4]),
        (vec![], vec![2, 3]),
        (vec![2, 3], vec![]),
        (vec![1, 16, 70, 70], vec![1, 16, 70, 70]),
        (vec![1, 16, 70, 70], vec![1, 16, 1, 1]),
        (vec![2, 1, 3, 1], vec![1, 4, 1, 5]),
    ];
    let mut pairs = fixed;
    for _ in 0..60 {
        // Random broadcast-compatible pair of ranks up to 4.
        let rank = rng.range(1, 4);
        let full: Vec<usize> = (0..rank).map(|_| rng.range(1, 5)).collect();
        let mut pick = || -> Vec<usize> {
            let drop = rng.range(0, rank);
            full[drop..].iter().map(|&d| if rng.range(0, 2) == 0 { 1 } else { d }).collect()
        };
        let a = pick();
        let b = pick();
        pairs.push((a, b));
    }
    for (case, (sa, sb)) in pairs.into_iter().enumerate() {
        let op = ops[case % ops.len()];
        let g = single(Op::Binary(op), &[&sa, &sb]).unwrap();
        let a = rand_tensor(&mut rng, &sa);
        let mut b = rand_tensor(&mut rng, &sb);
        if op == BinaryOp::Div {
            b.data_mut().iter_mut().for_each(|v| *v = if v.abs() < 0.1 { 0.5 } else { *v });
        }
        check(&bes, &g, &[a.clone(), b.clone()], &binary_ref(&a, &b, op), 1e-6, &format!("{op:?} {sa:?} {sb:?}"));
    }
}

#[test]
fn softmax_lrn_and_layout_ops() {
    let bes = quick_backends();
    let mut rng = Rng::new(16);
    let shape = [2usize, 3, 4, 5];
    let x = rand_tensor(&mut rng, &shape);
    let mut ops: Vec<Op> = Vec::new();
    for axis in 0..4 {
        ops.push(Op::Softmax { axis, flatten: false });
        ops.push(Op::Softmax { axis, flatten: true });
        ops.push(Op::Flatten { axis });
    }
    ops.push(Op::Reshape { shape: vec![6, 20] });
    for perm in [[0, 1, 2, 3], [3, 2, 1, 0], [0, 2, 3, 1], [1, 0, 3, 2]] {
        ops.push(Op::Transpose { perm: perm.to_vec() });
    }
    for size in 1..=6 {
        ops.push(Op::Lrn(Lrn { size, alpha: 1e-2 * size as f32, beta: [0.75, 0.5, 0.6][size % 3], bias: [1.0, 2.0][size % 2] }));
    }
    for mode in [PadMode::Constant(0.0), PadMode::Constant(-1.5), PadMode::Reflect, PadMode::Edge] {
        ops.push(Op::Pad { begin: vec![0, 1, 2, 3], end: vec![1, 2, 0, 4], mode });
        ops.push(Op::Pad { begin: vec![1, 0, 3, 0], end: vec![0, 2, 3, 1], mode });
    }
    ops.push(Op::Slice { starts: vec![0, 1, 1, 2], ends: vec![2, 3, 4, 5] });
    ops.push(Op::Slice { starts: vec![1, 0, 2, 0], ends: vec![2, 3, 3, 5] });
    ops.push(Op::Slice { starts: vec![0, 0, 0, 0], ends: vec![0, 3, 4, 5] });
    let coords = [CoordMode::HalfPixel, CoordMode::PytorchHalfPixel, CoordMode::AlignCorners, CoordMode::Asymmetric, CoordMode::TfHalfPixelForNearest];
    let nearests = [NearestMode::RoundPreferFloor, NearestMode::RoundPreferCeil, NearestMode::Floor, NearestMode::Ceil];
    for (i, coord) in coords.into_iter().enumerate() {
        for (j, nearest) in nearests.into_iter().enumerate() {
            let out_shape = vec![2, 3, [8, 3, 1, 7][(i + j) % 4], [10, 2, 5, 13][(i * 3 + j) % 4]];
            let scales = out_shape.iter().zip(&shape).map(|(&o, &s)| o as f32 / s as f32).collect();
            ops.push(Op::Resize(Resize { out_shape, scales, coord, nearest }));
        }
    }
    ops.push(Op::Resize(Resize::upsample(&shape, 2)));
    ops.push(Op::SpaceToDepth { block: 1 });
    for op in ops {
        let g = single(op.clone(), &[&shape]).unwrap();
        check(&bes, &g, std::slice::from_ref(&x), &interpret(&g, std::slice::from_ref(&x))[0], 1e-5, &format!("{op:?}"));
    }
    // Reflect on every axis at its limit (pad = size - 1).
    let g = single(Op::Pad { begin: vec![1, 2, 3, 4], end: vec![1, 2, 3, 4], mode: PadMode::Reflect }, &[&shape]).unwrap();
    check(&bes, &g, std::slice::from_ref(&x), &interpret(&g, std::slice::from_ref(&x))[0], 0.0, "reflect at limit");
    // Space/depth shuffles.
    let x = rand_tensor(&mut rng, &[2, 8, 6, 4]);
    for op in [Op::SpaceToDepth { block: 2 }, Op::DepthToSpace { block: 2, crd: false }, Op::DepthToSpace { block: 2, crd: true }] {
        let g = single(op.clone(), &[&[2, 8, 6, 4]]).unwrap();
        check(&bes, &g, std::slice::from_ref(&x), &interpret(&g, std::slice::from_ref(&x))[0], 0.0, &format!("{op:?}"));
    }
    let x = rand_tensor(&mut rng, &[1, 18, 2, 3]);
    for crd in [false, true] {
        let g = single(Op::DepthToSpace { block: 3, crd }, &[&[1, 18, 2, 3]]).unwrap();
        check(&bes, &g, std::slice::from_ref(&x), &interpret(&g, std::slice::from_ref(&x))[0], 0.0, "d2s 3");
    }
    // Concat on every axis, three inputs of different extents.
    for axis in 0..4 {
        let shapes: Vec<Vec<usize>> = (1..4).map(|k| (0..4).map(|d| if d == axis { k } else { shape[d] }).collect()).collect();
        let mut g = Graph::new("cat");
        let ids: Vec<NodeId> = shapes.iter().enumerate().map(|(i, s)| g.input(format!("x{i}"), s).unwrap()).collect();
        let y = g.add("y", Op::Concat { axis }, &ids).unwrap();
        g.set_outputs(&[y]).unwrap();
        let xs: Vec<Tensor> = shapes.iter().map(|s| rand_tensor(&mut rng, s)).collect();
        check(&bes, &g, &xs, &interpret(&g, &xs)[0], 0.0, "concat");
    }
}

#[test]
fn softmax_of_a_long_row_and_huge_values() {
    let bes = quick_backends();
    let mut rng = Rng::new(17);
    let mut x = rand_tensor(&mut rng, &[3, 1000]);
    x.data_mut()[5] = 80.0;
    x.data_mut()[1500] = -1e30;
    let g = single(Op::Softmax { axis: 1, flatten: false }, &[&[3, 1000]]).unwrap();
    check(&bes, &g, std::slice::from_ref(&x), &softmax_ref(&x, 1, false), 1e-5, "softmax");
}

// ---------- executor behaviour ----------

/// A graph that stresses buffer planning: a value read by many later
/// nodes, in-place candidates whose input is still needed, an intermediate
/// that is also a graph output, a constant operand, an unused node and an
/// input that is itself an output.
fn tricky_graph() -> Graph {
    let mut rng = Rng::new(18);
    let mut g = Graph::new("tricky");
    let x = g.input("x", &[1, 4, 6, 6]).unwrap();
    let s = g.input("s", &[4, 1, 1]).unwrap();
    let conv = Conv { weight: arc(rand_tensor(&mut rng, &[4, 4, 3, 3])), bias: None, stride: [1, 1], pads: [1; 4], dilation: [1, 1], groups: 1, act: Activation::Identity };
    let c = g.add("c", Op::Conv(conv), &[x]).unwrap();
    let r = g.add("r", Op::Act(Activation::Relu), &[c]).unwrap(); // c is still read below: no in-place
    let k = g.add("k", Op::Const(arc(rand_tensor(&mut rng, &[1, 4, 1, 6]))), &[]).unwrap();
    let m = g.add("m", Op::Binary(BinaryOp::Mul), &[r, k]).unwrap(); // r dies here: in place
    let a = g.add("a", Op::Binary(BinaryOp::Add), &[m, c]).unwrap();
    let _dead = g.add("dead", Op::Act(Activation::Tanh), &[a]).unwrap();
    let sq = g.add("sq", Op::Binary(BinaryOp::Mul), &[a, a]).unwrap(); // same input twice
    let p = g.add("p", Op::Binary(BinaryOp::PRelu), &[sq, s]).unwrap();
    let f = g.add("f", Op::Flatten { axis: 1 }, &[p]).unwrap();
    let sm = g.add("sm", Op::Softmax { axis: 1, flatten: false }, &[f]).unwrap();
    let rs = g.add("rs", Op::Reshape { shape: vec![1, 4, 6, 6] }, &[x]).unwrap(); // reshape of a graph input
    let t = g.add("t", Op::Act(Activation::Sigmoid), &[rs]).unwrap();
    let cat = g.add("cat", Op::Concat { axis: 1 }, &[t, c, p]).unwrap();
    // Residual chains the executor fuses: conv + (a value computed after the
    // conv) → relu; conv + conv (only one of them can absorb the Add); a
    // conv + add whose add is also a graph output (no activation fused).
    let mk = |rng: &mut Rng, act| Conv { weight: arc(rand_tensor(rng, &[4, 4, 1, 1])), bias: Some(arc(rand_tensor(rng, &[4]))), stride: [1, 1], pads: [0; 4], dilation: [1, 1], groups: 1, act };
    let r1 = g.add("r1", Op::Conv(mk(&mut rng, Activation::Identity)), &[a]).unwrap();
    let late = g.add("late", Op::Act(Activation::Tanh), &[c]).unwrap();
    let s1 = g.add("s1", Op::Binary(BinaryOp::Add), &[r1, late]).unwrap();
    let s1r = g.add("s1r", Op::Act(Activation::Relu), &[s1]).unwrap();
    let r2 = g.add("r2", Op::Conv(mk(&mut rng, Activation::Identity)), &[s1r]).unwrap();
    let r3 = g.add("r3", Op::Conv(mk(&mut rng, Activation::Identity)), &[s1r]).unwrap();
    let s2 = g.add("s2", Op::Binary(BinaryOp::Add), &[r2, r3]).unwrap();
    let s2r = g.add("s2r", Op::Act(Activation::Clip { min: -0.2, max: 0.4 }), &[s2]).unwrap();
    let r4 = g.add("r4", Op::Conv(mk(&mut rng, Activation::Identity)), &[s2r]).unwrap();
    let s3 = g.add("s3", Op::Binary(BinaryOp::Add), &[s2r, r4]).unwrap();
    let s3r = g.add("s3r", Op::Act(Activation::Relu), &[s3]).unwrap();
    g.set_outputs(&[sm, a, cat, x, k, s3, s3r]).unwrap();
    g
}

#[test]
fn executor_plans_buffers_without_clobbering() {
    let g = tricky_graph();
    let mut rng = Rng::new(19);
    for be in backends() {
        let mut exe = be.compile(&g).unwrap();
        for _ in 0..3 {
            let inputs = [rand_tensor(&mut rng, &[1, 4, 6, 6]), rand_tensor(&mut rng, &[4, 1, 1])];
            let want = interpret(&g, &inputs);
            let got = exe.run(&inputs).unwrap();
            assert_eq!(got.len(), want.len());
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(a.max_rel_diff(b) <= 1e-4, "output {i} on {}: {}", be.name(), a.max_rel_diff(b));
            }
        }
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let g = tricky_graph();
    let be = CpuBackend::new(1);
    let mut exe = be.compile(&g).unwrap();
    let ok = [Tensor::zeros(&[1, 4, 6, 6]), Tensor::zeros(&[4, 1, 1])];
    assert!(exe.run(&ok).is_ok());
    assert!(matches!(exe.run(&ok[..1]), Err(KernelError::Graph(GraphError::Invalid(_)))));
    let wrong = [Tensor::zeros(&[1, 4, 6, 5]), Tensor::zeros(&[4, 1, 1])];
    assert!(matches!(exe.run(&wrong), Err(KernelError::Graph(GraphError::InputShape { .. }))));
    // Still usable afterwards.
    assert!(exe.run(&ok).is_ok());
    let clock = || 0.0;
    let (_, t) = exe.run_profiled(&ok, &clock).unwrap();
    // One timing per step: two of the three residual chains fuse 3 nodes
    // into 1, the third (its Add is an output) 2 into 1.
    let nodes = g.nodes().iter().filter(|n| !matches!(n.op, Op::Input | Op::Const(_))).count();
    assert_eq!(t.len(), nodes - 5);
}

#[test]
fn backend_and_executables_cross_threads() {
    // Runtimes keep a worker per device: both must move to (and be shared
    // by) other threads.
    fn send_sync<T: Send + Sync>() {}
    send_sync::<CpuBackend>();
    send_sync::<CpuExecutable>();
}

#[test]
fn backend_names_and_paths() {
    let be = CpuBackend::new(1);
    assert_eq!(be.name(), format!("cpu {} x1", Isa::detect().name()));
    assert_eq!(CpuBackend::new(0).threads(), 1);
    // No threads in the browser: wasm32 always runs on the calling thread.
    let two = if cfg!(target_arch = "wasm32") { "x1" } else { "x2" };
    assert_eq!(CpuBackend::new(2).name(), format!("cpu {} {two}", Isa::detect().name()));
    assert!(CpuBackend::default().threads() >= 1);
    assert!(Isa::all_available().contains(&Isa::Scalar));
    #[cfg(target_arch = "x86_64")]
    assert!(CpuBackend::with_isa(1, Isa::Simd128).is_err());
}

// ---------- whole models ----------

fn zoo_input(g: &Graph) -> Tensor {
    let mut rng = Rng::new(20);
    Tensor::new(g.input_shape().to_vec(), (0..numel(g.input_shape())).map(|_| rng.uniform(0.0, 1.0)).collect()).unwrap()
}

/// Largest absolute difference relative to the largest reference value.
fn scaled_diff(a: &Tensor, b: &Tensor) -> f32 {
    let scale = b.data().iter().fold(0f32, |m, v| m.max(v.abs()));
    a.data().iter().zip(b.data()).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale.max(1e-30)
}

/// Model-level agreement. `max_rel_diff` floors its denominator at 1e-3 of
/// the largest output, so near-zero logits of a deep f32 network must agree
/// to ~1e-7 of the largest one: a few ulps. Folding BatchNorm alone moves
/// MobileNetV2 by 6.7e-5 on that metric even with f64 accumulation, and any
/// f32 GEMM (onnxruntime's included) adds its own rounding, so deep models
/// get `max_rel_diff <= rel` with a per-model `rel` and, tighter,
/// `scaled_diff <= 1e-5` (every output within 1e-5 of the output scale).
fn assert_model_close(got: &Tensor, want: &Tensor, rel: f32, what: &str) {
    let (d, s) = (got.max_rel_diff(want), scaled_diff(got, want));
    assert!(d <= rel && s <= 1e-5, "{what}: max_rel_diff {d:.2e} (limit {rel:.0e}), scaled diff {s:.2e} (limit 1e-5)");
}

#[test]
fn zoo_models_optimised_equal_unoptimised_and_threads_agree() {
    let one = CpuBackend::new(1);
    let two = CpuBackend::new(2);
    for (name, rel) in [("lenet", 1e-4), ("mobilenetv2", 1e-3), ("yolov2-tiny", 3e-3), ("resnet50", 1e-3)] {
        let g = zoo::build(name).unwrap();
        let opt = passes::optimize(&g).unwrap();
        let x = zoo_input(&g);
        let raw = run1(&one, &g, std::slice::from_ref(&x));
        let fused = run1(&one, &opt, std::slice::from_ref(&x));
        let fused2 = run1(&two, &opt, std::slice::from_ref(&x));
        assert_model_close(&fused, &raw, rel, &format!("{name}: optimised vs unoptimised"));
        // Threads split whole tiles; every value is summed in the same order.
        assert_eq!(fused2.data(), fused.data(), "{name}: 2 threads vs 1");
    }
}

#[test]
fn small_zoo_models_match_the_reference_interpreter() {
    let bes = [CpuBackend::new(1), CpuBackend::with_isa(2, Isa::Scalar).unwrap()];
    for (name, rel) in [("lenet", 1e-4), ("mobilenetv2", 1e-3), ("alexnet", 1e-3)] {
        let g = zoo::build(name).unwrap();
        let x = zoo_input(&g);
        let want = interpret(&g, std::slice::from_ref(&x)).remove(0);
        let opt = passes::optimize(&g).unwrap();
        for be in &bes {
            for graph in [&g, &opt] {
                let got = run1(be, graph, std::slice::from_ref(&x));
                assert_model_close(&got, &want, rel, &format!("{name} on {}", be.name()));
            }
        }
    }
}

#[test]
fn trained_lenet_classifies_digits() {
    // The first bundled MNIST digits through the trained LeNet: most are right.
    let g = passes::optimize(&zoo::build("lenet").unwrap()).unwrap();
    let mut exe = CpuBackend::new(1).compile(&g).unwrap();
    let (images, labels) = (zoo::mnist::TEST_IMAGES, zoo::mnist::TEST_LABELS);
    let mut right = 0;
    for i in 0..100 {
        let px = &images[16 + i * 784..16 + (i + 1) * 784];
        let x = Tensor::new(vec![1, 1, 28, 28], px.iter().map(|&p| p as f32 / 255.0).collect()).unwrap();
        let y = exe.run(&[x]).unwrap().remove(0);
        right += (y.argmax() == labels[8 + i] as usize) as usize;
    }
    assert!(right >= 90, "{right}/100 digits right");
}

/// Prints how far each zoo model's optimised run is from its unoptimised
/// run: `cargo test --release -p tessera-kernels model_precision -- --ignored --nocapture`.
#[test]
#[ignore]
fn model_precision() {
    let one = CpuBackend::new(1);
    for name in ["lenet", "alexnet", "mobilenetv2", "resnet50", "yolov2-tiny", "vgg16", "yolov2"] {
        let g = zoo::build(name).unwrap();
        let opt = passes::optimize(&g).unwrap();
        let x = zoo_input(&g);
        let raw = run1(&one, &g, std::slice::from_ref(&x));
        let fused = run1(&one, &opt, std::slice::from_ref(&x));
        println!("{name}: optimised vs unoptimised: max_rel_diff {:.2e}, scaled {:.2e}", fused.max_rel_diff(&raw), scaled_diff(&fused, &raw));
    }
}

/// Winograd / padded / pointwise versus im2col (and Winograd versus the
/// direct GEMM) on zoo layer shapes, interleaved, best
/// of many: `cargo test --release -p tessera-kernels conv_paths_speed -- --ignored --nocapture`
#[test]
#[ignore]
fn conv_paths_speed() {
    let par = Par::new(1).unwrap();
    let isa = Isa::detect();
    let mut rng = Rng::new(1);
    // (c_in, c_out, h, kernel, stride)
    for &(ci, co, h, k, s) in &[
        (64usize, 64usize, 224usize, 3usize, 1usize),
        (64, 64, 56, 3, 1),
        (128, 128, 28, 3, 1),
        (16, 32, 208, 3, 1),
        (32, 64, 104, 3, 1),
        (256, 256, 14, 3, 1),
        (128, 128, 112, 3, 1),
        (256, 256, 56, 3, 1),
        (512, 512, 28, 3, 1),
        (512, 512, 14, 3, 1),
        (512, 512, 7, 3, 1),
        (256, 1024, 14, 1, 1),
        (64, 256, 56, 1, 1),
        (3, 64, 224, 7, 2),
        (128, 128, 56, 3, 2),
        (256, 512, 56, 1, 2),
        (1024, 2048, 14, 1, 2),
    ] {
        let conv = Conv { weight: arc(rand_tensor(&mut rng, &[co, ci, k, k])), bias: Some(arc(rand_tensor(&mut rng, &[co]))), stride: [s, s], pads: [k / 2; 4], dilation: [1, 1], groups: 1, act: Activation::Relu };
        let xs = [1, ci, h, h];
        let oh = (h + 2 * (k / 2) - k) / s + 1;
        let ys = [1, co, oh, oh];
        let x = rand_tensor(&mut rng, &xs);
        let mut y = vec![0.0; numel(&ys)];
        let plans = [ConvPlan::new(isa, &conv, &xs, &ys).unwrap(), ConvPlan::with_path(isa, &conv, &xs, &ys, ConvPath::Im2col).unwrap(), ConvPlan::with_path(isa, &conv, &xs, &ys, ConvPath::Direct).unwrap()];
        let mut best = [f64::MAX; 3];
        for _ in 0..7 {
            for (i, p) in plans.iter().enumerate() {
                let t = std::time::Instant::now();
                p.run(isa, &par, x.data(), None, &mut y);
                best[i] = best[i].min(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        let gf = |ms: f64| 2.0 * (co * ci * k * k * oh * oh) as f64 / ms / 1e6;
        println!("{ci:>4}->{co:<4} {h:>3}x{h:<3} k{k} s{s}: {:<12} {:7.2} ms {:6.1} GF/s | im2col {:7.2} ms {:6.1} GF/s | {:<12} {:7.2} ms", plans[0].strategy_name(), best[0], gf(best[0]), best[1], gf(best[1]), plans[2].strategy_name(), best[2]);
    }
}

/// Depthwise conv speed on MobileNetV2 shapes:
/// `cargo test --release -p tessera-kernels depthwise_speed -- --ignored --nocapture`
#[test]
#[ignore]
fn depthwise_speed() {
    let par = Par::new(1).unwrap();
    let isa = Isa::detect();
    let mut rng = Rng::new(1);
    for &(c, h, s) in &[(32usize, 112usize, 1usize), (96, 112, 2), (144, 56, 1), (384, 14, 1), (960, 7, 1), (576, 14, 2)] {
        let conv = Conv { weight: arc(rand_tensor(&mut rng, &[c, 1, 3, 3])), bias: Some(arc(rand_tensor(&mut rng, &[c]))), stride: [s, s], pads: [1; 4], dilation: [1, 1], groups: c, act: Activation::Clip { min: 0.0, max: 6.0 } };
        let xs = [1, c, h, h];
        let oh = (h - 1) / s + 1;
        let ys = [1, c, oh, oh];
        let x = rand_tensor(&mut rng, &xs);
        let mut y = vec![0.0; numel(&ys)];
        let plan = ConvPlan::new(isa, &conv, &xs, &ys).unwrap();
        let mut best = f64::MAX;
        for _ in 0..200 {
            let t = std::time::Instant::now();
            plan.run(isa, &par, x.data(), None, &mut y);
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
        }
        println!("dw {c}x{h}x{h} s{s}: {best:.3} ms, {:.1} GF/s", 2.0 * (c * oh * oh * 9) as f64 / best / 1e6);
    }
}

// ---------- onnxruntime as the oracle ----------

/// One op checked against onnxruntime by `tests/ort_check.py`.
struct OrtCase {
    name: String,
    /// ONNX op type and opset.
    op: &'static str,
    opset: u32,
    /// ONNX attributes as a JSON object (floats written with a point).
    attrs: String,
    /// The graph the backend runs: graph inputs are the ONNX node's first inputs.
    graph: Graph,
    inputs: Vec<Tensor>,
    /// Further ONNX inputs as initializers: (name, value); a name `i64:x`
    /// is converted to int64.
    consts: Vec<(String, Tensor)>,
    tol: f32,
}

fn ort_cases() -> Vec<OrtCase> {
    let mut rng = Rng::new(99);
    let mut cases = Vec::new();
    let mut push = |name: String, op: &'static str, opset: u32, attrs: String, graph: Option<Graph>, inputs: Vec<Tensor>, consts: Vec<(String, Tensor)>, tol: f32| {
        if let Some(graph) = graph {
            cases.push(OrtCase { name, op, opset, attrs, graph, inputs, consts, tol });
        }
    };
    let ints = |v: &[usize]| format!("{v:?}");
    // Convolutions: groups, depthwise, dilation, stride, asymmetric pads.
    for i in 0..40 {
        let depthwise = i % 4 == 0;
        let groups = if depthwise { rng.range(2, 6) } else { rng.range(1, 3) };
        let (icg, ocg) = if depthwise { (1, 1) } else { (rng.range(1, 6), rng.range(1, 9)) };
        let (kh, kw) = (rng.range(1, 4), rng.range(1, 4));
        let stride = [rng.range(1, 3), rng.range(1, 3)];
        let dilation = [rng.range(1, 2), rng.range(1, 3)];
        let pads = [rng.range(0, kh - 1), rng.range(0, kw - 1), rng.range(0, kh - 1), rng.range(0, kw - 1)];
        let shape = [rng.range(1, 2), groups * icg, rng.range(3, 20), rng.range(3, 20)];
        let w = rand_tensor(&mut rng, &[groups * ocg, icg, kh, kw]);
        let b = rand_tensor(&mut rng, &[groups * ocg]);
        let conv = Conv { weight: arc(w.clone()), bias: Some(arc(b.clone())), stride, pads, dilation, groups, act: Activation::Identity };
        let attrs = format!(r#"{{"kernel_shape": {}, "strides": {}, "pads": {}, "dilations": {}, "group": {groups}}}"#, ints(&[kh, kw]), ints(&stride), ints(&pads), ints(&dilation));
        push(format!("conv{i}"), "Conv", 13, attrs, single(Op::Conv(conv), &[&shape]), vec![rand_tensor(&mut rng, &shape)], vec![("w".into(), w), ("b".into(), b)], 1e-4);
    }
    // Pooling: ceil mode, count_include_pad, dilation, asymmetric pads.
    for i in 0..60 {
        let kernel = [rng.range(1, 4), rng.range(1, 4)];
        let p = Pool {
            kernel,
            stride: [rng.range(1, 3), rng.range(1, 3)],
            pads: [rng.range(0, kernel[0] - 1), rng.range(0, kernel[1] - 1), rng.range(0, kernel[0] - 1), rng.range(0, kernel[1] - 1)],
            dilation: [rng.range(1, 2), rng.range(1, 2)],
            ceil_mode: rng.range(0, 1) == 1,
            count_include_pad: rng.range(0, 1) == 1,
        };
        let shape = [1, 2, rng.range(3, 12), rng.range(3, 12)];
        let max = i % 2 == 0;
        let mut attrs = format!(r#""kernel_shape": {}, "strides": {}, "pads": {}, "dilations": {}, "ceil_mode": {}"#, ints(&p.kernel), ints(&p.stride), ints(&p.pads), ints(&p.dilation), p.ceil_mode as u8);
        if !max {
            attrs += &format!(r#", "count_include_pad": {}"#, p.count_include_pad as u8);
        }
        let (op, name) = if max { (Op::MaxPool(p), "MaxPool") } else { (Op::AveragePool(p), "AveragePool") };
        push(format!("pool{i}"), name, 19, format!("{{{attrs}}}"), single(op, &[&shape]), vec![rand_tensor(&mut rng, &shape)], vec![], 1e-5);
    }
    let shape = [2usize, 7, 5, 6];
    // onnxruntime takes odd sizes only; even ones are checked against the
    // reference in `softmax_lrn_and_layout_ops`.
    for size in [1, 3, 5, 7] {
        let l = Lrn { size, alpha: 1e-2 * size as f32, beta: [0.75, 0.5, 0.6][size % 3], bias: [1.0, 2.0][size / 2 % 2] };
        let attrs = format!(r#"{{"size": {size}, "alpha": {:?}, "beta": {:?}, "bias": {:?}}}"#, l.alpha, l.beta, l.bias);
        push(format!("lrn{size}"), "LRN", 13, attrs, single(Op::Lrn(l), &[&shape]), vec![rand_tensor(&mut rng, &shape)], vec![], 1e-5);
    }
    for axis in 0..4 {
        for flatten in [true, false] {
            let attrs = format!(r#"{{"axis": {axis}}}"#);
            let opset = if flatten { 11 } else { 13 };
            push(format!("softmax{axis}{flatten}"), "Softmax", opset, attrs, single(Op::Softmax { axis, flatten }, &[&shape]), vec![rand_tensor(&mut rng, &shape)], vec![], 1e-5);
        }
    }
    for (i, mode) in [PadMode::Constant(0.0), PadMode::Constant(-2.5), PadMode::Reflect, PadMode::Edge].into_iter().enumerate() {
        for (j, (begin, end)) in [(vec![0, 1, 2, 3], vec![1, 0, 4, 5]), (vec![1, 6, 0, 0], vec![0, 6, 4, 2])].into_iter().enumerate() {
            let (name, value) = match mode {
                PadMode::Constant(v) => ("constant", v),
                PadMode::Reflect => ("reflect", 0.0),
                PadMode::Edge => ("edge", 0.0),
            };
            let pads = Tensor::new(vec![8], begin.iter().chain(&end).map(|&v| v as f32).collect()).unwrap();
            let mut consts = vec![("i64:pads".to_string(), pads)];
            if matches!(mode, PadMode::Constant(_)) {
                consts.push(("value".into(), Tensor::scalar(value)));
            }
            let attrs = format!(r#"{{"mode": "{name}"}}"#);
            push(format!("pad{i}{j}"), "Pad", 13, attrs, single(Op::Pad { begin, end, mode }, &[&shape]), vec![rand_tensor(&mut rng, &shape)], consts, 0.0);
        }
    }
    let coords = [("half_pixel", CoordMode::HalfPixel), ("pytorch_half_pixel", CoordMode::PytorchHalfPixel), ("align_corners", CoordMode::AlignCorners), ("asymmetric", CoordMode::Asymmetric), ("tf_half_pixel_for_nearest", CoordMode::TfHalfPixelForNearest)];
    let nearests = [("round_prefer_floor", NearestMode::RoundPreferFloor), ("round_prefer_ceil", NearestMode::RoundPreferCeil), ("floor", NearestMode::Floor), ("ceil", NearestMode::Ceil)];
    for (i, (cname, coord)) in coords.into_iter().enumerate() {
        for (j, (nname, nearest)) in nearests.into_iter().enumerate() {
            for out_hw in [[10, 13], [3, 2], [1, 17]] {
                let out_shape = vec![2, 7, out_hw[0], out_hw[1]];
                let scales = out_shape.iter().zip(&shape).map(|(&o, &s)| o as f32 / s as f32).collect();
                let sizes = Tensor::new(vec![4], out_shape.iter().map(|&v| v as f32).collect()).unwrap();
                let attrs = format!(r#"{{"mode": "nearest", "coordinate_transformation_mode": "{cname}", "nearest_mode": "{nname}"}}"#);
                let r = Resize { out_shape, scales, coord, nearest };
                // tf_half_pixel_for_nearest left ONNX after opset 11.
                let opset = if coord == CoordMode::TfHalfPixelForNearest { 11 } else { 13 };
                let consts = vec![("roi".into(), Tensor::zeros(&[0])), ("scales".into(), Tensor::zeros(&[0])), ("i64:sizes".into(), sizes)];
                push(format!("resize{i}{j}{:?}", out_hw), "Resize", opset, attrs, single(Op::Resize(r), &[&shape]), vec![rand_tensor(&mut rng, &shape)], consts, 0.0);
            }
        }
    }
    let dshape = [2usize, 18, 3, 4];
    for (mode, crd) in [("DCR", false), ("CRD", true)] {
        push(format!("d2s{mode}"), "DepthToSpace", 13, format!(r#"{{"blocksize": 3, "mode": "{mode}"}}"#), single(Op::DepthToSpace { block: 3, crd }, &[&dshape]), vec![rand_tensor(&mut rng, &dshape)], vec![], 0.0);
    }
    let sshape = [2usize, 3, 6, 4];
    push("s2d".into(), "SpaceToDepth", 13, r#"{"blocksize": 2}"#.into(), single(Op::SpaceToDepth { block: 2 }, &[&sshape]), vec![rand_tensor(&mut rng, &sshape)], vec![], 0.0);
    // Broadcasting binary ops, rank mismatch included.
    let pairs: [(&[usize], &[usize]); 6] = [(&[2, 3, 4, 5], &[5]), (&[2, 3, 4, 5], &[3, 1, 1]), (&[1, 3, 1, 5], &[2, 1, 4, 1]), (&[4, 5], &[2, 3, 4, 5]), (&[2, 1, 5], &[3, 1]), (&[3], &[])];
    for (i, (a, b)) in pairs.into_iter().enumerate() {
        for (op, name) in [(BinaryOp::Add, "Add"), (BinaryOp::Sub, "Sub"), (BinaryOp::Mul, "Mul"), (BinaryOp::Div, "Div"), (BinaryOp::Max, "Max"), (BinaryOp::Min, "Min")] {
            let x = rand_tensor(&mut rng, a);
            let mut y = rand_tensor(&mut rng, b);
            y.data_mut().iter_mut().for_each(|v| *v = if v.abs() < 0.1 { 0.5 } else { *v });
            push(format!("{name}{i}"), name, 13, "{}".into(), single(Op::Binary(op), &[a, b]), vec![x, y], vec![], 1e-6);
        }
    }
    for (i, slope) in [vec![7usize, 1, 1], vec![6], vec![1]].into_iter().enumerate() {
        push(format!("prelu{i}"), "PRelu", 13, "{}".into(), single(Op::Binary(BinaryOp::PRelu), &[&shape, &slope]), vec![rand_tensor(&mut rng, &shape), rand_tensor(&mut rng, &slope)], vec![], 0.0);
    }
    for (op, name) in [(Op::GlobalAveragePool, "GlobalAveragePool"), (Op::GlobalMaxPool, "GlobalMaxPool")] {
        push(name.into(), name, 13, "{}".into(), single(op, &[&shape]), vec![rand_tensor(&mut rng, &shape)], vec![], 1e-5);
    }
    let c = shape[1];
    let (sc, bi, me) = (rand_tensor(&mut rng, &[c]), rand_tensor(&mut rng, &[c]), rand_tensor(&mut rng, &[c]));
    let va = Tensor::new(vec![c], (0..c).map(|_| rng.uniform(0.5, 2.0)).collect()).unwrap();
    let bn = tessera_graph::op::BatchNorm { scale: arc(sc.clone()), bias: arc(bi.clone()), mean: arc(me.clone()), var: arc(va.clone()), eps: 1e-3 };
    push("bn".into(), "BatchNormalization", 15, r#"{"epsilon": 0.001}"#.into(), single(Op::BatchNorm(bn), &[&shape]), vec![rand_tensor(&mut rng, &shape)], vec![("s".into(), sc), ("b".into(), bi), ("m".into(), me), ("v".into(), va)], 1e-4);
    for (i, (rows, inf, outf)) in [(1usize, 300usize, 37usize), (3, 64, 130), (9, 129, 20)].into_iter().enumerate() {
        let (w, b) = (rand_tensor(&mut rng, &[outf, inf]), rand_tensor(&mut rng, &[outf]));
        let d = Dense { weight: arc(w.clone()), bias: Some(arc(b.clone())), act: Activation::Identity };
        push(format!("gemm{i}"), "Gemm", 13, r#"{"transB": 1}"#.into(), single(Op::Dense(d), &[&[rows, inf]]), vec![rand_tensor(&mut rng, &[rows, inf])], vec![("w".into(), w), ("c".into(), b)], 1e-4);
    }
    type ActCase = (Activation, &'static str, u32, String, Vec<(String, Tensor)>);
    let acts: [ActCase; 7] = [
        (Activation::Relu, "Relu", 13, "{}".into(), vec![]),
        (Activation::LeakyRelu { alpha: 0.1 }, "LeakyRelu", 13, r#"{"alpha": 0.1}"#.into(), vec![]),
        (Activation::Sigmoid, "Sigmoid", 13, "{}".into(), vec![]),
        (Activation::Tanh, "Tanh", 13, "{}".into(), vec![]),
        (Activation::Clip { min: -0.3, max: 0.6 }, "Clip", 13, "{}".into(), vec![("lo".into(), Tensor::scalar(-0.3)), ("hi".into(), Tensor::scalar(0.6))]),
        (Activation::HardSigmoid { alpha: 0.3, beta: 0.4 }, "HardSigmoid", 13, r#"{"alpha": 0.3, "beta": 0.4}"#.into(), vec![]),
        (Activation::HardSwish, "HardSwish", 14, "{}".into(), vec![]),
    ];
    for (a, name, opset, attrs, consts) in acts {
        let mut x = rand_tensor(&mut rng, &shape);
        x.data_mut().iter_mut().for_each(|v| *v *= 5.0);
        // onnxruntime's Sigmoid is a polynomial approximation (~1e-5 off libm).
        push(name.into(), name, opset, attrs, single(Op::Act(a), &[&shape]), vec![x], consts, 1e-4);
    }
    cases
}

/// Runs every op case on the backend, writes inputs, constants and outputs
/// as `.npy`, and has `tests/ort_check.py` compare them with onnxruntime
/// (needs python3 with onnx and onnxruntime):
/// `cargo test --release -p tessera-kernels ort_oracle -- --ignored --nocapture`
#[test]
#[ignore]
fn ort_oracle() {
    let dir = std::env::temp_dir().join(format!("tessera-ort-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, t: &Tensor| std::fs::write(dir.join(name), tessera_graph::npy::encode(t)).unwrap();
    let be = CpuBackend::new(1);
    let mut json = Vec::new();
    for (ci, c) in ort_cases().into_iter().enumerate() {
        let out = run1(&be, &c.graph, &c.inputs);
        let inputs: Vec<String> = c.inputs.iter().enumerate().map(|(j, t)| {
            let f = format!("c{ci}_x{j}.npy");
            write(&f, t);
            format!("{f:?}")
        }).collect();
        let consts: Vec<String> = c.consts.iter().enumerate().map(|(j, (name, t))| {
            let f = format!("c{ci}_k{j}.npy");
            write(&f, t);
            format!("[{name:?}, {f:?}]")
        }).collect();
        let y = format!("c{ci}_y.npy");
        write(&y, &out);
        json.push(format!(
            r#"{{"name": {:?}, "op": {:?}, "opset": {}, "attrs": {}, "inputs": [{}], "consts": [{}], "out": {y:?}, "tol": {:?}}}"#,
            c.name, c.op, c.opset, c.attrs, inputs.join(", "), consts.join(", "), c.tol
        ));
    }
    std::fs::write(dir.join("cases.json"), format!("[\n{}\n]\n", json.join(",\n"))).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ort_check.py");
    let out = std::process::Command::new("python3").arg(script).arg(&dir).output().expect("python3 runs");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "the backend disagrees with onnxruntime (see above)");
}
