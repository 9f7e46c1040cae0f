/* Finding an SD-1.x-family model on disk and describing it: a diffusers folder (model_index.json, unet/, vae/,
 * text_encoder/, tokenizer/, scheduler/, each with its config.json) or a single-file LDM checkpoint
 * (.safetensors with model.diffusion_model.*, first_stage_model.*, cond_stage_model.transformer.* keys).
 *
 * Configs are parsed with diffusers 0.19 semantics: a missing key takes the class's default, a value of the
 * wrong type or an unsupported variant is an error naming the file, the key and the value. For a single file the
 * configs start from SD 1.5's values and take every size the tensors tell (channels, blocks, layers, latent
 * channels, context width, CLIP sizes); a config folder may override them.
 *
 * Weight names: the model code asks for diffusers names ("down_blocks.0.resnets.1.conv1.weight"); for a single
 * file, sd_map_* turn them into the stored LDM names and are meant for weights_set_map. */
#ifndef GENIE_MODEL_LOAD_H
#define GENIE_MODEL_LOAD_H
#include <stddef.h>
#include "augment/engine/sdconfig.h"

#define SD_PATH_MAX 4096

/* Each parser reads one config.json; missing keys take diffusers' defaults. 0, or -1 + err_msg(). */
int sd_parse_unet_config(const char *path, unet_config *c);
int sd_parse_vae_config(const char *path, vae_config *c);
int sd_parse_clip_config(const char *path, clip_config *c);
int sd_parse_sched_config(const char *path, sched_config *c);

/* SD 1.5's configs (what convert_from_ckpt.py assumes for a v1 checkpoint). */
void sd_default_configs(unet_config *u, vae_config *v, clip_config *c, sched_config *s);

/* Reads dir/{unet,vae,text_encoder}/config.json and dir/scheduler/scheduler_config.json; any pointer may be NULL
 * to skip that part. 0, or -1 + err_msg(). */
int sd_load_configs(const char *dir, unet_config *u, vae_config *v, clip_config *c, sched_config *s);

/* Name maps for a single-file checkpoint, one context per network. */
typedef struct {
    const unet_config *unet;
    int n_vae_blocks;
    int clip_has_text_model;        /* 1: cond_stage_model.transformer.text_model.*, 0: without "text_model." */
} sd_ldm_map;

/* Write into buf the stored name of a diffusers-named tensor; return buf, or NULL if it has no LDM counterpart
 * or does not fit. ctx is a const sd_ldm_map *. */
const char *sd_map_unet(const char *name, char *buf, size_t len, void *ctx);
const char *sd_map_vae(const char *name, char *buf, size_t len, void *ctx);
const char *sd_map_clip(const char *name, char *buf, size_t len, void *ctx);

typedef struct {
    int single_file;
    unet_config unet;
    vae_config vae;
    clip_config clip;
    sched_config sched;
    /* weight files: for a single file all three are the same path */
    char unet_path[SD_PATH_MAX], vae_path[SD_PATH_MAX], clip_path[SD_PATH_MAX];
    char tokenizer_dir[SD_PATH_MAX];
    sd_ldm_map map;                 /* filled for a single file; its unet pointer points into this struct */
} sd_model;

/* Opens path (a diffusers folder or a single .safetensors checkpoint); config_dir (may be NULL) holds diffusers
 * config files that override what a single file's tensors tell. m must not be moved afterwards (m->map points into
 * it). A folder's model_index.json must list unet, vae, text_encoder, tokenizer and scheduler as [library, class]
 * pairs genie implements, and its tokenizer/ must hold vocab.json and merges.txt; every config value is checked
 * against its range (sizes positive, eps positive and finite...). 0, or -1 + err_msg() naming the file and key. */
int sd_model_find(const char *path, const char *config_dir, sd_model *m);

#endif
