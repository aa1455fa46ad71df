// 8-bit weights with one F32 scale per block of 32 (llama.cpp's Q8_0 idea), times 8-bit activation
// blocks. Used for a model's LM head (the largest single matrix of a small quantized model).
// AVX2 variant with run-time dispatch and a portable scalar variant computing the same integer sums.
#include "sq_q8.h"
#include "sq_dense.h"
#include "sq_isa.h"
#include <math.h>
#include <stdlib.h>

static void quantize_block(const float *v, int64_t n, int8_t *q, float *d) {
    float amax = 0;
    for (int64_t i = 0; i < n; i++) { float a = fabsf(v[i]); if (a > amax) amax = a; }
    float scale = amax / 127.0f;
    float inv = amax > 0 ? 127.0f / amax : 0;
    for (int64_t i = 0; i < n; i++) {
        float r = nearbyintf(v[i] * inv);
        if (r > 127) r = 127;
        if (r < -127) r = -127;
        q[i] = (int8_t)r;
    }
    for (int64_t i = n; i < SQ_Q8_BLOCK; i++) q[i] = 0;
    *d = scale;
}

static void quantize_vec(const float *x, int64_t k, int64_t kpad, int8_t *q, float *d) {
    for (int64_t b = 0; b < kpad / SQ_Q8_BLOCK; b++) {
        int64_t c0 = b * SQ_Q8_BLOCK;
        int64_t n = k - c0 < SQ_Q8_BLOCK ? (k - c0 > 0 ? k - c0 : 0) : SQ_Q8_BLOCK;
        quantize_block(x + c0, n, q + c0, d + b);
    }
}

void sq_q8_quantize_rows(const float *w, int64_t ldw, int64_t k, int64_t kpad, int64_t r0, int64_t r1,
                         int8_t *q, float *d) {
    int64_t nb = kpad / SQ_Q8_BLOCK;
    for (int64_t r = r0; r < r1; r++) quantize_vec(w + r * ldw, k, kpad, q + r * kpad, d + r * nb);
}

void sq_q8_quantize_x(const float *x, int64_t k, int64_t kpad, int8_t *q, float *d) {
    quantize_vec(x, k, kpad, q, d);
}

static void gemm_scalar(const int8_t *wq, const float *wd, int64_t kpad, const int8_t *xq, const float *xd,
                        int64_t m, float *y, int64_t ldy, int64_t r0, int64_t r1) {
    int64_t nb = kpad / SQ_Q8_BLOCK;
    for (int64_t r = r0; r < r1; r++) {
        const int8_t *w = wq + r * kpad;
        const float *dw = wd + r * nb;
        for (int64_t t = 0; t < m; t++) {
            const int8_t *x = xq + t * kpad;
            const float *dx = xd + t * nb;
            float s = 0;
            for (int64_t b = 0; b < nb; b++) {
                int32_t acc = 0;
                for (int i = 0; i < SQ_Q8_BLOCK; i++) acc += (int32_t)w[b * SQ_Q8_BLOCK + i] * x[b * SQ_Q8_BLOCK + i];
                s += (float)acc * (dw[b] * dx[b]);
            }
            y[t * ldy + r] = s;
        }
    }
}

#ifdef SQ_X86
// Signed int8 dot of 32 lanes via the sign trick: |x| (unsigned) times w carrying x's sign, pairwise
// to int16 (|x|, |w| <= 127, so pair sums stay below 2^15), then to int32 lanes.
T_AVX2 static inline __m256 block_dot(__m256i w, __m256i ax, __m256i sx, __m256i ones) {
    __m256i sw = _mm256_sign_epi8(w, sx);
    __m256i p16 = _mm256_maddubs_epi16(ax, sw);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
}


T_AVX2 static void gemm_avx2(const int8_t *wq, const float *wd, int64_t kpad, const int8_t *xq, const float *xd,
                             int64_t m, float *y, int64_t ldy, int64_t r0, int64_t r1) {
    int64_t nb = kpad / SQ_Q8_BLOCK;
    const __m256i ones = _mm256_set1_epi16(1);
    // Four rows at a time from the four quarters of [r0, r1): four sequential streams far apart, which
    // the hardware prefetchers follow (as in the dense GEMV, dense.c), each also prefetched 512 bytes
    // ahead. Prefetches never fault.
    const int64_t q = (r1 - r0) / 4;
    for (int64_t j = 0; j < q; j++) {
        const int64_t r = r0 + j;
        const int8_t *w0 = wq + r * kpad, *w1 = w0 + q * kpad, *w2 = w1 + q * kpad, *w3 = w2 + q * kpad;
        const float *d0 = wd + r * nb, *d1 = d0 + q * nb, *d2 = d1 + q * nb, *d3 = d2 + q * nb;
        for (int64_t t = 0; t < m; t++) {
            const int8_t *x = xq + t * kpad;
            const float *dx = xd + t * nb;
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
            for (int64_t b = 0; b < nb; b++) {
                if (t == 0 && (b & 1) == 0) {  // one 64-byte line per stream every two blocks
                    _mm_prefetch((const char *)(w0 + b * SQ_Q8_BLOCK) + 512, _MM_HINT_T0);
                    _mm_prefetch((const char *)(w1 + b * SQ_Q8_BLOCK) + 512, _MM_HINT_T0);
                    _mm_prefetch((const char *)(w2 + b * SQ_Q8_BLOCK) + 512, _MM_HINT_T0);
                    _mm_prefetch((const char *)(w3 + b * SQ_Q8_BLOCK) + 512, _MM_HINT_T0);
                }
                __m256i xv = _mm256_load_si256((const __m256i *)(x + b * SQ_Q8_BLOCK));
                __m256i ax = _mm256_sign_epi8(xv, xv);
                __m256 s = _mm256_set1_ps(dx[b]);
                a0 = _mm256_fmadd_ps(block_dot(_mm256_load_si256((const __m256i *)(w0 + b * SQ_Q8_BLOCK)), ax, xv, ones), _mm256_mul_ps(_mm256_set1_ps(d0[b]), s), a0);
                a1 = _mm256_fmadd_ps(block_dot(_mm256_load_si256((const __m256i *)(w1 + b * SQ_Q8_BLOCK)), ax, xv, ones), _mm256_mul_ps(_mm256_set1_ps(d1[b]), s), a1);
                a2 = _mm256_fmadd_ps(block_dot(_mm256_load_si256((const __m256i *)(w2 + b * SQ_Q8_BLOCK)), ax, xv, ones), _mm256_mul_ps(_mm256_set1_ps(d2[b]), s), a2);
                a3 = _mm256_fmadd_ps(block_dot(_mm256_load_si256((const __m256i *)(w3 + b * SQ_Q8_BLOCK)), ax, xv, ones), _mm256_mul_ps(_mm256_set1_ps(d3[b]), s), a3);
            }
            float *yt = y + t * ldy + r;
            yt[0] = sq_hsum8(a0); yt[q] = sq_hsum8(a1); yt[2 * q] = sq_hsum8(a2); yt[3 * q] = sq_hsum8(a3);
        }
    }
    for (int64_t r = r0 + 4 * q; r < r1; r++) {
        const int8_t *w0 = wq + r * kpad;
        const float *d0 = wd + r * nb;
        for (int64_t t = 0; t < m; t++) {
            const int8_t *x = xq + t * kpad;
            const float *dx = xd + t * nb;
            __m256 a0 = _mm256_setzero_ps();
            for (int64_t b = 0; b < nb; b++) {
                __m256i xv = _mm256_load_si256((const __m256i *)(x + b * SQ_Q8_BLOCK));
                __m256i ax = _mm256_sign_epi8(xv, xv);
                a0 = _mm256_fmadd_ps(block_dot(_mm256_load_si256((const __m256i *)(w0 + b * SQ_Q8_BLOCK)), ax, xv, ones),
                                     _mm256_set1_ps(d0[b] * dx[b]), a0);
            }
            y[t * ldy + r] = sq_hsum8(a0);
        }
    }
}
#endif

#ifdef SQ_ARM
// Signed int8 dots of 16 lanes (|w|, |x| <= 127): widening multiplies, a pair of products per int16
// lane (below 2^15), pairwise widening adds; or one sdot with the dot-product extension.
static INL int32x4_t q8_dot16_neon(int32x4_t acc, int8x16_t w, int8x16_t x) {
    int16x8_t p = vmull_s8(vget_low_s8(w), vget_low_s8(x));
    return vpadalq_s16(acc, vmlal_high_s8(p, w, x));
}
T_DOTPROD static INL int32x4_t q8_dot16_dotprod(int32x4_t acc, int8x16_t w, int8x16_t x) { return vdotq_s32(acc, w, x); }

#define Q8N_ATTR T_NEON
#define Q8N_SFX neon
#define Q8N_DOT q8_dot16_neon
#include "q8_neon.h"
#define Q8N_ATTR T_DOTPROD
#define Q8N_SFX dotprod
#define Q8N_DOT q8_dot16_dotprod
#include "q8_neon.h"

// With i8mm: rows in pairs x tokens in pairs, smmla on 2x8 blocks of weights and activations (four
// row-token dot products per two instructions per 16 columns); odd rows or tokens go to dotprod.
T_I8MM static void gemm_i8mm(const int8_t *wq, const float *wd, int64_t kpad, const int8_t *xq, const float *xd,
                             int64_t m, float *y, int64_t ldy, int64_t r0, int64_t r1) {
    const int64_t nb = kpad / SQ_Q8_BLOCK, m2 = m & ~(int64_t)1, r2 = r0 + ((r1 - r0) & ~(int64_t)1);
    for (int64_t r = r0; r < r2; r += 2) {
        const int8_t *w0 = wq + r * kpad, *w1 = w0 + kpad;
        const float *d0 = wd + r * nb, *d1 = d0 + nb;
        for (int64_t t = 0; t < m2; t += 2) {
            const int8_t *x0 = xq + t * kpad, *x1 = x0 + kpad;
            const float *e0 = xd + t * nb, *e1 = e0 + nb;
            float32x4_t s = vdupq_n_f32(0);
            for (int64_t b = 0; b < nb; b++) {
                int32x4_t a = vdupq_n_s32(0);
                for (int h = 0; h < SQ_Q8_BLOCK; h += 16) {
                    const int64_t o = b * SQ_Q8_BLOCK + h;
                    int64x2_t p = vreinterpretq_s64_s8(vld1q_s8(w0 + o)), q = vreinterpretq_s64_s8(vld1q_s8(w1 + o));
                    int64x2_t u = vreinterpretq_s64_s8(vld1q_s8(x0 + o)), v = vreinterpretq_s64_s8(vld1q_s8(x1 + o));
                    a = vmmlaq_s32(a, vreinterpretq_s8_s64(vzip1q_s64(p, q)), vreinterpretq_s8_s64(vzip1q_s64(u, v)));
                    a = vmmlaq_s32(a, vreinterpretq_s8_s64(vzip2q_s64(p, q)), vreinterpretq_s8_s64(vzip2q_s64(u, v)));
                }
                // lanes: (row 0, token 0), (row 0, token 1), (row 1, token 0), (row 1, token 1)
                const float sc[4] = {d0[b] * e0[b], d0[b] * e1[b], d1[b] * e0[b], d1[b] * e1[b]};
                s = vfmaq_f32(s, vcvtq_f32_s32(a), vld1q_f32(sc));
            }
            float o[4];
            vst1q_f32(o, s);
            y[t * ldy + r] = o[0];
            y[(t + 1) * ldy + r] = o[1];
            y[t * ldy + r + 1] = o[2];
            y[(t + 1) * ldy + r + 1] = o[3];
        }
    }
    if (m2 < m) gemm_dotprod(wq, wd, kpad, xq + m2 * kpad, xd + m2 * nb, 1, y + m2 * ldy, ldy, r0, r2);
    if (r2 < r1) gemm_dotprod(wq, wd, kpad, xq, xd, m, y, ldy, r2, r1);
}
#endif

void sq_q8_gemm(const int8_t *wq, const float *wd, int64_t kpad, const int8_t *xq, const float *xd,
                int64_t m, float *y, int64_t ldy, int64_t r0, int64_t r1) {
#ifdef SQ_X86
    if (sq_isa() >= SQ_ISA_AVX2) { gemm_avx2(wq, wd, kpad, xq, xd, m, y, ldy, r0, r1); return; }
#endif
#ifdef SQ_ARM
    int isa = sq_isa();
    if (isa >= SQ_ISA_I8MM && m > 1) { gemm_i8mm(wq, wd, kpad, xq, xd, m, y, ldy, r0, r1); return; }
    if (isa >= SQ_ISA_DOTPROD) { gemm_dotprod(wq, wd, kpad, xq, xd, m, y, ldy, r0, r1); return; }
    if (isa >= SQ_ISA_NEON) { gemm_neon(wq, wd, kpad, xq, xd, m, y, ldy, r0, r1); return; }
#endif
    gemm_scalar(wq, wd, kpad, xq, xd, m, y, ldy, r0, r1);
}

void sq_q8_task(void *job, int64_t task, int thread) {
    (void)thread;
    const sq_q8_job *j = (const sq_q8_job *)job;
    int64_t r0 = task * j->block, r1 = r0 + j->block < j->rows ? r0 + j->block : j->rows;
    if (r0 < r1) sq_q8_gemm(j->wq, j->wd, j->kpad, j->xq, j->xd, j->m, j->y, j->ldy, r0, r1);
}

void sq_q8_dequantize_rows(const int8_t *wq, const float *wd, int64_t kpad, int64_t k, int64_t r0, int64_t r1,
                           float *out) {
    int64_t nb = kpad / SQ_Q8_BLOCK;
    for (int64_t r = r0; r < r1; r++) {
        const int8_t *w = wq + r * kpad;
        const float *d = wd + r * nb;
        float *o = out + (r - r0) * k;
        for (int64_t c = 0; c < k; c++) o[c] = (float)w[c] * d[c / SQ_Q8_BLOCK];
    }
}

static _Thread_local float *t_q8_scratch = NULL;
static _Thread_local int64_t t_q8_scratch_n = 0;

void sq_q8_gemm_dequant(const int8_t *wq, const float *wd, int64_t kpad, int64_t k, const float *x,
                        int64_t ldx, int64_t m, float *y, int64_t ldy, int64_t r0, int64_t r1) {
    const int64_t RB = 128;  // rows per dequantized block: the packed GEMM (32+ tokens) re-packs X for each block
    if (t_q8_scratch_n < RB * k) {
        free(t_q8_scratch);
        t_q8_scratch = NULL;
        if (posix_memalign((void **)&t_q8_scratch, 64, (size_t)(RB * k) * sizeof(float)) != 0) t_q8_scratch = NULL;
        t_q8_scratch_n = t_q8_scratch ? RB * k : 0;
    }
    float *s = t_q8_scratch;
    for (int64_t r = r0; r < r1; r += RB) {
        int64_t re = r + RB < r1 ? r + RB : r1;
        if (!s) {
            // No scratch: one row at a time through the exact dot product.
            for (int64_t rr = r; rr < re; rr++) {
                float row[SQ_Q8_BLOCK];
                for (int64_t t = 0; t < m; t++) {
                    float acc = 0;
                    for (int64_t c0 = 0; c0 < k; c0 += SQ_Q8_BLOCK) {
                        int64_t n = k - c0 < SQ_Q8_BLOCK ? k - c0 : SQ_Q8_BLOCK;
                        sq_q8_dequantize_rows(wq + rr * kpad + c0, wd + rr * (kpad / SQ_Q8_BLOCK) + c0 / SQ_Q8_BLOCK,
                                              kpad, n, 0, 1, row);
                        for (int64_t i = 0; i < n; i++) acc += row[i] * x[t * ldx + c0 + i];
                    }
                    y[t * ldy + rr] = acc;
                }
            }
            continue;
        }
        sq_q8_dequantize_rows(wq, wd, kpad, k, r, re, s);
        sq_gemm_f32(x, ldx, s, k, y + r, ldy, m, k, 0, re - r);
    }
}

const char *sq_q8_variant(void) {
#ifdef SQ_X86
    if (sq_isa() >= SQ_ISA_AVX2) return "avx2";
#endif
#ifdef SQ_ARM
    if (sq_isa() >= SQ_ISA_I8MM) return "i8mm";
    if (sq_isa() >= SQ_ISA_DOTPROD) return "dotprod";
    if (sq_isa() >= SQ_ISA_NEON) return "neon";
#endif
    return "scalar";
}
