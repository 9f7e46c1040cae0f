/* genie.cfg: the settings of online GeNIe during training, darknet-style ini with one [genie] section. The values
 * shown are the defaults (augment/genie/recipe.c, where each says why).
 *
 *   model=data/models/fmnist-ldm   diffusers folder or single-file checkpoint (must exist)
 *   lora=                          LoRA files merged into the model at load, comma separated, each
 *                                  file.safetensors[:scale] (augment/engine/lora.h; at most LORA_MAX; must exist)
 *   mode=genie-ada                 genie | genie-ada | img2img | txt2img | none
 *   r=0.8                          the fixed r of genie / img2img (txt2img is r = 1); Ada's fallback
 *   r_set=0.5,0.6,0.7,0.8,0.9      Ada's candidate ratios, increasing
 *   steps=25  guidance=3  scheduler=dpmpp2m   (or ddim, lcm, tcd; dpm for short)
 *   eta=0.3                        tcd only: its step's stochasticity (0 keeps the noised source's trajectory)
 *   prompt=A photo of a {}         "{}" becomes the class's words
 *   names=                         optional file: one line per label, the words its prompt uses
 *   targets=few                    few (classes with < 20 training images) | all | a comma list of labels
 *   sources=confused               confused (top_k most confused with the target) | random | same
 *   top_k=4  quota=50              sources per target; generated samples per target (any number: the kept
 *                                  samples the replay serves take at most GENIE_KEPT_MAX_BYTES of memory, the
 *                                  oldest replaced beyond, e.g. 680 samples at 512x512; the cache keeps them all)
 *   share=0.25                     share of each batch's rows taken from generated samples (with tail_share in
 *                                  the .data: share of the tail rows, so generated samples enter only there)
 *   ring=64  reuse=4               samples resident at once; takes before a sample retires
 *   snapshot_every=100             iterations between copies of the trainer's weights into f_theta
 *   embed_layer=-1                 f_theta's layer (-1: the input of the last connected/convolutional layer)
 *   threads=1  batch=10            the module's CPU threads; engine items per call
 *   vae_batch=1                    images per VAE encode/decode call, at most batch (a VAE call on one small
 *                                  image is too small to split over threads; each image's pixels differ from
 *                                  one at a time by float rounding only, as a UNet batch's items do)
 *   device=                        cpu, cuda or cuda:N (empty: cuda in a CUDA build with a device, else cpu;
 *                                  cuda on a generator rank: cuda:<its rank on the machine>)
 *   cache=                         directory of kept samples reused across runs (empty: no cache)
 *   warmup=200                     iterations of this run before the planner trusts the confusion statistics;
 *                                  no generated rows before (sync: nor for the loader's lookahead after)
 *   sync=0                         1: the loader waits for the module's k-th sample (deterministic, slower)
 *   worker_timeout=600             under mpirun (ranks >= 1 generate for rank 0's trainer): seconds a generator rank
 *                                  may take to load or to return a request before it is given up (its requests
 *                                  go to another rank, or run in rank 0 when none is left); the job survives a
 *                                  dead rank only under `mpirun --enable-recovery`
 *
 * Every key is optional (read by common/kv.h). An unknown key (with the nearest known one), a bad value, a second
 * [section], a missing model, or an r or r_set entry that gives no denoising step at these steps (the engine runs
 * int(steps * r)) stops the run before training starts, with the file, line and key. */
#ifndef GENIE_GENIE_CFG_H
#define GENIE_GENIE_CFG_H
#include "augment/genie/ada.h"
#include "augment/engine/lora.h"

enum genie_mode { GENIE_MODE_NONE, GENIE_MODE_GENIE, GENIE_MODE_ADA, GENIE_MODE_IMG2IMG, GENIE_MODE_TXT2IMG };
enum genie_targets { GENIE_TARGETS_FEW, GENIE_TARGETS_ALL, GENIE_TARGETS_LIST };
enum genie_sources { GENIE_SOURCES_CONFUSED, GENIE_SOURCES_RANDOM, GENIE_SOURCES_SAME };

#define GENIE_CFG_MAX_TARGETS 64
/* the online module's kept samples in memory, at most (bytes; W x H x 3 each) */
#define GENIE_KEPT_MAX_BYTES ((size_t)512 << 20)

typedef struct {
    char model[1024], prompt[256], names[1024], cache[1024], device[32];
    char lora[LORA_MAX][1024];       /* "file[:scale]" each */
    int n_lora;
    enum genie_mode mode;
    double r, guidance, eta;
    double r_set[ADA_MAX_R];
    int n_r;
    int steps, scheduler;            /* scheduler: an sd_scheduler_kind (sdconfig.h) */
    enum genie_targets targets;
    char target_list[GENIE_CFG_MAX_TARGETS][64];   /* GENIE_TARGETS_LIST: label names, checked by the caller */
    int n_targets;
    enum genie_sources sources;
    int top_k, quota, ring, reuse, snapshot_every, embed_layer, threads, batch, vae_batch, warmup, sync;
    double share, worker_timeout;
} genie_cfg;

/* The defaults (augment/genie/recipe.c: every default of GeNIe, with why). */
void genie_cfg_default(genie_cfg *c);
/* Defaults, then the file's keys. 0, or -1 with err_msg() "path:line: ...". */
int genie_cfg_read(const char *path, genie_cfg *c);
const char *genie_mode_name(enum genie_mode m);

#endif
