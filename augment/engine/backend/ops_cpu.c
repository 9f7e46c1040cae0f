/* CPU backend of ops.h: OpenBLAS sgemm for every matrix product, a persistent thread pool (common/pool.h) for
 * the rest.
 *
 * Determinism: each op is cut into tiles whose bounds depend only on the tensor sizes; a tile is computed by
 * one thread with single-threaded sgemm into its own output region. Which thread runs which tile changes
 * nothing, so results are bitwise identical for any thread count. OpenBLAS is set to one thread, since all
 * parallelism is ours (two levels of threads would oversubscribe the cores). */
#include "augment/engine/backend/ops.h"
#include "common/err.h"
#include "augment/engine/backend/memtrack.h"
#include "common/philox.h"
#include "common/pool.h"
#include "common/util.h"
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#endif

/* Per-thread scratch for im2col columns and attention score tiles: 4 Mi floats (16 MB), one row of
 * OPS_MAX_KEYS scores at least. */
#define SCRATCH_FLOATS ((size_t)OPS_MAX_KEYS)
/* Elementwise ops are split into tiles of this many floats (64 KB: a batch of small maps still gives every
 * thread a share). */
#define EW_TILE ((size_t)1 << 14)
/* A job estimated to take less than this many nanoseconds on one thread runs on the calling thread: waking the
 * workers (a futex each, and a wait when the machine is busy) costs more than they would save. */
#define INLINE_NS 30000.0

typedef struct {
    ops_backend be;
    pool *p;                    /* with SCRATCH_FLOATS of scratch per thread */
    memtrack mt;                /* for the memory report */
} cpu_backend;

static pool *pool_of(ops_backend *be) { return ((cpu_backend *)be)->p; }

/* pool_run, or the tasks in turn on the calling thread (worker 0, whose scratch the caller owns) when the job is
 * small: `ns` is a rough single-thread estimate. Which thread runs a task never changes its result. */
static void run_tasks(ops_backend *be, pool_fn fn, void *ctx, int ntasks, double ns)
{
    if (ns >= INLINE_NS && pool_threads(pool_of(be)) > 1) {
        pool_run(pool_of(be), fn, ctx, ntasks);
        return;
    }
    for (int t = 0; t < ntasks; t++) fn(ctx, t, 0);
}

static int ceil_div(size_t a, size_t b) { return (int)((a + b - 1) / b); }

/* ---- memory ---- */

static memtrack *mt_of(ops_backend *be) { return &((cpu_backend *)be)->mt; }

static float *cpu_alloc(ops_backend *be, size_t n)
{
    void *p = NULL;
    size_t bytes = (n ? n : 1) * sizeof(float);
    if (posix_memalign(&p, 64, bytes)) {
        err_set("cpu backend: cannot allocate %zu MB", n * sizeof(float) >> 20);
        return NULL;
    }
    if (mt_add(mt_of(be), p, bytes, MT_BUFFER)) {
        free(p);
        return NULL;
    }
    return p;
}
static void cpu_release(ops_backend *be, float *p)
{
    mt_remove(mt_of(be), p);
    free(p);
}
/* The host array itself: counted, not copied. */
static const float *cpu_weight_put(ops_backend *be, const float *host, size_t n)
{
    return mt_add(mt_of(be), host, n * sizeof(float), MT_WEIGHT) ? NULL : host;
}
static void cpu_weight_drop(ops_backend *be, const float *dev) { mt_remove(mt_of(be), dev); }
static void *cpu_host_alloc(ops_backend *be, size_t bytes)
{
    void *p = calloc(bytes ? bytes : 1, 1);
    if (!p) {
        err_set("cpu backend: cannot allocate %zu MB of staging memory", bytes >> 20);
        return NULL;
    }
    if (mt_add(mt_of(be), p, bytes, MT_HOST)) {
        free(p);
        return NULL;
    }
    return p;
}
static void cpu_host_free(ops_backend *be, void *p)
{
    mt_remove(mt_of(be), p);
    free(p);
}
static int cpu_replay(ops_backend *be, uint64_t key, int (*fn)(void *ctx), void *ctx) { return fn(ctx); }
/* the pool's per-thread scratch counts as buffers held for the backend's life */
static void cpu_mem(ops_backend *be, ops_mem *m)
{
    const memtrack *t = mt_of(be);
    size_t pool_bytes = (size_t)pool_threads(pool_of(be)) * SCRATCH_FLOATS * sizeof(float);
    *m = (ops_mem){.weights = t->bytes[MT_WEIGHT], .buffers = t->bytes[MT_BUFFER] + pool_bytes,
                   .peak = t->peak + pool_bytes, .host = t->bytes[MT_HOST]};
}
static void cpu_copy(ops_backend *be, float *dst, const float *src, size_t n)
{
    if (dst != src) memmove(dst, src, n * sizeof(float));
}
static size_t cpu_count_nonfinite(ops_backend *be, const float *x, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += !isfinite(x[i]);
    return c;
}

/* ---- elementwise ---- */

typedef struct {
    int kind;
    enum ops_act act;
    const float *a, *b;
    float *y;
    size_t n;
    int C, HW;                  /* add_channel */
} ew_job;

enum { EW_ADD, EW_MUL, EW_ACT, EW_ADD_CHANNEL };

static inline float act_apply(enum ops_act act, float x)
{
    switch (act) {
    case OPS_ACT_SILU: return x / (1.0f + expf(-x));
    case OPS_ACT_GELU: return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2));
    case OPS_ACT_QUICK_GELU: return x / (1.0f + expf(-1.702f * x));
    default: return x;
    }
}

static void ew_task(void *v, int t, int worker)
{
    ew_job *j = v;
    size_t i0 = (size_t)t * EW_TILE, i1 = i0 + EW_TILE < j->n ? i0 + EW_TILE : j->n;
    switch (j->kind) {
    case EW_ADD:
        for (size_t i = i0; i < i1; i++) j->y[i] = j->a[i] + j->b[i];
        break;
    case EW_MUL:
        for (size_t i = i0; i < i1; i++) j->y[i] = j->a[i] * j->b[i];
        break;
    case EW_ACT:
        for (size_t i = i0; i < i1; i++) j->y[i] = act_apply(j->act, j->a[i]);
        break;
    case EW_ADD_CHANNEL:
        for (size_t i = i0; i < i1; i++) j->y[i] += j->b[i / j->HW];
        break;
    }
}

static void ew_run(ops_backend *be, ew_job *j)
{
    /* ~1 ns a float; an activation's exp or erf ~5 */
    run_tasks(be, ew_task, j, ceil_div(j->n, EW_TILE), (double)j->n * (j->kind == EW_ACT ? 5 : 1));
}

static void cpu_add(ops_backend *be, const float *a, const float *b, size_t n, float *y)
{
    ew_job j = {.kind = EW_ADD, .a = a, .b = b, .y = y, .n = n};
    ew_run(be, &j);
}
static void cpu_mul(ops_backend *be, const float *a, const float *b, size_t n, float *y)
{
    ew_job j = {.kind = EW_MUL, .a = a, .b = b, .y = y, .n = n};
    ew_run(be, &j);
}
static void cpu_act(ops_backend *be, enum ops_act act, const float *x, size_t n, float *y)
{
    ew_job j = {.kind = EW_ACT, .act = act, .a = x, .y = y, .n = n};
    ew_run(be, &j);
}
static void cpu_add_channel(ops_backend *be, float *x, int B, int C, int HW, const float *v)
{
    ew_job j = {.kind = EW_ADD_CHANNEL, .b = v, .y = x, .n = (size_t)B * C * HW, .C = C, .HW = HW};
    ew_run(be, &j);
}

typedef struct {
    const float *x;
    float *y;
    int rows, inner;
} geglu_job;

static void geglu_task(void *v, int t, int worker)
{
    geglu_job *j = v;
    for (int r = t * 16; r < j->rows && r < t * 16 + 16; r++) {
        const float *h = j->x + (size_t)r * 2 * j->inner, *g = h + j->inner;
        float *y = j->y + (size_t)r * j->inner;
        for (int i = 0; i < j->inner; i++) y[i] = h[i] * act_apply(OPS_ACT_GELU, g[i]);
    }
}

static void cpu_geglu(ops_backend *be, const float *x, int rows, int inner, float *y)
{
    geglu_job j = {x, y, rows, inner};
    run_tasks(be, geglu_task, &j, ceil_div(rows, 16), 5.0 * rows * inner);
}

/* ---- layout ---- */

typedef struct {
    const float *a, *b;
    float *y;
    int B, C, Cb, H, W, HW;
} layout_job;

static void upsample_task(void *v, int t, int worker)
{
    layout_job *j = v;  /* task = one (b, c) plane */
    const float *x = j->a + (size_t)t * j->H * j->W;
    float *y = j->y + (size_t)t * 4 * j->H * j->W;
    int W2 = 2 * j->W;
    for (int i = 0; i < j->H; i++) {
        float *r0 = y + (size_t)(2 * i) * W2, *r1 = r0 + W2;
        for (int k = 0; k < j->W; k++) r0[2 * k] = r0[2 * k + 1] = x[(size_t)i * j->W + k];
        memcpy(r1, r0, W2 * sizeof(float));
    }
}

static void cpu_upsample2x(ops_backend *be, const float *x, int B, int C, int H, int W, float *y)
{
    layout_job j = {.a = x, .y = y, .H = H, .W = W};
    run_tasks(be, upsample_task, &j, B * C, 4.0 * B * C * H * W);
}

static void concat_task(void *v, int t, int worker)
{
    layout_job *j = v;  /* task = one batch item */
    size_t na = (size_t)j->C * j->HW, nb = (size_t)j->Cb * j->HW;
    float *y = j->y + (size_t)t * (na + nb);
    memcpy(y, j->a + t * na, na * sizeof(float));
    memcpy(y + na, j->b + t * nb, nb * sizeof(float));
}

static void cpu_concat(ops_backend *be, const float *a, int Ca, const float *b, int Cb, int B, int HW, float *y)
{
    layout_job j = {.a = a, .b = b, .y = y, .C = Ca, .Cb = Cb, .HW = HW};
    run_tasks(be, concat_task, &j, B, (double)B * (Ca + Cb) * HW);
}

/* Blocked transpose of each batch item's [R, S] matrix into [S, R]; task = (b, block of 32 rows). */
typedef struct {
    const float *x;
    float *y;
    int R, S, rblocks;
} transpose_job;

static void transpose_task(void *v, int t, int worker)
{
    transpose_job *j = v;
    int b = t / j->rblocks, r0 = (t % j->rblocks) * 32, r1 = r0 + 32 < j->R ? r0 + 32 : j->R;
    const float *x = j->x + (size_t)b * j->R * j->S;
    float *y = j->y + (size_t)b * j->R * j->S;
    for (int s0 = 0; s0 < j->S; s0 += 32) {
        int s1 = s0 + 32 < j->S ? s0 + 32 : j->S;
        for (int r = r0; r < r1; r++)
            for (int s = s0; s < s1; s++) y[(size_t)s * j->R + r] = x[(size_t)r * j->S + s];
    }
}

static void transpose(ops_backend *be, const float *x, int B, int R, int S, float *y)
{
    transpose_job j = {x, y, R, S, ceil_div(R, 32)};
    run_tasks(be, transpose_task, &j, B * j.rblocks, 2.0 * B * R * S);
}

static void cpu_to_tokens(ops_backend *be, const float *x, int B, int C, int HW, float *y)
{
    transpose(be, x, B, C, HW, y);
}
static void cpu_from_tokens(ops_backend *be, const float *x, int B, int C, int HW, float *y)
{
    transpose(be, x, B, HW, C, y);
}

/* ---- normalisation ---- */

typedef struct {
    const float *x, *gamma, *beta;
    float *y;
    int C, HW, G, rows;
    float eps;
    enum ops_act act;
} norm_job;

/* Sum of (x[i] - c)^p, p = 1 or 2: eight float lanes (vectorisable, no serial add chain) over blocks of 1024
 * elements, the blocks added in double, so means and variances over millions of elements keep float accuracy. */
static double block_sum(const float *x, size_t n, float c, int p)
{
    double total = 0;
    for (size_t i0 = 0; i0 < n; i0 += 1024) {
        size_t i1 = i0 + 1024 < n ? i0 + 1024 : n, i = i0;
        float acc[8] = {0};
        for (; i + 8 <= i1; i += 8)
            for (int k = 0; k < 8; k++) {
                float d = x[i + k] - c;
                acc[k] += p == 1 ? d : d * d;
            }
        for (; i < i1; i++) {
            float d = x[i] - c;
            acc[0] += p == 1 ? d : d * d;
        }
        total += ((double)acc[0] + acc[1] + acc[2] + acc[3]) + ((double)acc[4] + acc[5] + acc[6] + acc[7]);
    }
    return total;
}

static void group_norm_task(void *v, int t, int worker)
{
    norm_job *j = v;  /* task = (b, g): its channels are contiguous in NCHW */
    int cg = j->C / j->G, g = t % j->G;
    size_t n = (size_t)cg * j->HW, off = (size_t)t * n;
    const float *x = j->x + off;
    double mean = block_sum(x, n, 0.0f, 1) / n;
    float m = (float)mean;
    /* the rounding of mean to float is carried exactly: E[(x-m)^2] - (mean-m)^2 is the variance about mean */
    double dm = mean - m, var = block_sum(x, n, m, 2) / n - dm * dm;
    float inv = (float)(1.0 / sqrt(var + j->eps));
    for (int c = 0; c < cg; c++) {
        int ch = g * cg + c;
        float a = j->gamma[ch] * inv, b = j->beta[ch] - m * a;
        const float *xc = x + (size_t)c * j->HW;
        float *yc = j->y + off + (size_t)c * j->HW;
        if (j->act == OPS_ACT_NONE)
            for (int i = 0; i < j->HW; i++) yc[i] = xc[i] * a + b;
        else
            for (int i = 0; i < j->HW; i++) yc[i] = act_apply(j->act, xc[i] * a + b);
    }
}

static void cpu_group_norm(ops_backend *be, const float *x, int B, int C, int HW, int G, float eps,
                           const float *gamma, const float *beta, enum ops_act act, float *y)
{
    norm_job j = {.x = x, .gamma = gamma, .beta = beta, .y = y, .C = C, .HW = HW, .G = G, .eps = eps, .act = act};
    run_tasks(be, group_norm_task, &j, B * G, (act == OPS_ACT_NONE ? 3.0 : 8.0) * B * C * HW);
}

static void layer_norm_task(void *v, int t, int worker)
{
    norm_job *j = v;  /* task = 16 rows */
    for (int r = t * 16; r < j->rows && r < t * 16 + 16; r++) {
        const float *x = j->x + (size_t)r * j->C;
        float *y = j->y + (size_t)r * j->C;
        double s = 0, ss = 0;
        for (int i = 0; i < j->C; i++) s += x[i];
        double mean = s / j->C;
        for (int i = 0; i < j->C; i++) ss += (x[i] - mean) * (x[i] - mean);
        float inv = (float)(1.0 / sqrt(ss / j->C + j->eps)), m = (float)mean;
        for (int i = 0; i < j->C; i++) y[i] = (x[i] - m) * inv * j->gamma[i] + j->beta[i];
    }
}

static void cpu_layer_norm(ops_backend *be, const float *x, int rows, int C, float eps, const float *gamma,
                           const float *beta, float *y)
{
    norm_job j = {.x = x, .gamma = gamma, .beta = beta, .y = y, .C = C, .rows = rows, .eps = eps};
    run_tasks(be, layer_norm_task, &j, ceil_div(rows, 16), 4.0 * rows * C);
}

/* ---- matrix products ---- */

/* Splits an m x n output into tiles: rows in chunks of rb, columns in cb, so that small-m products still
 * give the pool several tiles. Depends only on the sizes. */
typedef struct {
    int rb, cb, rt, ct;
} tiling;

static tiling tile_2d(int m, int n, int rb_max, int want)
{
    tiling t;
    t.rb = m < rb_max ? m : rb_max;
    t.rt = ceil_div(m, t.rb);
    t.ct = 1;
    if (t.rt < want) {
        t.ct = ceil_div(want, t.rt);
        int cb = ceil_div(n, t.ct);
        if (cb < 64) cb = 64;
        t.ct = ceil_div(n, cb);
    }
    t.cb = ceil_div(n, t.ct);
    return t;
}

typedef struct {
    const float *x, *w, *bias;
    float *y;
    int rows, in, out;
    tiling t;
} linear_job;

static void linear_task(void *v, int task, int worker)
{
    linear_job *j = v;
    int r0 = (task / j->t.ct) * j->t.rb, c0 = (task % j->t.ct) * j->t.cb;
    int m = j->rows - r0 < j->t.rb ? j->rows - r0 : j->t.rb, n = j->out - c0 < j->t.cb ? j->out - c0 : j->t.cb;
    if (m <= 0 || n <= 0) return;
    float *y = j->y + (size_t)r0 * j->out + c0;
    float beta = 0;
    if (j->bias) {
        for (int r = 0; r < m; r++) memcpy(y + (size_t)r * j->out, j->bias + c0, n * sizeof(float));
        beta = 1;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, j->in, 1.0f, j->x + (size_t)r0 * j->in, j->in,
                j->w + (size_t)c0 * j->in, j->in, beta, y, j->out);
}

static void cpu_linear(ops_backend *be, const float *x, int rows, int in, const float *w, const float *bias, int out,
                       float *y)
{
    linear_job j = {x, w, bias, y, rows, in, out, tile_2d(rows, out, 256, 8)};
    run_tasks(be, linear_task, &j, j.t.rt * j.t.ct, 2.0 * rows * in * out / 30);   /* ~30 GFLOP/s */
}

typedef struct {
    const float *x, *w, *bias;
    float *y;
    int B, Cin, H, W, Cout, k, stride, pt, pl, Ho, Wo, K;
    int pchunk, npchunk;        /* output pixels per tile */
    int cchunk, ncchunk;        /* output channels per tile */
    int direct;                 /* 1x1, stride 1, no pad: the input is already the column matrix */
    const pool *p;              /* whose per-thread scratch holds the columns */
} conv_job;

/* d[0..n) = src[0..n), or zeros when src is NULL: the rows of small maps are a few floats, shorter than a call
 * to memcpy or memset costs */
static inline void row_copy(float *d, const float *src, int n)
{
    if (n >= 16) {
        if (src) memcpy(d, src, n * sizeof(float));
        else memset(d, 0, n * sizeof(float));
    } else if (src) {
        for (int i = 0; i < n; i++) d[i] = src[i];
    } else {
        for (int i = 0; i < n; i++) d[i] = 0.0f;
    }
}

/* col[K, p1-p0]: row (ci, ky, kx), column = output pixel p. Walks the tile one output-row segment at a time
 * (without a division per segment) so that stride-1 rows are a zero-fill plus one copy. */
static void im2col(const conv_job *j, const float *x, int p0, int p1, float *col)
{
    int n = p1 - p0, k = j->k, s = j->stride, Wo = j->Wo, oy0 = p0 / Wo, ox00 = p0 % Wo;
    for (int ci = 0; ci < j->Cin; ci++) {
        const float *xc = x + (size_t)ci * j->H * j->W;
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                float *c = col + ((size_t)(ci * k + ky) * k + kx) * n;
                int off = kx - j->pl;                /* ix = ox * s + off */
                for (int p = p0, oy = oy0, ox0 = ox00; p < p1; oy++, ox0 = 0) {
                    int ox1 = ox0 + (p1 - p) < Wo ? ox0 + (p1 - p) : Wo;
                    float *d = c + (p - p0) - ox0;   /* d[ox] is output column ox of this row */
                    int iy = oy * s - j->pt + ky;
                    p += ox1 - ox0;
                    if (iy < 0 || iy >= j->H) {
                        row_copy(d + ox0, NULL, ox1 - ox0);
                        continue;
                    }
                    const float *src = xc + (size_t)iy * j->W;
                    if (s == 1) {
                        int lo = ox0 > -off ? ox0 : -off, hi = ox1 < j->W - off ? ox1 : j->W - off;
                        if (hi < lo) hi = lo = ox1 < lo ? ox1 : lo;
                        row_copy(d + ox0, NULL, lo - ox0);
                        row_copy(d + lo, src + lo + off, hi - lo);
                        row_copy(d + hi, NULL, ox1 - hi);
                    } else {
                        for (int ox = ox0; ox < ox1; ox++) {
                            int ix = ox * s + off;
                            d[ox] = ix >= 0 && ix < j->W ? src[ix] : 0.0f;
                        }
                    }
                }
            }
    }
}

/* im2col_rows when the output rows are as wide as the input's (stride 1, "same" padding: every 3x3 conv of the
 * UNet and the VAE). A (ky, kx) tap then reads, for the rows inside the image, one contiguous run of the input plane
 * shifted by dy * W + dx: one copy per channel instead of three short copies per row (on an 8-wide map those were
 * half a UNet call), then the columns the shift wrapped around are zeroed. The same values as im2col. */
static void im2col_rows_same(const conv_job *j, const float *x, int oy0, int oy1, float *col)
{
    int k = j->k, W = j->W, n = (oy1 - oy0) * W;
    long plane = (long)j->H * W;
    for (int ky = 0; ky < k; ky++) {
        int dy = ky - j->pt;
        int ya = oy0 > -dy ? oy0 : -dy, yb = oy1 < j->H - dy ? oy1 : j->H - dy; /* rows reading inside */
        if (ya > oy1) ya = oy1;
        if (yb < ya) yb = ya;
        long m = (long)(yb - ya) * W, s0 = (long)(ya + dy) * W;
        for (int kx = 0; kx < k; kx++) {
            int dx = kx - j->pl;
            int xa = dx < 0 ? -dx : 0, xb = W - dx < W ? W - dx : W;               /* columns reading inside */
            if (xa > W) xa = W;
            if (xb < xa) xb = xa;
            /* the run d[i] = plane[s + i], clipped to the plane: what it leaves out lies in the columns zeroed below */
            long s = s0 + dx, lo = s < 0 ? -s : 0, hi = s + m > plane ? plane - s : m;
            if (hi < lo) hi = lo;
            for (int ci = 0; ci < j->Cin; ci++) {
                float *c = col + ((size_t)(ci * k + ky) * k + kx) * n, *d = c + (size_t)(ya - oy0) * W;
                const float *xc = x + ci * plane;
                row_copy(c, NULL, (ya - oy0) * W);
                row_copy(d + lo, xc + s + lo, (int)(hi - lo));
                for (int oy = ya; oy < yb && (xa > 0 || xb < W); oy++) {
                    float *r = d + (size_t)(oy - ya) * W;
                    for (int ox = 0; ox < xa; ox++) r[ox] = 0.0f;
                    for (int ox = xb; ox < W; ox++) r[ox] = 0.0f;
                }
                row_copy(d + m, NULL, (oy1 - yb) * W);
            }
        }
    }
}

/* im2col of a tile of whole output rows oy0..oy1-1 at stride 1 (every tile of a small map, such as the 8x8
 * latents of a small model, whose 8-float rows made im2col a sixth of a GeNIe sample's time). For one (ky, kx) the
 * output rows and columns that read inside the image are the same in every input channel, so they are found once
 * and each channel's rows are copies without a test. The same values as im2col. */
static void im2col_rows(const conv_job *j, const float *x, int oy0, int oy1, float *col)
{
    int k = j->k, Wo = j->Wo, W = j->W, n = (oy1 - oy0) * Wo;
    size_t plane = (size_t)j->H * W;
    if (W == Wo) {
        im2col_rows_same(j, x, oy0, oy1, col);
        return;
    }
    for (int ky = 0; ky < k; ky++) {
        int dy = ky - j->pt;
        int ya = oy0 > -dy ? oy0 : -dy, yb = oy1 < j->H - dy ? oy1 : j->H - dy; /* rows reading inside */
        if (ya > oy1) ya = oy1;
        if (yb < ya) yb = ya;
        for (int kx = 0; kx < k; kx++) {
            int dx = kx - j->pl;
            int xa = dx < 0 ? -dx : 0, xb = Wo < W - dx ? Wo : W - dx;          /* columns reading inside */
            if (xa > Wo) xa = Wo;
            if (xb < xa) xb = xa;
            for (int ci = 0; ci < j->Cin; ci++) {
                float *c = col + ((size_t)(ci * k + ky) * k + kx) * n;
                const float *xc = x + ci * plane;
                row_copy(c, NULL, (ya - oy0) * Wo);
                for (int oy = ya; oy < yb; oy++) {
                    float *d = c + (size_t)(oy - oy0) * Wo;
                    row_copy(d, NULL, xa);
                    row_copy(d + xa, xc + (size_t)(oy + dy) * W + xa + dx, xb - xa);
                    row_copy(d + xb, NULL, Wo - xb);
                }
                row_copy(c + (size_t)(yb - oy0) * Wo, NULL, (oy1 - yb) * Wo);
            }
        }
    }
}

static void conv_task(void *v, int task, int worker)
{
    conv_job *j = v;
    float *scratch = pool_scratch(j->p, worker);
    int cc = task % j->ncchunk, pc = (task / j->ncchunk) % j->npchunk, b = task / (j->ncchunk * j->npchunk);
    int P = j->Ho * j->Wo;
    int p0 = pc * j->pchunk, p1 = p0 + j->pchunk < P ? p0 + j->pchunk : P;
    int c0 = cc * j->cchunk, c1 = c0 + j->cchunk < j->Cout ? c0 + j->cchunk : j->Cout;
    if (p0 >= p1 || c0 >= c1) return;
    const float *x = j->x + (size_t)b * j->Cin * j->H * j->W;
    const float *col;
    int ldb;
    if (j->direct) {
        col = x + p0;
        ldb = P;
    } else {
        if (j->stride == 1 && p0 % j->Wo == 0 && p1 % j->Wo == 0)
            im2col_rows(j, x, p0 / j->Wo, p1 / j->Wo, scratch);
        else
            im2col(j, x, p0, p1, scratch);
        col = scratch;
        ldb = p1 - p0;
    }
    float *y = j->y + ((size_t)b * j->Cout + c0) * P + p0;
    float beta = 0;
    if (j->bias) {
        for (int c = c0; c < c1; c++)
            for (int p = 0; p < p1 - p0; p++) y[(size_t)(c - c0) * P + p] = j->bias[c];
        beta = 1;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c1 - c0, p1 - p0, j->K, 1.0f, j->w + (size_t)c0 * j->K,
                j->K, col, ldb, beta, y, P);
}

static void cpu_conv2d(ops_backend *be, const float *x, int B, int Cin, int H, int W, const float *w,
                       const float *bias, int Cout, int k, int stride, const int pad[4], float *y)
{
    conv_job j = {.x = x, .w = w, .bias = bias, .y = y, .B = B, .Cin = Cin, .H = H, .W = W, .Cout = Cout, .k = k,
                  .stride = stride, .pt = pad[0], .pl = pad[1], .p = pool_of(be)};
    j.Ho = (H + pad[0] + pad[2] - k) / stride + 1;
    j.Wo = (W + pad[1] + pad[3] - k) / stride + 1;
    j.K = Cin * k * k;
    j.direct = k == 1 && stride == 1 && !pad[0] && !pad[1] && !pad[2] && !pad[3];
    int P = j.Ho * j.Wo;
    size_t cap = SCRATCH_FLOATS / j.K;
    j.pchunk = (int)(cap < 1024 ? cap : 1024);
    if (j.pchunk < 1) j.pchunk = 1;
    if (j.pchunk > P) j.pchunk = P;
    j.npchunk = ceil_div(P, j.pchunk);
    /* few pixel tiles (small maps, deep layers): split output channels too */
    int tiles = B * j.npchunk, want = 8;
    j.ncchunk = 1;
    if (tiles < want) {
        j.ncchunk = ceil_div(want, tiles);
        int cc = ceil_div(Cout, j.ncchunk);
        if (cc < 32) cc = 32;
        j.ncchunk = ceil_div(Cout, cc);
    }
    j.cchunk = ceil_div(Cout, j.ncchunk);
    run_tasks(be, conv_task, &j, B * j.npchunk * j.ncchunk, 2.0 * B * P * Cout * j.K / 30);
}

/* ---- attention ---- */

#ifdef HAVE_AVX2_PATH
/* The AVX2+FMA twin of row_max + exp_shifted below (same polynomial, 8 lanes), chosen at start-up when the CPU
 * has it; the softmax is a third of the attention time otherwise. Returns the sum of exp(s[i] - max). */
__attribute__((target("avx2,fma"))) static float softmax_row_avx2(float *s, int n)
{
    int i = 0;
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + i));
    float lanes[8], mx;
    _mm256_storeu_ps(lanes, vm);
    mx = lanes[0];
    for (int l = 1; l < 8; l++) mx = fmaxf(mx, lanes[l]);
    for (; i < n; i++) mx = fmaxf(mx, s[i]);
    const __m256 vmx = _mm256_set1_ps(mx), lo = _mm256_set1_ps(-87.0f), log2e = _mm256_set1_ps(1.44269504f);
    const __m256 ln2hi = _mm256_set1_ps(-0.693359375f), ln2lo = _mm256_set1_ps(2.12194440e-4f);
    const __m256 c2 = _mm256_set1_ps(1.0f / 2), c3 = _mm256_set1_ps(1.0f / 6), c4 = _mm256_set1_ps(1.0f / 24),
                 c5 = _mm256_set1_ps(1.0f / 120), c6 = _mm256_set1_ps(1.0f / 720), one = _mm256_set1_ps(1.0f);
    __m256 acc = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 x = _mm256_sub_ps(_mm256_loadu_ps(s + i), vmx);
        __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
        x = _mm256_max_ps(x, lo);
        __m256 k = _mm256_round_ps(_mm256_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256 r = _mm256_fmadd_ps(k, ln2lo, _mm256_fmadd_ps(k, ln2hi, x));
        __m256 p = _mm256_fmadd_ps(r, c6, c5);
        p = _mm256_fmadd_ps(r, p, c4);
        p = _mm256_fmadd_ps(r, p, c3);
        p = _mm256_fmadd_ps(r, p, c2);
        p = _mm256_fmadd_ps(r, p, one);
        p = _mm256_fmadd_ps(r, p, one);
        __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
        __m256 y = _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
        _mm256_storeu_ps(s + i, y);
        acc = _mm256_add_ps(acc, y);
    }
    _mm256_storeu_ps(lanes, acc);
    float sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    for (; i < n; i++) {
        s[i] = expf(s[i] - mx);
        sum += s[i];
    }
    return sum;
}
#endif

static int use_avx2;

static float row_max(const float *s, int n)
{
    int i = 0;
    float mx = -INFINITY;
#ifdef __SSE4_1__
    __m128 v = _mm_set1_ps(-INFINITY);
    for (; i + 4 <= n; i += 4) v = _mm_max_ps(v, _mm_loadu_ps(s + i));
    float lanes[4];
    _mm_storeu_ps(lanes, v);
    mx = fmaxf(fmaxf(lanes[0], lanes[1]), fmaxf(lanes[2], lanes[3]));
#endif
    for (; i < n; i++) mx = s[i] > mx ? s[i] : mx;
    return mx;
}

/* s[i] = exp(s[i] - mx) for s[i] <= mx, returning the sum. The softmax of self-attention over a 64x64 latent
 * takes ~10^8 exponentials per layer, so this is vectorised: exp(x) = 2^n * p(r) with x = n ln2 + r,
 * |r| <= ln2/2, p the degree-6 Taylor polynomial (truncation error below 1.3e-7 relative, a couple of ulp). */
static float exp_shifted(float *s, int n, float mx)
{
    int i = 0;
    float sum = 0;
#ifdef __SSE4_1__
    const __m128 vmx = _mm_set1_ps(mx), lo = _mm_set1_ps(-87.0f), log2e = _mm_set1_ps(1.44269504f);
    const __m128 ln2hi = _mm_set1_ps(0.693359375f), ln2lo = _mm_set1_ps(-2.12194440e-4f);
    const __m128 c2 = _mm_set1_ps(1.0f / 2), c3 = _mm_set1_ps(1.0f / 6), c4 = _mm_set1_ps(1.0f / 24),
                 c5 = _mm_set1_ps(1.0f / 120), c6 = _mm_set1_ps(1.0f / 720), one = _mm_set1_ps(1.0f);
    __m128 acc = _mm_setzero_ps();
    for (; i + 4 <= n; i += 4) {
        __m128 x = _mm_sub_ps(_mm_loadu_ps(s + i), vmx);
        __m128 under = _mm_cmplt_ps(x, lo);
        x = _mm_max_ps(x, lo);
        __m128 k = _mm_round_ps(_mm_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m128 r = _mm_sub_ps(_mm_sub_ps(x, _mm_mul_ps(k, ln2hi)), _mm_mul_ps(k, ln2lo));
        __m128 p = _mm_add_ps(c5, _mm_mul_ps(r, c6));
        p = _mm_add_ps(c4, _mm_mul_ps(r, p));
        p = _mm_add_ps(c3, _mm_mul_ps(r, p));
        p = _mm_add_ps(c2, _mm_mul_ps(r, p));
        p = _mm_add_ps(one, _mm_mul_ps(r, p));
        p = _mm_add_ps(one, _mm_mul_ps(r, p));
        __m128i e = _mm_slli_epi32(_mm_add_epi32(_mm_cvtps_epi32(k), _mm_set1_epi32(127)), 23);
        __m128 y = _mm_andnot_ps(under, _mm_mul_ps(p, _mm_castsi128_ps(e)));
        _mm_storeu_ps(s + i, y);
        acc = _mm_add_ps(acc, y);
    }
    float lanes[4];
    _mm_storeu_ps(lanes, acc);
    sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
#endif
    for (; i < n; i++) {
        s[i] = expf(s[i] - mx);
        sum += s[i];
    }
    return sum;
}

#define ATT_QB 128

typedef struct {
    const float *q, *k, *v;
    float *out;
    int ldq, ldk, ldv, B, Tq, Tk, heads, dh, causal, qblocks, qb;
    float scale;
    const pool *p;              /* whose per-thread scratch holds the scores */
} att_job;

static void attention_task(void *v, int task, int worker)
{
    att_job *j = v;
    float *S = pool_scratch(j->p, worker);
    int qi = task % j->qblocks, h = (task / j->qblocks) % j->heads, b = task / (j->qblocks * j->heads);
    int q0 = qi * j->qb, m = j->Tq - q0 < j->qb ? j->Tq - q0 : j->qb;
    /* causal: keys beyond the last query of the block are never seen */
    int tk = j->causal ? (q0 + m < j->Tk ? q0 + m : j->Tk) : j->Tk;
    const float *q = j->q + ((size_t)b * j->Tq + q0) * j->ldq + h * j->dh;
    const float *k = j->k + (size_t)b * j->Tk * j->ldk + h * j->dh;
    const float *vv = j->v + (size_t)b * j->Tk * j->ldv + h * j->dh;
    float *o = j->out + ((size_t)b * j->Tq + q0) * (j->heads * j->dh) + h * j->dh;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, tk, j->dh, j->scale, q, j->ldq, k, j->ldk, 0.0f, S, tk);
    /* unnormalised softmax rows; the 1/sum is applied to the dh-wide output rows instead of the tk-wide scores */
    float inv[ATT_QB];
    for (int r = 0; r < m; r++) {
        float *s = S + (size_t)r * tk;
        int n = j->causal ? q0 + r + 1 : tk;
        if (n > tk) n = tk;
#ifdef HAVE_AVX2_PATH
        if (use_avx2) {
            inv[r] = 1.0f / softmax_row_avx2(s, n);
        } else
#endif
            inv[r] = 1.0f / exp_shifted(s, n, row_max(s, n));
        if (n < tk) memset(s + n, 0, (tk - n) * sizeof(float));
    }
    int ldo = j->heads * j->dh;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, j->dh, tk, 1.0f, S, tk, vv, j->ldv, 0.0f, o, ldo);
    for (int r = 0; r < m; r++)
        for (int d = 0; d < j->dh; d++) o[(size_t)r * ldo + d] *= inv[r];
}

static void cpu_attention(ops_backend *be, const float *q, int ldq, const float *k, int ldk, const float *v, int ldv,
                          int B, int Tq, int Tk, int heads, int dh, float scale, int causal, float *out)
{
    att_job j = {q, k, v, out, ldq, ldk, ldv, B, Tq, Tk, heads, dh, causal, 0, 0, scale, pool_of(be)};
    size_t qb = SCRATCH_FLOATS / (size_t)Tk;   /* ATT_QB rows of Tk scores fit the scratch up to Tk = 32768 */
    j.qb = (int)(qb < ATT_QB ? qb : ATT_QB);
    if (j.qb < 1) j.qb = 1;
    j.qblocks = ceil_div(Tq, j.qb);
    run_tasks(be, attention_task, &j, B * heads * j.qblocks, 4.0 * B * heads * Tq * Tk * dh / 20);
}

/* ---- embeddings ---- */

static void cpu_timestep_embedding(ops_backend *be, const float *t, int B, int dim, int flip, float shift, float *y)
{
    int half = dim / 2;
    /* float32 throughout, in the order diffusers computes it, so large t*f arguments round the same way */
    float lnp = (float)log(10000.0);
    for (int b = 0; b < B; b++) {
        float *e = y + (size_t)b * dim;
        for (int i = 0; i < half; i++) {
            float f = expf(-lnp * (float)i / ((float)half - shift));
            float a = t[b] * f, s = sinf(a), c = cosf(a);
            e[i] = flip ? c : s;
            e[half + i] = flip ? s : c;
        }
        if (dim % 2) e[dim - 1] = 0.0f;
    }
}

static void cpu_embed_tokens(ops_backend *be, const int *ids, int B, int L, const float *tok, const float *pos, int C,
                             float *y)
{
    for (int b = 0; b < B; b++)
        for (int l = 0; l < L; l++) {
            const float *te = tok + (size_t)ids[b * L + l] * C, *pe = pos + (size_t)l * C;
            float *o = y + ((size_t)b * L + l) * C;
            for (int i = 0; i < C; i++) o[i] = te[i] + pe[i];
        }
}

/* ---- the sampling loop's elementwise ops: single-threaded, latents are small ---- */

static void cpu_fill(ops_backend *be, float *y, size_t n, float v)
{
    for (size_t i = 0; i < n; i++) y[i] = v;
}

static void cpu_fill_normal(ops_backend *be, float *y, size_t n, uint64_t seed, uint64_t stream)
{
    philox_fill_normal(seed, stream, y, n);
}

static void cpu_lincomb(ops_backend *be, float a, const float *x, float b, const float *z, size_t n, float *y)
{
    if (z)
        for (size_t i = 0; i < n; i++) y[i] = a * x[i] + b * z[i];
    else
        for (size_t i = 0; i < n; i++) y[i] = a * x[i];
}

static void cpu_div_scalar(ops_backend *be, const float *x, float d, size_t n, float *y)
{
    for (size_t i = 0; i < n; i++) y[i] = x[i] / d;
}

static void cpu_clamp(ops_backend *be, const float *x, float lo, float hi, size_t n, float *y)
{
    for (size_t i = 0; i < n; i++) y[i] = fminf(fmaxf(x[i], lo), hi);
}

static void cpu_guide(ops_backend *be, const float *u, const float *c, float g, size_t n, float *y)
{
    for (size_t i = 0; i < n; i++) y[i] = u[i] + g * (c[i] - u[i]);
}

static void cpu_vae_sample(ops_backend *be, const float *mu, const float *lv, const float *eps, float sf, size_t n,
                           float *z)
{
    for (size_t i = 0; i < n; i++) {
        float s = eps ? mu[i] + expf(0.5f * lv[i]) * eps[i] : mu[i];
        z[i] = sf * s;
    }
}

void ops_step_host(const ops_step *c, const float *eps, float *x, float *prev, size_t n)
{
    const float s_eps = c->s_eps, s_x0 = c->s_x0, ca = c->c_a, cb = c->c_b, r = c->clip_range;
    switch (c->kind) {
    case OPS_STEP_DDIM:
        for (size_t i = 0; i < n; i++) {
            float x0 = (x[i] - s_eps * eps[i]) / s_x0;
            if (c->clip) x0 = x0 < -r ? -r : x0 > r ? r : x0;
            x[i] = ca * x0 + cb * eps[i];
        }
        break;
    case OPS_STEP_DPM1:
        for (size_t i = 0; i < n; i++) {
            float m0 = (x[i] - s_eps * eps[i]) / s_x0;
            x[i] = ca * x[i] - cb * m0;
            prev[i] = m0;
        }
        break;
    case OPS_STEP_DPM2: {
        const float inv_r0 = c->inv_r0, c_d1 = c->c_d1;
        const int midpoint = c->midpoint;
        for (size_t i = 0; i < n; i++) {
            float m0 = (x[i] - s_eps * eps[i]) / s_x0;
            float d1 = inv_r0 * (m0 - prev[i]);
            float a = ca * x[i] - cb * m0;
            x[i] = midpoint ? a - c_d1 * d1 : a + c_d1 * d1;
            prev[i] = m0;
        }
        break;
    }
    case OPS_STEP_LCM: {
        const float c_skip = c->c_skip, c_out = c->c_out;
        for (size_t i = 0; i < n; i++) {
            float x0 = c->vpred ? s_x0 * x[i] - s_eps * eps[i] : (x[i] - s_eps * eps[i]) / s_x0;
            if (c->clip) x0 = x0 < -r ? -r : x0 > r ? r : x0;
            float d = c_out * x0 + c_skip * x[i];
            x[i] = c->noise ? ca * d + cb * prev[i] : d;
        }
        break;
    }
    case OPS_STEP_TCD:
        for (size_t i = 0; i < n; i++) {
            float x0 = c->vpred ? s_x0 * x[i] - s_eps * eps[i] : (x[i] - s_eps * eps[i]) / s_x0;
            float e = c->vpred ? s_x0 * eps[i] + s_eps * x[i] : eps[i];
            float xs = ca * x0 + cb * e;
            x[i] = c->noise ? c->n_a * xs + c->n_b * prev[i] : xs;
        }
        break;
    }
}

static void cpu_sched_step(ops_backend *be, const ops_step *c, const float *eps, float *x, float *prev, size_t n)
{
    ops_step_host(c, eps, x, prev, n);
}

static int cpu_sync(ops_backend *be) { return 0; }

/* ---- lifetime ---- */

static void cpu_upload(ops_backend *be, float *dst, const float *host, size_t n) { cpu_copy(be, dst, host, n); }
static void cpu_download(ops_backend *be, float *host, const float *src, size_t n) { cpu_copy(be, host, src, n); }

static void cpu_destroy(ops_backend *be)
{
    if (!be) return;
    pool_free(pool_of(be));
    mt_free(mt_of(be));
    free(be);
}

int ops_cpu_threads(const ops_backend *be) { return pool_threads(((const cpu_backend *)be)->p); }

ops_backend *ops_cpu_create(int nthreads)
{
    int cores = util_cores();
    if (nthreads > cores)   /* more compute threads than cores only wait for each other (1000 ran 50x slower) */
        fprintf(stderr, "genie: %d engine threads asked, %d cores here: using %d\n", nthreads, cores, cores);
    if (nthreads <= 0 || nthreads > cores) nthreads = cores;
    cpu_backend *c = calloc(1, sizeof *c);
    if (!c) {
        err_set("cpu backend: out of memory");
        return NULL;
    }
    ops_backend *be = &c->be;
    *be = (ops_backend){
        .name = "cpu", .impl = c, .weights_on_host = 1, .alloc = cpu_alloc, .release = cpu_release,
        .weight_put = cpu_weight_put, .weight_drop = cpu_weight_drop, .upload = cpu_upload, .download = cpu_download,
        .copy = cpu_copy, .count_nonfinite = cpu_count_nonfinite, .conv2d = cpu_conv2d, .linear = cpu_linear,
        .group_norm = cpu_group_norm, .layer_norm = cpu_layer_norm, .add = cpu_add, .mul = cpu_mul,
        .add_channel = cpu_add_channel, .act = cpu_act, .geglu = cpu_geglu, .attention = cpu_attention,
        .upsample2x = cpu_upsample2x, .concat = cpu_concat, .to_tokens = cpu_to_tokens,
        .from_tokens = cpu_from_tokens, .timestep_embedding = cpu_timestep_embedding,
        .embed_tokens = cpu_embed_tokens, .fill = cpu_fill, .fill_normal = cpu_fill_normal,
        .lincomb = cpu_lincomb, .div_scalar = cpu_div_scalar, .clamp = cpu_clamp, .guide = cpu_guide,
        .vae_sample = cpu_vae_sample, .sched_step = cpu_sched_step, .sync = cpu_sync, .destroy = cpu_destroy,
        .host_alloc = cpu_host_alloc, .host_free = cpu_host_free, .mem = cpu_mem, .replay = cpu_replay,
        .precision = OPS_F32,
    };
    if (!(c->p = pool_create(nthreads, SCRATCH_FLOATS * sizeof(float)))) {
        err_wrap("cpu backend: ");
        cpu_destroy(be);
        return NULL;
    }
    openblas_set_num_threads(1);
#ifdef HAVE_AVX2_PATH
    __builtin_cpu_init();
    use_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return be;
}
