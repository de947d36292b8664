//! Constant data on the device: weights (uploaded once per device and
//! layout: tiles of one layer compiled as separate sub-graphs share the
//! same `Arc<Tensor>` and so the same buffer), biases and index tables, in
//! f32 or, for weights on the f16 path, IEEE half precision.

use std::sync::{Arc, Mutex, Weak};

use tessera_graph::Tensor;
use wgpu::util::DeviceExt;

/// Element type of an uploaded array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Elem {
    F32,
    F16,
}

/// Uploads `values` as a read-only storage buffer (zero-padded to 16 bytes).
pub(crate) fn upload_f32(device: &wgpu::Device, label: &str, values: &[f32], elem: Elem) -> wgpu::Buffer {
    let mut bytes: Vec<u8> = match elem {
        Elem::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Elem::F16 => values.iter().flat_map(|v| f32_to_f16(*v).to_le_bytes()).collect(),
    };
    upload_bytes(device, label, &mut bytes)
}

/// Uploads i32 values (index tables).
pub(crate) fn upload_i32(device: &wgpu::Device, label: &str, values: &[i32]) -> wgpu::Buffer {
    let mut bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    upload_bytes(device, label, &mut bytes)
}

fn upload_bytes(device: &wgpu::Device, label: &str, bytes: &mut Vec<u8>) -> wgpu::Buffer {
    let len = bytes.len().max(16).div_ceil(16) * 16;
    bytes.resize(len, 0);
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents: bytes, usage: wgpu::BufferUsages::STORAGE })
}

/// Uploaded weights keyed by the tensor they came from and the layout they
/// were transformed to. Holds them weakly: a buffer lives as long as some
/// executable uses it.
#[derive(Default)]
pub(crate) struct WeightCache {
    entries: Mutex<Vec<Entry>>,
}

struct Entry {
    source: Weak<Tensor>,
    layout: String,
    buffer: Weak<wgpu::Buffer>,
}

impl WeightCache {
    /// The buffer for `source` in `layout`, made by `make` if not cached.
    pub fn get_or_upload(&self, source: &Arc<Tensor>, layout: &str, make: impl FnOnce() -> wgpu::Buffer) -> Arc<wgpu::Buffer> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| e.source.strong_count() > 0 && e.buffer.strong_count() > 0);
        for e in entries.iter() {
            if e.layout == layout
                && e.source.upgrade().is_some_and(|s| Arc::ptr_eq(&s, source))
                && let Some(b) = e.buffer.upgrade()
            {
                return b;
            }
        }
        let b = Arc::new(make());
        entries.push(Entry { source: Arc::downgrade(source), layout: layout.to_string(), buffer: Arc::downgrade(&b) });
        b
    }
}

/// IEEE 754 binary16 bits of `x`, rounded to nearest even.
pub(crate) fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        // Inf / NaN (keep NaN quiet).
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // Subnormal half (or zero).
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1 << shift) - 1);
        let mut h = m >> shift;
        if rest > half || (rest == half && h & 1 == 1) {
            h += 1;
        }
        return sign | h as u16;
    }
    let mut h = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
        h += 1; // may carry into the exponent: still correct (up to inf)
    }
    sign | h as u16
}

/// The f32 value of binary16 bits (for tests).
#[cfg(test)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let e = ((h >> 10) & 0x1f) as i32;
    let m = (h & 0x3ff) as f32;
    sign * match e {
        0 => m * 2f32.powi(-24),
        0x1f => {
            if m == 0.0 {
                f32::INFINITY
            } else {
                f32::NAN
            }
        }
        _ => (1.0 + m / 1024.0) * 2f32.powi(e - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_round_trip_is_within_half_an_ulp() {
        for &x in &[0.0f32, 1.0, -1.0, 0.1, 2.71, 65504.0, 1e-5, -2.5e-6, 6.1e-5, 1234.5678] {
            let y = f16_to_f32(f32_to_f16(x));
            let tol = x.abs() * (1.0 / 2048.0) + 2f32.powi(-25);
            assert!((x - y).abs() <= tol, "{x} -> {y}");
        }
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(-2.0), 0xc000);
        assert_eq!(f32_to_f16(1e6), 0x7c00);
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
    }
}
