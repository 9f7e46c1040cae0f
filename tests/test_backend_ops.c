/* The CUDA backend against the CPU backend, op by op (ggml's test-backend-ops idea): random inputs over shapes that
 * take every path (odd sizes, asymmetric pads, strides 2 and 3, im2col in pixel chunks, every activation, causal and
 * cross attention with strided q/k/v and each head-dim kernel), in-place calls, outputs fenced by guard values;
 * then memory ops, error reporting, noise parity with common/philox.h and a device-memory leak check.
 *
 * Tolerances, per element |gpu - cpu| <= atol + rtol |cpu|:
 *  - 0 (bitwise): add, mul, add_channel, upsample2x, concat, to/from_tokens, embed_tokens, copy, upload/download,
 *    count_nonfinite: data movement or one IEEE float operation, the same on both sides.
 *  - act: atol 4e-6, rtol 2e-6. The device's expf/erff are within 2 ulp, glibc's within 1; gelu's 1 + erf(x)
 *    cancels for -5.5 < x < 0, where 3 ulp of erf (1.8e-7) become an absolute error of up to 5e-7.
 *    geglu: atol 1e-5, rtol 2e-6: that gelu error times the gate's other half, |h| < 6 (N(0,1) inputs).
 *  - group_norm(+act), layer_norm: atol 1e-5, rtol 1e-5: statistics in double on both sides, the affine step may be
 *    an FMA on the device.
 *  - linear, conv2d: atol 5e-7 sqrt(K) max|cpu| for K-term dot products: float sums taken in different orders
 *    (cuBLAS tiles, OpenBLAS kernels) differ by about eps sqrt(K) times the size of the result; the CPU's own
 *    error against a double reference is at most 5e-8 sqrt(K) max|ref| on these shapes.
 *  - attention: atol 2e-5, rtol 2e-5: outputs are convex combinations of N(0,1) values; the online softmax rescales
 *    its sums where the CPU normalises once.
 *  - timestep_embedding: atol 1e-6 + 1.2e-7 t: one ulp of a frequency (the device rounds a double exp, glibc's
 *    expf rounds its own) moves the angle t f by up to t * 6e-8.
 *  - noise: rtol 1e-6 (a few ulp of logf/sinf/cosf; rng_cuda.cu is compiled without FMA contraction, so both sides
 *    compute the same float arguments).
 *  - the sampling loop's ops (fill, lincomb, div_scalar, clamp, guide, sched_step): 0; the device kernels use
 *    uncontracted __f*_rn arithmetic, so they round as the CPU's loops. vae_sample: atol 5e-7 max|z|, rtol 1e-6
 *    (2 ulp of expf carried into the sum); fill_normal: as noise.
 *  - the engine end to end (fixtures' tiny models, img2img and txt2img, DDIM and DPM-Solver++, CFG, items at
 *    different strengths in one batch): 1e-4 on images and final latents, the tolerance the engine meets against
 *    PyTorch. Noise parity through the engine: the device's Philox latents (trace at step -1) within rtol 1e-6 of
 *    philox_fill_normal, and a device run with its own noise against the CPU given that noise explicitly.
 *
 * Reduced precision (f16, bf16 weights on the device; u the unit roundoff, 2^-11 or 2^-8), against the CPU in f32:
 *  - linear, conv2d: the f32 atol plus u (sqrt(K) max|x| max|w| + max|b|). Each of the K products has x and w
 *    rounded to the weights' type, an error of at most 2u|x||w|, zero-mean and independent across terms, so the
 *    sum's error is about u sqrt(2K/3) |x||w| rms; with N(0,1) data max|x| max|w| is ~20x that rms, well past 6
 *    sigma; the bias is rounded once (u |b|). Accumulation is float32 on both sides.
 *  - group_norm, layer_norm: the f32 tolerances plus u (6 max|gamma| + max|beta|) (x 1.2 with an activation, whose
 *    slope stays under 1.2): y = xhat gamma + beta with |xhat| < 6 on these inputs, gamma and beta each rounded once.
 *  - embed_tokens: u (max|tok| + max|pos| + 4e-3): the two rounded table entries, and the float sum's rounding
 *    (~1e-6 on these values).
 *  - the engine end to end (as above, every fixture configuration): f16 images 5e-3, latents 2e-3 max|latents|;
 *    bf16 images 6e-2, latents 1.6e-2 max|latents|. Measured on the CPU with the fixtures' weights rounded to f16
 *    (bf16), the largest effect of the weights' rounding alone over these configurations is 7.8e-4 (1.5e-2) on
 *    images and 2.2e-4 (2.0e-3) max|latents| on latents; rounding the products' inputs too adds errors of the same
 *    unit roundoff per product, about doubling that; the bounds leave at least 2x (images) and 4x (latents)
 *    beyond it. The guidance scale (7.5) amplifies the UNet's error in every step, hence bounds far above u.
 *  - f16 weights take half the bytes of the CPU's f32 ones (the engine's memory report); f16 refuses a weight past
 *    65504.
 *  - replay (CUDA graphs): 0 (bitwise): the graph launches the kernels and GEMMs the direct run queues, with the
 *    host timesteps of each call. The engine groups above run every denoising step after the second through a
 *    replayed graph, so their tolerances cover it too.
 *
 * Always (CPU only): the CPU backend's sampling ops against the engine's and scheduler's former host loops,
 * copied here verbatim: bitwise equal, so moving them behind ops changed no CPU result. The -precision names
 * (the CPU refuses f16/bf16) and the memory report (ops_mem, engine_info), which a run never moves.
 *
 * Without a CUDA device (or in a build without GPU=1) each group prints one "skipped: no CUDA device" line and
 * counts as skipped, not passed. GENIE_BACKEND_OPS_SELFTEST=1 runs the comparison groups with a second CPU backend
 * in the device's place (bitwise equal by design), which checks this program itself on a machine without a GPU. */
#include "augment/engine/backend/backend.h"
#include "tests/check.h"
#include "augment/engine/engine.h"
#include "common/err.h"
#include "augment/engine/backend/ops.h"
#include "common/philox.h"
#include "augment/engine/scheduler.h"
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef GENIE_CUDA
#include "augment/engine/backend/ops_cuda.h"
#include "augment/engine/backend/rng_cuda.h"
#include <cuda_runtime_api.h>
#endif

#define GUARD 64
#define GUARD_VALUE 1234.5f

static ops_backend *cpu, *dev;     /* the reference and the backend under test */
static int on_cuda, skipped;
static double wu;                  /* unit roundoff of dev's weights: 0 (f32), 2^-11 (f16), 2^-8 (bf16) */
static uint64_t stream_id;

static void skip(const char *group)
{
    printf("skipped: no CUDA device (%s)\n", group);
    skipped++;
}

static float *rnd(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    philox_fill_normal(7, stream_id++, p, n);
    return p;
}

static float *host(size_t n) { return malloc((n ? n : 1) * sizeof(float)); }

static double maxabs(const float *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

static void fatal(const char *what)
{
    CHECK(0, "%s: %s", what, err_msg());
    exit(check_done("test_backend_ops"));
}

static float *to_dev(const float *h, size_t n)
{
    float *d = dev->alloc(dev, n);
    if (!d) fatal("device alloc");
    dev->upload(dev, d, h, n);
    return d;
}

static const float *weight(const float *h, size_t n)
{
    const float *d = dev->weight_put(dev, h, n);
    if (!d) fatal("weight_put");
    return d;
}

/* An output buffer of n floats and GUARD more, all GUARD_VALUE: an element the op never writes stays GUARD_VALUE
 * (and fails the comparison), a write past the end shows in the guard. */
static float *out_buf(size_t n)
{
    float *h = host(n + GUARD);
    for (size_t i = 0; i < n + GUARD; i++) h[i] = GUARD_VALUE;
    float *d = to_dev(h, n + GUARD);
    free(h);
    return d;
}

/* Downloads n floats of an out_buf (checking its guard), then releases it. */
static float *fetch(const char *what, float *d, size_t n)
{
    float *h = host(n + GUARD);
    dev->download(dev, h, d, n + GUARD);
    int ok = 1;
    for (size_t i = n; i < n + GUARD; i++) ok &= h[i] == GUARD_VALUE;
    CHECK(ok, "%s: wrote past its output", what);
    dev->release(dev, d);
#ifdef GENIE_CUDA
    if (on_cuda) CHECK(!ops_cuda_error(dev), "%s: %s", what, ops_cuda_error(dev));
#endif
    return h;
}

static void compare(const char *what, const float *ref, const float *got, size_t n, double atol, double rtol)
{
    size_t bad = 0, worst = 0;
    double excess = -1;
    for (size_t i = 0; i < n; i++) {
        double r = ref[i], g = got[i], d = fabs(g - r), lim = atol + rtol * fabs(r);
        if (d <= lim || r == g || (isnan(r) && isnan(g))) continue;
        bad++;
        if (!(d - lim <= excess)) excess = d - lim, worst = i;   /* NaN counts as the worst */
    }
    CHECK(!bad, "%s: %zu of %zu values off; worst [%zu]: cpu %.9g, %s %s %.9g (atol %.3g, rtol %.3g)", what, bad, n,
          worst, n ? ref[worst] : 0.0, dev->name, backend_precision_name(dev->precision), n ? got[worst] : 0.0, atol,
          rtol);
}

/* ---- matrix products ---- */

/* A GEMM-based op's result (K products per output) against the CPU's, then its buffers freed. The bound: the
 * f32 one plus the weight precision's rounding of x and w (wu, 0 in f32) and of the bias. */
static void gemm_check(const char *what, int K, float *x, size_t nx, float *w, size_t nw, float *b, int nb, float *ref,
                       float *dx, const float *dw, const float *db, float *dy, size_t ny)
{
    float *got = fetch(what, dy, ny);
    double wb = b ? maxabs(b, nb) : 0;
    double tol = 5e-7 * sqrt(K) * maxabs(ref, ny) + wu * (sqrt(K) * maxabs(x, nx) * maxabs(w, nw) + wb);
    compare(what, ref, got, ny, tol, 0);
    dev->release(dev, dx);
    dev->weight_drop(dev, dw);
    if (db) dev->weight_drop(dev, db);
    free(x), free(w), free(b), free(ref), free(got);
}

static void test_conv(int B, int Cin, int H, int W, int Cout, int k, int stride, const int pad[4], int bias)
{
    int Ho = (H + pad[0] + pad[2] - k) / stride + 1, Wo = (W + pad[1] + pad[3] - k) / stride + 1, K = Cin * k * k;
    size_t nx = (size_t)B * Cin * H * W, nw = (size_t)Cout * K, ny = (size_t)B * Cout * Ho * Wo;
    float *x = rnd(nx), *w = rnd(nw), *b = bias ? rnd(Cout) : NULL, *ref = host(ny);
    cpu->conv2d(cpu, x, B, Cin, H, W, w, b, Cout, k, stride, pad, ref);
    float *dx = to_dev(x, nx), *dy = out_buf(ny);
    const float *dw = weight(w, nw), *db = b ? weight(b, Cout) : NULL;
    dev->conv2d(dev, dx, B, Cin, H, W, dw, db, Cout, k, stride, pad, dy);
    char what[128];
    snprintf(what, sizeof what, "conv2d B%d %dx%dx%d -> %d k%d s%d pad %d,%d,%d,%d%s", B, Cin, H, W, Cout, k, stride,
             pad[0], pad[1], pad[2], pad[3], bias ? "" : " no bias");
    gemm_check(what, K, x, nx, w, nw, b, Cout, ref, dx, dw, db, dy, ny);
}

static void test_linear(int rows, int in, int out, int bias)
{
    size_t nx = (size_t)rows * in, nw = (size_t)out * in, ny = (size_t)rows * out;
    float *x = rnd(nx), *w = rnd(nw), *b = bias ? rnd(out) : NULL, *ref = host(ny);
    cpu->linear(cpu, x, rows, in, w, b, out, ref);
    float *dx = to_dev(x, nx), *dy = out_buf(ny);
    const float *dw = weight(w, nw), *db = b ? weight(b, out) : NULL;
    dev->linear(dev, dx, rows, in, dw, db, out, dy);
    char what[96];
    snprintf(what, sizeof what, "linear %dx%d -> %d%s", rows, in, out, bias ? "" : " no bias");
    gemm_check(what, in, x, nx, w, nw, b, out, ref, dx, dw, db, dy, ny);
}

/* ---- normalisation ---- */

static const char *act_name[] = {"none", "silu", "gelu", "quick_gelu"};

/* x = scale * N(0,1) + offset: a mean and a scale for the statistics to remove */
static float *rnd_shifted(size_t n, float scale, float offset)
{
    float *x = rnd(n);
    for (size_t i = 0; i < n; i++) x[i] = scale * x[i] + offset;
    return x;
}

static void test_group_norm(int B, int C, int HW, int G, float eps, int in_place)
{
    size_t n = (size_t)B * C * HW;
    float *x = rnd_shifted(n, 3.0f, 1.5f), *g = rnd(C), *b = rnd(C), *ref = host(n);
    const float *dg = weight(g, C), *db = weight(b, C);
    for (int act = OPS_ACT_NONE; act <= OPS_ACT_QUICK_GELU; act++) {
        cpu->group_norm(cpu, x, B, C, HW, G, eps, g, b, (enum ops_act)act, ref);
        float *dy = out_buf(n), *dx = in_place ? dy : to_dev(x, n);
        if (in_place) dev->upload(dev, dy, x, n);
        dev->group_norm(dev, dx, B, C, HW, G, eps, dg, db, (enum ops_act)act, dy);
        char what[96];
        snprintf(what, sizeof what, "group_norm B%d C%d HW%d G%d +%s%s", B, C, HW, G, act_name[act],
                 in_place ? " in place" : "");
        float *got = fetch(what, dy, n);
        compare(what, ref, got, n, 1e-5 + wu * (7 * maxabs(g, C) + 1.2 * maxabs(b, C)), 1e-5);
        if (!in_place) dev->release(dev, dx);
        free(got);
    }
    dev->weight_drop(dev, dg);
    dev->weight_drop(dev, db);
    free(x), free(g), free(b), free(ref);
}

static void test_layer_norm(int rows, int C, int in_place)
{
    size_t n = (size_t)rows * C;
    float *x = rnd_shifted(n, 2.0f, -0.7f), *g = rnd(C), *b = rnd(C), *ref = host(n);
    cpu->layer_norm(cpu, x, rows, C, 1e-5f, g, b, ref);
    const float *dg = weight(g, C), *db = weight(b, C);
    float *dy = out_buf(n), *dx = in_place ? dy : to_dev(x, n);
    if (in_place) dev->upload(dev, dy, x, n);
    dev->layer_norm(dev, dx, rows, C, 1e-5f, dg, db, dy);
    char what[64];
    snprintf(what, sizeof what, "layer_norm %dx%d%s", rows, C, in_place ? " in place" : "");
    float *got = fetch(what, dy, n);
    compare(what, ref, got, n, 1e-5 + wu * (6 * maxabs(g, C) + maxabs(b, C)), 1e-5);
    if (!in_place) dev->release(dev, dx);
    dev->weight_drop(dev, dg);
    dev->weight_drop(dev, db);
    free(x), free(g), free(b), free(ref), free(got);
}

/* ---- elementwise ---- */

static void test_elementwise(size_t n)
{
    float *a = rnd(n), *b = rnd(n), *ref = host(n), *got;
    float *da = to_dev(a, n), *db = to_dev(b, n), *dy;
    char what[64];
    cpu->add(cpu, a, b, n, ref);
    dev->add(dev, da, db, n, dy = out_buf(n));
    snprintf(what, sizeof what, "add n%zu", n);
    compare(what, ref, got = fetch(what, dy, n), n, 0, 0);
    free(got);
    cpu->mul(cpu, a, b, n, ref);
    dev->mul(dev, da, db, n, dy = out_buf(n));
    snprintf(what, sizeof what, "mul n%zu", n);
    compare(what, ref, got = fetch(what, dy, n), n, 0, 0);
    free(got);
    /* in place: y = a */
    cpu->add(cpu, a, b, n, ref);
    dy = out_buf(n);
    dev->upload(dev, dy, a, n);
    dev->add(dev, dy, db, n, dy);
    snprintf(what, sizeof what, "add n%zu in place", n);
    compare(what, ref, got = fetch(what, dy, n), n, 0, 0);
    free(got);
    /* activations over a wide range (4 N(0,1)), out of place and in place */
    float *x4 = host(n);
    for (size_t i = 0; i < n; i++) x4[i] = 4 * a[i];
    float *dx4 = to_dev(x4, n);
    for (int act = OPS_ACT_NONE; act <= OPS_ACT_QUICK_GELU; act++) {
        cpu->act(cpu, (enum ops_act)act, x4, n, ref);
        dev->act(dev, (enum ops_act)act, dx4, n, dy = out_buf(n));
        snprintf(what, sizeof what, "act %s n%zu", act_name[act], n);
        compare(what, ref, got = fetch(what, dy, n), n, 4e-6, 2e-6);
        free(got);
        dy = out_buf(n);
        dev->upload(dev, dy, x4, n);
        dev->act(dev, (enum ops_act)act, dy, n, dy);
        snprintf(what, sizeof what, "act %s n%zu in place", act_name[act], n);
        compare(what, ref, got = fetch(what, dy, n), n, 4e-6, 2e-6);
        free(got);
    }
    dev->release(dev, dx4);
    dev->release(dev, da);
    dev->release(dev, db);
    free(a), free(b), free(ref), free(x4);
}

static void test_add_channel(int B, int C, int HW)
{
    size_t n = (size_t)B * C * HW;
    float *x = rnd(n), *v = rnd((size_t)B * C), *ref = host(n);
    memcpy(ref, x, n * sizeof *ref);
    cpu->add_channel(cpu, ref, B, C, HW, v);
    float *dy = out_buf(n), *dv = to_dev(v, (size_t)B * C);
    dev->upload(dev, dy, x, n);
    dev->add_channel(dev, dy, B, C, HW, dv);
    char what[64];
    snprintf(what, sizeof what, "add_channel B%d C%d HW%d", B, C, HW);
    float *got = fetch(what, dy, n);
    compare(what, ref, got, n, 0, 0);
    dev->release(dev, dv);
    free(x), free(v), free(ref), free(got);
}

static void test_geglu(int rows, int inner)
{
    size_t nx = (size_t)rows * 2 * inner, ny = (size_t)rows * inner;
    float *x = rnd(nx), *ref = host(ny);
    cpu->geglu(cpu, x, rows, inner, ref);
    float *dx = to_dev(x, nx), *dy = out_buf(ny);
    dev->geglu(dev, dx, rows, inner, dy);
    char what[64];
    snprintf(what, sizeof what, "geglu %dx%d", rows, inner);
    float *got = fetch(what, dy, ny);
    compare(what, ref, got, ny, 1e-5, 2e-6);
    dev->release(dev, dx);
    free(x), free(ref), free(got);
}

/* ---- attention ---- */

/* q in its own buffer with row stride D+3, k and v interleaved in one with stride 2D+1: no row is aligned. sharp
 * scales the logits: 4 makes peaked softmaxes whose running max moves often. */
static void test_attention(int B, int Tq, int Tk, int heads, int dh, int causal, float sharp)
{
    int D = heads * dh, ldq = D + 3, ldkv = 2 * D + 1;
    size_t nq = (size_t)B * Tq * ldq, nkv = (size_t)B * Tk * ldkv, ny = (size_t)B * Tq * D;
    float *q = rnd(nq), *kv = rnd(nkv), *ref = host(ny), scale = sharp / sqrtf((float)dh);
    cpu->attention(cpu, q, ldq, kv, ldkv, kv + D, ldkv, B, Tq, Tk, heads, dh, scale, causal, ref);
    float *dq = to_dev(q, nq), *dkv = to_dev(kv, nkv), *dy = out_buf(ny);
    dev->attention(dev, dq, ldq, dkv, ldkv, dkv + D, ldkv, B, Tq, Tk, heads, dh, scale, causal, dy);
    char what[128];
    snprintf(what, sizeof what, "attention B%d Tq%d Tk%d heads%d dh%d%s sharp%g", B, Tq, Tk, heads, dh,
             causal ? " causal" : "", sharp);
    float *got = fetch(what, dy, ny);
    compare(what, ref, got, ny, 2e-5, 2e-5);
    dev->release(dev, dq);
    dev->release(dev, dkv);
    free(q), free(kv), free(ref), free(got);
}

/* ---- layout ---- */

static void test_upsample(int B, int C, int H, int W)
{
    size_t nx = (size_t)B * C * H * W, ny = 4 * nx;
    float *x = rnd(nx), *ref = host(ny);
    cpu->upsample2x(cpu, x, B, C, H, W, ref);
    float *dx = to_dev(x, nx), *dy = out_buf(ny);
    dev->upsample2x(dev, dx, B, C, H, W, dy);
    char what[64];
    snprintf(what, sizeof what, "upsample2x B%d C%d %dx%d", B, C, H, W);
    float *got = fetch(what, dy, ny);
    compare(what, ref, got, ny, 0, 0);
    dev->release(dev, dx);
    free(x), free(ref), free(got);
}

static void test_concat(int B, int Ca, int Cb, int HW)
{
    size_t na = (size_t)B * Ca * HW, nb = (size_t)B * Cb * HW, ny = na + nb;
    float *a = rnd(na), *b = rnd(nb), *ref = host(ny);
    cpu->concat(cpu, a, Ca, b, Cb, B, HW, ref);
    float *da = to_dev(a, na), *db = to_dev(b, nb), *dy = out_buf(ny);
    dev->concat(dev, da, Ca, db, Cb, B, HW, dy);
    char what[64];
    snprintf(what, sizeof what, "concat B%d %d+%d HW%d", B, Ca, Cb, HW);
    float *got = fetch(what, dy, ny);
    compare(what, ref, got, ny, 0, 0);
    dev->release(dev, da);
    dev->release(dev, db);
    free(a), free(b), free(ref), free(got);
}

static void test_tokens(int B, int C, int HW)
{
    size_t n = (size_t)B * C * HW;
    float *x = rnd(n), *ref = host(n), *ref2 = host(n);
    cpu->to_tokens(cpu, x, B, C, HW, ref);
    cpu->from_tokens(cpu, x, B, C, HW, ref2);   /* x read as [B, HW, C] */
    float *dx = to_dev(x, n), *dy = out_buf(n);
    dev->to_tokens(dev, dx, B, C, HW, dy);
    char what[64];
    snprintf(what, sizeof what, "to_tokens B%d C%d HW%d", B, C, HW);
    float *got = fetch(what, dy, n);
    compare(what, ref, got, n, 0, 0);
    free(got);
    dev->from_tokens(dev, dx, B, C, HW, dy = out_buf(n));
    snprintf(what, sizeof what, "from_tokens B%d C%d HW%d", B, C, HW);
    compare(what, ref2, got = fetch(what, dy, n), n, 0, 0);
    dev->release(dev, dx);
    free(x), free(ref), free(ref2), free(got);
}

/* ---- embeddings ---- */

static void test_timestep(int B, int dim, int flip, float shift)
{
    float *t = host(B);
    for (int b = 0; b < B; b++) t[b] = b == 0 ? 0.0f : b == 1 ? 999.0f : (float)((b * 331) % 1000) + 0.25f * (b % 4);
    size_t n = (size_t)B * dim;
    float *ref = host(n);
    cpu->timestep_embedding(cpu, t, B, dim, flip, shift, ref);
    float *dy = out_buf(n);
    dev->timestep_embedding(dev, t, B, dim, flip, shift, dy);
    char what[64];
    snprintf(what, sizeof what, "timestep_embedding B%d dim%d flip%d shift%g", B, dim, flip, shift);
    float *got = fetch(what, dy, n);
    for (int b = 0; b < B; b++) {
        char w2[96];
        snprintf(w2, sizeof w2, "%s t=%g", what, t[b]);
        compare(w2, ref + (size_t)b * dim, got + (size_t)b * dim, dim, 1e-6 + 1.2e-7 * t[b], 0);
    }
    free(t), free(ref), free(got);
}

static void test_embed_tokens(int B, int L, int V, int C)
{
    int *ids = malloc(sizeof(int) * B * L);
    philox_t g;
    philox_init(&g, 7, stream_id++);
    for (int i = 0; i < B * L; i++) ids[i] = philox_int(&g, V);
    float *tok = rnd((size_t)V * C), *pos = rnd((size_t)L * C), *ref = host((size_t)B * L * C);
    cpu->embed_tokens(cpu, ids, B, L, tok, pos, C, ref);
    const float *dt = weight(tok, (size_t)V * C), *dp = weight(pos, (size_t)L * C);
    float *dy = out_buf((size_t)B * L * C);
    dev->embed_tokens(dev, ids, B, L, dt, dp, C, dy);
    char what[64];
    snprintf(what, sizeof what, "embed_tokens B%d L%d V%d C%d", B, L, V, C);
    float *got = fetch(what, dy, (size_t)B * L * C);
    compare(what, ref, got, (size_t)B * L * C, wu * (maxabs(tok, (size_t)V * C) + maxabs(pos, (size_t)L * C) + 4e-3), 0);
    dev->weight_drop(dev, dt);
    dev->weight_drop(dev, dp);
    free(ids), free(tok), free(pos), free(ref), free(got);
}

/* ---- memory ---- */

/* dst = src + shift inside one buffer of n + |shift| floats; the reference is memmove */
static void test_copy(size_t n, long shift)
{
    size_t total = n + (size_t)labs(shift);
    float *x = rnd(total), *ref = host(total);
    memcpy(ref, x, total * sizeof *x);
    size_t s = shift < 0 ? (size_t)-shift : 0, d = shift < 0 ? 0 : (size_t)shift;
    memmove(ref + d, ref + s, n * sizeof *ref);
    float *dx = out_buf(total);
    dev->upload(dev, dx, x, total);
    dev->copy(dev, dx + d, dx + s, n);
    char what[64];
    snprintf(what, sizeof what, "copy n%zu shift %ld", n, shift);
    float *got = fetch(what, dx, total);
    compare(what, ref, got, total, 0, 0);
    free(x), free(ref), free(got);
}

/* ---- the sampling loop's ops ---- */

static void sched_configs(sched_config *c, int clip, int midpoint)
{
    memset(c, 0, sizeof *c);
    c->num_train_timesteps = 1000;
    c->beta_start = 0.00085;
    c->beta_end = 0.012;
    c->beta_schedule_scaled_linear = 1;
    c->prediction_epsilon = 1;
    c->steps_offset = 1;
    c->clip_sample = clip;
    c->clip_sample_range = 1.0f;
    c->solver_order = 2;
    c->algorithm_dpmsolverpp = 1;
    c->lower_order_final = 1;
    c->solver_midpoint = midpoint;
    c->timestep_spacing = SD_SPACING_UNSET;
}

/* Every scheduler update of a 12-step schedule through dev's sched_step against the CPU's, on the same inputs
 * (LCM and TCD at eta 0.3: the same injected noise on both). */
static void test_sched_step(enum sd_sched_kind kind, int clip, int midpoint, size_t n)
{
    sched_config cfg;
    sched_configs(&cfg, clip, midpoint);
    scheduler *s = scheduler_create(kind, &cfg);
    CHECK(s && !scheduler_set_eta(s, 0.3) && !scheduler_set_timesteps(s, 12), "scheduler: %s", err_msg());
    if (!s) return;
    const int noised = kind == SD_SCHED_LCM || kind == SD_SCHED_TCD;
    float *x = rnd(n), *eps = rnd(n), *prev = host(n), *got = host(n);
    float *dx = to_dev(x, n), *de = dev->alloc(dev, n), *dp = dev->alloc(dev, n);
    if (!de || !dp) fatal("sched_step buffers");
    sched_state st_c, st_d;
    sched_state_init(&st_c, prev, n);
    sched_state_init(&st_d, dp, n);
    int start;
    CHECK(!scheduler_begin(s, &st_c, 1.0, &start) && !scheduler_begin(s, &st_d, 1.0, &start), "begin: %s", err_msg());
    char what[96];
    for (int i = 2; i < scheduler_num_steps(s); i++) {
        philox_fill_normal(11, (uint64_t)i, eps, n);
        dev->upload(dev, de, eps, n);
        if (noised) {
            philox_fill_normal(12, (uint64_t)i, prev, n);
            dev->upload(dev, dp, prev, n);
        }
        ops_step c, cd;
        CHECK(!scheduler_prepare(s, &st_c, i, &c) && !scheduler_prepare(s, &st_d, i, &cd), "prepare: %s", err_msg());
        cpu->sched_step(cpu, &c, eps, x, prev, n);
        dev->sched_step(dev, &cd, de, dx, dp, n);
        dev->download(dev, got, dx, n);
        snprintf(what, sizeof what, "sched_step %s clip %d midpoint %d step %d n%zu", scheduler_kind_name(kind), clip,
                 midpoint, i, n);
        compare(what, x, got, n, 0, 0);
        if (kind == SD_SCHED_DPMPP_2M) {
            dev->download(dev, got, dp, n);
            compare(what, prev, got, n, 0, 0);
        }
    }
    dev->release(dev, dx), dev->release(dev, de), dev->release(dev, dp);
    free(x), free(eps), free(prev), free(got);
    scheduler_free(s);
}

static void test_sampling_ops(size_t n)
{
    float *x = rnd(n), *z = rnd(n), *ref = host(n), *got;
    float *dx = to_dev(x, n), *dz = to_dev(z, n), *dy;
    char what[64];
#define CASE(name, tol_a, tol_r, cpu_call, dev_call) \
    do { \
        cpu_call; \
        dy = out_buf(n); \
        dev_call; \
        snprintf(what, sizeof what, "%s n%zu", name, n); \
        compare(what, ref, got = fetch(what, dy, n), n, tol_a, tol_r); \
        free(got); \
    } while (0)
    CASE("fill", 0, 0, for (size_t i = 0; i < n; i++) ref[i] = -0.0f, dev->fill(dev, dy, n, -0.0f));
    CASE("fill_normal", 0, 1e-6, philox_fill_normal(5, philox_mix(6, 7), ref, n),
         dev->fill_normal(dev, dy, n, 5, philox_mix(6, 7)));
    CASE("lincomb", 0, 0, cpu->lincomb(cpu, 0.73f, x, 0.6831f, z, n, ref), dev->lincomb(dev, 0.73f, dx, 0.6831f, dz, n, dy));
    CASE("lincomb without z", 0, 0, cpu->lincomb(cpu, 1.7f, x, 0, NULL, n, ref), dev->lincomb(dev, 1.7f, dx, 0, NULL, n, dy));
    CASE("lincomb in place", 0, 0, cpu->lincomb(cpu, 0.3f, x, -1.1f, z, n, ref),
         (dev->copy(dev, dy, dx, n), dev->lincomb(dev, 0.3f, dy, -1.1f, dz, n, dy)));
    CASE("div_scalar", 0, 0, cpu->div_scalar(cpu, x, 0.18215f, n, ref), dev->div_scalar(dev, dx, 0.18215f, n, dy));
    CASE("clamp", 0, 0, cpu->clamp(cpu, x, -0.5f, 1.25f, n, ref), dev->clamp(dev, dx, -0.5f, 1.25f, n, dy));
    CASE("guide", 0, 0, cpu->guide(cpu, x, z, 7.5f, n, ref), dev->guide(dev, dx, dz, 7.5f, n, dy));
    CASE("vae_sample mean", 0, 0, cpu->vae_sample(cpu, x, z, NULL, 0.18215f, n, ref),
         dev->vae_sample(dev, dx, dz, NULL, 0.18215f, n, dy));
    cpu->vae_sample(cpu, x, z, x, 0.18215f, n, ref);
    CASE("vae_sample", 5e-7 * maxabs(ref, n), 1e-6, (void)0, dev->vae_sample(dev, dx, dz, dx, 0.18215f, n, dy));
#undef CASE
    dev->release(dev, dx), dev->release(dev, dz);
    free(x), free(z), free(ref);
    test_sched_step(SD_SCHED_DDIM, 0, 0, n);
    test_sched_step(SD_SCHED_DDIM, 1, 0, n);
    test_sched_step(SD_SCHED_DPMPP_2M, 0, 0, n);
    test_sched_step(SD_SCHED_DPMPP_2M, 0, 1, n);
    test_sched_step(SD_SCHED_LCM, 0, 0, n);
    test_sched_step(SD_SCHED_TCD, 0, 0, n);
}

/* The former host loops (engine.c, scheduler.c before the loop moved behind ops), verbatim but for names. */
static void old_ddim_step(const float *acp, int T, int nsteps, float final_acp, int clip, float r, int t,
                          const float *eps, float *x, size_t n)
{
    int prev_t = t - T / nsteps;
    float a_t = acp[t];
    float a_prev = prev_t >= 0 ? acp[prev_t] : final_acp;
    float b_t = 1.0f - a_t;
    float sb = sqrtf(b_t), sa = sqrtf(a_t), sa_prev = sqrtf(a_prev);
    float dir = sqrtf(1.0f - a_prev - 0.0f);
    for (size_t i = 0; i < n; i++) {
        float x0 = (x[i] - sb * eps[i]) / sa;
        if (clip) x0 = x0 < -r ? -r : x0 > r ? r : x0;
        x[i] = sa_prev * x0 + dir * eps[i];
    }
}

static void old_dpm_step(const float *alpha_t, const float *sigma_t, const float *lambda_t, const int *ts, int N,
                         int lower_final_cfg, int midpoint, int *lower_order_nums, int idx, const float *eps, float *x,
                         float *m1, size_t n)
{
    const int t = ts[idx], prev_t = idx == N - 1 ? 0 : ts[idx + 1];
    const int lower_order_final = idx == N - 1 && lower_final_cfg && N < 15;
    const float al_s = alpha_t[t], sg_s = sigma_t[t];
    const float al_t = alpha_t[prev_t], sg_t = sigma_t[prev_t];
    const float h = lambda_t[prev_t] - lambda_t[t];
    const float c_x = sg_t / sg_s;
    const float c_d0 = al_t * (expf(-h) - 1.0f);
    if (*lower_order_nums < 1 || lower_order_final) {
        for (size_t i = 0; i < n; i++) {
            float m0 = (x[i] - sg_s * eps[i]) / al_s;
            x[i] = c_x * x[i] - c_d0 * m0;
            m1[i] = m0;
        }
    } else {
        const int s1 = ts[idx - 1];
        const float h0 = lambda_t[t] - lambda_t[s1];
        const float inv_r0 = 1.0f / (h0 / h);
        const float c_d1 = midpoint ? 0.5f * c_d0 : al_t * ((expf(-h) - 1.0f) / h + 1.0f);
        for (size_t i = 0; i < n; i++) {
            float m0 = (x[i] - sg_s * eps[i]) / al_s;
            float d1 = inv_r0 * (m0 - m1[i]);
            float a = c_x * x[i] - c_d0 * m0;
            x[i] = midpoint ? a - c_d1 * d1 : a + c_d1 * d1;
            m1[i] = m0;
        }
    }
    if (*lower_order_nums < 2) (*lower_order_nums)++;
}

static int bitwise_equal(const float *a, const float *b, size_t n) { return !memcmp(a, b, n * sizeof(float)); }

static void test_cpu_sampling_exact(void)
{
    const size_t n = 4099;
    float *x = rnd(n), *z = rnd(n), *e = rnd(n), *ref = host(n), *got = host(n);
    const float g = 7.5f, sf = 0.18215f;
    for (size_t i = 0; i < n; i++) ref[i] = x[i] + g * (z[i] - x[i]);
    cpu->guide(cpu, x, z, g, n, got);
    CHECK(bitwise_equal(ref, got, n), "guide: the old CFG loop's bits");
    for (size_t i = 0; i < n; i++) ref[i] = sf * (x[i] + expf(0.5f * z[i]) * e[i]);
    cpu->vae_sample(cpu, x, z, e, sf, n, got);
    CHECK(bitwise_equal(ref, got, n), "vae_sample: the old posterior loop's bits");
    for (size_t i = 0; i < n; i++) ref[i] = sf * x[i];
    cpu->vae_sample(cpu, x, z, NULL, sf, n, got);
    CHECK(bitwise_equal(ref, got, n), "vae_sample mean: the old loop's bits");
    for (size_t i = 0; i < n; i++) ref[i] = x[i] / sf;
    cpu->div_scalar(cpu, x, sf, n, got);
    CHECK(bitwise_equal(ref, got, n), "div_scalar: the old z / scaling_factor bits");
    for (size_t i = 0; i < n; i++) ref[i] = fminf(fmaxf(4 * x[i], -3.0f), 2.0f);
    for (size_t i = 0; i < n; i++) got[i] = 4 * x[i];
    cpu->clamp(cpu, got, -3.0f, 2.0f, n, got);
    CHECK(bitwise_equal(ref, got, n), "clamp: the old logvar clamp's bits");
    for (size_t i = 0; i < n; i++) ref[i] = z[i] * 1.0f;
    cpu->lincomb(cpu, 1.0f, z, 0.0f, NULL, n, got);
    CHECK(bitwise_equal(ref, got, n), "lincomb: the old txt2img start (noise * sigma)");

    sched_config cfg;
    for (int clip = 0; clip < 2; clip++) {
        sched_configs(&cfg, clip, 0);
        scheduler *s = scheduler_create(SD_SCHED_DDIM, &cfg);
        if (!s || scheduler_set_timesteps(s, 20)) fatal("ddim scheduler");
        int t = scheduler_timestep(s, 0);
        float sa, sb;
        scheduler_noise_scales(s, t, &sa, &sb);
        const float *acp = scheduler_alphas_cumprod(s);
        for (size_t i = 0; i < n; i++) ref[i] = sqrtf(acp[t]) * x[i] + sqrtf(1.0f - acp[t]) * z[i];
        cpu->lincomb(cpu, sa, x, sb, z, n, got);
        CHECK(bitwise_equal(ref, got, n), "lincomb: the old add_noise bits");
        memcpy(ref, x, n * sizeof(float));
        memcpy(got, x, n * sizeof(float));
        sched_state st;
        sched_state_init(&st, NULL, n);
        int same = 1;
        for (int i = 0; i < 20; i++) {
            philox_fill_normal(3, (uint64_t)i, e, n);
            old_ddim_step(acp, 1000, 20, acp[0], clip, 1.0f, scheduler_timestep(s, i), e, ref, n);
            ops_step c;
            same &= !scheduler_prepare(s, &st, i, &c);
            cpu->sched_step(cpu, &c, e, got, NULL, n);
            same &= bitwise_equal(ref, got, n);
        }
        CHECK(same, "DDIM (clip %d): 20 steps through the sched_step op, the old loop's bits", clip);
        scheduler_free(s);
    }
    for (int midpoint = 0; midpoint < 2; midpoint++)
        for (int steps = 8; steps <= 16; steps += 8) {
            sched_configs(&cfg, 0, midpoint);
            scheduler *s = scheduler_create(SD_SCHED_DPMPP_2M, &cfg);
            if (!s || scheduler_set_timesteps(s, steps)) fatal("dpm scheduler");
            const float *acp = scheduler_alphas_cumprod(s);
            float *al = host(1000), *sg = host(1000), *lam = host(1000), *m_old = host(n), *m_new = host(n);
            for (int i = 0; i < 1000; i++) {
                al[i] = sqrtf(acp[i]);
                sg[i] = sqrtf(1.0f - acp[i]);
                lam[i] = logf(al[i]) - logf(sg[i]);
            }
            int ts[16], N = scheduler_num_steps(s), lon = 0, same = 1;
            for (int i = 0; i < N; i++) ts[i] = scheduler_timestep(s, i);
            memcpy(ref, x, n * sizeof(float));
            memcpy(got, x, n * sizeof(float));
            sched_state st;
            sched_state_init(&st, m_new, n);
            for (int i = 0; i < N; i++) {
                philox_fill_normal(4, (uint64_t)i, e, n);
                old_dpm_step(al, sg, lam, ts, N, 1, midpoint, &lon, i, e, ref, m_old, n);
                ops_step c;
                same &= !scheduler_prepare(s, &st, i, &c);
                cpu->sched_step(cpu, &c, e, got, m_new, n);
                same &= bitwise_equal(ref, got, n) && bitwise_equal(m_old, m_new, n);
            }
            CHECK(same, "DPM-Solver++ 2M (midpoint %d, %d steps): the sched_step op gives the old loop's bits",
                  midpoint, steps);
            free(al), free(sg), free(lam), free(m_old), free(m_new);
            scheduler_free(s);
        }
    free(x), free(z), free(e), free(ref), free(got);
}

/* ---- the engine end to end on dev_name against the CPU ---- */

typedef struct {
    float *out, *lat;   /* every item's image and final latents */
    float *start;       /* item 0's latents at step -1 */
    size_t ni, nl;
} engine_result;

static void keep_start(void *ctx, int item, int step_index, const float *latents)
{
    engine_result *r = ctx;
    if (item == 0 && step_index == -1) memcpy(r->start, latents, r->nl * sizeof(float));
}

static void result_free(engine_result *r)
{
    free(r->out), free(r->lat), free(r->start);
    memset(r, 0, sizeof *r);
}

/* Four items at different strengths through one engine call; ext non-NULL: the items' latent noise given. */
static int engine_run(const char *device, const char *precision, const char *model, const char *config,
                      enum sd_sched_kind kind, double guidance, int txt, float *const *ext, engine_result *res)
{
    engine_opts o;
    engine_opts_default(&o);
    o.device = device;
    o.precision = precision;
    o.model = model;
    o.config_dir = config;
    o.threads = 2;
    o.max_batch = 4;
    o.vae_batch = 2;
    o.scheduler = kind;
    o.steps = 6;
    o.guidance = guidance;
    o.trace = keep_start;
    o.trace_ctx = res;
    engine *e = engine_load(&o);
    CHECK(e != NULL, "engine on %s: %s", device, err_msg());
    if (!e) return -1;
    engine_info in;
    engine_get_info(e, &in);
    res->ni = (size_t)3 * in.height * in.width;
    res->nl = (size_t)in.latent_channels * in.latent_h * in.latent_w;
    res->out = host(4 * res->ni);
    res->lat = host(4 * res->nl);
    res->start = host(res->nl);
    float *img = host(res->ni);
    philox_fill_normal(21, 0, img, res->ni);
    for (size_t i = 0; i < res->ni; i++) img[i] = fminf(fmaxf(0.5f + 0.2f * img[i], 0.0f), 1.0f);
    int p[2] = {engine_prompt(e, "a photo of a cat"), engine_prompt(e, "shoe")};
    static const double r[4] = {0.5, 1.0, 0.8, 0.34};
    engine_item it[4];
    memset(it, 0, sizeof it);
    for (int k = 0; k < 4; k++) {
        it[k].image = txt ? NULL : img;
        it[k].prompt = p[k & 1];
        it[k].r = r[k];
        it[k].seed = 3;
        it[k].stream = (uint64_t)k;
        it[k].out = res->out + k * res->ni;
        it[k].latents_out = res->lat + k * res->nl;
        it[k].latent_noise = ext ? ext[k] : NULL;
    }
    int rc = engine_img2img(e, it, 4);
    CHECK(rc == 0, "engine_img2img on %s: %s", device, err_msg());
    engine_free(e);
    free(img);
    return rc;
}

static const struct { const char *model, *config; } models[] = {
    {"tests/fixtures/sd-tiny-a", NULL}, {"tests/fixtures/sd-tiny-b.safetensors", "tests/fixtures/sd-tiny-b"}};

/* The engine on dev_name at precision against the CPU in f32, every fixture configuration: images within img_tol,
 * final latents within lat_atol + lat_rel * max|latents| (bounds in the header). */
static void test_engine_configs(const char *dev_name, const char *precision, double img_tol, double lat_atol,
                                double lat_rel)
{
    char what[160];
    for (size_t m = 0; m < sizeof models / sizeof *models; m++)
        for (int kind = 0; kind < 2; kind++)
            for (int txt = 0; txt < 2; txt++) {
                engine_result rc = {0}, rd = {0};
                double g = txt ? 3.0 : 7.5;
                if (!engine_run("cpu", NULL, models[m].model, models[m].config, kind, g, txt, NULL, &rc) &&
                    !engine_run(dev_name, precision, models[m].model, models[m].config, kind, g, txt, NULL, &rd)) {
                    snprintf(what, sizeof what, "engine %s %s %s %s: images", precision, models[m].model,
                             kind ? "dpm" : "ddim", txt ? "txt2img" : "img2img");
                    compare(what, rc.out, rd.out, 4 * rc.ni, img_tol, 0);
                    snprintf(what, sizeof what, "engine %s %s %s %s: latents", precision, models[m].model,
                             kind ? "dpm" : "ddim", txt ? "txt2img" : "img2img");
                    compare(what, rc.lat, rd.lat, 4 * rc.nl, lat_atol + lat_rel * maxabs(rc.lat, 4 * rc.nl), 0);
                }
                result_free(&rc), result_free(&rd);
            }
}

static void test_engine_group(const char *dev_name)
{
    test_engine_configs(dev_name, "f32", 1e-4, 1e-4, 0);
    /* noise parity: the device's own Philox noise is philox_fill_normal's, seen at step -1 and through a whole
     * txt2img run against the CPU given that noise explicitly (sd-tiny-a: 4x8x8 latents) */
    const size_t nl = 4 * 8 * 8;
    float *noise[4];
    for (int k = 0; k < 4; k++) {
        noise[k] = host(nl);
        philox_fill_normal(3, philox_mix((uint64_t)k, PHILOX_ENGINE_LATENT), noise[k], nl);
    }
    engine_result rd = {0}, rc = {0};
    if (!engine_run(dev_name, "f32", "tests/fixtures/sd-tiny-a", NULL, SD_SCHED_DDIM, 3.0, 1, NULL, &rd) &&
        !engine_run("cpu", NULL, "tests/fixtures/sd-tiny-a", NULL, SD_SCHED_DDIM, 3.0, 1, noise, &rc)) {
        CHECK(rd.nl == nl, "sd-tiny-a latents: %zu values", rd.nl);
        if (rd.nl == nl) compare("engine noise parity: starting latents", noise[0], rd.start, nl, 0, 1e-6);
        compare("engine noise parity: images", rc.out, rd.out, 4 * rc.ni, 1e-4, 0);
    }
    result_free(&rc), result_free(&rd);
    for (int k = 0; k < 4; k++) free(noise[k]);
}


/* drop_nonfinite with the UNet's per-block checks off: an item whose latents go NaN is dropped alone, the others'
 * results are those of a run without it (to 1e-5); without drop_nonfinite the call fails naming the item. */
static void test_engine_drop(const char *dev_name)
{
    engine_opts o;
    engine_opts_default(&o);
    o.device = dev_name;
    o.model = "tests/fixtures/sd-tiny-a";
    o.threads = 2;
    o.max_batch = 3;
    o.steps = 4;
    o.drop_nonfinite = 1;
    engine *e = engine_load(&o);
    CHECK(e != NULL, "engine on %s: %s", dev_name, err_msg());
    if (!e) return;
    engine_info in;
    engine_get_info(e, &in);
    size_t ni = (size_t)3 * in.height * in.width, nl = (size_t)in.latent_channels * in.latent_h * in.latent_w;
    float *out = host(3 * ni), *alone = host(ni), *bad = host(nl);
    philox_fill_normal(8, 0, bad, nl);
    bad[5] = NAN;
    int p = engine_prompt(e, "a photo");
    engine_item it[3];
    memset(it, 0, sizeof it);
    for (int k = 0; k < 3; k++) {
        it[k].prompt = p;
        it[k].seed = 4;
        it[k].stream = (uint64_t)k;
        it[k].out = out + k * ni;
    }
    it[1].latent_noise = bad;
    CHECK(engine_img2img(e, it, 3) == 0, "a batch with a NaN item on %s: %s", dev_name, err_msg());
    CHECK(!it[0].nonfinite && it[1].nonfinite && !it[2].nonfinite, "only item 1 is marked: %d %d %d",
          it[0].nonfinite, it[1].nonfinite, it[2].nonfinite);
    engine_item one = it[2];
    one.out = alone;
    CHECK(engine_img2img(e, &one, 1) == 0 && !one.nonfinite, "item 2 alone: %s", err_msg());
    double d = 0;
    for (size_t i = 0; i < ni; i++) d = fmax(d, fabs(alone[i] - out[2 * ni + i]));
    /* batch size changes the CPU's GEMM tiling: 1e-5, as test_engine's batch checks */
    CHECK(d <= 1e-5, "item 2's image does not depend on the dropped item: max diff %g", d);
    engine_free(e);
    o.drop_nonfinite = 0;
    e = engine_load(&o);
    if (e) {
        p = engine_prompt(e, "a photo");
        for (int k = 0; k < 3; k++) it[k].prompt = p;
        CHECK(engine_img2img(e, it, 3) == -1 && strstr(err_msg(), "item 1") && strstr(err_msg(), "non-finite"),
              "without drop_nonfinite the call fails naming the item: %s", err_msg());
    }
    engine_free(e);
    free(out), free(alone), free(bad);
}

/* Backend names: cpu always; cuda[:N] only in a CUDA build, refused by name in a CPU one. */
static void test_backend_select(void)
{
    ops_backend *b = backend_create("cpu", 1, NULL);
    CHECK(b && !strcmp(b->name, "cpu"), "backend cpu: %s", err_msg());
    if (b) b->destroy(b);
    b = backend_create(NULL, 1, NULL);
    CHECK(b && !strcmp(b->name, "cpu"), "backend NULL is the CPU: %s", err_msg());
    if (b) b->destroy(b);
    static const char *bad[] = {"gpu", "cuda:", "cuda:x", "cuda1", "cuda:-1", "CPU", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(!backend_create(bad[i], 1, NULL) && strstr(err_msg(), "expected cpu, cuda or cuda:N"),
              "device \"%s\": %s", bad[i], err_msg());
    const char *note;
    CHECK(!strcmp(backend_choose("cpu", &note), "cpu") && !note, "-device cpu stays cpu");
#ifdef GENIE_CUDA
    if (ops_cuda_device_count() > 0) {
        CHECK(!strcmp(backend_choose(NULL, &note), "cuda") && !note, "default with a device: cuda");
        CHECK(!strcmp(backend_choose("cuda:0", &note), "cuda:0") && !note, "-device cuda:0 kept");
        b = backend_create("cuda:0", 1, NULL);
        CHECK(b && !strcmp(b->name, "cuda"), "backend cuda:0: %s", err_msg());
        if (b) b->destroy(b);
    } else {
        CHECK(!strcmp(backend_choose(NULL, &note), "cpu") && note && strstr(note, "no CUDA device"),
              "default without a device: cpu, saying so");
        CHECK(!strcmp(backend_choose("cuda", &note), "cpu") && note, "-device cuda without a device: cpu, saying so");
    }
#else
    CHECK(!strcmp(backend_choose(NULL, &note), "cpu") && !note, "a CPU build defaults to cpu");
    CHECK(!backend_create("cuda", 1, NULL) && strstr(err_msg(), "built without CUDA: make GPU=1"),
          "cuda in a CPU build: %s", err_msg());
    CHECK(!backend_create("cuda:1", 1, NULL) && strstr(err_msg(), "built without CUDA"), "cuda:1 in a CPU build: %s",
          err_msg());
#endif
}

/* -precision: the CPU takes f32 only and says so; names are checked before the device; CUDA defaults to f16. */
static void test_precision_select(void)
{
    ops_backend *b = backend_create("cpu", 1, "f32");
    CHECK(b && b->precision == OPS_F32, "cpu with f32: %s", err_msg());
    if (b) b->destroy(b);
    static const char *reduced[] = {"f16", "bf16"};
    for (int i = 0; i < 2; i++)
        CHECK(!backend_create("cpu", 1, reduced[i]) && strstr(err_msg(), "CPU backend computes in f32 only"),
              "cpu refuses %s: %s", reduced[i], err_msg());
    static const char *bad[] = {"fp16", "F16", "f64", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(!backend_create("cuda", 1, bad[i]) && strstr(err_msg(), "expected f32, f16 or bf16"),
              "precision \"%s\" refused: %s", bad[i], err_msg());
    engine_opts o;
    engine_opts_default(&o);
    o.model = "tests/fixtures/sd-tiny-a";
    o.threads = 1;
    o.precision = "f16";
    engine *e = engine_load(&o);
    CHECK(!e && strstr(err_msg(), "f32 only"), "an f16 engine on the CPU is refused: %s", err_msg());
    engine_free(e);
#ifdef GENIE_CUDA
    if (ops_cuda_device_count() > 0) {
        static const char *names[] = {NULL, "f32", "f16", "bf16"};
        static const enum ops_precision want[] = {OPS_F16, OPS_F32, OPS_F16, OPS_BF16};
        for (int i = 0; i < 4; i++) {
            b = backend_create("cuda", 1, names[i]);
            CHECK(b && b->precision == want[i], "cuda with %s: %s", names[i] ? names[i] : "the default", err_msg());
            if (b) b->destroy(b);
        }
    }
#endif
}

static int count_call(void *ctx) { return ++*(int *)ctx == 2 ? -1 : 0; }   /* the second call fails */

/* The CPU backend's memory report follows its allocations and weights; host_alloc is zeroed; replay calls fn. */
static void test_cpu_memory_report(void)
{
    ops_backend *b = ops_cpu_create(1);
    if (!b) fatal("cpu backend");
    ops_mem m0, m, m1;
    b->mem(b, &m0);
    float w[500] = {0};
    float *x = b->alloc(b, 1000);
    const float *dw = b->weight_put(b, w, 500);
    unsigned char *h = b->host_alloc(b, 300);
    if (!x || !dw || !h) fatal("cpu allocations");
    b->mem(b, &m);
    CHECK(m.buffers == m0.buffers + 4000 && m.weights == m0.weights + 2000 && m.host == m0.host + 300 &&
              m.peak == m0.peak + 6000 && !m.device_total,
          "cpu memory report: buffers %zu, weights %zu, host %zu, peak %zu (from %zu, %zu, %zu, %zu)", m.buffers,
          m.weights, m.host, m.peak, m0.buffers, m0.weights, m0.host, m0.peak);
    int zero = 1;
    for (int i = 0; i < 300; i++) zero &= !h[i];
    CHECK(zero, "host_alloc zeroes its memory");
    b->release(b, x);
    b->weight_drop(b, dw);
    b->host_free(b, h);
    int calls = 0, rc[3];
    for (int i = 0; i < 3; i++) rc[i] = b->replay(b, 5, count_call, &calls);
    CHECK(calls == 3 && !rc[0] && rc[1] == -1 && !rc[2], "cpu replay runs fn every time and returns its result: "
          "%d of 3, %d %d %d", calls, rc[0], rc[1], rc[2]);
    b->mem(b, &m1);
    CHECK(m1.buffers == m0.buffers && m1.weights == m0.weights && m1.host == m0.host && m1.peak == m.peak,
          "cpu memory report back to its start, the peak kept: %zu %zu %zu %zu", m1.buffers, m1.weights, m1.host,
          m1.peak);
    b->destroy(b);
}

/* engine_get_info's memory on dev_name (precision NULL: the default): everything is allocated at load, so running
 * does not move the peak (on a device, after a first run that grows the scratch buffer to its size). Returns the
 * weights' bytes, 0 when the engine failed. */
static size_t test_engine_memory(const char *dev_name, const char *precision)
{
    engine_opts o;
    engine_opts_default(&o);
    o.device = dev_name;
    o.precision = precision;
    o.model = "tests/fixtures/sd-tiny-a";
    o.threads = 2;
    o.max_batch = 2;
    o.steps = 3;
    engine *e = engine_load(&o);
    CHECK(e != NULL, "engine on %s: %s", dev_name, err_msg());
    if (!e) return 0;
    engine_info a, b, c;
    engine_get_info(e, &a);
    size_t ni = (size_t)3 * a.height * a.width;
    float *out = host(2 * ni);
    engine_item it[2];
    memset(it, 0, sizeof it);
    for (int k = 0; k < 2; k++) {
        it[k].prompt = engine_prompt(e, "a photo");
        it[k].seed = 1;
        it[k].stream = (uint64_t)k;
        it[k].out = out + k * ni;
    }
    int on_dev = strcmp(dev_name, "cpu") != 0;
    CHECK(engine_img2img(e, it, 2) == 0, "engine run on %s: %s", dev_name, err_msg());
    engine_get_info(e, &b);
    CHECK(engine_img2img(e, it, 2) == 0, "engine run on %s: %s", dev_name, err_msg());
    engine_get_info(e, &c);
    CHECK(!strcmp(a.device, on_dev ? "cuda" : "cpu") && a.mem_weights > 0 && a.mem_buffers > 0 &&
              a.mem_peak >= a.mem_weights + a.mem_buffers && a.mem_host >= ni * sizeof(float) &&
              (a.device_total > 0) == on_dev,
          "engine memory on %s (%s): weights %zu, buffers %zu, peak %zu, host %zu, device %zu of %zu", a.device,
          a.precision, a.mem_weights, a.mem_buffers, a.mem_peak, a.mem_host, a.device_used, a.device_total);
    CHECK((on_dev || b.mem_peak == a.mem_peak) && c.mem_peak == b.mem_peak && c.mem_buffers == b.mem_buffers,
          "engine runs allocate nothing: peak %zu, %zu, %zu", a.mem_peak, b.mem_peak, c.mem_peak);
    engine_free(e);
    free(out);
    return a.mem_weights;
}

static void test_memory(void)
{
    size_t n = 100003;
    float *x = rnd(n), *back = host(n);
    float *d = to_dev(x, n);
    dev->download(dev, back, d, n);
    CHECK(!memcmp(back, x, n * sizeof *x), "upload/download round trip");
    const float *w = weight(x, n);
    memset(back, 0, n * sizeof *back);
    dev->download(dev, back, w, n);
    CHECK(!memcmp(back, x, n * sizeof *x), "weight_put keeps the values");
    dev->weight_drop(dev, w);
    test_copy(n, 0);                /* dst == src */
    test_copy(1000, 1000);          /* adjacent, no overlap */
    test_copy(1000, -1);
    test_copy(1000, 1);
    test_copy(5000011, -5);         /* overlapping moves longer than the CUDA backend's bounce buffer */
    test_copy(5000011, 7);
    /* count_nonfinite: big finite values are finite, every NaN and inf counts */
    CHECK(dev->count_nonfinite(dev, d, n) == 0, "count_nonfinite of normal values");
    CHECK(dev->count_nonfinite(dev, d, 0) == 0, "count_nonfinite of nothing");
    size_t at[] = {0, 1, 31, 32, 1000, 65535, 65536, n / 2, n - 2, n - 1};
    for (size_t i = 0; i < sizeof at / sizeof *at; i++) x[at[i]] = i % 3 == 0 ? NAN : i % 3 == 1 ? INFINITY : -INFINITY;
    x[5] = FLT_MAX, x[6] = -FLT_MAX, x[7] = FLT_MIN / 4;
    dev->upload(dev, d, x, n);
    size_t got = dev->count_nonfinite(dev, d, n), want = cpu->count_nonfinite(cpu, x, n);
    CHECK(got == want && want == sizeof at / sizeof *at, "count_nonfinite: %zu, cpu %zu", got, want);
    CHECK(dev->count_nonfinite(dev, d + 2, n - 4) == want - 4, "count_nonfinite of a sub-range");
    dev->release(dev, d);
    free(x), free(back);
#ifdef GENIE_CUDA
    if (on_cuda) CHECK(!ops_cuda_error(dev), "memory: %s", ops_cuda_error(dev));
#endif
}

#ifdef GENIE_CUDA
/* ---- CUDA only ---- */

/* Out of memory is the caller's failure, not the backend's; a bad op is the backend's and sticks. */
static void test_errors(void)
{
    ops_backend *g = ops_cuda_create(0, OPS_F32);
    CHECK(g != NULL, "second backend: %s", err_msg());
    if (!g) return;
    float *huge = g->alloc(g, (size_t)1 << 50);
    CHECK(huge == NULL && strstr(err_msg(), "cannot allocate"), "an impossible allocation fails: %s", err_msg());
    CHECK(!ops_cuda_error(g), "a failed allocation leaves the backend usable: %s", ops_cuda_error(g));
    float ones[4] = {1, 1, 1, 1};
    float *d = g->alloc(g, 4096);
    CHECK(d != NULL, "alloc: %s", err_msg());
    if (!d) {
        g->destroy(g);
        return;
    }
    g->upload(g, d, ones, 4);
    CHECK(g->count_nonfinite(g, d, 4) == 0 && !ops_cuda_error(g) && ops_cuda_sync(g) == 0, "ops run after it");
    g->attention(g, d, 600, d, 600, d, 600, 1, 1, 1, 1, 600, 1.0f, 0, d);   /* head dim past the kernels' 512 */
    const char *e = ops_cuda_error(g);
    CHECK(e && strstr(e, "attention") && strstr(e, "600"), "the unsupported op is named: %s", e ? e : "(none)");
    CHECK(g->count_nonfinite(g, d, 4) == SIZE_MAX, "count_nonfinite reports the broken backend");
    CHECK(ops_cuda_sync(g) == -1 && strstr(err_msg(), "attention"), "sync reports it: %s", err_msg());
    g->release(g, d);
    g->destroy(g);
    CHECK(ops_cuda_create(-1, OPS_F32) == NULL && strstr(err_msg(), "no device -1"), "bad device index: %s", err_msg());
}

/* linear, conv2d, the norms and embeddings with weights stored in precision p (dev swapped for such a backend):
 * against the CPU in f32 within the wu terms of the tolerances; weights take 2 bytes each; a weight past f16's
 * range is refused in f16 (the backend stays usable) and kept in bf16. */
static void test_reduced(enum ops_precision p)
{
    ops_backend *keep = dev;
    dev = ops_cuda_create(0, p);
    CHECK(dev != NULL, "cuda backend in %s: %s", backend_precision_name(p), err_msg());
    if (!dev) {
        dev = keep;
        return;
    }
    wu = ldexp(1.0, p == OPS_F16 ? -11 : -8);
    static const int P0[4] = {0, 0, 0, 0}, P1[4] = {1, 1, 1, 1}, PBR[4] = {0, 0, 1, 1}, PODD[4] = {2, 0, 1, 3};
    test_conv(2, 3, 7, 5, 5, 3, 1, P1, 1);
    test_conv(1, 3, 8, 8, 4, 3, 2, PBR, 1);
    test_conv(2, 6, 5, 7, 3, 1, 1, P0, 1);        /* 1x1: through the columns in the weights' type */
    test_conv(1, 3, 11, 9, 4, 5, 3, PODD, 0);
    test_conv(1, 64, 181, 180, 4, 3, 1, P1, 1);   /* pixel chunks */
    test_conv(2, 320, 32, 32, 320, 3, 1, P1, 1);
    test_conv(2, 640, 16, 16, 320, 1, 1, P0, 1);
    test_linear(37, 19, 300, 1);
    test_linear(600, 33, 17, 0);
    test_linear(77, 768, 3072, 1);
    test_linear(2048, 320, 320, 0);
    test_linear(4096, 1280, 320, 1);              /* UNet feed-forward output */
    test_group_norm(2, 12, 63, 4, 1e-5f, 0);
    test_group_norm(2, 64, 4096, 32, 1e-6f, 1);
    test_layer_norm(77, 768, 1);
    test_layer_norm(37, 33, 0);
    test_embed_tokens(9, 77, 50, 16);

    ops_mem m0, m;
    size_t n = 1001;
    float *x = rnd(n);
    dev->mem(dev, &m0);
    const float *w = weight(x, n);
    dev->mem(dev, &m);
    CHECK(m.weights == m0.weights + 2 * n, "%s weights take 2 bytes each: %zu -> %zu", backend_precision_name(p),
          m0.weights, m.weights);
    dev->weight_drop(dev, w);
    x[7] = 1e5f;
    w = dev->weight_put(dev, x, n);
    if (p == OPS_F16)
        CHECK(!w && strstr(err_msg(), "range of f16") && !ops_cuda_error(dev), "f16 refuses 1e5: %s", err_msg());
    else
        CHECK(w != NULL, "bf16 keeps 1e5: %s", err_msg());
    if (w) dev->weight_drop(dev, w);
    CHECK(!ops_cuda_error(dev), "%s group: %s", backend_precision_name(p), ops_cuda_error(dev));
    free(x);
    dev->destroy(dev);
    dev = keep;
    wu = 0;
}

/* replay: ops recorded as a graph on the second call run again with each call's host timesteps (pinned), and are
 * recorded again after the scratch buffer moves; every result bitwise that of the same ops run directly. The ops
 * include fill_normal, whose noise must go on the backend's stream: a launch into the legacy default stream while
 * the backend's stream is being captured fails the recording (no graph launches). */
#define REPLAY_NOISE 4099
typedef struct {
    ops_backend *g;
    const float *t, *w, *b;
    float *emb, *y, *noise;
} replay_ctx;

static int replay_ops(void *ctx)
{
    replay_ctx *r = ctx;
    r->g->timestep_embedding(r->g, r->t, 8, 320, 1, 0.0f, r->emb);
    r->g->linear(r->g, r->emb, 8, 320, r->w, r->b, 64, r->y);   /* f16: converts its input through the scratch */
    r->g->fill_normal(r->g, r->noise, REPLAY_NOISE, 9, 10);
    return 0;
}

/* the ops of replay_ops, but the call numbered fail_at fails after queueing them (as a host-side check would) */
typedef struct {
    replay_ctx *r;
    int call, fail_at;
} failing_ctx;

static int failing_ops(void *ctx)
{
    failing_ctx *f = ctx;
    replay_ops(f->r);
    return f->call++ == f->fail_at ? -1 : 0;
}

static void test_replay(void)
{
    ops_backend *g = ops_cuda_create(0, OPS_F16);
    CHECK(g != NULL, "replay backend: %s", err_msg());
    if (!g) return;
    float *wh = rnd(64 * 320), *bh = rnd(64), *big_wh = rnd(4000), *want = host(8 * 64), *got = host(8 * 64);
    float *t = g->host_alloc(g, 8 * sizeof(float));
    float *want_n = host(REPLAY_NOISE), *got_n = host(REPLAY_NOISE);
    replay_ctx r = {g, t, g->weight_put(g, wh, 64 * 320), g->weight_put(g, bh, 64), g->alloc(g, 8 * 320),
                    g->alloc(g, 8 * 64), g->alloc(g, REPLAY_NOISE)};
    const float *big_w = g->weight_put(g, big_wh, 4000);
    float *big_x = g->alloc(g, (size_t)3000 * 4000), *big_y = g->alloc(g, 3000);
    if (!t || !r.w || !r.b || !r.emb || !r.y || !r.noise || !big_w || !big_x || !big_y) fatal("replay buffers");
    int same = 1;
    for (int round = 0; round < 6; round++) {
        for (int i = 0; i < 8; i++) t[i] = (float)(999 - 37 * i - 100 * round);
        if (round == 3) {   /* 6M floats of converted input: the scratch buffer moves */
            g->fill(g, big_x, (size_t)3000 * 4000, 0.5f);
            g->linear(g, big_x, 3000, 4000, big_w, NULL, 1, big_y);
        }
        replay_ops(&r);
        g->download(g, want, r.y, 8 * 64);
        g->download(g, want_n, r.noise, REPLAY_NOISE);
        g->fill(g, r.noise, REPLAY_NOISE, 0.0f);
        g->replay(g, 42, replay_ops, &r);
        g->download(g, got, r.y, 8 * 64);
        g->download(g, got_n, r.noise, REPLAY_NOISE);
        same &= !memcmp(want, got, 8 * 64 * sizeof(float)) && !memcmp(want_n, got_n, REPLAY_NOISE * sizeof(float));
    }
    CHECK(same && !ops_cuda_error(g), "replayed ops give the direct run's bits each round: %s",
          ops_cuda_error(g) ? ops_cuda_error(g) : "");
    /* rounds 1, 2 launch; 3 runs directly (stale after the move); 4, 5 launch */
    CHECK(ops_cuda_graph_launches(g) == 4, "graph launches: %zu, expected 4", ops_cuda_graph_launches(g));
    /* fn failing while it is recorded (call 1 of a new key): its result comes back and the recording is dropped,
     * never launched; the key warms up (call 2), records (call 3: fn is called, nothing runs) and launches, with
     * the direct run's bits */
    failing_ctx f = {&r, 0, 1};
    int rcs[4];
    for (int i = 0; i < 4; i++) rcs[i] = g->replay(g, 43, failing_ops, &f);
    g->download(g, got, r.y, 8 * 64);
    CHECK(!rcs[0] && rcs[1] == -1 && !rcs[2] && !rcs[3] && f.call == 4 && !ops_cuda_error(g) &&
              !memcmp(want, got, 8 * 64 * sizeof(float)),
          "a failed recording: results %d %d %d %d, fn called %d times (4: twice recorded), %s", rcs[0], rcs[1],
          rcs[2], rcs[3], f.call, ops_cuda_error(g) ? ops_cuda_error(g) : "no backend error");
    CHECK(ops_cuda_graph_launches(g) == 5, "graph launches after the failed recording: %zu, expected 5",
          ops_cuda_graph_launches(g));
    g->host_free(g, t);
    g->weight_drop(g, r.w), g->weight_drop(g, r.b), g->weight_drop(g, big_w);
    g->release(g, r.emb), g->release(g, r.y), g->release(g, r.noise), g->release(g, big_x), g->release(g, big_y);
    g->destroy(g);
    free(wh), free(bh), free(big_wh), free(want), free(got), free(want_n), free(got_n);
}

/* rng_cuda_fill_normal queues on the default stream; the backend's download must see its result */
static void test_noise(uint64_t seed, uint64_t stream, size_t n)
{
    float *ref = host(n), *got = host(n), *d = dev->alloc(dev, n);
    if (!d) fatal("noise buffer");
    philox_fill_normal(seed, stream, ref, n);
    CHECK(rng_cuda_fill_normal(seed, stream, d, n, NULL) == 0, "rng_cuda_fill_normal: %s", err_msg());
    dev->download(dev, got, d, n);
    char what[64];
    snprintf(what, sizeof what, "noise seed %llu stream %llu n%zu", (unsigned long long)seed,
             (unsigned long long)stream, n);
    compare(what, ref, got, n, 0, 1e-6);
    dev->release(dev, d);
    free(ref), free(got);
}

/* A backend's life that touches everything it allocates: buffers, weights (f16: converted through the scratch
 * buffer), im2col and bounce scratch, cuBLAS, the counter, pinned host memory. */
static void leak_cycle(enum ops_precision p)
{
    ops_backend *g = ops_cuda_create(0, p);
    CHECK(g != NULL, "leak cycle backend: %s", err_msg());
    if (!g) return;
    size_t n = (size_t)8 << 20;
    float *x = rnd(n), *a = g->alloc(g, n), *b = g->alloc(g, n);
    const float *w = g->weight_put(g, x, 64 * 64 * 9);
    if (a && b && w) {
        static const int P1[4] = {1, 1, 1, 1};
        g->upload(g, a, x, n);
        g->conv2d(g, a, 1, 64, 128, 128, w, w, 64, 3, 1, P1, b);
        g->linear(g, a, 1000, 64, w, w, 64, b);
        g->attention(g, a, 64, a, 64, a, 64, 1, 1000, 1000, 1, 64, 0.125f, 1, b);
        g->copy(g, a + 3, a, n - 3);
        g->count_nonfinite(g, b, n);
        void *h = g->host_alloc(g, 1 << 20);
        CHECK(h != NULL, "pinned host memory: %s", err_msg());
        if (h) g->host_free(g, h);
        CHECK(!ops_cuda_error(g), "leak cycle ops (%s): %s", backend_precision_name(p), ops_cuda_error(g));
    }
    if (w) g->weight_drop(g, w);
    if (a) g->release(g, a);
    if (b) g->release(g, b);
    g->destroy(g);
    free(x);
}

static size_t device_free(void)
{
    size_t fr = 0, total = 0;
    cudaSetDevice(0);
    cudaDeviceSynchronize();
    cudaMemGetInfo(&fr, &total);
    return fr;
}

/* The first cycle also loads kernels and cuBLAS modules for good (lazy loading); the next ones must give back
 * every byte they take. */
static void test_leaks(void)
{
    leak_cycle(OPS_F32);
    leak_cycle(OPS_F16);
    leak_cycle(OPS_BF16);   /* bf16's cuBLAS kernels load lazily too */
    size_t base = device_free();
    leak_cycle(OPS_F32);
    leak_cycle(OPS_F16);
    size_t after1 = device_free();
    leak_cycle(OPS_F32);
    leak_cycle(OPS_BF16);
    size_t after2 = device_free();
    CHECK(base > 0 && after1 == base && after2 == base,
          "device memory back to its start after destroy: free %zu, then %zu, %zu bytes", base, after1, after2);
}
#endif

int main(void)
{
    cpu = ops_cpu_create(2);
    if (!cpu) fatal("cpu backend");
    const char *self = getenv("GENIE_BACKEND_OPS_SELFTEST");
#ifdef GENIE_CUDA
    if (ops_cuda_device_count() > 0) {
        dev = ops_cuda_create(0, OPS_F32);
        CHECK(dev != NULL, "cuda backend on a machine with a device: %s", err_msg());
        if (!dev) return check_done("test_backend_ops");
        on_cuda = 1;
    }
#endif
    if (!dev && self && *self && strcmp(self, "0")) {
        dev = ops_cpu_create(1);
        printf("self-test: a second CPU backend stands in for the device\n");
    }
    if (!dev) {
        const char *groups[] = {"conv2d", "linear", "norms", "elementwise", "attention", "layout", "embeddings", "memory",
                                "sampling ops"};
        for (size_t i = 0; i < sizeof groups / sizeof *groups; i++) skip(groups[i]);
    } else {
        static const int P0[4] = {0, 0, 0, 0}, P1[4] = {1, 1, 1, 1}, PBR[4] = {0, 0, 1, 1}, PODD[4] = {2, 0, 1, 3};
        test_conv(2, 3, 7, 5, 5, 3, 1, P1, 1);
        test_conv(2, 4, 9, 6, 6, 3, 2, P1, 1);        /* UNet downsampler */
        test_conv(1, 3, 8, 8, 4, 3, 2, PBR, 1);       /* VAE downsampler: pad right/bottom only */
        test_conv(2, 6, 5, 7, 3, 1, 1, P0, 1);        /* 1x1: direct GEMM */
        test_conv(2, 5, 6, 4, 3, 1, 1, P1, 0);        /* 1x1 with pads: through im2col */
        test_conv(1, 3, 11, 9, 4, 5, 3, PODD, 1);     /* k5, stride 3, every pad different */
        test_conv(2, 2, 3, 1, 3, 3, 1, P1, 1);        /* one-pixel-wide map */
        test_conv(1, 3, 2, 2, 2, 3, 2, P1, 1);
        test_conv(2, 32, 16, 16, 40, 3, 1, P1, 1);
        test_conv(1, 2600, 4, 6, 20, 3, 1, P1, 1);    /* K = 23400 */
        test_conv(1, 64, 181, 180, 4, 3, 1, P1, 1);   /* K x pixels past the 16M-float column buffer: chunks */
        test_conv(2, 320, 32, 32, 320, 3, 1, P1, 1);  /* a UNet shape */
        test_conv(2, 640, 16, 16, 320, 1, 1, P0, 1);  /* a UNet shortcut */

        test_linear(37, 19, 300, 1);
        test_linear(600, 33, 17, 0);
        test_linear(1, 64, 5, 1);
        test_linear(77, 768, 3072, 1);                /* CLIP fc1 */
        test_linear(2048, 320, 320, 0);               /* UNet attention projection */
        test_linear(2, 320, 1280, 1);                 /* time embedding */

        test_group_norm(2, 12, 63, 4, 1e-5f, 0);
        test_group_norm(2, 12, 63, 4, 1e-5f, 1);
        test_group_norm(3, 6, 1, 1, 1e-6f, 0);        /* one pixel, one group */
        test_group_norm(1, 7, 5, 7, 1e-6f, 0);        /* one channel per group */
        test_group_norm(2, 64, 4096, 32, 1e-6f, 1);   /* SD-like, 8192 values per group */
        test_layer_norm(37, 33, 0);
        test_layer_norm(77, 768, 1);
        test_layer_norm(4097, 320, 0);
        test_layer_norm(3, 1, 0);

        test_elementwise(200003);
        test_elementwise(1);
        test_elementwise(20000003);                   /* past one launch's 65536 x 256 threads: grid-stride loops */
        test_add_channel(3, 7, 5001);
        test_add_channel(2, 1280, 64);
        test_geglu(41, 23);
        test_geglu(1024, 1280);

        test_attention(2, 13, 13, 3, 5, 1, 1);
        test_attention(1, 70, 9, 2, 8, 0, 1);         /* cross-attention shape */
        test_attention(2, 77, 77, 2, 7, 1, 4);        /* causal over several query blocks */
        test_attention(1, 1, 1, 1, 3, 0, 1);
        test_attention(2, 100, 77, 8, 40, 0, 1);      /* SD cross attention, head dim 40 */
        test_attention(1, 77, 77, 12, 64, 1, 1);      /* CLIP */
        test_attention(1, 256, 256, 4, 80, 0, 4);
        test_attention(2, 64, 77, 8, 160, 0, 1);      /* head dim 160: the largest tile */
        test_attention(1, 20, 50, 2, 160, 1, 1);      /* causal, Tq < Tk */
        test_attention(1, 50, 20, 2, 96, 1, 4);       /* causal, Tq > Tk */
        test_attention(1, 1024, 1024, 2, 33, 0, 1);
        test_attention(1, 1030, 700, 1, 128, 1, 4);
        test_attention(2, 37, 45, 3, 100, 1, 1);      /* 4 dims per lane, causal, Tq < Tk */
        test_attention(1, 4096, 4096, 1, 40, 0, 1);   /* SD 64x64 self-attention, one head */
        test_attention(1, 33, 65, 2, 200, 1, 1);      /* wide kernel, causal */
        test_attention(2, 40, 41, 1, 257, 0, 4);
        test_attention(1, 300, 300, 1, 512, 0, 1);    /* the VAE's mid attention */

        test_upsample(2, 5, 7, 3);
        test_upsample(1, 320, 32, 32);
        test_concat(2, 5, 4, 21);
        test_concat(2, 1280, 640, 64);
        test_tokens(2, 70, 45);
        test_tokens(2, 320, 4096);
        test_tokens(3, 3, 1000);
        test_tokens(1, 1, 1);

        test_timestep(3, 320, 1, 0.0f);
        test_timestep(40, 320, 1, 0.0f);              /* more timesteps than one launch carries */
        test_timestep(5, 33, 0, 1.0f);                /* odd dim: a zero at the end */
        test_embed_tokens(1, 3, 5, 6);
        test_embed_tokens(9, 77, 50, 16);             /* 693 rows: more ids than one launch carries */

        test_memory();
        test_sampling_ops(100003);
        test_sampling_ops(1);
        test_sampling_ops(17000003);                  /* grid-stride loops */
    }
    test_cpu_sampling_exact();
    test_backend_select();
    test_precision_select();
    test_cpu_memory_report();
    test_engine_memory("cpu", NULL);
    test_engine_drop("cpu");
#ifdef GENIE_CUDA
    if (on_cuda) {
        test_errors();
        test_noise(1, 2, 1000003);
        test_noise(7, 8, 9000003);                    /* past one launch's 8.4M values */
        test_noise(0xfeedfacecafebeefull, philox_mix(3, 4), 17);
        test_engine_group("cuda");
        test_engine_drop("cuda");
        test_reduced(OPS_F16);
        test_reduced(OPS_BF16);
        test_replay();
        test_engine_configs("cuda", "f16", 5e-3, 0, 2e-3);
        test_engine_configs("cuda", "bf16", 6e-2, 0, 1.6e-2);
        size_t f16_weights = test_engine_memory("cuda", NULL), f32_weights = test_engine_memory("cpu", NULL);
        CHECK(f16_weights && 2 * f16_weights == f32_weights,
              "the default f16 weights on the device: half the CPU's %zu bytes, %zu", f32_weights, f16_weights);
        test_leaks();
    }
#endif
    if (!on_cuda) {
        skip("errors");
        skip("noise");
        skip("reduced precision ops");
        skip("graph replay");
        skip("reduced precision engine");
        skip("device memory report");
        if (dev) test_engine_group("cpu");   /* the self-test: the group's own code, CPU against CPU */
        else skip("engine");
        skip("leaks");
    }
    if (dev) dev->destroy(dev);
    cpu->destroy(cpu);
    return check_done("test_backend_ops");
}
