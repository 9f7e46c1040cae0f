#include "augment/engine/unet.h"
#include "common/err.h"
#include "augment/engine/nn.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_LAYERS (SD_MAX_BLOCKS + 1)
#define MAX_TLAYERS 16
#define GN_EPS_TRANSFORMER 1e-6f    /* Transformer2DModel's GroupNorm, whatever the UNet's norm_eps */
#define LN_EPS 1e-5f                /* BasicTransformerBlock's LayerNorms */

typedef struct {
    nn_linear q, k, v, out;
} attention;

/* BasicTransformerBlock: self-attention, cross-attention, GEGLU feed-forward, each pre-LN and residual. */
typedef struct {
    nn_norm norm1, norm2, norm3;
    attention attn1, attn2;
    nn_linear ff_in, ff_out;
} tblock;

/* Transformer2DModel: GroupNorm, proj_in, blocks over the HW tokens, proj_out, plus the input. */
typedef struct {
    int C, inner, heads, nblocks;
    nn_norm norm;
    nn_linear proj_in, proj_out;    /* 1x1 convs [inner,C,1,1] load as the same matrices */
    tblock blk[MAX_TLAYERS];
} transformer;

typedef struct {
    int nres, has_attn, has_sample;
    nn_resnet res[MAX_LAYERS];
    transformer attn[MAX_LAYERS];
    nn_conv sample;
} ublock;

struct unet_model {
    unet_config cfg;
    int max_batch, max_h, max_w, max_ctx, temb_dim;
    nn_params P;
    ops_arena ar;
    nn_linear time1, time2;
    nn_linear cond_proj;        /* time_cond_proj_dim > 0: timestep_cond -> the sinusoid's width, no bias */
    nn_conv conv_in, conv_out;
    ublock down[SD_MAX_BLOCKS], up[SD_MAX_BLOCKS];
    nn_resnet mid_res0, mid_res1;
    transformer mid_attn;
    nn_norm norm_out;
    int checks;                 /* finite checks after each block (unet_set_checks) */
};

static const int PAD1[4] = {1, 1, 1, 1};

/* ---- forward ---- */

static void attention_forward(ops_arena *a, const attention *at, const float *x, int rows, const float *kv_src,
                              int B, int Tq, int Tk, int heads, float *x_acc)
{
    size_t mark = ar_mark(a);
    int inner = at->q.out, dh = inner / heads;
    float *q = nn_linear_forward(a, &at->q, x, rows);
    float *k = nn_linear_forward(a, &at->k, kv_src, B * Tk), *v = nn_linear_forward(a, &at->v, kv_src, B * Tk);
    float *o = ar_push(a, (size_t)rows * inner);
    OPS_RUN(a, attention, q, inner, k, inner, v, inner, B, Tq, Tk, heads, dh, 1.0f / sqrtf((float)dh), 0, o);
    float *y = nn_linear_forward(a, &at->out, o, rows);
    OPS_RUN(a, add, x_acc, y, (size_t)rows * inner, x_acc);
    ar_pop(a, mark);
}

static void tblock_forward(ops_arena *a, const tblock *t, float *x, int B, int T, const float *ctx, int L, int heads)
{
    size_t mark = ar_mark(a);
    int rows = B * T, inner = t->norm1.c;
    float *h = nn_layer_norm_forward(a, &t->norm1, x, rows);
    attention_forward(a, &t->attn1, h, rows, h, B, T, T, heads, x);
    ar_pop(a, mark);
    h = nn_layer_norm_forward(a, &t->norm2, x, rows);
    attention_forward(a, &t->attn2, h, rows, ctx, B, T, L, heads, x);
    ar_pop(a, mark);
    h = nn_layer_norm_forward(a, &t->norm3, x, rows);
    float *p = nn_linear_forward(a, &t->ff_in, h, rows);
    int ff = t->ff_in.out / 2;
    float *g = ar_push(a, (size_t)rows * ff);
    OPS_RUN(a, geglu, p, rows, ff, g);
    float *y = nn_linear_forward(a, &t->ff_out, g, rows);
    OPS_RUN(a, add, x, y, (size_t)rows * inner, x);
    ar_pop(a, mark);
}

/* returns a new buffer [B, C, H, W] */
static float *transformer_forward(ops_arena *a, const transformer *tr, const float *x, int B, int HW, const float *ctx,
                                  int L)
{
    size_t n = (size_t)B * tr->C * HW;
    float *y = ar_push(a, n);
    size_t mark = ar_mark(a);
    float *h = nn_group_norm_forward(a, &tr->norm, x, B, HW, OPS_ACT_NONE);
    float *tok = ar_push(a, n);
    OPS_RUN(a, to_tokens, h, B, tr->C, HW, tok);
    float *t = nn_linear_forward(a, &tr->proj_in, tok, B * HW);
    for (int i = 0; i < tr->nblocks; i++) tblock_forward(a, &tr->blk[i], t, B, HW, ctx, L, tr->heads);
    float *o = nn_linear_forward(a, &tr->proj_out, t, B * HW);
    OPS_RUN(a, from_tokens, o, B, tr->C, HW, h);
    OPS_RUN(a, add, h, x, n, y);
    ar_pop(a, mark);
    return y;
}

/* A stack of feature maps at the bottom of the arena: the down path's skip connections, with the working map
 * always on top, so the arena stays compact while blocks run above it. */
typedef struct {
    float *p;
    size_t mark;
    int C, H, W;
} map;

#define MAX_SKIPS (1 + SD_MAX_BLOCKS * (MAX_LAYERS + 1))

/* Settles h on top of the skip stack and records it as the next skip connection; *top moves past it. */
static float *push_skip(ops_arena *a, map *skips, int *ns, size_t *top, const float *h, int B, int C, int H, int W)
{
    float *p = nn_settle(a, *top, h, (size_t)B * C * H * W);
    skips[(*ns)++] = (map){p, *top, C, H, W};
    *top = ar_mark(a);
    return p;
}

static int unet_run(unet_model *m, const float *x, const float *t, const float *tcond, const float *ctx, int B,
                    int H, int W, int L, float *out)
{
    ops_arena *a = &m->ar;
    const unet_config *c = &m->cfg;
    int n = c->n_blocks;
    char stage[64];

    /* time embedding: SiLU(linear_2(SiLU(linear_1(sinusoid(t) [+ cond_proj(tcond)])))), the SiLU'd form every
     * ResNet projects */
    float *temb = ar_push(a, (size_t)B * m->temb_dim);
    size_t mark = ar_mark(a);
    const int C0 = c->block_out_channels[0];
    float *sin_emb = ar_push(a, (size_t)B * C0);
    OPS_RUN(a, timestep_embedding, t, B, C0, c->flip_sin_to_cos, c->freq_shift, sin_emb);
    /* a dry run counts the projection whether or not the call will have a condition */
    if (c->time_cond_proj_dim && (tcond || a->dry)) {
        float *p = nn_linear_forward(a, &m->cond_proj, tcond, B);
        OPS_RUN(a, add, sin_emb, p, (size_t)B * C0, sin_emb);
    }
    float *e = nn_linear_forward(a, &m->time1, sin_emb, B);
    OPS_RUN(a, act, OPS_ACT_SILU, e, (size_t)B * m->temb_dim, e);
    e = nn_linear_forward(a, &m->time2, e, B);
    OPS_RUN(a, act, OPS_ACT_SILU, e, (size_t)B * m->temb_dim, temb);
    ar_pop(a, mark);

    map skips[MAX_SKIPS];
    int ns = 0;
    size_t top = ar_mark(a);
    float *h = nn_conv_forward(a, &m->conv_in, x, B, H, W, 1, PAD1);
    int C = m->conv_in.cout;
    h = push_skip(a, skips, &ns, &top, h, B, C, H, W);
    for (int i = 0; i < n; i++) {
        const ublock *blk = &m->down[i];
        for (int j = 0; j < blk->nres; j++) {
            h = nn_resnet_forward(a, &blk->res[j], h, B, H, W, temb);
            C = blk->res[j].cout;
            if (blk->has_attn) h = transformer_forward(a, &blk->attn[j], h, B, H * W, ctx, L);
            h = push_skip(a, skips, &ns, &top, h, B, C, H, W);
        }
        if (blk->has_sample) {
            h = nn_conv_forward(a, &blk->sample, h, B, H, W, 2, PAD1);
            H /= 2;
            W /= 2;
            h = push_skip(a, skips, &ns, &top, h, B, C, H, W);
        }
        snprintf(stage, sizeof stage, "down block %d", i);
        if (m->checks && nn_check_finite(a, h, (size_t)B * C * H * W, "unet", stage)) return -1;
    }
    h = nn_resnet_forward(a, &m->mid_res0, h, B, H, W, temb);
    h = transformer_forward(a, &m->mid_attn, h, B, H * W, ctx, L);
    h = nn_resnet_forward(a, &m->mid_res1, h, B, H, W, temb);
    size_t hmark = top;
    h = nn_settle(a, hmark, h, (size_t)B * C * H * W);
    if (m->checks && nn_check_finite(a, h, (size_t)B * C * H * W, "unet", "mid block")) return -1;

    for (int i = 0; i < n; i++) {
        const ublock *blk = &m->up[i];
        for (int j = 0; j < blk->nres; j++) {
            map s = skips[--ns];
            float *cat = ar_push(a, (size_t)B * (C + s.C) * H * W);
            OPS_RUN(a, concat, h, C, s.p, s.C, B, H * W, cat);
            const nn_resnet *r = &blk->res[j];
            h = nn_resnet_forward(a, r, cat, B, H, W, temb);
            C = r->cout;
            if (blk->has_attn) h = transformer_forward(a, &blk->attn[j], h, B, H * W, ctx, L);
            /* the consumed skip's place becomes the working map's */
            hmark = s.mark;
            h = nn_settle(a, hmark, h, (size_t)B * C * H * W);
        }
        if (blk->has_sample) {
            float *u = ar_push(a, (size_t)B * C * H * W * 4);
            OPS_RUN(a, upsample2x, h, B, C, H, W, u);
            H *= 2;
            W *= 2;
            float *y = nn_conv_forward(a, &blk->sample, u, B, H, W, 1, PAD1);
            h = nn_settle(a, hmark, y, (size_t)B * C * H * W);
        }
        snprintf(stage, sizeof stage, "up block %d", i);
        if (m->checks && nn_check_finite(a, h, (size_t)B * C * H * W, "unet", stage)) return -1;
    }
    h = nn_group_norm_forward(a, &m->norm_out, h, B, H * W, OPS_ACT_SILU);
    h = nn_conv_forward(a, &m->conv_out, h, B, H, W, 1, PAD1);
    size_t nout = (size_t)B * c->out_channels * H * W;
    if (m->checks && nn_check_finite(a, h, nout, "unet", "conv_out")) return -1;
    OPS_RUN(a, copy, out, h, nout);
    return 0;
}

int unet_factor(const unet_model *m) { return 1 << (m->cfg.n_blocks - 1); }

int unet_forward(unet_model *m, const float *x, const float *t, const float *tcond, const float *ctx, int B, int h,
                 int w, int L, float *out)
{
    int f = unet_factor(m);
    if (B < 1 || h < f || w < f || h % f || w % f || L < 1 || (size_t)h * w > OPS_MAX_KEYS || L > OPS_MAX_KEYS)
        return err_set("unet: batch %d of %dx%d latents with %d context tokens (sizes must be positive multiples "
                       "of %d)", B, h, w, L, f);
    ar_begin(&m->ar, 1);
    unet_run(m, x, t, tcond, ctx, B, h, w, L, out);
    if (m->ar.peak > m->ar.cap)
        return err_set("unet: batch %d at %dx%d with %d context tokens needs %zu MB of work memory; loaded for "
                       "batch %d at %dx%d with %d tokens (%zu MB)", B, h, w, L, m->ar.peak * 4 >> 20, m->max_batch,
                       m->max_h, m->max_w, m->max_ctx, m->ar.cap * 4 >> 20);
    ar_begin(&m->ar, 0);
    return unet_run(m, x, t, tcond, ctx, B, h, w, L, out);
}

void unet_set_checks(unet_model *m, int on) { m->checks = on; }

void unet_free(unet_model *m)
{
    if (!m) return;
    ar_free(&m->ar);
    nn_params_free(&m->P);
    free(m);
}

/* ---- load ---- */

static int attention_load(nn_params *P, attention *at, int inner, int kv_dim, const char *pre)
{
    return nn_linear_load(P, &at->q, inner, inner, 0, "%s.to_q", pre) ||
           nn_linear_load(P, &at->k, kv_dim, inner, 0, "%s.to_k", pre) ||
           nn_linear_load(P, &at->v, kv_dim, inner, 0, "%s.to_v", pre) ||
           nn_linear_load(P, &at->out, inner, inner, 1, "%s.to_out.0", pre) ? -1 : 0;
}

static int transformer_load(unet_model *m, transformer *tr, int C, int heads, const char *pre)
{
    const unet_config *c = &m->cfg;
    nn_params *P = &m->P;
    if (heads < 1 || C % heads) return err_set("%s: %d channels do not split into %d heads", pre, C, heads);
    tr->C = C;
    tr->heads = heads;
    tr->inner = C;              /* heads * (C / heads) */
    tr->nblocks = c->transformer_layers_per_block;
    if (nn_norm_load(P, &tr->norm, C, c->norm_num_groups, GN_EPS_TRANSFORMER, "%s.norm", pre) ||
        nn_linear_load(P, &tr->proj_in, C, tr->inner, 1, "%s.proj_in", pre) ||
        nn_linear_load(P, &tr->proj_out, tr->inner, C, 1, "%s.proj_out", pre))
        return -1;
    for (int k = 0; k < tr->nblocks; k++) {
        tblock *b = &tr->blk[k];
        char bp[256];
        snprintf(bp, sizeof bp, "%s.transformer_blocks.%d", pre, k);
        int d = tr->inner;
        if (nn_norm_load(P, &b->norm1, d, 0, LN_EPS, "%s.norm1", bp) ||
            nn_norm_load(P, &b->norm2, d, 0, LN_EPS, "%s.norm2", bp) ||
            nn_norm_load(P, &b->norm3, d, 0, LN_EPS, "%s.norm3", bp))
            return -1;
        char ap[300];
        snprintf(ap, sizeof ap, "%s.attn1", bp);
        if (attention_load(P, &b->attn1, d, d, ap)) return -1;
        snprintf(ap, sizeof ap, "%s.attn2", bp);
        if (attention_load(P, &b->attn2, d, c->cross_attention_dim, ap) ||
            nn_linear_load(P, &b->ff_in, d, 8 * d, 1, "%s.ff.net.0.proj", bp) ||
            nn_linear_load(P, &b->ff_out, 4 * d, d, 1, "%s.ff.net.2", bp))
            return -1;
    }
    return 0;
}

static int block_load(unet_model *m, ublock *b, const char *kind, int i, int cross, int nres, const int *cin,
                      const int *cout, int heads)
{
    const unet_config *c = &m->cfg;
    b->nres = nres;
    b->has_attn = cross;
    for (int j = 0; j < nres; j++) {
        char pre[128];
        snprintf(pre, sizeof pre, "%s_blocks.%d.resnets.%d", kind, i, j);
        if (nn_resnet_load(&m->P, &b->res[j], cin[j], cout[j], m->temb_dim, c->norm_num_groups, c->norm_eps, pre))
            return -1;
        snprintf(pre, sizeof pre, "%s_blocks.%d.attentions.%d", kind, i, j);
        if (cross && transformer_load(m, &b->attn[j], cout[j], heads, pre)) return -1;
    }
    return 0;
}

static int unet_build(unet_model *m)
{
    const unet_config *c = &m->cfg;
    nn_params *P = &m->P;
    int n = c->n_blocks, C0 = c->block_out_channels[0], L = c->layers_per_block;
    if (nn_linear_load(P, &m->time1, C0, m->temb_dim, 1, "time_embedding.linear_1") ||
        nn_linear_load(P, &m->time2, m->temb_dim, m->temb_dim, 1, "time_embedding.linear_2") ||
        (c->time_cond_proj_dim &&
         nn_linear_load(P, &m->cond_proj, c->time_cond_proj_dim, C0, 0, "time_embedding.cond_proj")) ||
        nn_conv_load(P, &m->conv_in, c->in_channels, C0, 3, "conv_in"))
        return -1;
    int prev = C0;
    for (int i = 0; i < n; i++) {
        int out = c->block_out_channels[i], cin[MAX_LAYERS], cout[MAX_LAYERS];
        for (int j = 0; j < L; j++) {
            cin[j] = j ? out : prev;
            cout[j] = out;
        }
        ublock *b = &m->down[i];
        if (block_load(m, b, "down", i, c->down_block_types[i] == SD_CROSS_ATTN_DOWN_BLOCK, L, cin, cout,
                       c->attention_head_dim[i]))
            return -1;
        b->has_sample = i < n - 1;
        if (b->has_sample && nn_conv_load(P, &b->sample, out, out, 3, "down_blocks.%d.downsamplers.0.conv", i))
            return -1;
        prev = out;
    }
    int Cm = c->block_out_channels[n - 1];
    if (nn_resnet_load(P, &m->mid_res0, Cm, Cm, m->temb_dim, c->norm_num_groups, c->norm_eps, "mid_block.resnets.0") ||
        transformer_load(m, &m->mid_attn, Cm, c->attention_head_dim[n - 1], "mid_block.attentions.0") ||
        nn_resnet_load(P, &m->mid_res1, Cm, Cm, m->temb_dim, c->norm_num_groups, c->norm_eps, "mid_block.resnets.1"))
        return -1;
    /* up block i mirrors down block n-1-i; its last ResNet takes the skip from before that block's input */
    prev = Cm;
    for (int i = 0; i < n; i++) {
        int out = c->block_out_channels[n - 1 - i], in = c->block_out_channels[i + 1 < n ? n - 2 - i : 0];
        int cin[MAX_LAYERS], cout[MAX_LAYERS];
        for (int j = 0; j <= L; j++) {
            int skip = j == L ? in : out;
            cin[j] = (j ? out : prev) + skip;
            cout[j] = out;
        }
        ublock *b = &m->up[i];
        if (block_load(m, b, "up", i, c->up_block_types[i] == SD_CROSS_ATTN_UP_BLOCK, L + 1, cin, cout,
                       c->attention_head_dim[n - 1 - i]))
            return -1;
        b->has_sample = i < n - 1;
        if (b->has_sample && nn_conv_load(P, &b->sample, out, out, 3, "up_blocks.%d.upsamplers.0.conv", i))
            return -1;
        prev = out;
    }
    return nn_norm_load(P, &m->norm_out, C0, c->norm_num_groups, c->norm_eps, "conv_norm_out") ||
           nn_conv_load(P, &m->conv_out, C0, c->out_channels, 3, "conv_out") ? -1 : 0;
}

unet_model *unet_load(const unet_config *cfg, weights *w, ops_backend *be, int max_batch, int max_h, int max_w,
                      int max_ctx)
{
    int n = cfg->n_blocks;
    int ok = n >= 1 && n <= SD_MAX_BLOCKS && cfg->layers_per_block >= 1 && cfg->layers_per_block < MAX_LAYERS &&
             cfg->transformer_layers_per_block >= 1 && cfg->transformer_layers_per_block <= MAX_TLAYERS &&
             cfg->in_channels >= 1 && cfg->out_channels >= 1 && cfg->norm_num_groups >= 1 &&
             cfg->cross_attention_dim >= 1 && cfg->block_out_channels[0] % 2 == 0;
    for (int i = 0; ok && i < n; i++)
        ok = cfg->block_out_channels[i] >= 1 &&
             (cfg->down_block_types[i] == SD_DOWN_BLOCK || cfg->down_block_types[i] == SD_CROSS_ATTN_DOWN_BLOCK) &&
             (cfg->up_block_types[i] == SD_UP_BLOCK || cfg->up_block_types[i] == SD_CROSS_ATTN_UP_BLOCK);
    if (!ok) {
        err_set("unet: unsupported config (%d blocks, %d layers per block, %d transformer layers, groups %d; blocks "
                "must be (CrossAttn)DownBlock2D / (CrossAttn)UpBlock2D)", n, cfg->layers_per_block,
                cfg->transformer_layers_per_block, cfg->norm_num_groups);
        return NULL;
    }
    int f = 1 << (n - 1);
    if (max_batch < 1 || max_h < f || max_w < f || max_h % f || max_w % f || max_ctx < 1 ||
        (size_t)max_h * max_w > OPS_MAX_KEYS || max_ctx > OPS_MAX_KEYS) {
        err_set("unet: maximum size batch %d at %dx%d (%d context tokens) is not a positive multiple of %d",
                max_batch, max_h, max_w, max_ctx, f);
        return NULL;
    }
    unet_model *m = calloc(1, sizeof *m);
    if (!m) {
        err_set("unet: out of memory");
        return NULL;
    }
    m->cfg = *cfg;
    m->checks = 1;
    m->max_batch = max_batch;
    m->max_h = max_h;
    m->max_w = max_w;
    m->max_ctx = max_ctx;
    m->temb_dim = 4 * cfg->block_out_channels[0];
    m->P = (nn_params){.be = be, .w = w};
    m->ar.be = be;
    if (unet_build(m)) {
        err_wrap("unet: ");
        unet_free(m);
        return NULL;
    }
    ar_begin(&m->ar, 1);
    unet_run(m, NULL, NULL, NULL, NULL, max_batch, max_h, max_w, max_ctx, NULL);
    if (ar_reserve(&m->ar, m->ar.peak)) {
        err_wrap("unet: work memory: ");
        unet_free(m);
        return NULL;
    }
    return m;
}
