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

// A row's 16-entry int8 table in both 128-bit lanes.
I8_ATTR static INL __m256i I8_FN(i8_table)(const uint8_t *qt) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qt));
}
// The table values of a 4-bit chunk v: *tv0 from the low nibbles, *tv1 from the high nibbles.
I8_ATTR static INL void I8_FN(i8_codes4)(__m256i v, __m256i tab, __m256i *tv0, __m256i *tv1) {
    const __m256i m0f = _mm256_set1_epi8(15);
    *tv0 = _mm256_shuffle_epi8(tab, _mm256_and_si256(v, m0f));
    *tv1 = _mm256_shuffle_epi8(tab, _mm256_and_si256(_mm256_srli_epi16(v, 4), m0f));
}
// acc + dot * db: one activation block's int32 partial sums scaled by its activation scale.
I8_ATTR static INL __m256 I8_FN(i8_fma)(__m256i dot, float db, __m256 acc) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(db), acc);
}
// The outputs of a row pair (rows 0 and dr) from their accumulators.
I8_ATTR static INL void I8_FN(i8_store2)(__m256 a0, __m256 a1, const float *sc, const float *off, int64_t dr,
                                         float sx, float *y) {
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
// Activation blocks per chunk: a 4-bit chunk is 64 weights in 32 bytes (one block), a 3-bit chunk
// 128 weights in 48 bytes (two blocks).
#define I8_BLOCKS(bits) ((bits) == 4 ? 1 : 2)
// The table values of chunk c of the row at w: tv[2j], tv[2j + 1] for block j of the chunk.
I8_ATTR static INL void I8_FN(i8_chunk)(const uint8_t *w, int64_t c, __m256i tab, const int bits, __m256i *tv) {
    if (bits == 4) I8_FN(i8_codes4)(_mm256_loadu_si256((const __m256i *)(w + 32 * c)), tab, &tv[0], &tv[1]);
    else I8_FN(i8_codes3)(w + 48 * c, tab, tv);
}
// Chain order: one row for NT tokens, blocks summed in order into one accumulator per token.
I8_ATTR static INL void I8_FN(i8_row)(const uint8_t *w, const uint8_t *qt, float sc, float off, const int8_t *xq,
                                      const float *d, const float *sx, float *y, int64_t ldy, int64_t kpad,
                                      const int bits, const int NT) {
    const __m256i tab = I8_FN(i8_table)(qt);
    const int64_t nb = kpad / QB;
    __m256 acc[8];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t c = 0; c < nb / I8_BLOCKS(bits); c++) {
        __m256i tv[4];
        I8_FN(i8_chunk)(w, c, tab, bits, tv);
        for (int t = 0; t < NT; t++)
            for (int j = 0; j < I8_BLOCKS(bits); j++) {
                int64_t b = c * I8_BLOCKS(bits) + j;
                acc[t] = I8_FN(i8_fma)(I8_DOT64(tv[2 * j], tv[2 * j + 1], xq + t * kpad + 64 * b), d[t * nb + b], acc[t]);
            }
    }
    for (int t = 0; t < NT; t++) y[t * ldy] = I8_HSUM(acc[t]) * sc + off * sx[t];
}
// Chain order, one token, rows r and r + dr (packed rows rb bytes apart, tables dq bytes apart).
I8_ATTR static INL void I8_FN(i8_rows_x2)(const uint8_t *w, int64_t rb, const uint8_t *qt, int64_t dq,
                                          const float *sc, const float *off, int64_t dr, const int8_t *xq,
                                          const float *d, float sx, float *y, int64_t kpad, const int bits) {
    const __m256i tab0 = I8_FN(i8_table)(qt);
    const __m256i tab1 = I8_FN(i8_table)(qt + dq);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (int64_t c = 0; c < kpad / QB / I8_BLOCKS(bits); c++) {
        __m256i t0[4], t1[4];
        I8_FN(i8_chunk)(w, c, tab0, bits, t0);
        I8_FN(i8_chunk)(w + rb, c, tab1, bits, t1);
        for (int j = 0; j < I8_BLOCKS(bits); j++) {
            int64_t b = c * I8_BLOCKS(bits) + j;
            a0 = I8_FN(i8_fma)(I8_DOT64(t0[2 * j], t0[2 * j + 1], xq + 64 * b), d[b], a0);
            a1 = I8_FN(i8_fma)(I8_DOT64(t1[2 * j], t1[2 * j + 1], xq + 64 * b), d[b], a1);
        }
    }
    I8_FN(i8_store2)(a0, a1, sc, off, dr, sx, y);
}
// Pair order: one row for NT tokens, even blocks summed into acc[t][0] and odd ones into acc[t][1]
// (two dependency chains), added at the end.
I8_ATTR static INL void I8_FN(i8_rowp)(const uint8_t *w, const uint8_t *qt, float sc, float off, const int8_t *xq,
                                       const float *d, const float *sx, float *y, int64_t ldy, int64_t kpad,
                                       const int bits, const int NT) {
    const __m256i tab = I8_FN(i8_table)(qt);
    const int64_t nb = kpad / QB;
    __m256 acc[4][2];
    for (int t = 0; t < NT; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m256i tv[4];
        if (bits == 4) {
            I8_FN(i8_chunk)(w, b, tab, 4, tv);
            I8_FN(i8_chunk)(w, b + 1, tab, 4, tv + 2);
        } else I8_FN(i8_chunk)(w, b / 2, tab, 3, tv);
        for (int t = 0; t < NT; t++) {
            const int8_t *xs = xq + t * kpad + 64 * b;
            acc[t][0] = I8_FN(i8_fma)(I8_DOT64(tv[0], tv[1], xs), d[t * nb + b], acc[t][0]);
            acc[t][1] = I8_FN(i8_fma)(I8_DOT64(tv[2], tv[3], xs + 64), d[t * nb + b + 1], acc[t][1]);
        }
    }
    if (b < nb) {  // an odd block count (4 bits only)
        __m256i tv[4];
        I8_FN(i8_chunk)(w, b, tab, 4, tv);
        for (int t = 0; t < NT; t++)
            acc[t][0] = I8_FN(i8_fma)(I8_DOT64(tv[0], tv[1], xq + t * kpad + 64 * b), d[t * nb + b], acc[t][0]);
    }
    for (int t = 0; t < NT; t++) y[t * ldy] = I8_HSUM(_mm256_add_ps(acc[t][0], acc[t][1])) * sc + off * sx[t];
}

// The row-range tiles, 4 and 3 bits (only the 3-bit pair tile prefetches in software).
#define TILE_NAME I8_FN(gemm_i8_4)
#define TILE_ROW(w, qt, sc, off, xq, d, sx, y, ldy, kpad, nt) I8_FN(i8_row)(w, qt, sc, off, xq, d, sx, y, ldy, kpad, 4, nt)
#define TILE_ROW2(w, rb, qt, dq, sc, off, dr, xq, d, sx, y, kpad) \
    I8_FN(i8_rows_x2)(w, rb, qt, dq, sc, off, dr, xq, d, sx, y, kpad, 4)
#define TILE_ROWP(w, qt, sc, off, xq, d, sx, y, ldy, kpad, nt) I8_FN(i8_rowp)(w, qt, sc, off, xq, d, sx, y, ldy, kpad, 4, nt)
#define TILE_PF 0
#include "lut_i8_tile.h"
#define TILE_NAME I8_FN(gemm_i8_3)
#define TILE_ROW(w, qt, sc, off, xq, d, sx, y, ldy, kpad, nt) I8_FN(i8_row)(w, qt, sc, off, xq, d, sx, y, ldy, kpad, 3, nt)
#define TILE_ROW2(w, rb, qt, dq, sc, off, dr, xq, d, sx, y, kpad) \
    I8_FN(i8_rows_x2)(w, rb, qt, dq, sc, off, dr, xq, d, sx, y, kpad, 3)
#define TILE_ROWP(w, qt, sc, off, xq, d, sx, y, ldy, kpad, nt) I8_FN(i8_rowp)(w, qt, sc, off, xq, d, sx, y, ldy, kpad, 3, nt)
#define TILE_PF 1
#include "lut_i8_tile.h"

#undef I8_FN
#undef I8_BLOCKS
#undef I8_ATTR
#undef I8_SFX
#undef I8_DOT64
#undef I8_SETBIT
#undef I8_HSUM
