//! Import-time evaluation of nodes whose inputs are all constant: the shape
//! arithmetic PyTorch and TensorFlow exporters emit (Shape → Gather →
//! Unsqueeze → Concat → Reshape, Where/Equal on shapes, ConstantOfShape ...)
//! and element-wise math on constants. Every result is checked against the
//! element limit before it is allocated.

use tessera_graph::tensor::strides;
use tessera_graph::Activation;

use crate::value::{broadcast_index, broadcast_shapes, dt, strided_index, Const, Limits};

/// Normalises a possibly negative axis against `rank` (`-rank..rank`).
pub fn axis(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    if a < -r || a >= r {
        return Err(format!("axis {a} out of range for rank {rank}"));
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

/// Normalises a list of distinct axes.
pub fn axes(list: &[i64], rank: usize) -> Result<Vec<usize>, String> {
    let mut out = Vec::with_capacity(list.len());
    for &a in list {
        let x = axis(a, rank)?;
        if out.contains(&x) {
            return Err(format!("axis {a} repeated in {list:?}"));
        }
        out.push(x);
    }
    Ok(out)
}

/// Element-wise binary ops the folder knows, by ONNX op type.
pub fn binary(op: &str, a: &Const, b: &Const, fmod: bool, lim: &Limits) -> Result<Const, String> {
    let shape = broadcast_shapes(a.shape(), b.shape(), lim)?;
    let ia = broadcast_index(&shape, a.shape());
    let ib = broadcast_index(&shape, b.shape());
    let cmp = matches!(op, "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual");
    let logic = matches!(op, "And" | "Or" | "Xor");
    if logic {
        let (x, y) = (a.to_i64(), b.to_i64());
        let v = ia
            .iter()
            .zip(&ib)
            .map(|(&i, &j)| {
                let (p, q) = (x[i] != 0, y[j] != 0);
                (match op {
                    "And" => p && q,
                    "Or" => p || q,
                    _ => p != q,
                }) as i64
            })
            .collect();
        return Ok(Const::ints(dt::BOOL, shape, v));
    }
    if a.is_float() || b.is_float() {
        let ty = if a.is_float() { a.ty } else { b.ty };
        let (x, y) = (a.to_f32(), b.to_f32());
        if cmp {
            let v = ia
                .iter()
                .zip(&ib)
                .map(|(&i, &j)| {
                    let (p, q) = (x[i], y[j]);
                    (match op {
                        "Equal" => p == q,
                        "Less" => p < q,
                        "Greater" => p > q,
                        "LessOrEqual" => p <= q,
                        _ => p >= q,
                    }) as i64
                })
                .collect();
            return Ok(Const::ints(dt::BOOL, shape, v));
        }
        let f: fn(f32, f32) -> f32 = match op {
            "Add" | "Sum" | "Mean" => |p, q| p + q,
            "Sub" => |p, q| p - q,
            "Mul" => |p, q| p * q,
            "Div" => |p, q| p / q,
            "Max" => |p: f32, q: f32| if p.is_nan() || q.is_nan() { f32::NAN } else { p.max(q) },
            "Min" => |p: f32, q: f32| if p.is_nan() || q.is_nan() { f32::NAN } else { p.min(q) },
            "Pow" => |p: f32, q| p.powf(q),
            "PRelu" => |p, q| if p < 0.0 { p * q } else { p },
            "Mod" if fmod => |p: f32, q| p % q,
            "Mod" => return Err("Mod on floats needs fmod=1".into()),
            other => return Err(format!("cannot fold {other}")),
        };
        let v = ia.iter().zip(&ib).map(|(&i, &j)| f(x[i], y[j])).collect();
        return Ok(Const::floats(ty, shape, v));
    }
    let (x, y) = (a.to_i64(), b.to_i64());
    let mut v = Vec::with_capacity(ia.len());
    for (&i, &j) in ia.iter().zip(&ib) {
        let (p, q) = (x[i], y[j]);
        v.push(match op {
            "Add" | "Sum" | "Mean" => p.wrapping_add(q),
            "Sub" => p.wrapping_sub(q),
            "Mul" => p.wrapping_mul(q),
            "Div" | "Mod" if q == 0 => return Err("integer division by zero".into()),
            "Div" => p.wrapping_div(q),
            "Mod" if fmod => p.wrapping_rem(q),
            "Mod" => p.wrapping_rem(q).wrapping_add(q).wrapping_rem(q),
            "Max" => p.max(q),
            "Min" => p.min(q),
            "Pow" => {
                if q < 0 {
                    if p == 1 {
                        1
                    } else {
                        0
                    }
                } else {
                    p.wrapping_pow(q.min(u32::MAX as i64) as u32)
                }
            }
            "PRelu" => {
                if p < 0 {
                    p.wrapping_mul(q)
                } else {
                    p
                }
            }
            "Equal" => (p == q) as i64,
            "Less" => (p < q) as i64,
            "Greater" => (p > q) as i64,
            "LessOrEqual" => (p <= q) as i64,
            "GreaterOrEqual" => (p >= q) as i64,
            other => return Err(format!("cannot fold {other}")),
        });
    }
    let ty = if cmp { dt::BOOL } else { a.ty };
    Ok(Const::ints(ty, shape, v.into_iter().map(|x| crate::value::wrap_int(x, ty)).collect()))
}

/// Element-wise unary math, by ONNX op type.
pub fn unary(op: &str, a: &Const) -> Result<Const, String> {
    let shape = a.shape().to_vec();
    if op == "Not" {
        return Ok(Const::ints(dt::BOOL, shape, a.to_i64().iter().map(|&v| (v == 0) as i64).collect()));
    }
    if !a.is_float() {
        let f: fn(i64) -> i64 = match op {
            "Neg" => |v: i64| v.wrapping_neg(),
            "Abs" => |v: i64| v.wrapping_abs(),
            "Sign" => |v: i64| v.signum(),
            "Relu" => |v: i64| v.max(0),
            "Identity" | "Floor" | "Ceil" | "Round" => |v| v,
            _ => {
                // Float math on integers: compute in f32, cast back.
                let f = unary(op, &a.cast(dt::FLOAT)?)?;
                return f.cast(a.ty);
            }
        };
        return Ok(Const::ints(a.ty, shape, a.to_i64().into_iter().map(f).map(|v| crate::value::wrap_int(v, a.ty)).collect()));
    }
    let f: fn(f32) -> f32 = match op {
        "Neg" => |v: f32| -v,
        "Abs" => f32::abs,
        "Sqrt" => f32::sqrt,
        "Exp" => f32::exp,
        "Log" => f32::ln,
        "Reciprocal" => |v: f32| 1.0 / v,
        "Floor" => f32::floor,
        "Ceil" => f32::ceil,
        "Round" => f32::round_ties_even,
        "Sign" => |v: f32| if v > 0.0 { 1.0 } else if v < 0.0 { -1.0 } else { v },
        "Sin" => f32::sin,
        "Cos" => f32::cos,
        "Tan" => f32::tan,
        "Softplus" => |v: f32| (1.0 + v.exp()).ln(),
        "Softsign" => |v: f32| v / (1.0 + v.abs()),
        "Identity" => |v| v,
        other => return Err(format!("cannot fold {other}")),
    };
    Ok(Const::floats(a.ty, shape, a.to_f32().into_iter().map(f).collect()))
}

/// An activation applied to a constant.
pub fn activation(a: Activation, c: &Const) -> Result<Const, String> {
    let v: Vec<f32> = c.to_f32().into_iter().map(|x| a.apply(x)).collect();
    let f = Const::floats(dt::FLOAT, c.shape().to_vec(), v);
    if c.is_float() {
        Ok(Const { ty: c.ty, ..f })
    } else {
        f.cast(c.ty)
    }
}

/// Transpose by `perm`.
pub fn transpose(c: &Const, perm: &[usize]) -> Const {
    let (idx, out) = crate::value::transpose_index(c.shape(), perm);
    c.gather_flat(&idx, out)
}

/// Concatenation along `axis` (ranks and off-axis dims already checked).
pub fn concat(parts: &[&Const], axis: usize, lim: &Limits) -> Result<Const, String> {
    let first = parts[0];
    let rank = first.shape().len();
    let mut shape = first.shape().to_vec();
    shape[axis] = 0;
    for p in parts {
        if p.shape().len() != rank || (0..rank).any(|d| d != axis && p.shape()[d] != first.shape()[d]) {
            return Err(format!("cannot concatenate {:?} with {:?} on axis {axis}", p.shape(), first.shape()));
        }
        shape[axis] = shape[axis].checked_add(p.shape()[axis]).ok_or("concat too large")?;
    }
    lim.numel(&shape)?;
    let outer: usize = first.shape()[..axis].iter().product();
    let float = parts.iter().any(|p| p.is_float());
    if float {
        let ty = parts.iter().find(|p| p.is_float()).map_or(dt::FLOAT, |p| p.ty);
        let datas: Vec<Vec<f32>> = parts.iter().map(|p| p.to_f32()).collect();
        let mut v = Vec::new();
        for o in 0..outer {
            for (p, d) in parts.iter().zip(&datas) {
                let len = p.shape()[axis..].iter().product::<usize>();
                v.extend_from_slice(&d[o * len..(o + 1) * len]);
            }
        }
        Ok(Const::floats(ty, shape, v))
    } else {
        let datas: Vec<Vec<i64>> = parts.iter().map(|p| p.to_i64()).collect();
        let mut v = Vec::new();
        for o in 0..outer {
            for (p, d) in parts.iter().zip(&datas) {
                let len = p.shape()[axis..].iter().product::<usize>();
                v.extend_from_slice(&d[o * len..(o + 1) * len]);
            }
        }
        Ok(Const::ints(first.ty, shape, v))
    }
}

/// Gather along `axis` with already-normalised indices of shape `ishape`.
pub fn gather(c: &Const, axis: usize, idx: &[usize], ishape: &[usize], lim: &Limits) -> Result<Const, String> {
    let s = c.shape();
    let mut out: Vec<usize> = s[..axis].to_vec();
    out.extend_from_slice(ishape);
    out.extend_from_slice(&s[axis + 1..]);
    lim.numel(&out)?;
    let outer: usize = s[..axis].iter().product();
    let inner: usize = s[axis + 1..].iter().product();
    let dim = s[axis];
    let mut flat = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in idx {
            let base = (o * dim + i) * inner;
            flat.extend(base..base + inner);
        }
    }
    Ok(c.gather_flat(&flat, out))
}

/// Strided slice: per axis `(start, len, step)` with a positive or negative
/// step, already clamped to valid positions.
pub fn slice(c: &Const, spec: &[(usize, usize, i64)]) -> Const {
    let st = strides(c.shape());
    let out: Vec<usize> = spec.iter().map(|s| s.1).collect();
    let n: usize = out.iter().product();
    let mut flat = Vec::with_capacity(n);
    let rank = out.len();
    let mut pos = vec![0usize; rank];
    for _ in 0..n {
        let mut f: i64 = 0;
        for d in 0..rank {
            f += (spec[d].0 as i64 + pos[d] as i64 * spec[d].2) * st[d] as i64;
        }
        flat.push(f as usize);
        for d in (0..rank).rev() {
            pos[d] += 1;
            if pos[d] < out[d] {
                break;
            }
            pos[d] = 0;
        }
    }
    c.gather_flat(&flat, out)
}

/// Broadcast to `shape` (Expand).
pub fn expand(c: &Const, shape: &[usize], lim: &Limits) -> Result<Const, String> {
    let out = broadcast_shapes(c.shape(), shape, lim)?;
    let idx = broadcast_index(&out, c.shape());
    Ok(c.gather_flat(&idx, out))
}

/// Tile by `reps` per axis.
pub fn tile(c: &Const, reps: &[usize], lim: &Limits) -> Result<Const, String> {
    let s = c.shape();
    let mut out = Vec::with_capacity(s.len());
    for (d, r) in s.iter().zip(reps) {
        out.push(d.checked_mul(*r).ok_or("tile too large")?);
    }
    let n = lim.numel(&out)?;
    let st = strides(s);
    let ost = strides(&out);
    let idx = (0..n)
        .map(|f| (0..out.len()).map(|d| (f / ost[d] % out[d]) % s[d] * st[d]).sum())
        .collect::<Vec<usize>>();
    Ok(c.gather_flat(&idx, out))
}

/// Reduction over `axes` (normalised; empty = all).
pub fn reduce(op: &str, c: &Const, axes: &[usize], keepdims: bool) -> Result<Const, String> {
    let s = c.shape();
    let all = axes.is_empty();
    let red = |d: usize| all || axes.contains(&d);
    let kept: Vec<usize> = (0..s.len()).map(|d| if red(d) { 1 } else { s[d] }).collect();
    let kst = strides(&kept);
    let map_st: Vec<usize> = (0..s.len()).map(|d| if red(d) { 0 } else { kst[d] }).collect();
    let target = strided_index(s, &map_st, 0);
    let n_out: usize = kept.iter().product();
    let count = (c.numel() / n_out.max(1)).max(1) as f64;
    let out_shape: Vec<usize> = if keepdims { kept.clone() } else { (0..s.len()).filter(|&d| !red(d)).map(|d| s[d]).collect() };
    if c.is_float() {
        let x = c.to_f32();
        let (init, f): (f64, fn(f64, f64) -> f64) = match op {
            "ReduceSum" | "ReduceMean" => (0.0, |a, b| a + b),
            "ReduceProd" => (1.0, |a, b| a * b),
            "ReduceMax" => (f64::NEG_INFINITY, f64::max),
            "ReduceMin" => (f64::INFINITY, f64::min),
            other => return Err(format!("cannot fold {other}")),
        };
        let mut acc = vec![init; n_out];
        for (v, &t) in x.iter().zip(&target) {
            acc[t] = f(acc[t], *v as f64);
        }
        if op == "ReduceMean" {
            acc.iter_mut().for_each(|a| *a /= count);
        }
        Ok(Const::floats(c.ty, out_shape, acc.into_iter().map(|v| v as f32).collect()))
    } else {
        let x = c.to_i64();
        let (init, f): (i64, fn(i64, i64) -> i64) = match op {
            "ReduceSum" | "ReduceMean" => (0, i64::wrapping_add),
            "ReduceProd" => (1, i64::wrapping_mul),
            "ReduceMax" => (i64::MIN, i64::max),
            "ReduceMin" => (i64::MAX, i64::min),
            other => return Err(format!("cannot fold {other}")),
        };
        let mut acc = vec![init; n_out];
        for (v, &t) in x.iter().zip(&target) {
            acc[t] = f(acc[t], *v);
        }
        if op == "ReduceMean" {
            acc.iter_mut().for_each(|a| *a /= count as i64);
        }
        Ok(Const::ints(c.ty, out_shape, acc))
    }
}

/// `Where(cond, x, y)`.
pub fn where_(cond: &Const, x: &Const, y: &Const, lim: &Limits) -> Result<Const, String> {
    let s1 = broadcast_shapes(cond.shape(), x.shape(), lim)?;
    let shape = broadcast_shapes(&s1, y.shape(), lim)?;
    let ic = broadcast_index(&shape, cond.shape());
    let ix = broadcast_index(&shape, x.shape());
    let iy = broadcast_index(&shape, y.shape());
    let c = cond.to_i64();
    if x.is_float() || y.is_float() {
        let (a, b) = (x.to_f32(), y.to_f32());
        let v = (0..ic.len()).map(|k| if c[ic[k]] != 0 { a[ix[k]] } else { b[iy[k]] }).collect();
        let ty = if x.is_float() { x.ty } else { y.ty };
        Ok(Const::floats(ty, shape, v))
    } else {
        let (a, b) = (x.to_i64(), y.to_i64());
        let v = (0..ic.len()).map(|k| if c[ic[k]] != 0 { a[ix[k]] } else { b[iy[k]] }).collect();
        Ok(Const::ints(x.ty, shape, v))
    }
}

/// `Range(start, limit, delta)`.
pub fn range(start: &Const, limit: &Const, delta: &Const, lim: &Limits) -> Result<Const, String> {
    if start.is_float() {
        let (s, l, d) = (start.scalar_f32("start")? as f64, limit.scalar_f32("limit")? as f64, delta.scalar_f32("delta")? as f64);
        if d == 0.0 || !d.is_finite() || !s.is_finite() || !l.is_finite() {
            return Err("Range needs a finite, non-zero delta".into());
        }
        let n = ((l - s) / d).ceil().max(0.0);
        if n > lim.max_elements as f64 {
            return Err("Range result too large".into());
        }
        let n = n as usize;
        Ok(Const::floats(start.ty, vec![n], (0..n).map(|i| (s + i as f64 * d) as f32).collect()))
    } else {
        let one = |c: &Const, w: &str| -> Result<i64, String> {
            if c.numel() != 1 {
                return Err(format!("{w} must hold one value"));
            }
            Ok(c.to_i64()[0])
        };
        let (s, l, d) = (one(start, "start")? as i128, one(limit, "limit")? as i128, one(delta, "delta")? as i128);
        if d == 0 {
            return Err("Range needs a non-zero delta".into());
        }
        let n = if d > 0 {
            if l > s { (l - s + d - 1) / d } else { 0 }
        } else if s > l {
            (s - l - d - 1) / (-d)
        } else {
            0
        };
        if n > lim.max_elements as i128 {
            return Err("Range result too large".into());
        }
        Ok(Const::ints(start.ty, vec![n as usize], (0..n).map(|i| (s + i * d) as i64).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: Limits = Limits { max_elements: 1 << 20 };

    fn iv(v: &[i64]) -> Const {
        Const::i64_vec(v.to_vec())
    }

    #[test]
    fn int_folds() {
        assert_eq!(binary("Mul", &iv(&[2, 3]), &iv(&[4]), false, &LIM).unwrap().to_i64(), vec![8, 12]);
        assert_eq!(binary("Mod", &iv(&[-3]), &iv(&[2]), false, &LIM).unwrap().to_i64(), vec![1]);
        assert_eq!(binary("Mod", &iv(&[-3]), &iv(&[2]), true, &LIM).unwrap().to_i64(), vec![-1]);
        assert!(binary("Div", &iv(&[1]), &iv(&[0]), false, &LIM).is_err());
        let c = concat(&[&iv(&[1, 2]), &iv(&[3])], 0, &LIM).unwrap();
        assert_eq!(c.to_i64(), vec![1, 2, 3]);
        let g = gather(&iv(&[5, 6, 7]), 0, &[2, 0], &[2], &LIM).unwrap();
        assert_eq!(g.to_i64(), vec![7, 5]);
        let r = range(&iv(&[0]).reshaped(vec![]), &iv(&[5]).reshaped(vec![]), &iv(&[2]).reshaped(vec![]), &LIM).unwrap();
        assert_eq!(r.to_i64(), vec![0, 2, 4]);
        let r = range(&iv(&[5]).reshaped(vec![]), &iv(&[0]).reshaped(vec![]), &iv(&[-2]).reshaped(vec![]), &LIM).unwrap();
        assert_eq!(r.to_i64(), vec![5, 3, 1]);
        let m = iv(&[1, 2, 3, 4, 5, 6]).reshaped(vec![2, 3]);
        assert_eq!(reduce("ReduceSum", &m, &[1], false).unwrap().to_i64(), vec![6, 15]);
        assert_eq!(reduce("ReduceProd", &m, &[], true).unwrap().shape(), &[1, 1]);
        assert_eq!(transpose(&m, &[1, 0]).to_i64(), vec![1, 4, 2, 5, 3, 6]);
        assert_eq!(tile(&iv(&[1, 2]), &[2], &LIM).unwrap().to_i64(), vec![1, 2, 1, 2]);
        assert_eq!(slice(&iv(&[0, 1, 2, 3, 4]), &[(4, 3, -2)]).to_i64(), vec![4, 2, 0]);
    }
}
