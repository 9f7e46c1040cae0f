/* The GeNIe generation path: requests (source image of class S or none, target class T, r or Ada, seed) in,
 * images of T out. One path for `genie generate` (offline plans) and the online module inside training.
 *
 * Modes per request, all through one engine (resident, prompts encoded once per class):
 *   r in (0, 1]   img2img of the source at strength r under "A photo of a T" (GeNIe when S != T, Img2Img when
 *                 S == T); no source: txt2img
 *   r == 0        the VAE round trip of the source alone (encode, decode): real images with the generated look
 *   GENIE_R_ADA   GeNIe-Ada: the pair is generated at every r of the set in ONE engine batch, from one source
 *                 latent and the same noise, each result embedded by the classifier backbone, and the result just
 *                 after the largest jump along Z_T - Z_S kept (augment/genie/ada.h).
 * A request's noise depends only on the request (Philox keyed by its seed and stream). Its pixels can also depend
 * on its place in the engine batch: the CPU GEMMs' summation order follows the products' shapes, so the last bits
 * move, and an 8-bit PNG sometimes with them. Callers that must reproduce images pack batches the same way
 * (generate under MPI deals whole batches); a resumed `genie generate -batch N` can differ from a fresh run. */
#ifndef GENIE_GENIE_H
#define GENIE_GENIE_H
#include <stdint.h>
#include "augment/genie/ada.h"
#include "augment/engine/engine.h"
#include "common/imgio.h"

#define GENIE_R_ADA (-1.0)

typedef struct {
    engine_opts eo;                  /* model, steps, guidance, scheduler, threads; max_batch = engine items */
    const char *prompt_template;     /* "{}" is replaced by the class's prompt words; default "A photo of a {}" */
    double r_set[ADA_MAX_R];         /* Ada's ratios, increasing (default 0.5 .. 0.9) */
    int n_r;
    double ada_fallback_r;           /* r used when Ada cannot choose (|Z_T - Z_S| ~ 0); default 0.8 */
    const char *backbone_cfg, *backbone_weights;   /* f_theta, needed only for Ada requests */
    int embed_layer;                 /* -1: the input of the last connected/convolutional layer */
} genie_opts;

/* The recipe's defaults (augment/genie/recipe.c, with why): the bundled model, 25 DPM-Solver++ steps, guidance 3,
 * sources as the posterior mean, the template and r set above. */
void genie_opts_default(genie_opts *o);
/* Whether a prompt template has the "{}" its class's words go in (genie_load, genie.cfg and `genie generate`
 * refuse one without: every class would get the same prompt). */
int genie_template_ok(const char *tmpl);

typedef struct genie genie;

/* words[c]: the prompt words of class c. NULL + err_msg(). */
genie *genie_load(const genie_opts *o, char *const *words, int classes);
void genie_free(genie *g);

typedef struct {
    const img_u8 *source;            /* decoded source image, or NULL (txt2img) */
    int target;                      /* class index */
    double r;                        /* see above */
    uint64_t seed, stream;
} genie_request;

typedef struct {
    float *image;                    /* caller's buffer of genie_image_floats(): planar [3, H, W] in [0,1] */
    double r;                        /* the r actually used (Ada: the chosen one) */
    float gaps[ADA_MAX_R - 1];       /* Ada's gaps d_1 .. d_{n-1} */
    int n_gaps;                      /* 0 unless Ada chose */
    int ada_fallback;                /* 1: Ada could not choose and ada_fallback_r was used */
    int nonfinite;                   /* 1: dropped (eo.drop_nonfinite): its latents went non-finite; no image */
} genie_result;

int genie_image_size(const genie *g, int *w, int *h);
size_t genie_image_floats(const genie *g);
/* Engine items one request needs (Ada: the size of the r set); genie_opts_cost: the same from the options, before
 * a generator is loaded (how `genie generate` deals engine batches to MPI ranks). */
int genie_request_cost(const genie *g, const genie_request *rq);
int genie_opts_cost(const genie_opts *o, const genie_request *rq);

/* Z_T for Ada (ada_set_class_means): imgs[c] holds counts[c] images of class c, chosen by ada_mean_images.
 * 0, or -1 + err_msg(). */
int genie_set_class_means(genie *g, img_u8 *const *imgs, const int *counts);

/* f_theta's parameters from a network of the same cfg (the online module's snapshot); recompute the class
 * means afterwards. 0, or -1 + err_msg(). */
struct network;
int genie_copy_backbone(genie *g, const struct network *src);

/* The prompt words of each label: the labels themselves, or one line per label of a names file. NULL +
 * err_msg(); free each and the array. */
char **genie_read_words(const char *names, char *const *labels, int classes);

/* Runs n requests whose total cost fits one engine batch (the caller packs; cost <= eo.max_batch). */
int genie_run(genie *g, const genie_request *rq, int n, genie_result *res);

#endif
