//! Data movement: concat, and one gather engine behind slice, pad,
//! transpose and nearest resize (`out[o] = in[Σ_d map_d(o_d) · stride_d]`,
//! with a fill value where a map says "outside"), plus the two
//! space/depth shuffles.

use tessera_graph::op::{PadMode, Resize};
use tessera_graph::tensor::strides;

/// Marks an output index that reads no input (constant padding).
const FILL: usize = usize::MAX;

/// A planned gather: per output axis, the input offset of every index.
#[derive(Clone, Debug)]
pub(crate) struct Gather {
    out_shape: Vec<usize>,
    /// `maps[d][o]` = input element offset contributed by axis d, or FILL.
    maps: Vec<Vec<usize>>,
    fill: f32,
    /// The last axis reads a contiguous run (`maps[last][i] = base + i`).
    contiguous_last: bool,
}

impl Gather {
    fn new(out_shape: Vec<usize>, maps: Vec<Vec<usize>>, fill: f32) -> Gather {
        let contiguous_last = match maps.last() {
            Some(m) => !m.is_empty() && m.iter().all(|&v| v != FILL) && m.windows(2).all(|w| w[1] == w[0] + 1),
            None => false,
        };
        Gather { out_shape, maps, fill, contiguous_last }
    }

    /// `Slice { starts, ends }` on an input of shape `x`.
    pub(crate) fn slice(x: &[usize], starts: &[usize], ends: &[usize]) -> Gather {
        let st = strides(x);
        let maps = (0..x.len()).map(|d| (starts[d]..ends[d]).map(|i| i * st[d]).collect()).collect();
        Gather::new((0..x.len()).map(|d| ends[d] - starts[d]).collect(), maps, 0.0)
    }

    /// `Transpose { perm }`: output axis d is input axis `perm[d]`.
    pub(crate) fn transpose(x: &[usize], perm: &[usize]) -> Gather {
        let st = strides(x);
        let maps = perm.iter().map(|&p| (0..x[p]).map(|i| i * st[p]).collect()).collect();
        Gather::new(perm.iter().map(|&p| x[p]).collect(), maps, 0.0)
    }

    /// `Pad { begin, end, mode }` (reflect excludes the edge, as in ONNX).
    pub(crate) fn pad(x: &[usize], begin: &[usize], end: &[usize], mode: PadMode) -> Gather {
        let st = strides(x);
        let maps = (0..x.len())
            .map(|d| {
                let n = x[d] as isize;
                (0..x[d] + begin[d] + end[d])
                    .map(|o| {
                        let i = o as isize - begin[d] as isize;
                        let src = if (0..n).contains(&i) {
                            Some(i)
                        } else {
                            match mode {
                                PadMode::Constant(_) => None,
                                PadMode::Edge => Some(i.clamp(0, n - 1)),
                                PadMode::Reflect => {
                                    // Mirror about the edges until inside (pads < n make this one step).
                                    let mut j = i;
                                    while !(0..n).contains(&j) && n > 1 {
                                        j = if j < 0 { -j } else { 2 * (n - 1) - j };
                                    }
                                    Some(j.clamp(0, (n - 1).max(0)))
                                }
                            }
                        };
                        src.filter(|_| n > 0).map_or(FILL, |s| s as usize * st[d])
                    })
                    .collect()
            })
            .collect();
        let fill = if let PadMode::Constant(v) = mode { v } else { 0.0 };
        Gather::new((0..x.len()).map(|d| x[d] + begin[d] + end[d]).collect(), maps, fill)
    }

    /// Nearest-neighbour `Resize`, each axis through `Resize::source_index`.
    pub(crate) fn resize(x: &[usize], r: &Resize) -> Gather {
        let st = strides(x);
        let maps = (0..x.len()).map(|d| (0..r.out_shape[d]).map(|o| r.source_index(d, o, x[d]) * st[d]).collect()).collect();
        Gather::new(r.out_shape.clone(), maps, 0.0)
    }

    /// Writes the gathered tensor into `y`.
    pub(crate) fn run(&self, x: &[f32], y: &mut [f32]) {
        let rank = self.out_shape.len();
        if rank == 0 {
            if let Some(v) = y.first_mut() {
                *v = x[0];
            }
            return;
        }
        let inner = self.out_shape[rank - 1];
        if inner == 0 || y.is_empty() {
            return;
        }
        let last = &self.maps[rank - 1];
        let mut idx = vec![0usize; rank - 1];
        for out_row in y.chunks_exact_mut(inner) {
            // Offset of this row, or FILL if any outer axis is padding.
            let mut base = 0usize;
            let mut fill = false;
            for (d, &i) in idx.iter().enumerate() {
                let m = self.maps[d][i];
                if m == FILL {
                    fill = true;
                    break;
                }
                base += m;
            }
            if fill {
                out_row.fill(self.fill);
            } else if self.contiguous_last {
                out_row.copy_from_slice(&x[base + last[0]..base + last[0] + inner]);
            } else {
                for (o, &m) in out_row.iter_mut().zip(last) {
                    *o = if m == FILL { self.fill } else { x[base + m] };
                }
            }
            // Odometer over the outer axes.
            for d in (0..rank - 1).rev() {
                idx[d] += 1;
                if idx[d] < self.out_shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }
}

/// Concatenation along `axis` of inputs with shapes `shapes`.
pub(crate) fn concat(axis: usize, shapes: &[&[usize]], xs: &[&[f32]], y: &mut [f32]) {
    let outer: usize = shapes[0][..axis].iter().product();
    let inner: usize = shapes[0][axis + 1..].iter().product();
    let mut pos = 0;
    for o in 0..outer {
        for (s, x) in shapes.iter().zip(xs) {
            let len = s[axis] * inner;
            y[pos..pos + len].copy_from_slice(&x[o * len..(o + 1) * len]);
            pos += len;
        }
    }
}

/// ONNX SpaceToDepth: `y[n, (by·b + bx)·C + c, h, w] = x[n, c, h·b + by, w·b + bx]`.
pub(crate) fn space_to_depth(x_shape: &[usize], block: usize, x: &[f32], y: &mut [f32]) {
    let [n, c, h, w] = [x_shape[0], x_shape[1], x_shape[2], x_shape[3]];
    let (oh, ow) = (h / block, w / block);
    let mut pos = 0;
    for ni in 0..n {
        for by in 0..block {
            for bx in 0..block {
                for ci in 0..c {
                    let plane = &x[(ni * c + ci) * h * w..(ni * c + ci + 1) * h * w];
                    for oy in 0..oh {
                        let row = &plane[(oy * block + by) * w..];
                        for ox in 0..ow {
                            y[pos] = row[ox * block + bx];
                            pos += 1;
                        }
                    }
                }
            }
        }
    }
}

/// ONNX DepthToSpace: DCR reads channel `(by·b + bx)·C' + c`, CRD reads
/// `c·b² + by·b + bx`, for `y[n, c, h·b + by, w·b + bx]`.
pub(crate) fn depth_to_space(x_shape: &[usize], block: usize, crd: bool, x: &[f32], y: &mut [f32]) {
    let [n, c, h, w] = [x_shape[0], x_shape[1], x_shape[2], x_shape[3]];
    let oc = c / (block * block);
    let (oh, ow) = (h * block, w * block);
    for ni in 0..n {
        for co in 0..oc {
            for yy in 0..oh {
                let (iy, by) = (yy / block, yy % block);
                let out = &mut y[((ni * oc + co) * oh + yy) * ow..((ni * oc + co) * oh + yy + 1) * ow];
                for (xx, o) in out.iter_mut().enumerate() {
                    let (ix, bx) = (xx / block, xx % block);
                    let ci = if crd { co * block * block + by * block + bx } else { (by * block + bx) * oc + co };
                    *o = x[((ni * c + ci) * h + iy) * w + ix];
                }
            }
        }
    }
}
