// Winograd F(MxM, 3x3), first pass (Lavin & Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2016, section 4), M = 2 or 4 (template
// constant; A = M + 2): each AxA input patch d under an MxM output tile,
// per channel, becomes V = B^T d B, stored as V[pos][c][t] (pos = A * row +
// column; t = (b * TH + ty) * TW + tx; rows LDV >= T apart), the B operand
// of A*A GEMMs. The patch of tile (ty, tx) starts at input row M ty - PT,
// column M tx - PL; outside the image it reads zeros.
//
// Params: 0 total (C * T), 1 C, 2 H, 3 W, 4 TH, 5 TW, 6 PT, 7 PL, 8 T,
// 9 LDV.

const A: u32 = M + 2u;

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> V: array<f32>;

// B^T applied to A values (the first A of x).
fn bt(x: array<f32, 6>) -> array<f32, 6> {
    if (M == 2u) {
        return array<f32, 6>(x[0] - x[2], x[1] + x[2], x[2] - x[1], x[1] - x[3], 0.0, 0.0);
    }
    // F(4, 3), points 0, +-1, +-2, infinity.
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
    let y0 = i32(M * ((t / TW) % TH)) - pi(6u);
    let x0 = i32(M * (t % TW)) - pi(7u);
    let base = i32((b * C + c) * u32(H) * u32(W));
    // Rows: d_r B, one input row at a time.
    var rows: array<array<f32, 6>, 6>;
    for (var r = 0; r < i32(A); r++) {
        var d = array<f32, 6>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        let iy = y0 + r;
        if (iy >= 0 && iy < H) {
            for (var q = 0; q < i32(A); q++) {
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
    for (var q = 0u; q < A; q++) {
        let col = bt(array<f32, 6>(rows[0][q], rows[1][q], rows[2][q], rows[3][q], rows[4][q], rows[5][q]));
        for (var p = 0u; p < A; p++) {
            V[((A * p + q) * C + c) * ldv + t] = col[p];
        }
    }
}
