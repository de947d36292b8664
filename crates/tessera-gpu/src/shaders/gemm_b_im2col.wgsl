// B of the conv GEMM as an implicit im2col of an NCHW input, any kernel,
// stride, dilation and padding. Ktab[k] = (input offset of tap k relative
// to the window origin, its row offset, its column offset, 0), precomputed
// at compile time. Each invocation stages four consecutive output pixels
// of one k row of the B tile.

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(4) var<storage, read> Ktab: array<vec4<i32>>;

struct BState {
    iy0: vec4<i32>,
    ix0: vec4<i32>,
    base: vec4<i32>,
    ok: vec4<u32>,
}

fn b_setup(g: u32, n0: u32, t: u32) -> BState {
    let N = pu(1u);
    let C = pu(5u);
    let W = pu(7u);
    let OW = pu(9u);
    let sh = pu(10u);
    let sw = pu(11u);
    let pt = pi(12u);
    let pl = pi(13u);
    let icg = pu(14u);
    let HW = pu(21u);
    let OHW = pu(22u);
    var s: BState;
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + (t % 16u) * 4u + j;
        let nn = min(n, N - 1u);
        let b = nn / OHW;
        let p = nn % OHW;
        let iy0 = i32((p / OW) * sh) - pt;
        let ix0 = i32((p % OW) * sw) - pl;
        s.iy0[j] = iy0;
        s.ix0[j] = ix0;
        s.base[j] = i32((b * C + g * icg) * HW) + iy0 * i32(W) + ix0;
        s.ok[j] = select(0u, 1u, n < N);
    }
    return s;
}

fn b_load(s: BState, k: u32, g: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (k < pu(2u)) {
        let e = Ktab[k];
        let H = i32(pu(6u));
        let W = i32(pu(7u));
        let iy = s.iy0 + vec4<i32>(e.y);
        let ix = s.ix0 + vec4<i32>(e.z);
        for (var j = 0u; j < 4u; j++) {
            if (s.ok[j] != 0u && iy[j] >= 0 && iy[j] < H && ix[j] >= 0 && ix[j] < W) {
                v[j] = X[u32(s.base[j] + e.x)];
            }
        }
    }
    return v;
}

fn out_index(n: u32, oc: u32, oc_total: u32) -> u32 {
    let OHW = pu(22u);
    return ((n / OHW) * oc_total + oc) * OHW + n % OHW;
}
