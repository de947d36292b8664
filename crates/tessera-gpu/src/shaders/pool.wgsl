// Max / average pooling, one invocation per output element, with the
// padding, dilation, ceil-mode and count_include_pad rules of op.rs and the
// CPU backend: taps inside the input are pooled; `count_include_pad`
// divides by the taps inside input + padding.
//
// Params: 0 total, 1 H, 2 W, 3 OH, 4 OW, 5 KH, 6 KW, 7 SH, 8 SW, 9 DH,
// 10 DW, 11 PT, 12 PL, 13 PB, 14 PR, 15 IS_MAX, 16 COUNT_INCLUDE_PAD.

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let idx = linear_id(wid, nwg, lid, 64u);
    if (idx >= pu(0u)) {
        return;
    }
    let H = i32(pu(1u));
    let W = i32(pu(2u));
    let OH = pu(3u);
    let OW = pu(4u);
    let KH = pu(5u);
    let KW = pu(6u);
    let dh = i32(pu(9u));
    let dw = i32(pu(10u));
    let is_max = pu(15u) != 0u;
    let ox = idx % OW;
    let oy = (idx / OW) % OH;
    let plane = idx / (OW * OH);
    let iy0 = i32(oy * pu(7u)) - pi(11u);
    let ix0 = i32(ox * pu(8u)) - pi(12u);
    let hb = H + pi(13u);
    let wb = W + pi(14u);
    var acc = select(0.0, bitcast<f32>(0xff7fffffu), is_max);
    var vh = 0u;
    var ph = 0u;
    var vw = 0u;
    var pw = 0u;
    for (var kx = 0u; kx < KW; kx++) {
        let ix = ix0 + i32(kx) * dw;
        vw += select(0u, 1u, ix >= 0 && ix < W);
        pw += select(0u, 1u, ix < wb);
    }
    let base = plane * u32(H * W);
    for (var ky = 0u; ky < KH; ky++) {
        let iy = iy0 + i32(ky) * dh;
        ph += select(0u, 1u, iy < hb);
        if (iy < 0 || iy >= H) {
            continue;
        }
        vh += 1u;
        for (var kx = 0u; kx < KW; kx++) {
            let ix = ix0 + i32(kx) * dw;
            if (ix >= 0 && ix < W) {
                let v = X[base + u32(iy * W + ix)];
                if (is_max) {
                    acc = max(acc, v);
                } else {
                    acc += v;
                }
            }
        }
    }
    if (!is_max) {
        let count = select(vh * vw, ph * pw, pu(16u) != 0u);
        acc = acc / f32(count);
    }
    Y[idx] = acc;
}
