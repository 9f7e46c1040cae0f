#include "augment/genie/genie_cfg.h"
#include "augment/engine/backend/backend.h"
#include "common/err.h"
#include "augment/engine/scheduler.h"
#include "augment/genie/genie.h"
#include "common/util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const mode_names[] = {"none", "genie", "genie-ada", "img2img", "txt2img"};

const char *genie_mode_name(enum genie_mode m) { return mode_names[m]; }

/* index of val in the '|'-separated words, or -1 */
static int word(const char *val, const char *words)
{
    int i = 0;
    for (const char *w = words; *w; i++) {
        size_t n = strcspn(w, "|");
        if (strlen(val) == n && !strncmp(val, w, n)) return i;
        w += n + (w[n] == '|');
    }
    return -1;
}

static int int_in(const char *val, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static int num_in(const char *val, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int text(const char *val, char *out, size_t n)
{
    if (strlen(val) >= n) return -1;
    memcpy(out, val, strlen(val) + 1);
    return 0;
}

static int target_list(genie_cfg *c, char *val)
{
    c->n_targets = 0;
    for (char *save = NULL, *t = strtok_r(val, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        t = util_trim(t);
        if (!*t || c->n_targets == GENIE_CFG_MAX_TARGETS || strlen(t) >= sizeof c->target_list[0]) return -1;
        snprintf(c->target_list[c->n_targets++], sizeof c->target_list[0], "%s", t);
    }
    return c->n_targets ? 0 : -1;
}

/* One key: 0, 1 when the key is unknown, -1 when its value is bad (the expected form in *want). */
static int set_key(genie_cfg *c, const char *key, char *val, const char **want)
{
    int k;
#define IS(name, form) (!strcmp(key, name) && (*want = form, 1))
    if (IS("model", "a path")) return text(val, c->model, sizeof c->model);
    if (IS("prompt", "a template with {}")) return genie_template_ok(val) ? text(val, c->prompt, sizeof c->prompt) : -1;
    if (IS("names", "a file")) return text(val, c->names, sizeof c->names);
    if (IS("cache", "a directory")) return text(val, c->cache, sizeof c->cache);
    if (IS("device", "cpu, cuda or cuda:N")) return backend_name_valid(val) ? text(val, c->device, sizeof c->device) : -1;
    if (IS("mode", "none, genie, genie-ada, img2img or txt2img")) {
        if ((k = word(val, "none|genie|genie-ada|img2img|txt2img")) < 0) return -1;
        c->mode = (enum genie_mode)k;
        return 0;
    }
    if (IS("scheduler", SCHEDULER_NAMES)) {
        if ((k = scheduler_kind_parse(val)) < 0) return -1;
        c->scheduler = k;
        return 0;
    }
    if (IS("targets", "few, all or a comma list of labels")) {
        if ((k = word(val, "few|all")) >= 0) c->targets = k ? GENIE_TARGETS_ALL : GENIE_TARGETS_FEW;
        else if (target_list(c, val) == 0) c->targets = GENIE_TARGETS_LIST;
        else return -1;
        return 0;
    }
    if (IS("sources", "confused, random or same")) {
        if ((k = word(val, "confused|random|same")) < 0) return -1;
        c->sources = (enum genie_sources)k;
        return 0;
    }
    if (IS("r_set", "increasing ratios in (0, 1], comma separated")) {
        int n = ada_parse_rset(val, c->r_set, ADA_MAX_R);
        if (n < 0) return -1;
        c->n_r = n;
        return 0;
    }
    if (IS("r", "a number in (0, 1]")) return num_in(val, 1e-9, 1, &c->r);
    if (IS("guidance", "a number in 0..100")) return num_in(val, 0, 100, &c->guidance);
    if (IS("share", "a number in [0, 1]")) return num_in(val, 0, 1, &c->share);
    if (IS("steps", "an integer in 1..1000")) return int_in(val, 1, 1000, &c->steps);
    if (IS("top_k", "an integer in 1..1000")) return int_in(val, 1, 1000, &c->top_k);
    if (IS("quota", "an integer in 1..10000000")) return int_in(val, 1, 10000000, &c->quota);
    if (IS("ring", "an integer in 1..100000")) return int_in(val, 1, 100000, &c->ring);
    if (IS("reuse", "an integer in 1..100000")) return int_in(val, 1, 100000, &c->reuse);
    if (IS("snapshot_every", "an integer in 1..1000000000")) return int_in(val, 1, 1000000000, &c->snapshot_every);
    if (IS("embed_layer", "-1 or a layer index")) return int_in(val, -1, 100000, &c->embed_layer);
    if (IS("threads", "an integer in 1..1024")) return int_in(val, 1, 1024, &c->threads);
    if (IS("batch", "an integer in 1..1024")) return int_in(val, 1, 1024, &c->batch);
    if (IS("warmup", "an integer in 0..1000000000")) return int_in(val, 0, 1000000000, &c->warmup);
    if (IS("sync", "0 or 1")) return int_in(val, 0, 1, &c->sync);
#undef IS
    return 1;
}

int genie_cfg_read(const char *path, genie_cfg *c)
{
    genie_cfg_default(c);
    FILE *f = fopen(path, "r");
    if (!f) return err_set("%s: %s", path, strerror(errno));
    char line[4096];
    int lineno = 0, section = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            rc = err_set("%s:%d: line longer than %zu characters", path, lineno, sizeof line - 2);
            break;
        }
        char *s = util_trim(line);
        if (!*s || *s == '#' || *s == ';') continue;
        if (*s == '[') {
            if (strcmp(s, "[genie]")) rc = err_set("%s:%d: %s: the only section is [genie]", path, lineno, s);
            else if (section) rc = err_set("%s:%d: a second [genie] section", path, lineno);
            section = 1;
            continue;
        }
        if (!section) {
            rc = err_set("%s:%d: '%s' before the [genie] section", path, lineno, s);
            break;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = err_set("%s:%d: expected key=value, got '%s'", path, lineno, s);
            break;
        }
        *eq = 0;
        char *key = util_trim(s), *val = util_trim(eq + 1);
        const char *want = "";
        int k = set_key(c, key, val, &want);
        if (k == 1) rc = err_set("%s:%d: unknown key '%s' in [genie]", path, lineno, key);
        else if (k < 0) rc = err_set("%s:%d: %s must be %s, got '%s'", path, lineno, key, want, val);
    }
    fclose(f);
    if (rc == 0 && !section) rc = err_set("%s: no [genie] section", path);
    struct stat st;
    if (rc == 0 && c->mode != GENIE_MODE_NONE && stat(c->model, &st) != 0)
        rc = err_set("%s: model %s: %s", path, c->model, strerror(errno));
    if (rc == 0 && c->mode == GENIE_MODE_ADA && c->batch < c->n_r)
        rc = err_set("%s: batch=%d cannot hold one GeNIe-Ada request (%d ratios in r_set)", path, c->batch, c->n_r);
    return rc;
}
