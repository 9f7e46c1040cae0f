/* Model discovery (see model_load.h): a diffusers folder's model_index.json and files, or a single-file
 * checkpoint's sizes read off its tensors. */
#include "augment/engine/model_load.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/err.h"
#include "common/jsonfile.h"
#include "augment/engine/safetensors.h"

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
 * (the engine runs DDIM, DPM-Solver++ or LCM on its config). Other list entries must be pairs too; plain values
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
    cJSON *j = jsonfile_read(path, 64 << 20, NULL);   /* a few hundred bytes; the cap stops a wrong path */
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
    if (!(t = need(f, LDM_UNET_PFX "input_blocks.0.0.weight", 4))) return -1;
    u->in_channels = (int)t->shape[1];
    if (!(t = need(f, LDM_UNET_PFX "out.2.weight", 4))) return -1;
    u->out_channels = (int)t->shape[0];
    /* input_blocks: conv_in, then per block layers_per_block resnets and (but the last) one downsampler */
    int lpb = 0;
    while (has(f, LDM_UNET_PFX "input_blocks.%d.0.in_layers.0.weight", lpb + 1)) lpb++;
    if (lpb == 0 || lpb > 16) return err_set("%s: cannot count the UNet's layers per block", st_path(f));
    int per = lpb + 1, nb = 1;
    while (has(f, LDM_UNET_PFX "input_blocks.%d.0.op.weight", nb * per)) nb++;
    if (nb > SD_MAX_BLOCKS) return err_set("%s: %d UNet blocks (at most %d supported)", st_path(f), nb, SD_MAX_BLOCKS);
    u->layers_per_block = lpb;
    u->n_blocks = nb;
    for (int i = 0; i < nb; i++) {
        char name[256];
        snprintf(name, sizeof name, LDM_UNET_PFX "input_blocks.%d.0.out_layers.3.weight", 1 + i * per);
        if (!(t = need(f, name, 4))) return -1;
        u->block_out_channels[i] = (int)t->shape[0];
        u->down_block_types[i] = has(f, LDM_UNET_PFX "input_blocks.%d.1.proj_in.weight", 1 + i * per)
                                     ? SD_CROSS_ATTN_DOWN_BLOCK : SD_DOWN_BLOCK;
        u->up_block_types[i] = has(f, LDM_UNET_PFX "output_blocks.%d.1.proj_in.weight", i * per)
                                   ? SD_CROSS_ATTN_UP_BLOCK : SD_UP_BLOCK;
    }
    if (!(t = need(f, LDM_UNET_PFX "middle_block.1.transformer_blocks.0.attn2.to_k.weight", 2))) return -1;
    u->cross_attention_dim = (int)t->shape[1];
    t = st_find(f, LDM_UNET_PFX "middle_block.1.proj_in.weight");
    u->use_linear_projection = t && t->ndim == 2;
    int tl = 0;
    while (has(f, LDM_UNET_PFX "middle_block.1.transformer_blocks.%d.norm1.weight", tl)) tl++;
    u->transformer_layers_per_block = tl;
    /* heads are not in the tensors: SD 1.x uses 8 everywhere; the OpenCLIP-conditioned SD 2.x uses 64 per head */
    for (int i = 0; i < nb; i++)
        u->attention_head_dim[i] = u->cross_attention_dim == 1024 ? u->block_out_channels[i] / 64 : 8;
    return 0;
}

static int infer_vae(const st_file *f, vae_config *v, int *attn_to_qkv)
{
    const st_tensor *t;
    if (!(t = need(f, LDM_VAE_PFX "encoder.conv_in.weight", 4))) return -1;
    v->in_channels = (int)t->shape[1];
    if (!(t = need(f, LDM_VAE_PFX "decoder.conv_out.weight", 4))) return -1;
    v->out_channels = (int)t->shape[0];
    if (!(t = need(f, LDM_VAE_PFX "decoder.conv_in.weight", 4))) return -1;
    v->latent_channels = (int)t->shape[1];
    int nb = 0, lpb = 0;
    while (has(f, LDM_VAE_PFX "encoder.down.%d.block.0.conv1.weight", nb)) nb++;
    while (has(f, LDM_VAE_PFX "encoder.down.0.block.%d.conv1.weight", lpb)) lpb++;
    if (nb == 0 || nb > SD_MAX_BLOCKS) return err_set("%s: cannot count the VAE's blocks (%d)", st_path(f), nb);
    v->n_blocks = nb;
    v->layers_per_block = lpb;
    for (int i = 0; i < nb; i++) {
        char name[256];
        snprintf(name, sizeof name, LDM_VAE_PFX "encoder.down.%d.block.0.conv2.weight", i);
        if (!(t = need(f, name, 4))) return -1;
        v->block_out_channels[i] = (int)t->shape[0];
    }
    *attn_to_qkv = has(f, LDM_VAE_PFX "encoder.mid.attn_1.to_q.weight");
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
    if (!rc) rc = infer_vae(f, &m->vae, &m->map.vae_attn_to_qkv);
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
    /* diffusers' convert_ldm_unet_checkpoint maps no time_embedding.cond_proj: an LDM file never carries one */
    if (m->unet.time_cond_proj_dim)
        return err_set("%s: the UNet config has time_cond_proj_dim %d, but a single-file checkpoint carries no "
                       "time_embedding.cond_proj (LCM-distilled UNets load from a diffusers folder)", path,
                       m->unet.time_cond_proj_dim);
    if (!m->clip.num_attention_heads)
        return err_set("%s: CLIP width %d is not a multiple of 64, so its number of heads is unknown: give a config "
                       "folder with text_encoder/config.json", path, m->clip.hidden_size);
    for (int i = 0; i < m->unet.n_blocks; i++)
        if (m->unet.block_out_channels[i] % m->unet.attention_head_dim[i])
            return err_set("%s: UNet block %d has %d channels, not divisible into %d heads: give a config folder with "
                           "unet/config.json", path, i, m->unet.block_out_channels[i], m->unet.attention_head_dim[i]);
    /* sizes read off the tensors go through the same checks as a config's */
    if (sd_check_configs(path, &m->unet, &m->vae, &m->clip, &m->sched)) return -1;
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
