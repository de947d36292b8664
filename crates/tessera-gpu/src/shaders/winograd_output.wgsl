// Winograd F(2x2, 3x3), last pass: the 16 GEMM products of a tile (summed
// over K slices when split: laid out [slice][pos][oc][t]) become its 2x2
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
    var m: array<vec4<f32>, 4>;
    for (var r = 0u; r < 4u; r++) {
        var row = vec4<f32>(0.0);
        for (var s = 0u; s < pu(7u); s++) {
            for (var q = 0u; q < 4u; q++) {
                row[q] += Mm[(((s * 16u) + 4u * r + q) * OC + oc) * T + t];
            }
        }
        m[r] = row;
    }
    // Rows: A^T m (2 x 4); then columns: (A^T m) A (2 x 2).
    let u0 = m[0] + m[1] + m[2];
    let u1 = m[1] - m[2] - m[3];
    let out = array<vec2<f32>, 2>(vec2<f32>(u0.x + u0.y + u0.z, u0.y - u0.z - u0.w), vec2<f32>(u1.x + u1.y + u1.z, u1.y - u1.z - u1.w));
    let b = t / (TH * TW);
    let oy0 = 2u * ((t / TW) % TH);
    let ox0 = 2u * (t % TW);
    let bias = Bias[oc];
    let has_res = pu(8u) != 0u;
    for (var r = 0u; r < 2u; r++) {
        for (var q = 0u; q < 2u; q++) {
            let oy = oy0 + r;
            let ox = ox0 + q;
            if (oy < OH && ox < OW) {
                let idx = ((b * OC + oc) * OH + oy) * OW + ox;
                var v = out[r][q] + bias;
                if (has_res) {
                    v += Res[idx];
                }
                Y[idx] = act(v, pu(9u), pf(10u), pf(11u));
            }
        }
    }
}
