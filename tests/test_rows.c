/* The row router (augment/genie/rows.h) without threads: each kind of row comes at the options' share (within a
 * binomial tolerance), generated rows only where the options allow them, pair bits shared by a pair, and
 * rows_next_generated the same as looking at every row. Then with threads: the rows a loader pool actually filled
 * (tail rows from the Few classes, generated rows from a sync GeNIe module) are exactly the router's, for 1 and for
 * 3 loader threads. */
#include "tests/check.h"
#include "augment/genie/module.h"
#include "augment/genie/rows.h"
#include "common/err.h"
#include "src/train/loader.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define N 200000

/* |count - n p| within 5 standard deviations of a binomial(n, p) */
static int binomial_ok(long count, long n, double p)
{
    return fabs(count - n * p) <= 5 * sqrt(n * p * (1 - p)) + 1;
}

static dataset ds;

static void flat_confusion(void *ctx, double *m)
{
    (void)ctx;
    for (int i = 0; i < ds.classes * ds.classes; i++) m[i] = i % (ds.classes + 1) == 0 ? 90 : 1;
}

/* A sync GeNIe run through a loader pool of `threads` threads (with cutmix: CutMix on every row): every row's
 * dataset index (-1: generated) into idx, its label into y (classes floats a row) when y is not NULL, and the rows
 * the loader asked of the router into r. */
#define BATCH 16
#define NB 8
static int threaded_run(int threads, int cutmix, int *idx, float *y, rows_opts *r)
{
    genie_cfg c;
    genie_cfg_default(&c);
    c.mode = GENIE_MODE_GENIE, c.sync = 1, c.warmup = 1, c.share = 0.4, c.reuse = 4, c.ring = 8, c.steps = 4,
    c.r = 0.5, c.snapshot_every = 2, c.sources = GENIE_SOURCES_RANDOM, c.batch = 1;
    snprintf(c.model, sizeof c.model, "data/models/fmnist-ldm");
    loader_opts lo = {.ds = &ds, .aug = {.preset = AUG_EVAL, .w = 28, .h = 28, .c = 1}, .batch = BATCH,
                      .threads = threads, .slots = 4, .seed = 11, .start = 320, .sampling = SAMPLE_SHUFFLE,
                      .tail_share = 0.5, .pair_source = 0.5, .cutmix = cutmix};
    module_opts mo = {.cfg = &c, .cfg_path = "test.cfg", .classes = ds.classes, .labels = ds.labels,
                      .n_real = ds.n_real, .paths = ds.paths, .cls = ds.cls, .net_cfg = "cfg/fmnist.cfg",
                      .seed = lo.seed, .confusion = flat_confusion, .start = lo.start, .start_iter = 20,
                      .batch = BATCH, .lookahead = loader_lookahead(&lo)};
    loader_rows(&lo, &mo.rows);
    module *m = module_start(&mo);
    if (!m) return err_set("module: %s", err_msg());
    module_snapshot(m, NULL, 20);
    lo.genie = m;
    *r = mo.rows;
    module_rows(m, r);
    loader *l = loader_start(&lo);
    int rc = 0;
    for (int b = 0; b < NB && rc == 0; b++) {
        const loader_batch *lb = loader_next(l);
        if (!lb) {
            rc = err_set("batch %d: %s", b, err_msg());
            break;
        }
        memcpy(idx + b * BATCH, lb->index, BATCH * sizeof *idx);
        if (y) memcpy(y + (size_t)b * BATCH * ds.classes, lb->y, (size_t)BATCH * ds.classes * sizeof *y);
        loader_release(l, lb);
        module_snapshot(m, NULL, 21 + b);
    }
    module_stats st;
    module_get_stats(m, &st);
    module_close(m);
    loader_stop(l);
    module_stop(m);
    if (rc == 0 && st.shortfall) rc = err_set("%llu rows short in sync mode", (unsigned long long)st.shortfall);
    return rc;
}

int main(void)
{
    /* the router alone: shares of each kind */
    rows_opts o = {.seed = 5, .tail_share = 0.3, .tail_classes = 2, .pair_source = 0.6, .share = 0.4,
                   .first_generated = 1000};
    long tail = 0, gen = 0, gen_outside = 0, early = 0, pairs = 0, pair_split = 0;
    for (uint64_t k = 0; k < N; k++) {
        unsigned kind = rows_kind(&o, k);
        tail += (kind & ROW_TAIL) != 0;
        if (kind & ROW_GENERATED) {
            gen += k >= 1000 && (kind & ROW_TAIL);
            gen_outside += !(kind & ROW_TAIL);
            early += k < 1000;
        }
        if (k % 2 == 0) {
            unsigned other = rows_kind(&o, k + 1);
            pairs += (kind & ROW_PAIR_SOURCE) != 0;
            pair_split += (kind & ROW_PAIR_SOURCE) != (other & ROW_PAIR_SOURCE);
        }
    }
    long tail_after = 0;
    for (uint64_t k = 1000; k < N; k++) tail_after += (rows_kind(&o, k) & ROW_TAIL) != 0;
    CHECK(binomial_ok(tail, N, 0.3), "%ld tail rows of %d at tail_share 0.3", tail, N);
    CHECK(binomial_ok(gen, tail_after, 0.4), "%ld generated of %ld tail rows at share 0.4", gen, tail_after);
    CHECK(gen_outside == 0 && early == 0, "%ld generated rows outside the tail, %ld before the first", gen_outside, early);
    CHECK(binomial_ok(pairs, N / 2, 0.6) && pair_split == 0, "%ld of %d pairs show the source, %ld pairs split",
          pairs, N / 2, pair_split);

    /* without a tail share generated rows are share of all rows; with a tail share but no tail, none; share 0, none */
    rows_opts all = {.seed = 9, .share = 0.25};
    long g = 0, t = 0;
    for (uint64_t k = 0; k < N; k++) {
        unsigned kind = rows_kind(&all, k);
        g += (kind & ROW_GENERATED) != 0;
        t += (kind & (ROW_TAIL | ROW_PAIR_SOURCE)) != 0;
    }
    CHECK(binomial_ok(g, N, 0.25) && t == 0, "no tail share: %ld generated of %d at 0.25, %ld tail/pair rows", g, N, t);
    rows_opts none = {.seed = 9, .share = 0.5, .tail_share = 0.5, .tail_classes = 0};
    rows_opts zero = {.seed = 9, .share = 0, .tail_share = 0.5, .tail_classes = 3};
    long any = 0;
    for (uint64_t k = 0; k < 20000; k++) any += rows_kind(&none, k) != 0 || (rows_kind(&zero, k) & ROW_GENERATED);
    CHECK(any == 0, "%ld rows generated or tail with no tail class, or with share 0", any);
    CHECK(rows_next_generated(&none, 0, UINT64_MAX) == UINT64_MAX && rows_next_generated(&zero, 0, UINT64_MAX) == UINT64_MAX,
          "rows_next_generated scanned where no row can take a sample");
    /* a tiny share: rows_next_generated stops at the limit */
    rows_opts tiny = {.seed = 9, .share = 1e-12};
    CHECK(rows_next_generated(&tiny, 0, 100000) == 100000, "tiny share found a row below 100000");
    /* the seed decides: another seed, other rows */
    rows_opts o2 = o;
    o2.seed = 6;
    long same = 0;
    for (uint64_t k = 0; k < 1000; k++) same += rows_kind(&o, k) == rows_kind(&o2, k);
    CHECK(same < 900, "seeds 5 and 6 agree on %ld of 1000 rows", same);

    /* rows_next_generated is the first row rows_kind calls generated, from anywhere, up to any limit */
    int next_ok = 1;
    uint64_t k = 0;
    for (int i = 0; i < 2000 && next_ok; i++) {
        uint64_t from = k, got = rows_next_generated(&o, from, from + 40);
        uint64_t want = from;
        while (want < from + 40 && !(rows_kind(&o, want) & ROW_GENERATED)) want++;
        next_ok &= got == want;
        k = got < from + 40 ? got + 1 : from + 40;
    }
    CHECK(next_ok, "rows_next_generated differs from a scan of rows_kind near row %llu", (unsigned long long)k);

    /* threaded: what a loader pool filled with a sync GeNIe module is what the router says, for any thread count */
    CHECK(dataset_load("data/fmnist/lt/train.list", "data/fmnist/labels.list", 10, &ds) == 0, "%s", err_msg());
    if (ds.n == 0) return check_done("rows");
    static int idx1[NB * BATCH], idx3[NB * BATCH];
    rows_opts r1, r3;
    int rc1 = threaded_run(1, 0, idx1, NULL, &r1);
    CHECK(rc1 == 0, "1 thread: %s", err_msg());
    int rc3 = threaded_run(3, 0, idx3, NULL, &r3);
    CHECK(rc3 == 0, "3 threads: %s", err_msg());
    CHECK(!memcmp(idx1, idx3, sizeof idx1), "1 and 3 loader threads filled different rows");
    int gen_rows = 0, tail_rows = 0, wrong = 0;
    for (int i = 0; rc1 == 0 && i < NB * BATCH; i++) {
        uint64_t row = 320 + (uint64_t)i;
        unsigned kind = rows_kind(&r1, row);
        int few = idx1[i] >= 0 && ds.real_count[ds.cls[idx1[i]]] < 20;
        /* a row that shows the source of the generated sample beside it is that source, of any class */
        int shows_source = (kind & ROW_PAIR_SOURCE) && (rows_kind(&r1, row ^ 1) & ROW_GENERATED);
        gen_rows += (kind & ROW_GENERATED) != 0;
        tail_rows += (kind & ROW_TAIL) != 0;
        if ((kind & ROW_GENERATED) ? idx1[i] != -1 : idx1[i] < 0 || ((kind & ROW_TAIL) && !few && !shows_source)) {
            if (wrong++ < 5) fprintf(stderr, "row %llu: kind %u, index %d\n", (unsigned long long)row, kind, idx1[i]);
        }
    }
    /* warmup 1 + lookahead 4: the first 5 batches have no generated row */
    int before = 0;
    for (int i = 0; i < 5 * BATCH; i++) before += (rows_kind(&r1, 320 + (uint64_t)i) & ROW_GENERATED) != 0;
    CHECK(wrong == 0 && gen_rows > 3 && tail_rows > 20 && before == 0,
          "%d rows not what the router says (%d generated, %d tail rows; %d generated in warmup + lookahead)", wrong,
          gen_rows, tail_rows, before);

    /* CutMix takes online generated rows as it takes every other row: about half of them mixed, labels summing
     * to 1, and the same rows as without it */
    static int idxm[NB * BATCH];
    static float ym[NB * BATCH * 10];
    rows_opts rm;
    int rcm = ds.classes == 10 ? threaded_run(2, 1, idxm, ym, &rm) : err_set("%d classes", ds.classes);
    CHECK(rcm == 0, "cutmix: %s", err_msg());
    int gen_mixed = 0, gen_n = 0, real_mixed = 0, sums_ok = 1;
    for (int i = 0; rcm == 0 && i < NB * BATCH; i++) {
        float sum = 0, mx = 0;
        for (int c = 0; c < 10; c++) sum += ym[i * 10 + c], mx = fmaxf(mx, ym[i * 10 + c]);
        sums_ok &= fabsf(sum - 1) < 1e-5f;
        gen_n += idxm[i] == -1;
        gen_mixed += idxm[i] == -1 && mx < 0.95f;
        real_mixed += idxm[i] >= 0 && mx < 0.95f;
    }
    CHECK(rcm == 0 && !memcmp(idx1, idxm, sizeof idx1) && sums_ok && gen_mixed > 0 && gen_mixed < gen_n &&
              real_mixed > 0,
          "cutmix: same rows %d, sums ok %d, %d of %d generated rows mixed, %d real rows mixed",
          !memcmp(idx1, idxm, sizeof idx1), sums_ok, gen_mixed, gen_n, real_mixed);
    dataset_free(&ds);
    return check_done("rows");
}
