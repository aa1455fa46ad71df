// Include template (no include guard): the float-table GEMM tile of one variant and bit width over
// blocked rows and tokens, 4 tokens per row pass. lut.c includes it after defining F32_TILE_NAME,
// F32_TILE_ATTR (the target attribute) and F32_TILE_ROW (the row kernel, NT tokens); this file
// undefines them at its end.
#define BR_NAME F32_TILE_NAME
#define BR_ATTR F32_TILE_ATTR
#define BR_PARAMS                                                                                           \
    const uint8_t *w, const float *lut, const float *x, int64_t ldx, int64_t m, float *y, int64_t ldy,    \
        int64_t kpad, int64_t rb, int64_t r0, int64_t r1
#define BR_NT 4
#define BR_ROW_START(r, tb) (void)0
#define BR_ROW(r, t, nt) F32_TILE_ROW(w + (r) * rb, lut + (r) * 16, x + (t) * ldx, ldx, y + (t) * ldy + (r), ldy, kpad, nt)
#include "lut_blocked_rows.h"

#undef F32_TILE_NAME
#undef F32_TILE_ATTR
#undef F32_TILE_ROW
