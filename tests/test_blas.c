/* src/net/blas.c against libdarknet's own code.
 *
 * Our definitions preempt the library's for every call the library makes, but dlsym on the library's own handle
 * still finds the library's definitions (checked below: its gemm_cpu is not ours), so each replacement is run
 * against the original on the same inputs. The end-to-end check trains the same small network twice, once with
 * our convolutional layer and once with the library's (both on top of the primitives checked first).
 * (A fully separate stock copy via dlmopen is not possible: OpenCV's GLib constructors crash in a second
 * namespace.) */
#include "src/net/blas.h"
#include "tests/check.h"
#include "common/philox.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *lib;

static void *ref(const char *name)
{
    void *p = dlsym(lib, name);
    if (!p) {
        fprintf(stderr, "libdarknet has no %s\n", name);
        exit(1);
    }
    return p;
}

static uint64_t stream;

/* n normal floats scaled by s; a fresh stream each call */
static float *rnd(size_t n, float s)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    philox_fill_normal(2024, stream++, p, n);
    for (size_t i = 0; i < n; i++) p[i] *= s;
    return p;
}

static float *fdup(const float *a, size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    memcpy(p, a, n * sizeof *p);
    return p;
}

/* max |a-b| / (1 + |b|) */
static double rel_err(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (1 + fabs((double)b[i]));
        if (d != d) return INFINITY;
        if (d > m) m = d;
    }
    return m;
}

/* a network file with the given text; the caller unlinks it */
static int write_cfg(char *path, const char *text)
{
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

typedef void (*gemm_fn)(int, int, int, int, int, float, float *, int, float *, int, float, float *, int);

static void test_gemm(void)
{
    gemm_fn lib_gemm = (gemm_fn)ref("gemm_cpu");
    CHECK((void *)lib_gemm != (void *)gemm_cpu, "dlsym returned our own gemm_cpu");
    static const int shapes[][3] = {{1, 1, 1}, {7, 13, 5}, {33, 65, 17}, {3, 2, 300}, {64, 300, 100}, {129, 40, 27}};
    static const float betas[] = {0, 1, .5f};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int bi = 0; bi < 3; bi++) {
                    int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                    /* leading dimensions larger than needed, to catch stride mistakes */
                    int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 1;
                    float *A = rnd((size_t)(ta ? K : M) * lda, 1), *B = rnd((size_t)(tb ? N : K) * ldb, 1);
                    float *C = rnd((size_t)M * ldc, 1), *C2 = fdup(C, (size_t)M * ldc);
                    float alpha = bi == 2 ? .7f : 1;
                    gemm_cpu(ta, tb, M, N, K, alpha, A, lda, B, ldb, betas[bi], C, ldc);
                    lib_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, betas[bi], C2, ldc);
                    double e = rel_err(C, C2, (size_t)M * ldc);
                    CHECK(e < 1e-5 * sqrt(K) + 1e-6, "gemm TA=%d TB=%d %dx%dx%d beta %g: rel err %g", ta, tb, M, N, K,
                          betas[bi], e);
                    free(A), free(B), free(C), free(C2);
                }
}

typedef void (*im2col_fn)(float *, int, int, int, int, int, int, float *);

static void test_im2col(void)
{
    im2col_fn lib_im2col = (im2col_fn)ref("im2col_cpu"), lib_col2im = (im2col_fn)ref("col2im_cpu");
    /* channels, height, width, ksize, stride, pad */
    static const int shapes[][6] = {{3, 7, 9, 3, 1, 1}, {2, 8, 8, 3, 2, 1}, {2, 9, 7, 3, 2, 0}, {4, 5, 6, 1, 1, 0},
                                    {1, 11, 10, 5, 1, 2}, {3, 8, 8, 2, 2, 0}, {2, 10, 9, 3, 3, 1}, {1, 2, 3, 3, 1, 1},
                                    {5, 6, 6, 7, 1, 3}, {2, 12, 12, 1, 2, 0}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int c = shapes[s][0], h = shapes[s][1], w = shapes[s][2], k = shapes[s][3], st = shapes[s][4],
            p = shapes[s][5];
        int oh = (h + 2 * p - k) / st + 1, ow = (w + 2 * p - k) / st + 1;
        size_t ncol = (size_t)c * k * k * oh * ow, nim = (size_t)c * h * w;
        float *im = rnd(nim, 1), *col = rnd(ncol, 1), *col2 = fdup(col, ncol);
        im2col_cpu(im, c, h, w, k, st, p, col);
        lib_im2col(im, c, h, w, k, st, p, col2);
        CHECK(check_max_abs(col, col2, ncol) == 0, "im2col c%d %dx%d k%d s%d p%d differs", c, h, w, k, st, p);
        /* col2im adds onto what the image holds; the library's loop order is kept, so sums are bit-identical */
        float *src = rnd(ncol, 1), *acc = rnd(nim, 1), *acc2 = fdup(acc, nim);
        col2im_cpu(src, c, h, w, k, st, p, acc);
        lib_col2im(src, c, h, w, k, st, p, acc2);
        CHECK(check_max_abs(acc, acc2, nim) == 0, "col2im c%d %dx%d k%d s%d p%d differs by %g", c, h, w, k, st, p,
              check_max_abs(acc, acc2, nim));
        free(im), free(col), free(col2), free(src), free(acc), free(acc2);
    }
}

typedef void (*stat_fn)(float *, int, int, int, float *);                   /* mean_cpu */
typedef void (*var_fn)(float *, float *, int, int, int, float *);           /* variance_cpu */
typedef void (*norm_fn)(float *, float *, float *, int, int, int);          /* normalize_cpu */
typedef void (*bias_fn)(float *, float *, int, int, int);                   /* scale_bias, add_bias, backward_bias */
typedef void (*bscale_fn)(float *, float *, int, int, int, float *);        /* backward_scale_cpu */
typedef void (*mdelta_fn)(float *, float *, int, int, int, float *);        /* mean_delta_cpu */
typedef void (*vdelta_fn)(float *, float *, float *, float *, int, int, int, float *);
typedef void (*ndelta_fn)(float *, float *, float *, float *, float *, int, int, int, float *);

/* Sums over up to 6272 terms: the library's single running float sum carries error ~1e-5 by itself. */
#define RED_TOL 1e-4

static void test_batchnorm(void)
{
    /* batch, filters, spatial: small ones run serially, large ones are split over the pool */
    static const int shapes[][3] = {{3, 5, 7}, {1, 3, 2}, {2, 1, 33}, {16, 32, 100}, {128, 10, 49}, {4, 64, 196}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int b = shapes[s][0], f = shapes[s][1], sp = shapes[s][2];
        size_t n = (size_t)b * f * sp;
        float *x = rnd(n, 2), *delta = rnd(n, 1), *x_norm = rnd(n, 1);
        for (size_t i = 0; i < n; i++) x[i] += .5f; /* a nonzero mean */
        float m1[64], m2[64], v1[64], v2[64];

        mean_cpu(x, b, f, sp, m1);
        ((stat_fn)ref("mean_cpu"))(x, b, f, sp, m2);
        CHECK(rel_err(m1, m2, f) < RED_TOL, "mean_cpu %dx%dx%d: %g", b, f, sp, rel_err(m1, m2, f));
        variance_cpu(x, m2, b, f, sp, v1);
        ((var_fn)ref("variance_cpu"))(x, m2, b, f, sp, v2);
        CHECK(rel_err(v1, v2, f) < RED_TOL, "variance_cpu %dx%dx%d: %g", b, f, sp, rel_err(v1, v2, f));

        float *y1 = fdup(x, n), *y2 = fdup(x, n);
        normalize_cpu(y1, m2, v2, b, f, sp);
        ((norm_fn)ref("normalize_cpu"))(y2, m2, v2, b, f, sp);
        CHECK(rel_err(y1, y2, n) < 1e-5, "normalize_cpu %dx%dx%d: %g", b, f, sp, rel_err(y1, y2, n));

        static const char *per_filter[] = {"scale_bias", "add_bias"};
        bias_fn ours[] = {scale_bias, add_bias};
        for (int k = 0; k < 2; k++) {
            memcpy(y1, x, n * sizeof *y1), memcpy(y2, x, n * sizeof *y2);
            ours[k](y1, v2, b, f, sp);
            ((bias_fn)ref(per_filter[k]))(y2, v2, b, f, sp);
            CHECK(check_max_abs(y1, y2, n) == 0, "%s %dx%dx%d differs", per_filter[k], b, f, sp);
        }

        /* accumulating ones start from nonzero updates */
        memcpy(m1, v2, sizeof m1), memcpy(m2, v2, sizeof m2);
        backward_bias(m1, delta, b, f, sp);
        ((bias_fn)ref("backward_bias"))(m2, delta, b, f, sp);
        CHECK(rel_err(m1, m2, f) < RED_TOL, "backward_bias %dx%dx%d: %g", b, f, sp, rel_err(m1, m2, f));
        memcpy(m1, v2, sizeof m1), memcpy(m2, v2, sizeof m2);
        backward_scale_cpu(x_norm, delta, b, f, sp, m1);
        ((bscale_fn)ref("backward_scale_cpu"))(x_norm, delta, b, f, sp, m2);
        CHECK(rel_err(m1, m2, f) < RED_TOL, "backward_scale_cpu %dx%dx%d: %g", b, f, sp, rel_err(m1, m2, f));

        float md1[64], md2[64], vd1[64], vd2[64], mean[64];
        ((stat_fn)ref("mean_cpu"))(x, b, f, sp, mean);
        mean_delta_cpu(delta, v2, b, f, sp, md1);
        ((mdelta_fn)ref("mean_delta_cpu"))(delta, v2, b, f, sp, md2);
        CHECK(rel_err(md1, md2, f) < RED_TOL, "mean_delta_cpu %dx%dx%d: %g", b, f, sp, rel_err(md1, md2, f));
        variance_delta_cpu(x, delta, mean, v2, b, f, sp, vd1);
        ((vdelta_fn)ref("variance_delta_cpu"))(x, delta, mean, v2, b, f, sp, vd2);
        CHECK(rel_err(vd1, vd2, f) < RED_TOL, "variance_delta_cpu %dx%dx%d: %g", b, f, sp, rel_err(vd1, vd2, f));

        memcpy(y1, delta, n * sizeof *y1), memcpy(y2, delta, n * sizeof *y2);
        normalize_delta_cpu(x, mean, v2, md2, vd2, b, f, sp, y1);
        ((ndelta_fn)ref("normalize_delta_cpu"))(x, mean, v2, md2, vd2, b, f, sp, y2);
        CHECK(rel_err(y1, y2, n) < 1e-5, "normalize_delta_cpu %dx%dx%d: %g", b, f, sp, rel_err(y1, y2, n));
        free(x), free(delta), free(x_norm), free(y1), free(y2);
    }
}

typedef void (*act_fn)(float *, int, ACTIVATION);
typedef void (*grad_fn)(const float *, int, ACTIVATION, float *);

static void test_activations(void)
{
    static const ACTIVATION all[] = {LOGISTIC, RELU, RELIE, LINEAR, RAMP, TANH, PLSE,
                                     LEAKY,    ELU,  LOGGY, STAIR,  HARDTAN, LHTAN, SELU};
    static const char *names[] = {"LOGISTIC", "RELU", "RELIE", "LINEAR", "RAMP",    "TANH",  "PLSE",
                                  "LEAKY",    "ELU",  "LOGGY", "STAIR",  "HARDTAN", "LHTAN", "SELU"};
    act_fn lib_act = (act_fn)ref("activate_array");
    grad_fn lib_grad = (grad_fn)ref("gradient_array");
    static const int sizes[] = {37, 100003}; /* serial, and split over the pool */
    for (int si = 0; si < 2; si++) {
        int n = sizes[si];
        float *x = rnd(n, 3), *d = rnd(n, 1);
        /* the breakpoints of the piecewise ones, exactly */
        static const float special[] = {0, 1, -1, 4, -4, 2, -2, .5f, -.5f, 3, -3};
        memcpy(x, special, sizeof special);
        for (size_t a = 0; a < sizeof all / sizeof *all; a++) {
            float *y1 = fdup(x, n), *y2 = fdup(x, n);
            activate_array(y1, n, all[a]);
            lib_act(y2, n, all[a]);
            CHECK(rel_err(y1, y2, n) < 1e-6, "activate_array %s n=%d: %g", names[a], n, rel_err(y1, y2, n));
            float *g1 = fdup(d, n), *g2 = fdup(d, n);
            gradient_array(x, n, all[a], g1);
            lib_grad(x, n, all[a], g2);
            CHECK(rel_err(g1, g2, n) < 1e-6, "gradient_array %s n=%d: %g", names[a], n, rel_err(g1, g2, n));
            free(y1), free(y2), free(g1), free(g2);
        }
        free(x), free(d);
    }
}

typedef void (*axpy_fn)(int, float, float *, int, float *, int);
typedef void (*scal_fn)(int, float, float *, int);
typedef void (*copy_fn)(int, float *, int, float *, int);
typedef void (*layer_fn)(layer, network);

static void test_vectors(void)
{
    static const int sizes[] = {1001, 100003}; /* serial, and split over the pool */
    for (int si = 0; si < 2; si++)
        for (int inc = 1; inc <= 3; inc += 2) {
            int N = sizes[si];
            float *x = rnd(N * 3, 1), *y1 = rnd(N * 3, 1), *y2 = fdup(y1, N * 3);
            axpy_cpu(N, -.3f, x, inc, y1, inc);
            ((axpy_fn)ref("axpy_cpu"))(N, -.3f, x, inc, y2, inc);
            CHECK(check_max_abs(y1, y2, N * 3) == 0, "axpy_cpu n %d inc %d differs", N, inc);
            copy_cpu(N, x, inc, y1, 1);
            ((copy_fn)ref("copy_cpu"))(N, x, inc, y2, 1);
            CHECK(check_max_abs(y1, y2, N * 3) == 0, "copy_cpu n %d inc %d differs", N, inc);
            scal_cpu(N, .9f, y1, inc);
            ((scal_fn)ref("scal_cpu"))(N, .9f, y2, inc);
            CHECK(check_max_abs(y1, y2, N * 3) == 0, "scal_cpu n %d inc %d differs", N, inc);
            for (int z = 0; z < 2; z++) {
                fill_cpu(N, z ? 0 : 2.5f, y1, inc);
                ((scal_fn)ref("fill_cpu"))(N, z ? 0 : 2.5f, y2, inc);
                CHECK(check_max_abs(y1, y2, N * 3) == 0, "fill_cpu n %d inc %d value %d differs", N, inc, z);
            }
            free(x), free(y1), free(y2);
        }
}

/* The fused batch-norm layer against the library's forward_batchnorm_layer / backward_batchnorm_layer (which run
 * the primitives checked above), in training and inference mode, for a convolutional and a connected layer:
 * every buffer either may write is compared. (A [batchnorm] section gets no x/x_norm buffers from this
 * libdarknet, so the library's own layer cannot train it either.) */
enum { BN_BIG = 4, BN_FIELDS = 14 };

static float **bn_fields(layer *l)
{
    static float **f[BN_FIELDS];
    float **all[BN_FIELDS] = {&l->output,     &l->x,          &l->x_norm,           &l->delta,
                              &l->mean,       &l->variance,   &l->rolling_mean,     &l->rolling_variance,
                              &l->scales,     &l->biases,     &l->bias_updates,     &l->scale_updates,
                              &l->mean_delta, &l->variance_delta};
    memcpy(f, all, sizeof all);
    return (float **)f;
}

static size_t bn_size(const layer *l, int k)
{
    return k < BN_BIG ? (size_t)l->outputs * l->batch : (size_t)l->out_c;
}

static void test_batchnorm_layer(void)
{
    static const char *cfg = "[net]\nbatch=12\nheight=9\nwidth=9\nchannels=3\n"
                             "[convolutional]\nbatch_normalize=1\nfilters=6\nsize=3\npad=1\nactivation=linear\n"
                             "[connected]\nbatch_normalize=1\noutput=7\nactivation=linear\n";
    static const char *names[BN_FIELDS] = {"output", "x", "x_norm", "delta", "mean", "variance", "rolling_mean",
                                           "rolling_variance", "scales", "biases", "bias_updates",
                                           "scale_updates", "mean_delta", "variance_delta"};
    char path[] = "build/test_blas_XXXXXX";
    CHECK(write_cfg(path, cfg) == 0, "cannot write %s", path);
    network *net = parse_network_cfg(path);
    unlink(path);
    layer_fn lib_fwd = (layer_fn)ref("forward_batchnorm_layer"), lib_bwd = (layer_fn)ref("backward_batchnorm_layer");
    for (int li = 0; li < net->n; li++) {
        layer *l = &net->layers[li];
        float **const *f = (float **const *)bn_fields(l);
        float *saved[BN_FIELDS], *ours[BN_FIELDS];
        for (int k = 0; k < BN_FIELDS; k++) {
            CHECK(*f[k] != NULL, "layer %d has no %s", li, names[k]);
            if (!*f[k]) return;
            float *r = rnd(bn_size(l, k), 1);
            /* variances must be positive */
            if (k == 5 || k == 7)
                for (size_t i = 0; i < bn_size(l, k); i++) r[i] = r[i] * r[i] + .1f;
            memcpy(*f[k], r, bn_size(l, k) * sizeof *r);
            free(r);
            saved[k] = fdup(*f[k], bn_size(l, k));
        }
        float *in = rnd((size_t)l->inputs * l->batch, 1);
        for (int train = 0; train < 2; train++)
            for (int back = 0; back < 2; back++) {
                network nn = *net;
                nn.train = train;
                nn.input = in;
                for (int pass = 0; pass < 2; pass++) {
                    for (int k = 0; k < BN_FIELDS; k++) memcpy(*f[k], saved[k], bn_size(l, k) * sizeof(float));
                    if (back)
                        (pass ? lib_bwd : backward_batchnorm_layer)(*l, nn);
                    else
                        (pass ? lib_fwd : forward_batchnorm_layer)(*l, nn);
                    if (!pass)
                        for (int k = 0; k < BN_FIELDS; k++) ours[k] = fdup(*f[k], bn_size(l, k));
                }
                for (int k = 0; k < BN_FIELDS; k++) {
                    double e = rel_err(ours[k], *f[k], bn_size(l, k));
                    CHECK(e < RED_TOL, "layer %d %s train=%d: %s rel err %g", li, back ? "backward" : "forward",
                          train, names[k], e);
                    free(ours[k]);
                }
            }
        for (int k = 0; k < BN_FIELDS; k++) free(saved[k]);
        free(in);
    }
    free_network(net);
}

/* ---- end to end: a small network trained a few steps by our code and by the library ---- */

static const char *net_cfg =
    "[net]\nbatch=24\nsubdivisions=1\nheight=15\nwidth=15\nchannels=3\nlearning_rate=0.05\nmomentum=0.9\n"
    "decay=0.0005\npolicy=constant\nmax_batches=100\n"
    "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
    "[maxpool]\nsize=2\nstride=2\n"
    "[convolutional]\nfilters=12\nsize=3\nstride=2\npad=1\ngroups=2\nactivation=relu\n"
    "[maxpool]\nsize=3\nstride=1\n"
    "[convolutional]\nbatch_normalize=1\nfilters=16\nsize=1\nstride=1\npad=1\nactivation=logistic\n"
    "[convolutional]\nfilters=5\nsize=1\nstride=1\npad=1\nactivation=linear\n"
    "[avgpool]\n[softmax]\ngroups=1\n";


/* Max pooling on inputs full of ties (values 0, .5, 1), with and without overlap and border padding: outputs,
 * argmax indexes and the scattered gradient must equal the library's exactly. */
static void test_maxpool(void)
{
    /* 10x10 -> 5x5 (windows inside: the fast path), overlapping 3x3, 2x2 over an odd size, padded 3x3 */
    static const char *cfg = "[net]\nbatch=20\nheight=10\nwidth=10\nchannels=16\n"
                             "[maxpool]\nsize=2\nstride=2\n[maxpool]\nsize=3\nstride=1\n"
                             "[maxpool]\nsize=2\nstride=2\n[maxpool]\nsize=3\nstride=2\npadding=1\n";
    char path[] = "build/test_blas_XXXXXX";
    CHECK(write_cfg(path, cfg) == 0, "cannot write %s", path);
    network *net = parse_network_cfg(path);
    unlink(path);
    layer_fn lib_fwd = (layer_fn)ref("forward_maxpool_layer"), lib_bwd = (layer_fn)ref("backward_maxpool_layer");
    for (int i = 0; i < net->n; i++) {
        layer l = net->layers[i];
        size_t nin = (size_t)l.inputs * l.batch, nout = (size_t)l.outputs * l.batch;
        float *in = rnd(nin, 1);
        for (size_t k = 0; k < nin; k++) in[k] = roundf(fabsf(in[k]) * 2) / 2 > 1 ? 1 : roundf(fabsf(in[k]) * 2) / 2;
        network nn = *net;
        nn.input = in;
        forward_maxpool_layer(l, nn);
        float *out = fdup(l.output, nout);
        int *idx = malloc(nout * sizeof *idx);
        memcpy(idx, l.indexes, nout * sizeof *idx);
        lib_fwd(l, nn);
        CHECK(check_max_abs(out, l.output, nout) == 0, "maxpool %d output differs", i);
        CHECK(memcmp(idx, l.indexes, nout * sizeof *idx) == 0, "maxpool %d indexes differ", i);

        float *dl = rnd(nout, 1), *d1 = rnd(nin, 1), *d2 = fdup(d1, nin);
        memcpy(l.delta, dl, nout * sizeof *dl);
        nn.delta = d1;
        backward_maxpool_layer(l, nn);
        nn.delta = d2;
        lib_bwd(l, nn);
        CHECK(check_max_abs(d1, d2, nin) == 0, "maxpool %d input gradient differs", i);
        free(in), free(out), free(idx), free(dl), free(d1), free(d2);
    }
    free_network(net);
}

static void copy_params(network *dst, const network *src)
{
    for (int i = 0; i < src->n; i++) {
        const layer *s = &src->layers[i];
        layer *d = &dst->layers[i];
        if (s->type != CONVOLUTIONAL) continue;
        memcpy(d->weights, s->weights, sizeof(float) * s->nweights);
        memcpy(d->biases, s->biases, sizeof(float) * s->n);
        if (s->batch_normalize) {
            memcpy(d->scales, s->scales, sizeof(float) * s->n);
            memcpy(d->rolling_mean, s->rolling_mean, sizeof(float) * s->n);
            memcpy(d->rolling_variance, s->rolling_variance, sizeof(float) * s->n);
        }
    }
}

static void test_network(void)
{
    char path[] = "build/test_blas_XXXXXX";
    CHECK(write_cfg(path, net_cfg) == 0, "cannot write %s", path);

    /* stderr carries the layer tables both parsers print */
    network *ours = parse_network_cfg(path), *stock = parse_network_cfg(path);
    unlink(path);
    copy_params(stock, ours);
    /* the library's parser stored our layer functions; the second network gets the library's own */
    for (int i = 0; i < stock->n; i++)
        if (stock->layers[i].type == CONVOLUTIONAL) {
            CHECK(stock->layers[i].forward == forward_convolutional_layer &&
                      stock->layers[i].backward == backward_convolutional_layer,
                  "layer %d: our convolutional layer did not preempt the library's", i);
            stock->layers[i].forward = (layer_fn)ref("forward_convolutional_layer");
            stock->layers[i].backward = (layer_fn)ref("backward_convolutional_layer");
        } else if (stock->layers[i].type == MAXPOOL) {
            stock->layers[i].forward = (layer_fn)ref("forward_maxpool_layer");
            stock->layers[i].backward = (layer_fn)ref("backward_maxpool_layer");
        }

    data d = {0};
    d.X = make_matrix(ours->batch, ours->inputs);
    d.y = make_matrix(ours->batch, ours->outputs);
    float *px = rnd((size_t)ours->batch * ours->inputs, 1);
    for (int i = 0; i < d.X.rows; i++) {
        memcpy(d.X.vals[i], px + (size_t)i * ours->inputs, sizeof(float) * ours->inputs);
        d.y.vals[i][i % ours->outputs] = 1;
    }
    free(px);
    for (int step = 0; step < 3; step++) {
        float l1 = train_network(ours, d), l2 = train_network(stock, d);
        CHECK(fabs(l1 - l2) < 1e-4 * (1 + fabs(l2)), "step %d: loss %g vs library %g", step, l1, l2);
    }
    for (int i = 0; i < ours->n; i++) {
        layer *a = &ours->layers[i], *b = &stock->layers[i];
        size_t n = (size_t)a->outputs * a->batch;
        CHECK(rel_err(a->output, b->output, n) < 1e-4, "layer %d output: rel err %g", i,
              rel_err(a->output, b->output, n));
        if (a->type != CONVOLUTIONAL) continue;
        CHECK(rel_err(a->weights, b->weights, a->nweights) < 1e-4, "layer %d weights: rel err %g", i,
              rel_err(a->weights, b->weights, a->nweights));
        CHECK(rel_err(a->weight_updates, b->weight_updates, a->nweights) < 1e-4,
              "layer %d weight updates: rel err %g", i, rel_err(a->weight_updates, b->weight_updates, a->nweights));
        CHECK(rel_err(a->biases, b->biases, a->n) < 1e-4, "layer %d biases: rel err %g", i,
              rel_err(a->biases, b->biases, a->n));
        if (a->batch_normalize)
            CHECK(rel_err(a->rolling_variance, b->rolling_variance, a->n) < 1e-4,
                  "layer %d rolling variance: rel err %g", i, rel_err(a->rolling_variance, b->rolling_variance, a->n));
    }
    free_data(d);
    free_network(ours);
    free_network(stock);
}


/* A second network trained on another thread with its own pool (as the GeNIe module's f_theta will run beside
 * training), at the same time as the first on the main pool: neither waits on the other's buffers, and both give
 * the same weights bit for bit, whatever their pools' sizes. */
struct side {
    network *net;
    data *d;
    int threads;
};

static void *train_side(void *arg)
{
    struct side *s = arg;
    blas_pool *p = blas_pool_create(s->threads);
    blas_pool_use(p);
    for (int step = 0; step < 3; step++) train_network(s->net, *s->d);
    blas_pool_use(NULL);
    blas_pool_free(p);
    return NULL;
}

static void test_pools(void)
{
    char path[] = "build/test_blas_XXXXXX";
    CHECK(write_cfg(path, net_cfg) == 0, "cannot write %s", path);
    network *net[3];
    for (int k = 0; k < 3; k++) net[k] = parse_network_cfg(path);
    unlink(path);
    copy_params(net[1], net[0]);
    copy_params(net[2], net[0]);
    data d = {0};
    d.X = make_matrix(net[0]->batch, net[0]->inputs);
    d.y = make_matrix(net[0]->batch, net[0]->outputs);
    float *px = rnd((size_t)net[0]->batch * net[0]->inputs, 1);
    for (int i = 0; i < d.X.rows; i++) {
        memcpy(d.X.vals[i], px + (size_t)i * net[0]->inputs, sizeof(float) * net[0]->inputs);
        d.y.vals[i][i % net[0]->outputs] = 1;
    }
    free(px);
    struct side s1 = {net[1], &d, 1}, s2 = {net[2], &d, 3};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, train_side, &s1);
    pthread_create(&t2, NULL, train_side, &s2);
    for (int step = 0; step < 3; step++) train_network(net[0], d);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    for (int i = 0; i < net[0]->n; i++) {
        const layer *a = &net[0]->layers[i];
        if (a->type != CONVOLUTIONAL) continue;
        for (int k = 1; k < 3; k++)
            CHECK(!memcmp(a->weights, net[k]->layers[i].weights, sizeof(float) * a->nweights) &&
                      !memcmp(a->biases, net[k]->layers[i].biases, sizeof(float) * a->n),
                  "layer %d: a pool of %d threads on another thread gave other weights", i, k == 1 ? 1 : 3);
    }
    free_data(d);
    for (int k = 0; k < 3; k++) free_network(net[k]);
}

/* libdarknet's free_network leaves a few of parse_network_cfg's allocations behind; they are not ours. */
const char *__lsan_default_suppressions(void)
{
    return "leak:libdarknet.so\n";
}

/* The binary runs OpenBLAS's Haswell kernels wherever the CPU has AVX2 and FMA (one seed, one result, on every
 * such machine), and keeps a kernel set the user names. */
static void pinned_kernels(void)
{
    char out[4096];
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        int rc = check_sh("unset OPENBLAS_CORETYPE; OPENBLAS_VERBOSE=2 $G recipe cfg/fmnist-genie.cfg", out, sizeof out);
        CHECK(rc == 0 && strstr(out, "Core: Haswell"), "kernels not pinned: rc %d: %s", rc, out);
    } else {
        printf("(no AVX2/FMA here: OpenBLAS's own choice, not pinned)\n");
    }
    int rc = check_sh("OPENBLAS_CORETYPE=Prescott OPENBLAS_VERBOSE=2 $G recipe cfg/fmnist-genie.cfg", out, sizeof out);
    CHECK(rc == 0 && strstr(out, "Core: Prescott") && !strstr(out, "Core: Haswell"), "a chosen set replaced: %s", out);
}

int main(void)
{
    pinned_kernels();
    const char *path = "/usr/lib/darknet/libdarknet.so";
    lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "cannot load %s: %s\n", path, dlerror());
        return 1;
    }
    blas_pool *pool = blas_pool_create(2); /* two threads even on one core, so the split paths run */
    blas_pool_use(pool);
    test_gemm();
    test_im2col();
    test_batchnorm();
    test_activations();
    test_vectors();
    test_maxpool();
    test_batchnorm_layer();
    test_network();
    test_pools();
    blas_pool_use(NULL);
    blas_pool_free(pool);
    return check_done("test_blas");
}
