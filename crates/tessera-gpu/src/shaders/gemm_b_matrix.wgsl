// B of the GEMM as a plain row-major matrix per group: B[k, n] =
// X[(g * K + k) * N + n] (the transformed input tiles of a Winograd
// convolution, `winograd_input.wgsl`). Used with SPLIT (raw products to
// scratch), so `out_index` only completes the interface.

@group(0) @binding(1) var<storage, read> X: array<f32>;

struct BState {
    n0: u32,
}

fn b_setup(g: u32, n0: u32, t: u32) -> BState {
    var s: BState;
    s.n0 = n0 + (t % 16u) * 4u;
    return s;
}

fn b_load(s: BState, k: u32, g: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    let N = pu(1u);
    let K = pu(2u);
    if (k < K) {
        let row = (g * K + k) * N;
        for (var j = 0u; j < 4u; j++) {
            if (s.n0 + j < N) {
                v[j] = X[row + s.n0 + j];
            }
        }
    }
    return v;
}

fn out_index(n: u32, oc: u32, oc_total: u32) -> u32 {
    return oc * pu(1u) + n;
}
