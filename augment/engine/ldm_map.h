/* Weight names of a single-file LDM (CompVis) checkpoint: the model code asks for diffusers names
 * ("down_blocks.0.resnets.1.conv1.weight"); sd_map_* turn them into the stored LDM names (model.diffusion_model.*,
 * first_stage_model.*, cond_stage_model.transformer.*) and are meant for weights_set_map. */
#ifndef GENIE_LDM_MAP_H
#define GENIE_LDM_MAP_H
#include <stddef.h>
#include "augment/engine/sdconfig.h"

/* where the UNet's and the VAE's stored names start */
#define LDM_UNET_PFX "model.diffusion_model."
#define LDM_VAE_PFX "first_stage_model."

/* One context per network. */
typedef struct {
    const unet_config *unet;
    int n_vae_blocks;
    int clip_has_text_model;        /* 1: cond_stage_model.transformer.text_model.*, 0: without "text_model." */
    int vae_attn_to_qkv;            /* VAE mid attention stored as 1: attn_1.to_q/to_k/to_v/to_out.0 (what diffusers
                                     * 0.19's convert script writes for a folder with the 0.14+ names), 0: attn_1.q/k/v/
                                     * proj_out */
} sd_ldm_map;

/* Write into buf the stored name of a diffusers-named tensor; return buf, or NULL if it has no LDM counterpart
 * or does not fit. ctx is a const sd_ldm_map *. */
const char *sd_map_unet(const char *name, char *buf, size_t len, void *ctx);
const char *sd_map_vae(const char *name, char *buf, size_t len, void *ctx);
const char *sd_map_clip(const char *name, char *buf, size_t len, void *ctx);

#endif
