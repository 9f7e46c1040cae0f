#include "augment/genie/cache.h"
#include "augment/genie/genindex.h"
#include "common/err.h"
#include "common/imgio.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct cache {
    cache_opts o;
    char index[1200];
    FILE *f;             /* the index, appended to */
    int lock;
    uint64_t next;       /* the next sample's number */
};

/* The number of a name of the cache's own making ("%08llx_%08x_label.png"), or -1 for any other name. With tmp
 * set, the temporary files imgio_write leaves behind when stopped ("name.png.<pid>.<k>.tmp") count too. */
static long long own_number(const char *name, int tmp)
{
    const char *p = name;
    while ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')) p++;
    if (p - name < 8 || p - name > 16 || *p != '_') return -1;
    const char *q = p + 1;
    while ((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f')) q++;
    if (q - p - 1 != 8 || *q != '_' || !q[1]) return -1;
    const char *png = strstr(q, ".png");
    if (!png || (!tmp && png[4]) || (tmp && (!png[4] || strcmp(name + strlen(name) - 4, ".tmp")))) return -1;
    return strtoll(name, NULL, 16);
}

static int by_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Files of the cache's own naming that no kept line names (a run stopped between an image and its line, or in
 * the middle of writing an image): removed, so the index describes exactly the files beside it. */
static void remove_strays(cache *c, char **names, int n)
{
    if (n) qsort(names, n, sizeof *names, by_str);
    DIR *d = opendir(c->o.dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *name = e->d_name, *key = name;
        int tmp = own_number(name, 1) >= 0;
        if (!tmp && (own_number(name, 0) < 0 || (n && bsearch(&key, names, n, sizeof *names, by_str)))) continue;
        char path[2400];
        snprintf(path, sizeof path, "%s/%s", c->o.dir, name);
        if (unlink(path) == 0)
            fprintf(stderr, "genie cache: %s: %s, removed\n", path,
                    tmp ? "an image a stopped run left half written" : "no line of the index names it");
    }
    closedir(d);
}

static int label_of(const cache *c, const char *name)
{
    for (int k = 0; k < c->o.classes; k++)
        if (!strcmp(c->o.labels[k], name)) return k;
    return -1;
}

/* A cached PNG, which must be of the model's image size. */
static int load_image(const cache *c, const char *path, img_u8 *im)
{
    if (imgio_load(path, 0, 0, im)) return -1;
    if (im->w != c->o.W || im->h != c->o.H)
        return err_set("%s is %dx%d, not the model's image size %dx%d", path, im->w, im->h, c->o.W, c->o.H);
    return 0;
}

/* Reads the index: usable samples to take, the rest kept or dropped; the lines kept in *lines (their outputs in
 * *names); how many were dropped. */
static int load(cache *c, char ***lines_out, char ***names_out, int *n_out, int *dropped_out)
{
    genindex_reader rd;
    int rc = genindex_open(&rd, c->index);
    *lines_out = *names_out = NULL;
    *n_out = *dropped_out = 0;
    if (rc == 1) return 0;
    if (rc < 0) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", err_msg());
        return err_set("%s (a cache of an earlier genie, whose index had no header, is not read: move its directory "
                       "away or set another cache=)", msg);
    }
    char want[16];
    snprintf(want, sizeof want, "%08x", c->o.settings);
    char **lines = NULL, **names = NULL;
    int n = 0, cap = 0, dropped = 0, other = 0;
    img_u8 im = {0};
    genindex_row row;
    rc = 0;
    for (;;) {
        int got = genindex_read(&rd, &row);
        if (got == 0) break;
        if (got < 0) {   /* a damaged line describes no file */
            fprintf(stderr, "genie cache: %s, dropped\n", err_msg());
            dropped++;
            continue;
        }
        char img[2400];
        const char *out = row.f[GX_OUTPUT];
        snprintf(img, sizeof img, "%s/%s", c->o.dir, out);
        long long num = own_number(out, 0);
        if (num >= 0 && (uint64_t)num >= c->next) c->next = (uint64_t)num + 1;
        struct stat st;
        int mine = !strcmp(row.f[GX_SETTINGS], want), t = label_of(c, row.f[GX_TARGET]), drop = 0;
        if (stat(img, &st) != 0) {
            fprintf(stderr, "genie cache: %s:%d: %s: the PNG is missing, dropped\n", c->index, rd.line, out);
            drop = 1;
        } else if (!mine) {
            other++;
        } else if (t < 0) {
            fprintf(stderr, "genie cache: %s:%d: target '%s' is not a label, skipped\n", c->index, rd.line,
                    row.f[GX_TARGET]);
        } else if (load_image(c, img, &im)) {
            fprintf(stderr, "genie cache: %s:%d: %s; dropped, removed\n", c->index, rd.line, err_msg());
            unlink(img);
            drop = 1;
        } else {
            int s = *row.f[GX_SOURCE_CLASS] ? label_of(c, row.f[GX_SOURCE_CLASS]) : -1;
            if ((rc = c->o.take(c->o.ctx, im.rgb, t, s))) break;
        }
        if (drop) {
            dropped++;
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            char **l = realloc(lines, cap * sizeof *l), **m = l ? realloc(names, cap * sizeof *m) : NULL;
            if (l) lines = l;
            if (m) names = m;
            if (!l || !m) {
                rc = err_set("%s: out of memory", c->index);
                break;
            }
        }
        lines[n] = genindex_line(&row);
        names[n] = strdup(out);
        if (!lines[n] || !names[n]) {
            free(lines[n]), free(names[n]);
            rc = err_set("%s: out of memory", c->index);
            break;
        }
        n++;
    }
    if (rd.torn_line) {
        fprintf(stderr, "genie cache: %s:%d: the line is cut short (a run stopped while writing it), dropped\n",
                c->index, rd.torn_line);
        dropped++;
    }
    if (other)
        fprintf(stderr, "genie cache: %s: %d samples made with other settings (model, mode, r, steps, guidance, "
                "scheduler, prompt, sources or names), not reused\n", c->index, other);
    genindex_close(&rd);
    imgio_free(&im);
    *lines_out = lines;
    *names_out = names;
    *n_out = n;
    *dropped_out = dropped;
    return rc;
}

cache *cache_open(const cache_opts *o)
{
    cache *c = calloc(1, sizeof *c);
    if (!c) {
        err_set("%s: out of memory", o->dir);
        return NULL;
    }
    c->o = *o;
    c->lock = -1;
    c->next = 1;
    snprintf(c->index, sizeof c->index, "%s/index.csv", o->dir);
    char **lines = NULL, **names = NULL;
    int n = 0, dropped = 0, ok = 0;
    if (util_mkdirs(o->dir) || (c->lock = genindex_lock(c->index)) < 0) goto out;
    if (load(c, &lines, &names, &n, &dropped)) goto out;
    if (dropped) {
        if (genindex_rewrite(c->index, lines, n)) goto out;
        fprintf(stderr, "genie cache: %s: rewritten without the %d lines dropped\n", c->index, dropped);
    }
    remove_strays(c, names, n);
    if (!(c->f = genindex_append(c->index))) goto out;
    ok = 1;
out:
    for (int i = 0; i < n; i++) free(lines[i]), free(names[i]);
    free(lines);
    free(names);
    if (ok) return c;
    cache_close(c);
    return NULL;
}

int cache_add(cache *c, const unsigned char *rgb, int target, const char *source, int source_class, double r,
              uint64_t seed, const char *gaps)
{
    char file[256], path[1500], rs[32], ss[32], settings[16];
    snprintf(file, sizeof file, "%08llx_%08x_%s.png", (unsigned long long)c->next++, c->o.settings,
             c->o.labels[target]);
    snprintf(path, sizeof path, "%s/%s", c->o.dir, file);
    if (imgio_write(path, rgb, c->o.W, c->o.H, 0)) return -1;
    snprintf(rs, sizeof rs, "%g", r);
    snprintf(ss, sizeof ss, "%llu", (unsigned long long)seed);
    snprintf(settings, sizeof settings, "%08x", c->o.settings);
    genindex_row row = {{file, source, c->o.labels[target], source_class >= 0 ? c->o.labels[source_class] : "", rs,
                         ss, gaps, settings}};
    genindex_put(c->f, &row);
    if (fflush(c->f) || ferror(c->f)) return err_set("%s: cannot write (%s)", c->index, strerror(errno));
    return 0;
}

void cache_close(cache *c)
{
    if (!c) return;
    if (c->f) fclose(c->f);
    genindex_unlock(c->lock);
    free(c);
}
