// Shared by every kernel. Binding 0 of group 0 is the dispatch's parameter
// block: 64 u32 words (floats stored as their bits), written once at compile
// time. `WT` (the weight element type, f32 or f16) and the template
// constants are declared above this text by the pipeline cache.

struct Params { v: array<vec4<u32>, 16> }
@group(0) @binding(0) var<uniform> P: Params;

fn pu(i: u32) -> u32 { return P.v[i >> 2u][i & 3u]; }
fn pf(i: u32) -> f32 { return bitcast<f32>(pu(i)); }
fn pi(i: u32) -> i32 { return bitcast<i32>(pu(i)); }

// Linear invocation index of a 1-D kernel dispatched over a 2-D grid of
// workgroups of `wg` invocations (grids are split to stay under 65535 per axis).
fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, wg: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * wg + lid;
}

// tessera_graph::Activation, numbered as in ops::act_code.
fn act(x: f32, k: u32, a: f32, b: f32) -> f32 {
    switch k {
        case 1u: { return max(x, 0.0); }
        case 2u: { return select(x, a * x, x < 0.0); }
        case 3u: { return 1.0 / (1.0 + exp(-x)); }
        // Clamped: some drivers compute tanh through exp and overflow to NaN.
        case 4u: { return tanh(clamp(x, -20.0, 20.0)); }
        case 5u: { return min(max(x, a), b); }
        case 6u: { return clamp(a * x + b, 0.0, 1.0); }
        case 7u: { return x * clamp(x / 6.0 + 0.5, 0.0, 1.0); }
        default: { return x; }
    }
}
