// Decode attention over half-precision caches for the query heads of one KV head (see
// sq_attention.h for the key tiles). AVX2 variants with per-function target attributes, chosen at
// run time on sq_isa(); scalar code otherwise (and as the reference the tests compare against).
#include "sq_attention.h"
#include "sq_dense.h"
#include <math.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define SQ_X86 1
#define T_AVX2 __attribute__((target("avx2,fma,f16c")))
#define INL __attribute__((always_inline)) inline
#endif

#define KT SQ_KT


static inline const uint16_t *tile_row(const uint16_t *kt, int64_t hd, int64_t tile, int64_t d) {
    return kt + (tile * hd + d) * KT;
}

// The kernels exist for two element types: F16 (half bits; "16" functions) and int8 with per-position
// scales ("8" functions). ELEM_F32(p, i) reads one element as a float; the AVX2 LOAD8_* macros read
// eight adjacent elements as a float vector.
#define ELEM_F16(p, i) sq_f16_to_f32_1((p)[i])
#define ELEM_I8(p, i) ((float)(p)[i])

// ---------------------------------------------------------------- scalar
// Scores (scaled by ks[j] when ks is not NULL) and weighted sums over values that are already scaled.
#define DEF_SCALAR(SUF, T, ELEM)                                                                          \
    static void scores##SUF##_scalar(const float *q, int64_t ldq, int64_t g, const T *kt, const float *ks,     \
                                     int64_t hd, int64_t j0, int64_t j1, float *s, int64_t lds) {          \
        for (int64_t r = 0; r < g; r++)                                                                   \
            for (int64_t j = j0; j < j1; j++) {                                                           \
                float acc = 0;                                                                            \
                for (int64_t d = 0; d < hd; d++) acc += q[r * ldq + d] * ELEM(kt, ((j / KT) * hd + d) * KT + j % KT); \
                s[r * lds + (j - j0)] = ks ? acc * ks[j] : acc;                                           \
            }                                                                                             \
    }                                                                                                     \
    static void pv##SUF##_scalar(const float *p, int64_t ldp, int64_t g, const T *vt, int64_t ldv, int64_t hd, \
                                 int64_t n, float *out, int64_t ldo) {                                    \
        for (int64_t r = 0; r < g; r++)                                                                   \
            for (int64_t d = 0; d < hd; d++) {                                                            \
                float acc = 0;                                                                            \
                for (int64_t j = 0; j < n; j++) acc += p[r * ldp + j] * ELEM(vt, d * ldv + j);            \
                out[r * ldo + d] = acc;                                                                   \
            }                                                                                             \
    }
DEF_SCALAR(16, uint16_t, ELEM_F16)
DEF_SCALAR(8, int8_t, ELEM_I8)

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
T_AVX2 static INL float hsum8(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
#define LOAD8_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
// One half-precision element with the F16C instruction (the same exact conversion as sq_f16_to_f32_1,
// which is a call and branches: in the products' tails it took about 1% of decoding).
#define ELEM_F16C(p, i) _cvtsh_ss((p)[i])
#define LOAD8_I8(p) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p))))

// Scores: one tile (KT = 32 keys) against NT query rows at a time, acc[r][u] holding keys 8u..8u+7 of
// row r; the 4 key vectors of each dimension are converted once and used by every row (12
// accumulators at NT = 3); the tile's key scales (8-bit) applied once at the end. Partial tiles go
// through a buffer, so only [j0, j1) is written.
// Weighted sums: one value row (dimension d) against NT probability rows, 16 positions per step.
// While decoding the cache comes from memory (the weights have evicted it): software prefetches of
// the tile two ahead and of the next value row took about 15% and 12% off these kernels' time
// (their share of decoding at 2048 positions, `perf`, two runs each; prefetches never fault).
#define DEF_AVX2(SUF, T, LOAD8, ELEM)                                                                     \
    T_AVX2 static INL void tile_scores##SUF(const float *q, int64_t ldq, const T *tile, const float *ks,      \
                                            int64_t hd, float out[3][KT], const int NT) {                 \
        __m256 acc[3][4];                                                                                 \
        for (int r = 0; r < 3; r++)                                                                       \
            for (int u = 0; u < 4; u++) acc[r][u] = _mm256_setzero_ps();                                  \
        for (int64_t d = 0; d < hd; d++) {                                                                \
            const T *k = tile + d * KT;                                                                   \
            _mm_prefetch((const char *)(k + 2 * hd * KT), _MM_HINT_T0); /* two tiles ahead */          \
            __m256 kv[4];                                                                                 \
            for (int u = 0; u < 4; u++) kv[u] = LOAD8(k + 8 * u);                                         \
            for (int r = 0; r < NT; r++) {                                                                \
                __m256 qb = _mm256_broadcast_ss(q + r * ldq + d);                                         \
                for (int u = 0; u < 4; u++) acc[r][u] = _mm256_fmadd_ps(qb, kv[u], acc[r][u]);           \
            }                                                                                             \
        }                                                                                                 \
        for (int r = 0; r < NT; r++)                                                                      \
            for (int u = 0; u < 4; u++)                                                                   \
                _mm256_storeu_ps(out[r] + 8 * u, ks ? _mm256_mul_ps(acc[r][u], _mm256_loadu_ps(ks + 8 * u)) : acc[r][u]); \
    }                                                                                                     \
    T_AVX2 static INL void scores##SUF##_rows_avx2(const float *q, int64_t ldq, const T *kt, const float *ks,  \
                                                   int64_t hd, int64_t j0, int64_t j1, float *s, int64_t lds, \
                                                   const int NT) {                                        \
        float buf[3][KT];                                                                                 \
        for (int64_t t = j0 / KT; t * KT < j1; t++) {                                                     \
            int64_t a = t * KT < j0 ? j0 : t * KT, b = (t + 1) * KT > j1 ? j1 : (t + 1) * KT;             \
            tile_scores##SUF(q, ldq, kt + t * hd * KT, ks ? ks + t * KT : NULL, hd, buf, NT);             \
            for (int r = 0; r < NT; r++)                                                                  \
                memcpy(s + r * lds + (a - j0), buf[r] + (a - t * KT), (size_t)(b - a) * sizeof(float));   \
        }                                                                                                 \
    }                                                                                                     \
    T_AVX2 static void scores##SUF##_avx2(const float *q, int64_t ldq, int64_t g, const T *kt, const float *ks, \
                                          int64_t hd, int64_t j0, int64_t j1, float *s, int64_t lds) {    \
        int64_t r = 0;                                                                                    \
        for (; r + 3 <= g; r += 3) scores##SUF##_rows_avx2(q + r * ldq, ldq, kt, ks, hd, j0, j1, s + r * lds, lds, 3); \
        if (g - r == 2) scores##SUF##_rows_avx2(q + r * ldq, ldq, kt, ks, hd, j0, j1, s + r * lds, lds, 2);   \
        else if (g - r == 1) scores##SUF##_rows_avx2(q + r * ldq, ldq, kt, ks, hd, j0, j1, s + r * lds, lds, 1); \
    }                                                                                                     \
    T_AVX2 static INL void pv##SUF##_rows_avx2(const float *p, int64_t ldp, const T *vt, int64_t ldv, int64_t hd, \
                                               int64_t n, float *out, int64_t ldo, const int NT) {        \
        for (int64_t d = 0; d < hd; d++) {                                                                \
            const T *v = vt + d * ldv;                                                                    \
            __m256 a[3], b[3];                                                                            \
            for (int r = 0; r < 3; r++) a[r] = b[r] = _mm256_setzero_ps();                                \
            int64_t j = 0;                                                                                \
            for (; j + 16 <= n; j += 16) {                                                                \
                __m256 v0 = LOAD8(v + j), v1 = LOAD8(v + j + 8);                                          \
                _mm_prefetch((const char *)(v + ldv + j), _MM_HINT_T0); /* the next row, same place */     \
                for (int r = 0; r < NT; r++) {                                                            \
                    a[r] = _mm256_fmadd_ps(v0, _mm256_loadu_ps(p + r * ldp + j), a[r]);                   \
                    b[r] = _mm256_fmadd_ps(v1, _mm256_loadu_ps(p + r * ldp + j + 8), b[r]);               \
                }                                                                                         \
            }                                                                                             \
            float acc[3];                                                                                 \
            for (int r = 0; r < NT; r++) acc[r] = hsum8(_mm256_add_ps(a[r], b[r]));                       \
            for (; j < n; j++)                                                                            \
                for (int r = 0; r < NT; r++) acc[r] += ELEM(v, j) * p[r * ldp + j];                       \
            for (int r = 0; r < NT; r++) out[r * ldo + d] = acc[r];                                       \
        }                                                                                                 \
    }                                                                                                     \
    T_AVX2 static void pv##SUF##_avx2(const float *p, int64_t ldp, int64_t g, const T *vt, int64_t ldv,       \
                                      int64_t hd, int64_t n, float *out, int64_t ldo) {                   \
        int64_t r = 0;                                                                                    \
        for (; r + 3 <= g; r += 3) pv##SUF##_rows_avx2(p + r * ldp, ldp, vt, ldv, hd, n, out + r * ldo, ldo, 3); \
        if (g - r == 2) pv##SUF##_rows_avx2(p + r * ldp, ldp, vt, ldv, hd, n, out + r * ldo, ldo, 2);     \
        else if (g - r == 1) pv##SUF##_rows_avx2(p + r * ldp, ldp, vt, ldv, hd, n, out + r * ldo, ldo, 1); \
    }
DEF_AVX2(16, uint16_t, LOAD8_F16, ELEM_F16C)
DEF_AVX2(8, int8_t, LOAD8_I8, ELEM_I8)

// dst[i] = scale[i] * q[i] for n values.
T_AVX2 static void dequant8_avx2(const int8_t *q, const float *scale, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_mul_ps(LOAD8_I8(q + i), _mm256_loadu_ps(scale + i)));
    for (; i < n; i++) dst[i] = scale[i] * (float)q[i];
}
#endif

static void dequant8(const int8_t *q, const float *scale, float *dst, int64_t n) {
#ifdef SQ_X86
    if (sq_isa() >= SQ_ISA_AVX2) { dequant8_avx2(q, scale, dst, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) dst[i] = scale[i] * (float)q[i];
}

// ---------------------------------------------------------------- dispatch
#ifdef SQ_X86
#define DISPATCH(AVX2_CALL, SCALAR_CALL)                                                                  \
    do {                                                                                                  \
        if (sq_isa() >= SQ_ISA_AVX2) AVX2_CALL; else SCALAR_CALL;                                         \
    } while (0)
#else
#define DISPATCH(AVX2_CALL, SCALAR_CALL) SCALAR_CALL
#endif

void sq_attn_scores_kt16(const float *q, int64_t ldq, int64_t g, const uint16_t *kt, int64_t hd, int64_t j0,
                         int64_t j1, float *s, int64_t lds) {
    if (g <= 0 || j1 <= j0) return;
    DISPATCH(scores16_avx2(q, ldq, g, kt, NULL, hd, j0, j1, s, lds), scores16_scalar(q, ldq, g, kt, NULL, hd, j0, j1, s, lds));
}

void sq_attn_pv16(const float *p, int64_t ldp, int64_t g, const uint16_t *vt, int64_t ldv, int64_t hd, int64_t n,
                  float *out, int64_t ldo) {
    if (g <= 0) return;
    DISPATCH(pv16_avx2(p, ldp, g, vt, ldv, hd, n, out, ldo), pv16_scalar(p, ldp, g, vt, ldv, hd, n, out, ldo));
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
    DISPATCH(scores8_avx2(q, ldq, g, kt, ks, hd, j0, j1, s, lds), scores8_scalar(q, ldq, g, kt, ks, hd, j0, j1, s, lds));
}

void sq_attn_pv8(float *p, int64_t ldp, int64_t g, const int8_t *vt, int64_t ldv, const float *vs, int64_t hd,
                 int64_t n, float *out, int64_t ldo) {
    if (g <= 0) return;
    for (int64_t r = 0; r < g; r++)
        for (int64_t j = 0; j < n; j++) p[r * ldp + j] *= vs[j];
    DISPATCH(pv8_avx2(p, ldp, g, vt, ldv, hd, n, out, ldo), pv8_scalar(p, ldp, g, vt, ldv, hd, n, out, ldo));
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
