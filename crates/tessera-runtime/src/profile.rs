//! Self-profiling: measure this device's latency per op class on layers of
//! increasing size, in the table format of [`tessera_plan::DeviceProfile`].
//! `tessera profile` writes it to a file; the browser peer runs the same
//! code (with `performance.now()` as the clock) and sends it in its Hello.

use std::collections::BTreeMap;
use std::sync::Arc;

use tessera_graph::op::{Activation, Conv, Dense, Op, Pool};
use tessera_graph::rng::Rng;
use tessera_graph::{Graph, Tensor};
use tessera_kernels::Backend;
use tessera_plan::device::{DeviceProfile, LatencyTable, OpClass};

use crate::error::Result;

/// How hard to try.
#[derive(Clone, Copy, Debug)]
pub struct ProfileConfig {
    /// Sizes per op class (more: a finer table).
    pub sizes: usize,
    /// Runs per size (the median is kept).
    pub repeats: usize,
    /// Largest work per layer, FLOPs (keeps slow devices from stalling).
    pub max_flops: f64,
}

impl ProfileConfig {
    /// A quick profile (~1 s on a laptop): for browsers joining a room.
    pub fn quick() -> ProfileConfig {
        ProfileConfig { sizes: 5, repeats: 3, max_flops: 2e9 }
    }
    /// The full profile `tessera profile` writes.
    pub fn full() -> ProfileConfig {
        ProfileConfig { sizes: 9, repeats: 5, max_flops: 2e10 }
    }
}

/// A one-layer graph of class `class` whose work grows with `s` in [0, 1].
fn layer(class: OpClass, s: f64, rng: &mut Rng) -> Result<Graph> {
    let mut g = Graph::new(format!("{class:?}"));
    let hw = |lo: f64, hi: f64| (lo * (hi / lo).powf(s)).round() as usize;
    let w = |rng: &mut Rng, shape: &[usize]| Arc::new(Tensor::new(shape.to_vec(), rng.fill(shape.iter().product(), 0.1)).unwrap());
    let conv = |ci: usize, co: usize, k: usize, groups: usize, rng: &mut Rng| Conv {
        weight: w(rng, &[co, ci / groups, k, k]),
        bias: Some(w(rng, &[co])),
        stride: [1, 1],
        pads: [k / 2; 4],
        dilation: [1, 1],
        groups,
        act: Activation::Relu,
    };
    let out = match class {
        OpClass::Conv => {
            let (c, h) = (hw(8.0, 128.0), hw(8.0, 112.0));
            let x = g.input("x", &[1, c, h, h])?;
            g.add("op", Op::Conv(conv(c, c, 3, 1, rng)), &[x])?
        }
        OpClass::Pointwise => {
            let (c, h) = (hw(16.0, 512.0), hw(7.0, 56.0));
            let x = g.input("x", &[1, c, h, h])?;
            g.add("op", Op::Conv(conv(c, c, 1, 1, rng)), &[x])?
        }
        OpClass::Depthwise => {
            let (c, h) = (hw(16.0, 384.0), hw(7.0, 112.0));
            let x = g.input("x", &[1, c, h, h])?;
            g.add("op", Op::Conv(conv(c, c, 3, c, rng)), &[x])?
        }
        OpClass::Dense => {
            let (i, o) = (hw(64.0, 8192.0), hw(64.0, 4096.0));
            let x = g.input("x", &[1, i])?;
            g.add("op", Op::Dense(Dense { weight: w(rng, &[o, i]), bias: Some(w(rng, &[o])), act: Activation::Relu }), &[x])?
        }
        OpClass::Pool => {
            let (c, h) = (hw(8.0, 256.0), hw(8.0, 112.0) * 2);
            let x = g.input("x", &[1, c, h, h])?;
            g.add("op", Op::MaxPool(Pool::square(2, 2, 0)), &[x])?
        }
        OpClass::Eltwise => {
            let (c, h) = (hw(8.0, 256.0), hw(8.0, 112.0));
            let x = g.input("x", &[1, c, h, h])?;
            g.add("op", Op::Act(Activation::Relu), &[x])?
        }
    };
    g.set_outputs(&[out])?;
    Ok(g)
}

/// Measures `backend` into a profile named `name` with `memory_mb` of RAM.
/// Synchronous: for backends whose runs complete at once (the CPU; the GPU
/// natively). The browser's WebGPU needs [`measure_async`].
pub fn measure(backend: &dyn Backend, name: &str, memory_mb: f64, cfg: ProfileConfig, clock: &dyn Fn() -> f64) -> Result<DeviceProfile> {
    tessera_kernels::ready_now(measure_async(backend, name, memory_mb, cfg, clock))
        .unwrap_or_else(|| Err(crate::error::RuntimeError::Protocol(format!("{} completes runs asynchronously: profile it with measure_async", backend.name()))))
}

/// [`measure`] for any backend, awaiting each run (`Executable::run_async`).
pub async fn measure_async(backend: &dyn Backend, name: &str, memory_mb: f64, cfg: ProfileConfig, clock: &dyn Fn() -> f64) -> Result<DeviceProfile> {
    let mut rng = Rng::new(99);
    let mut ops = BTreeMap::new();
    for class in OpClass::ALL {
        let mut points: Vec<(f64, f64)> = Vec::new();
        for i in 0..cfg.sizes {
            let s = i as f64 / (cfg.sizes - 1).max(1) as f64;
            let g = layer(class, s, &mut rng)?;
            let flops = tessera_graph::cost_table(&g).total.flops() as f64;
            if flops > cfg.max_flops && !points.is_empty() {
                break;
            }
            let mut exe = backend.compile(&g)?;
            let shape = g.input_shape().to_vec();
            let x = Tensor::new(shape.clone(), rng.fill(shape.iter().product(), 1.0))?;
            let x = std::slice::from_ref(&x);
            exe.run_async(x).await?; // warm-up
            let mut times = Vec::with_capacity(cfg.repeats.max(1));
            for _ in 0..cfg.repeats.max(1) {
                let t = clock();
                exe.run_async(x).await?;
                times.push(clock() - t);
            }
            times.sort_by(f64::total_cmp);
            let ms = times[times.len() / 2].max(1e-4);
            if points.last().is_none_or(|p| flops > p.0) {
                points.push((flops, ms));
            }
        }
        // Latency never falls as work grows (keeps splits' searches monotone).
        for k in 1..points.len() {
            points[k].1 = points[k].1.max(points[k - 1].1);
        }
        ops.insert(class, LatencyTable { points });
    }
    let p = DeviceProfile {
        name: name.to_string(),
        source: format!("measured with {} by tessera profile", backend.name()),
        memory_mb,
        reserved_mb: (memory_mb * 0.25).min(2048.0),
        task_overhead_ms: 0.05,
        ops,
    };
    p.validate().map_err(|e| crate::error::RuntimeError::Protocol(e))?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measured_profile_is_valid_and_grows_with_work() {
        let start = std::time::Instant::now();
        let clock = move || start.elapsed().as_secs_f64() * 1e3;
        let cfg = ProfileConfig { sizes: 3, repeats: 1, max_flops: 2e8 };
        let p = measure(&tessera_kernels::CpuBackend::new(1), "test", 1024.0, cfg, &clock).unwrap();
        for t in p.ops.values() {
            assert!(t.points.len() >= 2);
            assert!(t.points.windows(2).all(|w| w[1].0 > w[0].0 && w[1].1 >= w[0].1));
        }
    }
}
