// B of the conv GEMM for a 1x1, stride-1, unpadded convolution whose planes
// hold a multiple of 4 pixels: B[k, n] is input channel k at pixel n,
// read as aligned vec4 straight from the feature map.

@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;

struct BState {
    base4: u32,
    ok: u32,
}

fn b_setup(g: u32, n0: u32, t: u32) -> BState {
    let N = pu(1u);
    let C = pu(5u);
    let icg = pu(14u);
    let HW = pu(21u);
    let n = n0 + (t % 16u) * 4u;
    let nn = min(n, N - 4u);
    var s: BState;
    s.base4 = ((nn / HW * C + g * icg) * HW + nn % HW) / 4u;
    s.ok = select(0u, 1u, n < N);
    return s;
}

fn b_load(s: BState, k: u32, g: u32) -> vec4<f32> {
    if (s.ok != 0u && k < pu(2u)) {
        return X[s.base4 + k * (pu(21u) / 4u)];
    }
    return vec4<f32>(0.0);
}

fn out_index(n: u32, oc: u32, oc_total: u32) -> u32 {
    let HW = pu(21u);
    return ((n / HW) * oc_total + oc) * HW + n % HW;
}
