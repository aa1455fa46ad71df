// Sparse product layouts, one token: the group order of e945286 ("old": one nonzero at a time, rows
// interleaved in groups of 32, 16-bit row and column, half value) against the sliced layout of
// sq_sparse.h ("new"). Built and run by run.sh. Prints ns per nonzero (best of 300 passes, 3 lines
// each): (1) the model's matrices in cache, (2) the same with 4-bit dense weights (rows x cols / 2
// bytes per matrix) read from memory before each product and 15 copies of every matrix, as in
// decoding (the dense reads alone subtracted), (3) uniform synthetic matrices (k nonzeros per row).
// In cache, the sliced product is also timed with its columns fetched by `vgatherdps`.
#include "old_sparse.h"
#include "sq_sparse.h"
#include "sq_dense.h"
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

typedef struct { int rows, cols, nnz; int32_t *rp, *ci; uint16_t *v; old_csr o; sq_csr n; } M;

static void *alloc(size_t n) { void *p = NULL; if (posix_memalign(&p, 64, n + 64)) exit(1); return p; }

static void setup(M *m) {
    int32_t *ord = alloc((size_t)m->nnz * 4);
    old_csr_group_order(m->rp, m->rows, ord);
    uint16_t *ri = alloc((size_t)m->nnz * 2), *gc = alloc((size_t)m->nnz * 2), *gv = alloc((size_t)m->nnz * 2);
    for (int q = 0; q < m->nnz; q++) {
        int p = ord[q];
        ri[q] = (uint16_t)old_csr_row_of(m->rp, m->rows, p); gc[q] = (uint16_t)m->ci[p]; gv[q] = m->v[p];
    }
    m->o = (old_csr){m->rp, ri, gc, gv, m->rows, m->cols, 1};
    int64_t W = sq_sell_window(m->rows), ns, nl;
    sq_sell_plan(m->rp, m->rows, W, &ns, &nl);
    int32_t *ws = alloc((size_t)((m->rows + W - 1) / W + 1) * 4), *sl = alloc((size_t)(ns + 1) * 4);
    uint16_t *lr = alloc((size_t)ns * 16); uint8_t *lc = alloc((size_t)ns * 8); int32_t *src = alloc((size_t)nl * 32);
    sq_sell_build(m->rp, m->rows, W, ws, sl, lr, lc, src);
    uint16_t *c = alloc((size_t)nl * 16), *v = alloc((size_t)nl * 16);
    for (int64_t q = 0; q < nl * 8; q++) { c[q] = src[q] < 0 ? 0 : (uint16_t)m->ci[src[q]]; v[q] = src[q] < 0 ? 0 : m->v[src[q]]; }
    m->n = (sq_csr){m->rp, ws, sl, lr, lc, c, v, m->rows, m->cols, W, 1};
}

static float X[8192], Y[8192];

// The sliced product with the eight columns of a level fetched by one `vgatherdps` (compact storage,
// whole matrix, one token): the variant sparse.c does not use.
__attribute__((target("avx2,fma,f16c"))) static void sliced_gather(const sq_csr *s, const float *x, float *y) {
    const uint16_t *cols = s->cols, *vals = s->vals;
    for (int64_t w = 0; w * s->window < s->rows; w++) {
        float *yw = y + w * s->window;
        for (int64_t k = s->window_slices[w]; k < s->window_slices[w + 1]; k++) {
            __m256 a = _mm256_setzero_ps();
            for (int64_t j = s->slice_levels[k]; j < s->slice_levels[k + 1]; j++) {
                const __m256i idx = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(cols + j * 8)));
                a = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vals + j * 8))),
                                    _mm256_i32gather_ps(x, idx, 4), a);
            }
            float acc[8];
            _mm256_storeu_ps(acc, a);
            for (int l = 0; l < 8; l++)
                if (s->lane_rows[k * 8 + l] != SQ_SELL_EMPTY) yw[s->lane_rows[k * 8 + l]] += acc[l];
        }
    }
}

static void product(M *m, int k) {
    if (k == 1) old_csr_spmm_range(&m->o, X, 0, 1, Y, 0, 0, m->rows);
    else if (k == 2) sq_csr_spmm_range(&m->n, X, 0, 1, Y, 0, 0, m->rows);
    else if (k == 3) sliced_gather(&m->n, X, Y);
}

static void in_cache(const char *name, M *ms, int n) {
    long tot = 0; for (int i = 0; i < n; i++) tot += ms[i].nnz;
    for (int rep = 0; rep < 3; rep++) {
        double b[4] = {1e9, 1e9, 1e9, 1e9};
        for (int it = 0; it < 300; it++)
            for (int k = 1; k < 4; k++) {
                double t0 = now();
                for (int i = 0; i < n; i++) product(ms + i, k);
                double t = now() - t0; if (t < b[k]) b[k] = t;
            }
        printf("%s: old %.3f new %.3f (with vgatherdps %.3f) ns/nnz\n", name, b[1] / tot * 1e9, b[2] / tot * 1e9,
               b[3] / tot * 1e9);
    }
}

__attribute__((target("avx2"))) static void streamed(M *ms, int n) {
    const int C = 15; M *cp = alloc(sizeof(M) * (size_t)n * C); size_t dense = 0; long tot = 0;
    for (int c = 0; c < C; c++)
        for (int i = 0; i < n; i++) { M *d = cp + c * n + i; *d = ms[i]; setup(d); dense += (size_t)d->rows * d->cols / 2; tot += d->nnz; }
    unsigned char *D = alloc(dense); memset(D, 1, dense);
    for (int rep = 0; rep < 3; rep++) {
        double b[3] = {1e9, 1e9, 1e9};
        for (int it = 0; it < 60; it++)
            for (int k = 0; k < 3; k++) {
                double t0 = now(); size_t off = 0; __m256i s = _mm256_setzero_si256();
                for (int j = 0; j < n * C; j++) {
                    M *m = cp + j; size_t bytes = (size_t)m->rows * m->cols / 2;
                    for (size_t o = 0; o < bytes; o += 32) s = _mm256_add_epi8(s, _mm256_load_si256((const __m256i *)(D + off + o)));
                    off += bytes;
                    product(m, k);
                }
                double t = now() - t0; if (t < b[k]) b[k] = t;
                volatile int z = _mm256_extract_epi32(s, 0); (void)z;
            }
        printf("streamed (%ld nonzeros, dense reads %.2f ms): old +%.3f new +%.3f ns/nnz\n", tot, b[0] * 1e3,
               (b[1] - b[0]) / tot * 1e9, (b[2] - b[0]) / tot * 1e9);
    }
}

int main(int argc, char **argv) {
    for (int i = 0; i < 8192; i++) X[i] = (float)(i % 7) * 0.1f;
    FILE *f = fopen(argv[1], "rb"); int n;
    if (!f || fread(&n, 4, 1, f) != 1) { fprintf(stderr, "cannot read %s\n", argv[1]); return 1; }
    M *ms = calloc((size_t)n, sizeof(M)); long tot = 0;
    for (int i = 0; i < n; i++) {
        M *m = ms + i;
        if (fread(&m->rows, 4, 3, f) != 3) return 1;
        m->rp = alloc((size_t)(m->rows + 1) * 4); m->ci = alloc((size_t)m->nnz * 4); m->v = alloc((size_t)m->nnz * 2);
        if (fread(m->rp, 4, m->rows + 1, f) != (size_t)m->rows + 1 || fread(m->ci, 4, m->nnz, f) != (size_t)m->nnz
            || fread(m->v, 2, m->nnz, f) != (size_t)m->nnz) return 1;
        setup(m); tot += m->nnz;
    }
    long slots = 0;
    for (int i = 0; i < n; i++) { int64_t s, l; sq_sell_plan(ms[i].rp, ms[i].rows, ms[i].n.window, &s, &l); slots += l * 8; }
    printf("%d matrices, %ld nonzeros, %ld slots (%.2f per nonzero)\n", n, tot, slots, (double)slots / tot);
    in_cache("model matrices, in cache", ms, n);
    streamed(ms, n);
    const int kk[3] = {3, 7, 18}, rr[3] = {1536, 576, 4096}, cc[3] = {576, 1536, 4096};
    for (int s = 0; s < 3; s++) {
        M m = {0}; m.rows = rr[s]; m.cols = cc[s]; int k = kk[s]; m.nnz = m.rows * k;
        m.rp = alloc((size_t)(m.rows + 1) * 4); m.ci = alloc((size_t)m.nnz * 4); m.v = alloc((size_t)m.nnz * 2);
        unsigned g = 1;
        for (int r = 0; r <= m.rows; r++) m.rp[r] = r * k;
        for (int p = 0; p < m.nnz; p++) { g = g * 1103515245u + 12345u; m.ci[p] = (int32_t)((g >> 8) % (unsigned)m.cols); m.v[p] = 0x3c00; }
        setup(&m);
        char nm[64]; snprintf(nm, sizeof nm, "uniform %dx%d, %d per row", m.rows, m.cols, k);
        in_cache(nm, &m, 1);
    }
    return 0;
}
