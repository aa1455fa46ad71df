// Include template (no include guard): the attention kernels of one cache element type, scalar and
// AVX2. attention.c includes it once per type after defining
//   ATT_SUF            the name suffix (16: F16 caches, 8: int8 caches): scores16_scalar, pv16_avx2...;
//   ATT_T              the element type;
//   ATT_ELEM(p, i)     one element as a float (scalar variants);
//   ATT_ELEM_AVX2(p, i) the same in AVX2 code; ATT_LOAD8(p) eight adjacent elements as a __m256;
//   ATT_LOAD8_NEON(p, lo, hi) eight adjacent elements as two float32x4_t (ARM64),
// and this file undefines them at its end.
#define ATT_FN(name, variant) SQ_CAT(SQ_GLUE(name, ATT_SUF), variant)
#ifndef ATT_ROW_GROUPS
// Rows [0, g) of a query group through ROWS(r, NT), NT rows from row r, in groups of MAX (2 or 3)
// and then the rest: NT is a constant in each call, so each inlines with its own unrolling.
#define ATT_ROW_GROUPS(g, MAX, ROWS)                      \
    do {                                                  \
        int64_t r_ = 0;                                   \
        for (; r_ + (MAX) <= (g); r_ += (MAX)) ROWS(r_, MAX); \
        if ((g) - r_ == 2) ROWS(r_, 2);                   \
        else if ((g) - r_ == 1) ROWS(r_, 1);              \
    } while (0)
#define ATT_SCORE_ROWS(variant, r, NT) \
    ATT_FN(scores, variant)(q + (r) * ldq, ldq, kt, ks, hd, j0, j1, s + (r) * lds, lds, NT)
// Scores of keys [j0, j1) for NT <= MAXR rows through TILE, which writes whole tiles of KT keys
// into a buffer; the part of each tile inside [j0, j1) is copied out.
#define ATT_SCORES_BY_TILES(TILE, MAXR)                                                                 \
    float buf[MAXR][KT];                                                                                \
    for (int64_t t = j0 / KT; t * KT < j1; t++) {                                                       \
        int64_t a = t * KT < j0 ? j0 : t * KT, b = (t + 1) * KT > j1 ? j1 : (t + 1) * KT;              \
        TILE(q, ldq, kt + t * hd * KT, ks ? ks + t * KT : NULL, hd, buf, NT);                           \
        for (int r = 0; r < NT; r++)                                                                    \
            memcpy(s + r * lds + (a - j0), buf[r] + (a - t * KT), (size_t)(b - a) * sizeof(float));     \
    }
#define ATT_PV_ROWS(variant, r, NT) ATT_FN(pv, variant)(p + (r) * ldp, ldp, vt, ldv, hd, n, out + (r) * ldo, ldo, NT)
#endif

// Scores (scaled by ks[j] when ks is not NULL) and weighted sums over values that are already scaled.
static void ATT_FN(scores, scalar)(const float *q, int64_t ldq, int64_t g, const ATT_T *kt, const float *ks,
                   int64_t hd, int64_t j0, int64_t j1, float *s, int64_t lds) {
    for (int64_t r = 0; r < g; r++)
        for (int64_t j = j0; j < j1; j++) {
            float acc = 0;
            for (int64_t d = 0; d < hd; d++) acc += q[r * ldq + d] * ATT_ELEM(kt, ((j / KT) * hd + d) * KT + j % KT);
            s[r * lds + (j - j0)] = ks ? acc * ks[j] : acc;
        }
}
static void ATT_FN(pv, scalar)(const float *p, int64_t ldp, int64_t g, const ATT_T *vt, int64_t ldv, int64_t hd,
                   int64_t n, float *out, int64_t ldo) {
    for (int64_t r = 0; r < g; r++)
        for (int64_t d = 0; d < hd; d++) {
            float acc = 0;
            for (int64_t j = 0; j < n; j++) acc += p[r * ldp + j] * ATT_ELEM(vt, d * ldv + j);
            out[r * ldo + d] = acc;
        }
}

#ifdef SQ_X86
// Scores: one tile (KT = 32 keys) against NT query rows at a time, acc[r][u] holding keys 8u..8u+7 of
// row r; the 4 key vectors of each dimension are converted once and used by every row (12
// accumulators at NT = 3); the tile's key scales (8-bit) applied once at the end. Partial tiles go
// through a buffer, so only [j0, j1) is written.
// Weighted sums: one value row (dimension d) against NT probability rows, 16 positions per step.
// The cache comes from memory while decoding: the next tiles and value rows are prefetched.
T_AVX2 static INL void SQ_GLUE(tile_scores, ATT_SUF)(const float *q, int64_t ldq, const ATT_T *tile, const float *ks,
                               int64_t hd, float out[3][KT], const int NT) {
    __m256 acc[3][4];
    for (int r = 0; r < 3; r++)
        for (int u = 0; u < 4; u++) acc[r][u] = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd; d++) {
        const ATT_T *k = tile + d * KT;
        _mm_prefetch((const char *)(k + 2 * hd * KT), _MM_HINT_T0); // two tiles ahead
        __m256 kv[4];
        for (int u = 0; u < 4; u++) kv[u] = ATT_LOAD8(k + 8 * u);
        for (int r = 0; r < NT; r++) {
            __m256 qb = _mm256_broadcast_ss(q + r * ldq + d);
            for (int u = 0; u < 4; u++) acc[r][u] = _mm256_fmadd_ps(qb, kv[u], acc[r][u]);
        }
    }
    for (int r = 0; r < NT; r++)
        for (int u = 0; u < 4; u++)
            _mm256_storeu_ps(out[r] + 8 * u, ks ? _mm256_mul_ps(acc[r][u], _mm256_loadu_ps(ks + 8 * u)) : acc[r][u]);
}
T_AVX2 static INL void ATT_FN(scores, rows_avx2)(const float *q, int64_t ldq, const ATT_T *kt, const float *ks,
                              int64_t hd, int64_t j0, int64_t j1, float *s, int64_t lds,
                              const int NT) {
    ATT_SCORES_BY_TILES(SQ_GLUE(tile_scores, ATT_SUF), 3);
}
T_AVX2 static void ATT_FN(scores, avx2)(const float *q, int64_t ldq, int64_t g, const ATT_T *kt, const float *ks,
                          int64_t hd, int64_t j0, int64_t j1, float *s, int64_t lds) {
#define ROWS(r, NT) ATT_SCORE_ROWS(rows_avx2, r, NT)
    ATT_ROW_GROUPS(g, 3, ROWS);
#undef ROWS
}
T_AVX2 static INL void ATT_FN(pv, rows_avx2)(const float *p, int64_t ldp, const ATT_T *vt, int64_t ldv, int64_t hd,
                              int64_t n, float *out, int64_t ldo, const int NT) {
    for (int64_t d = 0; d < hd; d++) {
        const ATT_T *v = vt + d * ldv;
        __m256 a[3], b[3];
        for (int r = 0; r < 3; r++) a[r] = b[r] = _mm256_setzero_ps();
        int64_t j = 0;
        for (; j + 16 <= n; j += 16) {
            __m256 v0 = ATT_LOAD8(v + j), v1 = ATT_LOAD8(v + j + 8);
            _mm_prefetch((const char *)(v + ldv + j), _MM_HINT_T0); // the next row, same place
            for (int r = 0; r < NT; r++) {
                a[r] = _mm256_fmadd_ps(v0, _mm256_loadu_ps(p + r * ldp + j), a[r]);
                b[r] = _mm256_fmadd_ps(v1, _mm256_loadu_ps(p + r * ldp + j + 8), b[r]);
            }
        }
        float acc[3];
        for (int r = 0; r < NT; r++) acc[r] = sq_hsum8(_mm256_add_ps(a[r], b[r]));
        for (; j < n; j++)
            for (int r = 0; r < NT; r++) acc[r] += ATT_ELEM_AVX2(v, j) * p[r * ldp + j];
        for (int r = 0; r < NT; r++) out[r * ldo + d] = acc[r];
    }
}
T_AVX2 static void ATT_FN(pv, avx2)(const float *p, int64_t ldp, int64_t g, const ATT_T *vt, int64_t ldv,
                          int64_t hd, int64_t n, float *out, int64_t ldo) {
#define ROWS(r, NT) ATT_PV_ROWS(rows_avx2, r, NT)
    ATT_ROW_GROUPS(g, 3, ROWS);
#undef ROWS
}
#endif

#ifdef SQ_ARM
// As the AVX2 kernels, four lanes per vector: scores of one tile (8 vectors of keys per dimension)
// for NT <= 2 query rows (16 accumulators), weighted sums 8 positions per step for NT <= 3 rows.
static INL void SQ_GLUE(tile_scores_neon, ATT_SUF)(const float *q, int64_t ldq, const ATT_T *tile, const float *ks,
                                                   int64_t hd, float out[2][KT], const int NT) {
    float32x4_t acc[2][8];
    for (int r = 0; r < 2; r++)
        for (int u = 0; u < 8; u++) acc[r][u] = vdupq_n_f32(0);
    for (int64_t d = 0; d < hd; d++) {
        const ATT_T *k = tile + d * KT;
        float32x4_t kv[8];
        for (int u = 0; u < 4; u++) ATT_LOAD8_NEON(k + 8 * u, kv[2 * u], kv[2 * u + 1]);
        for (int r = 0; r < NT; r++) {
            const float qd = q[r * ldq + d];
            for (int u = 0; u < 8; u++) acc[r][u] = vfmaq_n_f32(acc[r][u], kv[u], qd);
        }
    }
    for (int r = 0; r < NT; r++)
        for (int u = 0; u < 8; u++)
            vst1q_f32(out[r] + 4 * u, ks ? vmulq_f32(acc[r][u], vld1q_f32(ks + 4 * u)) : acc[r][u]);
}
static INL void ATT_FN(scores, rows_neon)(const float *q, int64_t ldq, const ATT_T *kt, const float *ks, int64_t hd,
                                          int64_t j0, int64_t j1, float *s, int64_t lds, const int NT) {
    ATT_SCORES_BY_TILES(SQ_GLUE(tile_scores_neon, ATT_SUF), 2);
}
static void ATT_FN(scores, neon)(const float *q, int64_t ldq, int64_t g, const ATT_T *kt, const float *ks, int64_t hd,
                                 int64_t j0, int64_t j1, float *s, int64_t lds) {
#define ROWS(r, NT) ATT_SCORE_ROWS(rows_neon, r, NT)
    ATT_ROW_GROUPS(g, 2, ROWS);
#undef ROWS
}
static INL void ATT_FN(pv, rows_neon)(const float *p, int64_t ldp, const ATT_T *vt, int64_t ldv, int64_t hd, int64_t n,
                                      float *out, int64_t ldo, const int NT) {
    for (int64_t d = 0; d < hd; d++) {
        const ATT_T *v = vt + d * ldv;
        float32x4_t a[3], b[3];
        for (int r = 0; r < 3; r++) a[r] = b[r] = vdupq_n_f32(0);
        int64_t j = 0;
        for (; j + 8 <= n; j += 8) {
            float32x4_t v0, v1;
            ATT_LOAD8_NEON(v + j, v0, v1);
            for (int r = 0; r < NT; r++) {
                a[r] = vfmaq_f32(a[r], v0, vld1q_f32(p + r * ldp + j));
                b[r] = vfmaq_f32(b[r], v1, vld1q_f32(p + r * ldp + j + 4));
            }
        }
        float acc[3];
        for (int r = 0; r < NT; r++) acc[r] = sq_hsum4(vaddq_f32(a[r], b[r]));
        for (; j < n; j++)
            for (int r = 0; r < NT; r++) acc[r] += ATT_ELEM(v, j) * p[r * ldp + j];
        for (int r = 0; r < NT; r++) out[r * ldo + d] = acc[r];
    }
}
static void ATT_FN(pv, neon)(const float *p, int64_t ldp, int64_t g, const ATT_T *vt, int64_t ldv, int64_t hd,
                             int64_t n, float *out, int64_t ldo) {
#define ROWS(r, NT) ATT_PV_ROWS(rows_neon, r, NT)
    ATT_ROW_GROUPS(g, 3, ROWS);
#undef ROWS
}
#endif

#undef ATT_FN
#undef ATT_SUF
#undef ATT_T
#undef ATT_ELEM
#undef ATT_ELEM_AVX2
#undef ATT_LOAD8
#undef ATT_LOAD8_NEON
