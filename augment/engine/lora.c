/* LoRA files (see lora.h): their keys read into (part, module) entries of up/down pairs, merged into weights as the
 * model code asks for them. */
#include "augment/engine/lora.h"
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "augment/engine/safetensors.h"
#include "common/err.h"
#include "common/num.h"

typedef struct {
    enum lora_part part;
    char *module;                   /* the module's name with '.' written '_' (kohya's spelling of both formats) */
    const st_tensor *up, *down, *alpha;
    const char *path;               /* the LoRA file */
    double multiplier;
    int used;
} lora_entry;

struct lora_set {
    st_file *files[LORA_MAX];
    int nfiles;
    lora_entry *e;
    int n, cap;
};

static const char *part_name(enum lora_part p) { return p == LORA_UNET ? "UNet" : "text encoder"; }

int lora_spec_parse(const char *arg, char *path, size_t len, double *multiplier)
{
    const char *colon = strrchr(arg, ':');
    size_t plen = strlen(arg);
    *multiplier = 1;
    if (colon) {
        int rc = num_double(colon + 1, -LORA_SCALE_MAX, LORA_SCALE_MAX, multiplier);
        if (rc == NUM_RANGE)
            return err_set("LoRA \"%s\": multiplier %s is outside -%d..%d", arg, colon + 1, LORA_SCALE_MAX,
                           LORA_SCALE_MAX);
        if (rc == NUM_OK) plen = (size_t)(colon - arg);
        else *multiplier = 1;
    }
    if (!plen) return err_set("LoRA \"%s\": no file name", arg);
    if (plen >= len) return err_set("LoRA \"%s\": path too long", arg);
    memcpy(path, arg, plen);
    path[plen] = 0;
    return 0;
}

static int starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

/* s ends with suf: the length before it, else -1 */
static long stem_len(const char *s, size_t n, const char *suf)
{
    size_t b = strlen(suf);
    return n >= b && !memcmp(s + n - b, suf, b) ? (long)(n - b) : -1;
}

/* The entry of file `first..` for (part, module[0..len)), made on first sight. */
static lora_entry *entry_for(lora_set *l, int first, const char *path, double mult, enum lora_part part,
                             const char *module, size_t len)
{
    char flat[512];
    if (len >= sizeof flat) {
        err_set("%s: LoRA module name %.*s... too long", path, 64, module);
        return NULL;
    }
    for (size_t i = 0; i < len; i++) flat[i] = module[i] == '.' ? '_' : module[i];
    flat[len] = 0;
    for (int i = first; i < l->n; i++)
        if (l->e[i].part == part && !strcmp(l->e[i].module, flat)) return &l->e[i];
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        lora_entry *e = realloc(l->e, cap * sizeof *e);
        if (!e) {
            err_set("%s: out of memory", path);
            return NULL;
        }
        l->e = e;
        l->cap = cap;
    }
    lora_entry *e = &l->e[l->n];
    *e = (lora_entry){part, strdup(flat), NULL, NULL, NULL, path, mult, 0};
    if (!e->module) {
        err_set("%s: out of memory", path);
        return NULL;
    }
    l->n++;
    return e;
}

enum role { ROLE_UP, ROLE_DOWN, ROLE_ALPHA };

/* kohya-ss: lora_unet_<module>.lora_down.weight, .lora_up.weight, .alpha */
static int kohya_key(const char *k, enum lora_part *part, const char **module, size_t *len, enum role *role)
{
    const char *rest = k + (starts(k, "lora_unet_") ? 10 : 8);
    *part = starts(k, "lora_unet_") ? LORA_UNET : LORA_TEXT;
    const char *dot = strchr(rest, '.');
    if (!dot || dot == rest) return -1;
    if (!strcmp(dot, ".lora_down.weight")) *role = ROLE_DOWN;
    else if (!strcmp(dot, ".lora_up.weight")) *role = ROLE_UP;
    else if (!strcmp(dot, ".alpha")) *role = ROLE_ALPHA;
    else return -1;
    *module = rest;
    *len = (size_t)(dot - rest);
    return 0;
}

/* diffusers 0.19 (lora.h); prefixed: the file's keys carry unet./text_encoder. The module goes into buf. */
static int diffusers_key(const char *k, int prefixed, enum lora_part *part, char *buf, size_t blen, enum role *role)
{
    static const char *const proc[] = {"to_q_lora", "to_k_lora", "to_v_lora", "to_out_lora"};
    static const char *const unet_mod[] = {"to_q", "to_k", "to_v", "to_out.0"};
    static const char *const text_mod[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    const char *rest = k;
    *part = LORA_UNET;
    if (prefixed) {
        *part = starts(k, "unet.") ? LORA_UNET : LORA_TEXT;
        rest = k + (*part == LORA_UNET ? 5 : 13);
    }
    size_t n = strlen(rest);
    long s = stem_len(rest, n, ".down.weight");
    *role = ROLE_DOWN;
    if (s < 0) {
        s = stem_len(rest, n, ".up.weight");
        *role = ROLE_UP;
    }
    if (s < 0) return -1;
    long m = stem_len(rest, (size_t)s, *part == LORA_UNET ? ".lora" : ".lora_linear_layer");
    if (m > 0) {
        if ((size_t)m >= blen) return -1;
        memcpy(buf, rest, (size_t)m);
        buf[m] = 0;
        return 0;
    }
    for (int i = 0; i < 4; i++) {
        char suf[32];
        snprintf(suf, sizeof suf, "%s.%s", *part == LORA_UNET ? ".processor" : "", proc[i]);
        m = stem_len(rest, (size_t)s, suf);
        if (m <= 0) continue;
        int w = snprintf(buf, blen, "%.*s.%s", (int)m, rest, *part == LORA_UNET ? unet_mod[i] : text_mod[i]);
        return w > 0 && (size_t)w < blen ? 0 : -1;
    }
    return -1;
}

static void shape_str(char *s, size_t len, const st_tensor *t)
{
    size_t o = snprintf(s, len, "[");
    for (int i = 0; i < t->ndim && o < len; i++) o += snprintf(s + o, len - o, i ? ",%lld" : "%lld",
                                                               (long long)t->shape[i]);
    if (o < len) snprintf(s + o, len - o, "]");
}

static const char *last_of(const char *s, const char *w)
{
    const char *last = NULL;
    for (const char *p = s; (p = strstr(p, w)); p++) last = p;
    return last;
}

/* The key an entry lacks, from the one it has (kohya: lora_down <-> lora_up; diffusers: down <-> up). */
static void partner_name(const char *have, char *out, size_t len)
{
    const char *d = last_of(have, "down."), *u = last_of(have, "up.");
    if (d && (!u || d > u)) snprintf(out, len, "%.*sup.%s", (int)(d - have), have, d + 5);
    else if (u) snprintf(out, len, "%.*sdown.%s", (int)(u - have), have, u + 3);
    else snprintf(out, len, "%s", have);
}

static int check_entry(const lora_entry *e)
{
    char a[96], b[96], miss[600];
    const st_tensor *have = e->up ? e->up : e->down;
    if (!have) return err_set("%s: alpha %s has no lora_down/lora_up weights", e->path, e->alpha->name);
    if (!e->up || !e->down) {
        partner_name(have->name, miss, sizeof miss);
        return err_set("%s: %s has no partner %s", e->path, have->name, miss);
    }
    const st_tensor *t[2] = {e->up, e->down};
    for (int i = 0; i < 2; i++)
        if ((t[i]->ndim != 2 && t[i]->ndim != 4) || t[i]->numel == 0) {
            shape_str(a, sizeof a, t[i]);
            return err_set("%s: %s has shape %s; a LoRA weight is 2-d or 4-d", e->path, t[i]->name, a);
        }
    if (e->up->shape[1] != e->down->shape[0] || (e->up->ndim == 4 && e->up->shape[2] * e->up->shape[3] != 1)) {
        shape_str(a, sizeof a, e->up);
        shape_str(b, sizeof b, e->down);
        return err_set("%s: %s %s and %s %s do not fit (up is [out, rank] or [out, rank, 1, 1], down [rank, ...])",
                       e->path, e->up->name, a, e->down->name, b);
    }
    if (e->alpha && e->alpha->numel != 1) {
        shape_str(a, sizeof a, e->alpha);
        return err_set("%s: alpha %s has shape %s, expected one value", e->path, e->alpha->name, a);
    }
    return 0;
}

static int read_file(lora_set *l, st_file *f, const char *path, double mult)
{
    int n = st_count(f), first = l->n, kohya = 0, prefixed = 0;
    if (!n) return err_set("%s: no tensors (not a LoRA file)", path);
    for (int i = 0; i < n; i++) {
        const char *k = st_at(f, i)->name;
        kohya += starts(k, "lora_unet_") || starts(k, "lora_te_");
        prefixed += starts(k, "unet.") || starts(k, "text_encoder.");
    }
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_at(f, i);
        const char *k = t->name;
        if (kohya && kohya < n && !starts(k, "lora_unet_") && !starts(k, "lora_te_"))
            return err_set("%s: key %s among kohya-ss keys (all start with lora_unet_ or lora_te_)", path, k);
        if (!kohya && prefixed && prefixed < n && !starts(k, "unet.") && !starts(k, "text_encoder."))
            return err_set("%s: key %s has no unet. or text_encoder. prefix, as the file's other keys have", path, k);
        if (!kohya && (strstr(k, "lora_A") || strstr(k, "lora_B")))
            return err_set("%s: key %s is PEFT's lora_A/lora_B spelling (later diffusers), which genie does not "
                           "read: diffusers 0.19 and kohya-ss files only", path, k);
        enum lora_part part;
        enum role role;
        const char *module;
        size_t len;
        char buf[512];
        int bad = kohya ? kohya_key(k, &part, &module, &len, &role)
                        : diffusers_key(k, prefixed, &part, buf, sizeof buf, &role);
        if (bad)
            return err_set("%s: key %s is not a LoRA weight of diffusers 0.19 (<module>.lora.down.weight, "
                           "<attn>.processor.to_q_lora.down.weight, ...) or kohya-ss (lora_unet_<module>."
                           "lora_down.weight, .lora_up.weight, .alpha)", path, k);
        if (!kohya) module = buf, len = strlen(buf);
        if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64)
            return err_set("%s: %s has dtype %s, expected a float type", path, k, st_dtype_name(t->dtype));
        lora_entry *e = entry_for(l, first, path, mult, part, module, len);
        if (!e) return -1;
        const st_tensor **slot = role == ROLE_UP ? &e->up : role == ROLE_DOWN ? &e->down : &e->alpha;
        if (*slot) return err_set("%s: %s and %s are the same LoRA tensor", path, (*slot)->name, k);
        *slot = t;
    }
    for (int i = first; i < l->n; i++)
        if (check_entry(&l->e[i])) return -1;
    return 0;
}

lora_set *lora_open(const char *const *args, int n)
{
    if (n > LORA_MAX) {
        err_set("%d LoRA files: at most %d", n, LORA_MAX);
        return NULL;
    }
    lora_set *l = calloc(1, sizeof *l);
    if (!l) {
        err_set("LoRA: out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        char path[4096];
        double mult;
        if (lora_spec_parse(args[i], path, sizeof path, &mult)) goto fail;
        if (!(l->files[i] = st_open(path))) {
            err_wrap("LoRA (a safetensors file expected): ");
            goto fail;
        }
        l->nfiles = i + 1;
        if (read_file(l, l->files[i], st_path(l->files[i]), mult)) goto fail;
    }
    return l;
fail:
    lora_free(l);
    return NULL;
}

void lora_free(lora_set *l)
{
    if (!l) return;
    for (int i = 0; i < l->n; i++) free(l->e[i].module);
    free(l->e);
    for (int i = 0; i < l->nfiles; i++) st_close(l->files[i]);
    free(l);
}

/* name without ".weight", '.' written '_', into buf; 0 when name is no weight */
static int flat_name(const char *name, char *buf, size_t len)
{
    long s = stem_len(name, strlen(name), ".weight");
    if (s <= 0 || (size_t)s >= len) return 0;
    for (long i = 0; i < s; i++) buf[i] = name[i] == '.' ? '_' : name[i];
    buf[s] = 0;
    return 1;
}

int lora_touches(const lora_set *l, enum lora_part part, const char *name)
{
    char flat[512];
    if (!l || !flat_name(name, flat, sizeof flat)) return 0;
    for (int i = 0; i < l->n; i++)
        if (l->e[i].part == part && !strcmp(l->e[i].module, flat)) return 1;
    return 0;
}

/* shape[1..nd) without trailing ones equals t->shape[1..) without trailing ones */
static int inner_dims_match(int nd, const int64_t *shape, const st_tensor *t)
{
    int a = nd, b = t->ndim;
    while (a > 1 && shape[a - 1] == 1) a--;
    while (b > 1 && t->shape[b - 1] == 1) b--;
    if (a != b) return 0;
    for (int i = 1; i < a; i++)
        if (shape[i] != t->shape[i]) return 0;
    return 1;
}

static int apply_one(lora_entry *e, const char *name, const char *file, float *w, int ndim, const int64_t *shape)
{
    int64_t out = ndim ? shape[0] : 1, numel = 1;
    for (int i = 0; i < ndim; i++) numel *= shape[i];
    if (ndim < 2 || e->up->shape[0] != out || !inner_dims_match(ndim, shape, e->down)) {
        char u[96], d[96], ws[96];
        st_tensor wt = {.ndim = ndim};
        memcpy(wt.shape, shape, sizeof(int64_t) * ndim);
        shape_str(u, sizeof u, e->up);
        shape_str(d, sizeof d, e->down);
        shape_str(ws, sizeof ws, &wt);
        return err_set("%s: %s %s x %s %s does not fit the %s's %s %s (in %s)", e->path, e->up->name, u,
                       e->down->name, d, part_name(e->part), name, ws, file);
    }
    int64_t r = e->down->shape[0], K = numel / out;
    float *up = malloc(sizeof(float) * out * r), *down = malloc(sizeof(float) * r * K);
    int rc = -1;
    if (!up || !down) err_set("%s: out of memory merging %s", e->path, e->up->name);
    else if (!st_to_f32(e->up, up) && !st_to_f32(e->down, down)) rc = 0;
    float alpha = 1;
    if (!rc && e->alpha && st_to_f32(e->alpha, &alpha)) rc = -1;
    if (!rc) {
        /* W += multiplier * alpha/rank * up @ down, a kxk conv's down taken as [rank, in*k*k] */
        double scale = e->multiplier * (e->alpha ? alpha / (double)r : 1.0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)out, (int)K, (int)r, (float)scale, up, (int)r,
                    down, (int)K, 1.0f, w, (int)K);
        e->used = 1;
    }
    free(up);
    free(down);
    return rc;
}

int lora_apply(lora_set *l, enum lora_part part, const char *name, const char *file, float *w, int ndim,
               const int64_t *shape)
{
    char flat[512];
    int n = 0;
    if (!l || !flat_name(name, flat, sizeof flat)) return 0;
    for (int i = 0; i < l->n; i++) {
        if (l->e[i].part != part || strcmp(l->e[i].module, flat)) continue;
        if (apply_one(&l->e[i], name, file, w, ndim, shape)) return -1;
        n++;
    }
    return n;
}

int lora_check_used(const lora_set *l)
{
    for (int i = 0; l && i < l->n; i++) {
        const lora_entry *e = &l->e[i];
        if (!e->used)
            return err_set("%s: %s matches no weight of the model's %s (no %s there)", e->path, e->down->name,
                           part_name(e->part), e->module);
    }
    return 0;
}
