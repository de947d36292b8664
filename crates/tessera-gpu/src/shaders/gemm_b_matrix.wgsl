// B of the GEMM as a row-major matrix per group: B[k, n] =
// X[(g * K + k) * LDB + n], rows LDB >= N floats apart, LDB a multiple of
// 4, so that each invocation reads its four columns as one aligned vec4
// (the transformed input tiles of a Winograd convolution,
// `winograd_input.wgsl`; columns N..LDB hold anything: their products
// are never stored). Used with SPLIT (raw products to scratch), so
// `out_index` only completes the interface.
//
// Params (besides the GEMM's): 25 LDB / 4.

@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;

struct BState {
    q: u32,
    ok: u32,
}

fn b_setup(g: u32, n0: u32, t: u32) -> BState {
    var s: BState;
    let n = n0 + (t % 16u) * 4u;
    s.q = n / 4u;
    s.ok = select(0u, 1u, n < pu(1u));
    return s;
}

fn b_load(s: BState, k: u32, g: u32) -> vec4<f32> {
    let K = pu(2u);
    if (s.ok != 0u && k < K) {
        return X[(g * K + k) * pu(25u) + s.q];
    }
    return vec4<f32>(0.0);
}

fn out_index(n: u32, oc: u32, oc_total: u32) -> u32 {
    return oc * pu(1u) + n;
}
