//! The built-in model zoo, by name. Architectures follow the published
//! definitions exactly; weights are seeded pseudo-random, except `lenet`,
//! which carries weights trained by `tools/train_lenet.py` on MNIST.

mod builder;
mod classic;
mod mnist_data;
mod mobilenet;
mod resnet;
mod yolo;

pub use builder::{Builder, ConvSpec, Weights};
pub use mnist_data::{decode_idx, test_digits, Digit};

use crate::error::{GraphError, Result};
use crate::graph::Graph;
use crate::rng::Rng;

/// One zoo entry.
pub struct ZooModel {
    pub name: &'static str,
    pub about: &'static str,
    build: fn(Weights) -> Result<Graph>,
}

/// Every model the zoo can build.
pub const MODELS: &[ZooModel] = &[
    ZooModel { name: "lenet", about: "LeNet of seed 000 (1x28x28), trained on MNIST", build: classic::lenet_trained },
    ZooModel { name: "alexnet", about: "AlexNet (Caffe, 227x227, LRN, grouped convs)", build: classic::alexnet },
    ZooModel { name: "vgg16", about: "VGG-16 (224x224)", build: classic::vgg16 },
    ZooModel { name: "resnet50", about: "ResNet-50 v1.5 (224x224)", build: resnet::resnet50 },
    ZooModel { name: "mobilenetv2", about: "MobileNetV2 1.0 (224x224)", build: mobilenet::mobilenetv2 },
    ZooModel { name: "yolov2", about: "YOLOv2 (Darknet yolov2.cfg, 416x416, COCO)", build: yolo::yolov2 },
    ZooModel { name: "yolov2-tiny", about: "Tiny YOLOv2 (Darknet yolov2-tiny.cfg, 416x416, COCO)", build: yolo::yolov2_tiny },
];

/// The seed of zoo model `name`'s weights: stable across runs and platforms.
fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Comma-separated zoo names (for errors and help).
pub fn names() -> String {
    MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

/// Builds zoo model `name` with placeholder weights (all zeros): exact
/// architecture and costs, no weight generation. For planners and profiles.
pub fn build_shapes(name: &str) -> Result<Graph> {
    let m = MODELS.iter().find(|m| m.name == name).ok_or_else(|| GraphError::UnknownModel(name.to_string(), names()))?;
    if m.name == "lenet" {
        return classic::lenet(Weights::Shapes);
    }
    (m.build)(Weights::Shapes)
}

/// Builds zoo model `name` with its default weights.
pub fn build(name: &str) -> Result<Graph> {
    let m = MODELS.iter().find(|m| m.name == name).ok_or_else(|| GraphError::UnknownModel(name.to_string(), names()))?;
    (m.build)(Weights::Seeded(Rng::new(seed_of(name))))
}

/// The trained LeNet weights and the bundled MNIST test digits.
pub mod mnist {
    /// Trained LeNet weights, little-endian f32 in build order.
    pub const LENET_WEIGHTS: &[u8] = include_bytes!("../../assets/lenet-mnist.f32");
    /// First 1000 digits of the MNIST test set (IDX3, uint8).
    pub const TEST_IMAGES: &[u8] = include_bytes!("../../assets/mnist-test-1k-images.idx3");
    /// Their labels (IDX1, uint8).
    pub const TEST_LABELS: &[u8] = include_bytes!("../../assets/mnist-test-1k-labels.idx1");
}

#[cfg(test)]
mod tests;
