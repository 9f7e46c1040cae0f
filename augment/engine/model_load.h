/* Finding an SD-1.x-family model on disk and describing it: a diffusers folder (model_index.json, unet/, vae/,
 * text_encoder/, tokenizer/, scheduler/, each with its config.json; parsed by sdconfig.h) or a single-file LDM
 * checkpoint (.safetensors with model.diffusion_model.*, first_stage_model.*, cond_stage_model.transformer.* keys;
 * its weight names through ldm_map.h). For a single file the configs start from SD 1.5's values and take every
 * size the tensors tell (channels, blocks, layers, latent channels, context width, CLIP sizes); a config folder
 * may override them. */
#ifndef GENIE_MODEL_LOAD_H
#define GENIE_MODEL_LOAD_H
#include "augment/engine/ldm_map.h"
#include "augment/engine/sdconfig.h"

#define SD_PATH_MAX 4096

/* Reads dir/{unet,vae,text_encoder}/config.json and dir/scheduler/scheduler_config.json; any pointer may be NULL
 * to skip that part. 0, or -1 + err_msg(). */
int sd_load_configs(const char *dir, unet_config *u, vae_config *v, clip_config *c, sched_config *s);

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
 * against its range. 0, or -1 + err_msg() naming the file and key. */
int sd_model_find(const char *path, const char *config_dir, sd_model *m);

#endif
