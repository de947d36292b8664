// Convolution (and dense layers over many rows) as a tiled implicit GEMM:
// C[m, n] = sum_k A[m, k] B[k, n] per group, A = the weights (uploaded once,
// transposed to [group][Kp][Mp] and zero-padded to whole tiles, so A tiles
// load as aligned vec4 without bounds checks), B = the input seen through
// the mode snippet above this text (`b_setup` / `b_load` / `out_index`):
// an implicit im2col, a pointwise vec4 view, or dense rows. A 16x16
// workgroup computes a BM x BN tile of C, TM x TN per invocation (TM rows,
// TN / 4 column quads 64 columns apart, so that neighbouring invocations
// read and write neighbouring pixels), from BK-deep slices staged in
// workgroup memory. Bias, an optional residual and the activation are
// applied in the epilogue. TM (1, 2, 4, 8) and TN (4, 8) are template
// constants; the tile of each layer is chosen by `ops::conv` (a heuristic,
// or measured on the device: `crate::tune`).
//
// Split-K (template constant SPLIT): workgroup z = group * SLICES + slice
// sums only K rows [slice * KC, slice * KC + KC) and stores the raw partial
// product at Y[(slice * OC + oc) * N + n], a scratch buffer;
// `splitk_reduce.wgsl` adds the slices, bias, residual and activation.
//
// Params: 0 M, 1 N, 2 K, 3 Mp/4, 4 Kp, 5 C, 6 H, 7 W, 8 OH, 9 OW, 10 SH,
// 11 SW, 12 PT, 13 PL, 14 ICG, 15 OC, 16 HAS_RES, 17 ACT, 18 ACT_A,
// 19 ACT_B, 20 M_BASE, 21 H*W, 22 OH*OW, 23 SLICES, 24 KC (K rows per
// slice, a multiple of BK); 23 and 24 are read only when SPLIT.

const NQ: u32 = TN / 4u;
const BN: u32 = 16u * TN;
const BK: u32 = 16u;
const BM: u32 = 16u * TM;
const AQ: u32 = BM / 4u;

@group(0) @binding(2) var<storage, read> Wt: array<vec4<WT>>;
@group(0) @binding(3) var<storage, read> Bias: array<f32>;
@group(0) @binding(5) var<storage, read> Res: array<f32>;
@group(0) @binding(6) var<storage, read_write> Y: array<f32>;

// A slice: [BK][BM] as vec4 along m; B slice: [BK][NQ * 16] column quads.
var<workgroup> As: array<vec4<f32>, BK * AQ>;
var<workgroup> Bs: array<vec4<f32>, BK * 16u * NQ>;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let M = pu(0u);
    let N = pu(1u);
    let K = pu(2u);
    let mp4 = pu(3u);
    let kp = pu(4u);
    let slices = select(1u, pu(23u), SPLIT);
    let g = wid.z / slices;
    let slice = wid.z % slices;
    let k_begin = select(0u, slice * pu(24u), SPLIT);
    let k_end = select(K, min(K, k_begin + pu(24u)), SPLIT);
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    let tx = lid.x;
    let ty = lid.y;
    var st: array<BState, NQ>;
    for (var q = 0u; q < NQ; q++) {
        st[q] = b_setup(g, n0 + q * 64u, t);
    }
    var acc: array<vec4<f32>, TM * NQ>;
    for (var i = 0u; i < TM * NQ; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    let wbase = g * kp * mp4 + m0 / 4u;
    let kk_load = t / 16u;
    let q_load = t % 16u;
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        for (var e = t; e < BK * AQ; e += 256u) {
            As[e] = vec4<f32>(Wt[wbase + (k0 + e / AQ) * mp4 + e % AQ]);
        }
        for (var q = 0u; q < NQ; q++) {
            Bs[(kk_load * NQ + q) * 16u + q_load] = b_load(st[q], k0 + kk_load, g);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var b: array<vec4<f32>, NQ>;
            for (var q = 0u; q < NQ; q++) {
                b[q] = Bs[(kk * NQ + q) * 16u + tx];
            }
            for (var i = 0u; i < TM; i++) {
                let r = kk * BM + ty * TM + i;
                let a = As[r / 4u][r % 4u];
                for (var q = 0u; q < NQ; q++) {
                    acc[i * NQ + q] += a * b[q];
                }
            }
        }
        workgroupBarrier();
    }
    let oc_total = pu(15u);
    let has_res = pu(16u) != 0u;
    let ak = pu(17u);
    let aa = pf(18u);
    let ab = pf(19u);
    let mbase = pu(20u);
    if (SPLIT) {
        for (var i = 0u; i < TM; i++) {
            let m = m0 + ty * TM + i;
            if (m < M) {
                let row = (slice * oc_total + g * M + m + mbase) * N;
                for (var q = 0u; q < NQ; q++) {
                    for (var j = 0u; j < 4u; j++) {
                        let n = n0 + q * 64u + tx * 4u + j;
                        if (n < N) {
                            Y[row + n] = acc[i * NQ + q][j];
                        }
                    }
                }
            }
        }
        return;
    }
    for (var i = 0u; i < TM; i++) {
        let m = m0 + ty * TM + i;
        if (m < M) {
            let oc = g * M + m + mbase;
            let bv = Bias[oc];
            for (var q = 0u; q < NQ; q++) {
                let a = acc[i * NQ + q];
                for (var j = 0u; j < 4u; j++) {
                    let n = n0 + q * 64u + tx * 4u + j;
                    if (n < N) {
                        let idx = out_index(n, oc, oc_total);
                        var v = a[j] + bv;
                        if (has_res) {
                            v += Res[idx];
                        }
                        Y[idx] = act(v, ak, aa, ab);
                    }
                }
            }
        }
    }
}
