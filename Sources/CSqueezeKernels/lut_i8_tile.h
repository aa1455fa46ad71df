// Include template (no include guard): the int8 row-range tiles of one variant and bit width.
// lut_i8_kernels.h includes it after defining TILE_NAME (the function), TILE_ROW (chain-order row,
// NT tokens), TILE_ROW2 (chain-order row pair, one token), TILE_ROWP (pair-order row, NT tokens) and
// TILE_PF (1: prefetch pair-order rows 4 ahead in software); this file undefines them at its end.
#define TILE_PAIR SQ_CAT(TILE_NAME, pair)
#define TILE_BLOCKS SQ_CAT(TILE_NAME, blocks)

#define TILE_PARAMS                                                                                         \
    const uint8_t *w, const uint8_t *qt, const float *scale, const float *offset, const int8_t *xq, const float *d, \
        const float *sx, int64_t m, float *y, int64_t ldy, int64_t kpad, int64_t rb, int64_t r0, int64_t r1
// One row kernel call for row r and tokens [t, t + nt).
#define TILE_CALL(row, r, t, nt)                                                                            \
    row(w + (r) * rb, qt + (r) * 16, scale[r], offset[r], xq + (t) * kpad, d + (t) * (kpad / QB), sx + (t), \
        y + (t) * ldy + (r), ldy, kpad, nt)
// Fetches the row 4 rows ahead of r (no faults) at the start of the first token block.
#define TILE_PREFETCH(r, tb)                                                                                \
    if ((tb) == 0)                                                                                          \
        for (int64_t o = 0; o < rb; o += 64) _mm_prefetch((const char *)(w + ((r) + 4) * rb + o), _MM_HINT_T0)

// Pair-order rows [r0, r1) for m tokens, 4 tokens per row pass. The hardware prefetchers follow these
// long rows; software prefetch only helps 3 bits.
#define BR_NAME TILE_PAIR
#define BR_ATTR I8_ATTR
#define BR_PARAMS TILE_PARAMS
#define BR_NT 4
#if TILE_PF
#define BR_ROW_START(r, tb) TILE_PREFETCH(r, tb)
#else
#define BR_ROW_START(r, tb) (void)0
#endif
#define BR_ROW(r, t, nt) TILE_CALL(TILE_ROWP, r, t, nt)
#include "lut_blocked_rows.h"

// Chain-order rows [r0, r1) for several tokens, 8 tokens per row pass.
#define BR_NAME TILE_BLOCKS
#define BR_ATTR I8_ATTR
#define BR_PARAMS TILE_PARAMS
#define BR_NT 8
#define BR_ROW_START(r, tb) TILE_PREFETCH(r, tb)
#define BR_ROW(r, t, nt) TILE_CALL(TILE_ROW, r, t, nt)
#include "lut_blocked_rows.h"

// Rows [r0, r1) for m tokens, in the matrix's order: longer rows go to the pair-order tile; in chain
// order one token takes rows in pairs (TILE_ROW2), one from each half of the range; several tokens
// go by row blocks x token blocks, each row for 8 tokens at a time, then the rest.
I8_ATTR static void TILE_NAME(TILE_PARAMS) {
    if (kpad > SQ_I8_CHAIN_MAX_K) {
        TILE_PAIR(w, qt, scale, offset, xq, d, sx, m, y, ldy, kpad, rb, r0, r1);
        return;
    }
    if (m == 1) {
        // Rows j and j + h from the two halves of the range: two far-apart sequential streams, which
        // the hardware prefetchers follow better than adjacent rows.
        const int64_t h = (r1 - r0) / 2;
        for (int64_t r = r0; r < r0 + h; r++) {
            const uint8_t *wr = w + r * rb;
            // Rows are short (a few hundred bytes): fetch the ones 4 rows ahead. No faults.
            for (int64_t o = 0; o < rb; o += 64) {
                _mm_prefetch((const char *)(wr + 4 * rb + o), _MM_HINT_T0);
                _mm_prefetch((const char *)(wr + (h + 4) * rb + o), _MM_HINT_T0);
            }
            TILE_ROW2(wr, h * rb, qt + r * 16, h * 16, scale + r, offset + r, h, xq, d, sx[0], y + r, kpad);
        }
        if ((r1 - r0) & 1) {
            int64_t r = r1 - 1;
            TILE_ROW(w + r * rb, qt + r * 16, scale[r], offset[r], xq, d, sx, y + r, ldy, kpad, 1);
        }
        return;
    }
    TILE_BLOCKS(w, qt, scale, offset, xq, d, sx, m, y, ldy, kpad, rb, r0, r1);
}

#undef TILE_PAIR
#undef TILE_BLOCKS
#undef TILE_PARAMS
#undef TILE_CALL
#undef TILE_PREFETCH
#undef TILE_NAME
#undef TILE_ROW
#undef TILE_ROW2
#undef TILE_ROWP
#undef TILE_PF
