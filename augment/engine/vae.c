#include "augment/engine/vae.h"
#include "common/err.h"
#include "augment/engine/nn.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define VAE_EPS 1e-6f       /* every GroupNorm of the autoencoder */

/* Single-head self-attention over the pixels of the mid block, with GroupNorm in front and the residual added. */
typedef struct {
    nn_norm norm;
    nn_linear q, k, v, out;
} vae_attention;

typedef struct {
    nn_resnet r0, r1;
    vae_attention attn;
} vae_mid;

typedef struct {
    nn_resnet res[SD_MAX_BLOCKS + 1];
    int has_sample;
    nn_conv sample;         /* the down- or upsampler's conv */
} vae_block;

struct vae_model {
    vae_config cfg;
    int parts, max_batch, max_h, max_w;
    nn_params P;
    ops_arena ar;
    /* encoder */
    nn_conv enc_in, enc_out, quant;
    vae_block down[SD_MAX_BLOCKS];
    vae_mid enc_mid;
    nn_norm enc_norm;
    /* decoder */
    nn_conv post_quant, dec_in, dec_out;
    vae_block up[SD_MAX_BLOCKS];
    vae_mid dec_mid;
    nn_norm dec_norm;
};

static const int PAD1[4] = {1, 1, 1, 1}, PAD0[4] = {0, 0, 0, 0}, PAD_BR[4] = {0, 0, 1, 1};

static int attention_load(nn_params *P, vae_attention *a, int C, int groups, const char *pre)
{
    return nn_norm_load(P, &a->norm, C, groups, VAE_EPS, "%s.group_norm", pre) ||
           nn_linear_load(P, &a->q, C, C, 1, "%s.to_q", pre) || nn_linear_load(P, &a->k, C, C, 1, "%s.to_k", pre) ||
           nn_linear_load(P, &a->v, C, C, 1, "%s.to_v", pre) ||
           nn_linear_load(P, &a->out, C, C, 1, "%s.to_out.0", pre) ? -1 : 0;
}

static int mid_load(nn_params *P, vae_mid *m, int C, int groups, const char *pre)
{
    char name[256];
    snprintf(name, sizeof name, "%s.resnets.0", pre);
    if (nn_resnet_load(P, &m->r0, C, C, 0, groups, VAE_EPS, name)) return -1;
    snprintf(name, sizeof name, "%s.attentions.0", pre);
    if (attention_load(P, &m->attn, C, groups, name)) return -1;
    snprintf(name, sizeof name, "%s.resnets.1", pre);
    return nn_resnet_load(P, &m->r1, C, C, 0, groups, VAE_EPS, name);
}

/* x[B,C,HW] -> x + to_out(softmax(q k^T / sqrt(C)) v) over the HW pixels of GN(x) */
static float *attention_forward(ops_arena *a, const vae_attention *at, const float *x, int B, int HW)
{
    int C = at->norm.c;
    size_t n = (size_t)B * C * HW;
    float *y = ar_push(a, n);
    size_t mark = ar_mark(a);
    float *h = nn_group_norm_forward(a, &at->norm, x, B, HW, OPS_ACT_NONE);
    float *t = ar_push(a, n);
    OPS_RUN(a, to_tokens, h, B, C, HW, t);
    int rows = B * HW;
    float *q = nn_linear_forward(a, &at->q, t, rows), *k = nn_linear_forward(a, &at->k, t, rows);
    float *v = nn_linear_forward(a, &at->v, t, rows);
    OPS_RUN(a, attention, q, C, k, C, v, C, B, HW, HW, 1, C, 1.0f / sqrtf((float)C), 0, t);
    float *o = nn_linear_forward(a, &at->out, t, rows);
    OPS_RUN(a, from_tokens, o, B, C, HW, h);
    OPS_RUN(a, add, h, x, n, y);
    ar_pop(a, mark);
    return y;
}

static float *mid_forward(ops_arena *a, const vae_mid *m, const float *x, int B, int H, int W)
{
    float *y = ar_push(a, (size_t)B * m->r0.cout * H * W);
    size_t inner = ar_mark(a);
    float *h = nn_resnet_forward(a, &m->r0, x, B, H, W, NULL);
    h = attention_forward(a, &m->attn, h, B, H * W);
    h = nn_resnet_forward(a, &m->r1, h, B, H, W, NULL);
    OPS_RUN(a, copy, y, h, (size_t)B * m->r0.cout * H * W);
    ar_pop(a, inner);
    return y;
}

static int encode_run(vae_model *m, const float *img, int B, int H, int W, float *mean, float *logvar)
{
    ops_arena *a = &m->ar;
    const vae_config *c = &m->cfg;
    size_t base = ar_mark(a);
    float *h = nn_conv_forward(a, &m->enc_in, img, B, H, W, 1, PAD1);
    int C = c->block_out_channels[0];
    for (int i = 0; i < c->n_blocks; i++) {
        const vae_block *blk = &m->down[i];
        for (int j = 0; j < c->layers_per_block; j++) {
            /* each layer's output settles at the bottom of the arena, dropping its input and temporaries */
            h = nn_resnet_forward(a, &blk->res[j], h, B, H, W, NULL);
            C = blk->res[j].cout;
            h = nn_settle(a, base, h, (size_t)B * C * H * W);
        }
        if (blk->has_sample) {
            h = nn_conv_forward(a, &blk->sample, h, B, H, W, 2, PAD_BR);
            H /= 2;
            W /= 2;
            h = nn_settle(a, base, h, (size_t)B * C * H * W);
        }
        if (nn_check_finite(a, h, (size_t)B * C * H * W, "vae encoder", "a down block")) return -1;
    }
    h = mid_forward(a, &m->enc_mid, h, B, H, W);
    if (nn_check_finite(a, h, (size_t)B * C * H * W, "vae encoder", "mid block")) return -1;
    h = nn_group_norm_forward(a, &m->enc_norm, h, B, H * W, OPS_ACT_SILU);
    h = nn_conv_forward(a, &m->enc_out, h, B, H, W, 1, PAD1);
    h = nn_conv_forward(a, &m->quant, h, B, H, W, 1, PAD0);
    int L = c->latent_channels;
    size_t hw = (size_t)H * W, n = (size_t)L * hw;
    if (nn_check_finite(a, h, 2 * n * B, "vae encoder", "quant_conv")) return -1;
    for (int b = 0; !a->dry && b < B; b++) {
        OPS_RUN(a, copy, mean + b * n, h + 2 * n * b, n);
        OPS_RUN(a, clamp, h + 2 * n * b + n, -30.0f, 20.0f, n, logvar + b * n);
    }
    return 0;
}

static int decode_run(vae_model *m, const float *z, int B, int H, int W, float *img)
{
    ops_arena *a = &m->ar;
    const vae_config *c = &m->cfg;
    size_t base = ar_mark(a);
    float *h = nn_conv_forward(a, &m->post_quant, z, B, H, W, 1, PAD0);
    h = nn_conv_forward(a, &m->dec_in, h, B, H, W, 1, PAD1);
    int C = m->dec_in.cout;
    h = nn_settle(a, base, h, (size_t)B * C * H * W);
    h = mid_forward(a, &m->dec_mid, h, B, H, W);
    if (nn_check_finite(a, h, (size_t)B * C * H * W, "vae decoder", "mid block")) return -1;
    h = nn_settle(a, base, h, (size_t)B * C * H * W);
    for (int i = 0; i < c->n_blocks; i++) {
        const vae_block *blk = &m->up[i];
        for (int j = 0; j < c->layers_per_block + 1; j++) {
            h = nn_resnet_forward(a, &blk->res[j], h, B, H, W, NULL);
            C = blk->res[j].cout;
            h = nn_settle(a, base, h, (size_t)B * C * H * W);
        }
        if (blk->has_sample) {
            float *u = ar_push(a, (size_t)B * C * H * W * 4);
            OPS_RUN(a, upsample2x, h, B, C, H, W, u);
            H *= 2;
            W *= 2;
            h = nn_conv_forward(a, &blk->sample, u, B, H, W, 1, PAD1);
            h = nn_settle(a, base, h, (size_t)B * C * H * W);
        }
        if (nn_check_finite(a, h, (size_t)B * C * H * W, "vae decoder", "an up block")) return -1;
    }
    h = nn_group_norm_forward(a, &m->dec_norm, h, B, H * W, OPS_ACT_SILU);
    h = nn_conv_forward(a, &m->dec_out, h, B, H, W, 1, PAD1);
    size_t n = (size_t)B * c->out_channels * H * W;
    if (nn_check_finite(a, h, n, "vae decoder", "conv_out")) return -1;
    OPS_RUN(a, copy, img, h, n);
    return 0;
}

int vae_factor(const vae_model *m) { return 1 << (m->cfg.n_blocks - 1); }

/* Dry run first: refuses sizes whose work memory exceeds what was reserved at load. */
static int check_arena(vae_model *m, const char *what, int B, int H, int W)
{
    if (m->ar.peak > m->ar.cap)
        return err_set("vae %s: batch %d at %dx%d needs %zu MB of work memory; loaded for batch %d at %dx%d (%zu MB)",
                       what, B, H, W, m->ar.peak * 4 >> 20, m->max_batch, m->max_h, m->max_w, m->ar.cap * 4 >> 20);
    return 0;
}

int vae_encode(vae_model *m, const float *img, int B, int H, int W, float *mean, float *logvar)
{
    int f = vae_factor(m);
    if (!(m->parts & VAE_ENCODER)) return err_set("vae: encoder not loaded");
    if ((size_t)(H / f) * (W / f) > OPS_MAX_KEYS) return err_set("vae encode: %dx%d images are too large", H, W);
    if (B < 1 || H < f || W < f || H % f || W % f)
        return err_set("vae encode: batch %d of %dx%d images (sizes must be positive multiples of %d)", B, H, W, f);
    ar_begin(&m->ar, 1);
    encode_run(m, img, B, H, W, mean, logvar);
    if (check_arena(m, "encode", B, H, W)) return -1;
    ar_begin(&m->ar, 0);
    return encode_run(m, img, B, H, W, mean, logvar);
}

int vae_decode(vae_model *m, const float *z, int B, int h, int w, float *img)
{
    int f = vae_factor(m);
    if (!(m->parts & VAE_DECODER)) return err_set("vae: decoder not loaded");
    if (B < 1 || h < 1 || w < 1 || (size_t)h * w > OPS_MAX_KEYS)
        return err_set("vae decode: batch %d of %dx%d latents", B, h, w);
    ar_begin(&m->ar, 1);
    decode_run(m, z, B, h, w, img);
    if (check_arena(m, "decode", B, h * f, w * f)) return -1;
    ar_begin(&m->ar, 0);
    return decode_run(m, z, B, h, w, img);
}

void vae_free(vae_model *m)
{
    if (!m) return;
    ar_free(&m->ar);
    nn_params_free(&m->P);
    free(m);
}

static int encoder_load(vae_model *m)
{
    const vae_config *c = &m->cfg;
    nn_params *P = &m->P;
    int G = c->norm_num_groups, prev = c->block_out_channels[0];
    if (nn_conv_load(P, &m->enc_in, c->in_channels, prev, 3, "encoder.conv_in")) return -1;
    for (int i = 0; i < c->n_blocks; i++) {
        int out = c->block_out_channels[i];
        for (int j = 0; j < c->layers_per_block; j++) {
            char pre[128];
            snprintf(pre, sizeof pre, "encoder.down_blocks.%d.resnets.%d", i, j);
            if (nn_resnet_load(P, &m->down[i].res[j], j ? out : prev, out, 0, G, VAE_EPS, pre)) return -1;
        }
        m->down[i].has_sample = i < c->n_blocks - 1;
        if (m->down[i].has_sample &&
            nn_conv_load(P, &m->down[i].sample, out, out, 3, "encoder.down_blocks.%d.downsamplers.0.conv", i))
            return -1;
        prev = out;
    }
    int L = c->latent_channels;
    return mid_load(P, &m->enc_mid, prev, G, "encoder.mid_block") ||
           nn_norm_load(P, &m->enc_norm, prev, G, VAE_EPS, "encoder.conv_norm_out") ||
           nn_conv_load(P, &m->enc_out, prev, 2 * L, 3, "encoder.conv_out") ||
           nn_conv_load(P, &m->quant, 2 * L, 2 * L, 1, "quant_conv") ? -1 : 0;
}

static int decoder_load(vae_model *m)
{
    const vae_config *c = &m->cfg;
    nn_params *P = &m->P;
    int G = c->norm_num_groups, L = c->latent_channels, n = c->n_blocks;
    int prev = c->block_out_channels[n - 1];
    if (nn_conv_load(P, &m->post_quant, L, L, 1, "post_quant_conv") ||
        nn_conv_load(P, &m->dec_in, L, prev, 3, "decoder.conv_in") ||
        mid_load(P, &m->dec_mid, prev, G, "decoder.mid_block"))
        return -1;
    for (int i = 0; i < n; i++) {
        int out = c->block_out_channels[n - 1 - i];
        for (int j = 0; j < c->layers_per_block + 1; j++) {
            char pre[128];
            snprintf(pre, sizeof pre, "decoder.up_blocks.%d.resnets.%d", i, j);
            if (nn_resnet_load(P, &m->up[i].res[j], j ? out : prev, out, 0, G, VAE_EPS, pre)) return -1;
        }
        m->up[i].has_sample = i < n - 1;
        if (m->up[i].has_sample &&
            nn_conv_load(P, &m->up[i].sample, out, out, 3, "decoder.up_blocks.%d.upsamplers.0.conv", i))
            return -1;
        prev = out;
    }
    return nn_norm_load(P, &m->dec_norm, prev, G, VAE_EPS, "decoder.conv_norm_out") ||
           nn_conv_load(P, &m->dec_out, prev, c->out_channels, 3, "decoder.conv_out") ? -1 : 0;
}

vae_model *vae_load(const vae_config *cfg, weights *w, ops_backend *be, int parts, int max_batch, int max_h,
                    int max_w)
{
    if (cfg->n_blocks < 1 || cfg->n_blocks > SD_MAX_BLOCKS || cfg->layers_per_block < 1 ||
        cfg->layers_per_block > SD_MAX_BLOCKS || cfg->latent_channels < 1 || cfg->in_channels < 1 ||
        cfg->out_channels < 1 || cfg->norm_num_groups < 1 || !(parts & (VAE_ENCODER | VAE_DECODER))) {
        err_set("vae: unsupported config (%d blocks, %d layers per block, latent %d, groups %d)", cfg->n_blocks,
                cfg->layers_per_block, cfg->latent_channels, cfg->norm_num_groups);
        return NULL;
    }
    int f = 1 << (cfg->n_blocks - 1);
    if (max_batch < 1 || max_h < f || max_w < f || max_h % f || max_w % f) {
        err_set("vae: maximum size batch %d at %dx%d is not a positive multiple of %d", max_batch, max_h, max_w, f);
        return NULL;
    }
    if ((size_t)(max_h / f) * (max_w / f) > OPS_MAX_KEYS) {
        err_set("vae: %dx%d images are beyond the mid-block attention's %d positions", max_h, max_w, OPS_MAX_KEYS);
        return NULL;
    }
    vae_model *m = calloc(1, sizeof *m);
    if (!m) {
        err_set("vae: out of memory");
        return NULL;
    }
    *m = (vae_model){.cfg = *cfg, .parts = parts, .max_batch = max_batch, .max_h = max_h, .max_w = max_w,
                     .P = {.be = be, .w = w}, .ar = {.be = be}};
    if (((parts & VAE_ENCODER) && encoder_load(m)) || ((parts & VAE_DECODER) && decoder_load(m))) {
        err_wrap("vae: ");
        vae_free(m);
        return NULL;
    }
    size_t need = 0;
    if (parts & VAE_ENCODER) {
        ar_begin(&m->ar, 1);
        encode_run(m, NULL, max_batch, max_h, max_w, NULL, NULL);
        need = m->ar.peak;
    }
    if (parts & VAE_DECODER) {
        ar_begin(&m->ar, 1);
        decode_run(m, NULL, max_batch, max_h / f, max_w / f, NULL);
        if (m->ar.peak > need) need = m->ar.peak;
    }
    if (ar_reserve(&m->ar, need)) {
        err_wrap("vae: work memory: ");
        vae_free(m);
        return NULL;
    }
    return m;
}
