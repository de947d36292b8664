// Winograd F(2x2, 3x3), first pass (Lavin & Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2016, section 4): each 4x4 input patch d
// under a 2x2 output tile, per channel, becomes V = B^T d B, stored as
// V[pos][c][t] (pos = 4 * row + column of V; t = (b * TH + ty) * TW + tx;
// rows LDV >= T apart), the B operand of 16 GEMMs. The patch of tile (ty, tx) starts at input
// row 2 ty - PT, column 2 tx - PL; outside the image it reads zeros.
//
// Params: 0 total (C * T), 1 C, 2 H, 3 W, 4 TH, 5 TW, 6 PT, 7 PL, 8 T,
// 9 LDV.

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> V: array<f32>;

// B^T applied to the four rows (or, on a row vector, its columns) of d.
fn bt(d0: vec4<f32>, d1: vec4<f32>, d2: vec4<f32>, d3: vec4<f32>) -> array<vec4<f32>, 4> {
    return array<vec4<f32>, 4>(d0 - d2, d1 + d2, d2 - d1, d1 - d3);
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
    let y0 = i32(2u * ((t / TW) % TH)) - pi(6u);
    let x0 = i32(2u * (t % TW)) - pi(7u);
    let base = i32((b * C + c) * u32(H) * u32(W));
    var d: array<vec4<f32>, 4>;
    for (var r = 0; r < 4; r++) {
        let iy = y0 + r;
        var row = vec4<f32>(0.0);
        if (iy >= 0 && iy < H) {
            for (var q = 0; q < 4; q++) {
                let ix = x0 + q;
                if (ix >= 0 && ix < W) {
                    row[q] = X[base + iy * W + ix];
                }
            }
        }
        d[r] = row;
    }
    // Rows: B^T d; then columns: (B^T d) B, one row vector at a time.
    let w = bt(d[0], d[1], d[2], d[3]);
    for (var r = 0u; r < 4u; r++) {
        let v = w[r];
        let out = vec4<f32>(v.x - v.z, v.y + v.z, v.z - v.y, v.y - v.w);
        for (var q = 0u; q < 4u; q++) {
            V[((4u * r + q) * C + c) * pu(9u) + t] = out[q];
        }
    }
}
