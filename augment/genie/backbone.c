#include "augment/genie/backbone.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "src/net/blas.h"
#include "common/err.h"
#include "src/net/netio.h"
#include "src/net/transform.h"

struct backbone {
    network *net;
    aug_params aug;
    int layer, dim, spatial, max_batch;
    float *x, *tmp;
};

static int default_layer(const network *net)
{
    for (int i = net->n - 1; i > 0; i--)
        if (net->layers[i].type == CONNECTED || net->layers[i].type == CONVOLUTIONAL) return i - 1;
    return -1;
}

backbone *backbone_load(const char *cfg, const char *weights, int embed_layer, int max_batch)
{
    backbone *b = calloc(1, sizeof *b);
    if (!b) {
        err_set("backbone: out of memory");
        return NULL;
    }
    net_extras ex;
    if (!(b->net = netio_load(cfg, weights, 0, &ex))) goto fail;
    network *net = b->net;
    b->layer = embed_layer >= 0 ? embed_layer : default_layer(net);
    if (b->layer < 0 || b->layer >= net->n) {
        err_set("%s: embedding layer %d (the network has %d layers%s)", cfg, b->layer, net->n,
                embed_layer < 0 ? "; none before a connected or convolutional layer" : "");
        goto fail;
    }
    set_batch_network(net, max_batch);
    b->max_batch = max_batch;
    const layer *l = &net->layers[b->layer];
    b->dim = l->out_c;
    b->spatial = l->out_w * l->out_h;
    if (b->dim * b->spatial != l->outputs) {   /* not an image-shaped output: take it flat */
        b->dim = l->outputs;
        b->spatial = 1;
    }
    b->aug = netio_aug_params(net, &ex);
    b->aug.preset = AUG_EVAL;
    b->x = malloc(sizeof(float) * net->inputs * max_batch);
    b->tmp = malloc(sizeof(float) * 4 * (size_t)net->w * net->h);
    if (!b->x || !b->tmp) {
        err_set("backbone: out of memory");
        goto fail;
    }
    return b;
fail:
    backbone_free(b);
    return NULL;
}

void backbone_free(backbone *b)
{
    if (!b) return;
    if (b->net) free_network(b->net);
    free(b->x);
    free(b->tmp);
    free(b);
}

/* A network built on a device (GPU build, gpu_index >= 0) keeps its parameters and outputs there: the host copies
 * are stale until pulled. */
#ifdef GPU
#define ON_DEVICE(net) ((net)->gpu_index >= 0)
#define PARAM(l, f, dev) ((dev) ? (l)->f##_gpu : (l)->f)
#else
#define ON_DEVICE(net) 0
#define PARAM(l, f, dev) ((l)->f)
#endif

/* (pointer, floats) of each parameter array of a layer, on the device when dev; 0 for layers with none */
static int layer_params(const layer *l, int dev, float **p, size_t *n)
{
    int k = 0;
    if (l->dontsave) return 0;
    if (l->type == CONVOLUTIONAL || l->type == DECONVOLUTIONAL || l->type == CONNECTED) {
        size_t outs = l->type == CONNECTED ? (size_t)l->outputs : (size_t)l->n;
        p[k] = PARAM(l, weights, dev), n[k++] = (size_t)l->nweights;
        p[k] = PARAM(l, biases, dev), n[k++] = outs;
        if (l->batch_normalize) {
            p[k] = PARAM(l, scales, dev), n[k++] = outs;
            p[k] = PARAM(l, rolling_mean, dev), n[k++] = outs;
            p[k] = PARAM(l, rolling_variance, dev), n[k++] = outs;
        }
    } else if (l->type == BATCHNORM) {
        p[k] = PARAM(l, scales, dev), n[k++] = (size_t)l->c;
        p[k] = PARAM(l, rolling_mean, dev), n[k++] = (size_t)l->c;
        p[k] = PARAM(l, rolling_variance, dev), n[k++] = (size_t)l->c;
    }
    return k;
}

int backbone_copy_params(backbone *b, const struct network *src) { return backbone_net_copy(b->net, src); }

struct network *backbone_net_new(const char *cfg)
{
    net_extras ex;
    return netio_load(cfg, NULL, 0, &ex);
}

void backbone_net_free(struct network *net)
{
    if (net) free_network(net);
}

blas_pool *backbone_pool_begin(int threads)
{
    blas_pool *p = blas_pool_create(threads);
    blas_pool_use(p);
    return p;
}

void backbone_pool_end(blas_pool *pool)
{
    blas_pool_use(NULL);
    blas_pool_free(pool);
}

int backbone_net_copy(struct network *dst, const struct network *src)
{
    if (src->n != dst->n) return err_set("backbone: the trainer's network has %d layers, f_theta %d", src->n, dst->n);
    int sdev = ON_DEVICE(src), ddev = ON_DEVICE(dst);
#ifdef GPU
    /* the per-thread stream below is the current device's */
    if ((sdev || ddev) && cudaSetDevice(ddev ? dst->gpu_index : src->gpu_index) != cudaSuccess)
        return err_set("backbone: device %d: %s", ddev ? dst->gpu_index : src->gpu_index,
                       cudaGetErrorString(cudaGetLastError()));
#endif
    for (int i = 0; i < dst->n; i++) {
        float *ps[5], *pd[5];
        size_t ns[5], nd[5];
        int ks = layer_params(&src->layers[i], sdev, ps, ns), kd = layer_params(&dst->layers[i], ddev, pd, nd);
        if (src->layers[i].type != dst->layers[i].type || ks != kd)
            return err_set("backbone: layer %d differs from the trainer's", i);
        for (int k = 0; k < kd; k++) {
            if (ns[k] != nd[k]) return err_set("backbone: layer %d has %zu parameters, the trainer's %zu", i, nd[k], ns[k]);
#ifdef GPU
            /* in the calling thread's stream (darknet's, per thread): after the trainer's last update when the
             * trainer calls, before this thread's next f_theta when the module does */
            if (sdev || ddev) {
                if (cudaMemcpyAsync(pd[k], ps[k], nd[k] * sizeof(float), cudaMemcpyDefault, cudaStreamPerThread) !=
                    cudaSuccess)
                    return err_set("backbone: layer %d: %s", i, cudaGetErrorString(cudaGetLastError()));
                continue;
            }
#endif
            memcpy(pd[k], ps[k], nd[k] * sizeof(float));
        }
    }
#ifdef GPU
    if ((sdev || ddev) && cudaStreamSynchronize(cudaStreamPerThread) != cudaSuccess)
        return err_set("backbone: parameter copy: %s", cudaGetErrorString(cudaGetLastError()));
#endif
    return 0;
}

size_t backbone_net_floats(const struct network *net)
{
    size_t total = 0;
    for (int i = 0; i < net->n; i++) {
        float *p[5];
        size_t n[5];
        for (int k = 0, kn = layer_params(&net->layers[i], 0, p, n); k < kn; k++) total += n[k];
    }
    return total;
}

/* the parameters to (pack) or from (unpack) the flat array */
static int flat_copy(struct network *net, float *flat, size_t total, int pack)
{
    if (total != backbone_net_floats(net))
        return err_set("backbone: a snapshot of %zu parameters for a network of %zu", total, backbone_net_floats(net));
    int dev = ON_DEVICE(net);
    size_t o = 0;
    for (int i = 0; i < net->n; i++) {
        float *p[5];
        size_t n[5];
        for (int k = 0, kn = layer_params(&net->layers[i], dev, p, n); k < kn; o += n[k], k++) {
#ifdef GPU
            if (dev) {
                if (pack) cuda_pull_array(p[k], flat + o, n[k]);
                else cuda_push_array(p[k], flat + o, n[k]);
                continue;
            }
#endif
            if (pack) memcpy(flat + o, p[k], n[k] * sizeof(float));
            else memcpy(p[k], flat + o, n[k] * sizeof(float));
        }
    }
    return 0;
}

int backbone_net_pack(const struct network *net, float *out, size_t n) { return flat_copy((network *)net, out, n, 1); }

int backbone_net_unpack(struct network *net, const float *in, size_t n) { return flat_copy(net, (float *)in, n, 0); }

int backbone_dim(const backbone *b) { return b->dim; }
int backbone_max_batch(const backbone *b) { return b->max_batch; }

int backbone_embed(backbone *b, const img_u8 *imgs, int n, float *out)
{
    if (n < 1 || n > b->max_batch) return err_set("backbone: %d images (1..%d per call)", n, b->max_batch);
    network *net = b->net;
    memset(b->x, 0, sizeof(float) * net->inputs * b->max_batch);
    for (int i = 0; i < n; i++) transform_sample(&b->aug, &imgs[i], NULL, b->x + (size_t)i * net->inputs, b->tmp);
    network_predict(net, b->x);
    const layer *l = &net->layers[b->layer];
#ifdef GPU
    /* the GPU forward pass brings back the last layer's output only */
    if (ON_DEVICE(net)) cuda_pull_array(l->output_gpu, l->output, (size_t)l->outputs * net->batch);
#endif
    for (int i = 0; i < n; i++) {
        const float *src = l->output + (size_t)i * l->outputs;
        float *e = out + (size_t)i * b->dim;
        double ss = 0;
        for (int c = 0; c < b->dim; c++) {
            double s = 0;
            for (int p = 0; p < b->spatial; p++) s += src[(size_t)c * b->spatial + p];
            e[c] = (float)(s / b->spatial);
            ss += (double)e[c] * e[c];
        }
        if (!isfinite(ss)) return err_set("backbone: non-finite embedding (layer %d)", b->layer);
        float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (int c = 0; c < b->dim; c++) e[c] *= inv;
    }
    return 0;
}
