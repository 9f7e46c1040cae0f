#include "src/cmd/plan.h"
#include "common/args.h"
#include "common/csv.h"
#include "common/num.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "src/train/dataset.h"
#include "augment/genie/recipe.h"
#include "common/err.h"
#include "common/philox.h"
#include "augment/genie/planner.h"
#include "common/util.h"

/* Reads the square confusion CSV confusion_write_csv writes: a header naming the labels in class order, then one row
 * per true class (its label, then its counts). The labels must be this data set's, in its order; the counts finite
 * and non-negative. */
static int read_confusion(const char *path, const dataset *ds, double *m)
{
    csv_reader r;
    if (csv_open(&r, path)) return -1;
    int k = ds->classes, rows = -1, n, rc = 0;
    while (rc == 0 && (n = csv_read(&r)) > 0) {
        if (n != k + 1) {
            rc = err_set("%s:%d: %d fields, expected %d (a label and %d counts: is it a confusion CSV of this data "
                         "set?)", path, r.line, n, k + 1, k);
            break;
        }
        if (rows < 0) {
            for (int j = 0; j < k && rc == 0; j++)
                if (strcmp(r.field[j + 1], ds->labels[j]))
                    rc = err_set("%s:%d: column %d is '%s', but label %d of the data set is '%s'", path, r.line, j + 2,
                                 r.field[j + 1], j, ds->labels[j]);
            rows = 0;
            continue;
        }
        if (rows == k) {
            rc = err_set("%s:%d: more than %d rows of counts", path, r.line, k);
            break;
        }
        if (strcmp(r.field[0], ds->labels[rows])) {
            rc = err_set("%s:%d: row %d is '%s', but label %d of the data set is '%s'", path, r.line, rows + 1,
                         r.field[0], rows, ds->labels[rows]);
            break;
        }
        for (int j = 0; j < k && rc == 0; j++)
            if (num_double(r.field[j + 1], 0, HUGE_VAL, &m[rows * k + j]))
                rc = err_set("%s:%d: column %d: '%s' is not a count (a finite number >= 0)", path, r.line, j + 2,
                             r.field[j + 1]);
        rows++;
    }
    if (n < 0) rc = -1;
    csv_close(&r);
    if (rc == 0 && rows != k) rc = err_set("%s: %d rows of counts, expected %d", path, rows < 0 ? 0 : rows, k);
    return rc;
}

/* One plan row (RFC 4180: a path with a comma or a quote is quoted): source,target,r,seed,output. */
static void put_row(FILE *f, const char *source, const char *target, const char *r, uint64_t seed, const char *output)
{
    char num[32];
    csv_put(f, source, ',');
    csv_put(f, target, ',');
    csv_put(f, r, ',');
    snprintf(num, sizeof num, "%llu", (unsigned long long)seed);
    csv_put(f, num, ',');
    csv_put(f, output, '\n');
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int plan_main(int argc, char **argv)
{
    /* GeNIe's defaults (augment/genie/recipe.c): its r, top_k, quota (per class) and targets */
    const genie_cfg *d = recipe_defaults();
    const char *mode = NULL, *dir = NULL, *out = NULL, *conf = NULL, *sweight = "uniform";
    const char *targets = d->targets == GENIE_TARGETS_ALL ? "all" : "few";
    double r = d->r;
    int per = d->quota, topk = d->top_k;
    uint64_t seed = 1;
    const arg_opt opts[] = {ARG_OPT("-mode", ARG_STR, &mode),
                            ARG_OPT("-dir", ARG_STR, &dir),
                            ARG_OPT("-o", ARG_STR, &out),
                            ARG_OPT("-confusion", ARG_STR, &conf),
                            ARG_OPT("-targets", ARG_STR, &targets),
                            ARG_RANGE("-r", ARG_DOUBLE, &r, 0, 1),
                            ARG_RANGE("-per-class", ARG_INT, &per, 1, 1000000),
                            ARG_RANGE("-top-k", ARG_INT, &topk, 1, 1000),
                            ARG_OPT("-seed", ARG_U64, &seed),
                            ARG_OPT("-source-weight", ARG_STR, &sweight),
                            ARG_END};
    char *pos[1];
    int np = args_parse("plan", argc, argv, opts, pos, 1);
    if (np < 0) return -1;
    if (np < 1)
        return err_set("usage: genie plan <data> -mode genie|ada|img2img|txt2img|roundtrip -dir OUTDIR -o plan.csv "
                       "[-confusion train_confusion.csv] [-r %g] [-per-class %d] [-top-k %d] [-targets few|all] [-seed S]", d->r,
                       d->quota, d->top_k);
    const char *data = pos[0];
    if (!mode || !dir || !out) return err_set("plan: -mode, -dir and -o are required");
    if (util_check_dest(out)) return -1;
    int m_genie = !strcmp(mode, "genie"), m_ada = !strcmp(mode, "ada"), m_i2i = !strcmp(mode, "img2img"),
        m_t2i = !strcmp(mode, "txt2img"), m_rt = !strcmp(mode, "roundtrip");
    if (!(m_genie || m_ada || m_i2i || m_t2i || m_rt)) return err_set("plan: -mode \"%s\" (genie, ada, img2img, txt2img, roundtrip)", mode);
    if ((m_genie || m_ada) && !conf) return err_set("plan: -mode %s needs -confusion (the classes most confused with each target)", mode);
    if (!(r > 0)) return err_set("plan: -r must be in (0, 1]");
    if (strcmp(sweight, "uniform") && strcmp(sweight, "rate"))
        return err_set("plan: -source-weight \"%s\" (uniform or rate)", sweight);
    int rate_w = !strcmp(sweight, "rate") && (m_genie || m_ada);
    if (strcmp(targets, "few") && strcmp(targets, "all")) return err_set("plan: -targets \"%s\" (few or all)", targets);

    datacfg dc;
    dataset ds = {0};
    if (datacfg_read(data, &dc)) return -1;
    int rc = -1;
    double *m = NULL;
    FILE *f = NULL;
    char tmp[4200], outp[8192];
    if (!dc.train) {
        err_set("%s: no train= line", data);
        goto done;
    }
    if (dataset_load(dc.train, dc.labels, dc.classes, &ds)) goto done;
    if (!(m = calloc((size_t)ds.classes * ds.classes, sizeof *m))) goto done;
    if (conf && read_confusion(conf, &ds, m)) goto done;
    if (!(f = util_open_tmp(out, tmp, sizeof tmp))) goto done;
    fprintf(f, "source,target,r,seed,output\n");
    uint64_t k = 0;
    if (m_rt) {
        for (int i = 0; i < ds.n; i++) {
            const char *b = base_name(ds.paths[i]), *dot = strrchr(b, '.');
            if (snprintf(outp, sizeof outp, "%s/%.*s.png", dir, (int)(dot ? dot - b : (long)strlen(b)), b) >=
                (int)sizeof outp) {
                err_set("plan: -dir %s: output paths longer than %zu bytes", dir, sizeof outp - 1);
                goto done;
            }
            put_row(f, ds.paths[i], ds.labels[ds.cls[i]], "0", 0, outp);
        }
    }
    for (int t = 0; t < ds.classes && !m_rt; t++) {
        if (!strcmp(targets, "few") && recipe_shot_group(ds.count[t]) != SHOT_FEW) continue;
        int src[64], ns = 0;
        if (m_genie || m_ada) ns = planner_confused(m, ds.classes, t, topk < 64 ? topk : 64, src);
        else if (m_i2i) src[ns++] = t;
        for (int j = 0; j < per; j++, k++) {
            philox_t g;
            philox_init(&g, seed, philox_mix(k, PHILOX_PLAN));
            uint64_t item_seed = (uint64_t)philox_next(&g) << 21 ^ philox_next(&g);
            const char *path = "";
            if (ns) {
                int s = rate_w ? planner_source(m, ds.classes, t, src, ns, philox_uniform(&g))
                               : src[philox_int(&g, ns)];
                if (!ds.count[s]) {
                    err_set("%s: class %s has no training image to use as a source", dc.train, ds.labels[s]);
                    goto done;
                }
                path = ds.paths[ds.members[s][philox_int(&g, ds.count[s])]];
            }
            char rbuf[32];
            if (m_ada) snprintf(rbuf, sizeof rbuf, "ada");
            else snprintf(rbuf, sizeof rbuf, "%g", m_t2i ? 1.0 : r);
            if (snprintf(outp, sizeof outp, "%s/%05llu_%s.png", dir, (unsigned long long)k, ds.labels[t]) >=
                (int)sizeof outp) {
                err_set("plan: -dir %s: output paths longer than %zu bytes", dir, sizeof outp - 1);
                goto done;
            }
            put_row(f, path, ds.labels[t], rbuf, item_seed, outp);
        }
    }
    rc = util_commit(f, tmp, out);
    f = NULL;
done:
    if (f) {
        fclose(f);
        remove(tmp);
    }
    free(m);
    if (ds.paths) dataset_free(&ds);
    datacfg_free(&dc);
    return rc;
}
