// Include template (no include guard): the float-table GEMM tile of one variant and bit width over
// blocked rows and tokens, 4 tokens per row pass. lut.c includes it after defining F32_TILE_NAME,
// F32_TILE_ATTR (the target attribute) and F32_TILE_ROW (the row kernel, NT tokens); this file
// undefines them at its end.
F32_TILE_ATTR static void F32_TILE_NAME(const uint8_t *w, const float *lut, const float *x, int64_t ldx, int64_t m,
                                        float *y, int64_t ldy, int64_t kpad, int64_t rb, int64_t r0, int64_t r1) {
    for (int64_t rb0 = r0; rb0 < r1; rb0 += SQ_RB) {
        int64_t rb1 = r1 - rb0 < SQ_RB ? r1 : rb0 + SQ_RB;
        for (int64_t tb = 0; tb < m; tb += SQ_TB) {
            int64_t te = m - tb < SQ_TB ? m : tb + SQ_TB;
            for (int64_t r = rb0; r < rb1; r++) {
                const uint8_t *wr = w + r * rb;
                const float *tr = lut + r * 16;
                int64_t t = tb;
                for (; t + 4 <= te; t += 4) F32_TILE_ROW(wr, tr, x + t * ldx, ldx, y + t * ldy + r, ldy, kpad, 4);
                switch (te - t) {
                case 3: F32_TILE_ROW(wr, tr, x + t * ldx, ldx, y + t * ldy + r, ldy, kpad, 3); break;
                case 2: F32_TILE_ROW(wr, tr, x + t * ldx, ldx, y + t * ldy + r, ldy, kpad, 2); break;
                case 1: F32_TILE_ROW(wr, tr, x + t * ldx, ldx, y + t * ldy + r, ldy, kpad, 1); break;
                default: break;
                }
            }
        }
    }
}

#undef F32_TILE_NAME
#undef F32_TILE_ATTR
#undef F32_TILE_ROW
