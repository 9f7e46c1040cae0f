/* The thread pool: every task of a job runs exactly once and before pool_run returns, on a worker index in range
 * that runs one task at a time with its own scratch, for 0, 1, odd and large task counts on 1..8 threads; many
 * jobs in a row (workers waking late for a finished job); two pools used at once from two threads, and one pool
 * shared by two callers; a deterministic job gives the same bits on any thread count as a serial loop; a pool
 * freed without a job. Run it under `make tsan` and `make asan` too. */
#include "tests/check.h"
#include "common/err.h"
#include "common/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 8
#define SCRATCH 256

struct count_job {
    atomic_int *runs;          /* per task */
    atomic_int busy[MAX_THREADS];
    atomic_int bad_worker, overlap, bad_scratch;
    const pool *p;
    int threads;
};

static void pause_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

static void count_task(void *ctx, int t, int w)
{
    struct count_job *j = ctx;
    if (w < 0 || w >= j->threads) {
        atomic_fetch_add(&j->bad_worker, 1);
        return;
    }
    if (atomic_exchange(&j->busy[w], 1)) atomic_fetch_add(&j->overlap, 1);
    /* the worker's own scratch: what it writes stays until it reads it back */
    unsigned char *s = pool_scratch(j->p, w);
    if (!s || (uintptr_t)s % 64) {
        atomic_fetch_add(&j->bad_scratch, 1);
    } else {
        memset(s, t & 0xff, SCRATCH);
        if (t % 97 == 0) pause_us(50); /* some tasks finish late: pool_run must wait for them */
        for (int i = 0; i < SCRATCH; i++)
            if (s[i] != (unsigned char)(t & 0xff)) {
                atomic_fetch_add(&j->bad_scratch, 1);
                break;
            }
    }
    atomic_fetch_add(&j->runs[t], 1);
    atomic_store(&j->busy[w], 0);
}

/* Runs one job of n tasks: 0 when every task ran once and nothing else went wrong, else -1 and what in why (it
 * checks nothing itself, so that other threads than main may call it). */
static int run_job(pool *p, int threads, int n, char *why, size_t size)
{
    struct count_job j = {.p = p, .threads = threads};
    j.runs = calloc(n ? n : 1, sizeof *j.runs);
    if (!j.runs) return snprintf(why, size, "out of memory"), -1;
    pool_run(p, count_task, &j, n);
    int wrong = 0;
    for (int t = 0; t < n; t++) wrong += atomic_load(&j.runs[t]) != 1;
    free(j.runs);
    snprintf(why, size, "%d threads, %d tasks: %d not run exactly once, %d bad worker indexes, %d overlapping tasks "
             "on a worker, %d scratch faults", threads, n, wrong, (int)j.bad_worker, (int)j.overlap,
             (int)j.bad_scratch);
    return wrong || j.bad_worker || j.overlap || j.bad_scratch ? -1 : 0;
}

static int run_counted(pool *p, int threads, int n)
{
    char why[256];
    int rc = run_job(p, threads, n, why, sizeof why);
    CHECK(rc == 0, "%s", why);
    return rc;
}

static void exactly_once(void)
{
    const int counts[] = {0, 1, 2, 7, 513, 100000};
    for (int th = 1; th <= MAX_THREADS; th++) {
        pool *p = pool_create(th, SCRATCH);
        CHECK(p != NULL, "pool of %d threads: %s", th, err_msg());
        if (!p) continue;
        CHECK(pool_threads(p) == th, "pool of %d threads says %d", th, pool_threads(p));
        for (size_t k = 0; k < sizeof counts / sizeof *counts; k++) run_counted(p, th, counts[k]);
        /* many short jobs in a row: a worker that wakes after its job closed must not run tasks of the next */
        int failed = 0;
        for (int rep = 0; rep < 300 && !failed; rep++) failed = run_counted(p, th, 1 + rep % 9);
        pool_free(p);
    }
}

/* ---- a deterministic job: task t sums its static share of the data; the shares are added in task order ---- */

#define DATA_N 100003
#define DET_TASKS 13

struct sum_job {
    const float *x;
    float part[DET_TASKS];
};

static void share(int n, int t, int nt, int *lo, int *hi)
{
    *lo = (int)((long long)n * t / nt);
    *hi = (int)((long long)n * (t + 1) / nt);
}

static float sum_range(const float *x, int lo, int hi)
{
    float s = 0;
    for (int i = lo; i < hi; i++) s += x[i];
    return s;
}

static void sum_task(void *ctx, int t, int w)
{
    struct sum_job *j = ctx;
    int lo, hi;
    share(DATA_N, t, DET_TASKS, &lo, &hi);
    j->part[t] = sum_range(j->x, lo, hi);
}

static void deterministic(void)
{
    float *x = malloc(sizeof *x * DATA_N);
    if (!x) return;
    uint32_t r = 12345;
    for (int i = 0; i < DATA_N; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = (float)(r >> 8) / (float)(1 << 24) * 2.0f - 1.0f;
    }
    /* the reference: the same shares summed by a plain loop on this thread */
    float ref = 0;
    for (int t = 0; t < DET_TASKS; t++) {
        int lo, hi;
        share(DATA_N, t, DET_TASKS, &lo, &hi);
        ref += sum_range(x, lo, hi);
    }
    for (int th = 1; th <= MAX_THREADS; th++) {
        pool *p = pool_create(th, 0);
        CHECK(p != NULL && pool_scratch(p, 0) == NULL, "pool of %d threads without scratch", th);
        if (!p) continue;
        for (int rep = 0; rep < 20; rep++) {
            struct sum_job j = {.x = x};
            pool_run(p, sum_task, &j, DET_TASKS);
            float s = 0;
            for (int t = 0; t < DET_TASKS; t++) s += j.part[t];
            if (memcmp(&s, &ref, sizeof s)) {
                CHECK(0, "%d threads: sum %.9g, serial %.9g", th, s, ref);
                break;
            }
        }
        pool_free(p);
    }
    free(x);
}

/* ---- two pools at once, each from its own thread; then one pool shared by two callers ---- */

struct side {
    pool *p;
    int threads, failed;
    char why[256];
};

static void *side_main(void *arg)
{
    struct side *s = arg;
    for (int rep = 0; rep < 200 && !s->failed; rep++)
        s->failed = run_job(s->p, s->threads, 1 + rep % 37, s->why, sizeof s->why);
    return NULL;
}

/* Runs side_main on x and y from two threads at once. */
static void run_sides(struct side *x, struct side *y, const char *what)
{
    pthread_t tx, ty;
    pthread_create(&tx, NULL, side_main, x);
    pthread_create(&ty, NULL, side_main, y);
    pthread_join(tx, NULL);
    pthread_join(ty, NULL);
    CHECK(!x->failed && !y->failed, "%s: %s", what, x->failed ? x->why : y->why);
}

static void concurrent(void)
{
    struct side a = {pool_create(3, SCRATCH), 3, 0, ""}, b = {pool_create(2, SCRATCH), 2, 0, ""};
    CHECK(a.p && b.p, "two pools: %s", err_msg());
    if (a.p && b.p) run_sides(&a, &b, "two pools used at once from two threads");
    pool_free(a.p);
    pool_free(b.p);

    /* both callers on one pool: their jobs take turns */
    struct side c = {pool_create(4, SCRATCH), 4, 0, ""}, d = c;
    CHECK(c.p != NULL, "shared pool: %s", err_msg());
    if (c.p) run_sides(&c, &d, "one pool shared by two callers");
    pool_free(c.p);
}

static void lifetime(void)
{
    /* created and freed with no job: the workers are waiting and must all be joined */
    for (int th = 1; th <= MAX_THREADS; th++) {
        pool *p = pool_create(th, SCRATCH);
        CHECK(p != NULL, "pool of %d threads: %s", th, err_msg());
        pool_free(p);
    }
    pool_free(NULL);
    pool *p = pool_create(0, SCRATCH); /* fewer than one thread: the caller alone */
    CHECK(p && pool_threads(p) == 1, "pool_create(0) gives the caller alone");
    if (p) run_counted(p, 1, 5);
    pool_free(p);
}

int main(void)
{
    exactly_once();
    deterministic();
    concurrent();
    lifetime();
    return check_done("test_pool");
}
