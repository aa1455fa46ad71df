// Kernels for the backward pass: a strided GEMM with store / add / add-square epilogues, used for
// dX = dY W, dW = dY^T X (squared into the Fisher accumulator at once), and attention's gradients.
// Run-time dispatch on sq_isa(): packed panels and an AVX2+FMA register tile (6 x 16, 12 accumulators),
// and a scalar path. AVX-512 machines use the AVX2 path (the lead may add a wider tile).
#include "sq_backward.h"
#include "sq_dense.h"
#include "sq_isa.h"
#include <stdlib.h>

enum { MR = 6, NR = 16 };

static inline void epilogue1(float *o, float c, int mode) {
    if (mode == SQ_BW_STORE) *o = c;
    else if (mode == SQ_BW_ADD) *o += c;
    else *o += c * c;
}

// Scalar reference: rows [0, m), columns [j0, j1), the whole reduction in order.
static void block_scalar(const float *a, int64_t sai, int64_t sap, const float *b, int64_t sbp, int64_t sbj,
                         float *out, int64_t ldo, int64_t m, int64_t kdim, int64_t j0, int64_t j1, int mode) {
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = j0; j < j1; j++) {
            float s = 0;
            for (int64_t p = 0; p < kdim; p++) s += a[i * sai + p * sap] * b[p * sbp + j * sbj];
            epilogue1(out + i * ldo + j, s, mode);
        }
    }
}

#ifdef SQ_X86
// ---- Packed GEMM (AVX2+FMA), BLIS-style ----
// C[i, j] = sum_p A(i, p) B(p, j) with A(i, p) = a[i * sai + p * sap] and B(p, j) = b[p * sbp + j * sbj].
// Loops: column blocks of NC -> reduction blocks of kc (B packed: panels of NR columns, [panel][p][NR],
// zero-padded) -> row blocks of mc (A packed: tiles of MR rows, [tile][p][MR], zero-padded) -> panels
// -> tiles, each a full 6 x 16 register tile; partial tiles go through a scratch tile in the epilogue.
// kc is balanced over the reduction (at most KC_MAX, a multiple of 8) so that a B panel stays in L1,
// and the A block (mc x kc) in L2. SQ_BW_ADD_SQUARE keeps the whole reduction in one block.
enum { KC_MAX = 320, MC_MAX = 144, NC_MAX = 2048 };

// Per-thread packing buffers.
static _Thread_local float *t_pa = NULL, *t_pb = NULL;
static _Thread_local int64_t t_pa_n = 0, t_pb_n = 0;

static float *grow(float **buf, int64_t *cap, int64_t n) {
    if (*cap < n) {
        free(*buf);
        *buf = NULL;
        if (posix_memalign((void **)buf, 64, (size_t)n * sizeof(float)) != 0) *buf = NULL;
        *cap = *buf ? n : 0;
    }
    return *buf;
}

// In-register transpose of an 8 x 8 block: r[i][q] -> r[q][i].
T_AVX2 static inline __attribute__((always_inline)) void transpose8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20); r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20); r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31); r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31); r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// Packs rows [0, rows) x reduction [0, pk) of A into MR-row tiles. Writes up to 8 floats past the
// last tile (the buffer has that slack).
T_AVX2 static void pack_a_avx2(const float *a, int64_t sai, int64_t sap, int64_t rows, int64_t pk, float *pa) {
    const __m256i mask6 = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
    for (int64_t t = 0; t < rows; t += MR) {
        int64_t mr = rows - t < MR ? rows - t : MR;
        float *dst = pa + t * pk;
        const float *src = a + t * sai;
        if (mr == MR && sap == 1) {
            int64_t p = 0;
            for (; p + 8 <= pk; p += 8) {
                __m256 r[8];
                for (int i = 0; i < MR; i++) r[i] = _mm256_loadu_ps(src + i * sai + p);
                r[6] = r[7] = _mm256_setzero_ps();
                transpose8(r);
                // Each store writes 6 values and 2 that the next store (or the next tile) overwrites.
                for (int q = 0; q < 8; q++) _mm256_storeu_ps(dst + (p + q) * MR, r[q]);
            }
            for (; p < pk; p++)
                for (int i = 0; i < MR; i++) dst[p * MR + i] = src[i * sai + p];
        } else if (mr == MR && sai == 1) {
            for (int64_t p = 0; p < pk; p++)
                _mm256_storeu_ps(dst + p * MR, _mm256_maskload_ps(src + p * sap, mask6));
        } else {
            for (int64_t p = 0; p < pk; p++)
                for (int64_t i = 0; i < MR; i++) dst[p * MR + i] = i < mr ? src[i * sai + p * sap] : 0;
        }
    }
}

// Packs columns [0, cols) x reduction [0, pk) of B into NR-column panels.
T_AVX2 static void pack_b_avx2(const float *b, int64_t sbp, int64_t sbj, int64_t pk, int64_t cols, float *pb) {
    for (int64_t jb = 0; jb < cols; jb += NR) {
        int64_t nr = cols - jb < NR ? cols - jb : NR;
        float *dst = pb + jb * pk;
        const float *src = b + jb * sbj;
        if (nr == NR && sbj == 1) {
            for (int64_t p = 0; p < pk; p++) {
                _mm256_store_ps(dst + p * NR, _mm256_loadu_ps(src + p * sbp));
                _mm256_store_ps(dst + p * NR + 8, _mm256_loadu_ps(src + p * sbp + 8));
            }
        } else if (nr == NR && sbp == 1) {
            int64_t p = 0;
            for (; p + 8 <= pk; p += 8) {
                for (int h = 0; h < 2; h++) {
                    __m256 r[8];
                    for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(src + (h * 8 + j) * sbj + p);
                    transpose8(r);
                    for (int q = 0; q < 8; q++) _mm256_store_ps(dst + (p + q) * NR + h * 8, r[q]);
                }
            }
            for (; p < pk; p++)
                for (int j = 0; j < NR; j++) dst[p * NR + j] = src[j * sbj + p];
        } else {
            for (int64_t p = 0; p < pk; p++)
                for (int64_t j = 0; j < NR; j++) dst[p * NR + j] = j < nr ? src[p * sbp + j * sbj] : 0;
        }
    }
}

#define EPI_ROW(i, o)                                                                                   \
    if (mode == SQ_BW_STORE) {                                                                          \
        _mm256_storeu_ps(o, c##i##0);                                                                   \
        _mm256_storeu_ps(o + 8, c##i##1);                                                               \
    } else if (mode == SQ_BW_ADD) {                                                                     \
        _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), c##i##0));                                \
        _mm256_storeu_ps(o + 8, _mm256_add_ps(_mm256_loadu_ps(o + 8), c##i##1));                        \
    } else {                                                                                            \
        _mm256_storeu_ps(o, _mm256_fmadd_ps(c##i##0, c##i##0, _mm256_loadu_ps(o)));                     \
        _mm256_storeu_ps(o + 8, _mm256_fmadd_ps(c##i##1, c##i##1, _mm256_loadu_ps(o + 8)));             \
    }

// One 6 x 16 tile over kc packed steps; rows [0, mr) and columns [0, nr) are combined into out.
T_AVX2 static void micro_6x16(const float *pa, const float *pb, int64_t kc, float *out, int64_t ldo,
                              int mr, int nr, int mode) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int i = 0; i < mr; i++) _mm_prefetch((const char *)(out + i * ldo), _MM_HINT_T0), _mm_prefetch((const char *)(out + i * ldo + 15), _MM_HINT_T0);
#define STEP(P)                                                                                         \
    {                                                                                                   \
        __m256 b0 = _mm256_load_ps(pb + (P) * NR), b1 = _mm256_load_ps(pb + (P) * NR + 8), av;          \
        av = _mm256_broadcast_ss(pa + (P) * MR + 0); c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01); \
        av = _mm256_broadcast_ss(pa + (P) * MR + 1); c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11); \
        av = _mm256_broadcast_ss(pa + (P) * MR + 2); c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21); \
        av = _mm256_broadcast_ss(pa + (P) * MR + 3); c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31); \
        av = _mm256_broadcast_ss(pa + (P) * MR + 4); c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41); \
        av = _mm256_broadcast_ss(pa + (P) * MR + 5); c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51); \
    }
    int64_t p = 0;
    for (; p + 4 <= kc; p += 4) {
        STEP(0) STEP(1) STEP(2) STEP(3)
        pa += 4 * MR;
        pb += 4 * NR;
    }
    for (; p < kc; p++) {
        STEP(0)
        pa += MR;
        pb += NR;
    }
#undef STEP
    if (mr == MR && nr == NR) {
        EPI_ROW(0, out) EPI_ROW(1, out + ldo) EPI_ROW(2, out + 2 * ldo)
        EPI_ROW(3, out + 3 * ldo) EPI_ROW(4, out + 4 * ldo) EPI_ROW(5, out + 5 * ldo)
        return;
    }
    float tile[MR * NR] __attribute__((aligned(32)));
    _mm256_store_ps(tile + 0, c00); _mm256_store_ps(tile + 8, c01);
    _mm256_store_ps(tile + 16, c10); _mm256_store_ps(tile + 24, c11);
    _mm256_store_ps(tile + 32, c20); _mm256_store_ps(tile + 40, c21);
    _mm256_store_ps(tile + 48, c30); _mm256_store_ps(tile + 56, c31);
    _mm256_store_ps(tile + 64, c40); _mm256_store_ps(tile + 72, c41);
    _mm256_store_ps(tile + 80, c50); _mm256_store_ps(tile + 88, c51);
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) epilogue1(out + i * ldo + j, tile[i * NR + j], mode);
}
#undef EPI_ROW

// C (mode) A B for rows [0, m) and columns [j0, j1) on the calling thread; false if a buffer could
// not be allocated (nothing written then).
T_AVX2 static int gemm_packed_avx2(const float *a, int64_t sai, int64_t sap, const float *b, int64_t sbp, int64_t sbj,
                                   float *out, int64_t ldo, int64_t m, int64_t kdim, int64_t j0, int64_t j1, int mode) {
    int64_t n = j1 - j0;
    int64_t kc;
    if (mode == SQ_BW_ADD_SQUARE) kc = kdim;
    else {
        int64_t nk = (kdim + KC_MAX - 1) / KC_MAX;
        kc = ((kdim + nk - 1) / nk + 7) & ~(int64_t)7;
    }
    // Row blocks: the packed A block (mc x kc) within about 192 KB of L2.
    int64_t mcmax = (48 * 1024) / (kc > 0 ? kc : 1) / MR * MR;
    if (mcmax > MC_MAX) mcmax = MC_MAX;
    if (mcmax < MR) mcmax = MR;
    int64_t nmb = (m + mcmax - 1) / mcmax;
    int64_t mc = ((m + nmb - 1) / nmb + MR - 1) / MR * MR;
    int64_t ncap = n < NC_MAX ? (n + NR - 1) / NR * NR : NC_MAX;
    float *pb = grow(&t_pb, &t_pb_n, ncap * kc);
    float *pa = grow(&t_pa, &t_pa_n, mc * kc + 8);
    if (!pa || !pb) return 0;
    for (int64_t jc = 0; jc < n; jc += NC_MAX) {
        int64_t nc = n - jc < NC_MAX ? n - jc : NC_MAX;
        for (int64_t pc = 0; pc < kdim; pc += kc) {
            int64_t pk = kdim - pc < kc ? kdim - pc : kc;
            int md = pc == 0 ? mode : SQ_BW_ADD;  // later reduction blocks add to what the first wrote
            pack_b_avx2(b + pc * sbp + (j0 + jc) * sbj, sbp, sbj, pk, nc, pb);
            for (int64_t ic = 0; ic < m; ic += mc) {
                int64_t mcur = m - ic < mc ? m - ic : mc;
                pack_a_avx2(a + ic * sai + pc * sap, sai, sap, mcur, pk, pa);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    int nr = (int)(nc - jr < NR ? nc - jr : NR);
                    const float *pbj = pb + jr * pk;
                    float *o = out + ic * ldo + j0 + jc + jr;
                    for (int64_t ir = 0; ir < mcur; ir += MR) {
                        int mr = (int)(mcur - ir < MR ? mcur - ir : MR);
                        micro_6x16(pa + ir * pk, pbj, pk, o + ir * ldo, ldo, mr, nr, md);
                    }
                }
            }
        }
    }
    return 1;
}
#endif

#ifdef SQ_ARM
// NEON, when B's columns are contiguous (sbj == 1, as in dX = dY W and dW = dY^T X): register tiles of
// 4 rows x 16 columns (16 accumulators), each sum over p in order with fused multiply-adds as the
// scalar loop's; no packing. Other strides, and the columns past the last multiple of 4, go scalar.
static INL void bw_epilogue_neon(float *o, float32x4_t c, int mode) {
    if (mode == SQ_BW_STORE) vst1q_f32(o, c);
    else if (mode == SQ_BW_ADD) vst1q_f32(o, vaddq_f32(vld1q_f32(o), c));
    else vst1q_f32(o, vfmaq_f32(vld1q_f32(o), c, c));
}
static INL void bw_tile_neon(const float *a, int64_t sai, int64_t sap, const float *b, int64_t sbp, float *out,
                             int64_t ldo, int64_t kdim, int mode, const int MRN, const int NQ) {
    float32x4_t c[4][4];
    for (int i = 0; i < MRN; i++)
        for (int q = 0; q < NQ; q++) c[i][q] = vdupq_n_f32(0);
    for (int64_t p = 0; p < kdim; p++) {
        float32x4_t bv[4];
        for (int q = 0; q < NQ; q++) bv[q] = vld1q_f32(b + p * sbp + 4 * q);
        for (int i = 0; i < MRN; i++) {
            const float av = a[i * sai + p * sap];
            for (int q = 0; q < NQ; q++) c[i][q] = vfmaq_n_f32(c[i][q], bv[q], av);
        }
    }
    for (int i = 0; i < MRN; i++)
        for (int q = 0; q < NQ; q++) bw_epilogue_neon(out + i * ldo + 4 * q, c[i][q], mode);
}
static int gemm_general_neon(const float *a, int64_t sai, int64_t sap, const float *b, int64_t sbp, int64_t sbj,
                             float *out, int64_t ldo, int64_t m, int64_t kdim, int64_t j0, int64_t j1, int mode) {
    if (sbj != 1) return 0;
    const int64_t j4 = j0 + ((j1 - j0) & ~(int64_t)3);
    for (int64_t i = 0; i < m; i += 4) {
        const int64_t mr = m - i < 4 ? m - i : 4;
        for (int64_t j = j0; j < j4;) {
            const int64_t nq = (j4 - j) / 4 < 4 ? (j4 - j) / 4 : 4;
            const float *ai = a + i * sai, *bj = b + j;
            float *o = out + i * ldo + j;
            if (mr == 4 && nq == 4) bw_tile_neon(ai, sai, sap, bj, sbp, o, ldo, kdim, mode, 4, 4);
            else
                for (int64_t r = 0; r < mr; r++) {
                    if (nq == 4) bw_tile_neon(ai + r * sai, sai, sap, bj, sbp, o + r * ldo, ldo, kdim, mode, 1, 4);
                    else if (nq == 3) bw_tile_neon(ai + r * sai, sai, sap, bj, sbp, o + r * ldo, ldo, kdim, mode, 1, 3);
                    else if (nq == 2) bw_tile_neon(ai + r * sai, sai, sap, bj, sbp, o + r * ldo, ldo, kdim, mode, 1, 2);
                    else bw_tile_neon(ai + r * sai, sai, sap, bj, sbp, o + r * ldo, ldo, kdim, mode, 1, 1);
                }
            j += 4 * nq;
        }
    }
    if (j4 < j1) block_scalar(a, sai, sap, b, sbp, sbj, out, ldo, m, kdim, j4, j1, mode);
    return 1;
}
#endif

void sq_gemm_general_f32(const float *a, int64_t sai, int64_t sap, const float *b, int64_t sbp, int64_t sbj,
                         float *out, int64_t ldo, int64_t m, int64_t kdim, int64_t j0, int64_t j1, int mode) {
    if (m <= 0 || j1 <= j0) return;
#ifdef SQ_X86
    if (kdim > 0 && sq_isa() >= SQ_ISA_AVX2 && gemm_packed_avx2(a, sai, sap, b, sbp, sbj, out, ldo, m, kdim, j0, j1, mode)) return;
#endif
#ifdef SQ_ARM
    if (kdim > 0 && sq_isa() >= SQ_ISA_NEON && gemm_general_neon(a, sai, sap, b, sbp, sbj, out, ldo, m, kdim, j0, j1, mode)) return;
#endif
    block_scalar(a, sai, sap, b, sbp, sbj, out, ldo, m, kdim, j0, j1, mode);
}

void sq_gemm_general_scalar_f32(const float *a, int64_t sai, int64_t sap, const float *b, int64_t sbp, int64_t sbj,
                                float *out, int64_t ldo, int64_t m, int64_t kdim, int64_t j0, int64_t j1, int mode) {
    if (m <= 0 || j1 <= j0) return;
    block_scalar(a, sai, sap, b, sbp, sbj, out, ldo, m, kdim, j0, j1, mode);
}

void sq_gemm_strided_f32(const float *a, int64_t sai, int64_t sap, const float *b, int64_t ldb,
                         float *out, int64_t ldo, int64_t m, int64_t kdim, int64_t j0, int64_t j1, int mode) {
    sq_gemm_general_f32(a, sai, sap, b, ldb, 1, out, ldo, m, kdim, j0, j1, mode);
}

#ifdef SQ_X86
T_AVX2 static void add_square_avx2(const float *x, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        _mm256_storeu_ps(out + i, _mm256_fmadd_ps(v, v, _mm256_loadu_ps(out + i)));
    }
    for (; i < n; i++) out[i] += x[i] * x[i];
}
#endif

void sq_add_square_f32(const float *x, float *out, int64_t n) {
#ifdef SQ_X86
    if (sq_isa() >= SQ_ISA_AVX2) { add_square_avx2(x, out, n); return; }
#endif
#ifdef SQ_ARM
    if (sq_isa() >= SQ_ISA_NEON) {
        int64_t i = 0;
        for (; i + 4 <= n; i += 4) {
            float32x4_t v = vld1q_f32(x + i);
            vst1q_f32(out + i, vfmaq_f32(vld1q_f32(out + i), v, v));
        }
        for (; i < n; i++) out[i] += x[i] * x[i];
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) out[i] += x[i] * x[i];
}
