// LUT (non-uniform quantized) GEMV/GEMM: each row has its own table of 2^bits entries.
// Two paths: an exact float path (table look-ups with vpermps) and an int8 path (table entries as
// 7-bit codes with a per-row scale and offset, activations as int8 per block of SQ_LUT_QBLOCK, byte
// shuffles with vpshufb and vpmaddubsw dot products, as llama.cpp's IQ4_NL but without its sign
// trick). See sq_lut.h for the layouts.
// Variants are chosen at run time on sq_isa(); AVX2 variants carry per-function target attributes.
#include "sq_lut.h"
#include "sq_dense.h"
#include "sq_isa.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define QB SQ_LUT_QBLOCK

// GEMM cache blocking (the tile templates): rows in blocks of SQ_RB (their packed weights stay in L2)
// times tokens in blocks of SQ_TB (their activations stay in L2).
#define SQ_RB 64
#define SQ_TB 32

#ifdef SQ_ARM
// The NEON row decoding and activation quantization (defined with the other NEON kernels below).
static void dequantize_row_neon(int bits, const uint8_t *row, const float *tab, int64_t kpad, float *out);
static void quantize_x_neon(const float *x, int64_t k, int64_t kpad, int8_t *xq, float *d);
#endif
// ---------------------------------------------------------------- layout
int64_t sq_lut_col_multiple(int bits) { return bits == 4 ? 64 : (bits == 3 ? 128 : 0); }

int64_t sq_lut_padded_cols(int bits, int64_t cols) {
    int64_t m = sq_lut_col_multiple(bits);
    if (m == 0) return 0;
    if (cols <= 0) return m;
    return (cols + m - 1) / m * m;
}

int64_t sq_lut_row_bytes(int bits, int64_t kpad) {
    if (bits == 4) return kpad / 2;
    if (bits == 3) return kpad / 128 * 48;
    return 0;
}

static inline unsigned get_idx4(const uint8_t *row, int64_t i) {
    uint8_t b = row[(i >> 6) * 32 + (i & 31)];
    return (i & 32) ? (unsigned)(b >> 4) : (unsigned)(b & 15);
}

static inline unsigned get_idx3(const uint8_t *row, int64_t i) {
    const uint8_t *c = row + (i >> 7) * 48;
    int64_t j = i & 127, s = j >> 5, jj = j & 31;
    unsigned hi2 = (c[jj] >> (2 * s)) & 3;
    unsigned lo1 = (c[32 + (jj & 15)] >> (s + (jj >= 16 ? 4 : 0))) & 1;
    return hi2 * 2 + lo1;
}

void sq_lut_pack(int bits, const uint8_t *idx, int64_t ldi, int64_t cols, int64_t kpad, uint8_t *out,
                 int64_t r0, int64_t r1) {
    int64_t rb = sq_lut_row_bytes(bits, kpad);
    for (int64_t r = r0; r < r1; r++) {
        uint8_t *o = out + r * rb;
        const uint8_t *s = idx + r * ldi;
        memset(o, 0, (size_t)rb);
        if (bits == 4) {
            for (int64_t i = 0; i < cols; i++) {
                unsigned v = s[i] & 15;
                int64_t j = i & 63;
                o[(i >> 6) * 32 + (j & 31)] |= (uint8_t)(j < 32 ? v : v << 4);
            }
        } else {
            for (int64_t i = 0; i < cols; i++) {
                unsigned v = s[i] & 7;
                uint8_t *c = o + (i >> 7) * 48;
                int64_t j = i & 127, sg = j >> 5, jj = j & 31;
                c[jj] |= (uint8_t)((v >> 1) << (2 * sg));
                c[32 + (jj & 15)] |= (uint8_t)((v & 1) << (sg + (jj >= 16 ? 4 : 0)));
            }
        }
    }
}

void sq_lut_unpack_row(int bits, const uint8_t *packed, int64_t kpad, int64_t r, int64_t cols, uint8_t *out) {
    const uint8_t *row = packed + r * sq_lut_row_bytes(bits, kpad);
    for (int64_t i = 0; i < cols; i++) out[i] = (uint8_t)(bits == 4 ? get_idx4(row, i) : get_idx3(row, i));
}


// Squared error of the entries t[0..n) (n = 8 or 16) coded as scale * q + offset with
// q = round((t - offset) / scale) clamped to 127 (t >= offset, so q >= 0).
static INL float table_error_scalar(const float *t, int n, float scale, float offset) {
    float inv = 1.0f / scale, e = 0;
    for (int i = 0; i < n; i++) {
        float c = (float)(int)((t[i] - offset) * inv + 0.5f);
        c = c > 127.0f ? 127.0f : c;
        float r = t[i] - (scale * c + offset);
        e += r * r;
    }
    return e;
}

#define SQ_TABLE_SCALES 100  // scales tried from (max - min) / 127 up to 1.5x that
#define SQ_TABLE_PHASES 8    // offsets tried per scale (the error is periodic in the offset, period = scale);
                             // the AVX2 search holds them in one vector

// Least-squares refit of scale *bs and offset *bo (error *be) to the codes they give, kept when it
// lowers the error within the search's bounds.
static void table_refit(const float *t, int n, float mn, float mx, float *bs, float *bo, float *be) {
    float base = (mx - mn) / 127;
    for (int it = 0; it < 2; it++) {
        double sq = 0, sqq = 0, st = 0, sqt = 0;
        for (int e = 0; e < n; e++) {
            int c = (int)((t[e] - *bo) * (1.0f / *bs) + 0.5f);
            c = c > 127 ? 127 : c;
            sq += c; sqq += (double)c * c; st += t[e]; sqt += (double)c * t[e];
        }
        double det = n * sqq - sq * sq;
        if (!(det > 0)) return;
        float s2 = (float)((n * sqt - sq * st) / det), o2 = (float)((st - s2 * sq) / n);
        if (!(s2 >= base && s2 <= 1.5f * base && o2 <= mn && mx - o2 <= 127 * s2)) return;
        float e2 = table_error_scalar(t, n, s2, o2);
        if (!(e2 < *be)) return;
        *be = e2; *bs = s2; *bo = o2;
    }
}

// The (scale, offset) search of sq_lut_quantize_tables for one row with min mn and max mx: among
// scales from (max - min) / 127 to 1.5x that and offsets keeping every code in 0..127 (offsets in
// [max - 127 scale, min], stepped by fractions of one scale below min, as shifting the offset by a
// whole scale only shifts the codes), the pair with the least squared error; then a least-squares
// refit of scale and offset to the chosen codes, kept when it lowers the error within those bounds.
// The grid is this fine because perplexity is sensitive to it (docs/kernels.md).
static void table_search_scalar(const float *t, int n, float mn, float mx, float *scale, float *offset) {
    float base = (mx - mn) / 127;
    float bs = base, bo = mn, be = table_error_scalar(t, n, base, mn);
    for (int i = 1; i < SQ_TABLE_SCALES; i++) {
        float sc = base * (1.0f + 0.5f * (float)i / (SQ_TABLE_SCALES - 1));
        for (int j = 0; j < SQ_TABLE_PHASES; j++) {
            float o = mn - sc * (float)j / SQ_TABLE_PHASES;
            if (mx - o > 127 * sc) break;
            float e = table_error_scalar(t, n, sc, o);
            if (e < be) { be = e; bs = sc; bo = o; }
        }
    }
    table_refit(t, n, mn, mx, &bs, &bo, &be);
    *scale = bs;
    *offset = bo;
}

#ifdef SQ_X86
// The same search with the eight offsets of one scale in the lanes of a vector.
_Static_assert(SQ_TABLE_PHASES == 8, "the AVX2 table search holds the offsets in the 8 lanes of a vector");
T_AVX2 static void table_search_avx2(const float *t, int n, float mn, float mx, float *scale, float *offset) {
    float base = (mx - mn) / 127;
    float bs = base, bo = mn, be = table_error_scalar(t, n, base, mn);
    const __m256 phase = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7), half = _mm256_set1_ps(0.5f), top = _mm256_set1_ps(127.0f);
    for (int i = 1; i < SQ_TABLE_SCALES; i++) {
        float sc = base * (1.0f + 0.5f * (float)i / (SQ_TABLE_SCALES - 1));
        __m256 vs = _mm256_set1_ps(sc), vi = _mm256_set1_ps(1.0f / sc);
        __m256 vo = _mm256_sub_ps(_mm256_set1_ps(mn), _mm256_mul_ps(vs, _mm256_mul_ps(phase, _mm256_set1_ps(1.0f / SQ_TABLE_PHASES))));
        __m256 acc = _mm256_setzero_ps();
        for (int e = 0; e < n; e++) {
            __m256 v = _mm256_set1_ps(t[e]);
            __m256 c = _mm256_cvtepi32_ps(_mm256_cvttps_epi32(_mm256_fmadd_ps(_mm256_sub_ps(v, vo), vi, half)));
            __m256 r = _mm256_sub_ps(v, _mm256_fmadd_ps(vs, _mm256_min_ps(c, top), vo));
            acc = _mm256_fmadd_ps(r, r, acc);
        }
        // Offsets that would push a code past 127 are not candidates.
        __m256 bad = _mm256_cmp_ps(_mm256_sub_ps(_mm256_set1_ps(mx), vo), _mm256_set1_ps(127 * sc), _CMP_GT_OQ);
        acc = _mm256_blendv_ps(acc, _mm256_set1_ps(INFINITY), bad);
        float es[8], os[8];
        _mm256_storeu_ps(es, acc);
        _mm256_storeu_ps(os, vo);
        for (int j = 0; j < 8; j++)
            if (es[j] < be) { be = es[j]; bs = sc; bo = os[j]; }
    }
    table_refit(t, n, mn, mx, &bs, &bo, &be);
    *scale = bs;
    *offset = bo;
}
#endif

void sq_lut_quantize_tables(int bits, const float *lut, int64_t r0, int64_t r1, uint8_t *qt, float *scale,
                            float *offset) {
    int n = 1 << bits;
    for (int64_t r = r0; r < r1; r++) {
        const float *t = lut + r * 16;
        uint8_t *q = qt + r * 16;
        memset(q, 0, 16);
        float mn = t[0], mx = t[0];
        for (int e = 1; e < n; e++) { mn = fminf(mn, t[e]); mx = fmaxf(mx, t[e]); }
        float range = mx - mn;
        if (!(range / 127 > 0) || !isfinite(range)) {
            scale[r] = 0;
            offset[r] = mn;
            continue;
        }
        float s, o;
#ifdef SQ_X86
        if (sq_isa() >= SQ_ISA_AVX2) table_search_avx2(t, n, mn, mx, &s, &o);
        else
#endif
        table_search_scalar(t, n, mn, mx, &s, &o);
        for (int e = 0; e < n; e++) {
            int c = (int)((t[e] - o) * (1.0f / s) + 0.5f);
            q[e] = (uint8_t)(c > 127 ? 127 : c);
        }
        scale[r] = s;
        offset[r] = o;
    }
}

// ---------------------------------------------------------------- row decoding (prefill)
static void dequantize_row_scalar(int bits, const uint8_t *row, const float *tab, int64_t kpad, float *out) {
    for (int64_t i = 0; i < kpad; i++) out[i] = tab[bits == 4 ? get_idx4(row, i) : get_idx3(row, i)];
}

#ifdef SQ_X86
// Eight 4-bit indices (low nibbles of 8 bytes, or high nibbles when HI) looked up in the 16-entry
// table t0 | t1: vpermps uses an index's low 3 bits, bit 3 picks the half.
T_AVX2 static void dequantize_row_avx2(int bits, const uint8_t *row, const float *tab, int64_t kpad, float *out) {
    if (bits == 4) {
        const __m256 t0 = _mm256_loadu_ps(tab), t1 = _mm256_loadu_ps(tab + 8);
        for (int64_t c = 0; c < kpad; c += 64) {
            const uint8_t *wc = row + c / 2;
            for (int j = 0; j < 32; j += 8) {
                __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(wc + j)));
                __m256i hi = _mm256_srli_epi32(b, 4);
                _mm256_storeu_ps(out + c + j, _mm256_blendv_ps(_mm256_permutevar8x32_ps(t0, b), _mm256_permutevar8x32_ps(t1, b),
                                                              _mm256_castsi256_ps(_mm256_slli_epi32(b, 28))));
                _mm256_storeu_ps(out + c + 32 + j, _mm256_blendv_ps(_mm256_permutevar8x32_ps(t0, hi), _mm256_permutevar8x32_ps(t1, hi),
                                                                   _mm256_castsi256_ps(_mm256_slli_epi32(b, 24))));
            }
        }
        return;
    }
    // 3 bits: index = (2-bit plane value) * 2 + (bit plane value), as in f32_row3.
    const __m256 t = _mm256_loadu_ps(tab);
    const __m256i m6 = _mm256_set1_epi32(6), m1 = _mm256_set1_epi32(1);
    for (int64_t c = 0; c < kpad; c += 128) {
        const uint8_t *wc = row + c / 128 * 48;
        __m256i L[4], H[2];
        for (int q = 0; q < 4; q++) L[q] = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(wc + 8 * q)));
        H[0] = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(wc + 32)));
        H[1] = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(wc + 40)));
        for (int s = 0; s < 4; s++)
            for (int q = 0; q < 4; q++) {
                __m256i lo2 = s == 0 ? _mm256_slli_epi32(L[q], 1) : _mm256_srli_epi32(L[q], 2 * s - 1);
                __m256i hb = _mm256_srli_epi32(H[q & 1], s + (q >= 2 ? 4 : 0));
                __m256i idx = _mm256_or_si256(_mm256_and_si256(lo2, m6), _mm256_and_si256(hb, m1));
                _mm256_storeu_ps(out + c + 32 * s + 8 * q, _mm256_permutevar8x32_ps(t, idx));
            }
    }
}
#endif

void sq_lut_dequantize_row(int bits, const uint8_t *packed, const float *lut, int64_t kpad, int64_t r, float *out) {
    if (bits != 3 && bits != 4) return;
    const uint8_t *row = packed + r * sq_lut_row_bytes(bits, kpad);
#ifdef SQ_X86
    if (sq_isa() >= SQ_ISA_AVX2) { dequantize_row_avx2(bits, row, lut + r * 16, kpad, out); return; }
#endif
#ifdef SQ_ARM
    if (sq_isa() >= SQ_ISA_NEON) { dequantize_row_neon(bits, row, lut + r * 16, kpad, out); return; }
#endif
    dequantize_row_scalar(bits, row, lut + r * 16, kpad, out);
}

// ---------------------------------------------------------------- activation quantization
static void quantize_x_scalar(const float *x, int64_t k, int64_t kpad, int8_t *xq, float *d) {
    for (int64_t b = 0; b < kpad / QB; b++) {
        int64_t i0 = b * QB;
        float amax = 0;
        for (int64_t i = i0; i < i0 + QB && i < k; i++) amax = fmaxf(amax, fabsf(x[i]));
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        for (int64_t i = i0; i < i0 + QB; i++) {
            int q = i < k ? (int)nearbyintf(x[i] * id) : 0;
            q = q > 127 ? 127 : (q < -127 ? -127 : q);
            xq[i] = (int8_t)q;
        }
    }
}

#ifdef SQ_X86
T_AVX2 static void quantize_x_avx2(const float *x, int64_t k, int64_t kpad, int8_t *xq, float *d) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int64_t full = k / QB;
    for (int64_t b = 0; b < full; b++) {
        const float *xb = x + b * QB;
        __m256 v[8];
        __m256 m = _mm256_setzero_ps();
        for (int q = 0; q < 8; q++) {
            v[q] = _mm256_loadu_ps(xb + 8 * q);
            m = _mm256_max_ps(m, _mm256_and_ps(v[q], absmask));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        __m256 vid = _mm256_set1_ps(id);
        for (int h = 0; h < 2; h++) {
            __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v[4 * h + 0], vid));
            __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v[4 * h + 1], vid));
            __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v[4 * h + 2], vid));
            __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v[4 * h + 3], vid));
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
            p = _mm256_permutevar8x32_epi32(p, perm);
            p = _mm256_max_epi8(p, _mm256_set1_epi8(-127));
            _mm256_store_si256((__m256i *)(xq + b * QB + 32 * h), p);
        }
    }
    if (full * QB < kpad)
        quantize_x_scalar(x + full * QB, k - full * QB, kpad - full * QB, xq + full * QB, d + full);
}
#endif

void sq_lut_quantize_x(const float *x, int64_t k, int64_t kpad, int8_t *xq, float *d, float *sx) {
#ifdef SQ_X86
    if (sq_isa() >= SQ_ISA_AVX2) quantize_x_avx2(x, k, kpad, xq, d);
    else
#endif
#ifdef SQ_ARM
    if (sq_isa() >= SQ_ISA_NEON) quantize_x_neon(x, k, kpad, xq, d);
    else
#endif
    quantize_x_scalar(x, k, kpad, xq, d);
    float c = 0;
    for (int64_t b = 0; b < kpad / QB; b++) {
        int32_t s = 0;
        for (int64_t i = b * QB; i < (b + 1) * QB; i++) s += xq[i];
        c += (float)s * d[b];
    }
    *sx = c;
}

// ---------------------------------------------------------------- scalar kernels
static void gemm_f32_scalar(int bits, const uint8_t *w, const float *lut, const float *x, int64_t ldx, int64_t m,
                            float *y, int64_t ldy, int64_t kpad, int64_t r0, int64_t r1) {
    int64_t rb = sq_lut_row_bytes(bits, kpad);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w + r * rb;
        const float *t = lut + r * 16;
        for (int64_t tk = 0; tk < m; tk++) {
            const float *xt = x + tk * ldx;
            float s = 0;
            if (bits == 4)
                for (int64_t i = 0; i < kpad; i++) s += t[get_idx4(row, i)] * xt[i];
            else
                for (int64_t i = 0; i < kpad; i++) s += t[get_idx3(row, i)] * xt[i];
            y[tk * ldy + r] = s;
        }
    }
}

static void gemm_i8_scalar(int bits, const uint8_t *w, const uint8_t *qt, const float *scale, const float *offset,
                           const int8_t *xq, const float *d, const float *sx, int64_t m, float *y, int64_t ldy,
                           int64_t kpad, int64_t r0, int64_t r1) {
    int64_t rb = sq_lut_row_bytes(bits, kpad), nb = kpad / QB;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w + r * rb;
        const uint8_t *t = qt + r * 16;
        for (int64_t tk = 0; tk < m; tk++) {
            const int8_t *xt = xq + tk * kpad;
            const float *dt = d + tk * nb;
            float s = 0;
            for (int64_t b = 0; b < nb; b++) {
                int32_t acc = 0;
                for (int64_t i = b * QB; i < (b + 1) * QB; i++)
                    acc += (int32_t)t[bits == 4 ? get_idx4(row, i) : get_idx3(row, i)] * xt[i];
                s += (float)acc * dt[b];
            }
            y[tk * ldy + r] = s * scale[r] + offset[r] * sx[tk];
        }
    }
}

// ---------------------------------------------------------------- AVX2 kernels
#ifdef SQ_X86

// Float path, 4 bits, NT tokens (1..4) for one row.
T_AVX2 static INL void f32_row4(const uint8_t *w, const float *lut, const float *x, int64_t ldx, float *y,
                                int64_t ldy, int64_t kpad, const int NT) {
    const __m256 t0 = _mm256_loadu_ps(lut), t1 = _mm256_loadu_ps(lut + 8);
    __m256 acc[4][2];
    for (int t = 0; t < 4; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    __m256 extra0 = _mm256_setzero_ps(), extra1 = _mm256_setzero_ps();
    for (int64_t c = 0; c < kpad; c += 64) {
        const uint8_t *wc = w + c / 2;
        for (int j = 0; j < 32; j += 8) {
            __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(wc + j)));
            __m256i hi = _mm256_srli_epi32(b, 4);
            __m256 wl = _mm256_blendv_ps(_mm256_permutevar8x32_ps(t0, b), _mm256_permutevar8x32_ps(t1, b),
                                         _mm256_castsi256_ps(_mm256_slli_epi32(b, 28)));
            __m256 wh = _mm256_blendv_ps(_mm256_permutevar8x32_ps(t0, hi), _mm256_permutevar8x32_ps(t1, hi),
                                         _mm256_castsi256_ps(_mm256_slli_epi32(b, 24)));
            if (NT == 1 && (j & 8)) {
                extra0 = _mm256_fmadd_ps(wl, _mm256_loadu_ps(x + c + j), extra0);
                extra1 = _mm256_fmadd_ps(wh, _mm256_loadu_ps(x + c + 32 + j), extra1);
            } else {
                for (int t = 0; t < NT; t++) {
                    acc[t][0] = _mm256_fmadd_ps(wl, _mm256_loadu_ps(x + t * ldx + c + j), acc[t][0]);
                    acc[t][1] = _mm256_fmadd_ps(wh, _mm256_loadu_ps(x + t * ldx + c + 32 + j), acc[t][1]);
                }
            }
        }
    }
    if (NT == 1) {
        acc[0][0] = _mm256_add_ps(acc[0][0], extra0);
        acc[0][1] = _mm256_add_ps(acc[0][1], extra1);
    }
    for (int t = 0; t < NT; t++) y[t * ldy] = sq_hsum8(_mm256_add_ps(acc[t][0], acc[t][1]));
}

// Float path, 3 bits.
T_AVX2 static INL void f32_row3(const uint8_t *w, const float *lut, const float *x, int64_t ldx, float *y,
                                int64_t ldy, int64_t kpad, const int NT) {
    const __m256 tab = _mm256_loadu_ps(lut);
    const __m256i m6 = _mm256_set1_epi32(6), m1 = _mm256_set1_epi32(1);
    __m256 acc[4][2];
    for (int t = 0; t < 4; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    for (int64_t c = 0; c < kpad; c += 128) {
        const uint8_t *wc = w + c / 128 * 48;
        __m256i L[4], H[2];
        for (int q = 0; q < 4; q++) L[q] = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(wc + 8 * q)));
        H[0] = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(wc + 32)));
        H[1] = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(wc + 40)));
        for (int s = 0; s < 4; s++) {
            for (int q = 0; q < 4; q++) {
                __m256i lo2 = s == 0 ? _mm256_slli_epi32(L[q], 1) : _mm256_srli_epi32(L[q], 2 * s - 1);
                __m256i hb = _mm256_srli_epi32(H[q & 1], s + (q >= 2 ? 4 : 0));
                __m256i idx = _mm256_or_si256(_mm256_and_si256(lo2, m6), _mm256_and_si256(hb, m1));
                __m256 wv = _mm256_permutevar8x32_ps(tab, idx);
                for (int t = 0; t < NT; t++)
                    acc[t][q & 1] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + t * ldx + c + 32 * s + 8 * q), acc[t][q & 1]);
            }
        }
    }
    for (int t = 0; t < NT; t++) y[t * ldy] = sq_hsum8(_mm256_add_ps(acc[t][0], acc[t][1]));
}

// int8 dot of 32 table codes (unsigned, at most 127) with 32 signed activations: 8 int32 partial
// sums. vpmaddubsw's pairwise int16 sums cannot saturate (2 * 127 * 127 < 32768).
T_AVX2 static INL __m256i dot32(__m256i tv, const int8_t *xs) {
    __m256i p = _mm256_maddubs_epi16(tv, _mm256_load_si256((const __m256i *)xs));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}
// One 64-activation block: codes tv0 for xs[0..32), tv1 for xs[32..64).
T_AVX2 static INL __m256i dot64_avx2(__m256i tv0, __m256i tv1, const int8_t *xs) {
    return _mm256_add_epi32(dot32(tv0, xs), dot32(tv1, xs + 32));
}
// 3 bits: bit 0 of the index from the bit plane hb (mask M for the group).
T_AVX2 static INL __m256i setbit_avx2(__m256i lo, __m256i hb, __m256i M) {
    return _mm256_sub_epi8(lo, _mm256_cmpeq_epi8(_mm256_and_si256(hb, M), M));
}

// Rows of at most this many (padded) inputs use the chain order below, longer rows the pair order.
#define SQ_I8_CHAIN_MAX_K 2048

#define I8_ATTR T_AVX2
#define I8_SFX avx2
#define I8_DOT64 dot64_avx2
#define I8_SETBIT setbit_avx2
#define I8_HSUM sq_hsum8
#include "lut_i8_kernels.h"


// The float-table GEMM tiles (row blocks x token blocks, 4 tokens per row pass).
#define F32_TILE_NAME gemm_f32_4_avx2
#define F32_TILE_ATTR T_AVX2
#define F32_TILE_ROW f32_row4
#include "lut_f32_tile.h"
#define F32_TILE_NAME gemm_f32_3_avx2
#define F32_TILE_ATTR T_AVX2
#define F32_TILE_ROW f32_row3
#include "lut_f32_tile.h"

#endif

// ---------------------------------------------------------------- AVX-512 kernels
#ifdef SQ_X86
T_AVX512 static INL float hsum16(__m512 v) { return _mm512_reduce_add_ps(v); }

// Float path, 4 bits: the 16-entry table in one zmm, vpermps uses the low 4 bits of each index.
T_AVX512 static INL void f32_row4_512(const uint8_t *w, const float *lut, const float *x, int64_t ldx, float *y,
                                      int64_t ldy, int64_t kpad, const int NT) {
    const __m512 tab = _mm512_loadu_ps(lut);
    __m512 acc[4][2];
    for (int t = 0; t < 4; t++) acc[t][0] = acc[t][1] = _mm512_setzero_ps();
    for (int64_t c = 0; c < kpad; c += 64) {
        const uint8_t *wc = w + c / 2;
        for (int h = 0; h < 32; h += 16) {
            __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(wc + h)));
            __m512 wl = _mm512_permutexvar_ps(b, tab);
            __m512 wh = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), tab);
            for (int t = 0; t < NT; t++) {
                acc[t][0] = _mm512_fmadd_ps(wl, _mm512_loadu_ps(x + t * ldx + c + h), acc[t][0]);
                acc[t][1] = _mm512_fmadd_ps(wh, _mm512_loadu_ps(x + t * ldx + c + 32 + h), acc[t][1]);
            }
        }
    }
    for (int t = 0; t < NT; t++) y[t * ldy] = hsum16(_mm512_add_ps(acc[t][0], acc[t][1]));
}

// Float path, 3 bits: the 8-entry table duplicated to 16 lanes (bit 3 of an index is don't-care);
// index = bits 1-2 from the 2-bit plane, bit 0 from the bit plane, merged with one vpternlogd.
T_AVX512 static INL void f32_row3_512(const uint8_t *w, const float *lut, const float *x, int64_t ldx, float *y,
                                      int64_t ldy, int64_t kpad, const int NT) {
    const __m512 tab = _mm512_broadcast_f32x8(_mm256_loadu_ps(lut));
    const __m512i m6 = _mm512_set1_epi32(6);
    __m512 acc[4][2];
    for (int t = 0; t < 4; t++) acc[t][0] = acc[t][1] = _mm512_setzero_ps();
    for (int64_t c = 0; c < kpad; c += 128) {
        const uint8_t *wc = w + c / 128 * 48;
        __m512i L[2];
        L[0] = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)wc));
        L[1] = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(wc + 16)));
        const __m512i H = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(wc + 32)));
        for (int s = 0; s < 4; s++) {
            for (int q = 0; q < 2; q++) {
                __m512i a = s == 0 ? _mm512_slli_epi32(L[q], 1) : _mm512_srli_epi32(L[q], 2 * s - 1);
                __m512i b = _mm512_srli_epi32(H, s + 4 * q);
                __m512i idx = _mm512_ternarylogic_epi32(a, b, m6, 0xE4); // m6 ? a : b, bitwise
                __m512 wv = _mm512_permutexvar_ps(idx, tab);
                for (int t = 0; t < NT; t++)
                    acc[t][q] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + t * ldx + c + 32 * s + 16 * q), acc[t][q]);
            }
        }
    }
    for (int t = 0; t < NT; t++) y[t * ldy] = hsum16(_mm512_add_ps(acc[t][0], acc[t][1]));
}

// int8 path with VNNI: vpdpbusd multiplies the unsigned table codes by the signed activations and
// accumulates in int32, one instruction per 32 products.
T_VNNI static INL __m256i dot64_vnni(__m256i tv0, __m256i tv1, const int8_t *xs) {
    __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), tv0, _mm256_load_si256((const __m256i *)xs));
    return _mm256_dpbusd_epi32(p, tv1, _mm256_load_si256((const __m256i *)(xs + 32)));
}
T_VNNI static INL __m256i setbit_vnni(__m256i lo, __m256i hb, __m256i M) {
    return _mm256_mask_add_epi8(lo, _mm256_test_epi8_mask(hb, M), lo, _mm256_set1_epi8(1));
}
#define I8_ATTR T_VNNI
#define I8_SFX vnni
#define I8_DOT64 dot64_vnni
#define I8_SETBIT setbit_vnni
#define I8_HSUM sq_hsum8
#include "lut_i8_kernels.h"

#define F32_TILE_NAME gemm_f32_4_avx512
#define F32_TILE_ATTR T_AVX512
#define F32_TILE_ROW f32_row4_512
#include "lut_f32_tile.h"
#define F32_TILE_NAME gemm_f32_3_avx512
#define F32_TILE_ATTR T_AVX512
#define F32_TILE_ROW f32_row3_512
#include "lut_f32_tile.h"

#endif

// ---------------------------------------------------------------- ARM64 NEON kernels
#ifdef SQ_ARM

// The 16 indices of weights 16g..16g+15 of a 64-weight block (4 bits: 32 bytes at wb, low nibbles
// then high nibbles, g = 0..3).
static INL uint8x16_t idx4_neon(const uint8_t *wb, int g) {
    uint8x16_t v = vld1q_u8(wb + 16 * (g & 1));
    return g < 2 ? vandq_u8(v, vdupq_n_u8(15)) : vshrq_n_u8(v, 4);
}
// The 16 indices of weights 32s + 16h .. 32s + 16h + 15 of a 3-bit 128-weight chunk at wc: bits 1-2
// from the 2-bit plane (byte j >> 2s), bit 0 from the bit plane (bit s, or 4 + s for h = 1).
static INL uint8x16_t idx3_neon(const uint8_t *wc, int s, int h) {
    uint8x16_t lo = vandq_u8(vshlq_u8(vld1q_u8(wc + 16 * h), vdupq_n_s8((int8_t)(1 - 2 * s))), vdupq_n_u8(6));
    uint8x16_t hb = vandq_u8(vshlq_u8(vld1q_u8(wc + 32), vdupq_n_s8((int8_t)-(s + 4 * h))), vdupq_n_u8(1));
    return vorrq_u8(lo, hb);
}
// The 7-bit codes of the 64 weights of activation block b of one row (4 bits: chunk b; 3 bits: half
// b & 1 of chunk b >> 1), looked up in the row's 16-byte code table with tbl.
static INL void sq_lut_codes_neon(int bits, const uint8_t *row, int64_t b, uint8x16_t tab, int8x16_t c[4]) {
    if (bits == 4) {
        const uint8_t *wb = row + 32 * b;
        for (int g = 0; g < 4; g++) c[g] = vreinterpretq_s8_u8(vqtbl1q_u8(tab, idx4_neon(wb, g)));
    } else {
        const uint8_t *wc = row + 48 * (b >> 1);
        const int s0 = 2 * (int)(b & 1);
        for (int g = 0; g < 4; g++) c[g] = vreinterpretq_s8_u8(vqtbl1q_u8(tab, idx3_neon(wc, s0 + (g >> 1), g & 1)));
    }
}
// 16 float table entries looked up by 16 indices: the table is held as four byte planes (vld4q_u8
// of the 16 floats: plane p has byte p of every entry), each looked up with one tbl, and the bytes
// zipped back into floats. out[q] holds entries idx[4q..4q+3].
static INL void lut16_neon(uint8x16x4_t P, uint8x16_t idx, float32x4_t out[4]) {
    uint8x16_t b0 = vqtbl1q_u8(P.val[0], idx), b1 = vqtbl1q_u8(P.val[1], idx);
    uint8x16_t b2 = vqtbl1q_u8(P.val[2], idx), b3 = vqtbl1q_u8(P.val[3], idx);
    uint16x8_t l01 = vreinterpretq_u16_u8(vzip1q_u8(b0, b1)), h01 = vreinterpretq_u16_u8(vzip2q_u8(b0, b1));
    uint16x8_t l23 = vreinterpretq_u16_u8(vzip1q_u8(b2, b3)), h23 = vreinterpretq_u16_u8(vzip2q_u8(b2, b3));
    out[0] = vreinterpretq_f32_u16(vzip1q_u16(l01, l23));
    out[1] = vreinterpretq_f32_u16(vzip2q_u16(l01, l23));
    out[2] = vreinterpretq_f32_u16(vzip1q_u16(h01, h23));
    out[3] = vreinterpretq_f32_u16(vzip2q_u16(h01, h23));
}

// Float path, one row for NT tokens (1..4): 16 weights decoded at a time, multiplied into every token.
static INL void f32_row_neon(int bits, const uint8_t *w, const float *lut, const float *x, int64_t ldx, float *y,
                             int64_t ldy, int64_t kpad, const int NT) {
    const uint8x16x4_t P = vld4q_u8((const uint8_t *)lut);
    float32x4_t acc[4][2];
    for (int t = 0; t < 4; t++) acc[t][0] = acc[t][1] = vdupq_n_f32(0);
    for (int64_t c = 0; c < kpad; c += 64) {
        for (int g = 0; g < 4; g++) {
            // weights c + 16g .. c + 16g + 15
            uint8x16_t idx = bits == 4 ? idx4_neon(w + c / 2, g)
                                       : idx3_neon(w + c / 128 * 48, (int)((c & 64) >> 5) + (g >> 1), g & 1);
            float32x4_t wv[4];
            lut16_neon(P, idx, wv);
            for (int t = 0; t < NT; t++) {
                const float *xs = x + t * ldx + c + 16 * g;
                acc[t][0] = vfmaq_f32(acc[t][0], wv[0], vld1q_f32(xs));
                acc[t][1] = vfmaq_f32(acc[t][1], wv[1], vld1q_f32(xs + 4));
                acc[t][0] = vfmaq_f32(acc[t][0], wv[2], vld1q_f32(xs + 8));
                acc[t][1] = vfmaq_f32(acc[t][1], wv[3], vld1q_f32(xs + 12));
            }
        }
    }
    for (int t = 0; t < NT; t++) y[t * ldy] = sq_hsum4(vaddq_f32(acc[t][0], acc[t][1]));
}
static INL void f32_row4_neon(const uint8_t *w, const float *lut, const float *x, int64_t ldx, float *y, int64_t ldy,
                              int64_t kpad, const int NT) {
    f32_row_neon(4, w, lut, x, ldx, y, ldy, kpad, NT);
}
static INL void f32_row3_neon(const uint8_t *w, const float *lut, const float *x, int64_t ldx, float *y, int64_t ldy,
                              int64_t kpad, const int NT) {
    f32_row_neon(3, w, lut, x, ldx, y, ldy, kpad, NT);
}
#define F32_TILE_NAME gemm_f32_4_neon
#define F32_TILE_ATTR T_NEON
#define F32_TILE_ROW f32_row4_neon
#include "lut_f32_tile.h"
#define F32_TILE_NAME gemm_f32_3_neon
#define F32_TILE_ATTR T_NEON
#define F32_TILE_ROW f32_row3_neon
#include "lut_f32_tile.h"

static void dequantize_row_neon(int bits, const uint8_t *row, const float *tab, int64_t kpad, float *out) {
    const uint8x16x4_t P = vld4q_u8((const uint8_t *)tab);
    for (int64_t c = 0; c < kpad; c += 64)
        for (int g = 0; g < 4; g++) {
            uint8x16_t idx = bits == 4 ? idx4_neon(row + c / 2, g)
                                       : idx3_neon(row + c / 128 * 48, (int)((c & 64) >> 5) + (g >> 1), g & 1);
            float32x4_t wv[4];
            lut16_neon(P, idx, wv);
            for (int q = 0; q < 4; q++) vst1q_f32(out + c + 16 * g + 4 * q, wv[q]);
        }
}

// Full blocks of 64 as the scalar code (round to nearest even, clamp to -127..127), the rest scalar.
static void quantize_x_neon(const float *x, int64_t k, int64_t kpad, int8_t *xq, float *d) {
    int64_t full = k / QB;
    for (int64_t b = 0; b < full; b++) {
        const float *xb = x + b * QB;
        float32x4_t v[16], m = vdupq_n_f32(0);
        for (int q = 0; q < 16; q++) {
            v[q] = vld1q_f32(xb + 4 * q);
            m = vmaxq_f32(m, vabsq_f32(v[q]));
        }
        float amax = vmaxvq_f32(m);
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        for (int q = 0; q < 4; q++) {
            int16x8_t lo = vcombine_s16(vqmovn_s32(vcvtnq_s32_f32(vmulq_n_f32(v[4 * q], id))),
                                        vqmovn_s32(vcvtnq_s32_f32(vmulq_n_f32(v[4 * q + 1], id))));
            int16x8_t hi = vcombine_s16(vqmovn_s32(vcvtnq_s32_f32(vmulq_n_f32(v[4 * q + 2], id))),
                                        vqmovn_s32(vcvtnq_s32_f32(vmulq_n_f32(v[4 * q + 3], id))));
            int8x16_t p = vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi));
            vst1q_s8(xq + b * QB + 16 * q, vmaxq_s8(p, vdupq_n_s8(-127)));
        }
    }
    if (full * QB < kpad) quantize_x_scalar(x + full * QB, k - full * QB, kpad - full * QB, xq + full * QB, d + full);
}

// int8 dot of 16 codes (0..127) with 16 activations (-127..127), plain NEON: widening multiplies
// into int16 (a pair of products stays below 2^15) then pairwise widening adds into int32.
static INL int32x4_t dot16_neon(int32x4_t acc, int8x16_t c, int8x16_t x) {
    int16x8_t p = vmull_s8(vget_low_s8(c), vget_low_s8(x));
    p = vmlal_high_s8(p, c, x);
    return vpadalq_s16(acc, p);
}
// The same with the dot-product extension: one sdot per 16 products.
T_DOTPROD static INL int32x4_t dot16_dotprod(int32x4_t acc, int8x16_t c, int8x16_t x) { return vdotq_s32(acc, c, x); }

#define I8N_ATTR T_NEON
#define I8N_SFX neon
#define I8N_DOT dot16_neon
#include "lut_i8_neon.h"
#define I8N_ATTR T_DOTPROD
#define I8N_SFX dotprod
#define I8N_DOT dot16_dotprod
#include "lut_i8_neon.h"

// int8 matrix multiply: smmla multiplies a 2x8 block of codes (rows i, i + 1) by a 2x8 block of
// activations (tokens t, t + 1) into the 2x2 int32 block [it, i t+1, i+1 t, i+1 t+1]; two per 16
// weights cover four row-token products. Row pairs x token pairs; odd rows or tokens go to dotprod.
T_I8MM static INL void i8_tile_i8mm(int bits, const uint8_t *w, int64_t rb, const uint8_t *qt, const float *scale,
                                    const float *offset, const int8_t *xq, const float *d, const float *sx,
                                    float *y, int64_t ldy, int64_t kpad) {
    const int64_t nb = kpad / QB;
    const uint8x16_t tab0 = vld1q_u8(qt), tab1 = vld1q_u8(qt + 16);
    float32x4_t s = vdupq_n_f32(0);
    for (int64_t b = 0; b < nb; b++) {
        int8x16_t c0[4], c1[4];
        sq_lut_codes_neon(bits, w, b, tab0, c0);
        sq_lut_codes_neon(bits, w + rb, b, tab1, c1);
        const int8_t *x0 = xq + 64 * b, *x1 = xq + kpad + 64 * b;
        int32x4_t a = vdupq_n_s32(0);
        for (int g = 0; g < 4; g++) {
            int64x2_t u = vreinterpretq_s64_s8(vld1q_s8(x0 + 16 * g)), v = vreinterpretq_s64_s8(vld1q_s8(x1 + 16 * g));
            int64x2_t p = vreinterpretq_s64_s8(c0[g]), q = vreinterpretq_s64_s8(c1[g]);
            a = vmmlaq_s32(a, vreinterpretq_s8_s64(vzip1q_s64(p, q)), vreinterpretq_s8_s64(vzip1q_s64(u, v)));
            a = vmmlaq_s32(a, vreinterpretq_s8_s64(vzip2q_s64(p, q)), vreinterpretq_s8_s64(vzip2q_s64(u, v)));
        }
        // lanes: (row 0, token 0), (row 0, token 1), (row 1, token 0), (row 1, token 1)
        const float32x2_t dt = {d[b], d[nb + b]};
        s = vfmaq_f32(s, vcvtq_f32_s32(a), vcombine_f32(dt, dt));
    }
    float r[4];
    vst1q_f32(r, s);
    y[0] = r[0] * scale[0] + offset[0] * sx[0];
    y[ldy] = r[1] * scale[0] + offset[0] * sx[1];
    y[1] = r[2] * scale[1] + offset[1] * sx[0];
    y[ldy + 1] = r[3] * scale[1] + offset[1] * sx[1];
}
T_I8MM static void gemm_i8_i8mm(int bits, const uint8_t *w, const uint8_t *qt, const float *scale, const float *offset,
                                const int8_t *xq, const float *d, const float *sx, int64_t m, float *y, int64_t ldy,
                                int64_t kpad, int64_t rb, int64_t r0, int64_t r1) {
    const int64_t nb = kpad / QB, m2 = m & ~(int64_t)1, r2 = r0 + ((r1 - r0) & ~(int64_t)1);
    for (int64_t r = r0; r < r2; r += 2)
        for (int64_t t = 0; t < m2; t += 2)
            i8_tile_i8mm(bits, w + r * rb, rb, qt + r * 16, scale + r, offset + r, xq + t * kpad, d + t * nb, sx + t,
                         y + t * ldy + r, ldy, kpad);
    if (m2 < m) gemm_i8_dotprod(bits, w, qt, scale, offset, xq + m2 * kpad, d + m2 * nb, sx + m2, 1, y + m2 * ldy, ldy, kpad, rb, r0, r2);
    if (r2 < r1) gemm_i8_dotprod(bits, w, qt, scale, offset, xq, d, sx, m, y, ldy, kpad, rb, r2, r1);
}
#endif

#ifdef SQ_X86
static int has_vnni(void) {
    return sq_isa() >= SQ_ISA_AVX512 && (sq_cpu_features() & SQ_CPU_AVX512VNNI) != 0;
}
#endif

// ---------------------------------------------------------------- entry points
/// A float-LUT tile variant: (w, lut, x, ldx, m, y, ldy, kpad, row bytes, r0, r1).
typedef void (*lut_f32_tile)(const uint8_t *, const float *, const float *, int64_t, int64_t, float *, int64_t,
                             int64_t, int64_t, int64_t, int64_t);

// The best float-LUT tile for `bits` on this CPU, or NULL for the scalar reference.
static lut_f32_tile pick_f32_tile(int bits) {
#ifdef SQ_X86
    if (sq_isa() >= SQ_ISA_AVX512) return bits == 4 ? gemm_f32_4_avx512 : gemm_f32_3_avx512;
    if (sq_isa() >= SQ_ISA_AVX2) return bits == 4 ? gemm_f32_4_avx2 : gemm_f32_3_avx2;
#endif
#ifdef SQ_ARM
    if (sq_isa() >= SQ_ISA_NEON) return bits == 4 ? gemm_f32_4_neon : gemm_f32_3_neon;
#endif
    (void)bits;
    return NULL;
}

void sq_lut_gemm_f32(int bits, const uint8_t *w, const float *lut, const float *x, int64_t ldx, int64_t m,
                     float *y, int64_t ldy, int64_t kpad, int64_t r0, int64_t r1) {
    if (bits != 3 && bits != 4) return;
    lut_f32_tile tile = pick_f32_tile(bits);
    if (tile) tile(w, lut, x, ldx, m, y, ldy, kpad, sq_lut_row_bytes(bits, kpad), r0, r1);
    else gemm_f32_scalar(bits, w, lut, x, ldx, m, y, ldy, kpad, r0, r1);
}

void sq_lut_gemv_f32(int bits, const uint8_t *w, const float *lut, const float *x, float *y, int64_t kpad,
                     int64_t r0, int64_t r1) {
    sq_lut_gemm_f32(bits, w, lut, x, kpad, 1, y, 0, kpad, r0, r1);
}

void sq_lut_gemm_i8(int bits, const uint8_t *w, const uint8_t *qt, const float *scale, const float *offset,
                    const int8_t *xq, const float *d, const float *sx, int64_t m, float *y, int64_t ldy,
                    int64_t kpad, int64_t r0, int64_t r1) {
    if (bits != 3 && bits != 4) return;
#ifdef SQ_X86
    if (has_vnni()) {
        int64_t rb = sq_lut_row_bytes(bits, kpad);
        if (bits == 4) gemm_i8_4_vnni(w, qt, scale, offset, xq, d, sx, m, y, ldy, kpad, rb, r0, r1);
        else gemm_i8_3_vnni(w, qt, scale, offset, xq, d, sx, m, y, ldy, kpad, rb, r0, r1);
        return;
    }
    if (sq_isa() >= SQ_ISA_AVX2) {
        int64_t rb = sq_lut_row_bytes(bits, kpad);
        if (bits == 4) gemm_i8_4_avx2(w, qt, scale, offset, xq, d, sx, m, y, ldy, kpad, rb, r0, r1);
        else gemm_i8_3_avx2(w, qt, scale, offset, xq, d, sx, m, y, ldy, kpad, rb, r0, r1);
        return;
    }
#endif
#ifdef SQ_ARM
    int isa = sq_isa();
    if (isa >= SQ_ISA_NEON) {
        int64_t rb = sq_lut_row_bytes(bits, kpad);
        if (isa >= SQ_ISA_I8MM && m > 1) gemm_i8_i8mm(bits, w, qt, scale, offset, xq, d, sx, m, y, ldy, kpad, rb, r0, r1);
        else if (isa >= SQ_ISA_DOTPROD) gemm_i8_dotprod(bits, w, qt, scale, offset, xq, d, sx, m, y, ldy, kpad, rb, r0, r1);
        else gemm_i8_neon(bits, w, qt, scale, offset, xq, d, sx, m, y, ldy, kpad, rb, r0, r1);
        return;
    }
#endif
    gemm_i8_scalar(bits, w, qt, scale, offset, xq, d, sx, m, y, ldy, kpad, r0, r1);
}

void sq_lut_quantize_task(void *job, int64_t task, int thread) {
    (void)thread;
    const sq_lut_quantize_job *j = (const sq_lut_quantize_job *)job;
    sq_lut_quantize_x(j->x + task * j->ldx, j->k, j->kpad, j->xq + task * j->kpad, j->d + task * (j->kpad / QB),
                      j->sx + task);
}

void sq_lut_i8_task(void *job, int64_t task, int thread) {
    (void)thread;
    const sq_lut_i8_job *j = (const sq_lut_i8_job *)job;
    int64_t r0 = task * j->block, r1 = r0 + j->block < j->rows ? r0 + j->block : j->rows;
    if (r0 >= r1) return;
    sq_lut_gemm_i8(j->bits, j->w, j->qt, j->scale, j->offset, j->xq, j->d, j->sx, j->m, j->y, j->ldy, j->kpad, r0, r1);
    if (j->sparse) sq_csr_spmm_range(j->sparse, j->x, j->ldx, j->m, j->y, j->ldy, r0, r1);
}

void sq_lut_gemv_i8(int bits, const uint8_t *w, const uint8_t *qt, const float *scale, const float *offset,
                    const int8_t *xq, const float *d, const float *sx, float *y, int64_t kpad, int64_t r0, int64_t r1) {
    sq_lut_gemm_i8(bits, w, qt, scale, offset, xq, d, sx, 1, y, 0, kpad, r0, r1);
}

const char *sq_lut_variant(void) {
#ifdef SQ_X86
    if (has_vnni()) return "float avx512, int8 avx512vnni";
    if (sq_isa() >= SQ_ISA_AVX512) return "float avx512, int8 avx2";
    if (sq_isa() >= SQ_ISA_AVX2) return "float avx2, int8 avx2";
#endif
#ifdef SQ_ARM
    if (sq_isa() >= SQ_ISA_I8MM) return "float neon, int8 i8mm";
    if (sq_isa() >= SQ_ISA_DOTPROD) return "float neon, int8 dotprod";
    if (sq_isa() >= SQ_ISA_NEON) return "float neon, int8 neon";
#endif
    return "float scalar, int8 scalar";
}
