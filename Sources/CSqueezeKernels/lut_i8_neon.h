// Include template (no include guard): the ARM64 int8 LUT tile of one instruction set. lut.c includes
// it once per variant after defining
//   I8N_ATTR            the variant's target attribute (T_NEON, T_DOTPROD);
//   I8N_SFX             the name suffix: gemm_i8_<sfx>;
//   I8N_DOT(acc, c, x)  acc (4 int32 lanes) plus the dot product of 16 codes c with 16 activations x,
// and this file undefines them at its end.
// Rows in groups of 4 times tokens in groups of 4: the codes of one 64-weight block of 4 rows (16
// vectors) are looked up once and used for every token of the group. Each block's integer sum is
// exact; the float sums run over the blocks in order, as the scalar kernel's.
#define I8N_FN(name) SQ_CAT(name, I8N_SFX)

I8N_ATTR static INL void I8N_FN(i8_tile)(int bits, const uint8_t *w, int64_t rb, const uint8_t *qt,
                                         const float *scale, const float *offset, const int8_t *xq,
                                         const float *d, const float *sx, float *y, int64_t ldy,
                                         int64_t kpad, const int NR, const int NT) {
    const int64_t nb = kpad / QB;
    uint8x16_t tab[4];
    for (int i = 0; i < NR; i++) tab[i] = vld1q_u8(qt + 16 * i);
    float s[4][4] = {{0}};
    for (int64_t b = 0; b < nb; b++) {
        int8x16_t c[4][4];
        for (int i = 0; i < NR; i++) sq_lut_codes_neon(bits, w + i * rb, b, tab[i], c[i]);
        for (int t = 0; t < NT; t++) {
            const int8_t *xs = xq + t * kpad + 64 * b;
            const int8x16_t x0 = vld1q_s8(xs), x1 = vld1q_s8(xs + 16), x2 = vld1q_s8(xs + 32), x3 = vld1q_s8(xs + 48);
            const float db = d[t * nb + b];
            for (int i = 0; i < NR; i++) {
                int32x4_t a = I8N_DOT(vdupq_n_s32(0), c[i][0], x0);
                a = I8N_DOT(a, c[i][1], x1);
                a = I8N_DOT(a, c[i][2], x2);
                a = I8N_DOT(a, c[i][3], x3);
                s[t][i] += (float)vaddvq_s32(a) * db;
            }
        }
    }
    for (int t = 0; t < NT; t++)
        for (int i = 0; i < NR; i++) y[t * ldy + i] = s[t][i] * scale[i] + offset[i] * sx[t];
}

// Rows [r0, r1) for m tokens.
I8N_ATTR static void I8N_FN(gemm_i8)(int bits, const uint8_t *w, const uint8_t *qt, const float *scale,
                                     const float *offset, const int8_t *xq, const float *d, const float *sx,
                                     int64_t m, float *y, int64_t ldy, int64_t kpad, int64_t rb, int64_t r0,
                                     int64_t r1) {
    const int64_t nb = kpad / QB;
    for (int64_t r = r0; r < r1; r += 4) {
        const int nr = r1 - r < 4 ? (int)(r1 - r) : 4;
        for (int64_t t = 0; t < m; t += 4) {
            const int nt = m - t < 4 ? (int)(m - t) : 4;
            const int8_t *xt = xq + t * kpad;
            float *yt = y + t * ldy + r;
            // Constant shapes, so that the accumulators stay in registers.
#define I8N_CASE(NR_, NT_)                                                                                  \
    I8N_FN(i8_tile)(bits, w + r * rb, rb, qt + r * 16, scale + r, offset + r, xt, d + t * nb, sx + t, yt, ldy, \
                    kpad, NR_, NT_)
            if (nr == 4 && nt == 4) I8N_CASE(4, 4);
            else if (nr == 4 && nt == 1) I8N_CASE(4, 1);
            else if (nr == 4 && nt == 2) I8N_CASE(4, 2);
            else if (nr == 4 && nt == 3) I8N_CASE(4, 3);
            else
                for (int i = 0; i < nr; i++) {
                    int64_t ri = r + i;
                    I8N_FN(i8_tile)(bits, w + ri * rb, rb, qt + ri * 16, scale + ri, offset + ri, xt, d + t * nb,
                                    sx + t, yt + i, ldy, kpad, 1, 1);
                    for (int u = 1; u < nt; u++)
                        I8N_FN(i8_tile)(bits, w + ri * rb, rb, qt + ri * 16, scale + ri, offset + ri,
                                        xt + u * kpad, d + (t + u) * nb, sx + t + u, yt + i + u * ldy, ldy, kpad, 1, 1);
                }
#undef I8N_CASE
        }
    }
}

#undef I8N_FN
#undef I8N_ATTR
#undef I8N_SFX
#undef I8N_DOT
