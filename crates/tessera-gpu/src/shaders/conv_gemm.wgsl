// Convolution (and dense layers over many rows) as a tiled implicit GEMM:
// C[m, n] = sum_k A[m, k] B[k, n] per group, A = the weights (uploaded once,
// transposed to [group][Kp][Mp] and zero-padded to whole tiles, so A tiles
// load as aligned vec4 without bounds checks), B = the input seen through
// the mode snippet above this text (`b_setup` / `b_load` / `out_index`):
// an implicit im2col, a pointwise vec4 view, or dense rows. A 16x16
// workgroup computes a BM x 64 tile of C (TM x 4 per invocation) from
// BK-deep slices staged in workgroup memory. Bias, an optional residual and
// the activation are applied in the epilogue.
//
// Params: 0 M, 1 N, 2 K, 3 Mp/4, 4 Kp, 5 C, 6 H, 7 W, 8 OH, 9 OW, 10 SH,
// 11 SW, 12 PT, 13 PL, 14 ICG, 15 OC, 16 HAS_RES, 17 ACT, 18 ACT_A,
// 19 ACT_B, 20 M_BASE, 21 H*W, 22 OH*OW.

const BN: u32 = 64u;
const BK: u32 = 16u;
const BM: u32 = 16u * TM;

@group(0) @binding(2) var<storage, read> Wt: array<vec4<WT>>;
@group(0) @binding(3) var<storage, read> Bias: array<f32>;
@group(0) @binding(5) var<storage, read> Res: array<f32>;
@group(0) @binding(6) var<storage, read_write> Y: array<f32>;

var<workgroup> As: array<f32, BK * BM>;
var<workgroup> Bs: array<vec4<f32>, 256>;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let M = pu(0u);
    let N = pu(1u);
    let K = pu(2u);
    let mp4 = pu(3u);
    let kp = pu(4u);
    let g = wid.z;
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    let tx = lid.x;
    let ty = lid.y;
    let st = b_setup(g, n0, t);
    var acc: array<vec4<f32>, TM>;
    for (var i = 0u; i < TM; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    let wbase = g * kp * mp4 + m0 / 4u;
    let kk_load = t / 16u;
    for (var k0 = 0u; k0 < K; k0 += BK) {
        for (var e = t; e < BK * BM / 4u; e += 256u) {
            let kk = e / (BM / 4u);
            let mq = e % (BM / 4u);
            let v = vec4<f32>(Wt[wbase + (k0 + kk) * mp4 + mq]);
            let o = kk * BM + mq * 4u;
            As[o] = v.x;
            As[o + 1u] = v.y;
            As[o + 2u] = v.z;
            As[o + 3u] = v.w;
        }
        Bs[t] = b_load(st, k0 + kk_load, g);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let b = Bs[kk * 16u + tx];
            let arow = kk * BM + ty * TM;
            for (var i = 0u; i < TM; i++) {
                acc[i] += As[arow + i] * b;
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
    for (var i = 0u; i < TM; i++) {
        let m = m0 + ty * TM + i;
        if (m < M) {
            let oc = g * M + m + mbase;
            let bv = Bias[oc];
            let a = acc[i];
            for (var j = 0u; j < 4u; j++) {
                let n = n0 + tx * 4u + j;
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
