// B of the GEMM for a dense layer over N rows: B[k, n] = X[n, k]; the
// output is row-major [N, OC].

@group(0) @binding(1) var<storage, read> X: array<f32>;

struct BState {
    n: vec4<u32>,
    ok: vec4<u32>,
}

fn b_setup(g: u32, n0: u32, t: u32) -> BState {
    let N = pu(1u);
    var s: BState;
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + (t % 16u) * 4u + j;
        s.n[j] = n;
        s.ok[j] = select(0u, 1u, n < N);
    }
    return s;
}

fn b_load(s: BState, k: u32, g: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    let K = pu(2u);
    if (k < K) {
        for (var j = 0u; j < 4u; j++) {
            if (s.ok[j] != 0u) {
                v[j] = X[s.n[j] * K + k];
            }
        }
    }
    return v;
}

fn out_index(n: u32, oc: u32, oc_total: u32) -> u32 {
    return n * oc_total + oc;
}
