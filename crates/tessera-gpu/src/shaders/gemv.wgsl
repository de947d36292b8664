// Dense layer over a few rows (GEMV): one 64-invocation workgroup per output
// feature streams that weight row (vec4, rows zero-padded to a multiple of
// 4) and reduces in workgroup memory. Large weight matrices are split into
// row chunks (one dispatch each) that fit the storage binding limit.
//
// Params: 0 ROWS, 1 IN, 2 IN/4 rounded up, 3 rows of W in this chunk,
// 4 OUT (all features), 5 M_BASE (first feature of the chunk), 6 ACT,
// 7 ACT_A, 8 ACT_B.

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Wt: array<vec4<WT>>;
@group(0) @binding(3) var<storage, read> Bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;

var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o = wid.y * nwg.x + wid.x;
    if (o >= pu(3u)) {
        return;
    }
    let rows = pu(0u);
    let IN = pu(1u);
    let in4 = pu(2u);
    let OUT = pu(4u);
    let mb = pu(5u);
    let wrow = o * in4;
    for (var r = 0u; r < rows; r++) {
        let xb = r * IN;
        var s = 0.0;
        for (var i = lid; i < in4; i += 64u) {
            let w = vec4<f32>(Wt[wrow + i]);
            let c = i * 4u;
            var x: vec4<f32>;
            if (c + 3u < IN) {
                x = vec4<f32>(X[xb + c], X[xb + c + 1u], X[xb + c + 2u], X[xb + c + 3u]);
            } else {
                for (var j = 0u; j < 4u; j++) {
                    x[j] = select(0.0, X[xb + min(c + j, IN - 1u)], c + j < IN);
                }
            }
            s += dot(w, x);
        }
        red[lid] = s;
        workgroupBarrier();
        for (var h = 32u; h > 0u; h >>= 1u) {
            if (lid < h) {
                red[lid] += red[lid + h];
            }
            workgroupBarrier();
        }
        if (lid == 0u) {
            Y[r * OUT + mb + o] = act(red[0] + Bias[mb + o], pu(6u), pf(7u), pf(8u));
        }
        workgroupBarrier();
    }
}
