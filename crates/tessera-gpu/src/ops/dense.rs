//! Dense layers: a GEMV (`gemv.wgsl`, one workgroup per output feature)
//! for the usual one-image case, the GEMM kernel over rows otherwise. A
//! weight matrix larger than the storage binding limit (VGG's first FC
//! layer holds 392 MiB) is split into row chunks, one dispatch each.

use tessera_graph::Dense;

use super::{elems, grid, Cx, Dispatch, Dst, Params, Src};
use crate::pipelines::{GemmB, Shader};
use crate::tune::{GemmTile, TileChoice};

/// At most this many rows take the GEMV path.
const GEMV_ROWS: usize = 4;
const BK: usize = 16;

/// Plans `y[r, o] = act(sum_i x[r, i] w[o, i] + b[o])` over input `x`.
pub(crate) fn plan(cx: &mut Cx, d: &Dense, x: &[usize]) -> Result<Vec<Dispatch>, String> {
    let (inf, outf) = (d.in_features(), d.out_features());
    if x.last() != Some(&inf) {
        return Err(format!("input {x:?} does not end in {inf} features"));
    }
    elems(x)?;
    let rows: usize = x[..x.len() - 1].iter().product();
    elems(&[rows, outf])?;
    let bias = cx.bias(d.bias.as_ref(), outf)?;
    let max = cx.ctx.max_binding() as usize;
    let wb = cx.weight_bytes();
    let mut out = Vec::new();
    if rows <= GEMV_ROWS {
        let in4 = inf.div_ceil(4);
        let per_row = in4 * 4 * wb;
        let chunk = (max / per_row).max(1).min(outf);
        if per_row > max {
            return Err(format!("one weight row needs {per_row} bytes, over the storage binding limit"));
        }
        for lo in (0..outf).step_by(chunk) {
            let hi = (lo + chunk).min(outf);
            let weights = cx.weights(&d.weight, &format!("gemv/{lo}..{hi}"), (hi - lo) * in4 * 4, || {
                let src = d.weight.data();
                let mut t = vec![0.0f32; (hi - lo) * in4 * 4];
                for o in lo..hi {
                    t[(o - lo) * in4 * 4..][..inf].copy_from_slice(&src[o * inf..(o + 1) * inf]);
                }
                t
            })?;
            let mut p = Params::new();
            p.u(0, rows)?.u(1, inf)?.u(2, in4)?.u(3, hi - lo)?.u(4, outf)?.u(5, lo)?.act(6, d.act);
            out.push(Dispatch { out: Dst::Output, tile: None, shader: Shader::Gemv, params: p, reads: vec![Src::Input(0), weights, bias], groups: grid(hi - lo)? });
        }
        return Ok(out);
    }
    // GEMM over rows: A = weights [Kp][Mp] per chunk of output features.
    let kp = inf.div_ceil(BK) * BK;
    let heuristic = GemmTile::new(if outf >= 128 { 8 } else if outf > 32 { 4 } else if outf > 16 { 2 } else { 1 }, 4);
    // Dense rows never split K (the kernel's split mode writes NCHW-style
    // partials; many-row dense layers have grids large enough anyway).
    let mut tile = match cx.ctx.tuner.choice {
        TileChoice::Fixed(t) => GemmTile::new(t.tm, t.tn),
        TileChoice::Auto | TileChoice::Heuristic | TileChoice::Measured => heuristic,
    };
    // One chunk must hold at least one tile of rows.
    while tile.tm > 1 && kp * tile.bm() * wb > max {
        tile.tm /= 2;
    }
    let (bm, bn) = (tile.bm(), tile.bn());
    if kp * bm * wb > max {
        return Err(format!("{bm} weight rows of {inf} features exceed the storage binding limit"));
    }
    let chunk = (max / (kp * wb)) / bm * bm;
    for lo in (0..outf).step_by(chunk) {
        let hi = (lo + chunk).min(outf);
        let m = hi - lo;
        let mp = m.div_ceil(bm) * bm;
        let weights = cx.weights(&d.weight, &format!("gemm-rows/{lo}..{hi}/{mp}"), kp * mp, || {
            let src = d.weight.data();
            let mut t = vec![0.0f32; kp * mp];
            for o in lo..hi {
                for (k, v) in src[o * inf..(o + 1) * inf].iter().enumerate() {
                    t[k * mp + (o - lo)] = *v;
                }
            }
            t
        })?;
        let mut p = Params::new();
        p.u(0, m)?.u(1, rows)?.u(2, inf)?.u(3, mp / 4)?.u(4, kp)?.u(5, inf)?.u(15, outf)?.u(16, 0)?;
        p.act(17, d.act).u(20, lo)?;
        let groups = [rows.div_ceil(bn), mp / bm, 1];
        if groups.iter().any(|&v| v > 65535) {
            return Err(format!("grid {groups:?} exceeds the per-axis workgroup limit"));
        }
        out.push(Dispatch {
            out: Dst::Output,
            tile: Some(tile),
            shader: Shader::ConvGemm { b: GemmB::Rows, tm: tile.tm, tn: tile.tn, split: false },
            params: p,
            reads: vec![Src::Input(0), weights, bias, Src::Dummy, Src::Dummy],
            groups: [groups[0] as u32, groups[1] as u32, 1],
        });
    }
    Ok(out)
}
