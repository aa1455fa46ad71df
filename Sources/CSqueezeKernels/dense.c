// Dense kernels: dot/axpy, GEMV and GEMM over F32/F16/BF16 weights.
// Each entry point dispatches at run time on sq_isa_fast(); the AVX-512 and AVX2 variants are
// compiled with per-function target attributes so the library builds for baseline x86-64.
#include "sq_dense.h"
#include "sq_backward.h"
#include "sq_isa.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------- dot / axpy
#ifdef SQ_X86
#include "sq_vec_avx512.h"
#include "dense_vec.h"
#include "sq_vec_avx2.h"
#include "dense_vec.h"
#endif

#ifdef SQ_ARM
#include "sq_vec_neon.h"
#include "dense_vec.h"
#endif

float sq_dot_f32(const float *a, const float *b, int64_t n) {
#ifdef SQ_X86
    int isa = sq_isa_fast();
    if (isa >= SQ_ISA_AVX512) return dot_avx512(a, b, n);
    if (isa >= SQ_ISA_AVX2) return dot_avx2(a, b, n);
#endif
#ifdef SQ_ARM
    if (sq_isa_fast() >= SQ_ISA_NEON) return dot_neon(a, b, n);
#endif
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

#ifdef SQ_X86
// Four streams (the quarters of the range) read at once, two accumulators each: keeps enough loads
// in flight that one core reaches its memory bandwidth, as a GEMV over four rows does.
T_AVX2 static float read_sum_avx2(const float *p, int64_t n) {
    int64_t q = (n / 4) & ~(int64_t)15;
    const float *a = p, *b = p + q, *c = p + 2 * q, *d = p + 3 * q;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    __m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps(), t2 = _mm256_setzero_ps(), t3 = _mm256_setzero_ps();
    for (int64_t i = 0; i < q; i += 16) {
        s0 = _mm256_add_ps(s0, _mm256_load_ps(a + i)); t0 = _mm256_add_ps(t0, _mm256_load_ps(a + i + 8));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(b + i)); t1 = _mm256_add_ps(t1, _mm256_load_ps(b + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(c + i)); t2 = _mm256_add_ps(t2, _mm256_load_ps(c + i + 8));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(d + i)); t3 = _mm256_add_ps(t3, _mm256_load_ps(d + i + 8));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s0, t0), _mm256_add_ps(s1, t1)),
                             _mm256_add_ps(_mm256_add_ps(s2, t2), _mm256_add_ps(s3, t3)));
    float r = sq_hsum8(s);
    for (int64_t i = 4 * q; i < n; i++) r += p[i];
    return r;
}
#endif

#ifdef SQ_ARM
// As read_sum_avx2: four streams, two accumulators each.
static float read_sum_neon(const float *p, int64_t n) {
    int64_t q = (n / 4) & ~(int64_t)7;
    const float *a = p, *b = p + q, *c = p + 2 * q, *d = p + 3 * q;
    float32x4_t s[8];
    for (int u = 0; u < 8; u++) s[u] = vdupq_n_f32(0);
    for (int64_t i = 0; i < q; i += 8) {
        s[0] = vaddq_f32(s[0], vld1q_f32(a + i)); s[1] = vaddq_f32(s[1], vld1q_f32(a + i + 4));
        s[2] = vaddq_f32(s[2], vld1q_f32(b + i)); s[3] = vaddq_f32(s[3], vld1q_f32(b + i + 4));
        s[4] = vaddq_f32(s[4], vld1q_f32(c + i)); s[5] = vaddq_f32(s[5], vld1q_f32(c + i + 4));
        s[6] = vaddq_f32(s[6], vld1q_f32(d + i)); s[7] = vaddq_f32(s[7], vld1q_f32(d + i + 4));
    }
    float r = sq_hsum4(vaddq_f32(vaddq_f32(vaddq_f32(s[0], s[1]), vaddq_f32(s[2], s[3])),
                                 vaddq_f32(vaddq_f32(s[4], s[5]), vaddq_f32(s[6], s[7]))));
    for (int64_t i = 4 * q; i < n; i++) r += p[i];
    return r;
}
#endif

float sq_read_sum_f32(const float *p, int64_t n) {
#ifdef SQ_X86
    if (sq_isa_fast() >= SQ_ISA_AVX2 && ((uintptr_t)p & 31) == 0) return read_sum_avx2(p, n);
#endif
#ifdef SQ_ARM
    if (sq_isa_fast() >= SQ_ISA_NEON) return read_sum_neon(p, n);
#endif
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) { s0 += p[i]; s1 += p[i + 1]; s2 += p[i + 2]; s3 += p[i + 3]; }
    for (; i < n; i++) s0 += p[i];
    return (s0 + s1) + (s2 + s3);
}

void sq_axpy_f32(float a, const float *x, float *y, int64_t n) {
#ifdef SQ_X86
    int isa = sq_isa_fast();
    if (isa >= SQ_ISA_AVX512) { axpy_avx512(a, x, y, n); return; }
    if (isa >= SQ_ISA_AVX2) { axpy_avx2(a, x, y, n); return; }
#endif
#ifdef SQ_ARM
    if (sq_isa_fast() >= SQ_ISA_NEON) { axpy_neon(a, x, y, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

// ---------------------------------------------------------------- GEMV
// Prefetch distance of the AVX2 GEMV's four row streams (prefetches never fault past the end).
#define GEMV_PF 512

#define GEMV_TYPE f32
#define GEMV_WT float
#define GEMV_LOAD16(p) _mm512_loadu_ps(p)
#define GEMV_MLOAD16(m, p) _mm512_maskz_loadu_ps(m, p)
#define GEMV_LOAD8(p) _mm256_loadu_ps(p)
#define GEMV_LOAD4(p) vld1q_f32(p)
#define GEMV_SCALAR(v) (v)
#include "dense_gemv.h"

#define GEMV_TYPE f16
#define GEMV_WT uint16_t
#define GEMV_LOAD16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define GEMV_MLOAD16(m, p) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p))
#define GEMV_LOAD8(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define GEMV_LOAD4(p) vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)))
#define GEMV_SCALAR(v) sq_f16_to_f32_inl(v)
#include "dense_gemv.h"

#define GEMV_TYPE bf16
#define GEMV_WT uint16_t
#define GEMV_LOAD16(p) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define GEMV_MLOAD16(m, p) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16))
#define GEMV_LOAD8(p) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#define GEMV_LOAD4(p) vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16))
#define GEMV_SCALAR(v) sq_bf16_to_f32_inl(v)
#include "dense_gemv.h"

void sq_gemv_task(void *job, int64_t task, int thread) {
    (void)thread;
    const sq_gemv_job *j = (const sq_gemv_job *)job;
    int64_t r0 = task * j->block, r1 = r0 + j->block < j->rows ? r0 + j->block : j->rows;
    if (r0 >= r1) return;
    if (j->dtype == 0) sq_gemv_f32((const float *)j->w, j->k, j->x, j->y + r0, j->k, r0, r1);
    else if (j->dtype == 1) sq_gemv_f16((const uint16_t *)j->w, j->k, j->x, j->y + r0, j->k, r0, r1);
    else sq_gemv_bf16((const uint16_t *)j->w, j->k, j->x, j->y + r0, j->k, r0, r1);
}

// ---------------------------------------------------------------- GEMM
// Blocking: W rows in groups of 4 (converted to F32 into a per-thread scratch when not F32),
// tokens in blocks of MB (kept in L2), micro-tile 4 tokens x 4 outputs with 16 accumulators.

static _Thread_local float *t_scratch = NULL;
static _Thread_local int64_t t_scratch_n = 0;

static float *scratch(int64_t n) {
    if (t_scratch_n < n) {
        free(t_scratch);
        t_scratch = NULL;
        if (posix_memalign((void **)&t_scratch, 64, (size_t)n * sizeof(float)) != 0) t_scratch = NULL;
        t_scratch_n = t_scratch ? n : 0;
    }
    return t_scratch;
}

#ifdef SQ_X86
// Horizontal sums of four vectors into one 128-bit vector [s(a), s(b), s(c), s(d)].
T_AVX512 static inline __m128 hsum4_512(__m512 a, __m512 b, __m512 c, __m512 d) {
    // reduce 512 -> 256
    __m256 a2 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m256 b2 = _mm256_add_ps(_mm512_castps512_ps256(b), _mm512_extractf32x8_ps(b, 1));
    __m256 c2 = _mm256_add_ps(_mm512_castps512_ps256(c), _mm512_extractf32x8_ps(c, 1));
    __m256 d2 = _mm256_add_ps(_mm512_castps512_ps256(d), _mm512_extractf32x8_ps(d, 1));
    __m256 ab = _mm256_hadd_ps(a2, b2);   // a01 a23 b01 b23 | a45 a67 b45 b67
    __m256 cd = _mm256_hadd_ps(c2, d2);
    __m256 abcd = _mm256_hadd_ps(ab, cd); // a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

T_AVX512 static void tile4x4_avx512(const float *x, int64_t ldx, const float *w, int64_t ldw, float *y,
                                    int64_t ldy, int64_t k) {
    __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c02 = _mm512_setzero_ps(), c03 = _mm512_setzero_ps();
    __m512 c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps(), c12 = _mm512_setzero_ps(), c13 = _mm512_setzero_ps();
    __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps(), c22 = _mm512_setzero_ps(), c23 = _mm512_setzero_ps();
    __m512 c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps(), c32 = _mm512_setzero_ps(), c33 = _mm512_setzero_ps();
    const float *x0 = x, *x1 = x + ldx, *x2 = x + 2 * ldx, *x3 = x + 3 * ldx;
    const float *w0 = w, *w1 = w + ldw, *w2 = w + 2 * ldw, *w3 = w + 3 * ldw;
    int64_t kk = k & ~(int64_t)15;
    int64_t i = 0;
#define STEP(LX, LW)                                                                                    \
    {                                                                                                   \
        __m512 b0 = LW(w0 + i), b1 = LW(w1 + i), b2 = LW(w2 + i), b3 = LW(w3 + i);                      \
        __m512 a = LX(x0 + i);                                                                          \
        c00 = _mm512_fmadd_ps(a, b0, c00); c01 = _mm512_fmadd_ps(a, b1, c01);                           \
        c02 = _mm512_fmadd_ps(a, b2, c02); c03 = _mm512_fmadd_ps(a, b3, c03);                           \
        a = LX(x1 + i);                                                                                 \
        c10 = _mm512_fmadd_ps(a, b0, c10); c11 = _mm512_fmadd_ps(a, b1, c11);                           \
        c12 = _mm512_fmadd_ps(a, b2, c12); c13 = _mm512_fmadd_ps(a, b3, c13);                           \
        a = LX(x2 + i);                                                                                 \
        c20 = _mm512_fmadd_ps(a, b0, c20); c21 = _mm512_fmadd_ps(a, b1, c21);                           \
        c22 = _mm512_fmadd_ps(a, b2, c22); c23 = _mm512_fmadd_ps(a, b3, c23);                           \
        a = LX(x3 + i);                                                                                 \
        c30 = _mm512_fmadd_ps(a, b0, c30); c31 = _mm512_fmadd_ps(a, b1, c31);                           \
        c32 = _mm512_fmadd_ps(a, b2, c32); c33 = _mm512_fmadd_ps(a, b3, c33);                           \
    }
    for (; i < kk; i += 16) STEP(_mm512_loadu_ps, _mm512_loadu_ps)
    if (i < k) {
        __mmask16 m = (__mmask16)((1u << (k - i)) - 1);
#define ML(p) _mm512_maskz_loadu_ps(m, p)
        STEP(ML, ML)
#undef ML
    }
#undef STEP
    _mm_storeu_ps(y, hsum4_512(c00, c01, c02, c03));
    _mm_storeu_ps(y + ldy, hsum4_512(c10, c11, c12, c13));
    _mm_storeu_ps(y + 2 * ldy, hsum4_512(c20, c21, c22, c23));
    _mm_storeu_ps(y + 3 * ldy, hsum4_512(c30, c31, c32, c33));
}

// AVX2 micro-tile: 4 tokens x 3 outputs, 12 accumulators (16 ymm registers in all).
T_AVX2 static inline void hsum3x4_store(__m256 a, __m256 b, __m256 c, float *y) {
    __m256 ab = _mm256_hadd_ps(a, b);
    __m256 cc = _mm256_hadd_ps(c, c);
    __m256 abc = _mm256_hadd_ps(ab, cc); // a03 b03 c03 c03 | a47 b47 c47 c47
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(abc), _mm256_extractf128_ps(abc, 1));
    y[0] = _mm_cvtss_f32(r);
    y[1] = _mm_cvtss_f32(_mm_shuffle_ps(r, r, 1));
    y[2] = _mm_cvtss_f32(_mm_shuffle_ps(r, r, 2));
}

T_AVX2 static void tile4x3_avx2(const float *x, int64_t ldx, const float *w, int64_t ldw, float *y,
                                int64_t ldy, int64_t k) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c02 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps(), c12 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c22 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c32 = _mm256_setzero_ps();
    const float *x0 = x, *x1 = x + ldx, *x2 = x + 2 * ldx, *x3 = x + 3 * ldx;
    const float *w0 = w, *w1 = w + ldw, *w2 = w + 2 * ldw;
    int64_t kk = k & ~(int64_t)7;
    for (int64_t i = 0; i < kk; i += 8) {
        __m256 b0 = _mm256_loadu_ps(w0 + i), b1 = _mm256_loadu_ps(w1 + i), b2 = _mm256_loadu_ps(w2 + i);
        __m256 a = _mm256_loadu_ps(x0 + i);
        c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01); c02 = _mm256_fmadd_ps(a, b2, c02);
        a = _mm256_loadu_ps(x1 + i);
        c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11); c12 = _mm256_fmadd_ps(a, b2, c12);
        a = _mm256_loadu_ps(x2 + i);
        c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21); c22 = _mm256_fmadd_ps(a, b2, c22);
        a = _mm256_loadu_ps(x3 + i);
        c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31); c32 = _mm256_fmadd_ps(a, b2, c32);
    }
    float t[4][3];
    hsum3x4_store(c00, c01, c02, t[0]);
    hsum3x4_store(c10, c11, c12, t[1]);
    hsum3x4_store(c20, c21, c22, t[2]);
    hsum3x4_store(c30, c31, c32, t[3]);
    for (int64_t i = kk; i < k; i++) {
        for (int r = 0; r < 4; r++) {
            const float *xr = x + r * ldx;
            t[r][0] += xr[i] * w0[i]; t[r][1] += xr[i] * w1[i]; t[r][2] += xr[i] * w2[i];
        }
    }
    for (int r = 0; r < 4; r++) { y[r * ldy] = t[r][0]; y[r * ldy + 1] = t[r][1]; y[r * ldy + 2] = t[r][2]; }
}
#endif

#ifdef SQ_ARM
// NEON micro-tile: 4 tokens x 4 outputs, 16 accumulators; the tail of k in scalar code.
static void tile4x4_neon(const float *x, int64_t ldx, const float *w, int64_t ldw, float *y, int64_t ldy, int64_t k) {
    float32x4_t c[4][4];
    for (int t = 0; t < 4; t++)
        for (int j = 0; j < 4; j++) c[t][j] = vdupq_n_f32(0);
    const int64_t kk = k & ~(int64_t)3;
    for (int64_t i = 0; i < kk; i += 4) {
        float32x4_t b[4];
        for (int j = 0; j < 4; j++) b[j] = vld1q_f32(w + j * ldw + i);
        for (int t = 0; t < 4; t++) {
            float32x4_t a = vld1q_f32(x + t * ldx + i);
            for (int j = 0; j < 4; j++) c[t][j] = vfmaq_f32(c[t][j], a, b[j]);
        }
    }
    for (int t = 0; t < 4; t++) {
        // [sum c[t][0], sum c[t][1], sum c[t][2], sum c[t][3]] by pairwise adds
        float32x4_t s = vpaddq_f32(vpaddq_f32(c[t][0], c[t][1]), vpaddq_f32(c[t][2], c[t][3]));
        float r[4];
        vst1q_f32(r, s);
        for (int64_t i = kk; i < k; i++)
            for (int j = 0; j < 4; j++) r[j] += x[t * ldx + i] * w[j * ldw + i];
        for (int j = 0; j < 4; j++) y[t * ldy + j] = r[j];
    }
}
#endif

// Y[m, n0..n0+nr) for a block of nr <= 4 F32 weight rows, tokens [0, m).
static void gemm_rows_f32(const float *x, int64_t ldx, const float *w, int64_t ldw, float *y, int64_t ldy,
                          int64_t m, int64_t k, int64_t nr) {
    int64_t t = 0;
#ifdef SQ_X86
    int isa = sq_isa_fast();
    if (isa >= SQ_ISA_AVX512 && nr == 4) {
        for (; t + 4 <= m; t += 4) tile4x4_avx512(x + t * ldx, ldx, w, ldw, y + t * ldy, ldy, k);
    } else if (isa == SQ_ISA_AVX2) {
        int64_t j = 0;
        for (; j + 3 <= nr; j += 3) {
            int64_t tt = 0;
            for (; tt + 4 <= m; tt += 4) tile4x3_avx2(x + tt * ldx, ldx, w + j * ldw, ldw, y + tt * ldy + j, ldy, k);
            for (; tt < m; tt++)
                for (int64_t jj = j; jj < j + 3; jj++) y[tt * ldy + jj] = sq_dot_f32(x + tt * ldx, w + jj * ldw, k);
        }
        for (; j < nr; j++)
            for (int64_t tt = 0; tt < m; tt++) y[tt * ldy + j] = sq_dot_f32(x + tt * ldx, w + j * ldw, k);
        return;
    }
#endif
#ifdef SQ_ARM
    if (sq_isa_fast() >= SQ_ISA_NEON && nr == 4)
        for (; t + 4 <= m; t += 4) tile4x4_neon(x + t * ldx, ldx, w, ldw, y + t * ldy, ldy, k);
#endif
    for (; t < m; t++)
        for (int64_t j = 0; j < nr; j++) y[t * ldy + j] = sq_dot_f32(x + t * ldx, w + j * ldw, k);
}

// Rows of W per group: 4 (AVX-512 tile) or 3 (AVX2 tile); tokens per L2 block from k.
static int64_t group_rows(void) { return sq_isa_fast() == SQ_ISA_AVX2 ? 3 : 4; }
static int64_t token_block(int64_t k) {
    int64_t mb = (192 * 1024) / (k * 4);
    mb = mb < 8 ? 8 : (mb > 64 ? 64 : mb);
    return mb & ~(int64_t)3;
}

void sq_gemm_f32(const float *x, int64_t ldx, const float *w, int64_t ldw, float *y, int64_t ldy,
                 int64_t m, int64_t k, int64_t n0, int64_t n1) {
    if (m < 4) {
        // Too few tokens for a tile (e.g. attention scores of one decoded token): the GEMV kernel per
        // token, four weight rows at a time, rather than one dot product call per output.
        for (int64_t t = 0; t < m; t++) sq_gemv_f32(w, ldw, x + t * ldx, y + t * ldy + n0, k, n0, n1);
        return;
    }
#ifdef SQ_X86
    // AVX2, from 32 tokens: the packed GEMM of sq_backward.h with W read transposed (B(p, j) = W[j, p]).
    // With fewer tokens, packing W costs more than it saves (docs/kernels.md).
    if (sq_isa_fast() == SQ_ISA_AVX2 && m >= 32) { sq_gemm_general_f32(x, ldx, 1, w, 1, ldw, y, ldy, m, k, n0, n1, SQ_BW_STORE); return; }
#endif
    int64_t g = group_rows(), MBk = token_block(k);
    for (int64_t mb = 0; mb < m; mb += MBk) {
        int64_t mm = m - mb < MBk ? m - mb : MBk;
        for (int64_t n = n0; n < n1; n += g) {
            int64_t nr = n1 - n < g ? n1 - n : g;
            gemm_rows_f32(x + mb * ldx, ldx, w + n * ldw, ldw, y + mb * ldy + n, ldy, mm, k, nr);
        }
    }
}

static void gemm_converted(const float *x, int64_t ldx, const uint16_t *w, int64_t ldw, float *y, int64_t ldy,
                           int64_t m, int64_t k, int64_t n0, int64_t n1, int bf16) {
    if (m == 1) {
        // One token (e.g. attention over an F16 KV cache while decoding): the GEMV kernel reads the
        // rows directly instead of converting them to a scratch first.
        if (bf16) sq_gemv_bf16(w, ldw, x, y + n0, k, n0, n1);
        else sq_gemv_f16(w, ldw, x, y + n0, k, n0, n1);
        return;
    }
#ifdef SQ_X86
    if (sq_isa_fast() == SQ_ISA_AVX2 && m >= 32) {
        // As sq_gemm_f32 from 32 tokens: blocks of up to 128 rows converted to F32, then the packed
        // 6x16 GEMM over them (Y = X W^T, W read transposed from the converted rows).
        const int64_t G = 128;
        float *cbuf = scratch(G * k);
        if (cbuf) {
            for (int64_t n = n0; n < n1; n += G) {
                int64_t nr = n1 - n < G ? n1 - n : G;
                for (int64_t j = 0; j < nr; j++) {
                    if (bf16) sq_bf16_to_f32(w + (n + j) * ldw, cbuf + j * k, k);
                    else sq_f16_to_f32(w + (n + j) * ldw, cbuf + j * k, k);
                }
                sq_gemm_general_f32(x, ldx, 1, cbuf, 1, k, y + n, ldy, m, k, 0, nr, SQ_BW_STORE);
            }
            return;
        }
    }
#endif
    int64_t g = group_rows(), MBk = token_block(k);
    float *buf = scratch(4 * k);
    if (!buf) return;
    for (int64_t n = n0; n < n1; n += g) {
        int64_t nr = n1 - n < g ? n1 - n : g;
        for (int64_t j = 0; j < nr; j++) {
            if (bf16) sq_bf16_to_f32(w + (n + j) * ldw, buf + j * k, k);
            else sq_f16_to_f32(w + (n + j) * ldw, buf + j * k, k);
        }
        for (int64_t mb = 0; mb < m; mb += MBk) {
            int64_t mm = m - mb < MBk ? m - mb : MBk;
            gemm_rows_f32(x + mb * ldx, ldx, buf, k, y + mb * ldy + n, ldy, mm, k, nr);
        }
    }
}

void sq_gemm_f16(const float *x, int64_t ldx, const uint16_t *w, int64_t ldw, float *y, int64_t ldy,
                 int64_t m, int64_t k, int64_t n0, int64_t n1) {
    gemm_converted(x, ldx, w, ldw, y, ldy, m, k, n0, n1, 0);
}

void sq_gemm_bf16(const float *x, int64_t ldx, const uint16_t *w, int64_t ldw, float *y, int64_t ldy,
                  int64_t m, int64_t k, int64_t n0, int64_t n1) {
    gemm_converted(x, ldx, w, ldw, y, ldy, m, k, n0, n1, 1);
}
