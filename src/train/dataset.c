#define _GNU_SOURCE /* qsort_r */
#include "src/train/dataset.h"
#include "augment/genie/genindex.h"
#include "common/err.h"
#include "common/kv.h"
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keys of darknet's .data files that genie does not use (darknet's detector and tree classifiers): read silently. */
static const char *const darknet_only[] = {"eval", "results", "map", "tree", "leaves", "tag", "difficult", "prefix",
                                           NULL};

int datacfg_read(const char *path, datacfg *d)
{
    memset(d, 0, sizeof *d);
    d->classes = -1;
    d->top = 1;
#define STR(name, field) KV_TEXT(name, &d->field, 0, "a path")
#define SHARE(name, field) KV_NUM(name, KV_DOUBLE, &d->field, 0, 1)
    kv_key keys[] = {
        STR("train", train), STR("valid", valid), STR("labels", labels), STR("names", names), STR("backup", backup),
        STR("generated", generated), STR("genie", genie), STR("roundtrip", roundtrip),
        KV_NUM("classes", KV_INT, &d->classes, 1, 1000000), KV_NUM("top", KV_INT, &d->top, 1, 1000000),
        KV_NUM("max_pixels", KV_INT64, &d->max_pixels, 1, 1 << 30),
        SHARE("tail_share", tail_share), SHARE("gen_soft", gen_soft), SHARE("roundtrip_p", roundtrip_p),
        SHARE("pair_source", pair_source),
        {.name = "gen_share", .type = KV_DOUBLE, .out = &d->gen_share, .lo = 0, .hi = 1, .flags = KV_OPEN_LO},
    };
#undef STR
#undef SHARE
    /* darknet warns about the keys it does not use and goes on; so does genie */
    kv_spec spec = {.warn_unknown = 1, .ignored = darknet_only};
    if (kv_read(path, keys, (int)(sizeof keys / sizeof keys[0]), &spec)) {
        datacfg_free(d);
        return -1;
    }
    if (d->classes < 0) {
        datacfg_free(d);
        return err_set("%s: no classes= line", path);
    }
    if (!d->labels) d->labels = strdup("data/labels.list");
    if (!d->backup) d->backup = strdup("backup");
    return 0;
}

void datacfg_free(datacfg *d)
{
    free(d->train);
    free(d->valid);
    free(d->labels);
    free(d->names);
    free(d->backup);
    free(d->genie);
    free(d->generated);
    free(d->roundtrip);
    memset(d, 0, sizeof *d);
}

/* Splits s[0..len) into lower-cased alphanumeric tokens, stored NUL-separated in buf; returns the count. */
static int tokenize(const char *s, size_t len, char *buf, char **tok, int max)
{
    int n = 0;
    size_t i = 0;
    while (i < len && n < max) {
        while (i < len && !isalnum((unsigned char)s[i])) i++;
        if (i == len) break;
        tok[n++] = buf;
        while (i < len && isalnum((unsigned char)s[i])) *buf++ = (char)tolower((unsigned char)s[i++]);
        *buf++ = 0;
    }
    return n;
}

#define MAX_TOK 256

/* Finds the labels whose token sequence occurs in tok[0..nt). An occurrence nested inside a longer occurrence
 * of another label does not count. Returns the number of labels left; *cls and *second name two of them. */
static int match_tokens(char **tok, int nt, char *const *labels, int n, int *cls, int *second)
{
    struct { int c, s, l; } m[64];
    int nm = 0;
    for (int c = 0; c < n; c++) {
        char lbuf[1024], *ltok[32];
        int nl = tokenize(labels[c], strnlen(labels[c], 1000), lbuf, ltok, 32);
        for (int s = 0; nl > 0 && s + nl <= nt && nm < 64; s++) {
            int k = 0;
            while (k < nl && strcmp(tok[s + k], ltok[k]) == 0) k++;
            if (k == nl) m[nm].c = c, m[nm].s = s, m[nm].l = nl, nm++;
        }
    }
    int found = 0;
    *cls = *second = -1;
    for (int i = 0; i < nm; i++) {
        int nested = 0;
        for (int j = 0; j < nm && !nested; j++)
            nested = m[j].c != m[i].c && m[j].l > m[i].l && m[j].s <= m[i].s &&
                     m[i].s + m[i].l <= m[j].s + m[j].l;
        if (nested || m[i].c == *cls || m[i].c == *second) continue;
        if (found++ == 0)
            *cls = m[i].c;
        else if (*second < 0)
            *second = m[i].c;
    }
    return found;
}

int labels_match(const char *path, char *const *labels, int n)
{
    /* Components from the file name (extension removed) up through the directories, nearest first. */
    const char *end = path + strlen(path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    const char *stop = dot && dot > base ? dot : end;
    const char *lo = base, *hi = stop;
    for (;;) {
        char buf[4096 + MAX_TOK], *tok[MAX_TOK];
        size_t len = (size_t)(hi - lo) < 4096 ? (size_t)(hi - lo) : 4096;
        int nt = tokenize(lo, len, buf, tok, MAX_TOK);
        int cls, second;
        int found = match_tokens(tok, nt, labels, n, &cls, &second);
        if (found == 1) return cls;
        if (found > 1)
            return err_set("%s: ambiguous label: both '%s' and '%s' appear in '%.*s'", path, labels[cls],
                           labels[second], (int)(hi - lo), lo);
        if (lo == path) break;
        hi = lo - 1; /* the '/' before this component */
        lo = hi;
        while (lo > path && lo[-1] != '/') lo--;
    }
    return err_set("%s: no label of the labels file appears in the file name or its directories", path);
}

static char **read_lines(const char *path, int *count)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        err_set("%s: %s", path, strerror(errno));
        return NULL;
    }
    char **lines = NULL, *line = NULL;
    size_t lcap = 0;
    int n = 0, cap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            lines = realloc(lines, (size_t)cap * sizeof *lines);
        }
        lines[n++] = strdup(line);
    }
    free(line);
    fclose(f);
    *count = n;
    if (!lines) lines = calloc(1, sizeof *lines);
    return lines;
}

static void free_lines(char **lines, int n)
{
    for (int i = 0; i < n; i++) free(lines[i]);
    free(lines);
}

static void build_members(dataset *ds)
{
    if (ds->members)
        for (int c = 0; c < ds->classes; c++) free(ds->members[c]);
    free(ds->members);
    ds->members = malloc((size_t)ds->classes * sizeof *ds->members);
    int *fill = calloc((size_t)ds->classes, sizeof *fill);
    for (int c = 0; c < ds->classes; c++) ds->members[c] = malloc((size_t)(ds->count[c] + 1) * sizeof(int));
    for (int i = 0; i < ds->n; i++) ds->members[ds->cls[i]][fill[ds->cls[i]]++] = i;
    free(fill);
}

int dataset_load(const char *list_path, const char *labels_path, int classes, dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    int nl;
    char **labels = read_lines(labels_path, &nl);
    if (!labels) return -1;
    if (nl != classes) {
        free_lines(labels, nl);
        return err_set("%s: %d labels, but the .data file says classes=%d", labels_path, nl, classes);
    }
    for (int i = 0; i < nl; i++) {
        char *t = labels[i];
        size_t l = strlen(t);
        while (l && isspace((unsigned char)t[l - 1])) t[--l] = 0;
        for (int j = 0; j < i; j++)
            if (!strcasecmp(labels[j], t)) {
                err_set("%s: label '%s' appears twice", labels_path, t);
                free_lines(labels, nl);
                return -1;
            }
    }
    int n;
    char **paths = read_lines(list_path, &n);
    if (!paths) {
        free_lines(labels, nl);
        return -1;
    }
    if (n == 0) {
        free_lines(labels, nl);
        free_lines(paths, n);
        return err_set("%s: the image list is empty", list_path);
    }
    ds->n = n;
    ds->classes = classes;
    ds->paths = paths;
    ds->labels = labels;
    ds->cls = malloc((size_t)n * sizeof *ds->cls);
    ds->count = calloc((size_t)classes, sizeof *ds->count);
    for (int i = 0; i < n; i++) {
        int c = labels_match(paths[i], labels, classes);
        if (c < 0) {
            err_wrap("%s:%d: ", list_path, i + 1);
            dataset_free(ds);
            return -1;
        }
        ds->cls[i] = c;
        ds->count[c]++;
    }
    ds->n_real = n;
    ds->real_count = malloc((size_t)classes * sizeof *ds->real_count);
    memcpy(ds->real_count, ds->count, (size_t)classes * sizeof *ds->real_count);
    ds->src_cls = malloc((size_t)n * sizeof *ds->src_cls);
    ds->src_idx = malloc((size_t)n * sizeof *ds->src_idx);
    for (int i = 0; i < n; i++) ds->src_cls[i] = ds->src_idx[i] = -1;
    build_members(ds);
    return 0;
}

void dataset_free(dataset *ds)
{
    free_lines(ds->paths, ds->n);
    free_lines(ds->labels, ds->classes);
    if (ds->members)
        for (int c = 0; c < ds->classes; c++) free(ds->members[c]);
    free(ds->members);
    free(ds->cls);
    free(ds->count);
    free(ds->real_count);
    free(ds->src_cls);
    free(ds->src_idx);
    if (ds->alt)
        for (int i = 0; i < ds->n_real; i++) free(ds->alt[i]);
    free(ds->alt);
    memset(ds, 0, sizeof *ds);
}

/* Where a generated or round-trip index cannot be read whole: a last line cut short is a run stopped mid-write. */
static int index_torn(const genindex_reader *rd)
{
    return err_set("%s:%d: the line is cut short (a run stopped while writing it): run its genie generate again to "
                   "finish and repair the index", rd->csv.path, rd->torn_line);
}

static int by_path(const void *a, const void *b, void *paths)
{
    return strcmp(((char **)paths)[*(const int *)a], ((char **)paths)[*(const int *)b]);
}

/* The real images' indices sorted by path, for real_find; NULL when out of memory. */
static int *real_order(const dataset *ds)
{
    int *order = malloc((size_t)(ds->n_real ? ds->n_real : 1) * sizeof *order);
    if (!order) return NULL;
    for (int i = 0; i < ds->n_real; i++) order[i] = i;
    qsort_r(order, ds->n_real, sizeof *order, by_path, ds->paths);
    return order;
}

/* The index of the real image with this path, or -1. */
static int real_find(const dataset *ds, const int *order, const char *path)
{
    int lo = 0, hi = ds->n_real - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, cmp = strcmp(path, ds->paths[order[mid]]);
        if (!cmp) return order[mid];
        if (cmp < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return -1;
}

int dataset_add_generated(dataset *ds, const char *index_path)
{
    genindex_reader rd;
    int rc = genindex_open(&rd, index_path);
    if (rc) return rc < 0 ? -1 : err_set("%s: %s", index_path, strerror(ENOENT));
    int *order = real_order(ds);
    if (!order) {
        genindex_close(&rd);
        return err_set("%s: out of memory", index_path);
    }
    genindex_row row;
    int cap = ds->n;
    while ((rc = genindex_read(&rd, &row)) > 0) {
        int c = -1;
        for (int k = 0; k < ds->classes && c < 0; k++)
            if (!strcmp(ds->labels[k], row.f[GX_TARGET])) c = k;
        if (c < 0) {
            rc = err_set("%s:%d: target '%s' is not a label", index_path, rd.line, row.f[GX_TARGET]);
            break;
        }
        if (ds->n == cap) {
            cap = cap ? 2 * cap : 256;
            char **paths = realloc(ds->paths, (size_t)cap * sizeof *paths);
            if (paths) ds->paths = paths;
            int *cls = paths ? realloc(ds->cls, (size_t)cap * sizeof *cls) : NULL;
            if (cls) ds->cls = cls;
            int *src = cls ? realloc(ds->src_cls, (size_t)cap * sizeof *src) : NULL;
            if (src) ds->src_cls = src;
            int *sidx = src ? realloc(ds->src_idx, (size_t)cap * sizeof *sidx) : NULL;
            if (sidx) ds->src_idx = sidx;
            if (!sidx) {
                rc = err_set("%s: out of memory", index_path);
                break;
            }
        }
        const char *source = row.f[GX_SOURCE], *sc = row.f[GX_SOURCE_CLASS];
        int s = -1;
        for (int k = 0; *sc && k < ds->classes && s < 0; k++)
            if (!strcmp(ds->labels[k], sc)) s = k;
        if (!*sc && *source) s = labels_match(source, ds->labels, ds->classes);   /* the former format */
        ds->paths[ds->n] = strdup(row.f[GX_OUTPUT]);
        ds->cls[ds->n] = c;
        ds->src_cls[ds->n] = s < 0 ? -1 : s;
        ds->src_idx[ds->n] = *source ? real_find(ds, order, source) : -1;
        ds->count[c]++;
        ds->n++;
    }
    if (rc == 0 && rd.torn_line) rc = index_torn(&rd);
    free(order);
    genindex_close(&rd);
    if (rc == 0) build_members(ds);
    return rc;
}

int dataset_add_roundtrips(dataset *ds, const char *index_path)
{
    genindex_reader rd;
    int rc = genindex_open(&rd, index_path);
    if (rc) return rc < 0 ? -1 : err_set("%s: %s", index_path, strerror(ENOENT));
    int *order = real_order(ds);
    if (!ds->alt) ds->alt = calloc((size_t)ds->n_real, sizeof *ds->alt);
    if (!order || !ds->alt) {
        free(order);
        genindex_close(&rd);
        return err_set("%s: out of memory", index_path);
    }
    genindex_row row;
    while ((rc = genindex_read(&rd, &row)) > 0) {
        int hit = real_find(ds, order, row.f[GX_SOURCE]);
        if (hit < 0) continue;    /* a round trip of an image this list does not hold */
        free(ds->alt[hit]);
        ds->alt[hit] = strdup(row.f[GX_OUTPUT]);
    }
    if (rc == 0 && rd.torn_line) rc = index_torn(&rd);
    free(order);
    genindex_close(&rd);
    return rc;
}
