// Runs lut.c's AVX-512 variants (float vpermps, int8 VNNI) under SIMDe emulation and compares them
// with the scalar variants, so they can be checked on CPUs without AVX-512 (exit status 1 on a
// difference above 1e-5 of sum|w x|). Needs libsimde-dev (apt). From the repository root:
//   S=Sources/CSqueezeKernels
//   gcc -O1 -DSQ_LUT_EMULATE -Iscripts/harness/lut_emulation -I$S/include scripts/harness/lut_emulation/harness.c $S/lut.c -o /tmp/lut_emu -lm
//   /tmp/lut_emu
#include "sq_lut.h"
#include "sq_dense.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static int g_isa; static uint32_t g_feat;
int sq_isa(void) { return g_isa; }
uint32_t sq_cpu_features(void) { return g_feat; }
// sq_lut_i8_task adds a sparse part with sparse.c; the harness tests no sparse part.
void sq_csr_spmm_range(const sq_csr *s, const float *x, int64_t ldx, int64_t m, float *y, int64_t ldy,
                       int64_t r0, int64_t r1) { (void)s; (void)x; (void)ldx; (void)m; (void)y; (void)ldy; (void)r0; (void)r1; }
static uint64_t st = 88172645463325252ull;
static uint64_t rnd(void) { st ^= st << 13; st ^= st >> 7; st ^= st << 17; return st; }
static float rf(void) { return (float)((rnd() >> 40) / 16777216.0 * 2 - 1); }
int main(void) {
    int fails = 0; double worst[2] = {0, 0};
    int shapes[][2] = {{1, 1}, {3, 63}, {17, 64}, {5, 129}, {33, 300}, {8, 700}, {7, 2100}, {4, 4100}};
    for (int bits = 3; bits <= 4; bits++)
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        int rows = shapes[si][0], cols = shapes[si][1], n = 1 << bits;
        int64_t kpad = sq_lut_padded_cols(bits, cols), rb = sq_lut_row_bytes(bits, kpad);
        uint8_t *idx = malloc(rows * cols); for (int i = 0; i < rows * cols; i++) idx[i] = rnd() % n;
        uint8_t *w = aligned_alloc(64, rows * rb + 64);
        sq_lut_pack(bits, idx, cols, cols, kpad, w, 0, rows);
        float *lut = aligned_alloc(64, rows * 16 * 4); memset(lut, 0, rows * 64);
        for (int r = 0; r < rows; r++) for (int e = 0; e < n; e++) lut[r * 16 + e] = rf();
        if (bits == 3) for (int r = 0; r < rows; r++) for (int e = 8; e < 16; e++) lut[r * 16 + e] = 1e30f; // must never be read
        uint8_t *qt = aligned_alloc(64, rows * 16); float *qs = aligned_alloc(64, rows * 4), *qo = aligned_alloc(64, rows * 4);
        g_isa = (si % 3) == 0 ? 0 : 1;
        sq_lut_quantize_tables(bits, lut, 0, rows, qt, qs, qo);
        int m = si % 2 ? 37 : 5;
        float *x = aligned_alloc(64, m * kpad * 4); memset(x, 0, m * kpad * 4);
        for (int t = 0; t < m; t++) for (int i = 0; i < cols; i++) x[t * kpad + i] = rf() * (t == 1 ? 100 : 1);
        int8_t *xq = aligned_alloc(64, m * kpad);
        float *d = aligned_alloc(64, m * kpad / 64 * 4 + 64), *cx = malloc(m * 4);
        for (int t = 0; t < m; t++) sq_lut_quantize_x(x + t * kpad, cols, kpad, xq + t * kpad, d + t * kpad / 64, cx + t);
        float *ys = malloc(m * rows * 4), *yv = malloc(m * rows * 4);
        for (int mode = 0; mode < 2; mode++) {
            // reference: scalar variant
            g_isa = SQ_ISA_SCALAR; g_feat = 0;
            if (mode == 0) sq_lut_gemm_f32(bits, w, lut, x, kpad, m, ys, rows, kpad, 0, rows);
            else sq_lut_gemm_i8(bits, w, qt, qs, qo, xq, d, cx, m, ys, rows, kpad, 0, rows);
            for (int level = 1; level <= 2; level++) {
                g_isa = level; g_feat = level == 2 ? SQ_CPU_AVX512VNNI : 0;
                memset(yv, 0, m * rows * 4);
                if (mode == 0) sq_lut_gemm_f32(bits, w, lut, x, kpad, m, yv, rows, kpad, 0, rows);
                else sq_lut_gemm_i8(bits, w, qt, qs, qo, xq, d, cx, m, yv, rows, kpad, 0, rows);
                // also gemv path (m = 1) on token 0
                float y1[1024];
                if (mode == 0) sq_lut_gemv_f32(bits, w, lut, x, y1, kpad, 0, rows);
                else sq_lut_gemv_i8(bits, w, qt, qs, qo, xq, d, cx, y1, kpad, 0, rows);
                for (int t = 0; t < m; t++) for (int r = 0; r < rows; r++) {
                    double mag = 0;
                    for (int i = 0; i < cols; i++) mag += fabs((double)lut[r * 16 + idx[r * cols + i]] * x[t * kpad + i]);
                    double e = fabs(yv[t * rows + r] - ys[t * rows + r]) / (mag + 1e-30);
                    if (t == 0) { double e1 = fabs(y1[r] - ys[r]) / (mag + 1e-30); if (e1 > e) e = e1; }
                    if (e > worst[mode]) worst[mode] = e;
                    if (e > 1e-5) { if (fails++ < 10) printf("FAIL bits %d %dx%d mode %d level %d t %d r %d: %g vs %g\n", bits, rows, cols, mode, level, t, r, yv[t*rows+r], ys[t*rows+r]); }
                }
            }
        }
        free(idx); free(w); free(lut); free(qt); free(qs); free(qo); free(x); free(xq); free(d); free(cx); free(ys); free(yv);
    }
    printf("%s: worst relative difference (of sum|w x|) float %.2e, int8 %.2e; variant at level 2: %s\n", fails ? "FAILED" : "OK", worst[0], worst[1], sq_lut_variant());
    return fails != 0;
}
