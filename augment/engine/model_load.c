/* Model discovery, config parsing (diffusers 0.19 defaults) and the LDM <-> diffusers weight-name map. */
#include "augment/engine/model_load.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/err.h"
#include "augment/engine/safetensors.h"

/* ---------- JSON helpers: every accessor names the file and key on a type error ---------- */

static cJSON *json_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        err_set("%s: cannot seek", path);
        return NULL;
    }
    long n = ftell(f);
    rewind(f);
    if (n < 0 || n > (64 << 20)) {
        fclose(f);
        err_set("%s: unreasonable size %ld for a config file", path, n);
        return NULL;
    }
    char *buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        err_set("%s: out of memory", path);
        return NULL;
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[got] = 0;
    cJSON *j = cJSON_ParseWithLength(buf, got);
    if (!j) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= buf && at <= buf + got ? (long)(at - buf) : -1;
        free(buf);
        err_set("%s: invalid JSON near byte %ld", path, off);
        return NULL;
    }
    free(buf);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        err_set("%s: top level is not a JSON object", path);
        return NULL;
    }
    return j;
}

/* A present, non-null value for key, or NULL (absent or null: the caller keeps its default). */
static const cJSON *jget(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static int jint_value(const char *path, const char *key, const cJSON *v, int *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 1e9)
        return err_set("%s: \"%s\" must be an integer, got %s", path, key,
                       cJSON_IsString(v) ? v->valuestring : cJSON_IsNumber(v) ? "a non-integer number" : "another type");
    *out = (int)v->valuedouble;
    return 0;
}

static int jint(const char *path, const cJSON *o, const char *key, int *out)
{
    const cJSON *v = jget(o, key);
    return v ? jint_value(path, key, v, out) : 0;
}

/* A positive integer when present (absent: the default stays). */
static int jpos(const char *path, const cJSON *o, const char *key, int *out)
{
    const cJSON *v = jget(o, key);
    if (!v) return 0;
    if (jint_value(path, key, v, out)) return -1;
    if (*out <= 0) return err_set("%s: \"%s\" must be positive, got %d", path, key, *out);
    return 0;
}

/* cJSON reads 1e999 as infinity: a number here is always finite. */
static int jdouble(const char *path, const cJSON *o, const char *key, double *out)
{
    const cJSON *v = jget(o, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v)) return err_set("%s: \"%s\" must be a number", path, key);
    if (!isfinite(v->valuedouble)) return err_set("%s: \"%s\" must be a finite number", path, key);
    *out = v->valuedouble;
    return 0;
}

static int jfloat(const char *path, const cJSON *o, const char *key, float *out)
{
    double d = *out;
    if (jdouble(path, o, key, &d)) return -1;
    *out = (float)d;
    return 0;
}

static int jbool(const char *path, const cJSON *o, const char *key, int *out)
{
    const cJSON *v = jget(o, key);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return err_set("%s: \"%s\" must be true or false", path, key);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return 0;
}

/* String value or NULL when absent; an error (returns -1) when present with another type. */
static int jstr(const char *path, const cJSON *o, const char *key, const char **out)
{
    const cJSON *v = jget(o, key);
    *out = NULL;
    if (!v) return 0;
    if (!cJSON_IsString(v)) return err_set("%s: \"%s\" must be a string", path, key);
    *out = v->valuestring;
    return 0;
}

/* Integer list of at most SD_MAX_BLOCKS entries; *n receives its length. */
static int jint_list(const char *path, const cJSON *o, const char *key, int *vals, int *n)
{
    const cJSON *v = jget(o, key);
    if (!v) return 0;
    if (!cJSON_IsArray(v)) return err_set("%s: \"%s\" must be a list of integers", path, key);
    int k = cJSON_GetArraySize(v);
    if (k < 1 || k > SD_MAX_BLOCKS) return err_set("%s: \"%s\" has %d entries (1..%d supported)", path, key, k, SD_MAX_BLOCKS);
    for (int i = 0; i < k; i++) {
        if (jint_value(path, key, cJSON_GetArrayItem(v, i), &vals[i])) return -1;
        if (vals[i] <= 0) return err_set("%s: \"%s\"[%d] must be positive, got %d", path, key, i, vals[i]);
    }
    *n = k;
    return 0;
}

/* A string that must equal want when present (for features genie does not implement). */
static int jexpect(const char *path, const cJSON *o, const char *key, const char *want)
{
    const char *s;
    if (jstr(path, o, key, &s)) return -1;
    if (s && strcmp(s, want) != 0)
        return err_set("%s: \"%s\" is \"%s\"; only \"%s\" is supported", path, key, s, want);
    return 0;
}

/* A key that must be absent or null (an unsupported conditioning or embedding variant). */
static int jabsent(const char *path, const cJSON *o, const char *key)
{
    if (jget(o, key)) return err_set("%s: \"%s\" is set; genie supports only models without it", path, key);
    return 0;
}

static int jexpect_num(const char *path, const cJSON *o, const char *key, double want)
{
    double d = want;
    if (jdouble(path, o, key, &d)) return -1;
    if (d != want) return err_set("%s: \"%s\" is %g; only %g is supported", path, key, d, want);
    return 0;
}

static int jexpect_bool(const char *path, const cJSON *o, const char *key, int want)
{
    int b = want;
    if (jbool(path, o, key, &b)) return -1;
    if (b != want) return err_set("%s: \"%s\" is %s; only %s is supported", path, key, b ? "true" : "false",
                                  want ? "true" : "false");
    return 0;
}

/* ---------- defaults ---------- */

static void unet_defaults(unet_config *u)
{
    /* UNet2DConditionModel.__init__ defaults in diffusers 0.19 */
    memset(u, 0, sizeof *u);
    u->in_channels = 4;
    u->out_channels = 4;
    u->sample_size = 0;                        /* None in diffusers: the caller must give a size */
    u->n_blocks = 4;
    const int boc[4] = {320, 640, 1280, 1280};
    for (int i = 0; i < 4; i++) {
        u->block_out_channels[i] = boc[i];
        u->down_block_types[i] = i < 3 ? SD_CROSS_ATTN_DOWN_BLOCK : SD_DOWN_BLOCK;
        u->up_block_types[i] = i == 0 ? SD_UP_BLOCK : SD_CROSS_ATTN_UP_BLOCK;
    }
    for (int i = 0; i < SD_MAX_BLOCKS; i++) u->attention_head_dim[i] = 8;
    u->layers_per_block = 2;
    u->cross_attention_dim = 1280;
    u->norm_num_groups = 32;
    u->norm_eps = 1e-5f;
    u->use_linear_projection = 0;
    u->flip_sin_to_cos = 1;
    u->freq_shift = 0;
    u->transformer_layers_per_block = 1;
}

static void vae_defaults(vae_config *v)
{
    /* AutoencoderKL.__init__ defaults */
    memset(v, 0, sizeof *v);
    v->in_channels = 3;
    v->out_channels = 3;
    v->latent_channels = 4;
    v->sample_size = 32;
    v->n_blocks = 1;
    v->block_out_channels[0] = 64;
    v->layers_per_block = 1;
    v->norm_num_groups = 32;
    v->scaling_factor = 0.18215f;
}

static void clip_defaults(clip_config *c)
{
    /* transformers CLIPTextConfig defaults */
    memset(c, 0, sizeof *c);
    c->vocab_size = 49408;
    c->hidden_size = 512;
    c->intermediate_size = 2048;
    c->num_hidden_layers = 12;
    c->num_attention_heads = 8;
    c->max_position_embeddings = 77;
    c->layer_norm_eps = 1e-5f;
    c->hidden_act = SD_ACT_QUICK_GELU;
    c->pad_token_id = 1;
    c->bos_token_id = 49406;
    c->eos_token_id = 49407;
}

static void sched_defaults(sched_config *s)
{
    /* DDIMScheduler / DPMSolverMultistepScheduler defaults (shared keys agree; clip_sample and set_alpha_to_one
     * are DDIM's; timestep_spacing differs per class and stays UNSET) */
    memset(s, 0, sizeof *s);
    s->num_train_timesteps = 1000;
    s->beta_start = 0.0001;
    s->beta_end = 0.02;
    s->beta_schedule_scaled_linear = 0;
    s->steps_offset = 0;
    s->set_alpha_to_one = 1;
    s->clip_sample = 1;
    s->clip_sample_range = 1.0f;
    s->timestep_spacing = SD_SPACING_UNSET;
    s->prediction_epsilon = 1;
    s->solver_order = 2;
    s->algorithm_dpmsolverpp = 1;
    s->solver_midpoint = 1;
    s->lower_order_final = 1;
    s->use_karras_sigmas = 0;
    s->thresholding = 0;
}

void sd_default_configs(unet_config *u, vae_config *v, clip_config *c, sched_config *s)
{
    if (u) {
        unet_defaults(u);
        u->sample_size = 64;
        u->cross_attention_dim = 768;
    }
    if (v) {
        vae_defaults(v);
        v->sample_size = 512;
        v->n_blocks = 4;
        const int boc[4] = {128, 256, 512, 512};
        memcpy(v->block_out_channels, boc, sizeof boc);
        v->layers_per_block = 2;
    }
    if (c) {
        clip_defaults(c);
        c->hidden_size = 768;
        c->intermediate_size = 3072;
        c->num_attention_heads = 12;
    }
    if (s) {
        sched_defaults(s);
        s->beta_start = 0.00085;
        s->beta_end = 0.012;
        s->beta_schedule_scaled_linear = 1;
        s->steps_offset = 1;
        s->set_alpha_to_one = 0;
        s->clip_sample = 0;
    }
}

/* ---------- value ranges ---------- */

/* What the model code can run, checked when a config is read (or inferred from a single file's tensors): a
 * negative eps or a zero size would otherwise surface as NaN latents steps later, naming nothing. */

static int need_pos(const char *path, const char *key, int i, int v)
{
    if (v > 0) return 0;
    if (i >= 0) return err_set("%s: \"%s\"[%d] must be positive, got %d", path, key, i, v);
    return err_set("%s: \"%s\" must be positive, got %d", path, key, v);
}

static int need_eps(const char *path, const char *key, double v)
{
    return isfinite(v) && v > 0 ? 0 : err_set("%s: \"%s\" must be a positive finite number, got %g", path, key, v);
}

static int need_blocks(const char *path, int n)
{
    if (n >= 1 && n <= SD_MAX_BLOCKS) return 0;
    return err_set("%s: %d blocks in \"block_out_channels\" (1..%d supported)", path, n, SD_MAX_BLOCKS);
}

static int check_unet(const char *path, const unet_config *u)
{
    if (need_pos(path, "in_channels", -1, u->in_channels) || need_pos(path, "out_channels", -1, u->out_channels) ||
        need_pos(path, "layers_per_block", -1, u->layers_per_block) ||
        need_pos(path, "norm_num_groups", -1, u->norm_num_groups) ||
        need_pos(path, "cross_attention_dim", -1, u->cross_attention_dim) ||
        need_pos(path, "transformer_layers_per_block", -1, u->transformer_layers_per_block) ||
        need_eps(path, "norm_eps", u->norm_eps) || need_blocks(path, u->n_blocks))
        return -1;
    /* 0 is diffusers' None: the caller gives the image size */
    if (u->sample_size < 0) return err_set("%s: \"sample_size\" must be positive, got %d", path, u->sample_size);
    for (int i = 0; i < u->n_blocks; i++)
        if (need_pos(path, "block_out_channels", i, u->block_out_channels[i]) ||
            need_pos(path, "attention_head_dim", i, u->attention_head_dim[i]))
            return -1;
    /* the timestep embedding divides by half the first block's channels minus the shift */
    int half = u->block_out_channels[0] / 2;
    if (!isfinite(u->freq_shift) || u->freq_shift < 0 || u->freq_shift >= half)
        return err_set("%s: \"freq_shift\" is %g; it must be in [0, %d) (half of block_out_channels[0])", path,
                       u->freq_shift, half);
    return 0;
}

static int check_vae(const char *path, const vae_config *v)
{
    if (need_pos(path, "in_channels", -1, v->in_channels) || need_pos(path, "out_channels", -1, v->out_channels) ||
        need_pos(path, "latent_channels", -1, v->latent_channels) ||
        need_pos(path, "sample_size", -1, v->sample_size) ||
        need_pos(path, "layers_per_block", -1, v->layers_per_block) ||
        need_pos(path, "norm_num_groups", -1, v->norm_num_groups) ||
        need_eps(path, "scaling_factor", v->scaling_factor) || need_blocks(path, v->n_blocks))
        return -1;
    for (int i = 0; i < v->n_blocks; i++)
        if (need_pos(path, "block_out_channels", i, v->block_out_channels[i])) return -1;
    return 0;
}

static int check_clip(const char *path, const clip_config *c)
{
    if (need_pos(path, "vocab_size", -1, c->vocab_size) || need_pos(path, "hidden_size", -1, c->hidden_size) ||
        need_pos(path, "intermediate_size", -1, c->intermediate_size) ||
        need_pos(path, "num_hidden_layers", -1, c->num_hidden_layers) ||
        need_pos(path, "num_attention_heads", -1, c->num_attention_heads) ||
        need_pos(path, "max_position_embeddings", -1, c->max_position_embeddings) ||
        need_eps(path, "layer_norm_eps", c->layer_norm_eps))
        return -1;
    return 0;
}

static int check_sched(const char *path, const sched_config *s)
{
    /* scheduler_create's limits: the schedule interpolates between at least two training steps */
    if (s->num_train_timesteps < 2 || s->num_train_timesteps > 100000)
        return err_set("%s: \"num_train_timesteps\" is %d; it must be in 2..100000", path, s->num_train_timesteps);
    if (need_pos(path, "solver_order", -1, s->solver_order) ||
        need_eps(path, "clip_sample_range", s->clip_sample_range))
        return -1;
    if (!(s->beta_start > 0) || !(s->beta_end > s->beta_start) || s->beta_end >= 1)
        return err_set("%s: beta_start %g / beta_end %g are not 0 < start < end < 1", path, s->beta_start, s->beta_end);
    if (s->steps_offset < 0 || s->steps_offset >= s->num_train_timesteps)
        return err_set("%s: \"steps_offset\" %d is out of range", path, s->steps_offset);
    return 0;
}

/* ---------- parsers ---------- */

static int parse_block_types(const char *path, const cJSON *o, const char *key, int up, enum sd_block_type *t, int *n)
{
    const cJSON *v = jget(o, key);
    if (!v) return 0;
    if (!cJSON_IsArray(v)) return err_set("%s: \"%s\" must be a list of block names", path, key);
    int k = cJSON_GetArraySize(v);
    if (k < 1 || k > SD_MAX_BLOCKS) return err_set("%s: \"%s\" has %d entries (1..%d supported)", path, key, k, SD_MAX_BLOCKS);
    for (int i = 0; i < k; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsString(e)) return err_set("%s: \"%s\"[%d] must be a string", path, key, i);
        const char *s = e->valuestring;
        if (!up && !strcmp(s, "DownBlock2D")) t[i] = SD_DOWN_BLOCK;
        else if (!up && !strcmp(s, "CrossAttnDownBlock2D")) t[i] = SD_CROSS_ATTN_DOWN_BLOCK;
        else if (up && !strcmp(s, "UpBlock2D")) t[i] = SD_UP_BLOCK;
        else if (up && !strcmp(s, "CrossAttnUpBlock2D")) t[i] = SD_CROSS_ATTN_UP_BLOCK;
        else
            return err_set("%s: \"%s\"[%d] is \"%s\"; supported: %s", path, key, i, s,
                           up ? "UpBlock2D, CrossAttnUpBlock2D" : "DownBlock2D, CrossAttnDownBlock2D");
    }
    *n = k;
    return 0;
}

/* attention_head_dim / num_attention_heads: an int for every block or one entry per block. */
static int parse_heads(const char *path, const cJSON *o, const char *key, int n_blocks, int *heads)
{
    const cJSON *v = jget(o, key);
    if (!v) return 0;
    if (cJSON_IsArray(v)) {
        int vals[SD_MAX_BLOCKS], k = 0;
        if (jint_list(path, o, key, vals, &k)) return -1;
        if (k != n_blocks)
            return err_set("%s: \"%s\" has %d entries but there are %d blocks", path, key, k, n_blocks);
        memcpy(heads, vals, sizeof(int) * k);
        return 0;
    }
    int h;
    if (jint_value(path, key, v, &h)) return -1;
    if (h <= 0) return err_set("%s: \"%s\" must be positive, got %d", path, key, h);
    for (int i = 0; i < SD_MAX_BLOCKS; i++) heads[i] = h;
    return 0;
}

static int parse_unet(const char *path, const cJSON *o, unet_config *u)
{
    int nb = u->n_blocks, nd = nb, nu = nb;
    if (jpos(path, o, "in_channels", &u->in_channels) || jpos(path, o, "out_channels", &u->out_channels) ||
        jpos(path, o, "sample_size", &u->sample_size) ||
        jint_list(path, o, "block_out_channels", u->block_out_channels, &nb) ||
        parse_block_types(path, o, "down_block_types", 0, u->down_block_types, &nd) ||
        parse_block_types(path, o, "up_block_types", 1, u->up_block_types, &nu) ||
        jpos(path, o, "layers_per_block", &u->layers_per_block) ||
        jpos(path, o, "norm_num_groups", &u->norm_num_groups) || jfloat(path, o, "norm_eps", &u->norm_eps) ||
        jbool(path, o, "use_linear_projection", &u->use_linear_projection) ||
        jbool(path, o, "flip_sin_to_cos", &u->flip_sin_to_cos) || jfloat(path, o, "freq_shift", &u->freq_shift))
        return -1;
    if (nd != nb || nu != nb)
        return err_set("%s: %d block_out_channels but %d down_block_types and %d up_block_types", path, nb, nd, nu);
    u->n_blocks = nb;
    for (int i = 0; i < nb; i++)
        if (u->block_out_channels[i] % u->norm_num_groups)
            return err_set("%s: block_out_channels[%d]=%d is not a multiple of norm_num_groups=%d", path, i,
                           u->block_out_channels[i], u->norm_num_groups);
    /* 0.19 uses attention_head_dim as the number of heads; num_attention_heads, where given, means the same */
    if (parse_heads(path, o, "attention_head_dim", nb, u->attention_head_dim) ||
        parse_heads(path, o, "num_attention_heads", nb, u->attention_head_dim))
        return -1;
    for (int i = 0; i < nb; i++)
        if (u->block_out_channels[i] % u->attention_head_dim[i])
            return err_set("%s: block_out_channels[%d]=%d is not divisible into %d heads", path, i,
                           u->block_out_channels[i], u->attention_head_dim[i]);
    const cJSON *cad = jget(o, "cross_attention_dim");
    if (cad && cJSON_IsArray(cad)) {
        int vals[SD_MAX_BLOCKS], k = 0;
        if (jint_list(path, o, "cross_attention_dim", vals, &k)) return -1;
        for (int i = 1; i < k; i++)
            if (vals[i] != vals[0])
                return err_set("%s: \"cross_attention_dim\" differs between blocks; not supported", path);
        u->cross_attention_dim = vals[0];
    } else if (jpos(path, o, "cross_attention_dim", &u->cross_attention_dim)) {
        return -1;
    }
    const cJSON *tl = jget(o, "transformer_layers_per_block");
    if (tl && cJSON_IsArray(tl)) {
        int vals[SD_MAX_BLOCKS], k = 0;
        if (jint_list(path, o, "transformer_layers_per_block", vals, &k)) return -1;
        for (int i = 1; i < k; i++)
            if (vals[i] != vals[0])
                return err_set("%s: \"transformer_layers_per_block\" differs between blocks; not supported", path);
        u->transformer_layers_per_block = vals[0];
    } else if (jpos(path, o, "transformer_layers_per_block", &u->transformer_layers_per_block)) {
        return -1;
    }
    /* variants the model code does not implement */
    if (jexpect(path, o, "act_fn", "silu") || jexpect(path, o, "mid_block_type", "UNetMidBlock2DCrossAttn") ||
        jexpect(path, o, "time_embedding_type", "positional") ||
        jexpect(path, o, "resnet_time_scale_shift", "default") ||
        jexpect_num(path, o, "downsample_padding", 1) || jexpect_num(path, o, "mid_block_scale_factor", 1) ||
        jexpect_num(path, o, "conv_in_kernel", 3) || jexpect_num(path, o, "conv_out_kernel", 3) ||
        jexpect_num(path, o, "resnet_out_scale_factor", 1) || jexpect_bool(path, o, "only_cross_attention", 0) ||
        jexpect_bool(path, o, "dual_cross_attention", 0) || jexpect_bool(path, o, "resnet_skip_time_act", 0) ||
        jabsent(path, o, "class_embed_type") || jabsent(path, o, "num_class_embeds") ||
        jabsent(path, o, "addition_embed_type") || jabsent(path, o, "encoder_hid_dim") ||
        jabsent(path, o, "time_cond_proj_dim") || jabsent(path, o, "time_embedding_dim") ||
        jabsent(path, o, "timestep_post_act") || jabsent(path, o, "cross_attention_norm"))
        return -1;
    return check_unet(path, u);
}

static int parse_vae(const char *path, const cJSON *o, vae_config *v)
{
    int nb = v->n_blocks;
    if (jpos(path, o, "in_channels", &v->in_channels) || jpos(path, o, "out_channels", &v->out_channels) ||
        jpos(path, o, "latent_channels", &v->latent_channels) || jpos(path, o, "sample_size", &v->sample_size) ||
        jint_list(path, o, "block_out_channels", v->block_out_channels, &nb) ||
        jpos(path, o, "layers_per_block", &v->layers_per_block) ||
        jpos(path, o, "norm_num_groups", &v->norm_num_groups) ||
        jfloat(path, o, "scaling_factor", &v->scaling_factor) || jexpect(path, o, "act_fn", "silu") ||
        jexpect_bool(path, o, "mid_block_add_attention", 1))
        return -1;
    v->n_blocks = nb;
    const char *keys[2] = {"down_block_types", "up_block_types"}, *want[2] = {"DownEncoderBlock2D", "UpDecoderBlock2D"};
    for (int k = 0; k < 2; k++) {
        const cJSON *a = jget(o, keys[k]);
        if (!a) continue;
        if (!cJSON_IsArray(a)) return err_set("%s: \"%s\" must be a list of block names", path, keys[k]);
        if (cJSON_GetArraySize(a) != nb)
            return err_set("%s: %d block_out_channels but %d %s", path, nb, cJSON_GetArraySize(a), keys[k]);
        for (int i = 0; i < nb; i++) {
            const cJSON *e = cJSON_GetArrayItem(a, i);
            if (!cJSON_IsString(e)) return err_set("%s: \"%s\"[%d] must be a string", path, keys[k], i);
            if (strcmp(e->valuestring, want[k]))
                return err_set("%s: \"%s\"[%d] is \"%s\"; only %s is supported", path, keys[k], i, e->valuestring,
                               want[k]);
        }
    }
    for (int i = 0; i < nb; i++)
        if (v->block_out_channels[i] % v->norm_num_groups)
            return err_set("%s: block_out_channels[%d]=%d is not a multiple of norm_num_groups=%d", path, i,
                           v->block_out_channels[i], v->norm_num_groups);
    return check_vae(path, v);
}

static int parse_clip(const char *path, const cJSON *o, clip_config *c)
{
    const char *act;
    if (jpos(path, o, "vocab_size", &c->vocab_size) || jpos(path, o, "hidden_size", &c->hidden_size) ||
        jpos(path, o, "intermediate_size", &c->intermediate_size) ||
        jpos(path, o, "num_hidden_layers", &c->num_hidden_layers) ||
        jpos(path, o, "num_attention_heads", &c->num_attention_heads) ||
        jpos(path, o, "max_position_embeddings", &c->max_position_embeddings) ||
        jfloat(path, o, "layer_norm_eps", &c->layer_norm_eps) || jint(path, o, "bos_token_id", &c->bos_token_id) ||
        jint(path, o, "eos_token_id", &c->eos_token_id) || jint(path, o, "pad_token_id", &c->pad_token_id) ||
        jstr(path, o, "hidden_act", &act))
        return -1;
    if (act) {
        if (!strcmp(act, "quick_gelu")) c->hidden_act = SD_ACT_QUICK_GELU;
        else if (!strcmp(act, "gelu")) c->hidden_act = SD_ACT_GELU;
        else return err_set("%s: \"hidden_act\" is \"%s\"; supported: quick_gelu, gelu", path, act);
    }
    if (c->hidden_size % c->num_attention_heads)
        return err_set("%s: hidden_size %d is not divisible into %d heads", path, c->hidden_size,
                       c->num_attention_heads);
    return check_clip(path, c);
}

static int parse_sched(const char *path, const cJSON *o, sched_config *s)
{
    const char *bs, *ts, *pt, *alg, *st;
    if (jpos(path, o, "num_train_timesteps", &s->num_train_timesteps) ||
        jdouble(path, o, "beta_start", &s->beta_start) || jdouble(path, o, "beta_end", &s->beta_end) ||
        jint(path, o, "steps_offset", &s->steps_offset) || jbool(path, o, "set_alpha_to_one", &s->set_alpha_to_one) ||
        jbool(path, o, "clip_sample", &s->clip_sample) || jfloat(path, o, "clip_sample_range", &s->clip_sample_range) ||
        jpos(path, o, "solver_order", &s->solver_order) ||
        jbool(path, o, "lower_order_final", &s->lower_order_final) ||
        jbool(path, o, "use_karras_sigmas", &s->use_karras_sigmas) ||
        jbool(path, o, "thresholding", &s->thresholding) || jstr(path, o, "beta_schedule", &bs) ||
        jstr(path, o, "timestep_spacing", &ts) || jstr(path, o, "prediction_type", &pt) ||
        jstr(path, o, "algorithm_type", &alg) || jstr(path, o, "solver_type", &st) ||
        jabsent(path, o, "trained_betas") || jexpect_bool(path, o, "rescale_betas_zero_snr", 0))
        return -1;
    if (bs) {
        if (!strcmp(bs, "scaled_linear")) s->beta_schedule_scaled_linear = 1;
        else if (!strcmp(bs, "linear")) s->beta_schedule_scaled_linear = 0;
        else return err_set("%s: \"beta_schedule\" is \"%s\"; supported: linear, scaled_linear", path, bs);
    }
    if (ts) {
        if (!strcmp(ts, "leading")) s->timestep_spacing = SD_SPACING_LEADING;
        else if (!strcmp(ts, "linspace")) s->timestep_spacing = SD_SPACING_LINSPACE;
        else if (!strcmp(ts, "trailing")) s->timestep_spacing = SD_SPACING_TRAILING;
        else return err_set("%s: \"timestep_spacing\" is \"%s\"; supported: leading, linspace, trailing", path, ts);
    }
    if (pt && strcmp(pt, "epsilon"))
        return err_set("%s: \"prediction_type\" is \"%s\"; only epsilon is supported", path, pt);
    if (alg) {
        if (!strcmp(alg, "dpmsolver++")) s->algorithm_dpmsolverpp = 1;
        else if (!strcmp(alg, "dpmsolver")) s->algorithm_dpmsolverpp = 0;
        else return err_set("%s: \"algorithm_type\" is \"%s\"; supported: dpmsolver++", path, alg);
    }
    if (st) {
        if (!strcmp(st, "midpoint")) s->solver_midpoint = 1;
        else if (!strcmp(st, "heun")) s->solver_midpoint = 0;
        else return err_set("%s: \"solver_type\" is \"%s\"; supported: midpoint, heun", path, st);
    }
    return check_sched(path, s);
}

typedef int (*parse_fn)(const char *, const cJSON *, void *);

static int parse_file(const char *path, parse_fn fn, void *cfg)
{
    cJSON *j = json_read(path);
    if (!j) return -1;
    int rc = fn(path, j, cfg);
    cJSON_Delete(j);
    return rc;
}

static int parse_unet_v(const char *p, const cJSON *o, void *c) { return parse_unet(p, o, c); }
static int parse_vae_v(const char *p, const cJSON *o, void *c) { return parse_vae(p, o, c); }
static int parse_clip_v(const char *p, const cJSON *o, void *c) { return parse_clip(p, o, c); }
static int parse_sched_v(const char *p, const cJSON *o, void *c) { return parse_sched(p, o, c); }

int sd_parse_unet_config(const char *path, unet_config *c)
{
    unet_defaults(c);
    return parse_file(path, parse_unet_v, c);
}

int sd_parse_vae_config(const char *path, vae_config *c)
{
    vae_defaults(c);
    return parse_file(path, parse_vae_v, c);
}

int sd_parse_clip_config(const char *path, clip_config *c)
{
    clip_defaults(c);
    return parse_file(path, parse_clip_v, c);
}

int sd_parse_sched_config(const char *path, sched_config *c)
{
    sched_defaults(c);
    return parse_file(path, parse_sched_v, c);
}

static int path_join(char *out, const char *dir, const char *rel)
{
    int n = snprintf(out, SD_PATH_MAX, "%s/%s", dir, rel);
    if (n < 0 || n >= SD_PATH_MAX) return err_set("%s/%s: path too long", dir, rel);
    return 0;
}

int sd_load_configs(const char *dir, unet_config *u, vae_config *v, clip_config *c, sched_config *s)
{
    char p[SD_PATH_MAX];
    if (u && (path_join(p, dir, "unet/config.json") || sd_parse_unet_config(p, u))) return -1;
    if (v && (path_join(p, dir, "vae/config.json") || sd_parse_vae_config(p, v))) return -1;
    if (c && (path_join(p, dir, "text_encoder/config.json") || sd_parse_clip_config(p, c))) return -1;
    if (s && (path_join(p, dir, "scheduler/scheduler_config.json") || sd_parse_sched_config(p, s))) return -1;
    return 0;
}

/* ---------- diffusers -> LDM single-file names (convert_from_ckpt.py, read backwards) ---------- */

static int take(const char **s, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(*s, prefix, n)) return 0;
    *s += n;
    return 1;
}

/* A decimal index followed by '.', e.g. "12." */
static int take_index(const char **s, int *out)
{
    const char *p = *s;
    int v = 0, digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 6) v = v * 10 + (*p++ - '0'), digits++;
    if (!digits || *p != '.') return 0;
    *out = v;
    *s = p + 1;
    return 1;
}

static const char *emit(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static const char *emit(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= len ? NULL : buf;
}

/* ResnetBlock2D sub-names -> LDM ResBlock names */
static const char *unet_res_sub(const char **rest)
{
    static const char *const map[][2] = {
        {"norm1.", "in_layers.0."},          {"conv1.", "in_layers.2."},  {"time_emb_proj.", "emb_layers.1."},
        {"norm2.", "out_layers.0."},         {"conv2.", "out_layers.3."}, {"conv_shortcut.", "skip_connection."},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (take(rest, map[i][0])) return map[i][1];
    return NULL;
}

#define UNET_PFX "model.diffusion_model."

const char *sd_map_unet(const char *name, char *buf, size_t len, void *ctx)
{
    const sd_ldm_map *m = ctx;
    const unet_config *u = m->unet;
    const int per = u->layers_per_block + 1;
    const char *s = name, *sub;
    int i, j;
    if (take(&s, "conv_in.")) return emit(buf, len, UNET_PFX "input_blocks.0.0.%s", s);
    if (take(&s, "time_embedding.linear_1.")) return emit(buf, len, UNET_PFX "time_embed.0.%s", s);
    if (take(&s, "time_embedding.linear_2.")) return emit(buf, len, UNET_PFX "time_embed.2.%s", s);
    if (take(&s, "conv_norm_out.")) return emit(buf, len, UNET_PFX "out.0.%s", s);
    if (take(&s, "conv_out.")) return emit(buf, len, UNET_PFX "out.2.%s", s);
    if (take(&s, "down_blocks.") && take_index(&s, &i) && i < u->n_blocks) {
        if (take(&s, "resnets.") && take_index(&s, &j) && j < u->layers_per_block && (sub = unet_res_sub(&s)))
            return emit(buf, len, UNET_PFX "input_blocks.%d.0.%s%s", 1 + i * per + j, sub, s);
        if (take(&s, "attentions.") && take_index(&s, &j) && j < u->layers_per_block)
            return emit(buf, len, UNET_PFX "input_blocks.%d.1.%s", 1 + i * per + j, s);
        if (take(&s, "downsamplers.0.conv."))
            return emit(buf, len, UNET_PFX "input_blocks.%d.0.op.%s", (i + 1) * per, s);
        return NULL;
    }
    s = name;
    if (take(&s, "mid_block.")) {
        if (take(&s, "resnets.") && take_index(&s, &j) && j < 2 && (sub = unet_res_sub(&s)))
            return emit(buf, len, UNET_PFX "middle_block.%d.%s%s", 2 * j, sub, s);
        if (take(&s, "attentions.0.")) return emit(buf, len, UNET_PFX "middle_block.1.%s", s);
        return NULL;
    }
    if (take(&s, "up_blocks.") && take_index(&s, &i) && i < u->n_blocks) {
        if (take(&s, "resnets.") && take_index(&s, &j) && j < per && (sub = unet_res_sub(&s)))
            return emit(buf, len, UNET_PFX "output_blocks.%d.0.%s%s", i * per + j, sub, s);
        if (take(&s, "attentions.") && take_index(&s, &j) && j < per)
            return emit(buf, len, UNET_PFX "output_blocks.%d.1.%s", i * per + j, s);
        /* the upsampler follows the last layer's resnet (and its attention, where the block has one) */
        if (take(&s, "upsamplers.0.conv."))
            return emit(buf, len, UNET_PFX "output_blocks.%d.%d.conv.%s", i * per + per - 1,
                        u->up_block_types[i] == SD_CROSS_ATTN_UP_BLOCK ? 2 : 1, s);
    }
    return NULL;
}

#define VAE_PFX "first_stage_model."

static const char *vae_res_sub(const char **rest)
{
    static const char *const map[][2] = {
        {"norm1.", "norm1."}, {"conv1.", "conv1."}, {"norm2.", "norm2."}, {"conv2.", "conv2."},
        {"conv_shortcut.", "nin_shortcut."},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (take(rest, map[i][0])) return map[i][1];
    return NULL;
}

/* mid-block attention: diffusers 0.19 names (and the older query/key/value/proj_attn) -> attn_1.* */
static const char *vae_attn_sub(const char **rest)
{
    static const char *const map[][2] = {
        {"group_norm.", "norm."}, {"to_q.", "q."},  {"to_k.", "k."},   {"to_v.", "v."},
        {"to_out.0.", "proj_out."}, {"query.", "q."}, {"key.", "k."}, {"value.", "v."}, {"proj_attn.", "proj_out."},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (take(rest, map[i][0])) return map[i][1];
    return NULL;
}

const char *sd_map_vae(const char *name, char *buf, size_t len, void *ctx)
{
    const sd_ldm_map *m = ctx;
    const int nb = m->n_vae_blocks;
    const char *s = name, *sub;
    int i, j;
    const char *part = take(&s, "encoder.") ? "encoder" : take(&s, "decoder.") ? "decoder" : NULL;
    if (!part) {
        if (take(&s, "quant_conv.") || take(&s, "post_quant_conv.")) return emit(buf, len, VAE_PFX "%s", name);
        return NULL;
    }
    if (take(&s, "conv_in.") || take(&s, "conv_out.")) return emit(buf, len, VAE_PFX "%s", name);
    if (take(&s, "conv_norm_out.")) return emit(buf, len, VAE_PFX "%s.norm_out.%s", part, s);
    if (take(&s, "mid_block.")) {
        if (take(&s, "resnets.") && take_index(&s, &j) && j < 2 && (sub = vae_res_sub(&s)))
            return emit(buf, len, VAE_PFX "%s.mid.block_%d.%s%s", part, j + 1, sub, s);
        if (take(&s, "attentions.0.") && (sub = vae_attn_sub(&s)))
            return emit(buf, len, VAE_PFX "%s.mid.attn_1.%s%s", part, sub, s);
        return NULL;
    }
    if (part[0] == 'e' && take(&s, "down_blocks.") && take_index(&s, &i) && i < nb) {
        if (take(&s, "resnets.") && take_index(&s, &j) && (sub = vae_res_sub(&s)))
            return emit(buf, len, VAE_PFX "encoder.down.%d.block.%d.%s%s", i, j, sub, s);
        if (take(&s, "downsamplers.0.conv.")) return emit(buf, len, VAE_PFX "encoder.down.%d.downsample.conv.%s", i, s);
        return NULL;
    }
    /* the LDM decoder numbers its up blocks from the lowest resolution upwards: reversed */
    if (part[0] == 'd' && take(&s, "up_blocks.") && take_index(&s, &i) && i < nb) {
        if (take(&s, "resnets.") && take_index(&s, &j) && (sub = vae_res_sub(&s)))
            return emit(buf, len, VAE_PFX "decoder.up.%d.block.%d.%s%s", nb - 1 - i, j, sub, s);
        if (take(&s, "upsamplers.0.conv."))
            return emit(buf, len, VAE_PFX "decoder.up.%d.upsample.conv.%s", nb - 1 - i, s);
    }
    return NULL;
}

const char *sd_map_clip(const char *name, char *buf, size_t len, void *ctx)
{
    const sd_ldm_map *m = ctx;
    const char *s = name;
    if (!take(&s, "text_model.")) return NULL;
    return m->clip_has_text_model ? emit(buf, len, "cond_stage_model.transformer.text_model.%s", s)
                                  : emit(buf, len, "cond_stage_model.transformer.%s", s);
}

/* ---------- model_index.json ---------- */

/* A short description of a JSON value for messages. */
static const char *json_kind(const cJSON *v, char *buf, size_t len)
{
    if (cJSON_IsNumber(v)) snprintf(buf, len, "%g", v->valuedouble);
    else if (cJSON_IsString(v)) snprintf(buf, len, "\"%.40s\"", v->valuestring);
    else if (cJSON_IsBool(v)) snprintf(buf, len, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsNull(v)) snprintf(buf, len, "null");
    else if (cJSON_IsArray(v)) snprintf(buf, len, "a list of %d entries", cJSON_GetArraySize(v));
    else snprintf(buf, len, "an object");
    return buf;
}

/* diffusers' [library, class] pair; with_null: nulls (a component left out, [null, null]) also pass. */
static int is_pair(const cJSON *v, int with_null)
{
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2) return 0;
    for (int i = 0; i < 2; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsString(e) && !(with_null && cJSON_IsNull(e))) return 0;
    }
    return 1;
}

/* The pipeline's component list as diffusers' from_pretrained reads it. genie builds the five parts of a Stable
 * Diffusion pipeline itself, so each must be listed with a class it implements; the scheduler's class is not used
 * (the engine runs DDIM or DPM-Solver++ on its config). Other list entries must be pairs too; plain values
 * (requires_safety_checker) are pipeline arguments. */
static int check_model_index(const char *path)
{
    static const struct {
        const char *key, *library, *cls[3];
    } parts[] = {
        {"unet", "diffusers", {"UNet2DConditionModel"}},
        {"vae", "diffusers", {"AutoencoderKL"}},
        {"text_encoder", "transformers", {"CLIPTextModel"}},
        {"tokenizer", "transformers", {"CLIPTokenizer", "CLIPTokenizerFast"}},
        {"scheduler", "diffusers", {NULL}},
    };
    cJSON *j = json_read(path);
    if (!j) return -1;
    char got[64];
    int rc = 0;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "_class_name");
    if (e && !cJSON_IsString(e))
        rc = err_set("%s: \"_class_name\" must be a string, got %s", path, json_kind(e, got, sizeof got));
    for (size_t i = 0; !rc && i < sizeof parts / sizeof *parts; i++) {
        const char *key = parts[i].key, *lib = parts[i].library;
        const char *c0 = parts[i].cls[0] ? parts[i].cls[0] : "PNDMScheduler";
        e = cJSON_GetObjectItemCaseSensitive(j, key);
        if (!e) {
            rc = err_set("%s: no \"%s\" entry (a Stable Diffusion pipeline lists unet, vae, text_encoder, "
                         "tokenizer and scheduler)", path, key);
        } else if (!is_pair(e, 0)) {
            rc = err_set("%s: \"%s\" must be a [library, class] pair such as [\"%s\", \"%s\"], got %s", path, key, lib,
                         c0, json_kind(e, got, sizeof got));
        } else {
            const char *l = cJSON_GetArrayItem(e, 0)->valuestring, *c = cJSON_GetArrayItem(e, 1)->valuestring;
            int known = !parts[i].cls[0];
            for (int k = 0; k < 3 && parts[i].cls[k]; k++) known |= !strcmp(c, parts[i].cls[k]);
            if (strcmp(l, lib))
                rc = err_set("%s: \"%s\" is from library \"%.40s\"; expected \"%s\"", path, key, l, lib);
            else if (!known)
                rc = err_set("%s: \"%s\" is a %.60s; genie implements %s%s%s", path, key, c, c0,
                             parts[i].cls[1] ? " and " : "", parts[i].cls[1] ? parts[i].cls[1] : "");
        }
    }
    cJSON_ArrayForEach(e, j) {
        if (rc) break;
        if (e->string[0] != '_' && cJSON_IsArray(e) && !is_pair(e, 1))
            rc = err_set("%s: \"%s\" must be a [library, class] pair (or nulls), got %s", path, e->string,
                         json_kind(e, got, sizeof got));
    }
    cJSON_Delete(j);
    return rc;
}

/* ---------- finding the model ---------- */

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int dir_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* dir/sub/<first existing candidate> into out */
static int find_weights(char *out, const char *dir, const char *sub, const char *const *cands)
{
    char rel[256];
    for (int i = 0; cands[i]; i++) {
        snprintf(rel, sizeof rel, "%s/%s", sub, cands[i]);
        if (path_join(out, dir, rel)) return -1;
        if (file_exists(out)) return 0;
    }
    return err_set("%s/%s: no weights (looked for %s, %s; .bin files are not supported: convert to safetensors)",
                   dir, sub, cands[0], cands[1]);
}

/* dir/sub as a CLIP tokenizer folder, into out: 1 when it holds vocab.json and merges.txt, 0 when there is no such
 * folder, -1 naming the missing file (found here, not as a token id outside a smaller vocabulary later). */
static int tokenizer_at(char *out, const char *dir, const char *sub)
{
    static const char *const files[] = {"vocab.json", "merges.txt"};
    char p[SD_PATH_MAX];
    if (path_join(out, dir, sub)) return -1;
    if (!dir_exists(out)) return 0;
    for (int i = 0; i < 2; i++) {
        if (path_join(p, out, files[i])) return -1;
        if (!file_exists(p))
            return err_set("%s: missing (a CLIP tokenizer folder needs vocab.json and merges.txt)", p);
    }
    return 1;
}

/* A single file carries no tokenizer: config_dir's or the checkpoint folder's tokenizer/, else the project's copy
 * of the CLIP vocabulary (relative to the working directory, then to the executable). */
static int find_tokenizer(sd_model *m, const char *config_dir, const char *near_dir)
{
    int r = config_dir ? tokenizer_at(m->tokenizer_dir, config_dir, "tokenizer") : 0;
    if (!r) r = tokenizer_at(m->tokenizer_dir, near_dir, "tokenizer");
    if (!r) r = tokenizer_at(m->tokenizer_dir, ".", "data/clip-tokenizer");
    char exe[SD_PATH_MAX];
    ssize_t n = r ? -1 : readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            r = tokenizer_at(m->tokenizer_dir, exe, "data/clip-tokenizer");
        }
    }
    if (r < 0) return -1;
    if (!r) return err_set("%s: no tokenizer/ folder next to the model and no data/clip-tokenizer", near_dir);
    if (!strncmp(m->tokenizer_dir, "./", 2))
        memmove(m->tokenizer_dir, m->tokenizer_dir + 2, strlen(m->tokenizer_dir) - 1);
    return 0;
}

static const st_tensor *need(const st_file *f, const char *name, int ndim)
{
    const st_tensor *t = st_find(f, name);
    if (!t) err_set("%s: tensor %s is missing (not an SD 1.x checkpoint?)", st_path(f), name);
    else if (t->ndim != ndim) {
        err_set("%s: tensor %s has %d dimensions, expected %d", st_path(f), name, t->ndim, ndim);
        return NULL;
    }
    return t;
}

static int has(const st_file *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int has(const st_file *f, const char *fmt, ...)
{
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return st_find(f, name) != NULL;
}

static int infer_unet(const st_file *f, unet_config *u)
{
    const st_tensor *t;
    if (!(t = need(f, UNET_PFX "input_blocks.0.0.weight", 4))) return -1;
    u->in_channels = (int)t->shape[1];
    if (!(t = need(f, UNET_PFX "out.2.weight", 4))) return -1;
    u->out_channels = (int)t->shape[0];
    /* input_blocks: conv_in, then per block layers_per_block resnets and (but the last) one downsampler */
    int lpb = 0;
    while (has(f, UNET_PFX "input_blocks.%d.0.in_layers.0.weight", lpb + 1)) lpb++;
    if (lpb == 0 || lpb > 16) return err_set("%s: cannot count the UNet's layers per block", st_path(f));
    int per = lpb + 1, nb = 1;
    while (has(f, UNET_PFX "input_blocks.%d.0.op.weight", nb * per)) nb++;
    if (nb > SD_MAX_BLOCKS) return err_set("%s: %d UNet blocks (at most %d supported)", st_path(f), nb, SD_MAX_BLOCKS);
    u->layers_per_block = lpb;
    u->n_blocks = nb;
    for (int i = 0; i < nb; i++) {
        char name[256];
        snprintf(name, sizeof name, UNET_PFX "input_blocks.%d.0.out_layers.3.weight", 1 + i * per);
        if (!(t = need(f, name, 4))) return -1;
        u->block_out_channels[i] = (int)t->shape[0];
        u->down_block_types[i] = has(f, UNET_PFX "input_blocks.%d.1.proj_in.weight", 1 + i * per)
                                     ? SD_CROSS_ATTN_DOWN_BLOCK : SD_DOWN_BLOCK;
        u->up_block_types[i] = has(f, UNET_PFX "output_blocks.%d.1.proj_in.weight", i * per)
                                   ? SD_CROSS_ATTN_UP_BLOCK : SD_UP_BLOCK;
    }
    if (!(t = need(f, UNET_PFX "middle_block.1.transformer_blocks.0.attn2.to_k.weight", 2))) return -1;
    u->cross_attention_dim = (int)t->shape[1];
    t = st_find(f, UNET_PFX "middle_block.1.proj_in.weight");
    u->use_linear_projection = t && t->ndim == 2;
    int tl = 0;
    while (has(f, UNET_PFX "middle_block.1.transformer_blocks.%d.norm1.weight", tl)) tl++;
    u->transformer_layers_per_block = tl;
    /* heads are not in the tensors: SD 1.x uses 8 everywhere; the OpenCLIP-conditioned SD 2.x uses 64 per head */
    for (int i = 0; i < nb; i++)
        u->attention_head_dim[i] = u->cross_attention_dim == 1024 ? u->block_out_channels[i] / 64 : 8;
    return 0;
}

static int infer_vae(const st_file *f, vae_config *v)
{
    const st_tensor *t;
    if (!(t = need(f, VAE_PFX "encoder.conv_in.weight", 4))) return -1;
    v->in_channels = (int)t->shape[1];
    if (!(t = need(f, VAE_PFX "decoder.conv_out.weight", 4))) return -1;
    v->out_channels = (int)t->shape[0];
    if (!(t = need(f, VAE_PFX "decoder.conv_in.weight", 4))) return -1;
    v->latent_channels = (int)t->shape[1];
    int nb = 0, lpb = 0;
    while (has(f, VAE_PFX "encoder.down.%d.block.0.conv1.weight", nb)) nb++;
    while (has(f, VAE_PFX "encoder.down.0.block.%d.conv1.weight", lpb)) lpb++;
    if (nb == 0 || nb > SD_MAX_BLOCKS) return err_set("%s: cannot count the VAE's blocks (%d)", st_path(f), nb);
    v->n_blocks = nb;
    v->layers_per_block = lpb;
    for (int i = 0; i < nb; i++) {
        char name[256];
        snprintf(name, sizeof name, VAE_PFX "encoder.down.%d.block.0.conv2.weight", i);
        if (!(t = need(f, name, 4))) return -1;
        v->block_out_channels[i] = (int)t->shape[0];
    }
    return 0;
}

static int infer_clip(const st_file *f, clip_config *c, int *has_text_model)
{
    const char *pfx = "cond_stage_model.transformer.text_model.";
    *has_text_model = has(f, "%sembeddings.token_embedding.weight", pfx);
    if (!*has_text_model) pfx = "cond_stage_model.transformer.";
    char name[256];
    const st_tensor *t;
    snprintf(name, sizeof name, "%sembeddings.token_embedding.weight", pfx);
    if (!(t = need(f, name, 2))) return -1;
    c->vocab_size = (int)t->shape[0];
    c->hidden_size = (int)t->shape[1];
    snprintf(name, sizeof name, "%sembeddings.position_embedding.weight", pfx);
    if (!(t = need(f, name, 2))) return -1;
    c->max_position_embeddings = (int)t->shape[0];
    snprintf(name, sizeof name, "%sencoder.layers.0.mlp.fc1.weight", pfx);
    if (!(t = need(f, name, 2))) return -1;
    c->intermediate_size = (int)t->shape[0];
    int n = 0;
    while (has(f, "%sencoder.layers.%d.mlp.fc1.weight", pfx, n)) n++;
    c->num_hidden_layers = n;
    /* heads are not in the tensors: CLIP uses 64 per head (0 = unknown, a config must say) */
    c->num_attention_heads = c->hidden_size % 64 ? 0 : c->hidden_size / 64;
    return 0;
}

static int load_single(const char *path, const char *config_dir, sd_model *m)
{
    st_file *f = st_open(path);
    if (!f) return -1;
    sd_default_configs(&m->unet, &m->vae, &m->clip, &m->sched);
    int rc = infer_unet(f, &m->unet);
    if (!rc) rc = infer_vae(f, &m->vae);
    if (!rc) rc = infer_clip(f, &m->clip, &m->map.clip_has_text_model);
    st_close(f);
    if (rc) return -1;
    if (config_dir) {
        char p[SD_PATH_MAX];
        if (!dir_exists(config_dir)) return err_set("%s: config folder does not exist", config_dir);
        if (path_join(p, config_dir, "unet/config.json")) return -1;
        if (file_exists(p) && sd_parse_unet_config(p, &m->unet)) return -1;
        if (path_join(p, config_dir, "vae/config.json")) return -1;
        if (file_exists(p) && sd_parse_vae_config(p, &m->vae)) return -1;
        if (path_join(p, config_dir, "text_encoder/config.json")) return -1;
        if (file_exists(p) && sd_parse_clip_config(p, &m->clip)) return -1;
        if (path_join(p, config_dir, "scheduler/scheduler_config.json")) return -1;
        if (file_exists(p) && sd_parse_sched_config(p, &m->sched)) return -1;
    }
    if (!m->clip.num_attention_heads)
        return err_set("%s: CLIP width %d is not a multiple of 64, so its number of heads is unknown: give a config "
                       "folder with text_encoder/config.json", path, m->clip.hidden_size);
    for (int i = 0; i < m->unet.n_blocks; i++)
        if (m->unet.block_out_channels[i] % m->unet.attention_head_dim[i])
            return err_set("%s: UNet block %d has %d channels, not divisible into %d heads: give a config folder with "
                           "unet/config.json", path, i, m->unet.block_out_channels[i], m->unet.attention_head_dim[i]);
    /* sizes read off the tensors go through the same checks as a config's */
    if (check_unet(path, &m->unet) || check_vae(path, &m->vae) || check_clip(path, &m->clip) ||
        check_sched(path, &m->sched))
        return -1;
    m->single_file = 1;
    m->map.unet = &m->unet;
    m->map.n_vae_blocks = m->vae.n_blocks;
    if (strlen(path) >= SD_PATH_MAX) return err_set("%s: path too long", path);
    strcpy(m->unet_path, path);
    strcpy(m->vae_path, path);
    strcpy(m->clip_path, path);
    char dir[SD_PATH_MAX];
    strcpy(dir, path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else strcpy(dir, ".");
    return find_tokenizer(m, config_dir, dir);
}

int sd_model_find(const char *path, const char *config_dir, sd_model *m)
{
    memset(m, 0, sizeof *m);
    if (file_exists(path)) return load_single(path, config_dir, m);
    if (!dir_exists(path)) return err_set("%s: no such model file or folder", path);
    char p[SD_PATH_MAX];
    if (path_join(p, path, "model_index.json")) return -1;
    if (!file_exists(p)) return err_set("%s: not a diffusers folder (no model_index.json)", path);
    if (check_model_index(p) || sd_load_configs(path, &m->unet, &m->vae, &m->clip, &m->sched)) return -1;
    const char *const dw[] = {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors", NULL};
    const char *const tw[] = {"model.safetensors", "model.fp16.safetensors", NULL};
    if (find_weights(m->unet_path, path, "unet", dw) || find_weights(m->vae_path, path, "vae", dw) ||
        find_weights(m->clip_path, path, "text_encoder", tw))
        return -1;
    /* the folder's own tokenizer, always: another one's ids need not fit this text encoder */
    int r = tokenizer_at(m->tokenizer_dir, path, "tokenizer");
    if (!r) err_set("%s: no tokenizer/ folder (model_index.json lists one)", path);
    return r == 1 ? 0 : -1;
}
