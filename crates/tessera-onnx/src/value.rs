//! Constant values known at import time (initializers, `Constant` nodes and
//! everything folded from them), their decoding from `TensorProto`, and the
//! small tensor algebra the importer folds shape sub-graphs with.
//!
//! Floats are held as `f32` (`Arc<Tensor>`, shared with the ops that end up
//! owning them as weights); every integer and boolean type as `i64`. The ONNX
//! element type is kept alongside so that `Cast`, comparisons and output
//! checks know what a value is.

use std::sync::Arc;

use tessera_graph::half::{f16_to_f32, f32_to_f16};

use tessera_graph::op::broadcast;
use tessera_graph::tensor::strides;
use tessera_graph::Tensor;

use crate::proto::TensorProto;

/// ONNX `TensorProto.DataType` codes used here.
pub mod dt {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const STRING: i32 = 8;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const BFLOAT16: i32 = 16;

    /// Human name of a data type code.
    pub fn name(t: i32) -> String {
        match t {
            FLOAT => "float32".into(),
            UINT8 => "uint8".into(),
            INT8 => "int8".into(),
            UINT16 => "uint16".into(),
            INT16 => "int16".into(),
            INT32 => "int32".into(),
            INT64 => "int64".into(),
            STRING => "string".into(),
            BOOL => "bool".into(),
            FLOAT16 => "float16".into(),
            DOUBLE => "float64".into(),
            UINT32 => "uint32".into(),
            UINT64 => "uint64".into(),
            BFLOAT16 => "bfloat16".into(),
            14 | 15 => "complex".into(),
            17..=20 => "float8".into(),
            21 | 22 | 25 | 26 => "4/2-bit int".into(),
            23 => "float4".into(),
            other => format!("data type {other}"),
        }
    }

    /// Float types (held as f32).
    pub fn is_float(t: i32) -> bool {
        matches!(t, FLOAT | FLOAT16 | DOUBLE | BFLOAT16)
    }

    /// Integer and boolean types (held as i64).
    pub fn is_int(t: i32) -> bool {
        matches!(t, UINT8 | INT8 | UINT16 | INT16 | INT32 | INT64 | BOOL | UINT32 | UINT64)
    }
}

/// Resource limits applied while importing.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest element count of any one tensor (shape), constant or not.
    pub max_elements: usize,
}

impl Limits {
    /// Element count of `shape`, or an error if it overflows or passes the cap.
    pub fn numel(&self, shape: &[usize]) -> Result<usize, String> {
        let too_big = || format!("shape {shape:?} has more than {} elements (limit)", self.max_elements);
        let mut n: usize = 1;
        for &d in shape {
            // Every dim is capped too, so that sums of dims and pads never overflow.
            if d > self.max_elements {
                return Err(too_big());
            }
            n = n.checked_mul(d).ok_or_else(too_big)?;
        }
        if n > self.max_elements {
            return Err(too_big());
        }
        Ok(n)
    }
}

/// Element storage of a constant.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F(Arc<Tensor>),
    I { shape: Vec<usize>, data: Vec<i64> },
}

/// A constant tensor and its ONNX element type.
#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    pub ty: i32,
    pub data: Data,
}

impl Const {
    /// An f32 constant.
    pub fn f32(t: Tensor) -> Const {
        Const { ty: dt::FLOAT, data: Data::F(Arc::new(t)) }
    }
    /// A float constant of float type `ty`, from shape and values (lengths agree).
    pub fn floats(ty: i32, shape: Vec<usize>, data: Vec<f32>) -> Const {
        let t = Tensor::new(shape, data).expect("shape and data lengths agree");
        Const { ty, data: Data::F(Arc::new(t)) }
    }
    /// An f32 constant sharing `t` (a weight held by reference).
    pub fn shared(t: Arc<Tensor>) -> Const {
        Const { ty: dt::FLOAT, data: Data::F(t) }
    }
    /// An integer constant of integer type `ty`.
    pub fn ints(ty: i32, shape: Vec<usize>, data: Vec<i64>) -> Const {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Const { ty, data: Data::I { shape, data } }
    }
    /// A 1-D int64 constant.
    pub fn i64_vec(v: Vec<i64>) -> Const {
        Const::ints(dt::INT64, vec![v.len()], v)
    }

    pub fn shape(&self) -> &[usize] {
        match &self.data {
            Data::F(t) => t.shape(),
            Data::I { shape, .. } => shape,
        }
    }
    pub fn numel(&self) -> usize {
        match &self.data {
            Data::F(t) => t.numel(),
            Data::I { data, .. } => data.len(),
        }
    }
    pub fn is_float(&self) -> bool {
        matches!(self.data, Data::F(_))
    }

    /// The f32 tensor of a float constant.
    pub fn tensor(&self) -> Option<&Arc<Tensor>> {
        match &self.data {
            Data::F(t) => Some(t),
            Data::I { .. } => None,
        }
    }

    /// Values as i64 (floats are truncated toward zero).
    pub fn to_i64(&self) -> Vec<i64> {
        match &self.data {
            Data::F(t) => t.data().iter().map(|&v| f2i(v)).collect(),
            Data::I { data, .. } => data.clone(),
        }
    }

    /// Values as f32.
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            Data::F(t) => t.data().to_vec(),
            Data::I { data, .. } => data.iter().map(|&v| v as f32).collect(),
        }
    }

    /// Integer values of an integer constant, or an error naming `what`.
    pub fn ints_of(&self, what: &str) -> Result<Vec<i64>, String> {
        match &self.data {
            Data::I { data, .. } => Ok(data.clone()),
            Data::F(_) => Err(format!("{what} must be an integer tensor, got {}", dt::name(self.ty))),
        }
    }

    /// The single value of a one-element constant, as f32.
    pub fn scalar_f32(&self, what: &str) -> Result<f32, String> {
        if self.numel() != 1 {
            return Err(format!("{what} must hold one value, has shape {:?}", self.shape()));
        }
        Ok(self.to_f32()[0])
    }

    /// The same values under a new shape (same element count).
    pub fn reshaped(&self, shape: Vec<usize>) -> Const {
        match &self.data {
            Data::F(t) => Const::floats(self.ty, shape, t.data().to_vec()),
            Data::I { data, .. } => Const::ints(self.ty, shape, data.clone()),
        }
    }

    /// A new constant of this one's type whose element `i` is element
    /// `idx[i]` of this one.
    pub fn gather_flat(&self, idx: &[usize], shape: Vec<usize>) -> Const {
        match &self.data {
            Data::F(t) => {
                let d = t.data();
                Const::floats(self.ty, shape, idx.iter().map(|&i| d[i]).collect())
            }
            Data::I { data, .. } => Const::ints(self.ty, shape, idx.iter().map(|&i| data[i]).collect()),
        }
    }

    /// This constant converted to element type `to`.
    pub fn cast(&self, to: i32) -> Result<Const, String> {
        let shape = self.shape().to_vec();
        if dt::is_float(to) {
            let mut v = self.to_f32();
            match to {
                dt::FLOAT16 => v.iter_mut().for_each(|x| *x = f16_to_f32(f32_to_f16(*x))),
                dt::BFLOAT16 => v.iter_mut().for_each(|x| *x = f32::from_bits(x.to_bits() & 0xffff_0000)),
                _ => {}
            }
            Ok(Const::floats(to, shape, v))
        } else if dt::is_int(to) {
            let v: Vec<i64> = match &self.data {
                Data::F(t) if to == dt::BOOL => t.data().iter().map(|&x| (x != 0.0) as i64).collect(),
                _ => self.to_i64(),
            };
            Ok(Const::ints(to, shape, v.into_iter().map(|x| wrap_int(x, to)).collect()))
        } else {
            Err(format!("cast to {} is not supported", dt::name(to)))
        }
    }
}

/// f32 → i64 truncation toward zero, saturating (NaN → 0).
pub fn f2i(v: f32) -> i64 {
    v as i64
}

/// Wraps an i64 into the range of integer type `ty`.
pub fn wrap_int(x: i64, ty: i32) -> i64 {
    match ty {
        dt::BOOL => (x != 0) as i64,
        dt::UINT8 => x as u8 as i64,
        dt::INT8 => x as i8 as i64,
        dt::UINT16 => x as u16 as i64,
        dt::INT16 => x as i16 as i64,
        dt::INT32 => x as i32 as i64,
        dt::UINT32 => x as u32 as i64,
        _ => x,
    }
}

/// Decodes an ONNX tensor into a constant, checking dims, lengths and limits.
pub fn from_proto(t: &TensorProto, lim: &Limits) -> Result<Const, String> {
    let ty = t.data_type.unwrap_or(0);
    if t.data_location == Some(1) || !t.external_data.is_empty() {
        return Err("external data is not supported (embed the weights in the .onnx file)".into());
    }
    if t.segment.is_some() {
        return Err("segmented tensors are not supported".into());
    }
    let mut shape = Vec::with_capacity(t.dims.len().min(64));
    for &d in &t.dims {
        if d < 0 {
            return Err(format!("negative dimension {d} in {:?}", t.dims));
        }
        shape.push(usize::try_from(d).map_err(|_| format!("dimension {d} too large"))?);
    }
    let n = lim.numel(&shape)?;
    let raw = t.raw_data.as_deref();
    let width = match ty {
        dt::FLOAT | dt::INT32 | dt::UINT32 => 4,
        dt::DOUBLE | dt::INT64 | dt::UINT64 => 8,
        dt::FLOAT16 | dt::BFLOAT16 | dt::INT16 | dt::UINT16 => 2,
        dt::INT8 | dt::UINT8 | dt::BOOL => 1,
        0 => return Err("tensor has no data type".into()),
        other => return Err(format!("{} tensors are not supported", dt::name(other))),
    };
    let count = |got: usize| -> Result<(), String> {
        if got == n {
            Ok(())
        } else {
            Err(format!("holds {got} values, its shape {shape:?} needs {n}"))
        }
    };
    if let Some(raw) = raw {
        if raw.len() != n.saturating_mul(width) {
            return Err(format!("raw data has {} bytes, shape {shape:?} of {} needs {}", raw.len(), dt::name(ty), n.saturating_mul(width)));
        }
        // Literal chunk widths let the compiler vectorise these loops.
        return Ok(match ty {
            dt::FLOAT => Const::floats(ty, shape, raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            dt::DOUBLE => Const::floats(ty, shape, raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect()),
            dt::FLOAT16 => Const::floats(ty, shape, raw.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect()),
            dt::BFLOAT16 => Const::floats(ty, shape, raw.chunks_exact(2).map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)).collect()),
            dt::INT64 | dt::UINT64 => Const::ints(ty, shape, raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()),
            dt::INT32 => Const::ints(ty, shape, raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect()),
            dt::UINT32 => Const::ints(ty, shape, raw.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect()),
            dt::INT16 => Const::ints(ty, shape, raw.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as i64).collect()),
            dt::UINT16 => Const::ints(ty, shape, raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as i64).collect()),
            dt::INT8 => Const::ints(ty, shape, raw.iter().map(|&b| b as i8 as i64).collect()),
            dt::UINT8 => Const::ints(ty, shape, raw.iter().map(|&b| b as i64).collect()),
            dt::BOOL => Const::ints(ty, shape, raw.iter().map(|&b| (b != 0) as i64).collect()),
            _ => unreachable!("width matched above"),
        });
    }
    Ok(match ty {
        dt::FLOAT => {
            count(t.float_data.len())?;
            Const::floats(ty, shape, t.float_data.clone())
        }
        dt::DOUBLE => {
            count(t.double_data.len())?;
            Const::floats(ty, shape, t.double_data.iter().map(|&v| v as f32).collect())
        }
        dt::FLOAT16 => {
            count(t.int32_data.len())?;
            Const::floats(ty, shape, t.int32_data.iter().map(|&v| f16_to_f32(v as u16)).collect())
        }
        dt::BFLOAT16 => {
            count(t.int32_data.len())?;
            Const::floats(ty, shape, t.int32_data.iter().map(|&v| f32::from_bits((v as u32) << 16)).collect())
        }
        dt::INT64 => {
            count(t.int64_data.len())?;
            Const::ints(ty, shape, t.int64_data.clone())
        }
        dt::UINT32 | dt::UINT64 => {
            count(t.uint64_data.len())?;
            Const::ints(ty, shape, t.uint64_data.iter().map(|&v| wrap_int(v as i64, ty)).collect())
        }
        _ => {
            count(t.int32_data.len())?;
            Const::ints(ty, shape, t.int32_data.iter().map(|&v| wrap_int(v as i64, ty)).collect())
        }
    })
}

/// An f32 tensor from an ONNX tensor of any float type.
pub fn tensor_from_proto(t: &TensorProto, lim: &Limits) -> Result<Tensor, String> {
    let c = from_proto(t, lim)?;
    match c.data {
        Data::F(t) => Ok(Arc::try_unwrap(t).unwrap_or_else(|a| (*a).clone())),
        Data::I { .. } => Err(format!("expected a float tensor, got {}", dt::name(c.ty))),
    }
}

/// Transpose of a 2-D tensor.
pub fn transpose2(t: &Tensor) -> Tensor {
    let (r, c) = (t.shape()[0], t.shape()[1]);
    let d = t.data();
    let mut out = vec![0f32; r * c];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = d[i * c + j];
        }
    }
    Tensor::new(vec![c, r], out).expect("same element count")
}

/// For every element of `out` (C order), the flat index of the element of a
/// tensor of shape `inp` that broadcasts to it.
pub fn broadcast_index(out: &[usize], inp: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    let rank = out.len();
    let off = rank - inp.len();
    let st = strides(inp);
    // Stride per output axis (0 where the input broadcasts).
    let bs: Vec<usize> = (0..rank).map(|d| if d < off || inp[d - off] == 1 { 0 } else { st[d - off] }).collect();
    let mut idx = Vec::with_capacity(n);
    let mut pos = vec![0usize; rank];
    let mut cur = 0usize;
    for _ in 0..n {
        idx.push(cur);
        for d in (0..rank).rev() {
            pos[d] += 1;
            cur += bs[d];
            if pos[d] < out[d] {
                break;
            }
            cur -= bs[d] * pos[d];
            pos[d] = 0;
        }
    }
    idx
}

/// Flat source indices of a transpose by `perm`.
pub fn transpose_index(shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let st = strides(shape);
    let ps: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    (strided_index(&out, &ps, 0), out)
}

/// Flat indices `base + sum(pos[d] * st[d])` over all positions of `out`.
pub fn strided_index(out: &[usize], st: &[usize], base: usize) -> Vec<usize> {
    let n: usize = out.iter().product();
    let mut idx = Vec::with_capacity(n);
    let rank = out.len();
    let mut pos = vec![0usize; rank];
    let mut cur = base;
    for _ in 0..n {
        idx.push(cur);
        for d in (0..rank).rev() {
            pos[d] += 1;
            cur += st[d];
            if pos[d] < out[d] {
                break;
            }
            cur -= st[d] * pos[d];
            pos[d] = 0;
        }
    }
    idx
}

/// Multidirectional broadcast of two shapes, with the limit applied.
pub fn broadcast_shapes(a: &[usize], b: &[usize], lim: &Limits) -> Result<Vec<usize>, String> {
    let s = broadcast(a, b)?;
    lim.numel(&s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_and_transpose_indices() {
        assert_eq!(broadcast_index(&[2, 3], &[3]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(broadcast_index(&[2, 3], &[2, 1]), vec![0, 0, 0, 1, 1, 1]);
        let (idx, out) = transpose_index(&[2, 3], &[1, 0]);
        assert_eq!(out, vec![3, 2]);
        assert_eq!(idx, vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn limits_catch_overflow() {
        let lim = Limits { max_elements: 1000 };
        assert_eq!(lim.numel(&[10, 10]).unwrap(), 100);
        assert!(lim.numel(&[1 << 40, 1 << 40]).is_err());
        assert!(lim.numel(&[2000]).is_err());
        assert!(lim.numel(&[0, usize::MAX]).is_err());
        assert_eq!(lim.numel(&[0, 5]).unwrap(), 0);
        assert!(lim.numel(&[1000, 1000, 0]).is_ok());
    }
}
