// Winograd F(4x4, 3x3), last pass: the 36 GEMM products of a tile (summed
// over K slices when split: laid out [slice][pos][oc][t]) become its 4x4
// outputs Y = A^T m A, plus the bias, an optional residual, then the
// activation; tiles on the bottom / right edge write only the outputs
// inside the image.
//
// Params: 0 total (OC * T), 1 OC, 2 OH, 3 OW, 4 TH, 5 TW, 6 T, 7 slices,
// 8 HAS_RES, 9 ACT, 10 ACT_A, 11 ACT_B.

@group(0) @binding(1) var<storage, read> Mm: array<f32>;
@group(0) @binding(2) var<storage, read> Bias: array<f32>;
@group(0) @binding(3) var<storage, read> Res: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;

// A^T of F(4, 3) applied to six values.
fn at(x: array<f32, 6>) -> array<f32, 4> {
    return array<f32, 4>(
        x[0] + x[1] + x[2] + x[3] + x[4],
        x[1] - x[2] + 2.0 * (x[3] - x[4]),
        x[1] + x[2] + 4.0 * (x[3] + x[4]),
        x[1] - x[2] + 8.0 * (x[3] - x[4]) + x[5],
    );
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid, 256u);
    if (i >= pu(0u)) {
        return;
    }
    let OC = pu(1u);
    let OH = pu(2u);
    let OW = pu(3u);
    let TH = pu(4u);
    let TW = pu(5u);
    let T = pu(6u);
    let oc = i / T;
    let t = i % T;
    // Columns first: A^T over each column q of m (4 x 6).
    var u: array<array<f32, 4>, 6>;
    for (var q = 0u; q < 6u; q++) {
        var col = array<f32, 6>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        for (var s = 0u; s < pu(7u); s++) {
            for (var p = 0u; p < 6u; p++) {
                col[p] += Mm[(((s * 36u) + 6u * p + q) * OC + oc) * T + t];
            }
        }
        u[q] = at(col);
    }
    let b = t / (TH * TW);
    let oy0 = 4u * ((t / TW) % TH);
    let ox0 = 4u * (t % TW);
    let bias = Bias[oc];
    let has_res = pu(8u) != 0u;
    for (var r = 0u; r < 4u; r++) {
        // Row r: (A^T m A)[r] = A^T applied to row r of A^T m.
        let out = at(array<f32, 6>(u[0][r], u[1][r], u[2][r], u[3][r], u[4][r], u[5][r]));
        let oy = oy0 + r;
        for (var q = 0u; q < 4u; q++) {
            let ox = ox0 + q;
            if (oy < OH && ox < OW) {
                let idx = ((b * OC + oc) * OH + oy) * OW + ox;
                var v = out[q] + bias;
                if (has_res) {
                    v += Res[idx];
                }
                Y[idx] = act(v, pu(9u), pf(10u), pf(11u));
            }
        }
    }
}
