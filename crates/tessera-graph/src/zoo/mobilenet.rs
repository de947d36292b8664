//! MobileNetV2 1.0 (Sandler et al. 2018, torchvision layout).

use super::builder::{Builder, ConvSpec, Weights};
use crate::error::Result;
use crate::graph::Graph;
use crate::op::Activation;

pub fn mobilenetv2(w: Weights) -> Result<Graph> {
    let relu6 = Activation::Clip { min: 0.0, max: 6.0 };
    let (mut b, x) = Builder::new("mobilenetv2", &[1, 3, 224, 224], w)?;
    let mut x = b.conv_bn_act("features.0", x, ConvSpec::new(32, 3).stride(2), relu6)?;
    let mut cin = 32;
    let mut idx = 1;
    // (expansion t, output channels c, repeats n, first stride s), Table 2 of the paper.
    for (t, c, n, s) in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)] {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let p = format!("features.{idx}");
            let hidden = cin * t;
            let mut y = x;
            if t != 1 {
                y = b.conv_bn_act(&format!("{p}.expand"), y, ConvSpec::new(hidden, 1), relu6)?;
            }
            y = b.conv_bn_act(&format!("{p}.dw"), y, ConvSpec::new(hidden, 3).stride(stride).groups(hidden), relu6)?;
            y = b.conv_bn_act(&format!("{p}.project"), y, ConvSpec::new(c, 1), Activation::Identity)?;
            x = if stride == 1 && cin == c { b.add(&format!("{p}.add"), y, x)? } else { y };
            cin = c;
            idx += 1;
        }
    }
    let x = b.conv_bn_act("features.18", x, ConvSpec::new(1280, 1), relu6)?;
    let x = b.global_avgpool("avgpool", x)?;
    let x = b.flatten("flatten", x)?;
    let x = b.dense("classifier", x, 1000)?;
    b.finish(x)
}
