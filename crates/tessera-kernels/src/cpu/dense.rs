//! Dense (fully-connected) layers: `y[.., o] = Σ_i x[.., i] · W[o, i] + b[o]`
//! as a GEMM with the weights as the packed `A` operand (`M` = outputs) and
//! the activations as `B = Xᵀ`; one image (`N = 1`) is a GEMV that streams
//! the packed weights once.

use tessera_graph::{Activation, Dense};

use super::gemm::{gemm, Epilogue, PackedA, Transposed};
use super::par::Par;
use super::simd::Isa;

/// A dense layer prepared for repeated runs.
pub(crate) struct DensePlan {
    a: PackedA,
    bias: Option<Vec<f32>>,
    act: Activation,
    /// Rows of the input (product of all but the last axis).
    rows: usize,
    in_f: usize,
    out_f: usize,
}

impl DensePlan {
    pub(crate) fn new(isa: Isa, d: &Dense, x: &[usize]) -> Result<DensePlan, String> {
        let (in_f, out_f) = (d.in_features(), d.out_features());
        if x.last() != Some(&in_f) || d.weight.numel() != in_f * out_f {
            return Err(format!("input {x:?} does not match weight {:?}", d.weight.shape()));
        }
        let bias = d.bias.as_ref().map(|b| b.data().to_vec());
        if bias.as_ref().is_some_and(|b| b.len() != out_f) {
            return Err("bias length differs from output features".into());
        }
        let rows = x[..x.len() - 1].iter().product();
        Ok(DensePlan { a: PackedA::pack(isa, out_f, in_f, d.weight.data(), in_f), bias, act: d.act, rows, in_f, out_f })
    }

    pub(crate) fn run(&self, isa: Isa, par: &Par, x: &[f32], y: &mut [f32]) {
        let src = Transposed { data: x, k: self.in_f };
        let ep = Epilogue { bias: self.bias.as_deref(), residual: None, act: self.act };
        if self.rows == 1 {
            // C is [out][1]: exactly y.
            gemm(isa, par, &self.a, &src, 1, y, 1, ep);
        } else {
            let mut c = vec![0.0f32; self.out_f * self.rows];
            gemm(isa, par, &self.a, &src, self.rows, &mut c, self.rows, ep);
            for r in 0..self.rows {
                for o in 0..self.out_f {
                    y[r * self.out_f + o] = c[o * self.rows + r];
                }
            }
        }
    }
}
