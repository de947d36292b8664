//! Chain CNNs: LeNet (seed 000), AlexNet, VGG-16.

use super::builder::{Builder, ConvSpec, Weights};
use crate::error::{GraphError, Result};
use crate::graph::Graph;
use crate::op::{Activation, Lrn, Pool};

/// Seed 000's LeNet (Table I): 1x28x28 → conv 6@5x5 → pool → conv 16@5x5 →
/// pool → conv 120@4x4 → fc 84 → fc 10, ReLU after every hidden layer.
pub fn lenet(w: Weights) -> Result<Graph> {
    let relu = Activation::Relu;
    let (mut b, x) = Builder::new("lenet", &[1, 1, 28, 28], w)?;
    let x = b.conv("conv1", x, ConvSpec::new(6, 5).pad(0))?;
    let x = b.act("relu1", x, relu)?;
    let x = b.maxpool("pool1", x, Pool::square(2, 2, 0))?;
    let x = b.conv("conv2", x, ConvSpec::new(16, 5).pad(0))?;
    let x = b.act("relu2", x, relu)?;
    let x = b.maxpool("pool2", x, Pool::square(2, 2, 0))?;
    let x = b.conv("conv3", x, ConvSpec::new(120, 4).pad(0))?;
    let x = b.act("relu3", x, relu)?;
    let x = b.flatten("flatten", x)?;
    let x = b.dense("fc1", x, 84)?;
    let x = b.act("relu4", x, relu)?;
    let x = b.dense("fc2", x, 10)?;
    b.finish(x)
}

/// LeNet with the trained MNIST weights.
pub fn lenet_trained(_: Weights) -> Result<Graph> {
    let bytes = super::mnist::LENET_WEIGHTS;
    if bytes.len() % 4 != 0 {
        return Err(GraphError::Invalid("trained LeNet weights are not whole f32 values".into()));
    }
    let data: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    lenet(Weights::Trained { data: &data, pos: 0 })
}

/// AlexNet as released with Caffe (bvlc_alexnet): LRN after conv1/conv2,
/// two-group conv2/4/5, 227x227 input.
pub fn alexnet(w: Weights) -> Result<Graph> {
    let relu = Activation::Relu;
    let lrn = Lrn { size: 5, alpha: 1e-4, beta: 0.75, bias: 1.0 };
    let (mut b, x) = Builder::new("alexnet", &[1, 3, 227, 227], w)?;
    let x = b.conv("conv1", x, ConvSpec::new(96, 11).stride(4).pad(0))?;
    let x = b.act("relu1", x, relu)?;
    let x = b.lrn("norm1", x, lrn)?;
    let x = b.maxpool("pool1", x, Pool::square(3, 2, 0))?;
    let x = b.conv("conv2", x, ConvSpec::new(256, 5).groups(2))?;
    let x = b.act("relu2", x, relu)?;
    let x = b.lrn("norm2", x, lrn)?;
    let x = b.maxpool("pool2", x, Pool::square(3, 2, 0))?;
    let x = b.conv("conv3", x, ConvSpec::new(384, 3))?;
    let x = b.act("relu3", x, relu)?;
    let x = b.conv("conv4", x, ConvSpec::new(384, 3).groups(2))?;
    let x = b.act("relu4", x, relu)?;
    let x = b.conv("conv5", x, ConvSpec::new(256, 3).groups(2))?;
    let x = b.act("relu5", x, relu)?;
    let x = b.maxpool("pool5", x, Pool::square(3, 2, 0))?;
    let x = b.flatten("flatten", x)?;
    let x = b.dense("fc6", x, 4096)?;
    let x = b.act("relu6", x, relu)?;
    let x = b.dense("fc7", x, 4096)?;
    let x = b.act("relu7", x, relu)?;
    let x = b.dense("fc8", x, 1000)?;
    b.finish(x)
}

/// VGG-16 (configuration D): 13 3x3 convs in 5 blocks, 3 dense layers.
pub fn vgg16(w: Weights) -> Result<Graph> {
    let relu = Activation::Relu;
    let (mut b, mut x) = Builder::new("vgg16", &[1, 3, 224, 224], w)?;
    for (block, (width, n)) in [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)].into_iter().enumerate() {
        for i in 1..=n {
            x = b.conv(&format!("conv{}_{i}", block + 1), x, ConvSpec::new(width, 3))?;
            x = b.act(&format!("relu{}_{i}", block + 1), x, relu)?;
        }
        x = b.maxpool(&format!("pool{}", block + 1), x, Pool::square(2, 2, 0))?;
    }
    x = b.flatten("flatten", x)?;
    x = b.dense("fc6", x, 4096)?;
    x = b.act("relu6", x, relu)?;
    x = b.dense("fc7", x, 4096)?;
    x = b.act("relu7", x, relu)?;
    x = b.dense("fc8", x, 1000)?;
    b.finish(x)
}
