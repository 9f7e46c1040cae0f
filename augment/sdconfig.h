/* Configuration of the three networks of an SD-1.x-family latent diffusion model, as read from a diffusers
 * folder's config.json files (or set to SD 1.5's values for a single-file checkpoint). Shared by the loader
 * (model_load.c fills them) and the model code (clip.c, vae.c, unet.c build themselves from them). */
#ifndef GENIE_SDCONFIG_H
#define GENIE_SDCONFIG_H

#define SD_MAX_BLOCKS 8

enum sd_block_type {
    SD_DOWN_BLOCK, SD_CROSS_ATTN_DOWN_BLOCK,   /* DownBlock2D, CrossAttnDownBlock2D */
    SD_UP_BLOCK, SD_CROSS_ATTN_UP_BLOCK,       /* UpBlock2D, CrossAttnUpBlock2D */
};

enum sd_act { SD_ACT_SILU, SD_ACT_GELU, SD_ACT_QUICK_GELU };

typedef struct {
    int in_channels, out_channels, sample_size;
    int n_blocks;                               /* len(block_out_channels) */
    int block_out_channels[SD_MAX_BLOCKS];
    enum sd_block_type down_block_types[SD_MAX_BLOCKS], up_block_types[SD_MAX_BLOCKS];
    int layers_per_block;
    int attention_head_dim[SD_MAX_BLOCKS];      /* per block; in SD 1.x configs this is the number of heads */
    int cross_attention_dim;
    int norm_num_groups;
    float norm_eps;
    int use_linear_projection;
    int flip_sin_to_cos;
    float freq_shift;
    int transformer_layers_per_block;
    /* mid block: UNetMidBlock2DCrossAttn is the only kind supported */
} unet_config;

typedef struct {
    int in_channels, out_channels, latent_channels, sample_size;
    int n_blocks;
    int block_out_channels[SD_MAX_BLOCKS];
    int layers_per_block;
    int norm_num_groups;
    float scaling_factor;
} vae_config;

typedef struct {
    int vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads;
    int max_position_embeddings;
    float layer_norm_eps;
    enum sd_act hidden_act;                     /* quick_gelu for CLIP ViT-L/14 */
    int bos_token_id, eos_token_id, pad_token_id;
} clip_config;

enum sd_sched_kind { SD_SCHED_DDIM, SD_SCHED_DPMPP_2M };

typedef struct {
    int num_train_timesteps;
    float beta_start, beta_end;
    int beta_schedule_scaled_linear;            /* 1: scaled_linear, 0: linear */
    int steps_offset;
    int set_alpha_to_one;
    int clip_sample;
    int timestep_spacing_leading;               /* 1: "leading" (SD 1.5, diffusers 0.19 default) */
    int prediction_epsilon;                     /* 1: epsilon; v_prediction is rejected at load */
} sched_config;

#endif
