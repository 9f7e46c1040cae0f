/* A persistent thread pool: the caller and n-1 workers share the tasks of one job.
 *
 * Determinism is the caller's: a job is cut into tasks whose bounds depend only on the data, each task writes
 * its own part of the output, and which thread runs which task changes nothing. So a job gives the same bits on
 * any number of threads. Each thread has a worker index (the caller 0, the workers 1..n-1) and, when asked for,
 * its own scratch buffer. */
#ifndef GENIE_POOL_H
#define GENIE_POOL_H
#include <stddef.h>

typedef struct pool pool;

/* Task `task` of a job, run by worker `worker` (0..pool_threads-1; no two tasks run at once on one worker). */
typedef void (*pool_fn)(void *ctx, int task, int worker);

/* `threads` threads including the caller (>= 1) and, when scratch_bytes > 0, that many bytes of 64-byte-aligned
 * scratch per thread. NULL + err_msg() when memory or threads are short. */
pool *pool_create(int threads, size_t scratch_bytes);

/* Runs fn(ctx, t, worker) once for every t in 0..ntasks-1 and returns when all have finished; the caller runs
 * tasks too. Jobs on one pool run one at a time (a second caller waits); fn must not start a job on its own pool. */
void pool_run(pool *p, pool_fn fn, void *ctx, int ntasks);

int pool_threads(const pool *p);
/* Worker `worker`'s scratch (NULL when the pool has none): only that worker's tasks may use it. */
void *pool_scratch(const pool *p, int worker);

/* Stops and joins the workers and frees the scratch; no job may be running. NULL does nothing. */
void pool_free(pool *p);

#endif
