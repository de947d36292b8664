// Element-wise maps of one tensor: an activation, or a per-channel affine
// `x * mul[c] + add[c]` (BatchNorm not folded into a conv), then the
// activation. MulAdd holds mul[0..C] then add[0..C].
//
// Params: 0 total, 1 AFFINE, 2 C, 3 inner (elements per channel plane),
// 4 ACT, 5 ACT_A, 6 ACT_B.

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> MulAdd: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid, 256u);
    if (i >= pu(0u)) {
        return;
    }
    var v = X[i];
    if (pu(1u) != 0u) {
        let C = pu(2u);
        let c = (i / pu(3u)) % C;
        v = v * MulAdd[c] + MulAdd[C + c];
    }
    Y[i] = act(v, pu(4u), pf(5u), pf(6u));
}
