//! Dense f32 tensors in C (row-major) order: the only value type Tessera moves
//! between graph, kernels, wire and files.

use crate::error::{GraphError, Result};

/// A dense f32 tensor, C order. NCHW for activations.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{:?}", self.shape)
    }
}

/// Number of elements of a shape (1 for a scalar).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// C-order strides of a shape, in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

impl Tensor {
    /// A tensor from a shape and its data; fails if the lengths disagree.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Tensor> {
        let expected = numel(&shape);
        if expected != data.len() {
            return Err(GraphError::DataLen { shape, expected, got: data.len() });
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor { shape: shape.to_vec(), data: vec![0.0; numel(shape)] }
    }

    /// A tensor filled with one value.
    pub fn full(shape: &[usize], v: f32) -> Tensor {
        Tensor { shape: shape.to_vec(), data: vec![v; numel(shape)] }
    }

    /// A 0-d tensor.
    pub fn scalar(v: f32) -> Tensor {
        Tensor { shape: vec![], data: vec![v] }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }
    pub fn numel(&self) -> usize {
        self.data.len()
    }
    /// Size of the payload in bytes (f32).
    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }

    /// A 64-bit fingerprint of the shape and the exact f32 bits: how the
    /// mesh names a weight a peer already holds, so that a re-plan does
    /// not send it again. Not cryptographic; equal tensors always agree.
    pub fn content_hash(&self) -> u64 {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let mix = |h: u64, w: u64| (h ^ w).wrapping_mul(K).rotate_left(29);
        let mut h = mix(0x7e55_e7a0, self.shape.len() as u64);
        for &d in &self.shape {
            h = mix(h, d as u64);
        }
        let mut pairs = self.data.chunks_exact(2);
        for p in &mut pairs {
            h = mix(h, (p[0].to_bits() as u64) << 32 | p[1].to_bits() as u64);
        }
        for v in pairs.remainder() {
            h = mix(h, v.to_bits() as u64);
        }
        mix(h, self.data.len() as u64)
    }

    /// The same data under another shape with the same element count.
    pub fn reshaped(self, shape: Vec<usize>) -> Result<Tensor> {
        Tensor::new(shape, self.data)
    }

    /// The sub-tensor `start..end` along `axis` (a copy).
    pub fn slice_axis(&self, axis: usize, start: usize, end: usize) -> Result<Tensor> {
        if axis >= self.shape.len() || start > end || end > self.shape[axis] {
            return Err(GraphError::Invalid(format!(
                "slice {start}..{end} on axis {axis} of shape {:?}",
                self.shape
            )));
        }
        let outer: usize = self.shape[..axis].iter().product();
        let inner: usize = self.shape[axis + 1..].iter().product();
        let dim = self.shape[axis];
        let len = end - start;
        let mut data = Vec::with_capacity(outer * len * inner);
        for o in 0..outer {
            let base = o * dim * inner;
            data.extend_from_slice(&self.data[base + start * inner..base + end * inner]);
        }
        let mut shape = self.shape.clone();
        shape[axis] = len;
        Ok(Tensor { shape, data })
    }

    /// Concatenation of tensors along `axis`; all other dims must agree.
    pub fn concat(parts: &[&Tensor], axis: usize) -> Result<Tensor> {
        let first = parts.first().ok_or_else(|| GraphError::Invalid("concat of nothing".into()))?;
        let rank = first.shape.len();
        if axis >= rank {
            return Err(GraphError::Invalid(format!("concat axis {axis} on rank {rank}")));
        }
        let mut total = 0;
        for p in parts {
            let same = p.shape.len() == rank
                && (0..rank).all(|d| d == axis || p.shape[d] == first.shape[d]);
            if !same {
                return Err(GraphError::Invalid(format!(
                    "concat on axis {axis}: shape {:?} does not match {:?}",
                    p.shape, first.shape
                )));
            }
            total += p.shape[axis];
        }
        let outer: usize = first.shape[..axis].iter().product();
        let inner: usize = first.shape[axis + 1..].iter().product();
        let mut data = Vec::with_capacity(outer * total * inner);
        for o in 0..outer {
            for p in parts {
                let len = p.shape[axis] * inner;
                data.extend_from_slice(&p.data[o * len..(o + 1) * len]);
            }
        }
        let mut shape = first.shape.clone();
        shape[axis] = total;
        Ok(Tensor { shape, data })
    }

    /// Element-wise sum of same-shape tensors (merging partial sums of a
    /// filter/input split).
    pub fn sum(parts: &[&Tensor]) -> Result<Tensor> {
        let first = parts.first().ok_or_else(|| GraphError::Invalid("sum of nothing".into()))?;
        let mut out = (*first).clone();
        for p in &parts[1..] {
            if p.shape != out.shape {
                return Err(GraphError::Invalid(format!(
                    "sum: shape {:?} does not match {:?}",
                    p.shape, out.shape
                )));
            }
            for (o, v) in out.data.iter_mut().zip(&p.data) {
                *o += v;
            }
        }
        Ok(out)
    }

    /// Relative error against a reference, in the max norm:
    /// `max |a - b| / max |b|` (0 if both are all zeros; infinite on a shape
    /// mismatch or a NaN in only one of them). This is the "relative error"
    /// every correctness check in Tessera uses: element-wise ratios would
    /// judge values near zero by float rounding noise alone.
    pub fn max_rel_diff(&self, reference: &Tensor) -> f32 {
        if self.shape != reference.shape {
            return f32::INFINITY;
        }
        let scale = reference.data.iter().fold(0f32, |m, v| m.max(v.abs()));
        let mut worst = 0f32;
        for (a, b) in self.data.iter().zip(&reference.data) {
            if a.is_nan() != b.is_nan() {
                return f32::INFINITY;
            }
            worst = worst.max((a - b).abs());
        }
        if worst == 0.0 {
            0.0
        } else {
            worst / scale.max(f32::MIN_POSITIVE)
        }
    }

    /// Index of the largest value (arg-max over all elements).
    pub fn argmax(&self) -> usize {
        let mut best = 0;
        for (i, v) in self.data.iter().enumerate() {
            if *v > self.data[best] {
                best = i;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iota(shape: &[usize]) -> Tensor {
        Tensor::new(shape.to_vec(), (0..numel(shape)).map(|v| v as f32).collect()).unwrap()
    }

    #[test]
    fn slice_then_concat_is_identity_on_every_axis() {
        let t = iota(&[2, 3, 4, 5]);
        for axis in 0..4 {
            let n = t.shape()[axis];
            let cut = n / 2;
            let a = t.slice_axis(axis, 0, cut).unwrap();
            let b = t.slice_axis(axis, cut, n).unwrap();
            assert_eq!(Tensor::concat(&[&a, &b], axis).unwrap(), t);
        }
    }

    #[test]
    fn bad_lengths_and_slices_are_errors() {
        assert!(Tensor::new(vec![2, 2], vec![0.0; 3]).is_err());
        assert!(iota(&[2, 3]).slice_axis(1, 2, 4).is_err());
        assert!(iota(&[2, 3]).slice_axis(2, 0, 1).is_err());
        let a = iota(&[2, 3]);
        let b = iota(&[3, 3]);
        assert!(Tensor::concat(&[&a, &b], 1).is_err());
        assert!(Tensor::sum(&[&a, &b]).is_err());
    }

    #[test]
    fn rel_diff_detects_change() {
        let a = iota(&[4]);
        let mut b = a.clone();
        assert_eq!(a.max_rel_diff(&b), 0.0);
        b.data_mut()[3] += 0.3;
        assert!(a.max_rel_diff(&b) > 0.05);
        assert_eq!(a.max_rel_diff(&iota(&[2, 2])), f32::INFINITY);
    }

    #[test]
    fn strides_are_c_order() {
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(strides(&[]), Vec::<usize>::new());
    }
}
