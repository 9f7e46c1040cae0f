#include "augment/engine/nn.h"
#include "common/err.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static const float *param(nn_params *P, const char *name, int ndim, const int64_t *shape)
{
    const float *host = weights_get(P->w, name, ndim, shape);
    if (!host) return NULL;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    if (P->n == P->cap) {
        int cap = P->cap ? 2 * P->cap : 256;
        const float **p = realloc(P->p, cap * sizeof *p);
        if (!p) {
            err_set("out of memory loading %s", name);
            return NULL;
        }
        P->p = p;
        P->cap = cap;
    }
    const float *d = P->be->weight_put(P->be, host, n);
    if (!d) {
        err_wrap("loading %s: ", name);
        return NULL;
    }
    P->p[P->n++] = d;
    return d;
}

static const float *param_sub(nn_params *P, const char *prefix, const char *suffix, int ndim, const int64_t *shape)
{
    char name[640];
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    return param(P, name, ndim, shape);
}

void nn_params_free(nn_params *P)
{
    for (int i = 0; i < P->n; i++) P->be->weight_drop(P->be, P->p[i]);
    free(P->p);
    P->p = NULL;
    P->n = P->cap = 0;
}

#define PREFIX(buf, fmt)                                                                                          \
    char buf[512];                                                                                                \
    do {                                                                                                          \
        va_list ap;                                                                                               \
        va_start(ap, fmt);                                                                                        \
        vsnprintf(buf, sizeof buf, fmt, ap);                                                                      \
        va_end(ap);                                                                                               \
    } while (0)

int nn_conv_load(nn_params *P, nn_conv *c, int cin, int cout, int k, const char *fmt, ...)
{
    PREFIX(pre, fmt);
    int64_t ws[4] = {cout, cin, k, k}, bs[1] = {cout};
    *c = (nn_conv){param_sub(P, pre, "weight", 4, ws), param_sub(P, pre, "bias", 1, bs), cin, cout, k};
    return c->w && c->b ? 0 : -1;
}

int nn_linear_load(nn_params *P, nn_linear *l, int in, int out, int bias, const char *fmt, ...)
{
    PREFIX(pre, fmt);
    int64_t ws[2] = {out, in}, bs[1] = {out};
    *l = (nn_linear){param_sub(P, pre, "weight", 2, ws), NULL, in, out};
    if (!l->w) return -1;
    if (bias && !(l->b = param_sub(P, pre, "bias", 1, bs))) return -1;
    return 0;
}

int nn_norm_load(nn_params *P, nn_norm *n, int c, int groups, float eps, const char *fmt, ...)
{
    PREFIX(pre, fmt);
    if (groups > 0 && c % groups) return err_set("%s: %d channels do not split into %d groups", pre, c, groups);
    int64_t s[1] = {c};
    *n = (nn_norm){param_sub(P, pre, "weight", 1, s), param_sub(P, pre, "bias", 1, s), c, groups, eps};
    return n->g && n->b ? 0 : -1;
}

const float *nn_tensor_load(nn_params *P, int ndim, const int64_t *shape, const char *fmt, ...)
{
    PREFIX(name, fmt);
    return param(P, name, ndim, shape);
}

int nn_resnet_load(nn_params *P, nn_resnet *r, int cin, int cout, int temb_dim, int groups, float eps,
                   const char *prefix)
{
    r->cin = cin;
    r->cout = cout;
    r->temb = temb_dim;
    if (nn_norm_load(P, &r->norm1, cin, groups, eps, "%s.norm1", prefix) ||
        nn_conv_load(P, &r->conv1, cin, cout, 3, "%s.conv1", prefix) ||
        nn_norm_load(P, &r->norm2, cout, groups, eps, "%s.norm2", prefix) ||
        nn_conv_load(P, &r->conv2, cout, cout, 3, "%s.conv2", prefix))
        return -1;
    if (temb_dim && nn_linear_load(P, &r->temb_proj, temb_dim, cout, 1, "%s.time_emb_proj", prefix)) return -1;
    if (cin != cout && nn_conv_load(P, &r->shortcut, cin, cout, 1, "%s.conv_shortcut", prefix)) return -1;
    return 0;
}

static const int PAD1[4] = {1, 1, 1, 1}, PAD0[4] = {0, 0, 0, 0};

float *nn_conv_forward(ops_arena *a, const nn_conv *c, const float *x, int B, int H, int W, int stride,
                       const int pad[4])
{
    int Ho = (H + pad[0] + pad[2] - c->k) / stride + 1, Wo = (W + pad[1] + pad[3] - c->k) / stride + 1;
    float *y = ar_push(a, (size_t)B * c->cout * Ho * Wo);
    OPS_RUN(a, conv2d, x, B, c->cin, H, W, c->w, c->b, c->cout, c->k, stride, pad, y);
    return y;
}

float *nn_linear_forward(ops_arena *a, const nn_linear *l, const float *x, int rows)
{
    float *y = ar_push(a, (size_t)rows * l->out);
    OPS_RUN(a, linear, x, rows, l->in, l->w, l->b, l->out, y);
    return y;
}

float *nn_group_norm_forward(ops_arena *a, const nn_norm *n, const float *x, int B, int HW, enum ops_act act)
{
    float *y = ar_push(a, (size_t)B * n->c * HW);
    OPS_RUN(a, group_norm, x, B, n->c, HW, n->groups, n->eps, n->g, n->b, act, y);
    return y;
}

float *nn_layer_norm_forward(ops_arena *a, const nn_norm *n, const float *x, int rows)
{
    float *y = ar_push(a, (size_t)rows * n->c);
    OPS_RUN(a, layer_norm, x, rows, n->c, n->eps, n->g, n->b, y);
    return y;
}

float *nn_resnet_forward(ops_arena *a, const nn_resnet *r, const float *x, int B, int H, int W,
                         const float *temb_silu)
{
    /* three maps deep: y, g (GN output, later the shortcut) and c (conv1 output, normalised in place) */
    size_t n = (size_t)B * r->cout * H * W, ng = (size_t)B * (r->cin > r->cout ? r->cin : r->cout) * H * W;
    float *y = ar_push(a, n);
    size_t mark = ar_mark(a);
    float *g = ar_push(a, ng), *c = ar_push(a, n);
    OPS_RUN(a, group_norm, x, B, r->cin, H * W, r->norm1.groups, r->norm1.eps, r->norm1.g, r->norm1.b, OPS_ACT_SILU,
            g);
    OPS_RUN(a, conv2d, g, B, r->cin, H, W, r->conv1.w, r->conv1.b, r->cout, 3, 1, PAD1, c);
    if (r->temb) {
        float *e = nn_linear_forward(a, &r->temb_proj, temb_silu, B);
        OPS_RUN(a, add_channel, c, B, r->cout, H * W, e);
    }
    OPS_RUN(a, group_norm, c, B, r->cout, H * W, r->norm2.groups, r->norm2.eps, r->norm2.g, r->norm2.b, OPS_ACT_SILU,
            c);
    OPS_RUN(a, conv2d, c, B, r->cout, H, W, r->conv2.w, r->conv2.b, r->cout, 3, 1, PAD1, y);
    const float *skip = x;
    if (r->cin != r->cout) {
        OPS_RUN(a, conv2d, x, B, r->cin, H, W, r->shortcut.w, r->shortcut.b, r->cout, 1, 1, PAD0, g);
        skip = g;
    }
    OPS_RUN(a, add, y, skip, n, y);
    ar_pop(a, mark);
    return y;
}

float *nn_settle(ops_arena *a, size_t slot, const float *h, size_t n)
{
    ar_pop(a, slot);
    float *y = ar_push(a, n);
    OPS_RUN(a, copy, y, h, n);
    return y;
}

int nn_check_finite(ops_arena *a, const float *x, size_t n, const char *net, const char *stage)
{
    if (a->dry) return 0;
    size_t bad = a->be->count_nonfinite(a->be, x, n);
    if (bad == OPS_COUNT_FAILED) return a->be->sync(a->be) ? err_wrap("%s: after %s: ", net, stage)
                                                           : err_set("%s: the backend failed after %s", net, stage);
    if (bad) return err_set("%s: %zu non-finite values (NaN/inf) after %s", net, bad, stage);
    return 0;
}
