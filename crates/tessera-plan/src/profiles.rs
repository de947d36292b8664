//! Built-in device profiles for the seeds' devices, derived from published
//! whole-model latencies (`shared/device-figures.md`). Each becomes a per-op
//! latency table with the shape real devices show: small kernels run far
//! below peak (launch cost, occupancy), 1×1 and depthwise convolutions run
//! below 3×3 ones, dense layers at batch 1 are bound by memory bandwidth.

use std::collections::BTreeMap;

use crate::device::{DeviceProfile, LatencyTable, OpClass};

/// The parameters a built-in profile is generated from.
#[derive(Clone, Copy, Debug)]
pub struct Anchor {
    pub name: &'static str,
    /// Effective GFLOP/s on large 3×3 convolutions (the whole-model figure).
    pub conv_gflops: f64,
    /// Effective memory bandwidth in GB/s (bounds dense and element-wise ops).
    pub mem_gbps: f64,
    /// Work (FLOPs) at which a kernel reaches ~70 % of its peak rate.
    pub half_flops: f64,
    /// Minimum latency of any kernel.
    pub floor_ms: f64,
    /// Fixed cost per task (receive, dispatch).
    pub task_overhead_ms: f64,
    pub memory_mb: f64,
    pub reserved_mb: f64,
    /// Depthwise-conv efficiency relative to 3x3 convs (low arithmetic intensity).
    pub depthwise_factor: f64,
    /// Default link, Mbit/s, when a spec gives none.
    pub default_mbps: f64,
    /// The published whole-model latency the rates are calibrated to:
    /// a zoo model and its batch-1 latency in ms.
    pub model: &'static str,
    pub model_ms: f64,
    pub source: &'static str,
}

/// Every built-in profile. Rates are effective, from whole-model latencies.
pub const ANCHORS: &[Anchor] = &[
    Anchor {
        name: "pi3",
        // Inception-v3 1.98 s (TF) = 5.8 GFLOP/s; Tiny-YOLO 1.8 s (Darknet+NNPACK) = 3.9.
        conv_gflops: 5.0,
        mem_gbps: 2.0,
        half_flops: 2e6,
        // A Keras/TF layer costs ~0.6 ms on a Pi 3 however small: seed 000 Table II
        // measured 5.4 ms for LeNet (0.57 MFLOP in 9 kernels).
        floor_ms: 0.6,
        task_overhead_ms: 0.3,
        memory_mb: 1024.0,
        // Calibrated to seed 002: with Raspbian + a Python runtime resident, VGG16's
        // fc6 (411 MB f32) only runs in >= 4 H-partitions on a 1 GB Pi 3.
        reserved_mb: 790.0,
        depthwise_factor: 0.15,
        default_mbps: 94.1,
        source: "device-figures.md: Pi 3 B Inception-v3 1.98 s (samjabrahams/tensorflow-on-raspberry-pi), Tiny-YOLO 1.8 s (shizukachan/darknet-nnpack); Ethernet 94.1 Mbit/s, 0.4 ms (seed 001 §6)",
        // Calibrated to: Tiny-YOLO (VOC, 6.97 GFLOP) 1.8 s -> 1.4 s for yolov2-tiny's 5.41 GFLOP.
        model: "yolov2-tiny",
        model_ms: 1400.0,
    },
    Anchor {
        name: "pi4",
        // ResNet-50 263 ms (ncnn, 4 threads) = 31 GFLOP/s.
        conv_gflops: 31.0,
        mem_gbps: 4.0,
        half_flops: 3e6,
        floor_ms: 0.03,
        task_overhead_ms: 0.5,
        memory_mb: 4096.0,
        reserved_mb: 600.0,
        depthwise_factor: 0.15,
        default_mbps: 940.0,
        source: "device-figures.md: Pi 4 ResNet-50 263 ms, VGG16 547 ms (Tencent/ncnn benchmark); Ethernet 940 Mbit/s",
        // Calibrated to: VGG16 547 ms.
        model: "vgg16",
        model_ms: 547.0,
    },
    Anchor {
        name: "nano",
        // VGG16 85 ms fp16 TensorRT = 363 GFLOP/s (seed 004 runs TensorRT FP16).
        conv_gflops: 363.0,
        mem_gbps: 20.0,
        half_flops: 1.5e8,
        floor_ms: 0.04,
        task_overhead_ms: 0.3,
        memory_mb: 4096.0,
        reserved_mb: 1200.0,
        depthwise_factor: 0.08,
        default_mbps: 940.0,
        source: "device-figures.md: Jetson Nano VGG16 85 ms fp16 TensorRT (NVIDIA-AI-IOT/torch2trt), ResNet-50 79 ms fp32 TensorRT (kentaroy47)",
        // Calibrated to: VGG16 85 ms.
        model: "vgg16",
        model_ms: 85.0,
    },
    Anchor {
        name: "tx2",
        // VGG16 79 ms fp32 TensorRT = 390 GFLOP/s; fp16 peak is 2x fp32 (1330 vs 666) -> 780.
        conv_gflops: 780.0,
        mem_gbps: 45.0,
        half_flops: 3e8,
        floor_ms: 0.03,
        task_overhead_ms: 0.3,
        memory_mb: 8192.0,
        reserved_mb: 1500.0,
        depthwise_factor: 0.08,
        default_mbps: 940.0,
        source: "device-figures.md: Jetson TX2 VGG16 79 ms fp32 TensorRT (NVIDIA-AI-IOT/tf_to_trt_image_classification), x2 for fp16 peak",
        // Calibrated to: VGG16 79 ms fp32 -> 40 ms at the 2x fp16 rate.
        model: "vgg16",
        model_ms: 40.0,
    },
    Anchor {
        name: "xavier",
        // VGG16 7.5 ms fp16 TensorRT = 4120 GFLOP/s.
        conv_gflops: 4120.0,
        mem_gbps: 110.0,
        half_flops: 2e9,
        floor_ms: 0.02,
        task_overhead_ms: 0.2,
        memory_mb: 32768.0,
        reserved_mb: 2000.0,
        depthwise_factor: 0.08,
        default_mbps: 940.0,
        source: "device-figures.md: Jetson AGX Xavier VGG16 7.5 ms fp16 (NVIDIA-AI-IOT/torch2trt), ResNet-50 9.9 ms fp32 TensorRT",
        // Calibrated to: VGG16 7.5 ms.
        model: "vgg16",
        model_ms: 7.5,
    },
    Anchor {
        name: "phone",
        // Pixel 4 TF.js wasm+SIMD MobileNetV2 82 ms = 7.3 GFLOP/s in the browser.
        conv_gflops: 7.5,
        mem_gbps: 3.0,
        half_flops: 2e6,
        floor_ms: 0.05,
        task_overhead_ms: 1.0,
        memory_mb: 3072.0,
        reserved_mb: 2300.0,
        depthwise_factor: 0.3,
        default_mbps: 80.0,
        source: "device-figures.md: mid-range Android in browser (tfjs-backend-wasm README: Pixel 4 MobileNetV2 wasm+SIMD 82 ms); WiFi ~80 Mbit/s",
        // Calibrated to: MobileNetV2 82 ms.
        model: "mobilenetv2",
        model_ms: 82.0,
    },
    Anchor {
        name: "phone-gpu",
        // iPhone XS TF.js WebGL MobileNetV2 18 ms = 33 GFLOP/s.
        conv_gflops: 33.0,
        mem_gbps: 8.0,
        half_flops: 5e7,
        floor_ms: 0.1,
        task_overhead_ms: 1.0,
        memory_mb: 4096.0,
        reserved_mb: 3000.0,
        depthwise_factor: 0.2,
        default_mbps: 100.0,
        source: "device-figures.md: iPhone XS in browser, TF.js WebGL MobileNetV2 18 ms (tfjs-backend-wasm README)",
        // Calibrated to: MobileNetV2 18 ms.
        model: "mobilenetv2",
        model_ms: 18.0,
    },
    Anchor {
        name: "laptop",
        // Browser wasm+SIMD+threads MobileNetV2 10.3 ms = 58 GFLOP/s.
        conv_gflops: 58.0,
        mem_gbps: 10.0,
        half_flops: 5e6,
        floor_ms: 0.02,
        task_overhead_ms: 0.5,
        memory_mb: 8192.0,
        reserved_mb: 5000.0,
        depthwise_factor: 0.3,
        default_mbps: 300.0,
        source: "device-figures.md: laptop in browser, MobileNetV2 wasm+SIMD+threads 10.3 ms (tensorflow/tfjs)",
        // Calibrated to: MobileNetV2 10.3 ms.
        model: "mobilenetv2",
        model_ms: 10.3,
    },
    Anchor {
        name: "local",
        // A 2-core AVX-512 machine running Tessera's CPU kernels: ~70 GFLOP/s per core.
        conv_gflops: 120.0,
        mem_gbps: 15.0,
        half_flops: 5e6,
        floor_ms: 0.01,
        task_overhead_ms: 0.1,
        memory_mb: 24576.0,
        reserved_mb: 4096.0,
        depthwise_factor: 0.2,
        default_mbps: 10000.0,
        source: "default for this machine; replace with a measured table from `tessera profile`",
        // Calibrated to: ResNet-50 ~60 ms on 2 cores (tessera bench cpu).
        model: "resnet50",
        model_ms: 60.0,
    },
];

/// Names of the built-in profiles.
pub fn names() -> String {
    ANCHORS.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
}

/// The anchor of built-in profile `name`.
pub fn anchor(name: &str) -> Option<&'static Anchor> {
    ANCHORS.iter().find(|a| a.name == name)
}

/// (class, FLOPs) of every node of a zoo model as executed: the work the
/// calibration prices. Cached per model (architecture only, no weights).
fn model_work(name: &str) -> Vec<(OpClass, f64)> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, Vec<(OpClass, f64)>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(w) = cache.lock().unwrap().get(name) {
        return w.clone();
    }
    let g = tessera_graph::zoo::build_shapes(name).and_then(|g| tessera_graph::passes::optimize(&g)).expect("anchor models are zoo models");
    let w: Vec<(OpClass, f64)> = (0..g.len())
        .filter(|&n| !crate::volume::is_free(&g.node(n).op))
        .map(|n| (OpClass::of(&g.node(n).op), tessera_graph::node_cost(&g, n).flops() as f64))
        .collect();
    cache.lock().unwrap().insert(name.to_string(), w.clone());
    w
}

/// Builds the latency tables of an anchor, its rates scaled so that the
/// anchor model takes exactly its published latency.
pub fn build(a: &Anchor) -> DeviceProfile {
    let work = model_work(a.model);
    let total = |m: f64| -> f64 {
        let p = tables(a, m);
        work.iter().map(|(c, f)| p.get(c).map_or(0.0, |t| t.ms(*f))).sum()
    };
    // Latency falls monotonically as the rate multiplier grows: bisect in log space.
    let (mut lo, mut hi) = (1e-3f64, 1e3f64);
    for _ in 0..60 {
        let mid = (lo * hi).sqrt();
        if total(mid) > a.model_ms {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    DeviceProfile {
        name: a.name.to_string(),
        source: a.source.to_string(),
        memory_mb: a.memory_mb,
        reserved_mb: a.reserved_mb,
        task_overhead_ms: a.task_overhead_ms,
        ops: tables(a, (lo * hi).sqrt()),
    }
}

/// Latency tables of an anchor with all rates multiplied by `mult`.
fn tables(a: &Anchor, mult: f64) -> BTreeMap<OpClass, LatencyTable> {
    let conv = mult * a.conv_gflops * 1e6; // FLOPs per ms at full efficiency
    let a_mem = mult * a.mem_gbps;
    let mem = a_mem * 1e6; // bytes per ms
    // Full-efficiency rate per class, FLOPs per ms.
    let classes = [
        (OpClass::Conv, conv),
        (OpClass::Pointwise, 0.8 * conv),
        (OpClass::Depthwise, a.depthwise_factor * conv),
        // Batch-1 dense: 2 FLOPs per 4-byte weight streamed from memory.
        (OpClass::Dense, (mem / 2.0).min(conv)),
        // Pooling reads ~one 4-byte element per window op.
        (OpClass::Pool, (mem / 4.0).min(conv)),
        // Element-wise: read + write per op.
        (OpClass::Eltwise, (mem / 8.0).min(conv)),
    ];
    let mut ops = BTreeMap::new();
    for (class, rate) in classes {
        let points = (0..=40)
            .map(|i| {
                let f = 10f64.powf(3.0 + 9.0 * i as f64 / 40.0);
                // Efficiency rises with work: f / (f + half) to the power 0.5
                // (sub-linear occupancy growth), never below the launch floor.
                let eff = (f / (f + a.half_flops)).sqrt();
                (f, (a.floor_ms + f / (rate * eff)).max(a.floor_ms))
            })
            .collect();
        ops.insert(class, LatencyTable { points });
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_valid_and_ordered_like_the_papers() {
        for a in ANCHORS {
            build(a).validate().unwrap();
        }
        // Seed 004: Pi3 << Nano < TX2 < Xavier on a VGG16-sized conv.
        let f = 1.85e9; // conv1_2 of VGG16
        let ms = |n| build(anchor(n).unwrap()).op_ms(OpClass::Conv, f);
        assert!(ms("pi3") > 10.0 * ms("nano"));
        assert!(ms("nano") > ms("tx2") && ms("tx2") > ms("xavier"));
    }

    #[test]
    fn calibrated_to_the_published_latency() {
        for a in ANCHORS {
            let p = build(a);
            let ms: f64 = model_work(a.model).iter().map(|(c, f)| p.op_ms(*c, *f)).sum();
            assert!((ms - a.model_ms).abs() / a.model_ms < 1e-3, "{}: {ms} vs {}", a.name, a.model_ms);
        }
    }

    #[test]
    fn small_tiles_are_less_efficient() {
        let p = build(anchor("nano").unwrap());
        let big = p.op_ms(OpClass::Conv, 1e9);
        let small = p.op_ms(OpClass::Conv, 1e9 / 16.0);
        // Nonlinear: 1/16 of the work takes much more than 1/16 of the time.
        assert!(small * 16.0 > 1.5 * big, "{small} vs {big}");
    }
}
