// Copies one input of a concat (or a whole tensor, for an unaliased
// reshape) into its place in the output: input element i of
// [outer, len * inner] goes to outer row i / (len * inner) of pitch
// `pitch`, at `offset` within that row.
//
// Params: 0 total (input elements), 1 len * inner, 2 output row pitch,
// 3 offset within the row.

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid, 256u);
    if (i >= pu(0u)) {
        return;
    }
    let run = pu(1u);
    Y[(i / run) * pu(2u) + pu(3u) + i % run] = X[i];
}
