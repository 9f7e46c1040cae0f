#include "augment/engine/clip.h"
#include "common/err.h"
#include "augment/engine/nn.h"
#include <math.h>
#include <stdlib.h>

typedef struct {
    nn_norm ln1, ln2;
    nn_linear q, k, v, out, fc1, fc2;
} clip_layer;

struct clip_model {
    clip_config cfg;
    nn_params P;
    ops_arena ar;
    int max_batch;
    const float *tok_emb, *pos_emb;
    clip_layer *layers;
    nn_norm final_ln;
};

static enum ops_act clip_act(enum sd_act a)
{
    return a == SD_ACT_QUICK_GELU ? OPS_ACT_QUICK_GELU : a == SD_ACT_GELU ? OPS_ACT_GELU : OPS_ACT_SILU;
}

/* x[B*L, C] += self_attention(LN1(x)); x += MLP(LN2(x)) */
static void clip_layer_forward(clip_model *m, const clip_layer *l, float *x, int B, int L)
{
    ops_arena *a = &m->ar;
    int C = m->cfg.hidden_size, heads = m->cfg.num_attention_heads, rows = B * L;
    size_t n = (size_t)rows * C, mark = ar_mark(a);
    float *h = nn_layer_norm_forward(a, &l->ln1, x, rows);
    float *q = nn_linear_forward(a, &l->q, h, rows), *k = nn_linear_forward(a, &l->k, h, rows);
    float *v = nn_linear_forward(a, &l->v, h, rows), *att = ar_push(a, n);
    OPS_RUN(a, attention, q, C, k, C, v, C, B, L, L, heads, C / heads, 1.0f / sqrtf((float)(C / heads)), 1, att);
    float *o = nn_linear_forward(a, &l->out, att, rows);
    OPS_RUN(a, add, x, o, n, x);
    ar_pop(a, mark);
    h = nn_layer_norm_forward(a, &l->ln2, x, rows);
    float *f = nn_linear_forward(a, &l->fc1, h, rows);
    OPS_RUN(a, act, clip_act(m->cfg.hidden_act), f, (size_t)rows * l->fc1.out, f);
    o = nn_linear_forward(a, &l->fc2, f, rows);
    OPS_RUN(a, add, x, o, n, x);
    ar_pop(a, mark);
}

static int clip_run(clip_model *m, const int *ids, int B, int L, float *out)
{
    ops_arena *a = &m->ar;
    int C = m->cfg.hidden_size;
    size_t n = (size_t)B * L * C;
    float *x = ar_push(a, n);
    OPS_RUN(a, embed_tokens, ids, B, L, m->tok_emb, m->pos_emb, C, x);
    for (int i = 0; i < m->cfg.num_hidden_layers; i++) clip_layer_forward(m, &m->layers[i], x, B, L);
    float *y = nn_layer_norm_forward(a, &m->final_ln, x, B * L);
    if (nn_check_finite(a, y, n, "clip", "final_layer_norm")) return -1;
    OPS_RUN(a, download, out, y, n);
    /* a device's download reports no error itself: a failed one must not leave a prompt cached */
    return a->dry ? 0 : a->be->sync(a->be);
}

int clip_encode(clip_model *m, const int *ids, int B, int L, float *out)
{
    if (B < 1 || L < 1 || L > m->cfg.max_position_embeddings)
        return err_set("clip: %d sequences of %d tokens (at most %d positions)", B, L,
                       m->cfg.max_position_embeddings);
    for (int i = 0; i < B * L; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return err_set("clip: token id %d at position %d is outside the vocabulary of %d", ids[i], i,
                           m->cfg.vocab_size);
    ar_begin(&m->ar, 1);
    clip_run(m, ids, B, L, out);
    if (m->ar.peak > m->ar.cap)
        return err_set("clip: batch %d x %d tokens needs %zu MB of work memory; loaded for batch %d (%zu MB)", B, L,
                       m->ar.peak * 4 >> 20, m->max_batch, m->ar.cap * 4 >> 20);
    ar_begin(&m->ar, 0);
    return clip_run(m, ids, B, L, out);
}

void clip_free(clip_model *m)
{
    if (!m) return;
    ar_free(&m->ar);
    nn_params_free(&m->P);
    free(m->layers);
    free(m);
}

clip_model *clip_load(const clip_config *cfg, weights *w, ops_backend *be, int max_batch)
{
    int C = cfg->hidden_size, I = cfg->intermediate_size;
    if (C <= 0 || I <= 0 || cfg->num_attention_heads <= 0 || C % cfg->num_attention_heads ||
        cfg->num_hidden_layers <= 0 || cfg->vocab_size <= 0 || cfg->max_position_embeddings <= 0 || max_batch < 1) {
        err_set("clip: unsupported config (hidden %d, heads %d, layers %d, intermediate %d, vocab %d, positions %d)",
                C, cfg->num_attention_heads, cfg->num_hidden_layers, I, cfg->vocab_size,
                cfg->max_position_embeddings);
        return NULL;
    }
    clip_model *m = calloc(1, sizeof *m);
    if (!m || !(m->layers = calloc(cfg->num_hidden_layers, sizeof *m->layers))) {
        free(m);
        err_set("clip: out of memory");
        return NULL;
    }
    m->cfg = *cfg;
    m->P = (nn_params){.be = be, .w = w};
    m->ar.be = be;
    m->max_batch = max_batch;
    nn_params *P = &m->P;
    float eps = cfg->layer_norm_eps;
    int64_t ts[2] = {cfg->vocab_size, C}, ps[2] = {cfg->max_position_embeddings, C};
    int bad = !(m->tok_emb = nn_tensor_load(P, 2, ts, "text_model.embeddings.token_embedding.weight")) ||
              !(m->pos_emb = nn_tensor_load(P, 2, ps, "text_model.embeddings.position_embedding.weight"));
    for (int i = 0; !bad && i < cfg->num_hidden_layers; i++) {
        clip_layer *l = &m->layers[i];
        const char *f = "text_model.encoder.layers.%d.%s";
        bad = nn_norm_load(P, &l->ln1, C, 0, eps, f, i, "layer_norm1") ||
              nn_linear_load(P, &l->q, C, C, 1, f, i, "self_attn.q_proj") ||
              nn_linear_load(P, &l->k, C, C, 1, f, i, "self_attn.k_proj") ||
              nn_linear_load(P, &l->v, C, C, 1, f, i, "self_attn.v_proj") ||
              nn_linear_load(P, &l->out, C, C, 1, f, i, "self_attn.out_proj") ||
              nn_norm_load(P, &l->ln2, C, 0, eps, f, i, "layer_norm2") ||
              nn_linear_load(P, &l->fc1, C, I, 1, f, i, "mlp.fc1") ||
              nn_linear_load(P, &l->fc2, I, C, 1, f, i, "mlp.fc2");
    }
    bad = bad || nn_norm_load(P, &m->final_ln, C, 0, eps, "text_model.final_layer_norm");
    if (bad) {
        err_wrap("clip: ");
        clip_free(m);
        return NULL;
    }
    /* size the arena with a dry run at the largest input */
    int L = cfg->max_position_embeddings;
    int *ids = calloc((size_t)max_batch * L, sizeof *ids);
    if (!ids) {
        err_set("clip: out of memory");
        clip_free(m);
        return NULL;
    }
    ar_begin(&m->ar, 1);
    clip_run(m, ids, max_batch, L, NULL);
    free(ids);
    if (ar_reserve(&m->ar, m->ar.peak)) {
        err_wrap("clip: work memory: ");
        clip_free(m);
        return NULL;
    }
    return m;
}
