// Fork-join cost of the worker pool (Sources/CSqueezeKernels/pool.c): time of sq_pool_run with two
// equal tasks on two threads against one task alone, for tasks of 0 to 20000 float additions
// (best of 5 x 20000 runs). The difference is what a fork-join costs beyond the work.
// Build: S=Sources/CSqueezeKernels; clang -O2 -I$S/include scripts/harness/pool_roundtrip_harness.c $S/pool.c -o /tmp/pool_rt -lpthread && /tmp/pool_rt
#include "sq_pool.h"
#include <stdio.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static volatile float sink;

static void task(void *ctx, int64_t t, int thread) {
    (void)t; (void)thread;
    float s = 0;
    const int n = *(const int *)ctx;
    for (int i = 0; i < n; i++) s += (float)i * 0.5f;
    sink = s;
}

int main(void) {
    sq_pool *p = sq_pool_create(2);
    for (int work = 0; work <= 20000; work = work ? work * 10 : 200) {
        double both = 1e9, alone = 1e9;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = now();
            for (int i = 0; i < 20000; i++) sq_pool_run(p, task, &work, 2, 2);
            double t = (now() - t0) / 20000;
            if (t < both) both = t;
            t0 = now();
            for (int i = 0; i < 20000; i++) task(&work, 0, 0);
            t = (now() - t0) / 20000;
            if (t < alone) alone = t;
        }
        printf("work %6d: two tasks on two threads %.2f us, one task alone %.2f us, fork-join beyond the work %.2f us\n",
               work, both * 1e6, alone * 1e6, (both - alone) * 1e6);
    }
    sq_pool_destroy(p);
    return 0;
}
