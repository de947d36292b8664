//! ResNet-50 v1.5 (torchvision layout: the stride sits on the 3x3 conv).

use super::builder::{Builder, ConvSpec, Weights};
use crate::error::Result;
use crate::graph::Graph;
use crate::op::{Activation, Pool};

pub fn resnet50(w: Weights) -> Result<Graph> {
    let relu = Activation::Relu;
    let (mut b, x) = Builder::new("resnet50", &[1, 3, 224, 224], w)?;
    let x = b.conv_bn_act("conv1", x, ConvSpec::new(64, 7).stride(2), relu)?;
    let mut x = b.maxpool("maxpool", x, Pool::square(3, 2, 1))?;
    for (stage, (mid, blocks, stride)) in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)].into_iter().enumerate() {
        for i in 0..blocks {
            let p = format!("layer{}.{i}", stage + 1);
            let s = if i == 0 { stride } else { 1 };
            let y = b.conv_bn_act(&format!("{p}.conv1"), x, ConvSpec::new(mid, 1), relu)?;
            let y = b.conv_bn_act(&format!("{p}.conv2"), y, ConvSpec::new(mid, 3).stride(s), relu)?;
            let y = b.conv_bn_act(&format!("{p}.conv3"), y, ConvSpec::new(mid * 4, 1), Activation::Identity)?;
            let shortcut = if i == 0 {
                b.conv_bn_act(&format!("{p}.downsample"), x, ConvSpec::new(mid * 4, 1).stride(s), Activation::Identity)?
            } else {
                x
            };
            let sum = b.add(&format!("{p}.add"), y, shortcut)?;
            x = b.act(&format!("{p}.relu"), sum, relu)?;
        }
    }
    let x = b.global_avgpool("avgpool", x)?;
    let x = b.flatten("flatten", x)?;
    let x = b.dense("fc", x, 1000)?;
    b.finish(x)
}
