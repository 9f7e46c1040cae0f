/* The latent diffusion engine: SD-1.x-family img2img / txt2img as diffusers 0.19's
 * StableDiffusionImg2ImgPipeline computes it (CFG with the empty negative prompt, VAE posterior sample * scaling
 * factor, add_noise at the first kept timestep, int(N * r) denoising steps), batched over items.
 *
 * One engine is driven by one thread. All work memory is allocated by engine_load for max_batch items at the
 * chosen image size, on the chosen backend (engine_opts.device); engine_img2img never allocates. A call's state
 * (latents, noise, text context, scheduler state) stays in backend memory from the noise to the decoded image:
 * images go up once and come down once, and the latents are checked for NaN/inf once per step. Noise comes from
 * Philox keyed by the item's (seed, stream) and a purpose, so an item's result does not depend on what else is in
 * its batch (nor, to rounding, on the backend). */
#ifndef GENIE_ENGINE_H
#define GENIE_ENGINE_H
#include <stddef.h>
#include <stdint.h>
#include "augment/engine/lora.h"
#include "augment/engine/sdconfig.h"

typedef struct engine engine;

typedef struct {
    const char *model;              /* diffusers folder or single-file .safetensors checkpoint */
    const char *config_dir;         /* optional diffusers config files overriding a single file's inferred ones */
    const char *device;             /* backend (backend.h): "cpu" (also NULL), "cuda" or "cuda:N" */
    const char *precision;          /* weights' precision (backend.h): "f32", "f16", "bf16"; NULL: the device's
                                     * default (f16 on CUDA, f32 on the CPU) */
    int threads;                    /* CPU threads; <= 0: all online CPUs */
    int max_batch;                  /* most items per engine_img2img call */
    int vae_batch;                  /* images per VAE encode/decode call (memory vs. speed); <= 0: 1 */
    int height, width;              /* image size; 0: the model's (UNet sample_size x VAE factor) */
    enum sd_sched_kind scheduler;
    int steps;                      /* inference steps N of the full schedule */
    double eta;                     /* tcd: TCDScheduler.step's eta (the paper's gamma), 0 (deterministic) .. 1 */
    double guidance;                /* classifier-free guidance scale; <= 1 disables CFG (batch not doubled). A UNet
                                     * with time_cond_proj_dim (LCM-distilled) takes it as its guidance embedding
                                     * of guidance - 1 instead: one UNet row per item, never a CFG pair */
    int vae_mean;                   /* 1: use the posterior mean instead of sampling it */
    /* LoRA files merged into the UNet and text encoder weights at load (lora.h): "file.safetensors[:multiplier]" */
    const char *lora[LORA_MAX];
    int n_lora;
    /* called after every denoising step (may be NULL): step 1..total */
    void (*progress)(void *ctx, int step, int total);
    void *progress_ctx;
    /* for tests and inspection (may be NULL): an item's latents [latent_channels, h, w] once initialised
     * (step_index -1) and after each of its steps (the index into the full schedule); a host copy, so tracing
     * waits for the device */
    void (*trace)(void *ctx, int item, int step_index, const float *latents);
    void *trace_ctx;
    /* optional: once *cancel is non-zero, engine_img2img stops before its next denoising step (-1, "cancelled") */
    const int *cancel;              /* read atomically */
    /* 1: an item whose latents go non-finite is marked (engine_item.nonfinite) and the rest of its batch goes on;
     * 0: the whole call fails naming the item and step */
    int drop_nonfinite;
} engine_opts;

/* Defaults: max_batch 1, DDIM, 50 steps, guidance 7.5, tcd eta 0.3 (diffusers' step default), sampled posterior,
 * model size. */
void engine_opts_default(engine_opts *o);

/* NULL + err_msg() (missing files, bad configs, shapes, sizes). */
engine *engine_load(const engine_opts *o);
void engine_free(engine *e);

/* Tokenizes and CLIP-encodes text (cached by text); returns a handle >= 0, or -1 + err_msg(). */
int engine_prompt(engine *e, const char *text);

typedef struct {
    const float *image;             /* 3 x H x W in [0,1] (planar RGB), or NULL for txt2img */
    int prompt;                     /* handle from engine_prompt */
    double r;                       /* strength in (0,1]: int(steps * r) denoising steps; lcm: all steps, drawn from
                                     * int(original_inference_steps * r) original timesteps (ignored for txt2img) */
    uint64_t seed, stream;          /* Philox key and stream of this item's noise (also lcm's between steps) */
    float *out;                     /* 3 x H x W in [0,1] */
    const float *vae_noise;         /* optional [latent_channels, h, w]: the posterior sample's epsilon */
    const float *latent_noise;      /* optional [latent_channels, h, w]: add_noise's epsilon / txt2img start */
    float *latents_out;             /* optional [latent_channels, h, w]: the final latents (before decoding) */
    int nonfinite;                  /* out, with drop_nonfinite: 1 when this item failed and out is not valid */
} engine_item;

/* Runs n <= max_batch items as one batch: each joins the union of timesteps at its own start index
 * N - int(N * r) (txt2img: 0; lcm: 0, each item on its own timesteps) and all items' UNet evaluations at a step
 * run together. 0, or -1 + err_msg() (r outside (0,1] or too small for one step, bad prompt handle, NaN in the
 * latents naming the step). */
int engine_img2img(engine *e, engine_item *items, int n);

/* VAE round trip of n <= max_batch items: out = decode(encode(image)) with the posterior mean (no noise, no
 * UNet): what the autoencoder alone does to an image. Uses each item's image and out. 0, or -1 + err_msg(). */
int engine_roundtrip(engine *e, engine_item *items, int n);

typedef struct {
    int height, width;              /* image size */
    int latent_channels, latent_h, latent_w;
    int steps, max_batch;
    int cfg_pair;                   /* 1: every item takes two UNet rows (CFG); 0: one (guidance <= 1, or a UNet
                                     * that takes the guidance as its embedding) */
    size_t weight_file_bytes;       /* size of the weight files on disk (a single file counted once) */
    const char *device, *precision; /* the backend's name ("cpu", "cuda") and weights' precision ("f32", ...) */
    /* the backend's memory now (bytes): weights in their stored precision, buffers (arenas, state, scratch),
     * the peak of the two together, host staging buffers; the whole device as the driver reports it (0 on the
     * CPU) */
    size_t mem_weights, mem_buffers, mem_peak, mem_host;
    size_t device_used, device_total;
} engine_info;

void engine_get_info(const engine *e, engine_info *info);

/* One UNet evaluation at batch B (CFG not applied) on the engine's buffers, for benchmarks. -1 + err_msg(). */
int engine_bench_unet(engine *e, int B);

#endif
