//! Operand layouts: `A` packed once into `MR`-row panels per `k` block,
//! the `B` sources the GEMM reads (in place through row offsets, or
//! gathered), and the packing of `B` blocks into `NR`-column panels.

use super::geometry;
use crate::cpu::simd::Isa;

/// `A` packed for one ISA: for each `kc` block, `ceil(m / MR)` panels of
/// `kc × MR` values, rows past `m` zero.
#[derive(Clone, Debug)]
pub(crate) struct PackedA {
    pub m: usize,
    pub k: usize,
    /// Depth of every `k` block but possibly the last.
    pub kc: usize,
    pub(super) mr: usize,
    pub(super) m_pad: usize,
    data: Vec<f32>,
}

impl PackedA {
    /// Packs the row-major `m × k` matrix `a` (row stride `lda`).
    pub(crate) fn pack(isa: Isa, m: usize, k: usize, a: &[f32], lda: usize) -> PackedA {
        let geo = geometry(isa);
        let mr = geo.mr;
        // Equal-depth k blocks: 288 = 2 × 144 rather than 256 + 32.
        let blocks = k.div_ceil(geo.kc).max(1);
        let kc = k.div_ceil(blocks).max(1);
        let m_pad = m.div_ceil(mr) * mr;
        let mut data = vec![0.0f32; m_pad * k];
        let mut pc = 0;
        while pc < k {
            let kcur = kc.min(k - pc);
            let base = pc * m_pad;
            for i in 0..m_pad / mr {
                let panel = &mut data[base + i * mr * kcur..base + (i + 1) * mr * kcur];
                for r in 0..mr {
                    let row = i * mr + r;
                    if row >= m {
                        break;
                    }
                    let src = &a[row * lda + pc..row * lda + pc + kcur];
                    for (kk, &v) in src.iter().enumerate() {
                        panel[kk * mr + r] = v;
                    }
                }
            }
            pc += kcur;
        }
        PackedA { m, k, kc, mr, m_pad, data }
    }

    /// The panel of rows `i*MR..` in the `k` block starting at `pc` of depth `kcur`.
    #[inline]
    pub(super) fn panel(&self, pc: usize, kcur: usize, i: usize) -> &[f32] {
        let start = pc * self.m_pad + i * self.mr * kcur;
        &self.data[start..start + self.mr * kcur]
    }
}

/// The `B` operand, read one row segment at a time while packing: a plain
/// matrix, an implicit im2col of a feature map, a transposed activation.
pub(crate) trait BSource: Sync {
    /// Writes `B[k][n0 .. n0 + out.len()]` into `out`.
    fn row(&self, k: usize, n0: usize, out: &mut [f32]);
    /// The same segment borrowed in place, when `B` is stored row-major.
    fn row_slice(&self, _k: usize, _n0: usize, _len: usize) -> Option<&[f32]> {
        None
    }
    /// `B` readable in place by the micro-kernel, skipping packing.
    fn direct(&self) -> Option<OffsetRows<'_>> {
        None
    }
}

/// `B[k][n] = data[offs[k] + n]`: rows at arbitrary offsets of one buffer.
/// A 1×1 convolution's input (`offs[k] = k·h·w`) and a zero-padded input
/// seen as an implicit im2col (`offs[k]` = the shift of tap `k`) are both
/// of this form, and the micro-kernel reads them in place. Whole panels of
/// columns `n < limit` may be read directly; others are packed.
#[derive(Clone, Copy)]
pub(crate) struct OffsetRows<'a> {
    pub data: &'a [f32],
    pub offs: &'a [usize],
    /// `data[offs[k] + n]` is in bounds for every `k` and `n < limit`.
    pub limit: usize,
}

impl<'a> OffsetRows<'a> {
    /// Rows `offs` of `data`, readable up to column `limit` (clamped to the buffer).
    pub(crate) fn new(data: &'a [f32], offs: &'a [usize], limit: usize) -> OffsetRows<'a> {
        let max_off = offs.iter().copied().max().unwrap_or(0);
        OffsetRows { data, offs, limit: limit.min(data.len().saturating_sub(max_off)) }
    }
}

impl BSource for OffsetRows<'_> {
    fn row(&self, k: usize, n0: usize, out: &mut [f32]) {
        out.copy_from_slice(&self.data[self.offs[k] + n0..self.offs[k] + n0 + out.len()]);
    }
    fn row_slice(&self, k: usize, n0: usize, len: usize) -> Option<&[f32]> {
        Some(&self.data[self.offs[k] + n0..self.offs[k] + n0 + len])
    }
    fn direct(&self) -> Option<OffsetRows<'_>> {
        Some(*self)
    }
}

/// A row-major `k × n` matrix with row stride `ld`, always packed (tests
/// use it to cover the packing path; production `B`s are views).
#[cfg(test)]
pub(crate) struct Matrix<'a> {
    pub data: &'a [f32],
    pub ld: usize,
}

#[cfg(test)]
impl BSource for Matrix<'_> {
    fn row(&self, k: usize, n0: usize, out: &mut [f32]) {
        out.copy_from_slice(&self.data[k * self.ld + n0..k * self.ld + n0 + out.len()]);
    }
    fn row_slice(&self, k: usize, n0: usize, len: usize) -> Option<&[f32]> {
        Some(&self.data[k * self.ld + n0..k * self.ld + n0 + len])
    }
}

/// `B = Xᵀ` for a row-major `n × k` matrix `X` (dense layers: `B[k][n] = X[n][k]`).
pub(crate) struct Transposed<'a> {
    pub data: &'a [f32],
    pub k: usize,
}

impl BSource for Transposed<'_> {
    fn row(&self, k: usize, n0: usize, out: &mut [f32]) {
        for (j, o) in out.iter_mut().enumerate() {
            *o = self.data[(n0 + j) * self.k + k];
        }
    }
}

/// Packs `B[k0..k0+kc, n0..n0+nc]` into `NR`-wide panels (`kc × bw` each,
/// the last one's width padded with zeros to a multiple of `v`).
#[allow(clippy::too_many_arguments)]
pub(super) fn pack_b(b: &dyn BSource, k0: usize, kc: usize, n0: usize, nc: usize, nr: usize, v: usize, dst: &mut [f32], rowbuf: &mut [f32]) {
    let panels = nc.div_ceil(nr);
    for kk in 0..kc {
        let src: &[f32] = match b.row_slice(k0 + kk, n0, nc) {
            Some(s) => s,
            None => {
                b.row(k0 + kk, n0, &mut rowbuf[..nc]);
                &rowbuf[..nc]
            }
        };
        for q in 0..panels {
            let j0 = q * nr;
            let cols = nr.min(nc - j0);
            let bw = if cols == nr { nr } else { cols.div_ceil(v) * v };
            let d = &mut dst[q * kc * nr + kk * bw..q * kc * nr + (kk + 1) * bw];
            d[..cols].copy_from_slice(&src[j0..j0 + cols]);
            d[cols..].fill(0.0);
        }
    }
}
