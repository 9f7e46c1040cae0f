/* Batched img2img / txt2img over the CLIP, UNet and VAE model code (see engine.h for the contract). */
#include "augment/engine/engine.h"
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "augment/engine/backend/backend.h"
#include "augment/engine/clip.h"
#include "common/err.h"
#include "augment/engine/model_load.h"
#include "augment/engine/backend/ops.h"
#include "common/philox.h"
#include "augment/engine/scheduler.h"
#include "augment/engine/tokenizer.h"
#include "augment/engine/unet.h"
#include "augment/engine/vae.h"
#include "augment/engine/weights.h"

typedef struct {
    char *text;
    float *emb;                 /* [L, hidden] */
} prompt_entry;

struct engine {
    engine_opts o;
    sd_model m;
    weights *w_unet, *w_vae, *w_clip;
    lora_set *lora;                 /* while loading: the LoRA files merged into w_unet and w_clip */
    ops_backend *be;
    tokenizer *tok;
    clip_model *clip;
    unet_model *unet;
    vae_model *vae;
    scheduler *sched;

    int H, W, h, w, lc, f;      /* image size, latent size and channels, VAE factor */
    size_t nlat, nimg;          /* floats per item latent / image */
    int L, hidden;              /* context tokens and width */
    int cfg;                    /* classifier-free guidance on */
    int uncond;                 /* handle of the empty prompt */

    prompt_entry *prompts;
    int n_prompts, cap_prompts;
    int *ids;                   /* [L] token ids scratch */

    /* backend buffers, sized at load for max_batch items: a call's whole state lives on the backend */
    float *x;                   /* [B, nlat] latents */
    float *unet_in, *unet_out;  /* [2B, nlat] */
    float *ctx;                 /* [2B, L, hidden] */
    float *eps;                 /* [nlat] guided noise prediction of one item */
    float *vae_noise, *lat_noise;   /* [B, nlat] */
    float *mean, *logvar;       /* [vae_batch, nlat] */
    float *img;                 /* [vae_batch, nimg] */
    float *dpm_prev;            /* [B, nlat] scheduler state buffers (LCM: the noise of the step) */
    float *tcond;               /* [UB, time_cond_proj_dim] the guidance embedding per UNet row, or NULL */
    /* host buffers; the timesteps and the transfers' staging buffers come from the backend (pinned on a device) */
    float *unet_t;              /* [2B] timesteps */
    float *img_host;            /* [vae_batch, nimg] images in and out */
    float *lat_host;            /* [2, nlat] latents for traces, posterior noise to compare */
    sched_state *st;            /* [B] */
    int *order, *start, *img_idx;   /* [B] items sorted by start index; start index per item; image items */
    int *start_dup;             /* [B] an earlier item with the same image and posterior noise, or -1 */
    size_t weight_bytes;
};

void engine_opts_default(engine_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_batch = 1;
    o->vae_batch = 1;
    o->scheduler = SD_SCHED_DDIM;
    o->steps = 50;
    o->guidance = 7.5;
    o->eta = 0.3;
}

static void *xcalloc(size_t n, size_t size, int *fail)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) *fail = 1;
    return p;
}

static size_t file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (size_t)st.st_size : 0;
}

static float *backend_buffer(engine *e, size_t n, int *fail)
{
    float *p = *fail ? NULL : e->be->alloc(e->be, n);
    if (!p) *fail = 1;
    return p;
}

/* The UNet forward of a denoising step, which a device backend records once per batch size and replays. */
typedef struct {
    engine *e;
    int B;
} unet_call;

static int unet_step(void *ctx)
{
    unet_call *u = ctx;
    engine *e = u->e;
    return unet_forward(e->unet, e->unet_in, e->unet_t, e->tcond, e->ctx, u->B, e->h, e->w, e->L, e->unet_out);
}

static int unet_run_step(engine *e, int B)
{
    unet_call u = {e, B};
    return e->be->replay(e->be, (uint64_t)B, unet_step, &u);
}

static float *host_buffer(engine *e, size_t n, int *fail)
{
    float *p = *fail ? NULL : e->be->host_alloc(e->be, n * sizeof(float));
    if (!p) *fail = 1;
    return p;
}

/* LatentConsistencyModelPipeline.get_guidance_scale_embedding(w - 1) (diffusers 0.27) in torch's float32 order:
 * w' = float32(w - 1) * 1000, f_i = exp(i * -(ln(10000) / (half - 1))), [sin(w' f), cos(w' f)], zero-padded when
 * dim is odd */
static void guidance_embedding(double w, int dim, float *out)
{
    const int half = dim / 2;
    const float ws = (float)(w - 1.0) * 1000.0f, step = logf(10000.0f) / (float)(half - 1);
    for (int i = 0; i < half; i++) {
        const float a = ws * expf((float)i * -step);
        out[i] = sinf(a);
        out[half + i] = cosf(a);
    }
    if (dim % 2) out[dim - 1] = 0.0f;
}

static weights *open_weights(const char *path, weights_map_fn map, void *ctx, lora_set *lora, enum lora_part part)
{
    const char *paths[1] = {path};
    weights *w = weights_open(paths, 1);
    if (w && map) weights_set_map(w, map, ctx);
    if (w) weights_set_lora(w, lora, part);
    return w;
}

engine *engine_load(const engine_opts *o)
{
    if (!o->model) {
        err_set("engine: no model path given");
        return NULL;
    }
    if (o->max_batch < 1 || o->max_batch > 4096) {
        err_set("engine: max_batch %d out of range", o->max_batch);
        return NULL;
    }
    if (!(o->guidance == o->guidance)) {
        err_set("engine: guidance is NaN");
        return NULL;
    }
    engine *e = calloc(1, sizeof *e);
    if (!e) {
        err_set("engine: out of memory");
        return NULL;
    }
    e->o = *o;
    if (e->o.vae_batch <= 0) e->o.vae_batch = 1;
    if (e->o.vae_batch > e->o.max_batch) e->o.vae_batch = e->o.max_batch;
    if (sd_model_find(o->model, o->config_dir, &e->m)) goto fail;
    sd_model *m = &e->m;
    if (m->unet.cross_attention_dim != m->clip.hidden_size) {
        err_set("%s: UNet cross_attention_dim %d differs from the text encoder's hidden_size %d", o->model,
                m->unet.cross_attention_dim, m->clip.hidden_size);
        goto fail;
    }
    if (m->unet.in_channels != m->vae.latent_channels || m->unet.out_channels != m->vae.latent_channels) {
        err_set("%s: UNet in/out channels %d/%d differ from the VAE's latent channels %d", o->model,
                m->unet.in_channels, m->unet.out_channels, m->vae.latent_channels);
        goto fail;
    }
    if (!(e->sched = scheduler_create(o->scheduler, &m->sched)) || scheduler_set_eta(e->sched, o->eta) ||
        scheduler_set_timesteps(e->sched, o->steps)) {
        err_wrap("%s: ", o->model);
        goto fail;
    }
    if (!(e->tok = tokenizer_load(m->tokenizer_dir))) goto fail;
    e->L = tokenizer_max_length(e->tok);
    if (e->L > m->clip.max_position_embeddings) {
        err_set("%s: tokenizer max length %d exceeds the text encoder's %d positions", m->tokenizer_dir, e->L,
                m->clip.max_position_embeddings);
        goto fail;
    }
    /* a tokenizer from elsewhere (a single-file checkpoint falls back to data/clip-tokenizer) must fit the text
     * encoder's embedding table, or the first prompt would index past it */
    if (tokenizer_vocab_size(e->tok) > m->clip.vocab_size) {
        err_set("%s: the tokenizer has %d ids but the text encoder embeds only %d", m->tokenizer_dir,
                tokenizer_vocab_size(e->tok), m->clip.vocab_size);
        goto fail;
    }
    e->hidden = m->clip.hidden_size;

    e->f = 1 << (m->vae.n_blocks - 1);
    int unet_f = 1 << (m->unet.n_blocks - 1);
    e->H = o->height > 0 ? o->height : m->unet.sample_size * e->f;
    e->W = o->width > 0 ? o->width : m->unet.sample_size * e->f;
    if (e->H <= 0 || e->W <= 0) {
        err_set("%s: the UNet config has no sample_size; give the image size", o->model);
        goto fail;
    }
    if (e->H % (e->f * unet_f) || e->W % (e->f * unet_f)) {
        err_set("%s: image size %dx%d is not a multiple of %d (VAE factor %d x UNet factor %d)", o->model, e->W, e->H,
                e->f * unet_f, e->f, unet_f);
        goto fail;
    }
    e->h = e->H / e->f;
    e->w = e->W / e->f;
    e->lc = m->vae.latent_channels;
    e->nlat = (size_t)e->lc * e->h * e->w;
    e->nimg = (size_t)3 * e->H * e->W;
    if (m->vae.in_channels != 3 || m->vae.out_channels != 3) {
        err_set("%s: VAE has %d/%d image channels; only RGB is supported", o->model, m->vae.in_channels,
                m->vae.out_channels);
        goto fail;
    }
    /* an LCM-distilled UNet takes the guidance as its timestep condition: one UNet row per item, no CFG pair */
    e->cfg = o->guidance > 1.0 && !m->unet.time_cond_proj_dim;

    if (!(e->be = backend_create(o->device, o->threads, o->precision))) goto fail;
    void *mctx = &m->map;
    if (o->n_lora && !(e->lora = lora_open(o->lora, o->n_lora))) goto fail;
    e->w_unet = open_weights(m->unet_path, m->single_file ? sd_map_unet : NULL, mctx, e->lora, LORA_UNET);
    e->w_vae = e->w_unet ? open_weights(m->vae_path, m->single_file ? sd_map_vae : NULL, mctx, NULL, 0) : NULL;
    e->w_clip = e->w_vae ? open_weights(m->clip_path, m->single_file ? sd_map_clip : NULL, mctx, e->lora, LORA_TEXT)
                         : NULL;
    if (!e->w_clip) goto fail;
    e->weight_bytes = file_size(m->unet_path);
    if (!m->single_file) e->weight_bytes += file_size(m->vae_path) + file_size(m->clip_path);

    int B = o->max_batch, UB = e->cfg ? 2 * B : B;
    if (!(e->clip = clip_load(&m->clip, e->w_clip, e->be, 1))) {
        err_wrap("%s: text encoder: ", m->clip_path);
        goto fail;
    }
    if (!(e->unet = unet_load(&m->unet, e->w_unet, e->be, UB, e->h, e->w, e->L))) {
        err_wrap("%s: unet: ", m->unet_path);
        goto fail;
    }
    if (!(e->vae = vae_load(&m->vae, e->w_vae, e->be, VAE_ENCODER | VAE_DECODER, e->o.vae_batch, e->H, e->W))) {
        err_wrap("%s: vae: ", m->vae_path);
        goto fail;
    }
    if (vae_factor(e->vae) != e->f) {
        err_set("%s: VAE factor %d, expected %d", m->vae_path, vae_factor(e->vae), e->f);
        goto fail;
    }
    /* every LoRA entry found its weight; the merged weights need the files no more */
    if (lora_check_used(e->lora)) goto fail;
    weights_set_lora(e->w_unet, NULL, 0), weights_set_lora(e->w_clip, NULL, 0);
    lora_free(e->lora);
    e->lora = NULL;

    /* the engine checks the latents once per step instead of the UNet after every block */
    unet_set_checks(e->unet, 0);
    /* a device backend holds its own copies of the weights: the host ones (float32 conversions of an F16 file,
     * twice its size) need not stay resident beside the trainer; the CPU backend computes from them */
    if (!e->be->weights_on_host) {
        weights_close(e->w_unet), weights_close(e->w_vae), weights_close(e->w_clip);
        e->w_unet = e->w_vae = e->w_clip = NULL;
    }

    int fail = 0;
    size_t nl = e->nlat, VB = (size_t)e->o.vae_batch;
    e->x = backend_buffer(e, B * nl, &fail);
    e->unet_in = backend_buffer(e, UB * nl, &fail);
    e->unet_out = backend_buffer(e, UB * nl, &fail);
    e->ctx = backend_buffer(e, (size_t)UB * e->L * e->hidden, &fail);
    e->eps = backend_buffer(e, nl, &fail);
    e->vae_noise = backend_buffer(e, B * nl, &fail);
    e->lat_noise = backend_buffer(e, B * nl, &fail);
    e->mean = backend_buffer(e, VB * nl, &fail);
    e->logvar = backend_buffer(e, VB * nl, &fail);
    e->img = backend_buffer(e, VB * e->nimg, &fail);
    e->dpm_prev = backend_buffer(e, B * nl, &fail);
    const int cd = m->unet.time_cond_proj_dim;
    if (cd) {
        e->tcond = backend_buffer(e, (size_t)UB * cd, &fail);
        float *w = fail ? NULL : malloc(sizeof(float) * cd);
        if (w) {
            guidance_embedding(o->guidance, cd, w);
            for (int b = 0; b < UB; b++) e->be->upload(e->be, e->tcond + (size_t)b * cd, w, cd);
            free(w);
        }
        fail |= !w;
    }
    if (fail) {
        err_wrap("engine: buffers for %d items at %dx%d: ", B, e->W, e->H);
        goto fail;
    }
    e->ids = xcalloc(e->L, sizeof(int), &fail);
    e->unet_t = host_buffer(e, UB, &fail);   /* read by the UNet's graph as it runs (ops.h, replay) */
    e->img_host = host_buffer(e, VB * e->nimg, &fail);
    e->lat_host = host_buffer(e, 2 * nl, &fail);
    e->st = xcalloc(B, sizeof(sched_state), &fail);
    e->order = xcalloc(B, sizeof(int), &fail);
    e->start = xcalloc(B, sizeof(int), &fail);
    e->img_idx = xcalloc(B, sizeof(int), &fail);
    e->start_dup = xcalloc(B, sizeof(int), &fail);
    if (fail) {
        err_set("engine: out of memory for %d items at %dx%d", B, e->W, e->H);
        goto fail;
    }
    if ((e->uncond = engine_prompt(e, "")) < 0) goto fail;
    return e;
fail:
    engine_free(e);
    return NULL;
}

void engine_free(engine *e)
{
    if (!e) return;
    clip_free(e->clip);
    unet_free(e->unet);
    vae_free(e->vae);
    weights_close(e->w_unet);
    weights_close(e->w_vae);
    weights_close(e->w_clip);
    lora_free(e->lora);
    if (e->be) {
        float *bufs[] = {e->x, e->unet_in, e->unet_out, e->ctx, e->eps, e->vae_noise, e->lat_noise, e->mean,
                         e->logvar, e->img, e->dpm_prev, e->tcond};
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
            if (bufs[i]) e->be->release(e->be, bufs[i]);
        if (e->img_host) e->be->host_free(e->be, e->img_host);
        if (e->lat_host) e->be->host_free(e->be, e->lat_host);
        if (e->unet_t) e->be->host_free(e->be, e->unet_t);
        e->be->destroy(e->be);
    }
    tokenizer_free(e->tok);
    scheduler_free(e->sched);
    for (int i = 0; i < e->n_prompts; i++) {
        free(e->prompts[i].text);
        free(e->prompts[i].emb);
    }
    free(e->prompts);
    free(e->ids);
    free(e->st);
    free(e->order);
    free(e->start);
    free(e->img_idx);
    free(e->start_dup);
    free(e);
}

int engine_prompt(engine *e, const char *text)
{
    if (!text) return err_set("engine: prompt is NULL");
    for (int i = 0; i < e->n_prompts; i++)
        if (!strcmp(e->prompts[i].text, text)) return i;
    int full = tokenizer_encode(e->tok, text, e->ids, e->L);
    if (full < 0) return err_wrap("prompt \"%.60s\": ", text);
    /* as diffusers warns: the text encoder sees the first L - 2 tokens only; said once per prompt (the cache) */
    if (full > e->L)
        fprintf(stderr, "genie: prompt \"%.60s%s\" is %d tokens; the text encoder takes %d, the rest is cut\n", text,
                strlen(text) > 60 ? "..." : "", full - 2, e->L - 2);
    if (e->n_prompts == e->cap_prompts) {
        int cap = e->cap_prompts ? 2 * e->cap_prompts : 8;
        prompt_entry *p = realloc(e->prompts, sizeof *p * cap);
        if (!p) return err_set("engine: out of memory for prompts");
        e->prompts = p;
        e->cap_prompts = cap;
    }
    prompt_entry *pe = &e->prompts[e->n_prompts];
    pe->text = strdup(text);
    pe->emb = malloc(sizeof(float) * e->L * e->hidden);
    if (!pe->text || !pe->emb) {
        free(pe->text);
        free(pe->emb);
        return err_set("engine: out of memory for a prompt");
    }
    if (clip_encode(e->clip, e->ids, 1, e->L, pe->emb)) {
        free(pe->text);
        free(pe->emb);
        return err_wrap("prompt \"%.60s\": ", text);
    }
    return e->n_prompts++;
}

/* z0 = scaling_factor * (mean + exp(0.5 logvar) * eps) for the image items among idx[0..k); use_mean: the
 * posterior mean alone */
static int encode_images(engine *e, engine_item *items, const int *idx, int k, int use_mean)
{
    ops_backend *be = e->be;
    const size_t nl = e->nlat, ni = e->nimg;
    const float sf = e->m.vae.scaling_factor;
    for (int b0 = 0; b0 < k; b0 += e->o.vae_batch) {
        int nb = k - b0 < e->o.vae_batch ? k - b0 : e->o.vae_batch;
        for (int j = 0; j < nb; j++) {
            const float *src = items[idx[b0 + j]].image;
            float *dst = e->img_host + j * ni;
            for (size_t i = 0; i < ni; i++) dst[i] = 2.0f * src[i] - 1.0f;
        }
        be->upload(be, e->img, e->img_host, nb * ni);
        if (vae_encode(e->vae, e->img, nb, e->H, e->W, e->mean, e->logvar))
            return err_wrap("VAE encode: ");
        for (int j = 0; j < nb; j++) {
            int it = idx[b0 + j];
            be->vae_sample(be, e->mean + j * nl, e->logvar + j * nl, use_mean ? NULL : e->vae_noise + it * nl, sf, nl,
                           e->x + it * nl);
        }
    }
    return 0;
}

static int decode_latents(engine *e, engine_item *items, int n)
{
    ops_backend *be = e->be;
    const size_t nl = e->nlat, ni = e->nimg;
    const float sf = e->m.vae.scaling_factor;
    for (int b0 = 0; b0 < n; b0 += e->o.vae_batch) {
        int nb = n - b0 < e->o.vae_batch ? n - b0 : e->o.vae_batch;
        /* z / scaling_factor, staged in mean[] */
        for (int j = 0; j < nb; j++) be->div_scalar(be, e->x + (b0 + j) * nl, sf, nl, e->mean + j * nl);
        if (vae_decode(e->vae, e->mean, nb, e->h, e->w, e->img)) return err_wrap("VAE decode: ");
        be->download(be, e->img_host, e->img, nb * ni);
        if (be->sync(be)) return err_wrap("VAE decode: ");
        for (int j = 0; j < nb; j++) {
            const float *src = e->img_host + j * ni;
            float *out = items[b0 + j].out;
            for (size_t i = 0; i < ni; i++) {
                float v = src[i] / 2.0f + 0.5f;
                out[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            }
        }
    }
    return 0;
}

/* Whether items j and k have the same posterior noise (bit for bit): equal Philox keys, or equal values. */
static int same_vae_noise(engine *e, const engine_item *items, int j, int k)
{
    const size_t nl = e->nlat;
    const float *a = items[j].vae_noise, *b = items[k].vae_noise;
    if (!a && !b) return items[j].seed == items[k].seed && items[j].stream == items[k].stream;
    if (!a) e->be->download(e->be, e->lat_host, e->vae_noise + j * nl, nl), a = e->lat_host;
    if (!b) e->be->download(e->be, e->lat_host + nl, e->vae_noise + k * nl, nl), b = e->lat_host + nl;
    return !memcmp(a, b, nl * sizeof(float));
}

static int trace(engine *e, int k, int step_index)
{
    e->be->download(e->be, e->lat_host, e->x + k * e->nlat, e->nlat);
    if (e->be->sync(e->be)) return err_wrap("trace of item %d: ", k);   /* never hand stale latents out */
    e->o.trace(e->o.trace_ctx, k, step_index, e->lat_host);
    return 0;
}

/* Step i of the items whose schedule has begun (the first na in start order): one UNet batch, CFG, the scheduler
 * update, then one finite check of all latents; only a failing step looks at its items one by one. */
static int denoise_step(engine *e, engine_item *items, int n, int na, int i)
{
    ops_backend *be = e->be;
    const size_t nl = e->nlat;
    const int per = e->cfg ? 2 : 1;
    for (int a = 0; a < na; a++) {
        const int k = e->order[a], t = scheduler_item_timestep(e->sched, &e->st[k], i);
        const float *x = e->x + k * nl;
        for (int c = 0; c < per; c++) {
            be->copy(be, e->unet_in + (size_t)(a * per + c) * nl, x, nl);
            e->unet_t[a * per + c] = (float)t;
        }
    }
    if (unet_run_step(e, na * per)) return -1;
    for (int a = 0; a < na; a++) {
        const int k = e->order[a];
        if (items[k].nonfinite) continue;
        const float *eps = e->unet_out + (size_t)a * per * nl;
        if (e->cfg) {
            be->guide(be, eps, eps + nl, (float)e->o.guidance, nl, e->eps);
            eps = e->eps;
        }
        ops_step c;
        if (scheduler_prepare(e->sched, &e->st[k], i, &c)) return err_wrap("item %d: ", k);
        /* LCM's (TCD's) noise after step i: Philox of the item's seed on its stream mixed with PHILOX_ENGINE_STEP
         * and i, counter from 0 (where diffusers draws randn from the pipeline's generator) */
        if (c.noise)
            be->fill_normal(be, e->st[k].prev, nl, items[k].seed,
                            philox_mix(philox_mix(items[k].stream, PHILOX_ENGINE_STEP), (uint64_t)i));
        be->sched_step(be, &c, eps, e->x + k * nl, e->st[k].prev, nl);
    }
    if (be->sync(be)) return -1;
    size_t bad_all = be->count_nonfinite(be, e->x, n * nl);
    if (bad_all == OPS_COUNT_FAILED) return be->sync(be), -1;
    for (int a = 0; bad_all && a < na; a++) {
        const int k = e->order[a];
        if (items[k].nonfinite) continue;
        float *x = e->x + k * nl;
        size_t bad = be->count_nonfinite(be, x, nl);
        if (bad == OPS_COUNT_FAILED) return be->sync(be), -1;
        if (bad && e->o.drop_nonfinite) {
            /* zeros keep the item's later UNet rows finite; its result is thrown away */
            items[k].nonfinite = 1;
            be->fill(be, x, nl, 0.0f);
        } else if (bad) {
            return err_set("item %d: %zu non-finite latent values", k, bad);
        }
    }
    return 0;
}

int engine_img2img(engine *e, engine_item *items, int n)
{
    ops_backend *be = e->be;
    const int N = scheduler_num_steps(e->sched);
    const size_t nl = e->nlat;
    if (n < 1 || n > e->o.max_batch) return err_set("engine: %d items (1..%d per call)", n, e->o.max_batch);
    for (int k = 0; k < n; k++) {
        const engine_item *it = &items[k];
        if (!it->out) return err_set("engine: item %d has no output buffer", k);
        if (it->prompt < 0 || it->prompt >= e->n_prompts) return err_set("engine: item %d: bad prompt handle %d", k, it->prompt);
        if (it->image && !(it->r > 0.0 && it->r <= 1.0))
            return err_set("engine: item %d: r = %g is outside (0, 1]", k, it->r);
        /* the scheduler's strength rule gives the item's first step (txt2img: strength 1) */
        sched_state_init(&e->st[k], e->dpm_prev + k * nl, nl);
        if (scheduler_begin(e->sched, &e->st[k], it->image ? it->r : 1.0, &e->start[k]))
            return err_wrap("engine: item %d: r = %g: ", k, it->r);
    }
    /* items are processed in place in the order given; order[] lists them by start index (stable), so the
     * active items at a step are a prefix of order[] */
    for (int k = 0; k < n; k++) e->order[k] = k;
    for (int a = 1; a < n; a++) {
        int v = e->order[a], b = a;
        while (b > 0 && e->start[e->order[b - 1]] > e->start[v]) e->order[b] = e->order[b - 1], b--;
        e->order[b] = v;
    }

    /* noise: external, or Philox keyed by the item's identity and the purpose */
    for (int k = 0; k < n; k++) {
        const engine_item *it = &items[k];
        float *vn = e->vae_noise + k * nl, *ln = e->lat_noise + k * nl;
        if (it->vae_noise) be->upload(be, vn, it->vae_noise, nl);
        else be->fill_normal(be, vn, nl, it->seed, philox_mix(it->stream, PHILOX_ENGINE_VAE));
        if (it->latent_noise) be->upload(be, ln, it->latent_noise, nl);
        else be->fill_normal(be, ln, nl, it->seed, philox_mix(it->stream, PHILOX_ENGINE_LATENT));
    }

    /* initial latents: img2img items encode their image and get noised to their first timestep. Items that
     * share an image and its posterior noise (GeNIe-Ada's ratios of one pair) are encoded once. */
    int k_img = 0;
    for (int k = 0; k < n; k++) {
        e->start_dup[k] = -1;
        if (!items[k].image) continue;
        for (int j = 0; j < k && e->start_dup[k] < 0; j++)
            if (items[j].image == items[k].image && same_vae_noise(e, items, j, k)) e->start_dup[k] = j;
        if (e->start_dup[k] < 0) e->img_idx[k_img++] = k;
    }
    if (k_img && encode_images(e, items, e->img_idx, k_img, e->o.vae_mean)) return -1;
    for (int k = 0; k < n; k++)
        if (e->start_dup[k] >= 0) be->copy(be, e->x + k * nl, e->x + e->start_dup[k] * nl, nl);
    for (int k = 0; k < n; k++) {
        float *x = e->x + k * nl;
        if (items[k].image) {
            float sa, sb;
            scheduler_noise_scales(e->sched, scheduler_item_timestep(e->sched, &e->st[k], e->start[k]), &sa, &sb);
            be->lincomb(be, sa, x, sb, e->lat_noise + k * nl, nl, x);
        } else {
            be->lincomb(be, scheduler_init_noise_sigma(e->sched), e->lat_noise + k * nl, 0.0f, NULL, nl, x);
        }
        if (e->o.trace && trace(e, k, -1)) return -1;
    }

    /* context rows: per active item [uncond, cond] with CFG, so a prefix of items is a prefix of the batch */
    const int per = e->cfg ? 2 : 1;
    const size_t nctx = (size_t)e->L * e->hidden;
    for (int a = 0; a < n; a++) {
        const engine_item *it = &items[e->order[a]];
        float *c = e->ctx + (size_t)a * per * nctx;
        if (e->cfg) be->upload(be, c, e->prompts[e->uncond].emb, nctx), c += nctx;
        be->upload(be, c, e->prompts[it->prompt].emb, nctx);
    }

    const int first = e->start[e->order[0]];
    for (int k = 0; k < n; k++) items[k].nonfinite = 0;
    for (int i = first; i < N; i++) {
        const int t = scheduler_timestep(e->sched, i);
        if (e->o.cancel && __atomic_load_n(e->o.cancel, __ATOMIC_RELAXED)) return err_set("engine: cancelled before step %d/%d", i + 1, N);
        int na = 0;
        while (na < n && e->start[e->order[na]] <= i) na++;
        if (denoise_step(e, items, n, na, i)) return err_wrap("engine: step %d/%d (t=%d): ", i + 1, N, t);
        for (int a = 0; e->o.trace && a < na; a++)
            if (!items[e->order[a]].nonfinite && trace(e, e->order[a], i)) return -1;
        if (e->o.progress) e->o.progress(e->o.progress_ctx, i - first + 1, N - first);
    }
    for (int k = 0; k < n; k++)
        if (items[k].latents_out) be->download(be, items[k].latents_out, e->x + k * nl, nl);
    return decode_latents(e, items, n);
}

int engine_roundtrip(engine *e, engine_item *items, int n)
{
    if (n < 1 || n > e->o.max_batch) return err_set("engine: %d items (1..%d per call)", n, e->o.max_batch);
    for (int k = 0; k < n; k++) {
        if (!items[k].image || !items[k].out) return err_set("engine: round trip item %d needs an image and an output", k);
        e->img_idx[k] = k;
    }
    if (encode_images(e, items, e->img_idx, n, 1)) return -1;
    return decode_latents(e, items, n);
}

void engine_get_info(const engine *e, engine_info *info)
{
    info->height = e->H;
    info->width = e->W;
    info->latent_channels = e->lc;
    info->latent_h = e->h;
    info->latent_w = e->w;
    info->steps = scheduler_num_steps(e->sched);
    info->max_batch = e->o.max_batch;
    info->cfg_pair = e->cfg;
    info->weight_file_bytes = e->weight_bytes;
    ops_mem m;
    e->be->mem(e->be, &m);
    info->device = e->be->name;
    info->precision = backend_precision_name(e->be->precision);
    info->mem_weights = m.weights;
    info->mem_buffers = m.buffers;
    info->mem_peak = m.peak;
    info->mem_host = m.host;
    info->device_used = m.device_used;
    info->device_total = m.device_total;
}

int engine_bench_unet(engine *e, int B)
{
    int UB = e->cfg ? 2 * e->o.max_batch : e->o.max_batch;
    if (B < 1 || B > UB) return err_set("engine: UNet batch %d (1..%d)", B, UB);
    ops_backend *be = e->be;
    const size_t nctx = (size_t)e->L * e->hidden;
    for (int b = 0; b < B; b++) {
        be->upload(be, e->ctx + b * nctx, e->prompts[e->uncond].emb, nctx);
        be->fill_normal(be, e->unet_in + b * e->nlat, e->nlat, 1, (uint64_t)b);
        e->unet_t[b] = (float)scheduler_timestep(e->sched, 0);
    }
    if (unet_run_step(e, B)) return -1;
    return be->sync(be);
}
