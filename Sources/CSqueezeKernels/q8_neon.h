// Include template (no include guard): the ARM64 8-bit block GEMM of one instruction set. q8.c
// includes it once per variant after defining
//   Q8N_ATTR            the variant's target attribute (T_NEON, T_DOTPROD);
//   Q8N_SFX             the name suffix: gemm_<sfx>;
//   Q8N_DOT(acc, w, x)  acc (4 int32 lanes) plus the dot product of 16 weights w with 16 activations x,
// and this file undefines them at its end.
// Four adjacent rows per token; each block's integer dot product is exact and the float sum runs over
// the blocks in the scalar kernel's order.
#define Q8N_FN(name) SQ_CAT(name, Q8N_SFX)

Q8N_ATTR static INL void Q8N_FN(rows)(const int8_t *w, const float *dw, int64_t kpad, const int8_t *x,
                                      const float *dx, float *y, const int NR) {
    const int64_t nb = kpad / SQ_Q8_BLOCK;
    float s[4] = {0, 0, 0, 0};
    for (int64_t b = 0; b < nb; b++) {
        const int8x16_t x0 = vld1q_s8(x + b * SQ_Q8_BLOCK), x1 = vld1q_s8(x + b * SQ_Q8_BLOCK + 16);
        for (int i = 0; i < NR; i++) {
            const int8_t *wb = w + i * kpad + b * SQ_Q8_BLOCK;
            int32x4_t a = Q8N_DOT(vdupq_n_s32(0), vld1q_s8(wb), x0);
            a = Q8N_DOT(a, vld1q_s8(wb + 16), x1);
            s[i] += (float)vaddvq_s32(a) * (dw[i * nb + b] * dx[b]);
        }
    }
    for (int i = 0; i < NR; i++) y[i] = s[i];
}

Q8N_ATTR static void Q8N_FN(gemm)(const int8_t *wq, const float *wd, int64_t kpad, const int8_t *xq,
                                  const float *xd, int64_t m, float *y, int64_t ldy, int64_t r0, int64_t r1) {
    const int64_t nb = kpad / SQ_Q8_BLOCK;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4)
        for (int64_t t = 0; t < m; t++)
            Q8N_FN(rows)(wq + r * kpad, wd + r * nb, kpad, xq + t * kpad, xd + t * nb, y + t * ldy + r, 4);
    for (; r < r1; r++)
        for (int64_t t = 0; t < m; t++)
            Q8N_FN(rows)(wq + r * kpad, wd + r * nb, kpad, xq + t * kpad, xd + t * nb, y + t * ldy + r, 1);
}

#undef Q8N_FN
#undef Q8N_ATTR
#undef Q8N_SFX
#undef Q8N_DOT
