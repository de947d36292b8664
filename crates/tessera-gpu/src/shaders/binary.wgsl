// Element-wise binary ops with NumPy broadcasting: the output index is
// split over up to 6 merged dimensions, each with the stride of either
// operand (0 where it is broadcast).
//
// Params: 0 total, 1 rank, 2 op (ops::binary_code), 8.. dims[6],
// 16.. a strides[6], 24.. b strides[6].

@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid, 256u);
    if (i >= pu(0u)) {
        return;
    }
    let rank = pu(1u);
    var rem = i;
    var ia = 0u;
    var ib = 0u;
    for (var d = rank; d > 0u; d--) {
        let n = pu(7u + d);
        let c = rem % n;
        rem = rem / n;
        ia += c * pu(15u + d);
        ib += c * pu(23u + d);
    }
    let a = A[ia];
    let b = B[ib];
    var v: f32;
    switch pu(2u) {
        case 0u: { v = a + b; }
        case 1u: { v = a - b; }
        case 2u: { v = a * b; }
        case 3u: { v = a / b; }
        case 4u: { v = max(a, b); }
        case 5u: { v = min(a, b); }
        default: { v = select(a, a * b, a < 0.0); }
    }
    Y[i] = v;
}
