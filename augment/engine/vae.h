/* The KL autoencoder of latent diffusion (diffusers AutoencoderKL): encoder to the latent Gaussian's mean and
 * log-variance, decoder from latents back to images. */
#ifndef GENIE_VAE_H
#define GENIE_VAE_H
#include "augment/engine/backend/ops.h"
#include "augment/engine/sdconfig.h"
#include "augment/engine/weights.h"

typedef struct vae_model vae_model;

enum { VAE_ENCODER = 1, VAE_DECODER = 2 };

/* Builds the parts named by `parts` (VAE_ENCODER | VAE_DECODER) from cfg and w on backend be, with work memory
 * for up to max_batch images of max_h x max_w pixels. NULL + err_msg() on a missing or mis-shaped tensor. */
vae_model *vae_load(const vae_config *cfg, weights *w, ops_backend *be, int parts, int max_batch, int max_h,
                    int max_w);
/* img[B, in_channels, H, W] in [-1, 1] -> mean, logvar [B, latent, H/f, W/f] (f = vae_factor), after quant_conv,
 * logvar clamped to [-30, 20]. H and W must be multiples of f. -1 + err_msg() beyond the arena or on NaN.
 * img, mean, logvar (and decode's z, img) are buffers of the model's backend (host memory on the CPU backend). */
int vae_encode(vae_model *m, const float *img, int B, int H, int W, float *mean, float *logvar);
/* z[B, latent, h, w] (already divided by scaling_factor) -> img[B, out_channels, h*f, w*f]; post_quant_conv
 * first. */
int vae_decode(vae_model *m, const float *z, int B, int h, int w, float *img);
int vae_factor(const vae_model *m);
void vae_free(vae_model *m);

#endif
