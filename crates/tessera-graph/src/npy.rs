//! `.npy` (NumPy format 1.0/2.0/3.0) encoding and decoding of f32 C-order
//! tensors: the tensor file format of every Tessera command.
//! Bytes only; file handling stays at the CLI edge.

use crate::error::{GraphError, Result};
use crate::tensor::Tensor;

const MAGIC: &[u8] = b"\x93NUMPY";

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(GraphError::Npy(msg.into()))
}

/// Decodes an `.npy` byte string holding little-endian f32 in C order.
pub fn decode(bytes: &[u8]) -> Result<Tensor> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return err("not an .npy file (bad magic)");
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return err("truncated header");
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return err(format!("unsupported .npy version {v}")),
    };
    let end = start.checked_add(header_len).filter(|e| *e <= bytes.len());
    let Some(end) = end else { return err("truncated header") };
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| GraphError::Npy("header is not text".into()))?;
    let descr = dict_value(header, "descr").ok_or_else(|| GraphError::Npy("header has no 'descr'".into()))?;
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    if descr != "<f4" && descr != "f4" && descr != "=f4" {
        return err(format!("dtype {descr} is not f32 (<f4); convert with .astype(np.float32)"));
    }
    let fortran = dict_value(header, "fortran_order").ok_or_else(|| GraphError::Npy("header has no 'fortran_order'".into()))?;
    if fortran.trim() != "False" {
        return err("Fortran-order arrays are not supported; save with np.ascontiguousarray");
    }
    let shape_txt = dict_value(header, "shape").ok_or_else(|| GraphError::Npy("header has no 'shape'".into()))?;
    let shape = parse_shape(shape_txt)?;
    let count = shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d)).ok_or_else(|| GraphError::Npy("shape overflows".into()))?;
    let payload = &bytes[end..];
    if payload.len() != count.saturating_mul(4) || count.checked_mul(4).is_none() {
        return err(format!("shape {shape:?} needs {count} f32 values, file holds {} bytes", payload.len()));
    }
    let data = payload.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Tensor::new(shape, data)
}

/// Encodes a tensor as `.npy` version 1.0, `<f4`, C order.
pub fn encode(t: &Tensor) -> Vec<u8> {
    let shape = match t.shape().len() {
        0 => "()".to_string(),
        1 => format!("({},)", t.shape()[0]),
        _ => format!("({})", t.shape().iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so that the data starts on a 64-byte boundary, header ends in '\n'.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + t.bytes());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in t.data() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// The raw text of `key`'s value in a Python dict literal (up to the next
/// top-level comma or closing brace).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat_a = format!("'{key}'");
    let pat_b = format!("\"{key}\"");
    let pos = header.find(&pat_a).map(|p| p + pat_a.len()).or_else(|| header.find(&pat_b).map(|p| p + pat_b.len()))?;
    let rest = header[pos..].trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(&rest[..i]),
            _ => {}
        }
        if depth < 0 {
            return None;
        }
    }
    None
}

fn parse_shape(txt: &str) -> Result<Vec<usize>> {
    let inner = txt.trim().strip_prefix('(').and_then(|s| s.strip_suffix(')'));
    let Some(inner) = inner else { return err(format!("bad shape {txt}")) };
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>().map_err(|_| GraphError::Npy(format!("bad shape {txt}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_shapes() {
        for shape in [vec![], vec![3], vec![1, 3, 4, 5], vec![0, 2]] {
            let n: usize = shape.iter().product();
            let t = Tensor::new(shape.clone(), (0..n).map(|v| v as f32 * 0.5).collect()).unwrap();
            let bytes = encode(&t);
            assert_eq!((bytes.len() - t.bytes()) % 64, 0);
            assert_eq!(decode(&bytes).unwrap(), t);
        }
    }

    #[test]
    fn rejects_other_dtypes_and_garbage() {
        let t = Tensor::zeros(&[2]);
        let good = encode(&t);
        let swap = |from: &str, to: &str| {
            let at = good.windows(from.len()).position(|w| w == from.as_bytes()).unwrap();
            let mut b = good.clone();
            b[at..at + to.len()].copy_from_slice(to.as_bytes());
            b
        };
        assert!(decode(&swap("<f4", "<f8")).unwrap_err().to_string().contains("not f32"));
        assert!(decode(&swap("False", "True ")).unwrap_err().to_string().contains("Fortran"));
        assert!(decode(b"hello").is_err());
        assert!(decode(&good[..good.len() - 1]).is_err());
        // Every truncation and every single-byte mutation is an error or a
        // valid tensor, never a panic.
        for cut in 0..good.len() {
            let _ = decode(&good[..cut]);
        }
        for i in 0..good.len() {
            for v in [0u8, b'(', b')', b',', 0xff, b'9'] {
                let mut m = good.clone();
                m[i] = v;
                let _ = decode(&m);
            }
        }
    }

    #[test]
    fn reads_numpy_written_header() {
        // Header exactly as numpy 2.x writes it for np.zeros((1,2), np.float32).
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }";
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[1, 0]);
        let padded = format!("{header}{}\n", " ".repeat(128 - 10 - header.len() - 1));
        b.extend_from_slice(&(padded.len() as u16).to_le_bytes());
        b.extend_from_slice(padded.as_bytes());
        b.extend_from_slice(&[0u8; 8]);
        assert_eq!(decode(&b).unwrap().shape(), &[1, 2]);
    }
}
