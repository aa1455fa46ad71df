// Decode attention over half-precision caches for the query heads of one KV head (see
// sq_attention.h for the key tiles). AVX2 variants with per-function target attributes or ARM64 NEON
// variants, chosen at run time on sq_isa(); scalar code otherwise (and as the reference the tests
// compare against).
#include "sq_attention.h"
#include "sq_dense.h"
#include "sq_isa.h"
#include <math.h>
#include <string.h>

#define KT SQ_KT

static inline const uint16_t *tile_row(const uint16_t *kt, int64_t hd, int64_t tile, int64_t d) {
    return kt + (tile * hd + d) * KT;
}

// 8-bit: q = round(x / scale), scale = max|x| / 127 (0 and all-zero q for an all-zero vector).
static float quantize_q8(const float *x, int64_t n, int64_t stride, int8_t *q, int64_t qstride) {
    float mx = 0;
    for (int64_t i = 0; i < n; i++) mx = fmaxf(mx, fabsf(x[i * stride]));
    float scale = mx / 127, inv = mx > 0 ? 127 / mx : 0;
    for (int64_t i = 0; i < n; i++) {
        float v = nearbyintf(x[i * stride] * inv);
        q[i * qstride] = (int8_t)(v > 127 ? 127 : (v < -127 ? -127 : v));
    }
    return scale;
}

// ---------------------------------------------------------------- AVX2
#ifdef SQ_X86
#define LOAD8_I8(p) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p))))
#endif

// The kernels of the two cache element types: F16 ("16" functions) and int8 with per-position
// scales ("8" functions).
#define ATT_SUF 16
#define ATT_T uint16_t
#define ATT_ELEM(p, i) sq_f16_to_f32_1((p)[i])
// F16C's exact one-element conversion: sq_f16_to_f32_1 is a call with branches.
#define ATT_ELEM_AVX2(p, i) _cvtsh_ss((p)[i])
#define ATT_LOAD8(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define ATT_LOAD8_NEON(p, lo, hi)                                        \
    do {                                                                 \
        float16x8_t h_ = vreinterpretq_f16_u16(vld1q_u16(p));            \
        (lo) = vcvt_f32_f16(vget_low_f16(h_));                           \
        (hi) = vcvt_high_f32_f16(h_);                                    \
    } while (0)
#include "attention_kernels.h"

#define ATT_SUF 8
#define ATT_T int8_t
#define ATT_ELEM(p, i) ((float)(p)[i])
#define ATT_ELEM_AVX2(p, i) ((float)(p)[i])
#define ATT_LOAD8(p) LOAD8_I8(p)
#define ATT_LOAD8_NEON(p, lo, hi)                                        \
    do {                                                                 \
        int16x8_t w_ = vmovl_s8(vld1_s8(p));                             \
        (lo) = vcvtq_f32_s32(vmovl_s16(vget_low_s16(w_)));               \
        (hi) = vcvtq_f32_s32(vmovl_high_s16(w_));                        \
    } while (0)
#include "attention_kernels.h"

#ifdef SQ_X86
// dst[i] = scale[i] * q[i] for n values.
T_AVX2 static void dequant8_avx2(const int8_t *q, const float *scale, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_mul_ps(LOAD8_I8(q + i), _mm256_loadu_ps(scale + i)));
    for (; i < n; i++) dst[i] = scale[i] * (float)q[i];
}
#endif

#ifdef SQ_ARM
static void dequant8_neon(const int8_t *q, const float *scale, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        int16x8_t w = vmovl_s8(vld1_s8(q + i));
        vst1q_f32(dst + i, vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(w))), vld1q_f32(scale + i)));
        vst1q_f32(dst + i + 4, vmulq_f32(vcvtq_f32_s32(vmovl_high_s16(w)), vld1q_f32(scale + i + 4)));
    }
    for (; i < n; i++) dst[i] = scale[i] * (float)q[i];
}
#endif

static void dequant8(const int8_t *q, const float *scale, float *dst, int64_t n) {
#ifdef SQ_X86
    if (sq_isa() >= SQ_ISA_AVX2) { dequant8_avx2(q, scale, dst, n); return; }
#endif
#ifdef SQ_ARM
    if (sq_isa() >= SQ_ISA_NEON) { dequant8_neon(q, scale, dst, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) dst[i] = scale[i] * (float)q[i];
}

// ---------------------------------------------------------------- dispatch
// DISPATCH(scores16, (args)) calls scores16_avx2, scores16_neon or scores16_scalar with args.
#if defined(SQ_X86)
#define DISPATCH(FN, ARGS)                                                                                \
    do {                                                                                                  \
        if (sq_isa() >= SQ_ISA_AVX2) SQ_CAT(FN, avx2) ARGS; else SQ_CAT(FN, scalar) ARGS;                 \
    } while (0)
#elif defined(SQ_ARM)
#define DISPATCH(FN, ARGS)                                                                                \
    do {                                                                                                  \
        if (sq_isa() >= SQ_ISA_NEON) SQ_CAT(FN, neon) ARGS; else SQ_CAT(FN, scalar) ARGS;                 \
    } while (0)
#else
#define DISPATCH(FN, ARGS) SQ_CAT(FN, scalar) ARGS
#endif

void sq_attn_scores_kt16(const float *q, int64_t ldq, int64_t g, const uint16_t *kt, int64_t hd, int64_t j0,
                         int64_t j1, float *s, int64_t lds) {
    if (g <= 0 || j1 <= j0) return;
    DISPATCH(scores16, (q, ldq, g, kt, NULL, hd, j0, j1, s, lds));
}

void sq_attn_pv16(const float *p, int64_t ldp, int64_t g, const uint16_t *vt, int64_t ldv, int64_t hd, int64_t n,
                  float *out, int64_t ldo) {
    if (g <= 0) return;
    DISPATCH(pv16, (p, ldp, g, vt, ldv, hd, n, out, ldo));
}

void sq_attn_keys_kt16_to_f32(const uint16_t *kt, int64_t hd, int64_t j0, int64_t j1, float *dst, int64_t ldd) {
    float buf[KT];
    for (int64_t t = j0 / KT; t * KT < j1; t++) {
        int64_t a = t * KT < j0 ? j0 : t * KT, b = (t + 1) * KT > j1 ? j1 : (t + 1) * KT;
        for (int64_t d = 0; d < hd; d++) {
            const uint16_t *row = tile_row(kt, hd, t, d);
            if (a == t * KT && b == (t + 1) * KT) {
                sq_f16_to_f32(row, dst + d * ldd + (a - j0), KT);
            } else {
                sq_f16_to_f32(row, buf, KT);
                memcpy(dst + d * ldd + (a - j0), buf + (a - t * KT), (size_t)(b - a) * sizeof(float));
            }
        }
    }
}

void sq_attn_store_key_kt16(const float *key, int64_t hd, int64_t j, uint16_t *kt) {
    uint16_t *base = kt + (j / KT) * hd * KT + j % KT;
    uint16_t half[256];
    if (hd <= 256) {  // the row converted at once (F16C where available; the same bits as one by one)
        sq_f32_to_f16(key, half, hd);
        for (int64_t d = 0; d < hd; d++) base[d * KT] = half[d];
        return;
    }
    for (int64_t d = 0; d < hd; d++) base[d * KT] = sq_f32_to_f16_1(key[d]);
}

void sq_attn_store_key_kt8(const float *key, int64_t hd, int64_t j, int8_t *kt, float *ks) {
    ks[j] = quantize_q8(key, hd, 1, kt + (j / KT) * hd * KT + j % KT, KT);
}

void sq_attn_store_value_q8(const float *value, int64_t hd, int64_t j, int8_t *vt, int64_t ldv, float *vs) {
    vs[j] = quantize_q8(value, hd, 1, vt + j, ldv);
}

void sq_attn_scores_kt8(const float *q, int64_t ldq, int64_t g, const int8_t *kt, const float *ks, int64_t hd,
                        int64_t j0, int64_t j1, float *s, int64_t lds) {
    if (g <= 0 || j1 <= j0) return;
    DISPATCH(scores8, (q, ldq, g, kt, ks, hd, j0, j1, s, lds));
}

void sq_attn_pv8(float *p, int64_t ldp, int64_t g, const int8_t *vt, int64_t ldv, const float *vs, int64_t hd,
                 int64_t n, float *out, int64_t ldo) {
    if (g <= 0) return;
    for (int64_t r = 0; r < g; r++)
        for (int64_t j = 0; j < n; j++) p[r * ldp + j] *= vs[j];
    DISPATCH(pv8, (p, ldp, g, vt, ldv, hd, n, out, ldo));
}

void sq_attn_keys_kt8_to_f32(const int8_t *kt, const float *ks, int64_t hd, int64_t j0, int64_t j1, float *dst,
                             int64_t ldd) {
    float buf[KT];
    for (int64_t t = j0 / KT; t * KT < j1; t++) {
        int64_t a = t * KT < j0 ? j0 : t * KT, b = (t + 1) * KT > j1 ? j1 : (t + 1) * KT;
        for (int64_t d = 0; d < hd; d++) {
            const int8_t *row = kt + (t * hd + d) * KT;
            if (a == t * KT && b == (t + 1) * KT) {
                dequant8(row, ks + t * KT, dst + d * ldd + (a - j0), KT);
            } else {
                dequant8(row, ks + t * KT, buf, KT);
                memcpy(dst + d * ldd + (a - j0), buf + (a - t * KT), (size_t)(b - a) * sizeof(float));
            }
        }
    }
}

void sq_attn_values_q8_to_f32(const int8_t *vt, int64_t ldv, const float *vs, int64_t hd, int64_t j0, int64_t j1,
                              float *dst, int64_t ldd) {
    if (j1 <= j0) return;
    for (int64_t d = 0; d < hd; d++) dequant8(vt + d * ldv + j0, vs + j0, dst + d * ldd, j1 - j0);
}
