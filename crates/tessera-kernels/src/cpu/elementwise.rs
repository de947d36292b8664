//! Element-wise ops: activations, per-channel affine (unfused BatchNorm)
//! and binary ops with NumPy broadcasting. Broadcasting is planned once:
//! dimensions are padded to a common rank, size-1 dimensions dropped and
//! neighbours that both operands walk contiguously merged, so the inner loop
//! is one of four vectorisable forms (tensor∘tensor, tensor∘scalar,
//! scalar∘tensor, scalar∘scalar).

use tessera_graph::op::broadcast_dims;
use tessera_graph::{Activation, BinaryOp};

use super::conv::apply_act;
use super::par::{split_range, Par, SendPtr};
use super::simd::{multiversion, Isa};

/// Elements below which element-wise work stays on one thread.
const PAR_MIN: usize = 1 << 16;

/// `y = act(x)`, or in place when `x` is `None`.
pub(crate) fn activation(isa: Isa, par: &Par, act: Activation, x: Option<&[f32]>, y: &mut [f32]) {
    chunked(par, y.len(), &|lo, hi, yp| {
        // SAFETY: chunks are disjoint ranges of y.
        let y = unsafe { std::slice::from_raw_parts_mut(yp.get().add(lo), hi - lo) };
        act_slice(isa, act, x.map(|x| &x[lo..hi]), y);
    }, y.as_mut_ptr());
}

multiversion! {
    fn act_slice(act: Activation, x: Option<&[f32]>, y: &mut [f32]) {
        if let Some(x) = x {
            y.copy_from_slice(x);
        }
        apply_act(act, y);
    }
}

/// Per-channel `y = x · mul[c] + add[c]` over `[n, c, inner]`; in place when `x` is `None`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn affine(isa: Isa, par: &Par, n: usize, c: usize, inner: usize, mul: &[f32], add: &[f32], x: Option<&[f32]>, y: &mut [f32]) {
    let planes = n * c;
    let parts = if par.threads() > 1 && y.len() >= PAR_MIN { par.threads() * 2 } else { 1 };
    let ranges = split_range(planes, parts, 1);
    let yp = SendPtr(y.as_mut_ptr());
    par.for_each(ranges.len(), &|t| {
        let (p0, p1) = ranges[t];
        // SAFETY: planes p0..p1 belong to this task alone.
        let out = unsafe { std::slice::from_raw_parts_mut(yp.get().add(p0 * inner), (p1 - p0) * inner) };
        affine_planes(isa, p0, c, inner, mul, add, x.map(|x| &x[p0 * inner..p1 * inner]), out);
    });
}

multiversion! {
    /// Planes `p0..` (as many as `y` holds) of the per-channel affine map.
    fn affine_planes(p0: usize, c: usize, inner: usize, mul: &[f32], add: &[f32], x: Option<&[f32]>, y: &mut [f32]) {
        for (i, out) in y.chunks_exact_mut(inner.max(1)).enumerate() {
            let (m, a) = (mul[(p0 + i) % c], add[(p0 + i) % c]);
            match x {
                Some(x) => out.iter_mut().zip(&x[i * inner..(i + 1) * inner]).for_each(|(o, &v)| *o = v * m + a),
                None => out.iter_mut().for_each(|o| *o = *o * m + a),
            }
        }
    }
}

/// Runs `f(lo, hi, ptr)` over chunks of `0..len`, in parallel when large.
fn chunked(par: &Par, len: usize, f: &(dyn Fn(usize, usize, SendPtr) + Sync), ptr: *mut f32) {
    let parts = if par.threads() > 1 && len >= PAR_MIN { par.threads() * 2 } else { 1 };
    let ranges = split_range(len, parts, 16);
    let p = SendPtr(ptr);
    par.for_each(ranges.len(), &|t| f(ranges[t].0, ranges[t].1, p));
}

/// A broadcast binary op, planned for fixed input shapes.
#[derive(Clone, Debug)]
pub(crate) struct BinaryPlan {
    op: BinaryOp,
    /// Merged output dims, outermost first, with each operand's stride
    /// (0 where it is broadcast). Never empty.
    dims: Vec<(usize, usize, usize)>,
    len: usize,
}

impl BinaryPlan {
    pub(crate) fn new(op: BinaryOp, a: &[usize], b: &[usize]) -> Result<BinaryPlan, String> {
        let (out, dims) = broadcast_dims(a, b)?;
        Ok(BinaryPlan { op, dims, len: out.iter().product() })
    }

    /// Whether the output can overwrite input `a` in place (same layout).
    pub(crate) fn a_is_dense(&self) -> bool {
        let mut expect = 1;
        self.dims.iter().rev().all(|&(n, sa, _)| {
            let ok = sa == expect || n == 1;
            expect *= n;
            ok
        })
    }

    /// `out = a ∘ b`. `out` may be the same buffer as `a` when `a_is_dense`.
    ///
    /// # Safety
    /// `a`, `b` and `out` must cover the planned shapes.
    pub(crate) unsafe fn run(&self, isa: Isa, par: &Par, a: *const f32, b: *const f32, out: *mut f32) {
        let (inner, ia, ib) = *self.dims.last().unwrap();
        let outer_dims = &self.dims[..self.dims.len() - 1];
        let rows: usize = outer_dims.iter().map(|d| d.0).product();
        let parts = if par.threads() > 1 && self.len >= PAR_MIN { par.threads() * 2 } else { 1 };
        let ranges = split_range(rows, parts, 1);
        let (ap, bp, op) = (SendPtr(a as *mut f32), SendPtr(b as *mut f32), SendPtr(out));
        let f = self.op;
        par.for_each(ranges.len(), &|t| {
            let (r0, r1) = ranges[t];
            // SAFETY: per the contract; rows are disjoint in `out`.
            unsafe { binary_rows(isa, f, outer_dims, inner, ia, ib, r0, r1, ap.get(), bp.get(), op.get()) };
        });
    }
}

multiversion! {
    /// Rows `r0..r1` of a planned binary op (raw pointers: `out` may be `a`).
    unsafe fn binary_rows(f: BinaryOp, outer_dims: &[(usize, usize, usize)], inner: usize, ia: usize, ib: usize, r0: usize, r1: usize, a: *mut f32, b: *mut f32, out: *mut f32) {
        for r in r0..r1 {
            // Offsets of row r in each operand.
            let (mut rem, mut oa, mut ob) = (r, 0, 0);
            for &(n, sa, sb) in outer_dims.iter().rev() {
                let i = rem % n;
                rem /= n;
                oa += i * sa;
                ob += i * sb;
            }
            // SAFETY: the caller's contract covers every row's extent.
            unsafe {
                let (a, b, o) = (a.add(oa) as *const f32, b.add(ob) as *const f32, out.add(r * inner));
                match f {
                    BinaryOp::Add => row(a, b, o, inner, ia, ib, |x, y| x + y),
                    BinaryOp::Sub => row(a, b, o, inner, ia, ib, |x, y| x - y),
                    BinaryOp::Mul => row(a, b, o, inner, ia, ib, |x, y| x * y),
                    BinaryOp::Div => row(a, b, o, inner, ia, ib, |x, y| x / y),
                    BinaryOp::Max => row(a, b, o, inner, ia, ib, |x, y| BinaryOp::Max.apply(x, y)),
                    BinaryOp::Min => row(a, b, o, inner, ia, ib, |x, y| BinaryOp::Min.apply(x, y)),
                    BinaryOp::PRelu => row(a, b, o, inner, ia, ib, |x, y| if x < 0.0 { x * y } else { x }),
                }
            }
        }
    }
}

/// One inner row: `o[i] = f(a[i·ia], b[i·ib])` with strides 0 or 1.
#[inline(always)]
unsafe fn row(a: *const f32, b: *const f32, o: *mut f32, n: usize, ia: usize, ib: usize, f: impl Fn(f32, f32) -> f32) {
    unsafe {
        match (ia, ib) {
            (1, 1) => (0..n).for_each(|i| *o.add(i) = f(*a.add(i), *b.add(i))),
            (1, 0) => {
                let y = *b;
                (0..n).for_each(|i| *o.add(i) = f(*a.add(i), y))
            }
            (0, 1) => {
                let x = *a;
                (0..n).for_each(|i| *o.add(i) = f(x, *b.add(i)))
            }
            _ => (0..n).for_each(|i| *o.add(i) = f(*a.add(i * ia), *b.add(i * ib))),
        }
    }
}
