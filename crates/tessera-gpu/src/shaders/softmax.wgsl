// Softmax over `len` elements of stride `inner`: exp(x - max) / sum.
// ROWS (inner = 1): one 64-invocation workgroup per row, reductions in
// workgroup memory. Otherwise one invocation per (outer, inner) column.
//
// Params: 0 outer, 1 len, 2 inner.

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let outer = pu(0u);
    let len = pu(1u);
    let inner = pu(2u);
    if (ROWS == 1u) {
        let r = wid.y * nwg.x + wid.x;
        if (r >= outer) {
            return;
        }
        let base = r * len;
        var m = bitcast<f32>(0xff7fffffu);
        for (var i = lid; i < len; i += 64u) {
            m = max(m, X[base + i]);
        }
        red[lid] = m;
        workgroupBarrier();
        for (var h = 32u; h > 0u; h >>= 1u) {
            if (lid < h) {
                red[lid] = max(red[lid], red[lid + h]);
            }
            workgroupBarrier();
        }
        let mx = red[0];
        workgroupBarrier();
        var s = 0.0;
        for (var i = lid; i < len; i += 64u) {
            let e = exp(X[base + i] - mx);
            Y[base + i] = e;
            s += e;
        }
        red[lid] = s;
        workgroupBarrier();
        for (var h = 32u; h > 0u; h >>= 1u) {
            if (lid < h) {
                red[lid] += red[lid + h];
            }
            workgroupBarrier();
        }
        let total = red[0];
        for (var i = lid; i < len; i += 64u) {
            Y[base + i] = Y[base + i] / total;
        }
    } else {
        let col = linear_id(wid, nwg, lid, 64u);
        if (col >= outer * inner) {
            return;
        }
        let base = (col / inner) * len * inner + col % inner;
        var m = bitcast<f32>(0xff7fffffu);
        for (var i = 0u; i < len; i++) {
            m = max(m, X[base + i * inner]);
        }
        var s = 0.0;
        for (var i = 0u; i < len; i++) {
            let e = exp(X[base + i * inner] - m);
            Y[base + i * inner] = e;
            s += e;
        }
        for (var i = 0u; i < len; i++) {
            Y[base + i * inner] = Y[base + i * inner] / s;
        }
    }
}
