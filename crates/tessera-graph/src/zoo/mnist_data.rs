//! The bundled MNIST test digits (IDX format), decoded into model inputs.

use super::mnist::{TEST_IMAGES, TEST_LABELS};
use crate::error::{GraphError, Result};
use crate::tensor::Tensor;

/// One MNIST digit as LeNet's input `[1, 1, 28, 28]` (pixel / 255) and its label.
#[derive(Clone, Debug)]
pub struct Digit {
    pub image: Tensor,
    pub label: u8,
}

fn be_u32(b: &[u8], at: usize) -> Result<usize> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
        .ok_or_else(|| GraphError::Invalid("IDX file truncated".into()))
}

/// Decodes an IDX3 image file and IDX1 label file of 28x28 digits.
pub fn decode_idx(images: &[u8], labels: &[u8]) -> Result<Vec<Digit>> {
    if be_u32(images, 0)? != 0x803 || be_u32(labels, 0)? != 0x801 {
        return Err(GraphError::Invalid("not an MNIST IDX image/label pair (bad magic)".into()));
    }
    let (n, rows, cols) = (be_u32(images, 4)?, be_u32(images, 8)?, be_u32(images, 12)?);
    if be_u32(labels, 4)? != n || rows != 28 || cols != 28 {
        return Err(GraphError::Invalid(format!("IDX pair holds {n} {rows}x{cols} images but {} labels", be_u32(labels, 4)?)));
    }
    let px = images.get(16..16 + n * 784).ok_or_else(|| GraphError::Invalid("IDX images truncated".into()))?;
    let lb = labels.get(8..8 + n).ok_or_else(|| GraphError::Invalid("IDX labels truncated".into()))?;
    px.chunks_exact(784)
        .zip(lb)
        .map(|(img, &label)| {
            let data = img.iter().map(|&p| p as f32 / 255.0).collect();
            Ok(Digit { image: Tensor::new(vec![1, 1, 28, 28], data)?, label })
        })
        .collect()
}

/// The first 1000 digits of the MNIST test set, bundled in the binary.
pub fn test_digits() -> Result<Vec<Digit>> {
    decode_idx(TEST_IMAGES, TEST_LABELS)
}
