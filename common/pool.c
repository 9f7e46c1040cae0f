/* The thread pool of pool.h.
 *
 * A job is published under `mu` with a new generation number; a worker that wakes for that generation while the
 * job is still open joins it (counted in `active`) and claims tasks from an atomic counter. The caller claims
 * tasks too; once none are left it closes the job, so that a worker waking late stays out, and waits until the
 * workers that joined have finished theirs. The caller never waits for a worker that has not woken up, and no
 * worker touches a job after its caller has returned. */
#include "common/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "common/err.h"

struct worker {
    pool *p;
    int id;
};

struct pool {
    int n;                 /* threads, the caller included */
    pthread_t *th;         /* the n-1 workers */
    struct worker *args;
    void **scratch;        /* nscratch buffers (n once started), or NULL */
    int nscratch;
    pthread_mutex_t call;  /* one job at a time */
    pthread_mutex_t mu;    /* guards what follows but `next` */
    pthread_cond_t start, done;
    unsigned long gen;     /* the current job's number */
    int open;              /* workers may still join the current job */
    int active;            /* workers inside the current job */
    int stop;
    pool_fn fn;
    void *ctx;
    int ntasks;
    atomic_int next;       /* the next unclaimed task */
};

static void drain(pool *p, pool_fn fn, void *ctx, int ntasks, int worker)
{
    for (int t; (t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed)) < ntasks;) fn(ctx, t, worker);
}

static void *worker_main(void *arg)
{
    const struct worker *w = arg;
    pool *p = w->p;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->gen == seen) pthread_cond_wait(&p->start, &p->mu);
        if (p->stop) break;
        seen = p->gen;
        if (!p->open) continue; /* woke after its caller closed it */
        pool_fn fn = p->fn;
        void *ctx = p->ctx;
        int ntasks = p->ntasks;
        p->active++;
        pthread_mutex_unlock(&p->mu);
        drain(p, fn, ctx, ntasks, w->id);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

void pool_run(pool *p, pool_fn fn, void *ctx, int ntasks)
{
    if (ntasks <= 0) return;
    pthread_mutex_lock(&p->call);
    if (p->n == 1 || ntasks == 1) {
        for (int t = 0; t < ntasks; t++) fn(ctx, t, 0);
        pthread_mutex_unlock(&p->call);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->ntasks = ntasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    p->open = 1;
    p->gen++;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    drain(p, fn, ctx, ntasks, 0);
    pthread_mutex_lock(&p->mu);
    p->open = 0;
    while (p->active > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&p->call);
}

int pool_threads(const pool *p) { return p->n; }

void *pool_scratch(const pool *p, int worker) { return p->scratch ? p->scratch[worker] : NULL; }

pool *pool_create(int threads, size_t scratch_bytes)
{
    if (threads < 1) threads = 1;
    pool *p = calloc(1, sizeof *p);
    if (!p) {
        err_set("pool: out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->call, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->next, 0);
    p->n = 1; /* until the workers start: what pool_free joins */
    p->th = calloc((size_t)threads, sizeof *p->th);
    p->args = calloc((size_t)threads, sizeof *p->args);
    int ok = p->th && p->args;
    if (ok && scratch_bytes) {
        ok = (p->scratch = calloc((size_t)threads, sizeof *p->scratch)) != NULL;
        while (ok && p->nscratch < threads) {
            void *b;
            ok = !posix_memalign(&b, 64, scratch_bytes);
            if (ok) p->scratch[p->nscratch++] = b;
        }
    }
    if (!ok) {
        err_set("pool: out of memory for %d threads (scratch of %zu MB each)", threads, scratch_bytes >> 20);
        pool_free(p);
        return NULL;
    }
    for (; p->n < threads; p->n++) {
        p->args[p->n] = (struct worker){p, p->n};
        if (pthread_create(&p->th[p->n - 1], NULL, worker_main, &p->args[p->n]) != 0) {
            err_set("pool: cannot start %d threads (started %d)", threads, p->n);
            pool_free(p);
            return NULL;
        }
    }
    return p;
}

void pool_free(pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n - 1; i++) pthread_join(p->th[i], NULL);
    for (int i = 0; i < p->nscratch; i++) free(p->scratch[i]);
    free(p->scratch);
    free(p->args);
    free(p->th);
    pthread_mutex_destroy(&p->call);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    free(p);
}
