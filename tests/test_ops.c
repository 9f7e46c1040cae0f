/* Every CPU op against a naive loop on random data (odd sizes, strides, pads, causal masks, tiles that split),
 * and the same op on 1 and 2 threads giving bitwise identical results. */
#include "tests/check.h"
#include "common/err.h"
#include "augment/engine/nn.h"
#include "augment/engine/backend/ops.h"
#include "common/philox.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static ops_backend *be1, *be2;
static uint64_t stream_id;

static float *rnd(size_t n)
{
    float *p = malloc(n * sizeof *p);
    philox_fill_normal(42, stream_id++, p, n);
    return p;
}

static float *zeros(size_t n) { return calloc(n, sizeof(float)); }

/* Runs op on both backends into y1/y2: same result bitwise, and y1 within tol of the reference. */
static void compare(const char *what, const float *y1, const float *y2, const float *ref, size_t n, double tol)
{
    double e = check_max_abs(y1, ref, n);
    CHECK(e <= tol, "%s: max abs error %g > %g", what, e, tol);
    CHECK(!memcmp(y1, y2, n * sizeof *y1), "%s: 1 and 2 threads differ", what);
}

static void test_conv(int B, int Cin, int H, int W, int Cout, int k, int stride, const int pad[4], int bias)
{
    int Ho = (H + pad[0] + pad[2] - k) / stride + 1, Wo = (W + pad[1] + pad[3] - k) / stride + 1;
    float *x = rnd((size_t)B * Cin * H * W), *w = rnd((size_t)Cout * Cin * k * k), *b = bias ? rnd(Cout) : NULL;
    size_t n = (size_t)B * Cout * Ho * Wo;
    float *ref = zeros(n), *y1 = zeros(n), *y2 = zeros(n);
    for (int bb = 0; bb < B; bb++)
        for (int co = 0; co < Cout; co++)
            for (int oy = 0; oy < Ho; oy++)
                for (int ox = 0; ox < Wo; ox++) {
                    double s = b ? b[co] : 0;
                    for (int ci = 0; ci < Cin; ci++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int iy = oy * stride - pad[0] + ky, ix = ox * stride - pad[1] + kx;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                s += (double)x[((size_t)(bb * Cin + ci) * H + iy) * W + ix] *
                                     w[((size_t)(co * Cin + ci) * k + ky) * k + kx];
                            }
                    ref[((size_t)(bb * Cout + co) * Ho + oy) * Wo + ox] = (float)s;
                }
    be1->conv2d(be1, x, B, Cin, H, W, w, b, Cout, k, stride, pad, y1);
    be2->conv2d(be2, x, B, Cin, H, W, w, b, Cout, k, stride, pad, y2);
    char what[128];
    snprintf(what, sizeof what, "conv2d B%d %dx%dx%d -> %d k%d s%d pad %d,%d,%d,%d", B, Cin, H, W, Cout, k, stride,
             pad[0], pad[1], pad[2], pad[3]);
    compare(what, y1, y2, ref, n, 1e-4 * sqrt(Cin * k * k));
    free(x), free(w), free(b), free(ref), free(y1), free(y2);
}

static void test_linear(int rows, int in, int out, int bias)
{
    float *x = rnd((size_t)rows * in), *w = rnd((size_t)out * in), *b = bias ? rnd(out) : NULL;
    size_t n = (size_t)rows * out;
    float *ref = zeros(n), *y1 = zeros(n), *y2 = zeros(n);
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0;
            for (int i = 0; i < in; i++) s += (double)x[(size_t)r * in + i] * w[(size_t)o * in + i];
            ref[(size_t)r * out + o] = (float)s;
        }
    be1->linear(be1, x, rows, in, w, b, out, y1);
    be2->linear(be2, x, rows, in, w, b, out, y2);
    char what[64];
    snprintf(what, sizeof what, "linear %dx%d -> %d", rows, in, out);
    compare(what, y1, y2, ref, n, 1e-4 * sqrt(in));
    free(x), free(w), free(b), free(ref), free(y1), free(y2);
}

static float act_ref(enum ops_act a, float x)
{
    double v = x;
    switch (a) {
    case OPS_ACT_SILU: return (float)(v / (1 + exp(-v)));
    case OPS_ACT_GELU: return (float)(0.5 * v * (1 + erf(v / sqrt(2.0))));
    case OPS_ACT_QUICK_GELU: return (float)(v / (1 + exp(-1.702 * v)));
    default: return x;
    }
}

static void test_norms(void)
{
    int B = 2, C = 12, G = 4, HW = 63;
    size_t n = (size_t)B * C * HW;
    float *x = rnd(n), *g = rnd(C), *b = rnd(C), *ref = zeros(n), *y1 = zeros(n), *y2 = zeros(n);
    for (int i = 0; i < (int)n; i++) x[i] = 3 * x[i] + 1.5f;  /* a mean and scale to remove */
    for (enum ops_act act = OPS_ACT_NONE; act <= OPS_ACT_SILU; act++) {
        for (int bb = 0; bb < B; bb++)
            for (int gg = 0; gg < G; gg++) {
                int cg = C / G;
                const float *xs = x + ((size_t)bb * C + gg * cg) * HW;
                double s = 0, ss = 0;
                for (int i = 0; i < cg * HW; i++) s += xs[i];
                double mean = s / (cg * HW);
                for (int i = 0; i < cg * HW; i++) ss += (xs[i] - mean) * (xs[i] - mean);
                double inv = 1 / sqrt(ss / (cg * HW) + 1e-5);
                for (int c = 0; c < cg; c++)
                    for (int i = 0; i < HW; i++) {
                        int ch = gg * cg + c;
                        float v = (float)((xs[c * HW + i] - mean) * inv * g[ch] + b[ch]);
                        ref[((size_t)bb * C + ch) * HW + i] = act_ref(act, v);
                    }
            }
        be1->group_norm(be1, x, B, C, HW, G, 1e-5f, g, b, act, y1);
        be2->group_norm(be2, x, B, C, HW, G, 1e-5f, g, b, act, y2);
        compare(act ? "group_norm+silu" : "group_norm", y1, y2, ref, n, 1e-5);
    }
    free(g), free(b);
    int rows = 37, D = 33;
    g = rnd(D), b = rnd(D);
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * D;
        double s = 0, ss = 0;
        for (int i = 0; i < D; i++) s += xr[i];
        double mean = s / D;
        for (int i = 0; i < D; i++) ss += (xr[i] - mean) * (xr[i] - mean);
        double inv = 1 / sqrt(ss / D + 1e-5);
        for (int i = 0; i < D; i++) ref[(size_t)r * D + i] = (float)((xr[i] - mean) * inv * g[i] + b[i]);
    }
    be1->layer_norm(be1, x, rows, D, 1e-5f, g, b, y1);
    be2->layer_norm(be2, x, rows, D, 1e-5f, g, b, y2);
    compare("layer_norm", y1, y2, ref, (size_t)rows * D, 1e-5);
    free(x), free(g), free(b), free(ref), free(y1), free(y2);
}

static void test_elementwise(void)
{
    size_t n = 200003;  /* several tiles, the last one partial */
    float *a = rnd(n), *b = rnd(n), *ref = zeros(n), *y1 = zeros(n), *y2 = zeros(n);
    for (size_t i = 0; i < n; i++) ref[i] = a[i] + b[i];
    be1->add(be1, a, b, n, y1);
    be2->add(be2, a, b, n, y2);
    compare("add", y1, y2, ref, n, 0);
    for (size_t i = 0; i < n; i++) ref[i] = a[i] * b[i];
    be1->mul(be1, a, b, n, y1);
    be2->mul(be2, a, b, n, y2);
    compare("mul", y1, y2, ref, n, 0);
    const char *names[] = {"", "silu", "gelu", "quick_gelu"};
    for (enum ops_act act = OPS_ACT_SILU; act <= OPS_ACT_QUICK_GELU; act++) {
        for (size_t i = 0; i < n; i++) ref[i] = act_ref(act, 4 * a[i]);
        for (size_t i = 0; i < n; i++) b[i] = 4 * a[i];
        be1->act(be1, act, b, n, y1);
        be2->act(be2, act, b, n, y2);
        compare(names[act], y1, y2, ref, n, 2e-6 * 16);
    }
    /* add_channel: x[b,c,:] += v[b,c] */
    int B = 3, C = 7, HW = 5001;
    float *v = rnd((size_t)B * C);
    memcpy(y1, a, (size_t)B * C * HW * sizeof(float));
    memcpy(y2, a, (size_t)B * C * HW * sizeof(float));
    for (size_t i = 0; i < (size_t)B * C * HW; i++) ref[i] = a[i] + v[i / HW];
    be1->add_channel(be1, y1, B, C, HW, v);
    be2->add_channel(be2, y2, B, C, HW, v);
    compare("add_channel", y1, y2, ref, (size_t)B * C * HW, 0);
    /* geglu */
    int rows = 41, inner = 23;
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < inner; i++)
            ref[(size_t)r * inner + i] = (float)(a[(size_t)r * 2 * inner + i] *
                                                 (double)act_ref(OPS_ACT_GELU, a[(size_t)r * 2 * inner + inner + i]));
    be1->geglu(be1, a, rows, inner, y1);
    be2->geglu(be2, a, rows, inner, y2);
    compare("geglu", y1, y2, ref, (size_t)rows * inner, 1e-6);
    free(a), free(b), free(v), free(ref), free(y1), free(y2);
}

static void test_attention(int B, int Tq, int Tk, int heads, int dh, int causal)
{
    /* q, k, v interleaved in one [B, T, 3*heads*dh] buffer to exercise the row strides */
    int D = heads * dh, ld = 3 * D, T = Tq > Tk ? Tq : Tk;
    float *qkv = rnd((size_t)B * T * ld);
    const float *q = qkv, *k = qkv + D, *v = qkv + 2 * D;
    size_t n = (size_t)B * Tq * D;
    float *ref = zeros(n), *y1 = zeros(n), *y2 = zeros(n);
    float scale = 1.0f / sqrtf((float)dh);
    double *p = malloc(Tk * sizeof *p);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < Tq; i++) {
                int nk = causal ? (i + 1 < Tk ? i + 1 : Tk) : Tk;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < nk; j++) {
                    double s = 0;
                    for (int d = 0; d < dh; d++)
                        s += (double)q[((size_t)b * Tq + i) * ld + h * dh + d] *
                             k[((size_t)b * Tk + j) * ld + h * dh + d];
                    p[j] = s * scale;
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = 0; j < nk; j++) sum += (p[j] = exp(p[j] - mx));
                for (int d = 0; d < dh; d++) {
                    double o = 0;
                    for (int j = 0; j < nk; j++) o += p[j] / sum * v[((size_t)b * Tk + j) * ld + h * dh + d];
                    ref[((size_t)b * Tq + i) * D + h * dh + d] = (float)o;
                }
            }
    be1->attention(be1, q, ld, k, ld, v, ld, B, Tq, Tk, heads, dh, scale, causal, y1);
    be2->attention(be2, q, ld, k, ld, v, ld, B, Tq, Tk, heads, dh, scale, causal, y2);
    char what[96];
    snprintf(what, sizeof what, "attention B%d Tq%d Tk%d heads%d dh%d%s", B, Tq, Tk, heads, dh,
             causal ? " causal" : "");
    compare(what, y1, y2, ref, n, 1e-5);
    free(qkv), free(ref), free(y1), free(y2), free(p);
}

static void test_layout(void)
{
    int B = 2, C = 5, H = 7, W = 3, Cb = 4;
    size_t n = (size_t)B * C * H * W;
    float *x = rnd(n), *x2 = rnd((size_t)B * Cb * H * W), *ref = zeros(4 * n + B * Cb * H * W);
    float *y1 = zeros(4 * n + B * Cb * H * W), *y2 = zeros(4 * n + B * Cb * H * W);
    for (int p = 0; p < B * C; p++)
        for (int i = 0; i < 2 * H; i++)
            for (int j = 0; j < 2 * W; j++)
                ref[((size_t)p * 2 * H + i) * 2 * W + j] = x[((size_t)p * H + i / 2) * W + j / 2];
    be1->upsample2x(be1, x, B, C, H, W, y1);
    be2->upsample2x(be2, x, B, C, H, W, y2);
    compare("upsample2x", y1, y2, ref, 4 * n, 0);
    int HW = H * W;
    for (int b = 0; b < B; b++) {
        for (int c = 0; c < C; c++)
            for (int i = 0; i < HW; i++) ref[((size_t)b * (C + Cb) + c) * HW + i] = x[((size_t)b * C + c) * HW + i];
        for (int c = 0; c < Cb; c++)
            for (int i = 0; i < HW; i++)
                ref[((size_t)b * (C + Cb) + C + c) * HW + i] = x2[((size_t)b * Cb + c) * HW + i];
    }
    be1->concat(be1, x, C, x2, Cb, B, HW, y1);
    be2->concat(be2, x, C, x2, Cb, B, HW, y2);
    compare("concat", y1, y2, ref, (size_t)B * (C + Cb) * HW, 0);
    /* tokens: a size spanning several 32-blocks */
    int C2 = 70, HW2 = 45;
    float *t = rnd((size_t)B * C2 * HW2), *tr = zeros((size_t)B * C2 * HW2), *t1 = zeros((size_t)B * C2 * HW2),
          *t2 = zeros((size_t)B * C2 * HW2), *back = zeros((size_t)B * C2 * HW2);
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C2; c++)
            for (int i = 0; i < HW2; i++) tr[((size_t)b * HW2 + i) * C2 + c] = t[((size_t)b * C2 + c) * HW2 + i];
    be1->to_tokens(be1, t, B, C2, HW2, t1);
    be2->to_tokens(be2, t, B, C2, HW2, t2);
    compare("to_tokens", t1, t2, tr, (size_t)B * C2 * HW2, 0);
    be2->from_tokens(be2, t1, B, C2, HW2, back);
    CHECK(!memcmp(back, t, (size_t)B * C2 * HW2 * sizeof(float)), "from_tokens does not invert to_tokens");
    free(x), free(x2), free(ref), free(y1), free(y2), free(t), free(tr), free(t1), free(t2), free(back);
}

static void test_embeddings(void)
{
    float t[3] = {0, 1, 981};
    int dim = 320, half = dim / 2;
    float *y = zeros(3 * dim), *ref = zeros(3 * dim);
    for (int flip = 0; flip < 2; flip++) {
        for (int b = 0; b < 3; b++)
            for (int i = 0; i < half; i++) {
                double a = t[b] * exp(-log(10000.0) * i / half);
                ref[b * dim + i] = (float)(flip ? cos(a) : sin(a));
                ref[b * dim + half + i] = (float)(flip ? sin(a) : cos(a));
            }
        be1->timestep_embedding(be1, t, 3, dim, flip, 0.0f, y);
        /* float32 arguments near 981 carry ~6e-5 rounding, as in diffusers */
        double e = check_max_abs(y, ref, 3 * dim);
        CHECK(e < 2e-4, "timestep_embedding flip=%d: max abs error %g", flip, e);
    }
    CHECK(y[0] == 1.0f && y[half] == 0.0f, "t=0 flipped embedding starts [cos 0 = 1 ... sin 0 = 0]");
    int ids[6] = {3, 0, 4, 4, 1, 2}, V = 5, C = 6, L = 3;
    float *tok = rnd((size_t)V * C), *pos = rnd((size_t)L * C), *e = zeros(6 * C);
    be1->embed_tokens(be1, ids, 2, L, tok, pos, C, e);
    int ok = 1;
    for (int i = 0; i < 6; i++)
        for (int c = 0; c < C; c++) ok &= e[i * C + c] == tok[ids[i] * C + c] + pos[(i % L) * C + c];
    CHECK(ok, "embed_tokens = token row + position row");
    free(y), free(ref), free(tok), free(pos), free(e);
}

static void test_arena(void)
{
    ops_arena a = {.be = be1};
    ar_begin(&a, 1);
    float *p = ar_push(&a, 10);
    size_t m = ar_mark(&a);
    ar_push(&a, 100);
    ar_pop(&a, m);
    ar_push(&a, 20);
    CHECK(p == NULL && a.peak == 16 + 112, "dry run counts the peak (got %zu)", a.peak);
    CHECK(!ar_reserve(&a, a.peak) && a.cap == 128, "reserve");
    ar_begin(&a, 0);
    float *q = ar_push(&a, 10), *r = ar_push(&a, 3);
    CHECK(q == a.base && r == a.base + 16 && ((uintptr_t)r & 63) == 0, "pushes are 64-byte aligned");
    ar_free(&a);
}

/* A backend that has failed (a device's sticky error): count_nonfinite answers OPS_COUNT_FAILED and sync names
 * the failure. The finite check must pass the backend's error on, not report a count of NaNs. */
static size_t failed_count(ops_backend *be, const float *x, size_t n) { return OPS_COUNT_FAILED; }
static int failed_sync(ops_backend *be) { return err_set("device lost"); }

static void test_failed_backend(void)
{
    size_t (*count)(ops_backend *, const float *, size_t) = be1->count_nonfinite;
    int (*sync)(ops_backend *) = be1->sync;
    float x[4] = {0};
    ops_arena a = {.be = be1};
    CHECK(nn_check_finite(&a, x, 4, "unet", "the mid block") == 0, "finite data passes: %s", err_msg());
    be1->count_nonfinite = failed_count;
    be1->sync = failed_sync;
    int rc = nn_check_finite(&a, x, 4, "unet", "the mid block");
    CHECK(rc == -1 && strstr(err_msg(), "device lost") && strstr(err_msg(), "the mid block") &&
              !strstr(err_msg(), "non-finite"),
          "a failed backend's error is passed on: \"%s\"", err_msg());
    be1->count_nonfinite = count;
    be1->sync = sync;
}

int main(void)
{
    be1 = ops_cpu_create(1);
    be2 = ops_cpu_create(2);
    CHECK(be1 && be2, "create: %s", err_msg());
    if (!be1 || !be2) return check_done("test_ops");
    CHECK(ops_cpu_threads(be2) == 2, "thread count");
    static const int P1[4] = {1, 1, 1, 1}, P0[4] = {0, 0, 0, 0}, PBR[4] = {0, 0, 1, 1};
    test_conv(2, 3, 7, 5, 5, 3, 1, P1, 1);
    test_conv(2, 4, 9, 6, 6, 3, 2, P1, 1);       /* UNet downsampler */
    test_conv(1, 3, 8, 8, 4, 3, 2, PBR, 1);      /* VAE downsampler: pad right/bottom only */
    test_conv(2, 6, 5, 7, 3, 1, 1, P0, 1);       /* 1x1: direct gemm */
    test_conv(1, 8, 4, 4, 70, 3, 1, P1, 0);      /* few pixels: output channels split into tiles */
    test_conv(1, 2, 40, 40, 3, 3, 1, P1, 1);     /* more pixels than one tile */
    test_conv(1, 5, 45, 30, 4, 1, 1, P0, 1);     /* 1x1 over several pixel tiles */
    test_conv(2, 2, 3, 1, 3, 3, 1, P1, 1);       /* one-pixel-wide map: every row touches both pads */
    test_conv(1, 3, 2, 2, 2, 3, 2, P1, 1);
    /* 3x3 convs: even and odd maps, several pixel and channel tiles, no bias, a wide input */
    test_conv(2, 16, 8, 8, 16, 3, 1, P1, 1);
    test_conv(1, 24, 13, 7, 40, 3, 1, P1, 1);
    test_conv(1, 17, 19, 18, 130, 3, 1, P1, 0);
    test_conv(1, 2600, 4, 6, 20, 3, 1, P1, 1);
    /* stride 1 over whole rows (the small-map path): pads on some sides only, and pads wider than the map */
    const int PTL[4] = {0, 1, 2, 0}, P2[4] = {2, 2, 2, 2};
    test_conv(2, 3, 4, 6, 5, 3, 1, PTL, 1);
    test_conv(1, 3, 5, 1, 2, 3, 1, P2, 1);
    test_conv(1, 2, 1, 2, 3, 3, 1, P2, 0);
    /* "same" convs (as wide out as in: one shifted run per tap and channel): 5x5, pads wider than the map, and
     * tiles of 16 whole rows that start inside the map */
    test_conv(1, 3, 6, 5, 4, 5, 1, P2, 1);
    test_conv(2, 2, 2, 1, 3, 5, 1, P2, 0);
    test_conv(1, 2, 48, 64, 3, 3, 1, P1, 1);
    test_linear(37, 19, 300, 1);                 /* few rows: columns split */
    test_linear(600, 33, 17, 0);
    test_linear(1, 64, 5, 1);
    test_norms();
    test_elementwise();
    test_attention(2, 13, 13, 3, 5, 1);
    test_attention(1, 70, 9, 2, 8, 0);           /* two query blocks, cross-attention shape */
    test_attention(2, 77, 77, 2, 7, 1);          /* causal over two query blocks */
    test_attention(1, 1, 1, 1, 3, 0);
    test_layout();
    test_embeddings();
    test_arena();
    test_failed_backend();
    be1->destroy(be1);
    be2->destroy(be2);
    return check_done("test_ops");
}
