#include "augment/genie/genie_cfg.h"
#include "augment/engine/backend/backend.h"
#include "common/err.h"
#include "augment/engine/scheduler.h"
#include "augment/genie/genie.h"
#include "common/kv.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const mode_names[] = {"none", "genie", "genie-ada", "img2img", "txt2img"};

const char *genie_mode_name(enum genie_mode m) { return mode_names[m]; }

static int target_list(char *val, void *out)
{
    genie_cfg *c = out;
    int k = !strcmp(val, "few") ? GENIE_TARGETS_FEW : !strcmp(val, "all") ? GENIE_TARGETS_ALL : GENIE_TARGETS_LIST;
    c->targets = k;
    if (k != GENIE_TARGETS_LIST) return 0;
    c->n_targets = 0;
    for (char *save = NULL, *t = strtok_r(val, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        t = util_trim(t);
        if (!*t || c->n_targets == GENIE_CFG_MAX_TARGETS || strlen(t) >= sizeof c->target_list[0]) return -1;
        snprintf(c->target_list[c->n_targets++], sizeof c->target_list[0], "%s", t);
    }
    return c->n_targets ? 0 : -1;
}

#define STR_(x) #x
#define STR(x) STR_(x)

/* comma separated "file[:scale]" entries, each read as the engine will */
static int lora_list(char *val, void *out)
{
    genie_cfg *c = out;
    c->n_lora = 0;
    for (char *save = NULL, *t = strtok_r(val, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char path[1024];
        double scale;
        t = util_trim(t);
        if (c->n_lora == LORA_MAX || lora_spec_parse(t, path, sizeof path, &scale)) return -1;
        snprintf(c->lora[c->n_lora++], sizeof c->lora[0], "%s", t);
    }
    return 0;
}

static int has_braces(const kv_key *k) { return genie_template_ok(k->out) ? 0 : -1; }

static int scheduler_set(char *val, void *out)
{
    int k = scheduler_kind_parse(val);
    if (k < 0) return -1;
    *(int *)out = k;
    return 0;
}
/* empty: the build's default device (genie_cfg.h) */
static int device_ok(const kv_key *k) { return !*(const char *)k->out || backend_name_valid(k->out) ? 0 : -1; }

static int increasing(const kv_key *k)
{
    const double *r = k->out;
    for (int i = 1; i < *k->count; i++)
        if (r[i] <= r[i - 1]) return -1;
    return *k->count >= 2 ? 0 : -1;
}

/* The engine runs int(steps * r) denoising steps of img2img (diffusers' get_timesteps): none is an error there. */
static int no_step(double r, int steps) { return (int)(steps * r) < 1; }

int genie_cfg_read(const char *path, genie_cfg *c)
{
    genie_cfg_default(c);
    kv_key keys[] = {
        KV_TEXT("model", c->model, sizeof c->model, "a path"),
        {.name = "lora", .type = KV_FUNC, .out = c, .set = lora_list,
         .want = "file.safetensors[:scale] entries, comma separated (at most " STR(LORA_MAX) "), scale in -100..100"},
        {.name = "prompt", .type = KV_STRING, .out = c->prompt, .size = sizeof c->prompt, .check = has_braces,
         .want = "a template with {}"},
        KV_TEXT("names", c->names, sizeof c->names, "a file"),
        KV_TEXT("cache", c->cache, sizeof c->cache, "a directory"),
        {.name = "device", .type = KV_STRING, .out = c->device, .size = sizeof c->device, .check = device_ok,
         .want = "cpu, cuda or cuda:N"},
        {.name = "mode", .type = KV_WORD, .out = &c->mode, .words = "none|genie|genie-ada|img2img|txt2img"},
        {.name = "scheduler", .type = KV_FUNC, .out = &c->scheduler, .set = scheduler_set, .want = SCHEDULER_NAMES},
        {.name = "targets", .type = KV_FUNC, .out = c, .set = target_list,
         .want = "few, all or a comma list of labels"},
        {.name = "sources", .type = KV_WORD, .out = &c->sources, .words = "confused|random|same"},
        {.name = "r_set", .type = KV_LIST, .out = c->r_set, .lo = 0, .hi = 1, .flags = KV_OPEN_LO, .size = ADA_MAX_R,
         .count = &c->n_r, .check = increasing, .want = "increasing ratios in (0, 1], comma separated"},
        {.name = "r", .type = KV_DOUBLE, .out = &c->r, .lo = 0, .hi = 1, .flags = KV_OPEN_LO},
        {.name = "guidance", .type = KV_DOUBLE, .out = &c->guidance, .lo = 0, .hi = 100, .want = "a number in 0..100"},
        {.name = "eta", .type = KV_DOUBLE, .out = &c->eta, .lo = 0, .hi = 1, .want = "a number in 0..1"},
        KV_NUM("share", KV_DOUBLE, &c->share, 0, 1),
        KV_NUM("steps", KV_INT, &c->steps, 1, 1000),
        KV_NUM("top_k", KV_INT, &c->top_k, 1, 1000),
        KV_NUM("quota", KV_INT, &c->quota, 1, 10000000),
        KV_NUM("ring", KV_INT, &c->ring, 1, 100000),
        KV_NUM("reuse", KV_INT, &c->reuse, 1, 100000),
        KV_NUM("snapshot_every", KV_INT, &c->snapshot_every, 1, 1000000000),
        {.name = "embed_layer", .type = KV_INT, .out = &c->embed_layer, .lo = -1, .hi = 100000,
         .want = "-1 or a layer index"},
        KV_NUM("threads", KV_INT, &c->threads, 1, 1024),
        KV_NUM("batch", KV_INT, &c->batch, 1, 1024),
        KV_NUM("vae_batch", KV_INT, &c->vae_batch, 1, 1024),
        KV_NUM("warmup", KV_INT, &c->warmup, 0, 1000000000),
        {.name = "sync", .type = KV_BOOL, .out = &c->sync},
        KV_NUM("worker_timeout", KV_DOUBLE, &c->worker_timeout, 0.1, 1e7),
    };
    int n = (int)(sizeof keys / sizeof keys[0]);
    kv_spec spec = {.section = "genie"};
    if (kv_read(path, keys, n, &spec)) return -1;
    int line_r = 0, line_steps = 0, line_rset = 0, line_vb = 0;
    for (int i = 0; i < n; i++) {
        if (!strcmp(keys[i].name, "vae_batch")) line_vb = keys[i].line;
        if (!strcmp(keys[i].name, "r")) line_r = keys[i].line;
        if (!strcmp(keys[i].name, "steps")) line_steps = keys[i].line;
        if (!strcmp(keys[i].name, "r_set")) line_rset = keys[i].line;
    }
    /* lcm and tcd run all steps at any strength their model's original_inference_steps allows: the engine checks r */
    int uses_r = (c->mode == GENIE_MODE_GENIE || c->mode == GENIE_MODE_IMG2IMG || c->mode == GENIE_MODE_ADA) &&
                 !scheduler_own_timesteps(c->scheduler);
    if (uses_r && no_step(c->r, c->steps))
        return err_set("%s:%d: key 'r' = %g gives no denoising step with steps=%d (the engine runs int(steps * r)): "
                       "r must be at least 1/%d", path, line_r ? line_r : line_steps, c->r, c->steps, c->steps);
    for (int i = 0; uses_r && c->mode == GENIE_MODE_ADA && i < c->n_r; i++)
        if (no_step(c->r_set[i], c->steps))
            return err_set("%s:%d: key 'r_set' entry %g gives no denoising step with steps=%d (the engine runs "
                           "int(steps * r)): each ratio must be at least 1/%d", path, line_rset ? line_rset : line_steps,
                           c->r_set[i], c->steps, c->steps);
    if (c->mode == GENIE_MODE_ADA && c->n_r < ADA_MIN_R)
        return err_set("%s:%d: key 'r_set' has %d ratios; genie-ada needs at least %d (it never keeps the first, so with "
                       "two it always keeps the second: mode=genie r=%g does that for half the work)", path, line_rset,
                       c->n_r, ADA_MIN_R, c->r_set[c->n_r - 1]);
    struct stat st;
    if (c->mode != GENIE_MODE_NONE && stat(c->model, &st) != 0)
        return err_set("%s: model %s: %s", path, c->model, strerror(errno));
    for (int i = 0; c->mode != GENIE_MODE_NONE && i < c->n_lora; i++) {
        char p[1024];
        double scale;
        if (lora_spec_parse(c->lora[i], p, sizeof p, &scale)) return err_wrap("%s: ", path);
        if (stat(p, &st) != 0) return err_set("%s: lora %s: %s", path, p, strerror(errno));
    }
    if (c->vae_batch > c->batch)
        return err_set("%s:%d: key 'vae_batch' = %d is more than batch=%d (a call never has more images than items)",
                       path, line_vb, c->vae_batch, c->batch);
    if (c->mode == GENIE_MODE_ADA && c->batch < c->n_r)
        return err_set("%s: batch=%d cannot hold one GeNIe-Ada request (%d ratios in r_set)", path, c->batch, c->n_r);
    return 0;
}
