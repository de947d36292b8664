// Winograd F(MxM, 3x3), last pass (M = 2 or 4, template constant; A =
// M + 2): the A*A GEMM products of a tile (summed over K slices when
// split: laid out [slice][pos][oc][t]) become its MxM outputs
// Y = A^T m A, plus the bias, an optional residual, then the activation;
// tiles on the bottom / right edge write only the outputs inside the image.
//
// Params: 0 total (OC * T), 1 OC, 2 OH, 3 OW, 4 TH, 5 TW, 6 T, 7 slices,
// 8 HAS_RES, 9 ACT, 10 ACT_A, 11 ACT_B.

const A: u32 = M + 2u;

@group(0) @binding(1) var<storage, read> Mm: array<f32>;
@group(0) @binding(2) var<storage, read> Bias: array<f32>;
@group(0) @binding(3) var<storage, read> Res: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;

// A^T applied to A values (the first A of x); M results.
fn at(x: array<f32, 6>) -> array<f32, 4> {
    if (M == 2u) {
        return array<f32, 4>(x[0] + x[1] + x[2], x[1] - x[2] - x[3], 0.0, 0.0);
    }
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
    // Columns first: A^T over each column q of m (M x A).
    var u: array<array<f32, 4>, 6>;
    for (var q = 0u; q < A; q++) {
        var col = array<f32, 6>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        for (var s = 0u; s < pu(7u); s++) {
            for (var p = 0u; p < A; p++) {
                col[p] += Mm[(((s * A * A) + A * p + q) * OC + oc) * T + t];
            }
        }
        u[q] = at(col);
    }
    let b = t / (TH * TW);
    let oy0 = M * ((t / TW) % TH);
    let ox0 = M * (t % TW);
    let bias = Bias[oc];
    let has_res = pu(8u) != 0u;
    for (var r = 0u; r < M; r++) {
        // Row r: (A^T m A)[r] = A^T applied to row r of A^T m.
        let out = at(array<f32, 6>(u[0][r], u[1][r], u[2][r], u[3][r], u[4][r], u[5][r]));
        let oy = oy0 + r;
        for (var q = 0u; q < M; q++) {
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
