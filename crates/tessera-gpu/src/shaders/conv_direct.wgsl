// Direct convolution, one invocation per output element: depthwise and
// other convolutions with few channels per group, where a GEMM tile would
// be mostly padding. Weights in the graph's [OC][ICG][KH][KW] layout.
//
// Params: 0 total outputs, 1 C, 2 H, 3 W, 4 OC, 5 OH, 6 OW, 7 KH, 8 KW,
// 9 SH, 10 SW, 11 DH, 12 DW, 13 PT, 14 PL, 15 ICG, 16 OCG, 17 HAS_RES,
// 18 ACT, 19 ACT_A, 20 ACT_B.

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Wt: array<WT>;
@group(0) @binding(3) var<storage, read> Bias: array<f32>;
@group(0) @binding(4) var<storage, read> Res: array<f32>;
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let idx = linear_id(wid, nwg, lid, 64u);
    if (idx >= pu(0u)) {
        return;
    }
    let C = pu(1u);
    let H = i32(pu(2u));
    let W = i32(pu(3u));
    let OC = pu(4u);
    let OH = pu(5u);
    let OW = pu(6u);
    let KH = pu(7u);
    let KW = pu(8u);
    let icg = pu(15u);
    let ocg = pu(16u);
    let ox = idx % OW;
    let oy = (idx / OW) % OH;
    let oc = (idx / (OW * OH)) % OC;
    let b = idx / (OW * OH * OC);
    let g = oc / ocg;
    let iy0 = i32(oy * pu(9u)) - pi(13u);
    let ix0 = i32(ox * pu(10u)) - pi(14u);
    let dh = i32(pu(11u));
    let dw = i32(pu(12u));
    var s = 0.0;
    for (var ci = 0u; ci < icg; ci++) {
        let xplane = (b * C + g * icg + ci) * u32(H * W);
        let wbase = (oc * icg + ci) * KH * KW;
        for (var ky = 0u; ky < KH; ky++) {
            let iy = iy0 + i32(ky) * dh;
            if (iy < 0 || iy >= H) {
                continue;
            }
            let xrow = xplane + u32(iy * W);
            for (var kx = 0u; kx < KW; kx++) {
                let ix = ix0 + i32(kx) * dw;
                if (ix >= 0 && ix < W) {
                    s += X[xrow + u32(ix)] * f32(Wt[wbase + ky * KW + kx]);
                }
            }
        }
    }
    var v = s + Bias[oc];
    if (pu(17u) != 0u) {
        v += Res[idx];
    }
    Y[idx] = act(v, pu(18u), pf(19u), pf(20u));
}
