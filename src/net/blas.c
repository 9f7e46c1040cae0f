/* Replacements for libdarknet's CPU hot loops; see blas.h for why defining them here is enough.
 *
 * The library's versions are scalar loops that call a function per element (activate, im2col_get_pixel), compute
 * pow/sqrt in double per element (variance_cpu, normalize_cpu), and do convolutions with a single-threaded
 * naive gemm. These keep each function's formula (including darknet's own epsilons and the unbiased
 * batch*spatial-1 variance divisor) but hoist per-channel terms out of the inner loops so the loops vectorise,
 * and hand gemm to OpenBLAS. On top, whole layers (convolutional, batch norm, max pool) are replaced by the same
 * computation split over a small thread pool, and batch norm's seven passes are fused into three.
 * Reductions sum in a different order than the library, so results match it to float rounding, not bit for
 * bit; copies, im2col, col2im and max pooling match it exactly. */
#define _GNU_SOURCE /* RTLD_NEXT */
#include "src/net/blas.h"
#include "common/util.h"

#include <cblas.h>
#include <dlfcn.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/pool.h"

/* gcc -O2 only vectorises loops its "very cheap" cost model accepts, which excludes most loops here, and
 * -ftrapping-math (the default) keeps a float comparison from becoming a vector select. Nothing here uses
 * floating-point exceptions. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic", "no-trapping-math")
#endif

/* ---- thread pools: the calling thread and its pool's workers share the tasks of one call ----
 * Work is split into POOL_TASKS tasks by static ranges and any thread may run any task: a task's result never
 * depends on which thread ran it, and the split never depends on the pool's size, so one seed gives the same
 * weights on any machine (sums such as the convolution's weight gradient are taken per task, then in order). */

/* below this many floats touched, a loop runs on the calling thread: waking a worker costs more */
#define PAR_MIN 32768
/* Fixed, so that results do not depend on the core count; it also caps the threads one call can use. 4 is what
 * a 2-core pool used to split into, so results made on 2 cores stayed as they were. */
#define POOL_TASKS 4

typedef void (*task_fn)(void *ctx, int task, int ntasks);

struct buf {
    float *p;
    size_t n;
};

struct blas_pool {
    pool *threads;        /* NULL: every task runs on the calling thread */
    /* the convolution's per-task workspaces and weight-gradient buffers: a layer call holds them */
    pthread_mutex_t conv_mu;
    struct buf ws[POOL_TASKS], dw[POOL_TASKS];
};

/* The replacements are called by libdarknet with no context argument, so their state is global: the pool each
 * thread selected (blas_pool_use), whether the thread is inside a task (its inner loops then run serially), the
 * once-only OpenBLAS set-up, and the convolution buffers of threads that selected no pool. */
static _Thread_local blas_pool *cur_pool;
static _Thread_local int in_task;
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static blas_pool no_pool = {.conv_mu = PTHREAD_MUTEX_INITIALIZER};

static blas_pool *pool_here(void) { return cur_pool ? cur_pool : &no_pool; }

/* one call's tasks as a job of the common pool */
struct par_job {
    task_fn fn;
    void *ctx;
    int ntasks;
};

static void par_task(void *ctx, int t, int worker)
{
    const struct par_job *j = ctx;
    in_task = 1;
    j->fn(j->ctx, t, j->ntasks);
    in_task = 0;
}

static void par_run(task_fn fn, void *ctx, int ntasks)
{
    pool *threads = pool_here()->threads;
    if (ntasks <= 1 || !threads || in_task) {
        int outer = in_task;
        in_task = 1; /* as on the pool: what the tasks call inside runs serially either way */
        for (int t = 0; t < ntasks; ++t) fn(ctx, t, ntasks);
        in_task = outer;
        return;
    }
    struct par_job j = {fn, ctx, ntasks};
    pool_run(threads, par_task, &j, ntasks);
}

/* how many tasks a loop touching `work` floats is worth */
static int par_tasks(size_t work)
{
    return work < PAR_MIN || in_task ? 1 : POOL_TASKS;
}

/* task t's share [lo, hi) of n items */
static void split(int n, int t, int nt, int *lo, int *hi)
{
    *lo = (int)((long long)n * t / nt);
    *hi = (int)((long long)n * (t + 1) / nt);
}

/* OpenBLAS runs single-threaded inside our tasks; its own threads would fight them for the cores. Every path to
 * cblas runs this first, so that holds even when no pool is made (then all runs on the caller). */
static void blas_single(void)
{
    openblas_set_num_threads(1);
}

blas_pool *blas_pool_create(int threads)
{
    pthread_once(&blas_once, blas_single);
    if (threads <= 0) threads = util_cores();
    if (threads < 1) threads = 1;
    if (threads > POOL_TASKS) threads = POOL_TASKS; /* more could never run at once */
    blas_pool *p = calloc(1, sizeof *p);
    if (!p) {
        err_set("blas: out of memory");
        return NULL;
    }
    if (threads > 1 && !(p->threads = pool_create(threads, 0))) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->conv_mu, NULL);
    return p;
}

void blas_pool_use(blas_pool *p) { cur_pool = p; }

void blas_pool_free(blas_pool *p)
{
    if (!p) return;
    pool_free(p->threads);
    for (int t = 0; t < POOL_TASKS; t++) {
        free(p->ws[t].p);
        free(p->dw[t].p);
    }
    pthread_mutex_destroy(&p->conv_mu);
    free(p);
}

/* ---- gemm: C = ALPHA*op(A)*op(B) + BETA*C, row-major, like darknet's gemm_cpu ---- */

struct gemm_args {
    int TA, TB, M, N, K, lda, ldb, ldc;
    float ALPHA, BETA, *A, *B, *C;
};

static void gemm_rows(const struct gemm_args *g, int m0, int m1)
{
    if (m1 <= m0) return;
    /* rows m0.. of op(A): row offset of A, or column offset when A is stored transposed */
    const float *a = g->A + (g->TA ? (size_t)m0 : (size_t)m0 * g->lda);
    cblas_sgemm(CblasRowMajor, g->TA ? CblasTrans : CblasNoTrans, g->TB ? CblasTrans : CblasNoTrans, m1 - m0,
                g->N, g->K, g->ALPHA, a, g->lda, g->B, g->ldb, g->BETA, g->C + (size_t)m0 * g->ldc, g->ldc);
}

static void gemm_task(void *ctx, int t, int nt)
{
    const struct gemm_args *g = ctx;
    int lo, hi;
    split(g->M, t, nt, &lo, &hi);
    gemm_rows(g, lo, hi);
}

/* darknet scales C by BETA and then adds ALPHA*op(A)*op(B), as sgemm does; large products are split by rows of C
 * over the pool. (With BETA == 0, sgemm does not read C, where darknet multiplies it by 0: they differ only when
 * C holds inf or NaN.) */
void gemm_cpu(int TA, int TB, int M, int N, int K, float ALPHA, float *A, int lda, float *B, int ldb, float BETA,
              float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    pthread_once(&blas_once, blas_single);
    struct gemm_args g = {TA, TB, M, N, K, lda, ldb, ldc, ALPHA, BETA, A, B, C};
    int nt = par_tasks((size_t)M * N * (K > 0 ? K : 1) / 16);
    if (nt > M) nt = M;
    par_run(gemm_task, &g, nt);
}

void gemm(int TA, int TB, int M, int N, int K, float ALPHA, float *A, int lda, float *B, int ldb, float BETA,
          float *C, int ldc)
{
    gemm_cpu(TA, TB, M, N, K, ALPHA, A, lda, B, ldb, BETA, C, ldc);
}

/* ---- im2col / col2im ----
 * Column row c = (channel, kernel row, kernel col) holds, for every output position (h, w), the input pixel at
 * (h*stride + kernel row - pad, w*stride + kernel col - pad), or 0 outside the image. For one column row and one
 * output row, the valid w form one contiguous range [w0, w1), computed once instead of testing every pixel. */

static void valid_range(int offset, int stride, int n_out, int n_in, int *lo, int *hi)
{
    /* smallest w with offset + w*stride >= 0, and smallest w with offset + w*stride >= n_in */
    int a = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
    int b = offset >= n_in ? 0 : (n_in - offset + stride - 1) / stride;
    if (a > n_out) a = n_out;
    if (b > n_out) b = n_out;
    if (b < a) b = a;
    *lo = a;
    *hi = b;
}

void im2col_cpu(float *data_im, int channels, int height, int width, int ksize, int stride, int pad,
                float *data_col)
{
    int height_col = (height + 2 * pad - ksize) / stride + 1;
    int width_col = (width + 2 * pad - ksize) / stride + 1;
    int channels_col = channels * ksize * ksize;
    for (int c = 0; c < channels_col; ++c) {
        int kw = c % ksize, kh = (c / ksize) % ksize, c_im = c / ksize / ksize;
        int col0 = kw - pad;
        int w0, w1;
        valid_range(col0, stride, width_col, width, &w0, &w1);
        const float *im = data_im + (size_t)c_im * height * width;
        for (int h = 0; h < height_col; ++h) {
            float *out = data_col + ((size_t)c * height_col + h) * width_col;
            int row = kh + h * stride - pad;
            if (row < 0 || row >= height) {
                for (int w = 0; w < width_col; ++w) out[w] = 0;
                continue;
            }
            /* rows are short (tens of floats): plain loops, not memset/memcpy calls */
            const float *src = im + (size_t)row * width + col0;
            for (int w = 0; w < w0; ++w) out[w] = 0;
            if (stride == 1) {
                for (int w = w0; w < w1; ++w) out[w] = src[w];
            } else {
                for (int w = w0; w < w1; ++w) out[w] = src[w * stride];
            }
            for (int w = w1; w < width_col; ++w) out[w] = 0;
        }
    }
}

/* Adds every column entry back onto its input pixel, in the library's loop order (column row, output row, output
 * column), so each pixel receives its contributions in the same sequence and the sums match it exactly. */
void col2im_cpu(float *data_col, int channels, int height, int width, int ksize, int stride, int pad,
                float *data_im)
{
    int height_col = (height + 2 * pad - ksize) / stride + 1;
    int width_col = (width + 2 * pad - ksize) / stride + 1;
    int channels_col = channels * ksize * ksize;
    for (int c = 0; c < channels_col; ++c) {
        int kw = c % ksize, kh = (c / ksize) % ksize, c_im = c / ksize / ksize;
        int col0 = kw - pad;
        int w0, w1;
        valid_range(col0, stride, width_col, width, &w0, &w1);
        float *im = data_im + (size_t)c_im * height * width;
        for (int h = 0; h < height_col; ++h) {
            int row = kh + h * stride - pad;
            if (row < 0 || row >= height) continue;
            const float *in = data_col + ((size_t)c * height_col + h) * width_col;
            float *dst = im + (size_t)row * width + col0;
            if (stride == 1) {
                for (int w = w0; w < w1; ++w) dst[w] += in[w];
            } else {
                for (int w = w0; w < w1; ++w) dst[w * stride] += in[w];
            }
        }
    }
}

/* ---- batch normalisation: x is [batch][filters][spatial]; every pass is split over filters ---- */

/* Sum of n floats with 8 independent accumulators (vectorisable, and more accurate than one running sum). */
static float sum_f(const float *x, int n)
{
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k) acc[k] += x[i + k];
    float s = 0;
    for (; i < n; ++i) s += x[i];
    for (int k = 0; k < 8; ++k) s += acc[k];
    return s;
}

static float dot_f(const float *a, const float *b, int n)
{
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
    float s = 0;
    for (; i < n; ++i) s += a[i] * b[i];
    for (int k = 0; k < 8; ++k) s += acc[k];
    return s;
}

/* sum of (x - m)^2 */
static float sqdev_f(const float *x, float m, int n)
{
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k) acc[k] += (x[i + k] - m) * (x[i + k] - m);
    float s = 0;
    for (; i < n; ++i) s += (x[i] - m) * (x[i] - m);
    for (int k = 0; k < 8; ++k) s += acc[k];
    return s;
}

/* sum of d * (x - m) */
static float dotdev_f(const float *d, const float *x, float m, int n)
{
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k) acc[k] += d[i + k] * (x[i + k] - m);
    float s = 0;
    for (; i < n; ++i) s += d[i] * (x[i] - m);
    for (int k = 0; k < 8; ++k) s += acc[k];
    return s;
}

/* The arguments of one BN pass, shared by its tasks. */
struct bn {
    float *x, *y, *mean, *var, *mdelta, *vdelta, *out;
    int batch, filters, spatial;
};

static void bn_run(task_fn fn, struct bn *a)
{
    par_run(fn, a, par_tasks((size_t)a->batch * a->filters * a->spatial));
}

/* the filters [lo, hi) of task t */
#define BN_RANGE(a, t, nt, lo, hi)                                                                                 \
    int lo, hi;                                                                                                    \
    split((a)->filters, t, nt, &lo, &hi)

static float *bn_at(const struct bn *a, float *p, int b, int f)
{
    return p + ((size_t)b * a->filters + f) * a->spatial;
}

static void mean_task(void *ctx, int t, int nt)
{
    struct bn *a = ctx;
    BN_RANGE(a, t, nt, lo, hi);
    float scale = 1. / (a->batch * a->spatial);
    for (int f = lo; f < hi; ++f) {
        float s = 0;
        for (int b = 0; b < a->batch; ++b) s += sum_f(bn_at(a, a->x, b, f), a->spatial);
        a->out[f] = s * scale;
    }
}

void mean_cpu(float *x, int batch, int filters, int spatial, float *mean)
{
    struct bn a = {.x = x, .out = mean, .batch = batch, .filters = filters, .spatial = spatial};
    bn_run(mean_task, &a);
}

static void variance_task(void *ctx, int t, int nt)
{
    struct bn *a = ctx;
    BN_RANGE(a, t, nt, lo, hi);
    float scale = 1. / (a->batch * a->spatial - 1); /* unbiased, as darknet does */
    for (int f = lo; f < hi; ++f) {
        float s = 0;
        for (int b = 0; b < a->batch; ++b) s += sqdev_f(bn_at(a, a->x, b, f), a->mean[f], a->spatial);
        a->out[f] = s * scale;
    }
}

void variance_cpu(float *x, float *mean, int batch, int filters, int spatial, float *variance)
{
    struct bn a = {.x = x, .mean = mean, .out = variance, .batch = batch, .filters = filters, .spatial = spatial};
    bn_run(variance_task, &a);
}

/* x = (x - mean) / (sqrt(variance) + 1e-6): darknet adds this epsilon after the square root */
static void normalize_task(void *ctx, int t, int nt)
{
    struct bn *a = ctx;
    BN_RANGE(a, t, nt, lo, hi);
    for (int f = lo; f < hi; ++f) {
        float inv = 1. / (sqrt(a->var[f]) + .000001f);
        float shift = -a->mean[f] * inv;
        for (int b = 0; b < a->batch; ++b) {
            float *x = bn_at(a, a->x, b, f);
            for (int i = 0; i < a->spatial; ++i) x[i] = x[i] * inv + shift;
        }
    }
}

void normalize_cpu(float *x, float *mean, float *variance, int batch, int filters, int spatial)
{
    struct bn a = {.x = x, .mean = mean, .var = variance, .batch = batch, .filters = filters, .spatial = spatial};
    bn_run(normalize_task, &a);
}

/* x *= scales[f] (scale_bias) or x += biases[f] (add_bias); the per-filter vector is in a->mean */
static void scale_task(void *ctx, int t, int nt)
{
    struct bn *a = ctx;
    BN_RANGE(a, t, nt, lo, hi);
    for (int b = 0; b < a->batch; ++b)
        for (int f = lo; f < hi; ++f) {
            float *x = bn_at(a, a->x, b, f), s = a->mean[f];
            for (int i = 0; i < a->spatial; ++i) x[i] *= s;
        }
}

static void bias_task(void *ctx, int t, int nt)
{
    struct bn *a = ctx;
    BN_RANGE(a, t, nt, lo, hi);
    for (int b = 0; b < a->batch; ++b)
        for (int f = lo; f < hi; ++f) {
            float *x = bn_at(a, a->x, b, f), s = a->mean[f];
            for (int i = 0; i < a->spatial; ++i) x[i] += s;
        }
}

void scale_bias(float *output, float *scales, int batch, int n, int size)
{
    struct bn a = {.x = output, .mean = scales, .batch = batch, .filters = n, .spatial = size};
    bn_run(scale_task, &a);
}

void add_bias(float *output, float *biases, int batch, int n, int size)
{
    struct bn a = {.x = output, .mean = biases, .batch = batch, .filters = n, .spatial = size};
    bn_run(bias_task, &a);
}

static void backward_bias_task(void *ctx, int t, int nt)
{
    struct bn *a = ctx;
    BN_RANGE(a, t, nt, lo, hi);
    for (int b = 0; b < a->batch; ++b)
        for (int f = lo; f < hi; ++f) a->out[f] += sum_f(bn_at(a, a->x, b, f), a->spatial);
}

void backward_bias(float *bias_updates, float *delta, int batch, int n, int size)
{
    struct bn a = {.x = delta, .out = bias_updates, .batch = batch, .filters = n, .spatial = size};
    bn_run(backward_bias_task, &a);
}

static void backward_scale_task(void *ctx, int t, int nt)
{
    struct bn *a = ctx;
    BN_RANGE(a, t, nt, lo, hi);
    for (int f = lo; f < hi; ++f) {
        float s = 0;
        for (int b = 0; b < a->batch; ++b) s += dot_f(bn_at(a, a->y, b, f), bn_at(a, a->x, b, f), a->spatial);
        a->out[f] += s;
    }
}

void backward_scale_cpu(float *x_norm, float *delta, int batch, int n, int size, float *scale_updates)
{
    struct bn a = {.x = x_norm, .y = delta, .out = scale_updates, .batch = batch, .filters = n, .spatial = size};
    bn_run(backward_scale_task, &a);
}

/* mean_delta = sum(delta) * -1/sqrt(variance + 1e-5) */
static void mean_delta_task(void *ctx, int t, int nt)
{
    struct bn *a = ctx;
    BN_RANGE(a, t, nt, lo, hi);
    for (int f = lo; f < hi; ++f) {
        float s = 0;
        for (int b = 0; b < a->batch; ++b) s += sum_f(bn_at(a, a->y, b, f), a->spatial);
        a->out[f] = s * (-1. / sqrt(a->var[f] + .00001f));
    }
}

void mean_delta_cpu(float *delta, float *variance, int batch, int filters, int spatial, float *mean_delta)
{
    struct bn a = {.y = delta, .var = variance, .out = mean_delta, .batch = batch, .filters = filters,
                   .spatial = spatial};
    bn_run(mean_delta_task, &a);
}

/* variance_delta = sum(delta * (x - mean)) * -1/2 * (variance + 1e-5)^(-3/2) */
static void variance_delta_task(void *ctx, int t, int nt)
{
    struct bn *a = ctx;
    BN_RANGE(a, t, nt, lo, hi);
    for (int f = lo; f < hi; ++f) {
        float s = 0;
        for (int b = 0; b < a->batch; ++b)
            s += dotdev_f(bn_at(a, a->y, b, f), bn_at(a, a->x, b, f), a->mean[f], a->spatial);
        a->out[f] = s * (-.5 * pow(a->var[f] + .00001f, (float)(-3. / 2.)));
    }
}

void variance_delta_cpu(float *x, float *delta, float *mean, float *variance, int batch, int filters, int spatial,
                        float *variance_delta)
{
    struct bn a = {.x = x, .y = delta, .mean = mean, .var = variance, .out = variance_delta, .batch = batch,
                   .filters = filters, .spatial = spatial};
    bn_run(variance_delta_task, &a);
}

/* delta = delta/(sqrt(variance) + 1e-5) + variance_delta*2*(x - mean)/N + mean_delta/N, N = batch*spatial
 * (this epsilon is again outside the square root, unlike mean_delta's) */
static void normalize_delta_task(void *ctx, int t, int nt)
{
    struct bn *a = ctx;
    BN_RANGE(a, t, nt, lo, hi);
    double n = (double)a->spatial * a->batch;
    for (int f = lo; f < hi; ++f) {
        float g = 1. / (sqrt(a->var[f]) + .00001f);
        float c = a->vdelta[f] * 2. / n;
        float d = a->mdelta[f] / n - c * a->mean[f];
        for (int b = 0; b < a->batch; ++b) {
            float *dl = bn_at(a, a->y, b, f);
            const float *x = bn_at(a, a->x, b, f);
            for (int i = 0; i < a->spatial; ++i) dl[i] = dl[i] * g + c * x[i] + d;
        }
    }
}

void normalize_delta_cpu(float *x, float *mean, float *variance, float *mean_delta, float *variance_delta,
                         int batch, int filters, int spatial, float *delta)
{
    struct bn a = {.x = x, .y = delta, .mean = mean, .var = variance, .mdelta = mean_delta,
                   .vdelta = variance_delta, .batch = batch, .filters = filters, .spatial = spatial};
    bn_run(normalize_delta_task, &a);
}

/* ---- the batch-norm layer: the library's sequence of passes, fused per filter ----
 * The library makes up to seven passes over the whole output, each streaming it from memory. Here each filter's
 * rows are finished while they are still in cache: mean, variance, then one pass writing x, x_norm and the
 * output; backward, one pass for the four sums and one for the new delta. The per-element arithmetic is that of
 * the functions above (so results match the library to float rounding, like them). */

void forward_batchnorm_layer(layer l, network net);
void backward_batchnorm_layer(layer l, network net);

static void activate_range(float *x, const int n, const ACTIVATION a);
static void gradient_range(const float *x, const int n, const ACTIVATION a, float *delta);

struct bn_layer {
    const layer *l;
    const float *mean, *var; /* batch statistics when training, rolling ones otherwise */
    int train;
    int fuse_act; /* the convolutional layer's activation (forward) or its gradient (backward) is done here too,
                     row by row while the row is in cache */
};

static void bn_forward_task(void *ctx, int t, int nt)
{
    const struct bn_layer *c = ctx;
    const layer *l = c->l;
    int lo, hi, sp = l->out_h * l->out_w, nf = l->out_c;
    split(nf, t, nt, &lo, &hi);
    float mscale = 1. / (l->batch * sp), vscale = 1. / (l->batch * sp - 1);
    for (int f = lo; f < hi; ++f) {
        if (c->train) {
            float s = 0;
            for (int b = 0; b < l->batch; ++b) s += sum_f(l->output + ((size_t)b * nf + f) * sp, sp);
            l->mean[f] = s * mscale;
            s = 0;
            for (int b = 0; b < l->batch; ++b) s += sqdev_f(l->output + ((size_t)b * nf + f) * sp, l->mean[f], sp);
            l->variance[f] = s * vscale;
        }
        float inv = 1. / (sqrt(c->var[f]) + .000001f), shift = -c->mean[f] * inv;
        float scale = l->scales[f], bias = l->biases[f];
        for (int b = 0; b < l->batch; ++b) {
            size_t o = ((size_t)b * nf + f) * sp;
            float *y = l->output + o, *x = l->x + o, *xn = l->x_norm + o;
            for (int i = 0; i < sp; ++i) {
                float v = y[i], n = v * inv + shift;
                x[i] = v;
                if (c->train) xn[i] = n;
                y[i] = n * scale + bias;
            }
            if (c->fuse_act) activate_range(y, sp, l->activation);
        }
    }
}

static void bn_forward(const layer *l, const network *net, int fuse_act)
{
    struct bn_layer c = {l, net->train ? l->mean : l->rolling_mean, net->train ? l->variance : l->rolling_variance,
                         net->train, fuse_act};
    par_run(bn_forward_task, &c, par_tasks((size_t)l->outputs * l->batch));
    if (net->train) {
        /* the rolling statistics, with the library's calls and factors */
        scal_cpu(l->out_c, .99, l->rolling_mean, 1);
        axpy_cpu(l->out_c, .01, l->mean, 1, l->rolling_mean, 1);
        scal_cpu(l->out_c, .99, l->rolling_variance, 1);
        axpy_cpu(l->out_c, .01, l->variance, 1, l->rolling_variance, 1);
    }
}

void forward_batchnorm_layer(layer l, network net)
{
    if (l.type == BATCHNORM) copy_cpu(l.outputs * l.batch, net.input, 1, l.output, 1);
    bn_forward(&l, &net, 0);
}

/* sums over one row of the four reductions backward needs; delta is scaled by s first, as scale_bias does */
static void bn_backward_row(const float *d, const float *xn, const float *x, float s, float m, int n, float sums[4])
{
    float a[4][8] = {{0}};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k) {
            float ds = d[i + k] * s;
            a[0][k] += d[i + k];
            a[1][k] += d[i + k] * xn[i + k];
            a[2][k] += ds;
            a[3][k] += ds * (x[i + k] - m);
        }
    float r[4] = {0};
    for (; i < n; ++i) {
        float ds = d[i] * s;
        r[0] += d[i];
        r[1] += d[i] * xn[i];
        r[2] += ds;
        r[3] += ds * (x[i] - m);
    }
    for (int j = 0; j < 4; ++j) {
        for (int k = 0; k < 8; ++k) r[j] += a[j][k];
        sums[j] += r[j];
    }
}

static void bn_backward_task(void *ctx, int t, int nt)
{
    const struct bn_layer *c = ctx;
    const layer *l = c->l;
    int lo, hi, sp = l->out_h * l->out_w, nf = l->out_c;
    split(nf, t, nt, &lo, &hi);
    double n = (double)sp * l->batch;
    for (int f = lo; f < hi; ++f) {
        float s = l->scales[f], m = c->mean[f], v = c->var[f];
        /* bias and scale gradients accumulate row by row, as backward_bias does */
        float sums[4] = {0};
        for (int b = 0; b < l->batch; ++b) {
            size_t o = ((size_t)b * nf + f) * sp;
            float row[4] = {0};
            if (c->fuse_act) gradient_range(l->output + o, sp, l->activation, l->delta + o);
            bn_backward_row(l->delta + o, l->x_norm + o, l->x + o, s, m, sp, row);
            l->bias_updates[f] += row[0];
            for (int j = 1; j < 4; ++j) sums[j] += row[j];
        }
        l->scale_updates[f] += sums[1];
        l->mean_delta[f] = sums[2] * (-1. / sqrt(v + .00001f));
        l->variance_delta[f] = sums[3] * (-.5 * pow(v + .00001f, (float)(-3. / 2.)));
        float g = 1. / (sqrt(v) + .00001f);
        float cx = l->variance_delta[f] * 2. / n;
        float d0 = l->mean_delta[f] / n - cx * m;
        for (int b = 0; b < l->batch; ++b) {
            size_t o = ((size_t)b * nf + f) * sp;
            float *dl = l->delta + o;
            const float *x = l->x + o;
            for (int i = 0; i < sp; ++i) dl[i] = (dl[i] * s) * g + cx * x[i] + d0;
        }
    }
}

static void bn_backward(const layer *l, const network *net, int fuse_act)
{
    struct bn_layer c = {l, net->train ? l->mean : l->rolling_mean, net->train ? l->variance : l->rolling_variance,
                         net->train, fuse_act};
    par_run(bn_backward_task, &c, par_tasks((size_t)l->outputs * l->batch));
}

void backward_batchnorm_layer(layer l, network net)
{
    bn_backward(&l, &net, 0);
    if (l.type == BATCHNORM) copy_cpu(l.outputs * l.batch, l.delta, 1, net.delta, 1);
}

/* ---- convolutional layer: the library's forward/backward with the images of a batch split over the pool ----
 * Each task has its own im2col workspace and, in backward, its own weight-gradient buffer that is added to
 * weight_updates after all tasks finish. Layer and arithmetic are the library's (pjreddie master); binary and
 * xnor layers go to the library's own functions. */

static int buf_reserve(struct buf *b, size_t n)
{
    if (b->n >= n) return 0;
    float *p = malloc(n * sizeof(float));
    if (!p) return -1;
    free(b->p);
    b->p = p;
    b->n = n;
    return 0;
}

struct conv_call {
    layer *l;
    network *net;
    blas_pool *p;     /* whose buffers the tasks use */
};

static void conv_forward_task(void *ctx, int t, int nt)
{
    const struct conv_call *cc = ctx;
    const layer *l = cc->l;
    int g = l->groups, m = l->n / g, k = l->size * l->size * l->c / g, n = l->out_w * l->out_h;
    int lo, hi;
    split(l->batch, t, nt, &lo, &hi);
    for (int i = lo; i < hi; ++i)
        for (int j = 0; j < g; ++j) {
            float *a = l->weights + (size_t)j * l->nweights / g;
            float *b = cc->p->ws[t].p;
            float *c = l->output + (size_t)(i * g + j) * n * m;
            float *im = cc->net->input + (size_t)(i * g + j) * l->c / g * l->h * l->w;
            if (l->size == 1)
                b = im;
            else
                im2col_cpu(im, l->c / g, l->h, l->w, l->size, l->stride, l->pad, b);
            /* darknet zeroes the output and accumulates with BETA = 1: the same as BETA = 0 */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, a, k, b, n, 0, c, n);
        }
}

static void conv_backward_task(void *ctx, int t, int nt)
{
    const struct conv_call *cc = ctx;
    const layer *l = cc->l;
    int g = l->groups, m = l->n / g, n = l->size * l->size * l->c / g, k = l->out_w * l->out_h;
    float *dw = nt == 1 ? l->weight_updates : cc->p->dw[t].p;
    float *ws = cc->p->ws[t].p;
    int lo, hi;
    split(l->batch, t, nt, &lo, &hi);
    for (int i = lo; i < hi; ++i)
        for (int j = 0; j < g; ++j) {
            float *a = l->delta + (size_t)(i * g + j) * m * k;
            float *b = ws;
            float *c = dw + (size_t)j * l->nweights / g;
            float *im = cc->net->input + (size_t)(i * g + j) * l->c / g * l->h * l->w;
            if (l->size == 1)
                b = im;
            else
                im2col_cpu(im, l->c / g, l->h, l->w, l->size, l->stride, l->pad, b);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1, a, k, b, k, 1, c, n);
            if (!cc->net->delta) continue;
            float *imd = cc->net->delta + (size_t)(i * g + j) * l->c / g * l->h * l->w;
            /* a 1x1 layer writes the input gradient directly (overwriting it); others add it back via col2im */
            c = l->size == 1 ? imd : ws;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, k, m, 1, l->weights + (size_t)j * l->nweights / g,
                        n, a, k, 0, c, k);
            if (l->size != 1) col2im_cpu(ws, l->c / g, l->h, l->w, l->size, l->stride, l->pad, imd);
        }
}

typedef void (*layer_fn)(layer, network);

static layer_fn library_layer_fn(const char *name)
{
    return (layer_fn)dlsym(RTLD_NEXT, name);
}

/* Reserves the per-task buffers; returns the task count, or 0 when memory is short (then the library runs it). */
static int conv_prepare(blas_pool *p, const layer *l, int backward)
{
    pthread_once(&blas_once, blas_single);
    int nt = par_tasks((size_t)l->batch * (l->outputs + l->inputs));
    if (nt > l->batch) nt = l->batch;
    if (nt < 1) nt = 1;
    size_t ws = l->workspace_size / sizeof(float) + 1;
    for (int t = 0; t < nt; ++t) {
        if (buf_reserve(&p->ws[t], ws) != 0) return 0;
        if (backward && nt > 1) {
            if (buf_reserve(&p->dw[t], (size_t)l->nweights) != 0) return 0;
            memset(p->dw[t].p, 0, sizeof(float) * l->nweights);
        }
    }
    return nt;
}

void forward_convolutional_layer(layer l, network net)
{
    int nt = 0;
    blas_pool *p = pool_here();
    if (!l.binary && !l.xnor && l.groups >= 1) {
        pthread_mutex_lock(&p->conv_mu);
        nt = conv_prepare(p, &l, 0);
        if (nt) {
            struct conv_call cc = {&l, &net, p};
            par_run(conv_forward_task, &cc, nt);
        }
        pthread_mutex_unlock(&p->conv_mu);
    }
    if (!nt) {
        library_layer_fn("forward_convolutional_layer")(l, net);
        return;
    }
    if (l.batch_normalize) {
        bn_forward(&l, &net, 1); /* forward_batchnorm_layer + activate_array */
    } else {
        add_bias(l.output, l.biases, l.batch, l.n, l.out_h * l.out_w);
        activate_array(l.output, l.outputs * l.batch, l.activation);
    }
}

void backward_convolutional_layer(layer l, network net)
{
    int nt = 0;
    blas_pool *p = pool_here();
    if (!l.binary && !l.xnor && l.groups >= 1) {
        pthread_mutex_lock(&p->conv_mu);
        nt = conv_prepare(p, &l, 1);
        if (!nt) pthread_mutex_unlock(&p->conv_mu);
    }
    if (!nt) {
        library_layer_fn("backward_convolutional_layer")(l, net);
        return;
    }
    if (l.batch_normalize) {
        bn_backward(&l, &net, 1); /* gradient_array + backward_batchnorm_layer */
    } else {
        gradient_array(l.output, l.outputs * l.batch, l.activation, l.delta);
        backward_bias(l.bias_updates, l.delta, l.batch, l.n, l.out_w * l.out_h);
    }
    struct conv_call cc = {&l, &net, p};
    par_run(conv_backward_task, &cc, nt);
    if (nt > 1)
        for (int t = 0; t < nt; ++t) axpy_cpu(l.nweights, 1, p->dw[t].p, 1, l.weight_updates, 1);
    pthread_mutex_unlock(&p->conv_mu);
}

/* ---- max pooling: the library's loops, split over the (image, channel) planes of the batch ----
 * Candidates are scanned in the library's order with its strict '>' so ties pick the same index. Backward adds
 * each output gradient onto the input it came from; all of a plane's indexes lie in that plane, so planes can run
 * in parallel without two tasks touching the same input. */

struct pool_call {
    const layer *l;
    const network *net;
};

/* the library's scan of one output pixel's window: strict '>', so the first of equal maxima wins (written as
 * selects, not branches: the comparisons are data-dependent and mispredict half the time) */
#define MAXPOOL_TAKE(val, idx)                                                                                     \
    do {                                                                                                           \
        float v_ = (val);                                                                                          \
        max_i = v_ > max ? (idx) : max_i;                                                                          \
        max = v_ > max ? v_ : max;                                                                                 \
    } while (0)

/* One output row of a 2x2 stride-2 pool whose windows lie inside the input (row0 = the window's top input
 * row, at index i0): the four candidates are gathered into arrays first so the select chain vectorises. */
static void maxpool_row2x2(const float *row0, int w, int i0, int ow, float *out, int *outi)
{
    enum { CHUNK = 64 };
    float a[CHUNK], b[CHUNK], c[CHUNK], d[CHUNK];
    const float *row1 = row0 + w;
    for (int j0 = 0; j0 < ow; j0 += CHUNK) {
        int n = ow - j0 < CHUNK ? ow - j0 : CHUNK;
        for (int j = 0; j < n; ++j) {
            a[j] = row0[2 * (j0 + j)];
            b[j] = row0[2 * (j0 + j) + 1];
            c[j] = row1[2 * (j0 + j)];
            d[j] = row1[2 * (j0 + j) + 1];
        }
        for (int j = 0; j < n; ++j) {
            float max = -FLT_MAX;
            int max_i = -1, k = i0 + 2 * (j0 + j);
            MAXPOOL_TAKE(a[j], k);
            MAXPOOL_TAKE(b[j], k + 1);
            MAXPOOL_TAKE(c[j], k + w);
            MAXPOOL_TAKE(d[j], k + w + 1);
            out[j0 + j] = max;
            outi[j0 + j] = max_i;
        }
    }
}

static void maxpool_forward_task(void *ctx, int t, int nt)
{
    const struct pool_call *pc = ctx;
    const layer *l = pc->l;
    int lo, hi;
    split(l->batch * l->c, t, nt, &lo, &hi);
    int off = -l->pad / 2, oh = l->out_h, ow = l->out_w;
    /* 2x2 windows at stride 2 that all lie inside the input: no bounds tests */
    int simple = l->size == 2 && l->stride == 2 && off == 0 && 2 * oh <= l->h && 2 * ow <= l->w;
    const float *in = pc->net->input;
    for (int p = lo; p < hi; ++p) {
        int plane = p * l->h * l->w;
        float *out = l->output + (size_t)p * oh * ow;
        int *outi = l->indexes + (size_t)p * oh * ow;
        for (int i = 0; i < oh; ++i) {
            if (simple) {
                int i0 = plane + 2 * i * l->w;
                maxpool_row2x2(in + i0, l->w, i0, ow, out + i * ow, outi + i * ow);
                continue;
            }
            for (int j = 0; j < ow; ++j) {
                float max = -FLT_MAX;
                int max_i = -1;
                for (int n = 0; n < l->size; ++n) {
                    int y = off + i * l->stride + n;
                    for (int m = 0; m < l->size; ++m) {
                        int x = off + j * l->stride + m;
                        int index = plane + y * l->w + x;
                        MAXPOOL_TAKE((y >= 0 && y < l->h && x >= 0 && x < l->w) ? in[index] : -FLT_MAX, index);
                    }
                }
                out[i * ow + j] = max;
                outi[i * ow + j] = max_i;
            }
        }
    }
}

static void maxpool_backward_task(void *ctx, int t, int nt)
{
    const struct pool_call *pc = ctx;
    const layer *l = pc->l;
    int lo, hi;
    split(l->batch * l->c, t, nt, &lo, &hi);
    size_t per = (size_t)l->out_h * l->out_w;
    for (size_t i = lo * per; i < hi * per; ++i) pc->net->delta[l->indexes[i]] += l->delta[i];
}

void forward_maxpool_layer(layer l, network net)
{
    struct pool_call pc = {&l, &net};
    par_run(maxpool_forward_task, &pc, par_tasks((size_t)l.batch * (l.inputs + l.outputs)));
}

void backward_maxpool_layer(layer l, network net)
{
    struct pool_call pc = {&l, &net};
    par_run(maxpool_backward_task, &pc, par_tasks((size_t)l.batch * (l.inputs + l.outputs)));
}

/* ---- vector helpers darknet's layers and updates call on whole buffers ---- */

/* Contiguous fills and copies of whole layer buffers (darknet zeroes every layer's delta each forward pass and
 * copies BN inputs twice) are split over the pool: one thread does not reach the memory bandwidth. */
struct vec {
    float *x, *y, alpha;
    int n;
};

static void fill_task(void *ctx, int t, int nt)
{
    const struct vec *v = ctx;
    int lo, hi;
    split(v->n, t, nt, &lo, &hi);
    if (v->alpha == 0) {
        memset(v->x + lo, 0, sizeof(float) * (hi - lo));
        return;
    }
    for (int i = lo; i < hi; ++i) v->x[i] = v->alpha;
}

static void copy_task(void *ctx, int t, int nt)
{
    const struct vec *v = ctx;
    int lo, hi;
    split(v->n, t, nt, &lo, &hi);
    memcpy(v->y + lo, v->x + lo, sizeof(float) * (hi - lo));
}

void fill_cpu(int N, float ALPHA, float *X, int INCX)
{
    if (INCX == 1) {
        struct vec v = {X, NULL, ALPHA, N};
        par_run(fill_task, &v, N > 0 ? par_tasks(N) : 0);
        return;
    }
    for (int i = 0; i < N; ++i) X[(size_t)i * INCX] = ALPHA;
}

void copy_cpu(int N, float *X, int INCX, float *Y, int INCY)
{
    if (INCX == 1 && INCY == 1) {
        /* overlapping buffers (never the case in darknet) keep memmove's meaning on one thread */
        if (X + N <= Y || Y + N <= X) {
            struct vec v = {X, Y, 0, N};
            par_run(copy_task, &v, N > 0 ? par_tasks(N) : 0);
        } else {
            memmove(Y, X, sizeof(float) * N);
        }
        return;
    }
    for (int i = 0; i < N; ++i) Y[(size_t)i * INCY] = X[(size_t)i * INCX];
}

void axpy_cpu(int N, float ALPHA, float *X, int INCX, float *Y, int INCY)
{
    if (INCX == 1 && INCY == 1) {
        for (int i = 0; i < N; ++i) Y[i] += ALPHA * X[i];
        return;
    }
    for (int i = 0; i < N; ++i) Y[(size_t)i * INCY] += ALPHA * X[(size_t)i * INCX];
}

void scal_cpu(int N, float ALPHA, float *X, int INCX)
{
    if (INCX == 1) {
        for (int i = 0; i < N; ++i) X[i] *= ALPHA;
        return;
    }
    for (int i = 0; i < N; ++i) X[(size_t)i * INCX] *= ALPHA;
}

/* ---- activations: one loop per type instead of a function call per element. The formulas, including where
 * darknet computes in double (the .1 of leaky, exp), are the library's. ---- */

static void activate_range(float *x, const int n, const ACTIVATION a)
{
    int i;
    switch (a) {
    case LINEAR:
        return;
    case LEAKY:
        for (i = 0; i < n; ++i) {
            float v = x[i], neg = .1 * v; /* computed unconditionally: a select vectorises, a branch does not */
            x[i] = v > 0 ? v : neg;
        }
        return;
    case RELU:
        for (i = 0; i < n; ++i) x[i] = x[i] * (x[i] > 0);
        return;
    case RELIE:
        for (i = 0; i < n; ++i) {
            float v = x[i], neg = .01 * v;
            x[i] = v > 0 ? v : neg;
        }
        return;
    case RAMP:
        for (i = 0; i < n; ++i) x[i] = x[i] * (x[i] > 0) + .1 * x[i];
        return;
    case LOGISTIC:
        for (i = 0; i < n; ++i) x[i] = 1. / (1. + exp(-x[i]));
        return;
    case LOGGY:
        for (i = 0; i < n; ++i) x[i] = 2. / (1. + exp(-x[i])) - 1;
        return;
    case TANH:
        for (i = 0; i < n; ++i) x[i] = (exp(2 * x[i]) - 1) / (exp(2 * x[i]) + 1);
        return;
    case ELU:
        for (i = 0; i < n; ++i) x[i] = (x[i] >= 0) * x[i] + (x[i] < 0) * (exp(x[i]) - 1);
        return;
    case SELU:
        for (i = 0; i < n; ++i) x[i] = (x[i] >= 0) * 1.0507 * x[i] + (x[i] < 0) * 1.0507 * 1.6732 * (exp(x[i]) - 1);
        return;
    case PLSE:
        for (i = 0; i < n; ++i) {
            float v = x[i];
            x[i] = v < -4 ? .01 * (v + 4) : v > 4 ? .01 * (v - 4) + 1 : .125 * v + .5;
        }
        return;
    case STAIR:
        for (i = 0; i < n; ++i) {
            float v = x[i];
            int k = floor(v);
            x[i] = k % 2 == 0 ? floor(v / 2.) : (v - k) + floor(v / 2.);
        }
        return;
    case HARDTAN:
        for (i = 0; i < n; ++i) x[i] = x[i] < -1 ? -1 : x[i] > 1 ? 1 : x[i];
        return;
    case LHTAN:
        for (i = 0; i < n; ++i) {
            float v = x[i];
            x[i] = v < 0 ? .001 * v : v > 1 ? .001 * (v - 1) + 1 : v;
        }
        return;
    }
    /* an unknown type: darknet's activate() returns 0 */
    for (i = 0; i < n; ++i) x[i] = 0;
}

static void gradient_range(const float *x, const int n, const ACTIVATION a, float *delta)
{
    int i;
    switch (a) {
    case LINEAR:
        return;
    case LEAKY:
        for (i = 0; i < n; ++i) {
            float g = x[i] > 0 ? 1.f : .1f;
            delta[i] = delta[i] * g;
        }
        return;
    case RELU:
        for (i = 0; i < n; ++i) {
            float g = x[i] > 0 ? 1.f : 0.f;
            delta[i] = delta[i] * g;
        }
        return;
    case RELIE:
        for (i = 0; i < n; ++i) {
            float g = x[i] > 0 ? 1.f : .01f;
            delta[i] = delta[i] * g;
        }
        return;
    case RAMP:
        for (i = 0; i < n; ++i) delta[i] *= (float)((x[i] > 0) + .1);
        return;
    case LOGISTIC:
        for (i = 0; i < n; ++i) delta[i] *= (1 - x[i]) * x[i];
        return;
    case LOGGY:
        for (i = 0; i < n; ++i) {
            float y = (x[i] + 1.) / 2.;
            delta[i] *= 2 * (1 - y) * y;
        }
        return;
    case TANH:
        for (i = 0; i < n; ++i) delta[i] *= 1 - x[i] * x[i];
        return;
    case ELU:
        for (i = 0; i < n; ++i) delta[i] *= (x[i] >= 0) + (x[i] < 0) * (x[i] + 1);
        return;
    case SELU:
        for (i = 0; i < n; ++i) delta[i] *= (float)((x[i] >= 0) * 1.0507 + (x[i] < 0) * (x[i] + 1.0507 * 1.6732));
        return;
    case PLSE:
        for (i = 0; i < n; ++i) delta[i] *= (x[i] < 0 || x[i] > 1) ? .01f : .125f;
        return;
    case STAIR:
        for (i = 0; i < n; ++i) delta[i] *= floor(x[i]) == x[i] ? 0.f : 1.f;
        return;
    case HARDTAN:
        for (i = 0; i < n; ++i) delta[i] *= (x[i] > -1 && x[i] < 1) ? 1.f : 0.f;
        return;
    case LHTAN:
        for (i = 0; i < n; ++i) delta[i] *= (x[i] > 0 && x[i] < 1) ? 1.f : .001f;
        return;
    }
    for (i = 0; i < n; ++i) delta[i] = 0;
}

/* both split the array into equal ranges, one per task */
struct act {
    float *x, *delta;
    int n;
    ACTIVATION a;
};

static void activate_task(void *ctx, int t, int nt)
{
    const struct act *a = ctx;
    int lo, hi;
    split(a->n, t, nt, &lo, &hi);
    activate_range(a->x + lo, hi - lo, a->a);
}

static void gradient_task(void *ctx, int t, int nt)
{
    const struct act *a = ctx;
    int lo, hi;
    split(a->n, t, nt, &lo, &hi);
    gradient_range(a->x + lo, hi - lo, a->a, a->delta + lo);
}

void activate_array(float *x, const int n, const ACTIVATION a)
{
    if (a == LINEAR) return;
    struct act c = {x, NULL, n, a};
    par_run(activate_task, &c, par_tasks(n));
}

void gradient_array(const float *x, const int n, const ACTIVATION a, float *delta)
{
    if (a == LINEAR) return;
    struct act c = {(float *)x, delta, n, a};
    par_run(gradient_task, &c, par_tasks(n));
}
