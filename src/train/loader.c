#include "src/train/loader.h"
#include "augment/genie/module.h"
#include "augment/genie/recipe.h"
#include "common/err.h"
#include "common/util.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum slot_state { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_IN_USE };

typedef struct {
    loader_batch b;
    enum slot_state state;
    int gen_served, gen_short;    /* rows that asked for a generated sample: got one, took a real image */
    /* The batch this slot takes next (slot index + k * nslots). Without it a fast worker could fill a just-freed
     * slot with a later batch while the worker that claimed the slot's own batch was still waking up: the
     * consumer would then wait for a batch that can never be written. */
    uint64_t turn;
} slot;

struct loader {
    loader_opts o;
    rows_opts rows;               /* what each row is: the module's rule too (augment/genie/rows.h) */
    int nslots, row, classes, min_w, min_h;
    slot *slots;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t ready, freed;
    uint64_t next_claim, next_take, total_batches; /* total_batches: SEQUENTIAL only */
    uint64_t gen_rows;            /* sync GeNIe: generated rows in the batches claimed so far */
    int stop, failed, running;
    char fail_msg[1024];
    unsigned char *bad;           /* per dataset index: already reported as bad */
    uint64_t images, bad_images, replaced;
    uint64_t gen_served, gen_short; /* of the batches taken: counted there, not when filled ahead */
    double wait_s;
};

#define MAX_REPLACEMENTS 64

/* A bijection on [0, n) keyed by (seed, epoch): a 4-round Feistel network on the next even power of two,
 * cycle-walking until the value falls in range. No per-epoch array, no synchronisation between threads. */
static uint64_t permute(uint64_t x, uint64_t n, uint64_t seed, uint64_t epoch)
{
    int bits = 2;
    while (((uint64_t)1 << bits) < n) bits += 2;
    int half = bits / 2;
    uint64_t mask = ((uint64_t)1 << half) - 1, key = philox_mix(seed, epoch);
    do {
        uint64_t l = x >> half, r = x & mask;
        for (int round = 0; round < 4; round++) {
            uint32_t w[4];
            philox_block(key, PHILOX_SHUFFLE, r << 2 | (uint64_t)round, w);
            uint64_t t = r;
            r = (l ^ w[0]) & mask;
            l = t;
        }
        x = l << half | r;
    } while (x >= n);
    return x;
}

/* A Few class (fewer than 20 real images, at least one sample), uniformly, then one of its real or generated
 * samples; -1 when the data set has no Few class. */
static int is_tail(const dataset *ds, int c) { return recipe_shot_group(ds->real_count[c]) == SHOT_FEW && ds->count[c] > 0; }

static int tail_classes(const dataset *ds)
{
    int tails = 0;
    for (int c = 0; c < ds->classes; c++) tails += is_tail(ds, c);
    return tails;
}

static int tail_index(const dataset *ds, double gen_share, philox_t *g)
{
    int tails = tail_classes(ds);
    if (!tails) return -1;
    int pick = philox_int(g, tails);
    for (int c = 0; c < ds->classes; c++) {
        if (!is_tail(ds, c) || pick-- != 0) continue;
        /* members[c] holds the class's real images first (dataset order), then its generated samples */
        int real = ds->real_count[c], gen = ds->count[c] - real;
        if (gen_share > 0 && real > 0 && gen > 0)
            return philox_uniform(g) < gen_share ? ds->members[c][real + philox_int(g, gen)]
                                                 : ds->members[c][philox_int(g, real)];
        return ds->members[c][philox_int(g, ds->count[c])];
    }
    return -1;
}

void loader_rows(const loader_opts *o, rows_opts *r)
{
    /* a sequential pass (validation) has no tail, pair or generated rows */
    int seq = o->sampling == SAMPLE_SEQUENTIAL;
    *r = (rows_opts){.seed = o->seed, .tail_share = seq ? 0 : o->tail_share, .pair_source = seq ? 0 : o->pair_source};
    if (r->tail_share > 0) r->tail_classes = tail_classes(o->ds);
}

/* Sample k's dataset index; kind is rows_kind(r, k). */
static int sample_draw(const loader_opts *o, const rows_opts *r, uint64_t k, unsigned kind)
{
    const dataset *ds = o->ds;
    /* with a tail share, generated samples enter only through the tail rows */
    uint64_t n = (uint64_t)(r->tail_share > 0 ? ds->n_real : ds->n);
    philox_t g;
    if (kind & ROW_TAIL) {
        rows_tail_stream(r, k, &g);
        return tail_index(ds, o->gen_share, &g);
    }
    switch (o->sampling) {
    case SAMPLE_SHUFFLE: return (int)permute(k % n, n, o->seed, k / n);
    case SAMPLE_REPLACE:
        philox_init(&g, o->seed, philox_mix(k, PHILOX_REPLACE));
        return philox_int(&g, (int)n);
    case SAMPLE_BALANCED: {
        philox_init(&g, o->seed, philox_mix(k, PHILOX_BALANCED));
        int c;
        do c = philox_int(&g, ds->classes);
        while (ds->count[c] == 0);
        int idx;
        do idx = ds->members[c][philox_int(&g, ds->count[c])];
        while ((uint64_t)idx >= n);   /* only real images when generated ones enter through the tail rows */
        return idx;
    }
    case SAMPLE_SEQUENTIAL: break;
    }
    return (int)k;
}

/* With pair_source, a GeNIe sample's source image beside it in the batch: the pair differs in what the sample was
 * made to show, not in the source's look, so the classifier learns that difference rather than moving the
 * source class's boundary (the source's class pays for hard negatives otherwise). Row k of kind `kind` (of r): */
static int row_index(const loader_opts *o, const rows_opts *r, uint64_t k, unsigned kind)
{
    const dataset *ds = o->ds;
    int idx = sample_draw(o, r, k, kind);
    if (!(kind & ROW_PAIR_SOURCE) || idx < 0 || idx >= ds->n_real) return idx;
    int other = sample_draw(o, r, k ^ 1, rows_kind(r, k ^ 1));
    if (other < ds->n_real || ds->src_idx[other] < 0) return idx;
    return ds->src_idx[other];
}

int loader_sample_index(const loader_opts *o, uint64_t k)
{
    rows_opts r;
    loader_rows(o, &r);
    return row_index(o, &r, k, rows_kind(&r, k));
}

/* Per-thread scratch, allocated once. */
typedef struct {
    img_u8 img;
    float *tmp, *other;
    int pair_src;          /* pair_source online: the source (list index) of the generated sample beside this row */
} scratch;

/* Decodes dataset image idx into sc->img. A bad image is reported once (per path, whole run) and counted.
 * alt: its VAE round trip instead. */
static int decode_path(loader *l, int idx, const char *path, scratch *sc)
{
    if ((l->o.aug.c == 1 ? imgio_load_luma : imgio_load)(path, l->min_w, l->min_h, &sc->img) == 0) return 0;
    if (!__atomic_exchange_n(&l->bad[idx], 1, __ATOMIC_RELAXED)) {
        fprintf(stderr, "genie: bad image skipped: %s\n", err_msg());
        __atomic_fetch_add(&l->bad_images, 1, __ATOMIC_RELAXED);
    }
    return -1;
}

static int decode(loader *l, int idx, scratch *sc) { return decode_path(l, idx, l->o.ds->paths[idx], sc); }

/* Decodes sample k's image, or a deterministic replacement if it is bad; returns the index used or -1. */
static int decode_or_replace(loader *l, uint64_t k, int idx, uint64_t purpose, scratch *sc)
{
    if (decode(l, idx, sc) == 0) return idx;
    if (l->o.sampling == SAMPLE_SEQUENTIAL) return -1;
    philox_t g;
    philox_init(&g, l->o.seed, philox_mix(k, PHILOX_BAD_IMAGE + purpose));
    for (int a = 0; a < MAX_REPLACEMENTS; a++) {
        int r = philox_int(&g, l->o.ds->n);
        if (decode(l, r, sc) == 0) {
            __atomic_fetch_add(&l->replaced, 1, __ATOMIC_RELAXED);
            return r;
        }
    }
    return -1;
}

/* A sample's label with weight lam, then label smoothing: all on its class, or, with gen_soft, a generated
 * sample's mass shared with its source's class (source < 0 or the same class: all on the target). */
static void add_label(const loader *l, float *y, int target, int source, float lam)
{
    const loader_opts *o = &l->o;
    if (o->gen_soft > 0 && source >= 0 && source != target) {
        y[target] += lam * (float)(1 - o->gen_soft);
        y[source] += lam * (float)o->gen_soft;
    } else {
        y[target] += lam;
    }
    if (o->label_smooth > 0)
        for (int j = 0; j < l->classes; j++) y[j] = y[j] * (1 - o->label_smooth) + o->label_smooth / l->classes;
}

/* mixup or cutmix, each with probability 0.5 a row (drawn from g): a partner image of the dataset mixed into the
 * row's input x, its label's share into y. Returns the row's own share of the label (1: not mixed), -1 when no
 * partner image decodes. */
static float mix_partner(loader *l, uint64_t k, philox_t *g, float *x, float *y, scratch *sc)
{
    const loader_opts *o = &l->o;
    if (!(o->mixup || o->cutmix) || !(philox_uniform(g) < 0.5f)) return 1;
    int cut = o->cutmix && (!o->mixup || (philox_next(g) & 1));
    int other = decode_or_replace(l, k, philox_int(g, o->ds->n), 1, sc);
    if (other < 0) return -1;
    philox_t g2;
    philox_init(&g2, o->seed, philox_mix(k, PHILOX_PARTNER));
    transform_sample(other >= o->ds->n_real ? &o->gen_aug : &o->aug, &sc->img, &g2, sc->other, sc->tmp);
    int w = o->aug.w, h = o->aug.h, c = o->aug.c;
    float lam;
    if (cut) {
        /* A rectangle of 9..64% of the area (side fractions 0.3..0.8) from the partner. */
        float f = philox_range(g, 0.3f, 0.8f);
        int rw = (int)(f * w + 0.5f), rh = (int)(f * h + 0.5f);
        int x0 = philox_int(g, w - rw + 1), y0 = philox_int(g, h - rh + 1);
        for (int ch = 0; ch < c; ch++)
            for (int yy = y0; yy < y0 + rh; yy++)
                memcpy(x + ((size_t)ch * h + yy) * w + x0, sc->other + ((size_t)ch * h + yy) * w + x0, rw * sizeof *x);
        lam = 1 - (float)(rw * rh) / (w * h);
    } else {
        for (int j = 0; j < l->row; j++) x[j] = 0.5f * (x[j] + sc->other[j]);
        lam = 0.5f;
    }
    y[o->ds->cls[other]] += 1 - lam;
    return lam;
}

/* Fills row i of the slot with sample k: image, augmentation, optional mixup/cutmix partner, soft labels; a real
 * image only when may_generate is 0. */
static int fill_row(loader *l, slot *s, int i, uint64_t k, scratch *sc, uint64_t *gen_next, int may_generate)
{
    const loader_opts *o = &l->o;
    float *x = s->b.x + (size_t)i * l->row, *y = s->b.y + (size_t)i * l->classes;
    memset(y, 0, l->classes * sizeof *y);
    const dataset *ds = o->ds;
    philox_t g;
    philox_init(&g, o->seed, philox_mix(k, PHILOX_SAMPLE));
    module_label lab;
    unsigned kind = rows_kind(&l->rows, k);
    int wants = may_generate && (kind & ROW_GENERATED);
    /* sync: row number *gen_next waits for its sample (a closed ring, at the end of a run, leaves it real) */
    int got = wants && (module_sync(o->genie)
                            ? module_take_seq(o->genie, (*gen_next)++, &sc->img, &lab)
                            : module_take(o->genie, &sc->img, &lab)) == 0;
    if (wants) got ? s->gen_served++ : s->gen_short++;
    if (got) {
        if (o->pair_source > 0) sc->pair_src = lab.source_index;
        /* an online generated sample: the same augmentation as a real image, mixup/cutmix included (as an offline
         * one gets: otherwise only the generated rows would come unmixed), its target's label (soft towards its
         * source with gen_soft), left out of the training statistics */
        s->b.index[i] = -1;
        s->b.truth[i] = -1;
        transform_sample(&o->gen_aug, &sc->img, &g, x, sc->tmp);
        float lam = mix_partner(l, k, &g, x, y, sc);
        if (lam < 0) return -1;
        add_label(l, y, lab.target, lab.source_class, lam);
        return 0;
    }
    int idx = row_index(o, &l->rows, k, kind);
    if (sc->pair_src >= 0) {   /* the other row of the pair holds an online sample: its source, as offline */
        if (kind & ROW_PAIR_SOURCE) idx = sc->pair_src;
        sc->pair_src = -1;
    }
    /* the draw is made whether or not the image has a round trip, so the rest of the stream stays put */
    int alt = o->roundtrip_p > 0 && philox_uniform(&g) < o->roundtrip_p && idx < ds->n_real && ds->alt && ds->alt[idx];
    if (alt && decode_path(l, idx, ds->alt[idx], sc) == 0) {
        /* the round trip took the sample's place */
    } else {
        idx = decode_or_replace(l, k, idx, 0, sc);
    }
    s->b.index[i] = idx;
    s->b.truth[i] = -1;
    if (idx < 0) {
        memset(x, 0, l->row * sizeof *x);
        return o->sampling == SAMPLE_SEQUENTIAL ? 0 : -1;
    }
    transform_sample(idx >= ds->n_real ? &o->gen_aug : (kind & ROW_TAIL) ? &o->tail_aug : &o->aug, &sc->img, &g, x,
                     sc->tmp);
    float lam = mix_partner(l, k, &g, x, y, sc);
    if (lam < 0) return -1;
    add_label(l, y, ds->cls[idx], ds->src_cls ? ds->src_cls[idx] : -1, lam);
    s->b.truth[i] = lam == 1 && idx < ds->n_real ? ds->cls[idx] : -1;
    return 0;
}

static void *worker(void *arg)
{
    loader *l = arg;
    scratch sc = {0};
    size_t plane = (size_t)l->o.aug.w * l->o.aug.h;
    sc.tmp = malloc(4 * plane * sizeof(float));
    sc.other = malloc((size_t)l->row * sizeof(float));
    pthread_mutex_lock(&l->mu);
    for (;;) {
        if (l->stop || l->failed) break;
        uint64_t b = l->next_claim;
        if (l->o.sampling == SAMPLE_SEQUENTIAL && b >= l->total_batches) break;
        l->next_claim++;
        /* sync GeNIe: generated rows are numbered in sample order, so the count goes with the claim (in order) */
        uint64_t gen_next = l->gen_rows;
        if (l->o.genie && module_sync(l->o.genie))
            for (int i = 0; i < l->o.batch; i++)
                l->gen_rows += (rows_kind(&l->rows, l->o.start + b * (uint64_t)l->o.batch + i) & ROW_GENERATED) != 0;
        slot *s = &l->slots[b % l->nslots];
        while ((s->state != SLOT_FREE || s->turn != b) && !l->stop) pthread_cond_wait(&l->freed, &l->mu);
        if (l->stop) break;
        s->state = SLOT_FILLING;
        s->gen_served = s->gen_short = 0;
        pthread_mutex_unlock(&l->mu);

        uint64_t first = l->o.start + b * (uint64_t)l->o.batch;
        int n = l->o.batch, rc = 0;
        if (l->o.sampling == SAMPLE_SEQUENTIAL && first + n > (uint64_t)l->o.ds->n) n = (int)(l->o.ds->n - first);
        /* rows in pairs; with pair_source and an online sample in one row of a pair, that row first, so the other
         * can show its source (only when one row wants a sample: the rows' sample numbers stay in order) */
        int pair_online = l->rows.share > 0 && l->rows.pair_source > 0;
        for (int i = 0; i < n && rc == 0; i += 2) {
            sc.pair_src = -1;
            int j = i + 1 < n ? i + 1 : -1;
            int swap = j >= 0 && pair_online && !(rows_kind(&l->rows, first + i) & ROW_GENERATED) &&
                       (rows_kind(&l->rows, first + j) & ROW_GENERATED);
            int a = swap ? j : i, c = swap ? i : j;
            rc = fill_row(l, s, a, first + a, &sc, &gen_next, 1);
            if (rc == 0 && j >= 0) rc = fill_row(l, s, c, first + c, &sc, &gen_next, 1);
            /* both wanted a sample and only the second got one (none was ready for the first): the first, real,
             * row is made again as a real row, so it can show the sample's source as pair_source promises */
            if (rc == 0 && j >= 0 && sc.pair_src >= 0 && s->b.index[a] >= 0 && s->b.index[c] < 0)
                rc = fill_row(l, s, a, first + a, &sc, &gen_next, 0);
        }
        char msg[1024];
        if (rc) snprintf(msg, sizeof msg, "no readable image after %d replacements (last: %s)", MAX_REPLACEMENTS, err_msg());

        pthread_mutex_lock(&l->mu);
        s->b.n = n;
        s->b.number = b;
        s->state = SLOT_READY;
        l->images += n;
        if (rc && !l->failed) {
            l->failed = 1;
            memcpy(l->fail_msg, msg, sizeof msg);
        }
        pthread_cond_broadcast(&l->ready);
    }
    l->running--;
    pthread_cond_broadcast(&l->ready);
    pthread_mutex_unlock(&l->mu);
    imgio_free(&sc.img);
    free(sc.tmp);
    free(sc.other);
    return NULL;
}

int loader_lookahead(const loader_opts *o)
{
    int threads = o->threads > 0 ? o->threads : 1;
    return o->slots > 1 ? o->slots : threads + 2;
}

loader *loader_start(const loader_opts *o)
{
    loader *l = calloc(1, sizeof *l);
    l->o = *o;
    if (l->o.threads <= 0) l->o.threads = 1;
    loader_rows(o, &l->rows);
    if (o->genie && o->sampling != SAMPLE_SEQUENTIAL) module_rows(o->genie, &l->rows);
    l->nslots = loader_lookahead(&l->o);
    l->row = o->aug.w * o->aug.h * o->aug.c;
    l->classes = o->ds->classes;
    if (!l->o.gen_aug.w) l->o.gen_aug = o->aug;
    if (!l->o.tail_aug.w) l->o.tail_aug = o->aug;
    transform_min_decode(&o->aug, &l->min_w, &l->min_h);
    const aug_params *more[] = {&l->o.gen_aug, &l->o.tail_aug};
    for (int i = 0; i < 2; i++) {
        int mw, mh;
        transform_min_decode(more[i], &mw, &mh);
        if (mw > l->min_w) l->min_w = mw;
        if (mh > l->min_h) l->min_h = mh;
    }
    if (o->sampling == SAMPLE_SEQUENTIAL) l->total_batches = ((uint64_t)o->ds->n + o->batch - 1) / o->batch;
    l->bad = calloc((size_t)o->ds->n, 1);
    l->slots = calloc((size_t)l->nslots, sizeof *l->slots);
    for (int i = 0; i < l->nslots; i++) {
        l->slots[i].turn = (uint64_t)i;
        loader_batch *b = &l->slots[i].b;
        b->x = malloc((size_t)o->batch * l->row * sizeof(float));
        b->y = malloc((size_t)o->batch * l->classes * sizeof(float));
        b->index = malloc((size_t)o->batch * sizeof(int));
        b->truth = malloc((size_t)o->batch * sizeof(int));
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->ready, NULL);
    pthread_cond_init(&l->freed, NULL);
    l->threads = calloc((size_t)l->o.threads, sizeof *l->threads);
    for (int i = 0; i < l->o.threads; i++) {
        l->running++;
        if (pthread_create(&l->threads[i], NULL, worker, l) != 0) {
            /* fewer workers still load every batch: each claims the next one free */
            l->running--;
            l->o.threads = i;
            break;
        }
    }
    if (l->o.threads == 0) {
        l->failed = 1;
        snprintf(l->fail_msg, sizeof l->fail_msg, "loader: cannot start a thread");
    }
    return l;
}

const loader_batch *loader_next(loader *l)
{
    double t0 = util_now();
    pthread_mutex_lock(&l->mu);
    uint64_t b = l->next_take;
    slot *s = &l->slots[b % l->nslots];
    const loader_batch *out = NULL;
    if (l->o.sampling == SAMPLE_SEQUENTIAL && b >= l->total_batches) goto done;
    while (!(s->state == SLOT_READY && s->b.number == b) && !l->failed) {
        if (!l->o.cancel) {
            pthread_cond_wait(&l->ready, &l->mu);
            continue;
        }
        /* a signal does not wake a condition wait: look at the flag ten times a second */
        if (*l->o.cancel) {
            err_set("interrupted");
            goto done;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100000000;
        if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&l->ready, &l->mu, &until);
    }
    if (l->failed) {
        err_set("%s", l->fail_msg);
        goto done;
    }
    s->state = SLOT_IN_USE;
    l->gen_served += s->gen_served;
    l->gen_short += s->gen_short;
    l->next_take++;
    out = &s->b;
done:
    l->wait_s += util_now() - t0;
    pthread_mutex_unlock(&l->mu);
    return out;
}

void loader_release(loader *l, const loader_batch *b)
{
    pthread_mutex_lock(&l->mu);
    slot *s = &l->slots[b->number % l->nslots];
    s->state = SLOT_FREE;
    s->turn = b->number + (uint64_t)l->nslots;
    pthread_cond_broadcast(&l->freed);
    pthread_mutex_unlock(&l->mu);
}

void loader_get_stats(loader *l, loader_stats *s)
{
    pthread_mutex_lock(&l->mu);
    s->images = l->images;
    s->bad_images = __atomic_load_n(&l->bad_images, __ATOMIC_RELAXED);
    s->replaced = __atomic_load_n(&l->replaced, __ATOMIC_RELAXED);
    s->wait_s = l->wait_s;
    s->gen_served = l->gen_served;
    s->gen_short = l->gen_short;
    pthread_mutex_unlock(&l->mu);
}

int loader_failed(loader *l)
{
    pthread_mutex_lock(&l->mu);
    int f = l->failed;
    pthread_mutex_unlock(&l->mu);
    return f;
}

void loader_stop(loader *l)
{
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->freed);
    /* After an interrupt a worker stuck in a read (a hung network file system) is not waited for: it is detached
     * with the loader it uses, which is left allocated, and the process exits without it. */
    int cancelled = l->o.cancel && *l->o.cancel;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    while (l->running > 0)
        if (!cancelled) pthread_cond_wait(&l->ready, &l->mu);
        else if (pthread_cond_timedwait(&l->ready, &l->mu, &until) == ETIMEDOUT) break;
    int stuck = l->running > 0;
    pthread_mutex_unlock(&l->mu);
    if (stuck) {
        for (int i = 0; i < l->o.threads; i++) pthread_detach(l->threads[i]);
        return;
    }
    for (int i = 0; i < l->o.threads; i++) pthread_join(l->threads[i], NULL);
    for (int i = 0; i < l->nslots; i++) {
        free(l->slots[i].b.x);
        free(l->slots[i].b.y);
        free(l->slots[i].b.index);
        free(l->slots[i].b.truth);
    }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->ready);
    pthread_cond_destroy(&l->freed);
    free(l->slots);
    free(l->threads);
    free(l->bad);
    free(l);
}
