// Local response normalisation across channels (ONNX LRN):
// y = x / (bias + alpha / size * sum of x^2 over channels
// c - floor((size-1)/2) ..= c + ceil((size-1)/2))^beta.
//
// Params: 0 total, 1 C, 2 plane, 3 before, 4 after, 5 alpha / size (f32),
// 6 beta (f32), 7 bias (f32).

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid, 256u);
    if (i >= pu(0u)) {
        return;
    }
    let C = pu(1u);
    let plane = pu(2u);
    let p = i % plane;
    let c = (i / plane) % C;
    let n = i / (plane * C);
    let lo = select(0u, c - pu(3u), c >= pu(3u));
    let hi = min(c + pu(4u) + 1u, C);
    var s = 0.0;
    for (var cj = lo; cj < hi; cj++) {
        let v = X[(n * C + cj) * plane + p];
        s += v * v;
    }
    Y[i] = X[i] / pow(pf(7u) + pf(5u) * s, pf(6u));
}
