// One gather behind slice, pad (constant / reflect / edge), transpose,
// nearest resize, space-to-depth and depth-to-space: the output is viewed
// as up to 8 axes and out[o] = X[sum_d Tab[off_d + o_d]], or the fill value
// where any axis maps outside the input (Tab < 0). The per-axis tables are
// built at compile time by the same rules as the CPU backend.
//
// Params: 0 total, 1 rank, 2 fill (f32), 8.. dims[8], 16.. table offsets[8].

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Tab: array<i32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid, 256u);
    if (i >= pu(0u)) {
        return;
    }
    let rank = pu(1u);
    var rem = i;
    var off = 0;
    var inside = true;
    for (var d = rank; d > 0u; d--) {
        let n = pu(7u + d);
        let c = rem % n;
        rem = rem / n;
        let m = Tab[pu(15u + d) + c];
        inside = inside && m >= 0;
        off += m;
    }
    if (inside) {
        Y[i] = X[u32(off)];
    } else {
        Y[i] = pf(2u);
    }
}
