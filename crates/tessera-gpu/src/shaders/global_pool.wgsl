// Global average / max pooling: one 64-invocation workgroup per plane.
//
// Params: 0 planes, 1 plane length, 2 IS_MAX.

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let p = wid.y * nwg.x + wid.x;
    if (p >= pu(0u)) {
        return;
    }
    let len = pu(1u);
    let is_max = pu(2u) != 0u;
    var acc = select(0.0, bitcast<f32>(0xff7fffffu), is_max);
    for (var i = lid; i < len; i += 64u) {
        let v = X[p * len + i];
        acc = select(acc + v, max(acc, v), is_max);
    }
    red[lid] = acc;
    workgroupBarrier();
    for (var h = 32u; h > 0u; h >>= 1u) {
        if (lid < h) {
            red[lid] = select(red[lid] + red[lid + h], max(red[lid], red[lid + h]), is_max);
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        Y[p] = select(red[0] / f32(len), red[0], is_max);
    }
}
