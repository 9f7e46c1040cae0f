#include "augment/genie/recipe.h"
#include <stdlib.h>
#include <string.h>
#include "augment/engine/scheduler.h"
#include "common/err.h"
#include "common/util.h"

static const genie_cfg defaults = {
    /* the bundled Fashion-MNIST model, relative to the repository root genie runs from */
    .model = "data/models/fmnist-ldm",
    /* the paper's prompt; "{}" becomes the class's words */
    .prompt = "A photo of a {}",
    /* GeNIe-Ada: r chosen per pair by the classifier, so no r to tune per data set (the paper's best) */
    .mode = GENIE_MODE_ADA,
    /* the paper's fixed r for GeNIe; Ada's fallback when it cannot choose */
    .r = 0.8,
    /* Ada's candidates: the official notebook's range */
    .r_set = {0.5, 0.6, 0.7, 0.8, 0.9},
    .n_r = 5,
    /* what the bundled model was measured and judged with (its README): DPM-Solver++ 2M reaches DDIM's images in
     * half the steps, and guidance 3 keeps this small model's images recognisable */
    .steps = 25,
    .guidance = 3,
    .scheduler = SD_SCHED_DPMPP_2M,
    /* tcd only: diffusers' TCDScheduler.step default */
    .eta = 0.3,
    /* GeNIe is for the tail: targets are the Few classes (recipe_shot_group) */
    .targets = GENIE_TARGETS_FEW,
    /* hard negatives: sources from the top_k classes most confused with the target */
    .sources = GENIE_SOURCES_CONFUSED,
    .top_k = 4,
    /* samples per target: about what 50 generated images next to 5-19 real ones give offline (`genie plan`'s
     * -per-class) */
    .quota = 50,
    /* a quarter of each batch's rows, so real images still dominate the gradient */
    .share = 0.25,
    /* 64 samples resident (two batches' worth at share 0.25 of batch 128), each taken up to 4 times: reuse
     * bounds how far the trainer outruns a slow (CPU) module without taking one sample everywhere */
    .ring = 64,
    .reuse = 4,
    /* f_theta follows the trainer every 100 iterations: often enough for Ada's choice, cheap to copy */
    .snapshot_every = 100,
    /* -1: the classifier's penultimate features (the input of its last connected/convolutional layer) */
    .embed_layer = -1,
    /* one CPU thread beside the trainer's; 10 engine items: two Ada requests of the default 5 ratios */
    .threads = 1,
    .batch = 10,
    /* one image per VAE call: what the recipe's images were made with (a batch changes their float rounding), and
     * an SD 1.5 decode at 512x512 needs hundreds of MB per image */
    .vae_batch = 1,
    /* the confusion statistics of the first iterations are noise: no planning on them */
    .warmup = 200,
    /* 0: the trainer never waits for the module (a GPU run); 1 makes a run reproducible, at the module's pace */
    .sync = 0,
    /* an MPI job's generator rank that takes longer than this to load or to return a request is given up:
     * generous (an SD 1.5 GeNIe-Ada batch on a CPU takes minutes), since it only bounds a dead rank's cost */
    .worker_timeout = 600,
};

const genie_cfg *recipe_defaults(void) { return &defaults; }

void genie_cfg_default(genie_cfg *c) { *c = defaults; }

void genie_opts_default(genie_opts *o)
{
    const genie_cfg *d = &defaults;
    memset(o, 0, sizeof *o);
    engine_opts_default(&o->eo);
    o->eo.model = d->model;
    o->eo.scheduler = d->scheduler;
    o->eo.steps = d->steps;
    o->eo.guidance = d->guidance;
    o->eo.eta = d->eta;
    /* sources as their posterior mean, as the official GeNIe code encodes them (latent_dist.mode()) */
    o->eo.vae_mean = 1;
    o->eo.max_batch = d->batch;
    o->eo.vae_batch = d->vae_batch;
    o->prompt_template = d->prompt;
    memcpy(o->r_set, d->r_set, sizeof o->r_set);
    o->n_r = d->n_r;
    o->ada_fallback_r = d->r;
    o->embed_layer = d->embed_layer;
}

enum shot_group recipe_shot_group(int count)
{
    return count > 100 ? SHOT_MANY : count >= RECIPE_FEW_BELOW ? SHOT_MEDIUM : SHOT_FEW;
}

/* the stamp of a "file[:scale]" LoRA entry's file (0 when it does not parse: the engine refuses it) */
static unsigned lora_stamp(const char *arg)
{
    char path[4096];
    double scale;
    return lora_spec_parse(arg, path, sizeof path, &scale) ? 0 : util_files_stamp(UTIL_FNV_INIT, path);
}

int recipe_settings(const genie_opts *o, char *const *labels, char *const *words, int classes, int ada, const char *how,
                    char *s, size_t n)
{
    /* label and words of every class, in class order: a class renamed or reordered in a names file changes it */
    unsigned names = UTIL_FNV_INIT;
    for (int c = 0; c < classes; c++) names = util_fnv(util_fnv(util_fnv(util_fnv(names, labels[c]), "\n"), words[c]), "\n");
    size_t len = snprintf(s, n, "model %s (files %08x), %d steps, guidance %g, %s, template \"%s\", %d classes (labels "
                         "and words %08x)", o->eo.model, util_files_stamp(UTIL_FNV_INIT, o->eo.model), o->eo.steps,
                         o->eo.guidance, scheduler_kind_name(o->eo.scheduler), o->prompt_template, classes, names);
    /* tcd's eta changes its images; the other schedulers ignore it, so their line stays as it was */
    if (o->eo.scheduler == SD_SCHED_TCD && len < n) len += snprintf(s + len, n - len, ", eta %g", o->eo.eta);
    /* a LoRA changes the images: its file's stamp and its scale, in order */
    for (int i = 0; i < o->eo.n_lora && len < n; i++)
        len += snprintf(s + len, n - len, ", LoRA %s (files %08x)", o->eo.lora[i], lora_stamp(o->eo.lora[i]));
    if (ada && len < n) {
        len += snprintf(s + len, n - len, ", Ada over");
        for (int i = 0; i < o->n_r && len < n; i++) len += snprintf(s + len, n - len, " %g", o->r_set[i]);
        if (len < n) {
            unsigned st = o->backbone_cfg ? util_files_stamp(UTIL_FNV_INIT, o->backbone_cfg) : 0;
            if (o->backbone_weights) st = util_files_stamp(st, o->backbone_weights);
            len += snprintf(s + len, n - len, " (fallback %g), f_theta %s %s (files %08x) layer %d", o->ada_fallback_r,
                           o->backbone_cfg ? o->backbone_cfg : "-",
                           o->backbone_weights ? o->backbone_weights : "(the trainer's, live)", st, o->embed_layer);
        }
    }
    if (how && len < n) len += snprintf(s + len, n - len, ", %s", how);
    if (len >= n) return err_set("settings of model %s: longer than %zu characters", o->eo.model, n - 1);
    return 0;
}

/* the shortest %g that reads back as v */
static const char *shortest(double v, char *b, size_t n)
{
    for (int p = 1; p <= 17; p++) {
        snprintf(b, n, "%.*g", p, v);
        if (strtod(b, NULL) == v) break;
    }
    return b;
}

const char *recipe_sources_name(enum genie_sources s)
{
    static const char *const names[] = {"confused", "random", "same"};
    return names[s];
}

int recipe_write_cfg(FILE *f, const genie_cfg *c)
{
    fprintf(f, "model=%s\nmode=%s\n", c->model, genie_mode_name(c->mode));
    for (int i = 0; i < c->n_lora; i++) fprintf(f, "%s%s%s", i ? "," : "lora=", c->lora[i], i + 1 < c->n_lora ? "" : "\n");
    char b[32], b2[32];
    fprintf(f, "r=%s\nr_set=", shortest(c->r, b, sizeof b));
    for (int i = 0; i < c->n_r; i++) fprintf(f, "%s%s", i ? "," : "", shortest(c->r_set[i], b, sizeof b));
    fprintf(f, "\nsteps=%d\nguidance=%s\neta=%s\n", c->steps, shortest(c->guidance, b, sizeof b),
            shortest(c->eta, b2, sizeof b2));
    fprintf(f, "scheduler=%s\nprompt=%s\n", scheduler_kind_name(c->scheduler), c->prompt);
    if (c->names[0]) fprintf(f, "names=%s\n", c->names);
    fprintf(f, "targets=");
    if (c->targets != GENIE_TARGETS_LIST) fprintf(f, "%s", c->targets == GENIE_TARGETS_FEW ? "few" : "all");
    for (int i = 0; c->targets == GENIE_TARGETS_LIST && i < c->n_targets; i++)
        fprintf(f, "%s%s", i ? "," : "", c->target_list[i]);
    fprintf(f, "\nsources=%s\ntop_k=%d\nquota=%d\n", recipe_sources_name(c->sources), c->top_k, c->quota);
    fprintf(f, "share=%s\nring=%d\nreuse=%d\nsnapshot_every=%d\nembed_layer=%d\nthreads=%d\nbatch=%d\nvae_batch=%d\n",
            shortest(c->share, b, sizeof b), c->ring, c->reuse, c->snapshot_every, c->embed_layer, c->threads, c->batch,
            c->vae_batch);
    if (c->device[0]) fprintf(f, "device=%s\n", c->device);
    if (c->cache[0]) fprintf(f, "cache=%s\n", c->cache);
    fprintf(f, "warmup=%d\nsync=%d\nworker_timeout=%s\n", c->warmup, c->sync, shortest(c->worker_timeout, b, sizeof b));
    if (fflush(f) || ferror(f)) return err_set("genie.cfg settings: write failed");
    return 0;
}
