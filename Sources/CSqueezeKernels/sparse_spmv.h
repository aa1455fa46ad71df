// Include template (no include guard): one product kernel y += S x over rows [r0, r1) for one token.
// sparse.c includes it once per variant after defining SPMV_NAME, SPMV_ATTR (the target attribute,
// or nothing) and SPMV_SLICE (the slice kernel: the 8 lane sums of one slice); this file undefines
// them at its end.
SPMV_ATTR static void SPMV_NAME(const sq_csr *s, const float *x, float *y, int64_t r0, int64_t r1) {
    const int64_t W = s->window, wa = r0 / W, wb = (r1 + W - 1) / W;
    const int32_t *ws = s->window_slices, *sl = s->slice_levels;
    float acc[L];
    for (int64_t w = wa; w < wb; w++) {
        float *yw = y + w * W;
        // lanes whose row offset o has o - lo < n (unsigned) are written: empty lanes (0xFFFF) never
        const int64_t lo = r0 > w * W ? r0 - w * W : 0, hi = r1 - w * W < W ? r1 - w * W : W;
        const uint64_t n = (uint64_t)(hi - lo);
        for (int64_t k = ws[w]; k < ws[w + 1]; k++) {
            SPMV_SLICE(s, sl[k], sl[k + 1], x, acc);
            const uint16_t *lanes = s->lane_rows + k * L;
            for (int l = 0; l < L; l++) {
                const int64_t o = lanes[l];
                if ((uint64_t)(o - lo) < n) yw[o] += acc[l];
            }
        }
    }
}

#undef SPMV_NAME
#undef SPMV_ATTR
#undef SPMV_SLICE
