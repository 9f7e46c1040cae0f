#include "src/cmd/generate.h"
#include "common/args.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>
#include "src/train/dataset.h"
#include "augment/engine/backend/backend.h"
#include "common/csv.h"
#include "common/dist.h"
#include "common/err.h"
#include "augment/engine/scheduler.h"
#include "augment/genie/genie.h"
#include "augment/genie/genindex.h"
#include "augment/genie/recipe.h"
#include "common/image.h"
#include "common/util.h"

typedef struct {
    char *source, *output;
    int target;
    double r;
    uint64_t seed;
    int line;              /* the plan's file line */
    int done;              /* a whole output existed at start or was made now (under mpirun: or is another rank's) */
    int batch;             /* under mpirun: its engine batch as one process packs them (share_rows); else 0 */
    char *index_line;      /* what an earlier run's index says of it (genindex_line) */
} plan_row;

typedef struct {
    plan_row *rows;
    int n, cap;
    int *slot;             /* [nslot] open-addressing hash of the outputs: row index, -1 empty */
    size_t nslot;
} plan;

static void plan_free(plan *p)
{
    for (int i = 0; i < p->n; i++) {
        free(p->rows[i].source);
        free(p->rows[i].output);
        free(p->rows[i].index_line);
    }
    free(p->rows);
    free(p->slot);
}

/* The row whose output is path (normalised), or -1. */
static int plan_find(const plan *p, const char *path)
{
    if (!p->nslot) return -1;
    for (size_t h = util_fnv(UTIL_FNV_INIT, path) & (p->nslot - 1);; h = (h + 1) & (p->nslot - 1)) {
        int i = p->slot[h];
        if (i < 0 || !strcmp(p->rows[i].output, path)) return i;
    }
}

/* Hashes the outputs, each once: a second row making the same file is an error naming both lines. */
static int plan_hash(plan *p, const char *path)
{
    p->nslot = 64;
    while (p->nslot < 2 * (size_t)p->n) p->nslot *= 2;
    if (!(p->slot = malloc(p->nslot * sizeof *p->slot))) return err_set("%s: out of memory", path);
    memset(p->slot, 0xff, p->nslot * sizeof *p->slot);
    for (int i = 0; i < p->n; i++) {
        size_t h = util_fnv(UTIL_FNV_INIT, p->rows[i].output) & (p->nslot - 1);
        for (; p->slot[h] >= 0; h = (h + 1) & (p->nslot - 1))
            if (!strcmp(p->rows[p->slot[h]].output, p->rows[i].output))
                return err_set("%s:%d: output %s is also made by line %d", path, p->rows[i].line, p->rows[i].output,
                               p->rows[p->slot[h]].line);
        p->slot[h] = i;
    }
    return 0;
}

static int find_label(char *const *labels, int classes, const char *name)
{
    for (int c = 0; c < classes; c++)
        if (!strcmp(labels[c], name)) return c;
    return -1;
}

static int plan_read(const char *path, char *const *labels, int classes, plan *p)
{
    memset(p, 0, sizeof *p);
    csv_reader cr;
    if (csv_open(&cr, path)) return -1;
    int nf, header = 1, rc = -1;
    while ((nf = csv_read(&cr)) > 0) {
        char *fl[5];
        for (int i = 0; i < nf && i < 5; i++) fl[i] = util_trim(cr.field[i]);
        if (nf == 1 && (!*fl[0] || *fl[0] == '#')) continue;   /* blank or a comment */
        int line = cr.line;
        if (header) {
            header = 0;
            if (nf != 5 || strcmp(fl[0], "source") || strcmp(fl[1], "target") || strcmp(fl[2], "r") ||
                strcmp(fl[3], "seed") || strcmp(fl[4], "output")) {
                err_set("%s:%d: the header must be \"source,target,r,seed,output\", got \"%.80s%s\"", path, line,
                        fl[0], nf > 1 ? ",..." : "");
                goto out;
            }
            continue;
        }
        if (*fl[0] == '#') continue;
        if (nf != 5) {
            err_set("%s:%d: %d fields (source,target,r,seed,output)", path, line, nf);
            goto out;
        }
        plan_row row = {.line = line};
        if ((row.target = find_label(labels, classes, fl[1])) < 0) {
            err_set("%s:%d: target \"%s\" is not a label", path, line, fl[1]);
            goto out;
        }
        char *end;
        if (!strcmp(fl[2], "ada")) {
            row.r = GENIE_R_ADA;
        } else {
            errno = 0;
            row.r = strtod(fl[2], &end);
            if (errno || end == fl[2] || *end || !(row.r >= 0 && row.r <= 1)) {
                err_set("%s:%d: r \"%s\" is not in [0, 1] or \"ada\"", path, line, fl[2]);
                goto out;
            }
        }
        errno = 0;
        row.seed = strtoull(fl[3], &end, 10);
        if (errno || end == fl[3] || *end || fl[3][0] == '-') {
            err_set("%s:%d: seed \"%s\" is not an unsigned integer", path, line, fl[3]);
            goto out;
        }
        if (!*fl[4]) {
            err_set("%s:%d: no output path", path, line);
            goto out;
        }
        if (!*fl[0] && (row.r == 0 || row.r == GENIE_R_ADA)) {
            err_set("%s:%d: r %s needs a source image", path, line, fl[2]);
            goto out;
        }
        if (p->n == p->cap) {
            p->cap = p->cap ? 2 * p->cap : 256;
            plan_row *r = realloc(p->rows, p->cap * sizeof *r);
            if (!r) {
                err_set("%s: out of memory", path);
                goto out;
            }
            p->rows = r;
        }
        genindex_path_norm(fl[4]);   /* o//e.png and o/e.png are one file */
        row.source = *fl[0] ? strdup(fl[0]) : NULL;
        row.output = strdup(fl[4]);
        p->rows[p->n++] = row;
    }
    if (nf == 0 && header) err_set("%s: empty (no header \"source,target,r,seed,output\")", path);
    else if (nf == 0) rc = plan_hash(p, path);
out:
    csv_close(&cr);
    return rc;
}

/* A row of the index: what it was made from and how (r: the r it was made at; gaps as genindex_gaps). */
static char *row_line(const plan_row *r, char *const *labels, int classes, const char *rs, const char *gaps,
                      const char *settings)
{
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->seed);
    int sc = r->source ? labels_match(r->source, labels, classes) : -1;
    genindex_row row = {{r->output, r->source, labels[r->target], sc >= 0 ? labels[sc] : "", rs, seed, gaps,
                         settings}};
    return genindex_line(&row);
}

/* Rows of one index into the plan's rows: a row's first line is kept when its output is whole; the others are
 * counted in *dropped (a line cut short by a stopped run sets *torn). */
static int index_read(const char *path, plan *p, char *const *labels, int classes, const char *settings, int *former,
                      int *dropped, int *torn)
{
    genindex_reader rd;
    int rc = genindex_open(&rd, path);
    if (rc) return rc < 0 ? -1 : 0;
    genindex_row row;
    int got;
    *former |= rd.former;
    while ((got = genindex_read(&rd, &row)) != 0) {
        if (got < 0) {
            fprintf(stderr, "%s; dropped\n", err_msg());
            (*dropped)++;
            continue;
        }
        char out[4096];
        snprintf(out, sizeof out, "%s", row.f[GX_OUTPUT]);
        genindex_path_norm(out);
        int i = plan_find(p, out);
        if (i < 0 || !p->rows[i].done || p->rows[i].index_line) {
            (*dropped)++;
            continue;
        }
        if (!*row.f[GX_SETTINGS]) row.f[GX_SETTINGS] = settings;   /* the settings check vouched for it */
        row.f[GX_OUTPUT] = out;
        if (!*row.f[GX_SOURCE_CLASS] && *row.f[GX_SOURCE]) {
            int c = labels_match(row.f[GX_SOURCE], labels, classes);
            row.f[GX_SOURCE_CLASS] = c >= 0 ? labels[c] : "";
        }
        if (!(p->rows[i].index_line = genindex_line(&row))) {
            genindex_close(&rd);
            return err_set("%s: out of memory", path);
        }
    }
    if (rd.torn_line) {
        fprintf(stderr, "%s:%d: the line is cut short (a run stopped while writing it): dropped\n", path,
                rd.torn_line);
        *torn = 1;
    }
    genindex_close(&rd);
    return 0;
}

/* The index a rank > 0 of an MPI run appends to: path.parts/<rank>.csv (parts, when rank < 0: the folder). */
static void part_path(char *s, size_t n, const char *path, int rank)
{
    if (rank < 0) snprintf(s, n, "%s.parts", path);
    else snprintf(s, n, "%s.parts/%d.csv", path, rank);
}

/* Calls fn on each part an MPI run left (part_path's names, nothing else in the folder), until one fails. */
static int parts_each(const char *path, int (*fn)(const char *part, void *ctx), void *ctx)
{
    char dir[4300];
    part_path(dir, sizeof dir, path, -1);
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : err_set("%s: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        int rank;
        char tail;
        if (sscanf(e->d_name, "%d.cs%c", &rank, &tail) != 2 || tail != 'v' || rank < 0) continue;
        char part[4400];
        part_path(part, sizeof part, path, rank);
        rc = fn(part, ctx);
    }
    closedir(d);
    return rc;
}

typedef struct {
    plan *p;
    char *const *labels;
    int classes;
    const char *settings;
    int *former, *dropped, *torn, nparts;
} parts_reading;

/* Each part is read as the index itself is. */
static int part_read(const char *part, void *ctx)
{
    parts_reading *r = ctx;
    r->nparts++;
    return index_read(part, r->p, r->labels, r->classes, r->settings, r->former, r->dropped, r->torn);
}

/* Once their lines are in the index: the parts go (a part left by a failed unlink is read again, harmlessly). */
static int part_remove(const char *part, void *ctx)
{
    (void)ctx;
    if (unlink(part)) fprintf(stderr, "%s: %s\n", part, strerror(errno));
    return 0;
}

/* The index of an earlier run (and the parts its MPI ranks appended to): its lines are kept for the plan's
 * outputs that are whole; a line cut short by a stopped run, lines of outputs that are not (or no longer) there,
 * the former format and parts make it rewritten once, in plan order (else it is only appended to). Outputs with
 * no line get what the plan asked for (Ada's pick is not known; txt2img is indexed as r 1, as when made). Then,
 * when out is not NULL, the index is open for appending, in *out. */
static int index_start(const char *path, plan *p, char *const *labels, int classes, const char *settings, FILE **out)
{
    int rewrite = 0, dropped = 0, torn = 0, rc;
    parts_reading pr = {p, labels, classes, settings, &rewrite, &dropped, &torn, 0};
    if (index_read(path, p, labels, classes, settings, &rewrite, &dropped, &torn) || parts_each(path, part_read, &pr))
        return -1;
    const int nparts = pr.nparts;
    rewrite |= dropped || torn || nparts;
    char **lines = calloc(p->n ? p->n : 1, sizeof *lines);
    if (!lines) return err_set("%s: out of memory", path);
    int fresh = 0;
    for (int i = 0; i < p->n; i++) {
        plan_row *r = &p->rows[i];
        if (!r->done) continue;
        if (r->index_line) {
            if (rewrite) lines[i] = r->index_line;
            continue;
        }
        char rs[32];
        snprintf(rs, sizeof rs, "%g", r->source ? r->r : 1.0);
        if (!(lines[i] = r->index_line = row_line(r, labels, classes, r->r == GENIE_R_ADA ? "ada" : rs, "", settings))) {
            free(lines);
            return err_set("%s: out of memory", path);
        }
        fresh++;
    }
    rc = 0;
    if (rewrite && (rc = genindex_rewrite(path, lines, p->n)) == 0 && dropped)
        fprintf(stderr, "%s: rewritten without %d lines of outputs that are not there or not in the plan\n", path,
                dropped);
    if (rc == 0 && nparts) {
        char dir[4300];
        parts_each(path, part_remove, NULL);
        part_path(dir, sizeof dir, path, -1);
        rmdir(dir);
    }
    if (rc == 0 && out && !(*out = genindex_append(path))) rc = -1;
    for (int i = 0; rc == 0 && out && !rewrite && i < p->n; i++)
        if (lines[i]) fputs(lines[i], *out);
    if (rc == 0 && out && fresh && !rewrite) rc = genindex_sync(*out, path);
    free(lines);
    return rc;
}

static int parent_dirs(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return 0;
    *slash = 0;
    return util_mkdirs(dir);
}

/* Outputs that exist must have been made with these settings (path.settings, written when a run starts afresh):
 * a plan resumed after the model, guidance or r set changed would mix two kinds of image under one index.
 * Returns 1 when path records exactly `now`; else 0, with what it records in `before` ("" and *recorded 0 when
 * there is no such file). */
static int settings_same(const char *path, const char *now, char *before, size_t n, int *recorded)
{
    before[0] = 0;
    FILE *f = fopen(path, "r");
    *recorded = f != NULL;
    if (!f) return 0;
    if (!fgets(before, n, f)) before[0] = 0;
    fclose(f);
    before[strcspn(before, "\n")] = 0;
    return !strcmp(before, now);
}

/* -remake: the outputs made with other settings go first, then their index lines (index_start), and only then is
 * the new settings line written, so a run cut short anywhere leaves no old image under the new settings. */
static int remake_outputs(plan *p)
{
    for (int i = 0; i < p->n; i++) {
        plan_row *r = &p->rows[i];
        if (!r->done) continue;
        if (unlink(r->output) && errno != ENOENT) return err_set("%s: %s", r->output, strerror(errno));
        r->done = 0;
    }
    return 0;
}

/* Z_T: the Ada targets' images as the online module chooses them (ada_mean_images), from the training list. */
static int set_means(genie *g, const char *data, const plan *p, int classes)
{
    datacfg dc;
    dataset ds = {0};
    if (datacfg_read(data, &dc)) return -1;
    int rc = -1;
    img_u8 **imgs = calloc(classes, sizeof *imgs);
    int *counts = calloc(classes, sizeof *counts);
    unsigned char *need = calloc(classes, 1);
    if (!imgs || !counts || !need) {
        err_set("out of memory");
        goto out;
    }
    if (!dc.train) {
        err_set("%s: no train= line (GeNIe-Ada's class means come from the training images)", data);
        goto out;
    }
    if (dataset_load(dc.train, dc.labels, dc.classes, &ds)) goto out;
    if (ds.classes != classes) {
        err_set("%s: %d classes, the plan's labels have %d", data, ds.classes, classes);
        goto out;
    }
    for (int i = 0; i < p->n; i++)
        if (p->rows[i].r == GENIE_R_ADA && !p->rows[i].done) need[p->rows[i].target] = 1;
    for (int c = 0; c < classes; c++)
        if (need[c] && !ds.count[c]) {
            err_set("%s: no training image of class %s for GeNIe-Ada's target mean", dc.train, ds.labels[c]);
            goto out;
        }
    if (ada_mean_images(ds.paths, ds.members, ds.count, need, classes, imgs, counts)) goto out;
    rc = genie_set_class_means(g, imgs, counts);
out:
    if (imgs) ada_mean_images_free(imgs, counts, classes);
    free(imgs);
    free(counts);
    free(need);
    if (ds.paths) dataset_free(&ds);
    datacfg_free(&dc);
    return rc;
}

/* A bar redrawn in place on a terminal; in a log, one line per tenth of the plan. */
static void progress(int done, int total, double t0, int made, int *last_tenth)
{
    double el = util_now() - t0, rate = el > 0 ? made / el : 0;
    int tty = isatty(fileno(stderr)), tenth = total ? 10 * done / total : 10;
    if (!tty && tenth == *last_tenth) return;
    *last_tenth = tenth;
    int bar = total ? 30 * done / total : 30;
    char b[31];
    for (int i = 0; i < 30; i++) b[i] = i < bar ? '#' : '.';
    b[30] = 0;
    fprintf(stderr, "%s[%s] %d/%d images, %.1f img/s, %.0f s left%s", tty ? "\r" : "", b, done, total, rate,
            rate > 0 ? (total - done) / rate : 0.0, tty ? "   " : "\n");
    if (tty && done == total) fputc('\n', stderr);
}

/* Under mpirun, once rank 0 has checked the start (lock, settings, the index and its parts merged): its done flags
 * and settings fingerprint go to every rank; the rows left are packed into engine batches as one process packs
 * them (in plan order, up to -batch engine items), and batch b is rank b % size's: on the CPU an image's bytes
 * depend on its place in its engine batch (the kernels round a row by where it falls in their tiles), so a rank
 * makes whole batches of the single process's packing, never a mix. The rows of other ranks count as done here.
 * Ranks > 0 open their part of the index (part_path). 0; 1 when no row is left to make (on every rank: *stage 2,
 * no collective follows); -1 + err_msg(). */
static int share_rows(plan *p, const genie_opts *go, int rank, int size, const char *plan_path,
                      const char *index_path, char *settings, FILE **index, int *stage)
{
    *stage = 1;
    if (!dist_all_ok(1)) {
        *stage = 2;
        return err_set("%s: another rank stopped before starting (its message above)", plan_path);
    }
    size_t n = 16 + sizeof(int) + (size_t)p->n;
    unsigned char *buf = calloc(1, n);
    if (!buf) return err_set("out of memory");   /* the end's collective still follows (stage 1) */
    if (rank == 0) {
        memcpy(buf, settings, 16);
        memcpy(buf + 16, &p->n, sizeof(int));
        for (int i = 0; i < p->n; i++) buf[16 + sizeof(int) + i] = (unsigned char)p->rows[i].done;
    }
    int rc = dist_bcast(buf, n), rows;
    memcpy(&rows, buf + 16, sizeof(int));
    if (rc == 0 && rows != p->n)
        rc = err_set("%s: %d rows here, %d at rank 0 (the ranks must read the same plan)", plan_path, p->n, rows);
    if (rc == 0 && rank > 0) {
        memcpy(settings, buf, 16);
        settings[15] = 0;
        for (int i = 0; i < p->n; i++) p->rows[i].done = buf[16 + sizeof(int) + i];
    }
    free(buf);
    if (rc) return -1;
    int k = 0, nb = 0, nq = 0, cost = 0;
    for (int i = 0; i < p->n; i++) {
        plan_row *r = &p->rows[i];
        if (r->done) continue;
        genie_request q = {.target = r->target, .r = r->r, .seed = r->seed};
        int c = genie_opts_cost(go, &q);
        if (nq > 0 && cost + c > go->eo.max_batch) {
            nb++;
            nq = cost = 0;
        }
        r->batch = nb;
        nq++;
        cost += c;
        k++;
        if (nb % size != rank) r->done = 1;
    }
    if (!k) {
        *stage = 2;
        return 1;
    }
    if (rank > 0) {
        char part[4400];
        part_path(part, sizeof part, index_path, -1);
        if (util_mkdirs(part)) return -1;
        part_path(part, sizeof part, index_path, rank);
        if (!(*index = genindex_append(part))) return -1;
    }
    return 0;
}

/* At the end of an MPI run, on rank 0: the index with every rank's lines, in plan order, the parts gone. */
static int merge_parts(plan *p, char *const *labels, int classes, const char *index_path, const char *settings)
{
    for (int i = 0; i < p->n; i++) {
        free(p->rows[i].index_line);
        p->rows[i].index_line = NULL;
        p->rows[i].done = genindex_png_whole(p->rows[i].output);
    }
    FILE *f = NULL;
    if (index_start(index_path, p, labels, classes, settings, &f)) return -1;
    if (fclose(f)) return err_set("%s: cannot write (%s)", index_path, strerror(errno));
    return 0;
}

int generate_main(int argc, char **argv)
{
    genie_opts go;
    genie_opts_default(&go);
    int remake = 0;   /* outputs made with other settings: made anew instead of an error */
    const char *data = NULL, *sched = NULL, *rset = NULL, *labels_path = NULL, *index_path = NULL, *names = NULL;
    const char *device = NULL;
    const arg_opt opts[] = {ARG_OPT("-model", ARG_STR, &go.eo.model),
                            ARG_REPEAT("-lora", go.eo.lora, &go.eo.n_lora, LORA_MAX),
                            ARG_OPT("-labels", ARG_STR, &labels_path),
                            ARG_OPT("-data", ARG_STR, &data),
                            ARG_OPT("-names", ARG_STR, &names),
                            ARG_OPT("-template", ARG_STR, &go.prompt_template),
                            ARG_OPT("-index", ARG_STR, &index_path),
                            ARG_OPT("-backbone", ARG_STR, &go.backbone_cfg),
                            ARG_OPT("-weights", ARG_STR, &go.backbone_weights),
                            ARG_RANGE("-embed-layer", ARG_INT, &go.embed_layer, -1, 100000),
                            ARG_OPT("-rset", ARG_STR, &rset),
                            ARG_RANGE("-batch", ARG_INT, &go.eo.max_batch, 1, 1024),
                            ARG_RANGE("-steps", ARG_INT, &go.eo.steps, 1, 1000),
                            ARG_RANGE("-guidance", ARG_DOUBLE, &go.eo.guidance, 0, 100),
                            ARG_RANGE("-eta", ARG_DOUBLE, &go.eo.eta, 0, 1),
                            ARG_OPT("-scheduler", ARG_STR, &sched),
                            ARG_RANGE("-threads", ARG_INT, &go.eo.threads, 0, 1024),
                            ARG_OPT("-device", ARG_STR, &device),
                            ARG_OPT("-remake", ARG_SWITCH, &remake),
                            ARG_END};
    char *pos[1];
    int np = args_parse("generate", argc, argv, opts, pos, 1);
    if (np < 0) return -1;
    if (np < 1)
        return err_set("usage: genie generate <plan.csv> [-labels L | -data D] [-model %s] [-lora file[:scale]]... "
                       "[-backbone cfg -weights W] [-batch %d] [-steps %d] [-guidance %g] [-scheduler %s] [-eta E] [-threads N] "
                       "[-device cpu|cuda[:N]] [-rset %g,...] [-template \"%s\"] [-names file] [-index out.csv] [-remake]\n"
                       "  under mpirun -np N: the plan's rows split over N ranks, one index (rank 0's lock); -device "
                       "cuda: cuda:<the rank's place on its machine>", go.eo.model, go.eo.max_batch,
                       go.eo.steps, go.eo.guidance, scheduler_kind_name(go.eo.scheduler), go.r_set[0],
                       go.prompt_template);
    const char *plan_path = pos[0];
    char idx_default[4200];
    snprintf(idx_default, sizeof idx_default, "%s.index.csv", plan_path);
    if (!index_path) index_path = idx_default;
    if (util_check_dest(index_path)) return -1;   /* before the model is loaded and a batch is made */
    if (sched) {
        int k = scheduler_kind_parse(sched);
        if (k < 0) return err_set("-scheduler: \"%s\" (" SCHEDULER_NAMES ")", sched);
        go.eo.scheduler = (enum sd_sched_kind)k;
    }
    if (!genie_template_ok(go.prompt_template))
        return err_set("-template \"%s\": no {} for the class's words (every class would get the same prompt)",
                       go.prompt_template);
    if (rset && (go.n_r = ada_parse_rset(rset, go.r_set, ADA_MAX_R)) < 0) return -1;
    if (device && !backend_name_valid(device)) return err_set("-device: \"%s\" (cpu, cuda or cuda:N)", device);
    /* under mpirun: rank 0 holds the index's lock and its file, the others make their share of the rows into
     * parts of it (part_path) that rank 0 merges in plan order at the end; alone: rank 0 of 1, as always */
    if (dist_init()) return -1;
    int rank = dist_rank(), size = dist_size();
    char dev[32];
    if (device && size > 1 && !strcmp(device, "cuda")) {   /* one device per rank of a machine */
        snprintf(dev, sizeof dev, "cuda:%d", dist_local_rank());
        device = dev;
    }
    if (device) {
        const char *note;
        go.eo.device = backend_choose(device, &note);
        if (note) fprintf(stderr, "%s\n", note);
    }
    if (go.eo.threads <= 0 && dist_local_size() > 1) {   /* the ranks on one machine share its cores */
        go.eo.threads = util_cores() / dist_local_size();
        if (go.eo.threads < 1) go.eo.threads = 1;
    }

    datacfg dc = {0};

    if (!labels_path && data) {
        if (datacfg_read(data, &dc)) return -1;
        labels_path = dc.labels;
    }
    if (!labels_path) return err_set("generate: -labels <file> or -data <file.data> is needed for the target names");

    int rc = -1, classes = 0, B = 0, lock = -1, stage = 0;   /* stage: the MPI collectives passed (1: the start's) */
    FILE *index = NULL;
    char **labels = NULL, **words = NULL;
    plan p = {0};
    genie *g = NULL;
    genie_request *rq = NULL;
    genie_result *res = NULL;
    img_u8 *src = NULL;
    float *imgs = NULL;
    unsigned char *rgb = NULL;
    int *rows = NULL;
    float *want = NULL;
    {
        /* labels: one per line */
        FILE *f = fopen(labels_path, "r");
        if (!f) {
            err_set("%s: %s", labels_path, strerror(errno));
            goto out;
        }
        char line[1024];
        while (fgets(line, sizeof line, f)) {
            char *s = util_trim(line);
            if (!*s) continue;
            labels = realloc(labels, (classes + 1) * sizeof *labels);
            labels[classes++] = strdup(s);
        }
        fclose(f);
    }
    if (!classes) {
        err_set("%s: no labels", labels_path);
        goto out;
    }
    /* one run at a time on an index: a second would mix its settings and lines into the first's */
    if (rank == 0 && (lock = genindex_lock(index_path)) < 0) goto out;
    if (plan_read(plan_path, labels, classes, &p)) goto out;
    int todo = 0, ada = 0, any_ada = 0;   /* ada: an undone row needs f_theta; any_ada: the settings name Ada's */
    for (int i = 0; rank == 0 && i < p.n; i++) {
        p.rows[i].done = genindex_png_whole(p.rows[i].output);   /* a file cut short or garbage is made anew */
        todo += !p.rows[i].done;
        ada |= !p.rows[i].done && p.rows[i].r == GENIE_R_ADA;
        any_ada |= p.rows[i].r == GENIE_R_ADA;
    }
    if (!(words = genie_read_words(names, labels, classes))) goto out;
    char settings[16];
    if (rank == 0) {
        char now[8192], before[8192], spath[4300];
        int recorded;
        if (recipe_settings(&go, labels, words, classes, any_ada, NULL, now, sizeof now)) goto out;
        snprintf(settings, sizeof settings, "%08x", util_fnv(UTIL_FNV_INIT, now));
        snprintf(spath, sizeof spath, "%s.settings", index_path);
        int made = p.n - todo;
        if (made && !settings_same(spath, now, before, sizeof before, &recorded)) {
            const char *how = recorded ? "with other settings: " : "by a run that recorded none";
            if (!remake) {
                err_set("%s: %d of the plan's outputs exist, made %s%s; this run: %s. Delete them, plan other "
                        "outputs, or pass -remake to make them anew", spath, made, how, before, now);
                goto out;
            }
            fprintf(stderr, "%s: %d outputs were made %s%s; -remake: making them anew\n", plan_path, made, how,
                    before);
            if (remake_outputs(&p)) goto out;
            todo = p.n;
            ada = any_ada;
            made = 0;
        }
        if (index_start(index_path, &p, labels, classes, settings, &index)) goto out;
        char line[sizeof now + 1];
        snprintf(line, sizeof line, "%s\n", now);
        if (!made && util_write_text(spath, line)) goto out;
        fprintf(stderr, "%s: %d requests, %d already made, %d to make%s\n", plan_path, p.n, p.n - todo, todo,
                size > 1 ? ", split over the ranks" : "");
        if (ada && (!go.backbone_cfg || !go.backbone_weights || !data)) {
            err_set("%s: GeNIe-Ada rows need -backbone <cfg> -weights <file> (f_theta) and -data <file.data> (the "
                    "target classes' training images)", plan_path);
            goto out;
        }
    }
    if (size > 1 && (rc = share_rows(&p, &go, rank, size, plan_path, index_path, settings, &index, &stage)) != 0) {
        rc = rc < 0 ? -1 : 0;   /* 1: nothing left to make */
        goto out;
    }
    if (size > 1) {   /* this rank's share */
        todo = ada = 0;
        for (int i = 0; i < p.n; i++) {
            todo += !p.rows[i].done;
            ada |= !p.rows[i].done && p.rows[i].r == GENIE_R_ADA;
        }
    }
    if (!todo) {
        rc = 0;
        goto out;
    }
    if (!ada) go.backbone_cfg = NULL;
    if (!(g = genie_load(&go, words, classes))) goto out;
    if (ada && set_means(g, data, &p, classes)) goto out;
    int W, H;
    B = go.eo.max_batch;
    genie_image_size(g, &W, &H);
    size_t ni = genie_image_floats(g);
    rq = calloc(B, sizeof *rq);
    res = calloc(B, sizeof *res);
    src = calloc(B, sizeof *src);
    imgs = malloc(sizeof(float) * ni * B);
    rgb = malloc((size_t)W * H * 3);
    rows = calloc(B, sizeof *rows);
    want = malloc(sizeof(float) * ni);
    if (!rq || !res || !src || !imgs || !rgb || !rows || !want) {
        err_set("out of memory");
        goto out;
    }
    double t0 = util_now(), rt_mse = 0;
    int made = 0, rt_n = 0, tenth = -1;
    for (int i = 0; i < p.n;) {
        /* pack undone rows into one engine batch */
        int nq = 0, cost = 0;
        for (; i < p.n; i++) {
            plan_row *r = &p.rows[i];
            if (r->done) continue;
            genie_request q = {.target = r->target, .r = r->r, .seed = r->seed};
            int c = genie_request_cost(g, &q);
            if (nq > 0 && (cost + c > B || r->batch != p.rows[rows[0]].batch)) break;   /* share_rows' batches */
            if (r->source && imgio_load(r->source, 0, 0, &src[nq])) {
                err_wrap("%s:%d: ", plan_path, r->line);
                goto out;
            }
            q.source = r->source ? &src[nq] : NULL;
            rq[nq] = q;
            res[nq].image = imgs + (size_t)nq * ni;
            rows[nq++] = i;
            cost += c;
        }
        if (!nq) break;
        if (genie_run(g, rq, nq, res)) {
            /* the engine names its items: run the batch's requests alone to name the plan's line that fails */
            int bad = nq == 1 ? 0 : -1;
            for (int q = 0; q < nq && bad < 0; q++)
                if (genie_run(g, &rq[q], 1, &res[q])) bad = q;
            if (bad >= 0) err_wrap("%s:%d: ", plan_path, p.rows[rows[bad]].line);
            else err_wrap("%s: lines %d to %d (one engine batch; each alone works): ", plan_path, p.rows[rows[0]].line,
                          p.rows[rows[nq - 1]].line);
            goto out;
        }
        for (int q = 0; q < nq; q++) {
            plan_row *r = &p.rows[rows[q]];
            if (r->r == 0 && image_to_planar(&src[q], W, H, want) == 0) {
                /* what the autoencoder costs: the round trip against its source at the model's size */
                double se = 0;
                for (size_t j = 0; j < ni; j++) se += (double)(res[q].image[j] - want[j]) * (res[q].image[j] - want[j]);
                rt_mse += se / ni;
                rt_n++;
            }
            image_from_planar(res[q].image, W, H, rgb, W);
            if (parent_dirs(r->output) || imgio_write(r->output, rgb, W, H, 95)) {
                goto out;
            }
            char gaps[256], rs[32];
            genindex_gaps(gaps, sizeof gaps, res[q].gaps, res[q].n_gaps, res[q].ada_fallback);
            snprintf(rs, sizeof rs, "%g", res[q].r);
            char *line = row_line(r, labels, classes, rs, gaps, settings);
            if (!line) {
                err_set("%s: out of memory", index_path);
                goto out;
            }
            fputs(line, index);
            free(line);
            r->done = 1;
            made++;
        }
        if (genindex_sync(index, index_path)) goto out;   /* appended: a batch's lines, synced */
        if (size > 1) progress(made, todo, t0, made, &tenth);   /* this rank's share */
        else progress(p.n - todo + made, p.n, t0, made, &tenth);
    }
    if (rt_n)   /* images in [0, 1]: PSNR = -10 log10(MSE) */
        fprintf(stderr, "VAE round trips: MSE %.5f, PSNR %.2f dB over %d images (at %dx%d, in [0,1])\n", rt_mse / rt_n,
                -10 * log10(rt_mse / rt_n), rt_n, W, H);
    if (size > 1) fprintf(stderr, "rank %d of %d: ", rank, size);
    fprintf(stderr, "made %d images in %.1f s (%.1f img/s); index %s\n", made, util_now() - t0,
            made / (util_now() - t0 + 1e-9), index_path);
    rc = 0;
out:
    if (index && fclose(index) && rc == 0) rc = err_set("%s: cannot write (%s)", index_path, strerror(errno));
    index = NULL;
    if (size > 1 && stage == 0) dist_all_ok(0);   /* the start's collective: this rank stopped before it */
    if (size > 1 && stage == 1) {
        /* the end's: every rank's part is closed; rank 0 merges them into the index in plan order, whatever failed
         * (what was made stays made) */
        int all = dist_all_ok(rc == 0);
        if (rank == 0 && merge_parts(&p, labels, classes, index_path, settings) && rc == 0) rc = -1;
        if (!all && rc == 0)
            rc = err_set("%s: another rank failed (its message above); run it again to make the rows left", plan_path);
    }
    dist_finalize();
    free(rows);
    free(want);
    for (int i = 0; src && i < B; i++) imgio_free(&src[i]);
    free(src);
    free(rq);
    free(res);
    free(imgs);
    free(rgb);
    genie_free(g);
    plan_free(&p);
    for (int c = 0; c < classes; c++) {
        free(labels[c]);
        if (words) free(words[c]);
    }
    free(labels);
    free(words);
    datacfg_free(&dc);
    genindex_unlock(lock);
    return rc;
}
