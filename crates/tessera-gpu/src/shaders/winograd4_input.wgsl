// Winograd F(4x4, 3x3), first pass (Lavin & Gray 2016, section 4; points
// 0, +-1, +-2, infinity): each 6x6 input patch d under a 4x4 output tile,
// per channel, becomes V = B^T d B, stored as V[pos][c][t] (pos = 6 * row +
// column; t = (b * TH + ty) * TW + tx; rows LDV >= T apart). The patch of
// tile (ty, tx) starts at input row 4 ty - PT, column 4 tx - PL; outside
// the image it reads zeros.
//
// Params: 0 total (C * T), 1 C, 2 H, 3 W, 4 TH, 5 TW, 6 PT, 7 PL, 8 T,
// 9 LDV.

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> V: array<f32>;

// B^T of F(4, 3) applied to six values.
fn bt(x: array<f32, 6>) -> array<f32, 6> {
    return array<f32, 6>(
        4.0 * x[0] - 5.0 * x[2] + x[4],
        -4.0 * x[1] - 4.0 * x[2] + x[3] + x[4],
        4.0 * x[1] - 4.0 * x[2] - x[3] + x[4],
        -2.0 * x[1] - x[2] + 2.0 * x[3] + x[4],
        2.0 * x[1] - x[2] - 2.0 * x[3] + x[4],
        4.0 * x[1] - 5.0 * x[3] + x[5],
    );
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid, 256u);
    if (i >= pu(0u)) {
        return;
    }
    let C = pu(1u);
    let H = i32(pu(2u));
    let W = i32(pu(3u));
    let TH = pu(4u);
    let TW = pu(5u);
    let T = pu(8u);
    let c = i / T;
    let t = i % T;
    let b = t / (TH * TW);
    let y0 = i32(4u * ((t / TW) % TH)) - pi(6u);
    let x0 = i32(4u * (t % TW)) - pi(7u);
    let base = i32((b * C + c) * u32(H) * u32(W));
    // Rows: d_r B, one input row at a time.
    var rows: array<array<f32, 6>, 6>;
    for (var r = 0; r < 6; r++) {
        var d = array<f32, 6>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        let iy = y0 + r;
        if (iy >= 0 && iy < H) {
            for (var q = 0; q < 6; q++) {
                let ix = x0 + q;
                if (ix >= 0 && ix < W) {
                    d[q] = X[base + iy * W + ix];
                }
            }
        }
        rows[r] = bt(d);
    }
    // Columns: B^T (d B).
    let ldv = pu(9u);
    for (var q = 0u; q < 6u; q++) {
        let col = bt(array<f32, 6>(rows[0][q], rows[1][q], rows[2][q], rows[3][q], rows[4][q], rows[5][q]));
        for (var p = 0u; p < 6u; p++) {
            V[((6u * p + q) * C + c) * ldv + t] = col[p];
        }
    }
}
