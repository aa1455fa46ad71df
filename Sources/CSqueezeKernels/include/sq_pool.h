#ifndef SQ_POOL_H
#define SQ_POOL_H
#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// A persistent pool of worker threads for fork-join parallel loops.
/// The calling thread takes part as worker 0; workers spin briefly, then sleep.
typedef struct sq_pool sq_pool;

/// The body of a parallel loop: called once per task index in [0, n_tasks).
typedef void (*sq_task_fn)(void *ctx, int64_t task, int thread);

/// Creates a pool with `n_threads` threads in all (including the caller). n_threads >= 1.
sq_pool *sq_pool_create(int n_threads);
/// Stops and joins the workers, frees the pool.
void sq_pool_destroy(sq_pool *pool);
/// Number of threads (including the caller).
int sq_pool_size(const sq_pool *pool);
/// Runs fn(ctx, t, thread) for every t in [0, n_tasks) on up to `max_threads` threads
/// (<= 0: all), returns when all tasks are done. Not re-entrant: one run at a time
/// per pool (nested calls from inside a task run serially on the calling thread).
void sq_pool_run(sq_pool *pool, sq_task_fn fn, void *ctx, int64_t n_tasks, int max_threads);

/// Number of online CPUs.
int sq_cpu_count(void);

#ifdef __cplusplus
}
#endif
#endif
