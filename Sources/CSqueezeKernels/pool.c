// Persistent fork-join worker pool. Invariants:
// - `generation` increases by one per sq_pool_run; a worker that has seen generation g
//   waits for g+1 before taking tasks again.
// - Tasks are claimed by atomic increment of `next_task`; `done_workers` counts workers
//   that finished the current generation; the caller returns when it reaches n_active-1.
#define _GNU_SOURCE
#include "sq_pool.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SQ_PAUSE() _mm_pause()
#else
#define SQ_PAUSE() do {} while (0)
#endif

struct sq_pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    _Atomic uint64_t generation;
    _Atomic int64_t next_task;
    _Atomic int done_workers;
    _Atomic int stop;
    _Atomic int in_run;
    // Current job (written by the caller before bumping generation).
    sq_task_fn fn;
    void *ctx;
    int64_t n_tasks;
    int n_active;
};

typedef struct { sq_pool *pool; int index; } worker_arg;

static void run_tasks(sq_pool *p, int thread) {
    sq_task_fn fn = p->fn;
    void *ctx = p->ctx;
    int64_t n = p->n_tasks;
    for (;;) {
        int64_t t = atomic_fetch_add_explicit(&p->next_task, 1, memory_order_relaxed);
        if (t >= n) break;
        fn(ctx, t, thread);
    }
}

static void *worker_main(void *arg) {
    worker_arg *wa = (worker_arg *)arg;
    sq_pool *p = wa->pool;
    int index = wa->index;
    free(wa);
    uint64_t seen = 0;
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen
               && !atomic_load_explicit(&p->stop, memory_order_relaxed)) {
            if (++spins < 20000) { SQ_PAUSE(); continue; }
            pthread_mutex_lock(&p->mutex);
            while (atomic_load_explicit(&p->generation, memory_order_acquire) == seen
                   && !atomic_load_explicit(&p->stop, memory_order_relaxed)) {
                pthread_cond_wait(&p->cond, &p->mutex);
            }
            pthread_mutex_unlock(&p->mutex);
        }
        if (atomic_load_explicit(&p->stop, memory_order_relaxed)) break;
        seen = g;
        if (index < p->n_active) run_tasks(p, index);
        atomic_fetch_add_explicit(&p->done_workers, 1, memory_order_acq_rel);
    }
    return NULL;
}

int sq_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

sq_pool *sq_pool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    sq_pool *p = calloc(1, sizeof(sq_pool));
    if (!p) return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mutex, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof(worker_arg));
        wa->pool = p; wa->index = i;
        pthread_create(&p->threads[i], NULL, worker_main, wa);
    }
    return p;
}

void sq_pool_destroy(sq_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mutex);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mutex);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mutex);
    pthread_cond_destroy(&p->cond);
    free(p->threads);
    free(p);
}

int sq_pool_size(const sq_pool *p) { return p ? p->n_threads : 1; }

void sq_pool_run(sq_pool *p, sq_task_fn fn, void *ctx, int64_t n_tasks, int max_threads) {
    if (n_tasks <= 0) return;
    int n_active = p ? p->n_threads : 1;
    if (max_threads > 0 && max_threads < n_active) n_active = max_threads;
    if (n_tasks < n_active) n_active = (int)n_tasks;
    int expected = 0;
    if (!p || n_active <= 1 || !atomic_compare_exchange_strong(&p->in_run, &expected, 1)) {
        for (int64_t t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    p->fn = fn; p->ctx = ctx; p->n_tasks = n_tasks; p->n_active = n_active;
    atomic_store_explicit(&p->next_task, 0, memory_order_relaxed);
    atomic_store_explicit(&p->done_workers, 0, memory_order_relaxed);
    pthread_mutex_lock(&p->mutex);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mutex);
    run_tasks(p, 0);
    int workers = p->n_threads - 1;
    while (atomic_load_explicit(&p->done_workers, memory_order_acquire) < workers) SQ_PAUSE();
    atomic_store(&p->in_run, 0);
}
