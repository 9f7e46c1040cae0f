/* The networks' configs (see sdconfig.h): SD 1.5's values, diffusers 0.19's defaults and semantics when a
 * config.json is read, and the ranges the model code can run. */
#include "augment/engine/sdconfig.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>
#include "common/err.h"
#include "common/jsonfile.h"

/* ---------- JSON accessors: each names the file and key on a type error ---------- */

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
    /* DDIMScheduler / DPMSolverMultistepScheduler defaults (shared keys agree; set_alpha_to_one is DDIM's;
     * timestep_spacing and clip_sample differ per class and stay UNSET) */
    memset(s, 0, sizeof *s);
    s->num_train_timesteps = 1000;
    s->beta_start = 0.0001;
    s->beta_end = 0.02;
    s->beta_schedule_scaled_linear = 0;
    s->steps_offset = 0;
    s->set_alpha_to_one = 1;
    s->clip_sample = -1;
    s->clip_sample_range = 1.0f;
    s->timestep_spacing = SD_SPACING_UNSET;
    s->prediction_epsilon = 1;
    s->solver_order = 2;
    s->algorithm_dpmsolverpp = 1;
    s->solver_midpoint = 1;
    s->lower_order_final = 1;
    s->use_karras_sigmas = 0;
    s->thresholding = 0;
    s->original_inference_steps = 50;
    s->timestep_scaling = 10.0f;
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
    /* the guidance embedding's frequencies divide by half its width minus one */
    if (u->time_cond_proj_dim < 0 || (u->time_cond_proj_dim > 0 && u->time_cond_proj_dim < 4))
        return err_set("%s: \"time_cond_proj_dim\" is %d; it must be at least 4", path, u->time_cond_proj_dim);
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
    if (s->original_inference_steps < 1 || s->original_inference_steps > s->num_train_timesteps)
        return err_set("%s: \"original_inference_steps\" %d is outside 1..num_train_timesteps (%d)", path,
                       s->original_inference_steps, s->num_train_timesteps);
    return need_eps(path, "timestep_scaling", s->timestep_scaling);
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
        jpos(path, o, "time_cond_proj_dim", &u->time_cond_proj_dim) || jabsent(path, o, "time_embedding_dim") ||
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
        jpos(path, o, "original_inference_steps", &s->original_inference_steps) ||
        jfloat(path, o, "timestep_scaling", &s->timestep_scaling) ||
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
    if (pt) {
        if (!strcmp(pt, "epsilon")) s->prediction_epsilon = 1;
        else if (!strcmp(pt, "v_prediction")) s->prediction_epsilon = 0;
        else return err_set("%s: \"prediction_type\" is \"%s\"; supported: epsilon, v_prediction (lcm only)", path, pt);
    }
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

/* a diffusers config is a few kB; the cap only stops a wrong path from being read whole */
#define CONFIG_MAX_BYTES (64 << 20)

static int parse_file(const char *path, parse_fn fn, void *cfg)
{
    cJSON *j = jsonfile_read(path, CONFIG_MAX_BYTES, NULL);
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

int sd_check_configs(const char *path, const unet_config *u, const vae_config *v, const clip_config *c,
                     const sched_config *s)
{
    return check_unet(path, u) || check_vae(path, v) || check_clip(path, c) || check_sched(path, s) ? -1 : 0;
}
