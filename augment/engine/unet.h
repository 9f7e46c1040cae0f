/* The denoising UNet of latent diffusion (diffusers UNet2DConditionModel, SD 1.x/2.x family): sinusoidal time
 * embedding (plus cond_proj of a timestep condition where the config has time_cond_proj_dim), down path of ResNet (+ cross-attention transformer) blocks, cross-attention mid block, up path with
 * skip concatenation, GroupNorm-SiLU-conv head. */
#ifndef GENIE_UNET_H
#define GENIE_UNET_H
#include "augment/engine/backend/ops.h"
#include "augment/engine/sdconfig.h"
#include "augment/engine/weights.h"

typedef struct unet_model unet_model;

/* Builds the UNet from cfg and w on backend be, with work memory for up to max_batch latents of max_h x max_w
 * and contexts of up to max_ctx tokens. NULL + err_msg() on a missing or mis-shaped tensor or an unsupported
 * config. */
unet_model *unet_load(const unet_config *cfg, weights *w, ops_backend *be, int max_batch, int max_h, int max_w,
                      int max_ctx);
/* out[B, out_channels, h, w] = eps prediction for x[B, in_channels, h, w] at timesteps t[B] (float, per item,
 * on the host) with context ctx[B, L, cross_attention_dim] and, for a UNet with time_cond_proj_dim, the
 * timestep_cond tcond[B, time_cond_proj_dim] (NULL: none, as diffusers' timestep_cond=None). x, tcond, ctx and
 * out are buffers of the model's backend (host memory on the CPU backend). h and w must be multiples of
 * unet_factor. -1 + err_msg() on a size beyond the arena or, with checks on, a non-finite value (naming the
 * stage). */
int unet_forward(unet_model *m, const float *x, const float *t, const float *tcond, const float *ctx, int B, int h,
                 int w, int L, float *out);
/* on (the default): a finite check after every block, naming the first stage that went bad; off: none (the
 * engine checks the latents once per denoising step instead: each check waits for a device) */
void unet_set_checks(unet_model *m, int on);
int unet_factor(const unet_model *m);
void unet_free(unet_model *m);

#endif
