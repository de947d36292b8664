// Second pass of a split-K conv GEMM (`conv_gemm.wgsl` with more than one
// K slice): each output element is the sum of its slices' partial products
// (laid out [slice][OC][N], N = batch x output pixels), plus the bias, an
// optional residual, then the activation. One invocation per output element
// of the NCHW result.
//
// Params: 0 total, 1 OC, 2 OH*OW, 3 N, 4 slices, 5 HAS_RES, 6 ACT, 7 ACT_A,
// 8 ACT_B.

@group(0) @binding(1) var<storage, read> Part: array<f32>;
@group(0) @binding(2) var<storage, read> Bias: array<f32>;
@group(0) @binding(3) var<storage, read> Res: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid, 256u);
    if (i >= pu(0u)) {
        return;
    }
    let oc_total = pu(1u);
    let ohw = pu(2u);
    let N = pu(3u);
    let plane = oc_total * ohw;
    let oc = (i % plane) / ohw;
    let n = (i / plane) * ohw + i % ohw;
    var at = oc * N + n;
    var v = 0.0;
    for (var s = 0u; s < pu(4u); s++) {
        v += Part[at];
        at += oc_total * N;
    }
    v += Bias[oc];
    if (pu(5u) != 0u) {
        v += Res[i];
    }
    Y[i] = act(v, pu(6u), pf(7u), pf(8u));
}
