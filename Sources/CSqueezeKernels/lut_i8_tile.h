// Include template (no include guard): the int8 row-range tiles of one variant and bit width.
// lut_i8_kernels.h includes it after defining TILE_NAME (the function), TILE_ROW (chain-order row,
// NT tokens), TILE_ROW2 (chain-order row pair, one token), TILE_ROWP (pair-order row, NT tokens) and
// TILE_PF (1: prefetch pair-order rows 4 ahead in software); this file undefines them at its end.
#define TILE_PAIR SQ_CAT(TILE_NAME, pair)

// Pair-order rows [r0, r1) for m tokens: row blocks x token blocks, each row for 4 tokens at a time,
// then the rest. The hardware prefetchers follow these long rows; software prefetch only helps 3 bits.
I8_ATTR static void TILE_PAIR(const uint8_t *w, const uint8_t *qt, const float *scale, const float *offset,
                              const int8_t *xq, const float *d, const float *sx, int64_t m, float *y,
                              int64_t ldy, int64_t kpad, int64_t rb, int64_t r0, int64_t r1) {
    const int64_t nb = kpad / QB;
    for (int64_t rb0 = r0; rb0 < r1; rb0 += SQ_RB) {
        int64_t rb1 = r1 - rb0 < SQ_RB ? r1 : rb0 + SQ_RB;
        for (int64_t tb = 0; tb < m; tb += SQ_TB) {
            int64_t te = m - tb < SQ_TB ? m : tb + SQ_TB;
            for (int64_t r = rb0; r < rb1; r++) {
                const uint8_t *wr = w + r * rb;
                const uint8_t *tr = qt + r * 16;
                if (TILE_PF && tb == 0)
                    for (int64_t o = 0; o < rb; o += 64) _mm_prefetch((const char *)(wr + 4 * rb + o), _MM_HINT_T0);
                int64_t t = tb;
                for (; t + 4 <= te; t += 4)
                    TILE_ROWP(wr, tr, scale[r], offset[r], xq + t * kpad, d + t * nb, sx + t, y + t * ldy + r, ldy, kpad, 4);
                switch (te - t) {
                case 3: TILE_ROWP(wr, tr, scale[r], offset[r], xq + t * kpad, d + t * nb, sx + t, y + t * ldy + r, ldy, kpad, 3); break;
                case 2: TILE_ROWP(wr, tr, scale[r], offset[r], xq + t * kpad, d + t * nb, sx + t, y + t * ldy + r, ldy, kpad, 2); break;
                case 1: TILE_ROWP(wr, tr, scale[r], offset[r], xq + t * kpad, d + t * nb, sx + t, y + t * ldy + r, ldy, kpad, 1); break;
                default: break;
                }
            }
        }
    }
}

// Rows [r0, r1) for m tokens, in the matrix's order: longer rows go to the pair-order tile; in chain
// order one token takes rows in pairs (TILE_ROW2), one from each half of the range; several tokens
// go by row blocks x token blocks, each row for 8 tokens at a time, then the rest.
I8_ATTR static void TILE_NAME(const uint8_t *w, const uint8_t *qt, const float *scale, const float *offset,
                              const int8_t *xq, const float *d, const float *sx, int64_t m, float *y,
                              int64_t ldy, int64_t kpad, int64_t rb, int64_t r0, int64_t r1) {
    if (kpad > SQ_I8_CHAIN_MAX_K) {
        TILE_PAIR(w, qt, scale, offset, xq, d, sx, m, y, ldy, kpad, rb, r0, r1);
        return;
    }
    const int64_t nb = kpad / QB;
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
    for (int64_t rb0 = r0; rb0 < r1; rb0 += SQ_RB) {
        int64_t rb1 = r1 - rb0 < SQ_RB ? r1 : rb0 + SQ_RB;
        for (int64_t tb = 0; tb < m; tb += SQ_TB) {
            int64_t te = m - tb < SQ_TB ? m : tb + SQ_TB;
            for (int64_t r = rb0; r < rb1; r++) {
                const uint8_t *wr = w + r * rb;
                const uint8_t *tr = qt + r * 16;
                if (tb == 0)
                    for (int64_t o = 0; o < rb; o += 64) _mm_prefetch((const char *)(wr + 4 * rb + o), _MM_HINT_T0);
                int64_t t = tb;
                for (; t + 8 <= te; t += 8)
                    TILE_ROW(wr, tr, scale[r], offset[r], xq + t * kpad, d + t * nb, sx + t, y + t * ldy + r, ldy, kpad, 8);
                switch (te - t) {
                case 7: TILE_ROW(wr, tr, scale[r], offset[r], xq + t * kpad, d + t * nb, sx + t, y + t * ldy + r, ldy, kpad, 7); break;
                case 6: TILE_ROW(wr, tr, scale[r], offset[r], xq + t * kpad, d + t * nb, sx + t, y + t * ldy + r, ldy, kpad, 6); break;
                case 5: TILE_ROW(wr, tr, scale[r], offset[r], xq + t * kpad, d + t * nb, sx + t, y + t * ldy + r, ldy, kpad, 5); break;
                case 4: TILE_ROW(wr, tr, scale[r], offset[r], xq + t * kpad, d + t * nb, sx + t, y + t * ldy + r, ldy, kpad, 4); break;
                case 3: TILE_ROW(wr, tr, scale[r], offset[r], xq + t * kpad, d + t * nb, sx + t, y + t * ldy + r, ldy, kpad, 3); break;
                case 2: TILE_ROW(wr, tr, scale[r], offset[r], xq + t * kpad, d + t * nb, sx + t, y + t * ldy + r, ldy, kpad, 2); break;
                case 1: TILE_ROW(wr, tr, scale[r], offset[r], xq + t * kpad, d + t * nb, sx + t, y + t * ldy + r, ldy, kpad, 1); break;
                default: break;
                }
            }
        }
    }
}

#undef TILE_PAIR
#undef TILE_NAME
#undef TILE_ROW
#undef TILE_ROW2
#undef TILE_ROWP
#undef TILE_PF
