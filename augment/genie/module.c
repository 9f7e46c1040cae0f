#include "augment/genie/module.h"
#include "augment/genie/backbone.h"
#include "augment/genie/cache.h"
#include "augment/engine/backend/backend.h"
#include "common/err.h"
#include "common/font.h"
#include "augment/genie/genie.h"
#include "augment/genie/genindex.h"
#include "common/philox.h"
#include "augment/genie/planner.h"
#include "augment/genie/recipe.h"
#include "augment/genie/remote.h"
#include "common/dist.h"
#include "common/image.h"
#include "augment/genie/ring.h"
#include "common/util.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GRID_ROWS 8
/* draws in a row without a usable source image before a target is given up */
#define SOURCE_DRAWS 64

struct module {
    module_opts o;
    genie_cfg cfg;
    genie *g;
    ring *ring;
    int W, H, classes;
    size_t nrgb;                    /* bytes of one sample: W x H x 3 */
    unsigned char *eligible;
    int *made;                      /* per class: kept (and planned) samples, against the quota */
    int **members, *count;          /* real training images of each class */
    img_u8 **mean_imgs;             /* GeNIe-Ada: decoded images for the class means */
    int *mean_counts;
    double *conf;
    /* snapshot staging: the trainer copies in, the module picks up */
    struct network *stage;
    pthread_mutex_t stage_mu;
    unsigned stage_version, used_version;
    int stage_iter, snap_pending;
    int have_snapshot;              /* atomic */
    int iter;                       /* atomic: the trainer's latest iteration */
    /* kept samples (u8 RGB, W x H), for the replay once the quotas are met: at most kept_max in memory (the
     * oldest replaced beyond; module_opts.kept_bytes) */
    unsigned char **kept;
    ring_meta *kept_meta;           /* each one's target, source class and source index (-1: none or unknown) */
    int n_kept, cap_kept, kept_max, replay;
    uint64_t kept_total;            /* every sample kept, replaced ones included */
    cache *cache;
    /* the inspection grid: the last GRID_ROWS kept pairs (source | generated), written every GRID_ROWS kept */
    unsigned char *grid;            /* GRID_ROWS x 2 images of W x H x 3 */
    int grid_target[GRID_ROWS], grid_source[GRID_ROWS], grid_n, grid_next;
    float grid_r[GRID_ROWS], *grid_tmp;
    font *font;                     /* darknet's alphabet for the grid's labels (NULL: labels in the CSV only) */
    unsigned settings;              /* hash of what makes a cached sample reusable: recipe_settings's line */
    char settings_line[4096];
    /* sync=1: snapshots kept by iteration (f_theta's parameters and the confusion), the module's position */
    struct network **hist_net;
    double **hist_conf;
    int *hist_iter, n_hist, need_iter, last_pub, used_iter;
    pthread_cond_t hist_cv;
    uint64_t scan_k, scan_j;       /* the next row to look at, and the generated rows counted before it */
    int *src_fails;                 /* per target: draws in a row without a usable source image */
    int stop;                       /* atomic */
    int failed, fail_iter;          /* failed: atomic, set after fail_msg and fail_iter */
    char fail_msg[1024];
    pthread_t th;
    int started;
    pthread_mutex_t mu;             /* stats */
    module_stats st;
    /* under mpirun, rank 0: the generator ranks (remote.h), f_theta's snapshot as flat floats for them, and the
     * snapshot this rank's own f_theta holds (for requests run here when no generator rank is left) */
    remote *rem;
    float *pack;
    size_t pack_n;
    struct network *lstage;         /* sync=0: the snapshot unpacked for a request run here */
    int local_iter;
};

static int stopped(const module *m) { return __atomic_load_n(&m->stop, __ATOMIC_ACQUIRE); }

/* The first iteration whose confusion statistics the planner trusts: warmup iterations into this run (the live
 * statistics start empty, resumed or not). */
static int trust_iter(const module *m) { return m->o.start_iter + m->cfg.warmup; }

static int keep_sample(module *m, const unsigned char *rgb, int target, int source, int sidx)
{
    int i = m->n_kept;
    if (m->n_kept == m->kept_max) {
        i = (int)(m->kept_total % (uint64_t)m->kept_max);   /* memory bound reached: the oldest goes */
    } else {
        if (m->n_kept == m->cap_kept) {
            int cap = m->cap_kept ? 2 * m->cap_kept : 64;
            if (cap > m->kept_max) cap = m->kept_max;
            unsigned char **k = realloc(m->kept, cap * sizeof *k);
            if (k) m->kept = k;
            ring_meta *km = k ? realloc(m->kept_meta, cap * sizeof *km) : NULL;
            if (!km) return err_set("genie module: out of memory for kept samples");
            m->kept_meta = km;
            m->cap_kept = cap;
        }
        if (!(m->kept[i] = malloc(m->nrgb))) return err_set("genie module: out of memory for kept samples");
        m->n_kept++;
    }
    memcpy(m->kept[i], rgb, m->nrgb);
    m->kept_meta[i] = (ring_meta){.target = target, .source_class = source, .source_index = sidx};
    m->kept_total++;
    pthread_mutex_lock(&m->mu);
    m->st.resident = m->n_kept;
    pthread_mutex_unlock(&m->mu);
    return 0;
}

/* Kept sample i's labels for the ring again: a replay (r 0), planned at snapshot_iter. */
static ring_meta kept_meta(const module *m, int i, int snapshot_iter)
{
    const ring_meta *k = &m->kept_meta[i];
    return (ring_meta){.target = k->target, .source_class = k->source_class, .source_index = k->source_index,
                       .snapshot_iter = snapshot_iter};
}

/* A sample of the cache made with these settings (augment/genie/cache.h): kept while its target's quota is open. */
static int cache_take(void *ctx, const unsigned char *rgb, int target, int source_class)
{
    module *m = ctx;
    if (m->made[target] >= m->cfg.quota) return 0;
    if (keep_sample(m, rgb, target, source_class, -1)) return -1;   /* the module does not look its source up */
    m->made[target]++;
    m->st.cached++;
    return 0;
}

/* The grid PNG (rows of source | generated) and its CSV of labels, rewritten whole (atomically) after every
 * GRID_ROWS kept samples, so it always shows recent ones. */
static void grid_add(module *m, const img_u8 *src, const unsigned char *gen, int target, int source, double r)
{
    if (!m->o.grid_path || !m->grid) return;
    int row = m->grid_next++ % GRID_ROWS;
    unsigned char *s = m->grid + (size_t)row * 2 * m->nrgb, *g = s + m->nrgb;
    if (src && image_to_planar(src, m->W, m->H, m->grid_tmp) == 0)
        image_from_planar(m->grid_tmp, m->W, m->H, s, m->W);
    else memset(s, 0, m->nrgb); /* txt2img: no source */
    memcpy(g, gen, m->nrgb);
    m->grid_target[row] = target, m->grid_source[row] = source, m->grid_r[row] = (float)r;
    if (m->grid_n < GRID_ROWS) m->grid_n++;
    if (m->grid_next % GRID_ROWS) return;
    /* source | generated | "S -> T  r 0.80" on white, 2-pixel gaps, rows 2 pixels apart */
    char text[GRID_ROWS][200];
    const char *labels[GRID_ROWS];
    const unsigned char *tiles[GRID_ROWS * 2];
    for (int r0 = 0; r0 < m->grid_n; r0++) {
        snprintf(text[r0], sizeof text[r0], "%s -> %s  r %.2f",
                 m->grid_source[r0] >= 0 ? m->o.labels[m->grid_source[r0]] : "(text)", m->o.labels[m->grid_target[r0]],
                 m->grid_r[r0]);
        labels[r0] = text[r0];
        tiles[2 * r0] = m->grid + (size_t)r0 * 2 * m->nrgb;
        tiles[2 * r0 + 1] = tiles[2 * r0] + m->nrgb;
    }
    const image_grid layout = {.rows = m->grid_n, .cols = 2, .tile_w = m->W, .tile_h = m->H, .gap = 2,
                               .font = m->font, .label_pos = IMAGE_LABEL_RIGHT};
    int gw, gh;
    unsigned char *img = image_grid_build(&layout, tiles, labels, &gw, &gh);
    if (!img) {
        fprintf(stderr, "genie module: %s\n", err_msg());
        return;
    }
    if (imgio_write(m->o.grid_path, img, gw, gh, 0)) fprintf(stderr, "genie module: %s\n", err_msg());
    free(img);
    char csv[1100], tmp[1200];
    snprintf(csv, sizeof csv, "%s.csv", m->o.grid_path);
    FILE *f = util_open_tmp(csv, tmp, sizeof tmp);
    if (!f) return;
    fprintf(f, "row,source,target,r,pair\n");
    for (int r0 = 0; r0 < m->grid_n; r0++) {
        const char *sl = m->grid_source[r0] >= 0 ? m->o.labels[m->grid_source[r0]] : "-";
        fprintf(f, "%d,%s,%s,%.2f,%s -> %s\n", r0, sl, m->o.labels[m->grid_target[r0]], m->grid_r[r0], sl,
                m->o.labels[m->grid_target[r0]]);
    }
    if (util_commit(f, tmp, csv)) fprintf(stderr, "genie module: %s\n", err_msg());
}

/* GeNIe-Ada: a new snapshot into f_theta, then the class means from it. */
static int pick_up_snapshot(module *m)
{
    if (m->cfg.mode != GENIE_MODE_ADA) return 0;
    int fresh = 0, rc = 0;
    pthread_mutex_lock(&m->stage_mu);
    if (m->stage_version != m->used_version) {
        rc = genie_copy_backbone(m->g, m->stage);
        m->used_version = m->stage_version;
        pthread_mutex_lock(&m->mu);
        m->st.snapshot_iter = m->stage_iter;
        m->st.snapshots++;
        pthread_mutex_unlock(&m->mu);
        fresh = 1;
    }
    pthread_mutex_unlock(&m->stage_mu);
    if (rc == 0 && fresh) rc = genie_set_class_means(m->g, m->mean_imgs, m->mean_counts);
    return rc;
}

static int quota_left(const module *m)
{
    for (int c = 0; c < m->classes; c++)
        if (m->eligible[c] && m->made[c] < m->cfg.quota) return 1;
    return 0;
}

/* The quotas are met: the ring is refilled from the kept samples, oldest first, as it empties. */
static void replay(module *m)
{
    ring_stats rs;
    ring_get_stats(m->ring, &rs);
    if (!m->n_kept || rs.ready >= m->cfg.ring) {
        util_sleep(0.005);
        return;
    }
    int i = m->replay++ % m->n_kept;
    ring_meta meta = kept_meta(m, i, -1);
    ring_put(m->ring, m->kept[i], &meta);
    pthread_mutex_lock(&m->mu);
    m->st.replayed++;
    pthread_mutex_unlock(&m->mu);
}

/* One request from draw g: the target (by error and quota left), the source class and image, r, the seed. 1 when
 * planned, 0 when every target has its quota, -1 + err_msg() when this draw has no usable source for r->target
 * (drawn again with the next; source_failed gives up on the target after a while). */
static int plan_request(module *m, philox_t *g, genie_request *r, img_u8 *src, int *src_cls, int *src_idx)
{
    const genie_cfg *c = &m->cfg;
    int t = planner_target(m->conf, m->classes, m->eligible, m->made, c->quota, philox_uniform(g));
    if (t < 0) return 0;
    memset(r, 0, sizeof *r);
    r->target = t;
    r->r = c->mode == GENIE_MODE_ADA ? GENIE_R_ADA : c->mode == GENIE_MODE_TXT2IMG ? 1.0 : c->r;
    *src_cls = *src_idx = -1;
    if (c->mode != GENIE_MODE_TXT2IMG) {
        int cand[64], n = 0;
        if (c->sources == GENIE_SOURCES_SAME)
            cand[n++] = t;
        else if (c->sources == GENIE_SOURCES_CONFUSED)
            n = planner_confused(m->conf, m->classes, t, c->top_k, cand);
        else
            for (int k = 0; k < m->classes && n < 64; k++)
                if (k != t) cand[n++] = k;
        int s = n ? cand[philox_int(g, n)] : -1;
        if (s < 0 || !m->count[s]) return err_set("class %s has no training image", s < 0 ? "(none)" : m->o.labels[s]);
        int idx = m->members[s][philox_int(g, m->count[s])];
        if (imgio_load(m->o.paths[idx], 0, 0, src)) return -1;
        m->src_fails[t] = 0;
        r->source = src;
        *src_cls = s;
        *src_idx = idx;
    }
    r->seed = (uint64_t)philox_next(g) << 32 | philox_next(g);
    return 1;
}

/* A draw for target t found no usable source (err_msg() says why): after SOURCE_DRAWS such draws in a row the
 * target is given up, with one message. 1 when given up now. */
static int source_failed(module *m, int t)
{
    if (++m->src_fails[t] < SOURCE_DRAWS) return 0;
    fprintf(stderr, "genie module: target %s: no usable source image in %d draws (last: %s); no samples for it\n",
            m->o.labels[t], SOURCE_DRAWS, err_msg());
    m->eligible[t] = 0;
    return 1;
}

/* The statistics of a kept result (called with m->mu held). */
static void count_kept(module *m, const genie_result *res)
{
    const genie_cfg *c = &m->cfg;
    m->st.kept++;
    m->st.ada_fallback += res->ada_fallback;
    int slot = 0;
    for (int k = 0; k < c->n_r; k++)
        if (fabs(c->r_set[k] - res->r) < 1e-9) slot = k;
    m->st.r_hist[c->mode == GENIE_MODE_ADA ? slot : 0]++;
}

/* A kept result as the module's image (u8), into the kept samples, the grid and the cache. */
static int keep_result(module *m, const genie_request *rq, const genie_result *res, int src_cls, int src_idx,
                       unsigned char *rgb)
{
    image_from_planar(res->image, m->W, m->H, rgb, m->W);
    if (keep_sample(m, rgb, rq->target, src_cls, src_idx)) return -1;
    grid_add(m, rq->source, rgb, rq->target, src_cls, res->r);
    char gaps[256];
    genindex_gaps(gaps, sizeof gaps, res->gaps, res->n_gaps, res->ada_fallback);
    if (m->cache && cache_add(m->cache, rgb, rq->target, src_idx >= 0 ? m->o.paths[src_idx] : NULL, src_cls, res->r,
                              rq->seed, gaps))
        fprintf(stderr, "genie module: cache: %s\n", err_msg());
    return 0;
}

/* Plans one engine batch from the live confusion statistics (made[] counts its requests): how many requests. */
static int plan_batch(module *m, uint64_t *q, genie_request *rq, genie_result *res, img_u8 *src, int *src_cls,
                      int *src_idx, float *imgs)
{
    const genie_cfg *c = &m->cfg;
    m->o.confusion(m->o.confusion_ctx, m->conf);
    int nq = 0, cost = 0;
    /* bounded: each turn plans a request or counts a failed draw against a target (given up after SOURCE_DRAWS) */
    while (nq < c->batch && !stopped(m)) {
        philox_t g;
        philox_init(&g, m->o.seed, philox_mix(*q, PHILOX_MODULE_REQUEST));
        genie_request *r = &rq[nq];
        int planned = plan_request(m, &g, r, &src[nq], &src_cls[nq], &src_idx[nq]);
        if (planned == 0) break;
        if (planned < 0) {
            (*q)++;
            source_failed(m, r->target);
            continue;
        }
        if (cost + genie_request_cost(m->g, r) > c->batch) break;
        cost += genie_request_cost(m->g, r);
        r->stream = *q;
        int t = r->target;
        res[nq].image = imgs + (size_t)nq * m->W * m->H * 3;
        pthread_mutex_lock(&m->mu);
        m->made[t]++; /* planned: counted now, so one batch does not overshoot the quota */
        pthread_mutex_unlock(&m->mu);
        (*q)++;
        nq++;
    }
    return nq;
}

/* A batch planned but not made (the engine failed or stopped): its requests no longer count against the quota. */
static void unplan_batch(module *m, const genie_request *rq, int nq)
{
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < nq; i++) m->made[rq[i].target]--;
    pthread_mutex_unlock(&m->mu);
}

/* A made batch (dt seconds in the engine): its kept samples into the ring. 0, or -1 + err_msg(). */
static int keep_batch(module *m, const genie_request *rq, const genie_result *res, int nq, const int *src_cls,
                      const int *src_idx, double dt, unsigned char *rgb)
{
    for (int i = 0; i < nq; i++) {
        int t = rq[i].target;
        pthread_mutex_lock(&m->mu);
        m->st.requests++;
        m->st.gen_seconds += dt / nq;
        if (res[i].nonfinite) {
            m->st.dropped++;
            m->made[t]--;
            pthread_mutex_unlock(&m->mu);
            continue;
        }
        count_kept(m, &res[i]);
        pthread_mutex_unlock(&m->mu);
        if (keep_result(m, &rq[i], &res[i], src_cls[i], src_idx[i], rgb)) return -1;
        ring_meta meta = {.target = t, .source_class = src_cls[i], .source_index = src_idx[i], .r = (float)res[i].r,
                          .snapshot_iter = m->st.snapshot_iter};
        ring_put(m->ring, rgb, &meta);
    }
    return 0;
}

/* A batch with no request (every target has its quota, or none has a usable source): -1 + err_msg() when there is
 * nothing to serve at all, else a pause. */
static int no_batch(module *m)
{
    if (!quota_left(m) && !m->n_kept) return err_set("genie module: no target has a usable source image");
    util_sleep(0.005);
    return 0;
}

/* Plans, generates and keeps one engine batch. 0, or -1 + err_msg() (a stop returns 0). */
static int generate_batch(module *m, uint64_t *q, genie_request *rq, genie_result *res, img_u8 *src, int *src_cls,
                          int *src_idx, float *imgs, unsigned char *rgb)
{
    int nq = plan_batch(m, q, rq, res, src, src_cls, src_idx, imgs);
    if (!nq) return no_batch(m);
    double t0 = util_now();
    int rc = genie_run(m->g, rq, nq, res);
    double dt = util_now() - t0;
    if (rc) {
        unplan_batch(m, rq, nq);
        return stopped(m) ? 0 : -1;
    }
    return keep_batch(m, rq, res, nq, src_cls, src_idx, dt, rgb);
}

/* The module's thread failed (err_msg() says why): recorded for the trainer (module_failed). In sync mode rows wait
 * for samples that will not come: everything that waits on the module is woken (those rows take real images, so
 * the trainer must stop the run). */
static void module_fail(module *m)
{
    pthread_mutex_lock(&m->mu);
    const char *e = err_msg(), *who = "genie module: ";
    snprintf(m->fail_msg, sizeof m->fail_msg, "%s%s", strncmp(e, who, strlen(who)) ? who : "", e);
    m->fail_iter = __atomic_load_n(&m->iter, __ATOMIC_ACQUIRE);
    pthread_mutex_unlock(&m->mu);
    __atomic_store_n(&m->failed, 1, __ATOMIC_RELEASE);
    fprintf(stderr, "%s; %s\n", m->fail_msg,
            m->cfg.sync ? "the run stops (sync=1)" : "generation stopped, training goes on without generated samples");
    if (m->cfg.sync) module_close(m);
}

static void *module_main(void *arg)
{
    module *m = arg;
    struct blas_pool *pool = backbone_pool_begin(m->cfg.threads);
    int B = m->cfg.batch;
    genie_request *rq = calloc(B, sizeof *rq);
    genie_result *res = calloc(B, sizeof *res);
    img_u8 *src = calloc(B, sizeof *src);
    int *src_cls = calloc(B, sizeof *src_cls), *src_idx = calloc(B, sizeof *src_idx);
    float *imgs = malloc(sizeof(float) * B * m->W * m->H * 3);
    unsigned char *rgb = malloc(m->nrgb);
    uint64_t q = 0;
    int rc = rq && res && src && src_cls && src_idx && imgs && rgb ? 0 : err_set("genie module: out of memory");
    /* samples from the cache are ready at once */
    for (int i = 0; i < m->n_kept && i < m->cfg.ring; i++) {
        ring_meta meta = kept_meta(m, i, -1);
        ring_put(m->ring, m->kept[i], &meta);
    }
    while (rc == 0 && !stopped(m)) {
        if (__atomic_load_n(&m->iter, __ATOMIC_ACQUIRE) < trust_iter(m) ||
            (m->cfg.mode == GENIE_MODE_ADA && !__atomic_load_n(&m->have_snapshot, __ATOMIC_ACQUIRE))) {
            util_sleep(0.01);
            continue;
        }
        if ((rc = pick_up_snapshot(m))) break;
        if (!quota_left(m)) replay(m);
        else rc = generate_batch(m, &q, rq, res, src, src_cls, src_idx, imgs, rgb);
    }
    if (rc && !stopped(m)) module_fail(m);
    for (int i = 0; src && i < B; i++) imgio_free(&src[i]);
    free(rq), free(res), free(src), free(src_cls), free(src_idx), free(imgs), free(rgb);
    backbone_pool_end(pool);
    return NULL;
}

/* sync=1: the snapshot iteration row k is planned from: the last snapshot point the trainer has surely passed when
 * the loader fills k's batch (never decreasing with k). */
static int snapshot_for(const module *m, uint64_t k)
{
    int b = (int)((k - m->o.start) / (uint64_t)m->o.batch);
    int due = m->o.start_iter + b - m->o.lookahead, it = m->o.start_iter, se = m->cfg.snapshot_every;
    if (due >= trust_iter(m) && trust_iter(m) > it) it = trust_iter(m);
    if (due > it && due / se * se > it) it = due / se * se;
    return it;
}

#define ROW_LATER (UINT64_MAX - 1)

/* sync=1: from iteration `it` on, the trainer may drop the snapshots before it (need_iter never goes down). */
static void release_before(module *m, int it)
{
    pthread_mutex_lock(&m->stage_mu);
    if (it > m->need_iter) {
        m->need_iter = it;
        pthread_cond_broadcast(&m->hist_cv);
    }
    pthread_mutex_unlock(&m->stage_mu);
}

/* One look for row_of: the row, or ROW_LATER when it lies beyond the rows the loader can reach now (releasing the
 * snapshots no later row can use when `release`). */
static uint64_t row_step(module *m, uint64_t j, int release)
{
    int iter = __atomic_load_n(&m->iter, __ATOMIC_ACQUIRE);
    if (iter < m->o.start_iter) iter = m->o.start_iter;
    uint64_t batches = (uint64_t)(iter - m->o.start_iter) + m->o.lookahead + m->cfg.snapshot_every + 2;
    uint64_t reach = m->o.start + batches * (uint64_t)m->o.batch;
    while (m->scan_k < reach) {
        uint64_t k = rows_next_generated(&m->o.rows, m->scan_k, reach);
        m->scan_k = k < reach ? k + 1 : reach;
        if (k < reach && m->scan_j++ == j) return k;
    }
    if (release) release_before(m, snapshot_for(m, m->scan_k));
    return ROW_LATER;
}

/* sync=1: the sample number of generated row j (rows counted in order from the run's start, through the row
 * router), UINT64_MAX once stopped. The search never runs past the rows the loader can reach by the trainer's
 * iteration (its lookahead, plus the snapshot period the module may work ahead): where no row there takes a
 * sample (a tiny share, or none) it waits for the trainer, releasing the snapshots no later row can use. */
static uint64_t row_of(module *m, uint64_t j)
{
    while (!stopped(m)) {
        uint64_t k = row_step(m, j, 1);
        if (k != ROW_LATER) return k;
        util_sleep(0.01);
    }
    return UINT64_MAX;
}

/* sync=1: waits for the snapshot taken at iteration `it` and makes it f_theta's and the planner's. */
static int use_snapshot(module *m, int it)
{
    int h = -1;
    pthread_mutex_lock(&m->stage_mu);
    m->need_iter = it;
    pthread_cond_broadcast(&m->hist_cv);
    for (;;) {
        for (int i = 0; i < m->n_hist && h < 0; i++)
            if (m->hist_iter[i] == it) h = i;
        if (h >= 0 || stopped(m)) break;
        pthread_cond_wait(&m->hist_cv, &m->stage_mu);
    }
    int rc = 0, fresh = h >= 0 && m->used_iter != it;
    if (fresh) {
        memcpy(m->conf, m->hist_conf[h], sizeof(double) * m->classes * m->classes);
        if (m->cfg.mode == GENIE_MODE_ADA) rc = genie_copy_backbone(m->g, m->hist_net[h]);
        m->used_iter = it;
    }
    pthread_mutex_unlock(&m->stage_mu);
    if (h < 0) return 0; /* stopped */
    if (rc == 0 && fresh && m->cfg.mode == GENIE_MODE_ADA) rc = genie_set_class_means(m->g, m->mean_imgs, m->mean_counts);
    if (fresh) {
        pthread_mutex_lock(&m->mu);
        m->st.snapshots++;
        m->st.snapshot_iter = it;
        pthread_mutex_unlock(&m->mu);
    }
    return rc;
}

/* sync=1: attempt `attempt` at sample s, drawn from (seed, s, attempt) whichever path plans it, so the in-process
 * and the generator-rank runs plan the same requests. 1 planned (its stream is s), 0 nothing to plan, -1 no
 * usable source (counted). */
static int plan_attempt(module *m, uint64_t s, int attempt, genie_request *rq, img_u8 *src, int *sc, int *si)
{
    philox_t g;
    philox_init(&g, m->o.seed, philox_mix(philox_mix(s, (uint64_t)attempt), PHILOX_MODULE_REQUEST));
    int planned = plan_request(m, &g, rq, src, sc, si);
    if (planned < 0) source_failed(m, rq->target);
    if (planned > 0) rq->stream = s;
    return planned;
}

/* sync=1, quota met: the n-th replay is kept sample n mod kept, in order, into rgb and *meta (its snapshot_iter kept) */
static int replay_kept(module *m, uint64_t n, unsigned char *rgb, ring_meta *meta)
{
    if (!m->n_kept) return err_set("genie module: no sample to serve (every request dropped or without a source image)");
    int i = (int)(n % (uint64_t)m->n_kept);
    memcpy(rgb, m->kept[i], m->nrgb);
    *meta = kept_meta(m, i, meta->snapshot_iter);
    pthread_mutex_lock(&m->mu);
    m->st.replayed++;
    pthread_mutex_unlock(&m->mu);
    return 0;
}

/* sync=1: sample after sample in order, each planned from the snapshot its first row's batch is due to see. A
 * sample the engine drops is tried again with other noise; the quota met, kept samples come back in order. */
static void *module_sync_main(void *arg)
{
    module *m = arg;
    const genie_cfg *c = &m->cfg;
    struct blas_pool *pool = backbone_pool_begin(c->threads);
    genie_request rq;
    genie_result res;
    img_u8 src = {0};
    float *img = malloc(sizeof(float) * m->W * m->H * 3);
    unsigned char *rgb = malloc(m->nrgb);
    int rc = img && rgb ? 0 : err_set("genie module: out of memory");
    uint64_t generated = 0;
    for (uint64_t s = 0; rc == 0 && !stopped(m); s++) {
        uint64_t k = row_of(m, s * (uint64_t)c->reuse);
        if (k == UINT64_MAX) break;
        int it = snapshot_for(m, k);
        if ((rc = use_snapshot(m, it)) || stopped(m)) break;
        ring_meta meta = {.source_index = -1, .snapshot_iter = it};
        int kept = 0;
        for (int attempt = 0; attempt < 4 && !kept && quota_left(m) && rc == 0; attempt++) {
            int sc, si;
            if (plan_attempt(m, s, attempt, &rq, &src, &sc, &si) <= 0) continue;
            int t = rq.target;
            res.image = img;
            double t0 = util_now();
            if (genie_run(m->g, &rq, 1, &res)) {
                rc = stopped(m) ? 0 : -1;
                break;
            }
            pthread_mutex_lock(&m->mu);
            m->st.requests++;
            m->st.gen_seconds += util_now() - t0;
            if (res.nonfinite) {
                m->st.dropped++;
            } else {
                kept = 1;
                m->made[t]++;
                count_kept(m, &res);
            }
            pthread_mutex_unlock(&m->mu);
            if (kept) {
                if ((rc = keep_result(m, &rq, &res, sc, si, rgb))) break;
                meta.target = t, meta.source_class = sc, meta.source_index = si, meta.r = (float)res.r;
                generated++;
            }
        }
        if (rc || stopped(m)) break;
        if (!kept) {
            /* quota met (or four drops in a row): the kept samples again, in order */
            if ((rc = replay_kept(m, s - generated, rgb, &meta))) break;
        }
        if (ring_put(m->ring, rgb, &meta) == UINT64_MAX) break;
    }
    if (rc && !stopped(m)) module_fail(m);
    imgio_free(&src);
    free(img);
    free(rgb);
    backbone_pool_end(pool);
    return NULL;
}

/* ---- under mpirun: ranks >= 1 run the requests rank 0 plans (augment/genie/remote.h) ---- */

/* This rank's f_theta at snapshot `it` (the network net holds), for a request run here, unless it is already. */
static int local_snapshot(module *m, int it, const struct network *net)
{
    if (m->cfg.mode != GENIE_MODE_ADA || m->local_iter == it) return 0;
    m->local_iter = -1;
    if (genie_copy_backbone(m->g, net) || genie_set_class_means(m->g, m->mean_imgs, m->mean_counts)) return -1;
    m->local_iter = it;
    return 0;
}

/* Snapshot `it` (the network net holds) kept for the generator ranks, unless it is. */
static int share_snapshot(module *m, int it, const struct network *net)
{
    if (m->cfg.mode != GENIE_MODE_ADA || remote_has_snapshot(m->rem, it)) return 0;
    if (backbone_net_pack(net, m->pack, m->pack_n)) return -1;
    return remote_add_snapshot(m->rem, it, m->pack, m->pack_n);
}

/* A generator rank given up: one line naming it and what it held. */
static void lost_rank(module *m, int rank, uint64_t held)
{
    int left = remote_ranks(m->rem);
    char what[64] = "";
    if (held != UINT64_MAX)
        snprintf(what, sizeof what, " with %s %llu", m->cfg.sync ? "sample" : "request batch", (unsigned long long)held);
    fprintf(stderr, "genie module: generator rank %d given up%s (no answer in %g s, worker_timeout in %s, or it "
                    "failed); %s\n", rank, what, m->cfg.worker_timeout, m->o.cfg_path,
            left ? "its requests go to the other ranks" : "no generator rank is left: requests run on rank 0");
}

enum { J_UNPLANNED, J_PLANNED, J_SENT, J_DONE, J_REPLAY };

/* sync=1 under mpirun: one sample of module_sync_main's loop, planned on rank 0 and made wherever */
typedef struct {
    uint64_t s, k, wire;            /* the sample, its row, its request's number on the wire (a newer one drops
                                     * the answer to an older) */
    int attempt, it, state, sc, si;
    genie_request rq;
    img_u8 src;
    genie_result res;
    double seconds;
    int *post;                      /* made[], eligible[], src_fails[] once planned: a drop rolls back to it */
} sjob;

static void state_save(const module *m, int *p)
{
    int K = m->classes;
    for (int c = 0; c < K; c++) p[c] = m->made[c], p[K + c] = m->eligible[c], p[2 * K + c] = m->src_fails[c];
}

static void state_load(module *m, const int *p)
{
    int K = m->classes;
    pthread_mutex_lock(&m->mu);
    for (int c = 0; c < K; c++)
        m->made[c] = p[c], m->eligible[c] = (unsigned char)p[K + c], m->src_fails[c] = p[2 * K + c];
    pthread_mutex_unlock(&m->mu);
}

/* sync=1: the slot of the snapshot taken at iteration it, -1 while the trainer has not taken it. A slot at or after
 * need_iter stays as it is (the trainer reuses older ones only). */
static int hist_slot(module *m, int it)
{
    int h = -1;
    pthread_mutex_lock(&m->stage_mu);
    for (int i = 0; i < m->n_hist && h < 0; i++)
        if (m->hist_iter[i] == it) h = i;
    pthread_mutex_unlock(&m->stage_mu);
    return h;
}

/* Plans sample j (its row known) from the planner's state now, exactly as module_sync_main does: the first
 * attempt that draws a usable source is its request, counted in made[] as if kept (a drop rolls back); none (quota
 * met, four failed draws) makes it a replay. 1 planned, 0 its snapshot is not taken yet, -1 + err_msg(). */
static int plan_sample(module *m, sjob *j, int *conf_iter)
{
    int h = hist_slot(m, j->it);
    if (h < 0) return 0;
    if (*conf_iter != j->it) {
        memcpy(m->conf, m->hist_conf[h], sizeof(double) * m->classes * m->classes);
        *conf_iter = j->it;
        if (share_snapshot(m, j->it, m->hist_net[h])) return -1;
        pthread_mutex_lock(&m->mu);
        if (j->it > m->st.snapshot_iter || !m->st.snapshots) m->st.snapshots++, m->st.snapshot_iter = j->it;
        pthread_mutex_unlock(&m->mu);
    }
    j->state = J_REPLAY;
    for (; j->attempt < 4 && quota_left(m); j->attempt++) {
        if (plan_attempt(m, j->s, j->attempt, &j->rq, &j->src, &j->sc, &j->si) <= 0) continue;
        pthread_mutex_lock(&m->mu);
        m->made[j->rq.target]++;
        pthread_mutex_unlock(&m->mu);
        j->state = J_PLANNED;
        break;
    }
    state_save(m, j->post);
    return 1;
}

/* sync=1 under mpirun: module_sync_main's samples, planned on rank 0 in the same order from the same state, each
 * request made by a generator rank (the same genie_run call at the same snapshot: the same bytes). Samples are
 * planned ahead while earlier ones are being made, as if those are kept; a dropped one (non-finite) rolls the
 * planner back to its state after planning it and every later sample is planned again. Results enter the ring
 * strictly in sample order. A rank given up hands its request to another, or to this rank when none is left. */
static void *module_sync_remote_main(void *arg)
{
    module *m = arg;
    const genie_cfg *c = &m->cfg;
    struct blas_pool *pool = backbone_pool_begin(c->threads);
    int cap = dist_size(), K = m->classes, head = 0, n = 0, conf_iter = -1;   /* a sample per rank, one ahead */
    sjob *win = calloc(cap, sizeof *win);
    unsigned char *rgb = malloc(m->nrgb);
    int rc = win && rgb ? 0 : err_set("genie module: out of memory");
    for (int i = 0; rc == 0 && i < cap; i++)
        if (!(win[i].res.image = malloc(sizeof(float) * 3 * m->W * m->H)) || !(win[i].post = malloc(sizeof(int) * 3 * K)))
            rc = err_set("genie module: out of memory");
    uint64_t next_s = 0, generated = 0, wire = 0;
#define J(i) (&win[(head + (i)) % cap])
    while (rc == 0 && !stopped(m)) {
        int busy = 0, lr, lb;
        uint64_t lj;
        const remote_result *res;
        int ev = remote_poll(m->rem, &res, &lr, &lj, &lb);
        if (ev < 0) rc = -1;
        for (int i = 0; ev == 1 && rc == 0 && i < n; i++) {
            sjob *j = J(i);
            if (j->state != J_SENT || j->wire != res->job) continue;
            if (res->rc) {
                rc = err_set("genie module: generator rank %d: %s", res->rank, res->msg);
                break;
            }
            float *img = j->res.image;
            j->res = res->res[0];
            j->res.image = img;
            memcpy(img, res->res[0].image, sizeof(float) * 3 * m->W * m->H);
            j->seconds = res->seconds;
            j->state = J_DONE;
        }
        if (ev == 2) {
            uint64_t held = UINT64_MAX;
            for (int i = 0; lb && i < n; i++)
                if (J(i)->state == J_SENT && J(i)->wire == lj) J(i)->state = J_PLANNED, held = J(i)->s;
            lost_rank(m, lr, held);
        }
        busy |= ev > 0;
        /* into the ring in sample order */
        while (rc == 0 && n > 0 && (J(0)->state == J_DONE || J(0)->state == J_REPLAY)) {
            sjob *j = J(0);
            ring_meta meta = {.source_index = -1, .snapshot_iter = j->it};
            busy = 1;
            if (j->state == J_DONE) {
                pthread_mutex_lock(&m->mu);
                m->st.requests++;
                m->st.gen_seconds += j->seconds;
                if (j->res.nonfinite) m->st.dropped++;
                else count_kept(m, &j->res);
                if (j->res.nonfinite) {
                    pthread_mutex_unlock(&m->mu);
                    /* module_sync_main's next attempt, from the state its drop leaves; later samples again */
                    state_load(m, j->post);
                    pthread_mutex_lock(&m->mu);
                    m->made[j->rq.target]--;
                    pthread_mutex_unlock(&m->mu);
                    j->attempt++;
                    for (int i = 0; i < n; i++) J(i)->state = J_UNPLANNED, J(i)->attempt = i ? 0 : J(i)->attempt;
                    break;
                }
                pthread_mutex_unlock(&m->mu);
                if ((rc = keep_result(m, &j->rq, &j->res, j->sc, j->si, rgb))) break;
                meta.target = j->rq.target, meta.source_class = j->sc, meta.source_index = j->si;
                meta.r = (float)j->res.r;
                generated++;
            } else {
                if ((rc = replay_kept(m, j->s - generated, rgb, &meta))) break;
            }
            if (ring_put(m->ring, rgb, &meta) == UINT64_MAX) break;
            head = (head + 1) % cap;
            n--;
            if (n) release_before(m, J(0)->it);   /* as use_snapshot does for the sample at hand */
        }
        if (rc || stopped(m)) break;
        /* plan the first sample not planned, or find the next one's row (releasing snapshots, as row_of does,
         * only when no sample is in hand) */
        int i = 0;
        while (i < n && J(i)->state != J_UNPLANNED) i++;
        if (i == n && n < cap) {
            uint64_t k = row_step(m, next_s * (uint64_t)c->reuse, n == 0);
            if (k != ROW_LATER) {
                sjob *j = J(n++);
                j->s = next_s++, j->k = k, j->it = snapshot_for(m, k), j->attempt = 0, j->state = J_UNPLANNED;
            }
        }
        if (i < n) {
            if (i == 0) release_before(m, J(0)->it);
            int p = plan_sample(m, J(i), &conf_iter);
            if (p < 0) rc = -1;
            busy |= p > 0;
        }
        /* planned requests to idle ranks; made here when none is left */
        for (i = 0; rc == 0 && i < n; i++) {
            sjob *j = J(i);
            if (j->state != J_PLANNED) continue;
            int h = hist_slot(m, j->it);
            if (h < 0) {
                rc = err_set("genie module: snapshot %d is gone before its sample %llu was made", j->it,
                             (unsigned long long)j->s);
                break;
            }
            if (!remote_ranks(m->rem)) {
                double t0 = util_now();
                if (local_snapshot(m, j->it, m->hist_net[h]) || genie_run(m->g, &j->rq, 1, &j->res)) {
                    rc = stopped(m) ? 0 : -1;
                    break;
                }
                j->seconds = util_now() - t0;
                j->state = J_DONE;
                busy = 1;
                break;   /* one at a time: polling in between */
            }
            int w = remote_idle(m->rem);
            if (w < 0) break;
            if (share_snapshot(m, j->it, m->hist_net[h])) {
                rc = -1;
                break;
            }
            j->wire = ++wire;
            if (remote_send(m->rem, w, j->wire, c->mode == GENIE_MODE_ADA ? j->it : -1, J(0)->it, &j->rq, 1) == 0)
                j->state = J_SENT;
            else
                lost_rank(m, w, UINT64_MAX);
            busy = 1;
        }
        if (!busy) util_sleep(0.0005);
    }
#undef J
    if (rc && !stopped(m)) module_fail(m);
    for (int i = 0; win && i < cap; i++) {
        imgio_free(&win[i].src);
        free(win[i].res.image);
        free(win[i].post);
    }
    free(win);
    free(rgb);
    backbone_pool_end(pool);
    return NULL;
}

/* sync=0 under mpirun: an engine batch planned by rank 0 and made by a generator rank (or here) */
typedef struct {
    genie_request *rq;
    genie_result *res;
    img_u8 *src;
    int *sc, *si, nq, state;
    float *imgs;
    uint64_t wire;
} rbatch;

/* sync=0 under mpirun: module_main's loop, each planned batch handed to an idle generator rank and its kept samples
 * put in the ring as they come; a rank given up hands its batch to another, or to this rank when none is left. */
static void *module_remote_main(void *arg)
{
    module *m = arg;
    const genie_cfg *c = &m->cfg;
    struct blas_pool *pool = backbone_pool_begin(c->threads);
    int B = c->batch, nb = dist_size(), cur = -1;   /* a batch per generator rank, one planned ahead */
    rbatch *bt = calloc(nb, sizeof *bt);
    unsigned char *rgb = malloc(m->nrgb);
    int rc = bt && rgb ? 0 : err_set("genie module: out of memory");
    for (int i = 0; rc == 0 && i < nb; i++) {
        rbatch *b = &bt[i];
        b->rq = calloc(B, sizeof *b->rq), b->res = calloc(B, sizeof *b->res), b->src = calloc(B, sizeof *b->src);
        b->sc = calloc(B, sizeof *b->sc), b->si = calloc(B, sizeof *b->si);
        b->imgs = malloc(sizeof(float) * B * m->W * m->H * 3);
        if (!b->rq || !b->res || !b->src || !b->sc || !b->si || !b->imgs) rc = err_set("genie module: out of memory");
    }
    uint64_t q = 0, wire = 0;
    for (int i = 0; i < m->n_kept && i < c->ring; i++) {   /* samples from the cache are ready at once */
        ring_meta meta = kept_meta(m, i, -1);
        ring_put(m->ring, m->kept[i], &meta);
    }
    while (rc == 0 && !stopped(m)) {
        int busy = 0, lr, lb;
        uint64_t lj;
        const remote_result *res;
        int ev = remote_poll(m->rem, &res, &lr, &lj, &lb);
        if (ev < 0) rc = -1;
        for (int i = 0; ev == 1 && i < nb; i++) {
            rbatch *b = &bt[i];
            if (b->state != J_SENT || b->wire != res->job) continue;
            b->state = J_UNPLANNED;
            if (res->rc || res->n != b->nq) {
                unplan_batch(m, b->rq, b->nq);
                rc = err_set("genie module: generator rank %d: %s", res->rank, res->msg);
            } else
                rc = keep_batch(m, b->rq, res->res, b->nq, b->sc, b->si, res->seconds, rgb);
        }
        if (ev == 2) {
            uint64_t held = UINT64_MAX;
            for (int i = 0; lb && i < nb; i++)
                if (bt[i].state == J_SENT && bt[i].wire == lj) bt[i].state = J_PLANNED, held = lj;
            lost_rank(m, lr, held);
        }
        busy |= ev > 0;
        if (rc) break;
        if (__atomic_load_n(&m->iter, __ATOMIC_ACQUIRE) < trust_iter(m) ||
            (c->mode == GENIE_MODE_ADA && !__atomic_load_n(&m->have_snapshot, __ATOMIC_ACQUIRE))) {
            util_sleep(0.001);
            continue;
        }
        /* a new snapshot: for the ranks (packed), and for this rank's f_theta when it makes a batch itself */
        if (c->mode == GENIE_MODE_ADA) {
            pthread_mutex_lock(&m->stage_mu);
            if (m->stage_version != m->used_version) {
                rc = backbone_net_pack(m->stage, m->pack, m->pack_n);
                m->used_version = m->stage_version;
                cur = m->stage_iter;
                pthread_mutex_lock(&m->mu);
                m->st.snapshot_iter = m->stage_iter;
                m->st.snapshots++;
                pthread_mutex_unlock(&m->mu);
                if (rc == 0 && !remote_has_snapshot(m->rem, cur)) rc = remote_add_snapshot(m->rem, cur, m->pack, m->pack_n);
            }
            pthread_mutex_unlock(&m->stage_mu);
            if (rc) break;
        }
        int planned = -1, free_b = -1, out = 0;
        for (int i = 0; i < nb; i++) {
            if (bt[i].state == J_PLANNED && planned < 0) planned = i;
            if (bt[i].state == J_UNPLANNED && free_b < 0) free_b = i;
            out += bt[i].state != J_UNPLANNED;
        }
        int live = remote_ranks(m->rem), w = live ? remote_idle(m->rem) : -1;
        if (planned < 0 && free_b >= 0 && (w >= 0 || !live)) {
            if (!quota_left(m)) {
                if (!out) replay(m);
                else util_sleep(0.001);
                continue;
            }
            rbatch *b = &bt[free_b];
            if (!(b->nq = plan_batch(m, &q, b->rq, b->res, b->src, b->sc, b->si, b->imgs))) {
                if (out) util_sleep(0.001);   /* nothing to plan until a batch in flight comes back */
                else rc = no_batch(m);
                continue;
            }
            planned = free_b;
            b->state = J_PLANNED;
        }
        if (planned >= 0 && !live) {
            rbatch *b = &bt[planned];
            double t0 = util_now();
            if ((cur >= 0 && m->local_iter != cur && backbone_net_unpack(m->lstage, m->pack, m->pack_n)) ||
                (cur >= 0 && local_snapshot(m, cur, m->lstage)) || genie_run(m->g, b->rq, b->nq, b->res)) {
                unplan_batch(m, b->rq, b->nq);
                rc = stopped(m) ? 0 : -1;
                break;
            }
            b->state = J_UNPLANNED;
            rc = keep_batch(m, b->rq, b->res, b->nq, b->sc, b->si, util_now() - t0, rgb);
            busy = 1;
        } else if (planned >= 0 && w >= 0) {
            rbatch *b = &bt[planned];
            b->wire = ++wire;
            if (remote_send(m->rem, w, b->wire, cur, cur, b->rq, b->nq) == 0) b->state = J_SENT;
            else lost_rank(m, w, UINT64_MAX);
            busy = 1;
        }
        if (!busy) util_sleep(0.0005);
    }
    if (rc && !stopped(m)) module_fail(m);
    for (int i = 0; bt && i < nb; i++) {
        for (int k = 0; bt[i].src && k < B; k++) imgio_free(&bt[i].src[k]);
        free(bt[i].rq), free(bt[i].res), free(bt[i].src), free(bt[i].sc), free(bt[i].si), free(bt[i].imgs);
    }
    free(bt);
    free(rgb);
    backbone_pool_end(pool);
    return NULL;
}

static int setup_targets(module *m)
{
    const genie_cfg *c = &m->cfg;
    for (int i = 0; i < m->o.n_real; i++) m->count[m->o.cls[i]]++;
    for (int k = 0; k < m->classes; k++) {
        if (!(m->members[k] = malloc((m->count[k] ? m->count[k] : 1) * sizeof(int))))
            return err_set("genie module: out of memory");
        m->count[k] = 0;
    }
    for (int i = 0; i < m->o.n_real; i++) m->members[m->o.cls[i]][m->count[m->o.cls[i]]++] = i;
    for (int k = 0; k < m->classes; k++)
        m->eligible[k] = c->targets == GENIE_TARGETS_ALL ||
                         (c->targets == GENIE_TARGETS_FEW && recipe_shot_group(m->count[k]) == SHOT_FEW);
    for (int j = 0; c->targets == GENIE_TARGETS_LIST && j < c->n_targets; j++) {
        int k = 0;
        while (k < m->classes && strcmp(m->o.labels[k], c->target_list[j])) k++;
        if (k == m->classes) return err_set("%s: targets: '%s' is not a label", m->o.cfg_path, c->target_list[j]);
        m->eligible[k] = 1;
    }
    int n = 0;
    for (int k = 0; k < m->classes; k++) {
        if (!m->eligible[k]) continue;
        if (c->mode != GENIE_MODE_TXT2IMG && c->sources == GENIE_SOURCES_SAME && !m->count[k])
            return err_set("%s: target %s has no training image to start from (sources=same)", m->o.cfg_path,
                           m->o.labels[k]);
        if (n < GENIE_CFG_MAX_TARGETS) m->st.targets[n++] = k;
    }
    m->st.n_targets = n;
    if (!n && c->targets == GENIE_TARGETS_FEW)
        return err_set("%s: no target class (targets=few: no class has fewer than %d images)", m->o.cfg_path,
                       RECIPE_FEW_BELOW);
    if (!n) return err_set("%s: no target class (targets=... finds none)", m->o.cfg_path);
    if (c->mode != GENIE_MODE_ADA) return 0;
    return ada_mean_images(m->o.paths, m->members, m->count, m->eligible, m->classes, m->mean_imgs, m->mean_counts);
}

static void module_free(module *m)
{
    if (!m) return;
    remote_close(m->rem);   /* after the module's thread: the caller's thread then calls MPI alone */
    genie_free(m->g);
    ring_free(m->ring);
    for (int k = 0; k < m->classes; k++) {
        if (m->members) free(m->members[k]);
        for (int i = 0; m->mean_imgs && m->mean_imgs[k] && i < m->mean_counts[k]; i++) imgio_free(&m->mean_imgs[k][i]);
        if (m->mean_imgs) free(m->mean_imgs[k]);
    }
    for (int i = 0; i < m->n_kept; i++) free(m->kept[i]);
    free(m->kept), free(m->kept_meta);
    free(m->members), free(m->count), free(m->mean_imgs), free(m->mean_counts);
    free(m->eligible), free(m->made), free(m->conf), free(m->src_fails);
    free(m->grid), free(m->grid_tmp);
    font_free(m->font);
    backbone_net_free(m->stage);
    backbone_net_free(m->lstage);
    free(m->pack);
    for (int i = 0; i < m->n_hist; i++) {
        if (m->hist_net) backbone_net_free(m->hist_net[i]);
        if (m->hist_conf) free(m->hist_conf[i]);
    }
    free(m->hist_net), free(m->hist_conf), free(m->hist_iter);
    pthread_cond_destroy(&m->hist_cv);
    cache_close(m->cache);
    pthread_mutex_destroy(&m->stage_mu);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* What every rank loads alike: the targets, GeNIe-Ada's class mean images, the generator. NULL + err_msg(). */
static module *module_new(const module_opts *o)
{
    const genie_cfg *c = o->cfg;
    module *m = calloc(1, sizeof *m);
    if (!m) {
        err_set("genie module: out of memory");
        return NULL;
    }
    m->o = *o;
    m->cfg = *c;
    m->classes = o->classes;
    pthread_mutex_init(&m->stage_mu, NULL);
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->hist_cv, NULL);
    m->used_iter = m->need_iter = m->last_pub = m->local_iter = -1;
    m->scan_k = o->start;
    /* no generated rows before the planner trusts the statistics; in sync mode not before the first batch whose
     * sample is planned from a snapshot taken after that */
    m->o.rows.share = c->share;
    m->o.rows.first_generated = o->batch > 0 ? o->start + (uint64_t)(c->warmup + (c->sync ? o->lookahead : 0)) * o->batch : 0;
    int K = o->classes;
    m->eligible = calloc(K, 1);
    m->made = calloc(K, sizeof *m->made);
    m->members = calloc(K, sizeof *m->members);
    m->count = calloc(K, sizeof *m->count);
    m->mean_imgs = calloc(K, sizeof *m->mean_imgs);
    m->mean_counts = calloc(K, sizeof *m->mean_counts);
    m->conf = calloc((size_t)K * K, sizeof *m->conf);
    m->src_fails = calloc(K, sizeof *m->src_fails);
    char **words = NULL;
    if (!m->eligible || !m->made || !m->members || !m->count || !m->mean_imgs || !m->mean_counts || !m->conf ||
        !m->src_fails) {
        err_set("genie module: out of memory");
        goto fail;
    }
    if (setup_targets(m)) goto fail;

    genie_opts go;
    genie_opts_default(&go);
    go.eo.model = c->model;
    for (int i = 0; i < c->n_lora; i++) go.eo.lora[i] = c->lora[i];
    go.eo.n_lora = c->n_lora;
    go.eo.steps = c->steps;
    go.eo.guidance = c->guidance;
    go.eo.eta = c->eta;
    go.eo.scheduler = c->scheduler;
    go.eo.max_batch = c->batch;
    go.eo.vae_batch = c->vae_batch;
    go.eo.threads = c->threads;
    const char *note = NULL;
    char same[16]; /* read by genie_load below */
    snprintf(same, sizeof same, "cuda:%d", o->gpu);
    go.eo.device = backend_choose(c->device[0] ? c->device : o->gpu > 0 ? same : NULL, &note);
    if (note) fprintf(stderr, "genie module: %s\n", note);
    go.eo.cancel = &m->stop;
    go.eo.drop_nonfinite = 1;
    go.prompt_template = c->prompt;
    memcpy(go.r_set, c->r_set, sizeof go.r_set);
    go.n_r = c->n_r;
    go.ada_fallback_r = c->r;
    go.embed_layer = c->embed_layer;
    if (c->mode == GENIE_MODE_ADA) go.backbone_cfg = o->net_cfg;
    if (!(words = genie_read_words(c->names[0] ? c->names : NULL, o->labels, K))) goto fail;
    {
        char how[128];
        snprintf(how, sizeof how, "online %s, r %g, sources %s", genie_mode_name(c->mode), c->r,
                 recipe_sources_name(c->sources));
        if (recipe_settings(&go, o->labels, words, K, c->mode == GENIE_MODE_ADA, how, m->settings_line,
                            sizeof m->settings_line))
            goto fail;
        m->settings = util_fnv(UTIL_FNV_INIT, m->settings_line);
    }
    if (!(m->g = genie_load(&go, words, K))) {
        err_wrap("%s: ", o->cfg_path);
        goto fail;
    }
    genie_image_size(m->g, &m->W, &m->H);
    m->nrgb = (size_t)m->W * m->H * 3;
    for (int k = 0; k < K; k++) free(words[k]);
    free(words);
    return m;
fail:
    for (int k = 0; words && k < K; k++) free(words[k]);
    free(words);
    module_free(m);
    return NULL;
}

module *module_start(const module_opts *o)
{
    const genie_cfg *c = o->cfg;
    if (c->sync && (o->batch < 1 || o->lookahead < 1)) {
        err_set("%s: sync=1 needs the trainer's batch and loader lookahead", o->cfg_path);
        return NULL;
    }
    if (c->sync && c->cache[0]) {
        err_set("%s: sync=1 makes every sample in the run (a cache would make runs depend on the ones before): "
                "remove cache=", o->cfg_path);
        return NULL;
    }
    module *m = module_new(o);
    if (!m) return NULL;
    int K = o->classes;
    if (o->grid_path && (!(m->grid = calloc(GRID_ROWS * 2, m->nrgb)) ||
                         !(m->grid_tmp = malloc(sizeof(float) * 3 * m->W * m->H)))) {
        err_set("genie module: out of memory");
        goto fail;
    }
    if (o->grid_path && !(m->font = font_load(FONT_DARKNET_DIR, 0)))
        fprintf(stderr, "genie module: %s: the grid's labels are only in %s.csv\n", err_msg(), o->grid_path);
    if (!(m->ring = ring_create(c->ring, m->nrgb, c->reuse, c->sync))) goto fail;
    if (c->sync) {
        /* snapshots from the one the module works from up to the trainer's latest: the loader runs at most
         * lookahead batches ahead of training, so this many suffice and the trainer never waits for a slot
         * for long */
        m->n_hist = o->lookahead / c->snapshot_every + 4;
        m->hist_net = calloc(m->n_hist, sizeof *m->hist_net);
        m->hist_conf = calloc(m->n_hist, sizeof *m->hist_conf);
        m->hist_iter = malloc(m->n_hist * sizeof *m->hist_iter);
        if (!m->hist_net || !m->hist_conf || !m->hist_iter) {
            err_set("genie module: out of memory");
            goto fail;
        }
        for (int i = 0; i < m->n_hist; i++) {
            m->hist_iter[i] = -1;
            if (!(m->hist_conf[i] = malloc(sizeof(double) * K * K)) ||
                (c->mode == GENIE_MODE_ADA && !(m->hist_net[i] = backbone_net_new(o->net_cfg))))
                goto fail;
        }
    }
    if (c->mode == GENIE_MODE_ADA && !(m->stage = backbone_net_new(o->net_cfg))) goto fail;
    size_t kb = o->kept_bytes ? o->kept_bytes : GENIE_KEPT_MAX_BYTES;
    m->kept_max = kb / m->nrgb > INT_MAX ? INT_MAX : kb / m->nrgb ? (int)(kb / m->nrgb) : 1;
    if (c->cache[0]) {
        cache_opts co = {.dir = c->cache, .settings = m->settings, .labels = o->labels, .classes = K, .W = m->W,
                         .H = m->H, .take = cache_take, .ctx = m};
        if (!(m->cache = cache_open(&co))) goto fail;
    }
    if (dist_size() > 1) {
        /* ranks >= 1 generate (module_serve): f_theta's snapshots go to them as flat floats */
        if (!(m->rem = remote_open(c->batch, genie_image_floats(m->g), c->worker_timeout))) goto fail;
        if (c->mode == GENIE_MODE_ADA &&
            (!(m->pack = malloc(sizeof(float) * (m->pack_n = backbone_net_floats(m->stage)))) ||
             (!c->sync && !(m->lstage = backbone_net_new(o->net_cfg))))) {
            err_set("genie module: out of memory");
            goto fail;
        }
        fprintf(stderr, "genie module: %d generator ranks make the requests this rank plans\n", dist_size() - 1);
    }
    void *(*run)(void *) = c->sync ? (m->rem ? module_sync_remote_main : module_sync_main)
                                   : (m->rem ? module_remote_main : module_main);
    if (pthread_create(&m->th, NULL, run, m) != 0) {
        err_set("genie module: cannot start its thread");
        goto fail;
    }
    m->started = 1;
    return m;
fail:
    module_free(m);
    return NULL;
}

void module_dismiss(void) { remote_dismiss(); }

/* A generator rank: the snapshot rank 0 sent becomes f_theta's, and its class means with it. */
static int serve_snapshot(void *ctx, const float *p, size_t n)
{
    module *m = ctx;
    if (backbone_net_unpack(m->stage, p, n) || genie_copy_backbone(m->g, m->stage)) return -1;
    return genie_set_class_means(m->g, m->mean_imgs, m->mean_counts);
}

int module_serve(const module_opts *o)
{
    const genie_cfg *c = o->cfg;
    module *m = module_new(o);
    if (m && c->mode == GENIE_MODE_ADA && !(m->stage = backbone_net_new(o->net_cfg))) {
        module_free(m);
        m = NULL;
    }
    if (!m) {
        remote_refuse(err_msg());
        return -1;
    }
    struct blas_pool *pool = backbone_pool_begin(c->threads);   /* f_theta's layers, as the module thread's */
    int rc = remote_serve(m->g, c->batch, c->worker_timeout, serve_snapshot, m);
    backbone_pool_end(pool);
    module_free(m);
    return rc;
}

void module_close(module *m)
{
    if (!m) return;
    __atomic_store_n(&m->stop, 1, __ATOMIC_RELEASE);
    if (m->ring) ring_close(m->ring);
    pthread_mutex_lock(&m->stage_mu);
    pthread_cond_broadcast(&m->hist_cv);
    pthread_mutex_unlock(&m->stage_mu);
}

void module_stop(module *m)
{
    if (!m) return;
    module_close(m);
    if (m->started) {
        pthread_join(m->th, NULL);
    }
    module_free(m);
}

/* sync=1: every snapshot point is kept by iteration (waiting, if need be, for the module to move past the
 * oldest) */
static int snapshot_sync(module *m, const struct network *trainer, int iter)
{
    if (iter <= m->last_pub || (iter % m->cfg.snapshot_every && iter != m->o.start_iter && iter != trust_iter(m)))
        return 0;
    pthread_mutex_lock(&m->stage_mu);
    int h = -1;
    while (!stopped(m)) {
        for (int i = 0; i < m->n_hist; i++)
            if (m->hist_iter[i] < 0 || m->hist_iter[i] < m->need_iter)
                if (h < 0 || m->hist_iter[i] < m->hist_iter[h]) h = i;
        if (h >= 0) break;
        pthread_cond_wait(&m->hist_cv, &m->stage_mu);
    }
    int rc = h < 0 ? -1 : 0;
    if (h >= 0) {
        m->o.confusion(m->o.confusion_ctx, m->hist_conf[h]);
        if (m->cfg.mode == GENIE_MODE_ADA) rc = backbone_net_copy(m->hist_net[h], trainer);
        m->hist_iter[h] = rc == 0 ? iter : -1;
        m->last_pub = iter;
        pthread_cond_broadcast(&m->hist_cv);
    }
    pthread_mutex_unlock(&m->stage_mu);
    return rc == 0;
}

int module_snapshot(module *m, const struct network *trainer, int iter)
{
    __atomic_store_n(&m->iter, iter, __ATOMIC_RELEASE);
    if (m->cfg.sync) return snapshot_sync(m, trainer, iter);
    if (m->cfg.mode != GENIE_MODE_ADA) return 0;
    if (iter % m->cfg.snapshot_every != 0 && !m->snap_pending) return 0;
    /* the module is picking up the last one: try again next iteration rather than wait */
    if (pthread_mutex_trylock(&m->stage_mu) != 0) {
        m->snap_pending = 1;
        return 0;
    }
    int rc = backbone_net_copy(m->stage, trainer);
    if (rc == 0) {
        m->stage_version++;
        m->stage_iter = iter;
    }
    pthread_mutex_unlock(&m->stage_mu);
    m->snap_pending = 0;
    if (rc == 0) __atomic_store_n(&m->have_snapshot, 1, __ATOMIC_RELEASE);
    return rc == 0;
}

void module_rows(const module *m, rows_opts *r)
{
    r->share = m->o.rows.share;
    r->first_generated = m->o.rows.first_generated;
}

/* A taken sample into out (as an image of the module's size), with its label and source class. */
static int take_into(module *m, int seq_mode, uint64_t j, img_u8 *out, module_label *lab)
{
    if (out->cap < m->nrgb) {
        unsigned char *p = realloc(out->rgb, m->nrgb);
        if (!p) return -1;
        out->rgb = p;
        out->cap = m->nrgb;
    }
    ring_meta meta;
    if (seq_mode ? ring_take_seq(m->ring, j / (uint64_t)m->cfg.reuse, out->rgb, &meta) : ring_take(m->ring, out->rgb, &meta))
        return -1;
    out->w = m->W;
    out->h = m->H;
    *lab = (module_label){.target = meta.target, .source_class = meta.source_class, .source_index = meta.source_index};
    return 0;
}

int module_take(module *m, img_u8 *out, module_label *lab) { return take_into(m, 0, 0, out, lab); }

int module_sync(const module *m) { return m->cfg.sync; }

int module_take_seq(module *m, uint64_t j, img_u8 *out, module_label *lab) { return take_into(m, 1, j, out, lab); }

int module_failed(module *m, int *iter)
{
    if (!m || !__atomic_load_n(&m->failed, __ATOMIC_ACQUIRE)) return 0;
    pthread_mutex_lock(&m->mu);
    err_set("%s", m->fail_msg);
    if (iter) *iter = m->fail_iter;
    pthread_mutex_unlock(&m->mu);
    return 1;
}

void module_get_stats(module *m, module_stats *st)
{
    ring_stats rs;
    ring_get_stats(m->ring, &rs);
    pthread_mutex_lock(&m->mu);
    *st = m->st;
    for (int i = 0; i < st->n_targets; i++) st->made[i] = m->made[st->targets[i]];
    pthread_mutex_unlock(&m->mu);
    st->taken = rs.taken;
    st->shortfall = rs.shortfall;
    st->ring_ready = rs.ready;
}
