//! YOLOv2 and Tiny YOLOv2 as in Darknet's yolov2.cfg / yolov2-tiny.cfg
//! (416x416, COCO: 5 anchors x (5 + 80) = 425 output channels). Every conv
//! is conv → BN → leaky ReLU(0.1) except the last (bias, linear). Darknet's
//! `reorg` is SpaceToDepth(2) up to a fixed channel permutation.

use super::builder::{Builder, ConvSpec, Weights};
use crate::error::Result;
use crate::graph::{Graph, NodeId};
use crate::op::{Activation, Op, Pool};

const LEAKY: Activation = Activation::LeakyRelu { alpha: 0.1 };

fn conv(b: &mut Builder, n: &mut usize, x: NodeId, out: usize, k: usize) -> Result<NodeId> {
    *n += 1;
    b.conv_bn_act(&format!("conv{n}"), x, ConvSpec::new(out, k), LEAKY)
}

fn pool(b: &mut Builder, n: &mut usize, x: NodeId) -> Result<NodeId> {
    *n += 1;
    b.maxpool(&format!("pool{n}"), x, Pool::square(2, 2, 0))
}

pub fn yolov2(w: Weights) -> Result<Graph> {
    let (mut b, x) = Builder::new("yolov2", &[1, 3, 416, 416], w)?;
    let (mut c, mut p) = (0, 0);
    let mut x = conv(&mut b, &mut c, x, 32, 3)?;
    x = pool(&mut b, &mut p, x)?;
    x = conv(&mut b, &mut c, x, 64, 3)?;
    x = pool(&mut b, &mut p, x)?;
    for (wide, narrow) in [(128, 64), (256, 128)] {
        x = conv(&mut b, &mut c, x, wide, 3)?;
        x = conv(&mut b, &mut c, x, narrow, 1)?;
        x = conv(&mut b, &mut c, x, wide, 3)?;
        x = pool(&mut b, &mut p, x)?;
    }
    for _ in 0..2 {
        x = conv(&mut b, &mut c, x, 512, 3)?;
        x = conv(&mut b, &mut c, x, 256, 1)?;
    }
    let passthrough = conv(&mut b, &mut c, x, 512, 3)?; // 512 x 26 x 26
    x = pool(&mut b, &mut p, passthrough)?;
    for _ in 0..2 {
        x = conv(&mut b, &mut c, x, 1024, 3)?;
        x = conv(&mut b, &mut c, x, 512, 1)?;
    }
    x = conv(&mut b, &mut c, x, 1024, 3)?;
    x = conv(&mut b, &mut c, x, 1024, 3)?;
    x = conv(&mut b, &mut c, x, 1024, 3)?;
    let route = conv(&mut b, &mut c, passthrough, 64, 1)?;
    let reorg = b.g.add("reorg", Op::SpaceToDepth { block: 2 }, &[route])?; // 256 x 13 x 13
    let cat = b.concat("route", &[reorg, x])?;
    x = conv(&mut b, &mut c, cat, 1024, 3)?;
    let out = b.conv("conv23", x, ConvSpec::new(425, 1))?;
    b.finish(out)
}

pub fn yolov2_tiny(w: Weights) -> Result<Graph> {
    let (mut b, x) = Builder::new("yolov2-tiny", &[1, 3, 416, 416], w)?;
    let (mut c, mut p) = (0, 0);
    let mut x = x;
    for width in [16, 32, 64, 128, 256] {
        x = conv(&mut b, &mut c, x, width, 3)?;
        x = pool(&mut b, &mut p, x)?;
    }
    x = conv(&mut b, &mut c, x, 512, 3)?;
    // Darknet's size-2 stride-1 maxpool keeps 13x13: one row/column of
    // padding at the bottom/right only (asymmetric).
    let mut same = Pool::square(2, 1, 0);
    same.pads = [0, 0, 1, 1];
    x = b.maxpool("pool6", x, same)?;
    x = conv(&mut b, &mut c, x, 1024, 3)?;
    x = conv(&mut b, &mut c, x, 512, 3)?;
    let out = b.conv("conv9", x, ConvSpec::new(425, 1))?;
    b.finish(out)
}
