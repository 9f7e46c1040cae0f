#include "augment/engine/weights.h"
#include "common/err.h"
#include "common/philox.h"
#include "augment/engine/lora.h"
#include "augment/engine/safetensors.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A tensor the weights object owns as float32 (converted or synthesised), found again by its stored name. */
typedef struct owned {
    char *name;
    float *data;
    size_t n;
    size_t bad;             /* non-finite values found at conversion: asked again, the tensor is refused again */
    struct owned *next;
} owned;

#define OWNED_BUCKETS 1024

struct weights {
    st_file **files;
    int n;
    weights_map_fn map;
    void *map_ctx;
    lora_set *lora;
    enum lora_part lora_part;
    int random;
    uint64_t seed;
    float std;
    owned *table[OWNED_BUCKETS];
    size_t owned_bytes;
};

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;  /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static owned *owned_find(weights *w, const char *name)
{
    for (owned *o = w->table[name_hash(name) % OWNED_BUCKETS]; o; o = o->next)
        if (!strcmp(o->name, name)) return o;
    return NULL;
}

static float *owned_add(weights *w, const char *name, size_t n)
{
    owned *o = calloc(1, sizeof *o);
    float *d = malloc((n ? n : 1) * sizeof(float));
    char *nm = strdup(name);
    if (!o || !d || !nm) {
        free(o);
        free(d);
        free(nm);
        err_set("weights: out of memory for tensor %s (%zu floats)", name, n);
        return NULL;
    }
    *o = (owned){nm, d, n, 0, NULL};
    size_t b = name_hash(name) % OWNED_BUCKETS;
    o->next = w->table[b];
    w->table[b] = o;
    w->owned_bytes += n * sizeof(float);
    return d;
}

weights *weights_open(const char *const *paths, int n)
{
    weights *w = calloc(1, sizeof *w);
    if (!w || !(w->files = calloc(n > 0 ? n : 1, sizeof *w->files))) {
        free(w);
        err_set("weights: out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (!(w->files[i] = st_open(paths[i]))) {
            weights_close(w);
            return NULL;
        }
        w->n = i + 1;
    }
    return w;
}

weights *weights_random(uint64_t seed, float std)
{
    weights *w = calloc(1, sizeof *w);
    if (!w) {
        err_set("weights: out of memory");
        return NULL;
    }
    w->random = 1;
    w->seed = seed;
    w->std = std;
    return w;
}

void weights_set_map(weights *w, weights_map_fn map, void *ctx)
{
    w->map = map;
    w->map_ctx = ctx;
}

void weights_set_lora(weights *w, lora_set *l, enum lora_part part)
{
    w->lora = l;
    w->lora_part = part;
}

size_t weights_owned_bytes(const weights *w) { return w->owned_bytes; }

void weights_close(weights *w)
{
    if (!w) return;
    for (int b = 0; b < OWNED_BUCKETS; b++)
        for (owned *o = w->table[b], *nx; o; o = nx) {
            nx = o->next;
            free(o->name);
            free(o->data);
            free(o);
        }
    for (int i = 0; i < w->n; i++) st_close(w->files[i]);
    free(w->files);
    free(w);
}

/* The old diffusers VAE attention names (before 0.14's conversion on load). */
static const char *old_attention_name(const char *name, char *buf, size_t len)
{
    static const char *const from[] = {".to_q.", ".to_k.", ".to_v.", ".to_out.0."};
    static const char *const to[] = {".query.", ".key.", ".value.", ".proj_attn."};
    for (int i = 0; i < 4; i++) {
        const char *p = strstr(name, from[i]);
        if (!p) continue;
        int n = snprintf(buf, len, "%.*s%s%s", (int)(p - name), name, to[i], p + strlen(from[i]));
        return n > 0 && (size_t)n < len ? buf : NULL;
    }
    return NULL;
}

static const st_tensor *find_stored(weights *w, const char *stored)
{
    for (int i = 0; i < w->n; i++) {
        const st_tensor *t = st_find(w->files[i], stored);
        if (t) return t;
    }
    return NULL;
}

/* Looks a diffusers name up through the map, then through the old-name fallback. *stored gets the name used. */
static const st_tensor *lookup(weights *w, const char *name, char *buf, size_t len, const char **stored)
{
    *stored = w->map ? w->map(name, buf, len, w->map_ctx) : name;
    const st_tensor *t = *stored ? find_stored(w, *stored) : NULL;
    if (t) return t;
    char old[512];
    const char *alt = old_attention_name(name, old, sizeof old);
    if (!alt) return NULL;
    char buf2[512];
    const char *s2 = w->map ? w->map(alt, buf2, sizeof buf2, w->map_ctx) : alt;
    if (s2 && (t = find_stored(w, s2))) {
        snprintf(buf, len, "%s", s2);
        *stored = buf;
    }
    return t;
}

int weights_has(weights *w, const char *name)
{
    if (w->random) return 1;
    char buf[512];
    const char *stored;
    return lookup(w, name, buf, sizeof buf, &stored) != NULL;
}

static void shape_str(char *s, size_t len, int ndim, const int64_t *shape)
{
    size_t o = snprintf(s, len, "[");
    for (int i = 0; i < ndim && o < len; i++) o += snprintf(s + o, len - o, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (o < len) snprintf(s + o, len - o, "]");
}

static int shape_matches(int nd_a, const int64_t *a, int nd_b, const int64_t *b)
{
    while (nd_a > 0 && a[nd_a - 1] == 1) nd_a--;
    while (nd_b > 0 && b[nd_b - 1] == 1) nd_b--;
    if (nd_a != nd_b) return 0;
    for (int i = 0; i < nd_a; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static const char *file_list(weights *w, char *s, size_t len)
{
    size_t o = 0;
    s[0] = 0;
    for (int i = 0; i < w->n && o < len; i++)
        o += snprintf(s + o, len - o, "%s%s", i ? ", " : "", st_path(w->files[i]));
    return s;
}

static int is_norm_weight(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot || strcmp(dot, ".weight")) return 0;
    const char *prev = dot;
    while (prev > name && prev[-1] != '.') prev--;
    return strstr(prev, "norm") != NULL && strstr(prev, "norm") < dot;
}

static const float *random_get(weights *w, const char *name, int ndim, const int64_t *shape)
{
    owned *o = owned_find(w, name);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    if (o) {
        if (o->n != n) {
            err_set("weights (random): tensor %s requested with %zu elements, first made with %zu", name, n, o->n);
            return NULL;
        }
        return o->data;
    }
    float *d = owned_add(w, name, n);
    if (!d) return NULL;
    const char *dot = strrchr(name, '.');
    if (is_norm_weight(name)) {
        for (size_t i = 0; i < n; i++) d[i] = 1.0f;
        return d;
    }
    /* uniform on [-a, a] has standard deviation a/sqrt(3) */
    float a = w->std * 1.7320508f * (dot && !strcmp(dot, ".bias") ? 0.1f : 1.0f);
    uint64_t stream = name_hash(name);
    for (size_t i = 0; i < n; i += 4) {
        uint32_t r[4];
        philox_block(w->seed, stream, i / 4, r);
        for (int k = 0; k < 4 && i + k < n; k++) d[i + k] = a * (2.0f * philox_u01(r[k]) - 1.0f);
    }
    return d;
}

/* Number of NaN/inf values in x[n] and the index of the first. The fast pass only tests exponent bits, so the
 * whole checkpoint is scanned once at load at memory speed. */
static size_t count_nonfinite(const float *x, size_t n, size_t *first)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i += 4096) {
        size_t e = n - i < 4096 ? n : i + 4096;
        uint32_t any = 0;
        for (size_t j = i; j < e; j++) {
            uint32_t b;
            memcpy(&b, x + j, sizeof b);
            any |= (b & 0x7f800000u) == 0x7f800000u;
        }
        if (any)
            for (size_t j = i; j < e; j++)
                if (!isfinite(x[j]) && !bad++) *first = j;
    }
    return bad;
}

/* A weight that is NaN or infinite is refused by name here, rather than found as NaN latents steps later. */
static const float *finite_or_null(const st_tensor *t, const char *name, const float *d, size_t bad, size_t first)
{
    if (!bad) return d;
    char also[600] = "";
    if (strcmp(t->name, name)) snprintf(also, sizeof also, " (stored as %s)", t->name);
    err_set("weights: %s: tensor %s%s has %zu non-finite value%s (NaN or inf), the first at element %zu of %lld",
            t->file, name, also, bad, bad == 1 ? "" : "s", first, (long long)t->numel);
    return NULL;
}

const float *weights_get(weights *w, const char *name, int ndim, const int64_t *shape)
{
    if (w->random) return random_get(w, name, ndim, shape);
    char buf[512], files[1024], want[128], have[128];
    const char *stored;
    const st_tensor *t = lookup(w, name, buf, sizeof buf, &stored);
    shape_str(want, sizeof want, ndim, shape);
    if (!t) {
        if (stored && strcmp(stored, name))
            err_set("weights: tensor %s (stored as %s) %s not found in %s", name, stored, want,
                    file_list(w, files, sizeof files));
        else
            err_set("weights: tensor %s %s not found in %s", name, want, file_list(w, files, sizeof files));
        return NULL;
    }
    if (!shape_matches(t->ndim, t->shape, ndim, shape)) {
        shape_str(have, sizeof have, t->ndim, t->shape);
        if (strcmp(t->name, name))
            err_set("weights: %s: tensor %s (stored as %s) has shape %s, expected %s", t->file, name, t->name, have,
                    want);
        else
            err_set("weights: %s: tensor %s has shape %s, expected %s", t->file, name, have, want);
        return NULL;
    }
    size_t first = 0, bad;
    /* a LoRA's delta goes into an owned copy, never into the mapped file */
    int lora = lora_touches(w->lora, w->lora_part, name);
    if (!lora && t->dtype == ST_F32 && ((uintptr_t)t->data & 3) == 0) {
        bad = count_nonfinite(t->data, (size_t)t->numel, &first);
        return finite_or_null(t, name, t->data, bad, first);
    }
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64) {
        err_set("weights: %s: tensor %s has dtype %s, expected a float type", t->file, t->name,
                st_dtype_name(t->dtype));
        return NULL;
    }
    char key[1024];
    snprintf(key, sizeof key, "%s\n%s", t->file, t->name);
    owned *o = owned_find(w, key);
    if (o) {
        if (o->bad) count_nonfinite(o->data, o->n, &first);
        return finite_or_null(t, name, o->data, o->bad, first);
    }
    float *d = owned_add(w, key, (size_t)t->numel);
    if (!d || st_to_f32(t, d)) return NULL;
    if (lora && lora_apply(w->lora, w->lora_part, name, t->file, d, t->ndim, t->shape) < 0) return NULL;
    o = owned_find(w, key);
    o->bad = count_nonfinite(d, o->n, &first);
    return finite_or_null(t, name, d, o->bad, first);
}
