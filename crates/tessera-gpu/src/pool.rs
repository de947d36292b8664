//! Activation memory: slot planning at compile time and the per-device
//! buffer pool.
//!
//! An executable's intermediate values are assigned to slots by a lifetime
//! scan (a slot is free again after the last reader of its value has run),
//! and every slot is backed by a pool buffer of its size class. The pool is
//! shared by all executables on a device: the k-th slot of a size class in
//! any executable uses the k-th buffer of that class. Sharing is safe because
//! every run writes its inputs, computes and copies its outputs out within
//! one queue submission, and submissions of different executables never
//! interleave (the context's submit lock): values never live across runs.

use std::collections::HashMap;
use std::sync::Mutex;

/// Rounds `bytes` up to its size class: multiples of 256 bytes, then the
/// quarter steps between powers of two (at most 25 % slack).
pub(crate) fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(256).div_ceil(256) * 256;
    if b <= 4096 {
        return b;
    }
    let p = 1u64 << (63 - b.leading_zeros()); // largest power of two <= b
    let step = p / 4;
    b.div_ceil(step) * step
}

/// The device-wide pool of activation buffers, by size class.
#[derive(Default)]
pub(crate) struct BufferPool {
    classes: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
}

impl BufferPool {
    /// The `nth` buffer of size class `class` (created on first request).
    pub fn get(&self, device: &wgpu::Device, class: u64, nth: usize) -> wgpu::Buffer {
        let mut map = self.classes.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.entry(class).or_default();
        while list.len() <= nth {
            list.push(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("tessera activations"),
                size: class,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        list[nth].clone()
    }

    /// Bytes held by the pool.
    pub fn bytes(&self) -> u64 {
        let map = self.classes.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(c, v)| c * v.len() as u64).sum()
    }
}

/// Slot assignment by lifetimes, as the CPU backend does it.
#[derive(Default)]
pub(crate) struct SlotPlanner {
    /// Bytes each slot must hold.
    pub bytes: Vec<u64>,
    free: Vec<usize>,
}

impl SlotPlanner {
    /// A free slot for `bytes`: the smallest that fits, else the largest
    /// (grown), else a new one.
    pub fn take(&mut self, bytes: u64) -> usize {
        let fit = self.free.iter().enumerate().filter(|(_, s)| self.bytes[**s] >= bytes).min_by_key(|(_, s)| self.bytes[**s]).map(|(i, _)| i);
        let pick = fit.or_else(|| self.free.iter().enumerate().max_by_key(|(_, s)| self.bytes[**s]).map(|(i, _)| i));
        let slot = match pick {
            Some(i) => self.free.swap_remove(i),
            None => {
                self.bytes.push(0);
                self.bytes.len() - 1
            }
        };
        self.bytes[slot] = self.bytes[slot].max(bytes);
        slot
    }

    /// Returns a slot to the free list.
    pub fn release(&mut self, slot: usize) {
        if !self.free.contains(&slot) {
            self.free.push(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_bound_the_slack() {
        for bytes in [1u64, 255, 256, 257, 4096, 4097, 10_000, 1 << 20, (1 << 20) + 1, 123_456_789] {
            let c = size_class(bytes);
            assert!(c >= bytes && c.is_multiple_of(256), "{bytes} -> {c}");
            assert!(c as f64 <= (bytes.max(256) as f64) * 1.26 + 256.0, "{bytes} -> {c}");
        }
        assert_eq!(size_class(1 << 20), 1 << 20);
    }

    #[test]
    fn slots_are_reused_after_release() {
        let mut p = SlotPlanner::default();
        let a = p.take(100);
        let b = p.take(200);
        p.release(a);
        let c = p.take(50);
        assert_eq!(c, a);
        p.release(b);
        p.release(c);
        let d = p.take(1000);
        assert_eq!(p.bytes[d], 1000);
        assert_eq!(p.bytes.len(), 2);
    }
}
