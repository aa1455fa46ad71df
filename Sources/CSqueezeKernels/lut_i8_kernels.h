// Include template (no include guard): the int8 LUT kernels of one instruction set, as readable
// functions. lut.c includes it once per variant after defining
//   I8_ATTR                 the variant's target attribute (T_AVX2, T_VNNI);
//   I8_SFX                  the name suffix: i8_row4_<sfx>, gemm_i8_4_<sfx>, gemm_i8_4_<sfx>_pair...;
//   I8_DOT64(tv0, tv1, xs)  the dot product of one 64-activation block (8 int32 partial sums);
//   I8_SETBIT(lo, hb, M)    the 3-bit index merge (bit 0 from the bit plane hb, mask M);
//   I8_HSUM(v)              the sum of the 8 lanes of v,
// and this file undefines them at its end. Summation orders (chain, pair): docs/kernels.md.
// 4 bits: a 64-weight chunk (32 bytes, low nibbles then high nibbles) is one activation block.
// 3 bits: a 128-weight chunk (48 bytes) is two activation blocks.
#define I8_FN(name) SQ_CAT(name, I8_SFX)

// Block B of a 4-bit row into the accumulators acc[t][S] of NT tokens. A macro, so that S is a
// constant (a variable index puts the accumulators on the stack). Expects w, tab, m0f, xq, d, nb,
// kpad, acc and NT in scope.
#define I8_BLOCK4(B, S)                                                                              \
    do {                                                                                             \
        __m256i v = _mm256_load_si256((const __m256i *)(w + 32 * (B)));                              \
        __m256i tv0 = _mm256_shuffle_epi8(tab, _mm256_and_si256(v, m0f));                            \
        __m256i tv1 = _mm256_shuffle_epi8(tab, _mm256_and_si256(_mm256_srli_epi16(v, 4), m0f));      \
        for (int t = 0; t < NT; t++)                                                                 \
            acc[t][S] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(I8_DOT64(tv0, tv1, xq + t * kpad + 64 * (B))), \
                                        _mm256_set1_ps(d[t * nb + (B)]), acc[t][S]);                 \
    } while (0)

I8_ATTR static INL void I8_FN(i8_row4)(const uint8_t *w, const uint8_t *qt, float sc, float off,
                                       const int8_t *xq, const float *d, const float *sx, float *y,
                                       int64_t ldy, int64_t kpad, const int NT) {
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qt));
    const __m256i m0f = _mm256_set1_epi8(15);
    const int64_t nb = kpad / QB;
    __m256 acc[8];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i v = _mm256_load_si256((const __m256i *)(w + 32 * b));
        __m256i tv0 = _mm256_shuffle_epi8(tab, _mm256_and_si256(v, m0f));
        __m256i tv1 = _mm256_shuffle_epi8(tab, _mm256_and_si256(_mm256_srli_epi16(v, 4), m0f));
        for (int t = 0; t < NT; t++)
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(I8_DOT64(tv0, tv1, xq + t * kpad + 64 * b)),
                                     _mm256_set1_ps(d[t * nb + b]), acc[t]);
    }
    for (int t = 0; t < NT; t++) y[t * ldy] = I8_HSUM(acc[t]) * sc + off * sx[t];
}
// One token, rows r and r + dr (packed rows rb bytes apart, tables dq bytes apart).
I8_ATTR static INL void I8_FN(i8_rows4x2)(const uint8_t *w, int64_t rb, const uint8_t *qt, int64_t dq,
                                          const float *sc, const float *off, int64_t dr, const int8_t *xq,
                                          const float *d, float sx, float *y, int64_t kpad) {
    const __m256i tab0 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qt));
    const __m256i tab1 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(qt + dq)));
    const __m256i m0f = _mm256_set1_epi8(15);
    const int64_t nb = kpad / QB;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i v0 = _mm256_load_si256((const __m256i *)(w + 32 * b));
        __m256i v1 = _mm256_loadu_si256((const __m256i *)(w + rb + 32 * b));
        __m256 db = _mm256_set1_ps(d[b]);
        __m256i p0 = I8_DOT64(_mm256_shuffle_epi8(tab0, _mm256_and_si256(v0, m0f)),
                           _mm256_shuffle_epi8(tab0, _mm256_and_si256(_mm256_srli_epi16(v0, 4), m0f)), xq + 64 * b);
        __m256i p1 = I8_DOT64(_mm256_shuffle_epi8(tab1, _mm256_and_si256(v1, m0f)),
                           _mm256_shuffle_epi8(tab1, _mm256_and_si256(_mm256_srli_epi16(v1, 4), m0f)), xq + 64 * b);
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), db, a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), db, a1);
    }
    y[0] = I8_HSUM(a0) * sc[0] + off[0] * sx;
    y[dr] = I8_HSUM(a1) * sc[dr] + off[dr] * sx;
}
// The 3-bit codes of one 128-weight chunk at wc: tv[s] for weights 32s..32s+31.
I8_ATTR static INL void I8_FN(i8_codes3)(const uint8_t *wc, __m256i tab, __m256i tv[4]) {
    const __m256i m06 = _mm256_set1_epi8(6);
    __m256i v = _mm256_loadu_si256((const __m256i *)wc);
    __m256i hb = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(wc + 32)));
    for (int s = 0; s < 4; s++) {
        __m256i M = _mm256_set_m128i(_mm_set1_epi8((char)(1 << (4 + s))), _mm_set1_epi8((char)(1 << s)));
        __m256i lo = _mm256_and_si256(s == 0 ? _mm256_slli_epi16(v, 1) : _mm256_srli_epi16(v, 2 * s - 1), m06);
        tv[s] = _mm256_shuffle_epi8(tab, I8_SETBIT(lo, hb, M));
    }
}
I8_ATTR static INL void I8_FN(i8_row3)(const uint8_t *w, const uint8_t *qt, float sc, float off,
                                       const int8_t *xq, const float *d, const float *sx, float *y,
                                       int64_t ldy, int64_t kpad, const int NT) {
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qt));
    const int64_t nb = kpad / QB;
    __m256 acc[8];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t c = 0; c < kpad / 128; c++) {
        __m256i tv[4];
        I8_FN(i8_codes3)(w + 48 * c, tab, tv);
        for (int t = 0; t < NT; t++) {
            const int8_t *xs = xq + t * kpad + 128 * c;
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(I8_DOT64(tv[0], tv[1], xs)),
                                     _mm256_set1_ps(d[t * nb + 2 * c]), acc[t]);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(I8_DOT64(tv[2], tv[3], xs + 64)),
                                     _mm256_set1_ps(d[t * nb + 2 * c + 1]), acc[t]);
        }
    }
    for (int t = 0; t < NT; t++) y[t * ldy] = I8_HSUM(acc[t]) * sc + off * sx[t];
}
I8_ATTR static INL void I8_FN(i8_rows3x2)(const uint8_t *w, int64_t rb, const uint8_t *qt, int64_t dq,
                                          const float *sc, const float *off, int64_t dr, const int8_t *xq,
                                          const float *d, float sx, float *y, int64_t kpad) {
    const __m256i tab0 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qt));
    const __m256i tab1 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(qt + dq)));
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (int64_t c = 0; c < kpad / 128; c++) {
        __m256i t0[4], t1[4];
        I8_FN(i8_codes3)(w + 48 * c, tab0, t0);
        I8_FN(i8_codes3)(w + rb + 48 * c, tab1, t1);
        const int8_t *xs = xq + 128 * c;
        __m256 d0 = _mm256_set1_ps(d[2 * c]), d1 = _mm256_set1_ps(d[2 * c + 1]);
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(I8_DOT64(t0[0], t0[1], xs)), d0, a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(I8_DOT64(t1[0], t1[1], xs)), d0, a1);
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(I8_DOT64(t0[2], t0[3], xs + 64)), d1, a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(I8_DOT64(t1[2], t1[3], xs + 64)), d1, a1);
    }
    y[0] = I8_HSUM(a0) * sc[0] + off[0] * sx;
    y[dr] = I8_HSUM(a1) * sc[dr] + off[dr] * sx;
}
// Pair order, 4 bits.
I8_ATTR static INL void I8_FN(i8_row4p)(const uint8_t *w, const uint8_t *qt, float sc, float off,
                                        const int8_t *xq, const float *d, const float *sx, float *y,
                                        int64_t ldy, int64_t kpad, const int NT) {
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qt));
    const __m256i m0f = _mm256_set1_epi8(15);
    const int64_t nb = kpad / QB;
    __m256 acc[4][2];
    for (int t = 0; t < NT; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        I8_BLOCK4(b, 0);
        I8_BLOCK4(b + 1, 1);
    }
    if (b < nb) I8_BLOCK4(b, 0);
    for (int t = 0; t < NT; t++) y[t * ldy] = I8_HSUM(_mm256_add_ps(acc[t][0], acc[t][1])) * sc + off * sx[t];
}
// Pair order, 3 bits: a chunk's first block into acc[t][0], its second into acc[t][1].
I8_ATTR static INL void I8_FN(i8_row3p)(const uint8_t *w, const uint8_t *qt, float sc, float off,
                                        const int8_t *xq, const float *d, const float *sx, float *y,
                                        int64_t ldy, int64_t kpad, const int NT) {
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qt));
    const int64_t nb = kpad / QB;
    __m256 acc[4][2];
    for (int t = 0; t < NT; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    for (int64_t c = 0; c < kpad / 128; c++) {
        __m256i tv[4];
        I8_FN(i8_codes3)(w + 48 * c, tab, tv);
        for (int t = 0; t < NT; t++) {
            const int8_t *xs = xq + t * kpad + 128 * c;
            acc[t][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(I8_DOT64(tv[0], tv[1], xs)),
                                        _mm256_set1_ps(d[t * nb + 2 * c]), acc[t][0]);
            acc[t][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(I8_DOT64(tv[2], tv[3], xs + 64)),
                                        _mm256_set1_ps(d[t * nb + 2 * c + 1]), acc[t][1]);
        }
    }
    for (int t = 0; t < NT; t++) y[t * ldy] = I8_HSUM(_mm256_add_ps(acc[t][0], acc[t][1])) * sc + off * sx[t];
}

// The row-range tiles, 4 and 3 bits (only the 3-bit pair tile prefetches in software).
#define TILE_NAME I8_FN(gemm_i8_4)
#define TILE_ROW I8_FN(i8_row4)
#define TILE_ROW2 I8_FN(i8_rows4x2)
#define TILE_ROWP I8_FN(i8_row4p)
#define TILE_PF 0
#include "lut_i8_tile.h"
#define TILE_NAME I8_FN(gemm_i8_3)
#define TILE_ROW I8_FN(i8_row3)
#define TILE_ROW2 I8_FN(i8_rows3x2)
#define TILE_ROWP I8_FN(i8_row3p)
#define TILE_PF 1
#include "lut_i8_tile.h"

#undef I8_BLOCK4
#undef I8_FN
#undef I8_ATTR
#undef I8_SFX
#undef I8_DOT64
#undef I8_SETBIT
#undef I8_HSUM
