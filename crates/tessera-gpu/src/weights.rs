//! Constant data on the device: weights (uploaded once per device and
//! layout: tiles of one layer compiled as separate sub-graphs share the
//! same `Arc<Tensor>` and so the same buffer), biases and index tables, in
//! f32 or, for weights on the f16 path, IEEE half precision.

use std::sync::{Arc, Mutex, Weak};

use tessera_graph::half::f32_to_f16;

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
