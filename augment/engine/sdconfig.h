/* Configuration of the three networks of an SD-1.x-family latent diffusion model and its scheduler, as read from a
 * diffusers folder's config.json files (or set to SD 1.5's values for a single-file checkpoint). Shared by the
 * loader (model_load.c fills them) and the model code (clip.c, vae.c, unet.c build themselves from them).
 *
 * Configs are parsed with diffusers 0.19 semantics: a missing key takes the class's default, a value of the wrong
 * type or an unsupported variant is an error naming the file, the key and the value; every value is checked
 * against its range (sizes positive, eps positive and finite...). */
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
    int time_cond_proj_dim;                     /* 0: none (null); else TimestepEmbedding's cond_proj input width
                                                   (LCM-distilled UNets take the guidance embedding there) */
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

enum sd_sched_kind { SD_SCHED_DDIM, SD_SCHED_DPMPP_2M, SD_SCHED_LCM, SD_SCHED_TCD };
enum sd_spacing { SD_SPACING_UNSET, SD_SPACING_LEADING, SD_SPACING_LINSPACE, SD_SPACING_TRAILING };

typedef struct {
    int num_train_timesteps;
    double beta_start, beta_end;                /* Python floats in diffusers: kept in double */
    int beta_schedule_scaled_linear;            /* 1: scaled_linear, 0: linear */
    int steps_offset;
    int set_alpha_to_one;
    int clip_sample;                            /* -1 when the file does not say: the scheduler class's own
                                                   default (DDIM true, LCM false) */
    float clip_sample_range;                    /* 1.0 */
    enum sd_spacing timestep_spacing;           /* UNSET: the scheduler class's own 0.19 default
                                                   (DDIM "leading", DPM-Solver "linspace") */
    int prediction_epsilon;                     /* 1: epsilon, 0: v_prediction (LCM only; DDIM and DPM-Solver
                                                   refuse it when built) */
    /* DPM-Solver++ settings (used only by that scheduler; unsupported values are rejected when it is built) */
    int solver_order;                           /* 2 */
    int algorithm_dpmsolverpp;                  /* 1: "dpmsolver++" */
    int solver_midpoint;                        /* 1: "midpoint", 0: "heun" */
    int lower_order_final;                      /* 1 */
    int use_karras_sigmas;                      /* 0 */
    int thresholding;                           /* 0 */
    /* LCMScheduler settings (diffusers 0.27) */
    int original_inference_steps;               /* 50: the distillation schedule the inference steps come from */
    float timestep_scaling;                     /* 10.0: boundary-condition scalings c_skip, c_out */
} sched_config;

/* Each parser reads one config.json; missing keys take diffusers' defaults. 0, or -1 + err_msg(). */
int sd_parse_unet_config(const char *path, unet_config *c);
int sd_parse_vae_config(const char *path, vae_config *c);
int sd_parse_clip_config(const char *path, clip_config *c);
int sd_parse_sched_config(const char *path, sched_config *c);

/* SD 1.5's configs (what convert_from_ckpt.py assumes for a v1 checkpoint). */
void sd_default_configs(unet_config *u, vae_config *v, clip_config *c, sched_config *s);

/* The range checks a parsed config gets, for configs filled otherwise (a single file's sizes); messages name
 * path. 0, or -1 + err_msg(). */
int sd_check_configs(const char *path, const unet_config *u, const vae_config *v, const clip_config *c,
                     const sched_config *s);

#endif
