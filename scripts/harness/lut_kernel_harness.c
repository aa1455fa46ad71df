// Time of the int8 path's table search per row, then throughput of the int8 LUT product kernel
// (sq_lut_gemm_i8) for 1, 2, 4 and 8 tokens on one core,
// in products (multiply-adds) per second and per cycle at a nominal 3.1 GHz. The matrix (random
// indices and tables) stays in cache, so this measures compute, not memory.
//
// Build and run from the repository root:
//   S=Sources/CSqueezeKernels
//   clang -O2 -I$S/include scripts/harness/lut_kernel_harness.c $S/*.c -o /tmp/lut_harness -lpthread -lm
//   /tmp/lut_harness 4 1536 576     # bits rows columns
//   /tmp/lut_harness 3 1536 576
#include "sq_lut.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int bits = argc > 1 ? atoi(argv[1]) : 4;
    int64_t rows = argc > 2 ? atoll(argv[2]) : 1536, k = argc > 3 ? atoll(argv[3]) : 576;
    int64_t kpad = sq_lut_padded_cols(bits, k), rb = sq_lut_row_bytes(bits, kpad), nb = kpad / SQ_LUT_QBLOCK;
    const int M = 8;
    uint8_t *w = aligned_alloc(64, (size_t)(rows * rb + 64));
    uint8_t *qt = aligned_alloc(64, (size_t)rows * 16);
    float *sc = aligned_alloc(64, (size_t)rows * 4), *off = aligned_alloc(64, (size_t)rows * 4);
    float *x = aligned_alloc(64, (size_t)(M * kpad * 4));
    int8_t *xq = aligned_alloc(64, (size_t)(M * kpad));
    float *d = aligned_alloc(64, (size_t)(M * nb * 4) + 64), sx[8], *y = aligned_alloc(64, (size_t)(M * rows * 4));
    srand(1);
    for (int64_t i = 0; i < rows * rb; i++) w[i] = (uint8_t)rand();
    for (int64_t i = 0; i < rows * 16; i++) qt[i] = (uint8_t)(rand() % 128);
    for (int64_t i = 0; i < rows; i++) { sc[i] = 0.01f; off[i] = -0.64f; }
    for (int64_t i = 0; i < M * kpad; i++) x[i] = rand() / (float)RAND_MAX - 0.5f;
    for (int t = 0; t < M; t++) sq_lut_quantize_x(x + t * kpad, k, kpad, xq + t * kpad, d + t * nb, sx + t);
    printf("kernels: %s\n", sq_lut_variant());
    {   // the int8 path's table search (sq_lut_quantize_tables), per row, on random tables
        float *lut = aligned_alloc(64, (size_t)rows * 64), *so = aligned_alloc(64, (size_t)rows * 4);
        for (int64_t i = 0; i < rows * 16; i++) lut[i] = rand() / (float)RAND_MAX - 0.5f;
        double t0 = now();
        sq_lut_quantize_tables(bits, lut, 0, rows, qt, sc, so);
        printf("table codes: %.2f us per row of %d entries\n", (now() - t0) * 1e6 / rows, 1 << bits);
        free(lut); free(so);
    }
    const int ms[] = {1, 2, 4, 8};
    for (int i = 0; i < 4; i++) {
        int m = ms[i];
        double best = 1e9;
        for (int r = 0; r < 20; r++) {
            double t0 = now();
            for (int it = 0; it < 20; it++) sq_lut_gemm_i8(bits, w, qt, sc, off, xq, d, sx, m, y, rows, kpad, 0, rows);
            double dt = (now() - t0) / 20;
            if (dt < best) best = dt;
        }
        double macs = (double)rows * kpad * m;
        printf("%d-bit %lldx%lld (padded %lld), %d token(s): %.1f us, %.1f G products/s, %.1f per cycle at 3.1 GHz\n",
               bits, (long long)rows, (long long)k, (long long)kpad, m, best * 1e6, macs / best / 1e9, macs / best / 3.1e9);
    }
    return 0;
}
