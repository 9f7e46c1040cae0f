/* The GeNIe generation path: GeNIe-Ada's rule on hand-built embeddings, the planner's confused classes, Ada
 * through the engine (one batch, one source latent, the same noise per r: the kept image IS the fixed-r
 * img2img at the chosen r), VAE round trips, and `genie generate` / `genie plan` end to end with resume and
 * bad plans. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "augment/genie/ada.h"
#include "tests/check.h"
#include "common/err.h"
#include "augment/genie/genie.h"
#include "augment/genie/genindex.h"
#include "common/csv.h"
#include "common/image.h"
#include "common/imgio.h"
#include "src/cmd/plan.h"
#include "augment/genie/planner.h"

#define DIR "build/tests/genie"
#define SRC "data/fmnist/images/test/00010_coat.jpg"

static const char *genie_bin(void)
{
    const char *g = getenv("GENIE");
    return g ? g : "./genie";
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, c;
    while (f && (c = fgetc(f)) != EOF) n += c == '\n';
    if (f) fclose(f);
    return n;
}

/* Whether the index holds exactly one whole row for each of the plan's outputs that exist, with the plan's seed
 * and target, and nothing else; the rows counted in *rows. */
static int index_matches_plan(const char *plan_path, const char *index_path, int *rows)
{
    csv_reader pl;
    genindex_reader rd;
    genindex_row row;
    char out[64][256], seed[64][32], target[64][32];
    int n = 0, seen[64] = {0}, ok = 1;
    *rows = 0;
    if (csv_open(&pl, plan_path)) return 0;
    while (csv_read(&pl) == 5 && n < 64) {
        if (!strcmp(pl.field[0], "source")) continue;
        snprintf(out[n], sizeof out[n], "%s", pl.field[4]);
        snprintf(seed[n], sizeof seed[n], "%s", pl.field[3]);
        snprintf(target[n], sizeof target[n], "%s", pl.field[1]);
        n++;
    }
    csv_close(&pl);
    if (genindex_open(&rd, index_path)) return 0;
    int got;
    while ((got = genindex_read(&rd, &row)) > 0) {
        int i = 0;
        while (i < n && strcmp(out[i], row.f[GX_OUTPUT])) i++;
        ok &= i < n && !seen[i] && !strcmp(seed[i], row.f[GX_SEED]) && !strcmp(target[i], row.f[GX_TARGET]);
        if (i < n) seen[i]++;
        (*rows)++;
    }
    ok &= got == 0 && rd.torn_line == 0;
    genindex_close(&rd);
    for (int i = 0; i < n; i++) {
        struct stat st;
        ok &= seen[i] == (stat(out[i], &st) == 0);
    }
    return ok;
}

/* embeddings e_i = p_i * v/|v| + an orthogonal part, so the projections on v are exactly p_i */
static void along(const float *p, int n, float *emb)
{
    for (int i = 0; i < n; i++) {
        emb[i * 3 + 0] = p[i];
        emb[i * 3 + 1] = 0;
        emb[i * 3 + 2] = 0.3f * (i % 2);   /* orthogonal to v: must not matter */
    }
}

static void test_ada_rule(void)
{
    const float zs[3] = {0, 0, 0}, zt[3] = {2, 0, 0}, zero[3] = {0, 0, 0};
    float emb[15], gaps[4];
    const float p1[5] = {0, 0.1f, 0.5f, 0.6f, 0.65f};   /* largest jump 0.6 -> 0.7 */
    along(p1, 5, emb);
    CHECK(ada_choose(emb, 5, 3, zs, zt, gaps) == 2, "largest jump: chose %d", ada_choose(emb, 5, 3, zs, zt, NULL));
    CHECK(fabsf(gaps[0] - 0.1f) < 1e-6f && fabsf(gaps[1] - 0.4f) < 1e-6f && fabsf(gaps[3] - 0.05f) < 1e-6f,
          "gaps %g %g %g %g", gaps[0], gaps[1], gaps[2], gaps[3]);
    const float p2[5] = {0, 0.25f, 0.5f, 0.75f, 1.0f};  /* all equal: the lowest r after the first */
    along(p2, 5, emb);
    CHECK(ada_choose(emb, 5, 3, zs, zt, gaps) == 1, "ties: chose %d", ada_choose(emb, 5, 3, zs, zt, NULL));
    const float p3[5] = {0, -0.5f, -0.4f, -0.3f, -0.2f};   /* unsigned: a jump away from T counts */
    along(p3, 5, emb);
    CHECK(ada_choose(emb, 5, 3, zs, zt, NULL) == 1, "away: chose %d", ada_choose(emb, 5, 3, zs, zt, NULL));
    CHECK(ada_choose(emb, 5, 3, zero, zero, gaps) == -1, "|v| = 0 must not choose");
    CHECK(ada_choose(emb, 1, 3, zs, zt, gaps) == -1, "one ratio cannot choose");
    /* random embeddings: never the first ratio, and the gaps match an independent computation */
    unsigned s = 12345;
    int first = 0, gap_ok = 1;
    for (int t = 0; t < 200; t++) {
        float e[5 * 8], a[8], b[8], g[4];
        for (int i = 0; i < 40; i++) e[i] = (float)((s = s * 1103515245u + 12345u) >> 8) / (1 << 24) - 0.5f;
        for (int i = 0; i < 8; i++) a[i] = (float)((s = s * 1103515245u + 12345u) >> 8) / (1 << 24), b[i] = -a[i];
        int k = ada_choose(e, 5, 8, a, b, g);
        first += k == 0;
        double vv = 0;
        for (int j = 0; j < 8; j++) vv += (double)(b[j] - a[j]) * (b[j] - a[j]);
        for (int i = 0; i < 4; i++) {
            double d = 0;
            for (int j = 0; j < 8; j++) d += (double)(e[(i + 1) * 8 + j] - e[i * 8 + j]) * (b[j] - a[j]);
            gap_ok &= fabs(fabs(d) / sqrt(vv) - g[i]) < 1e-5;
            gap_ok &= g[k - 1] >= g[i];
        }
    }
    CHECK(first == 0 && gap_ok, "first ratio chosen %d times; gaps agree %d", first, gap_ok);

    double r[ADA_MAX_R];
    CHECK(ada_parse_rset("0.5,0.6,0.7,0.8,0.9", r, ADA_MAX_R) == 5 && r[4] == 0.9, "r set");
    CHECK(ada_parse_rset("0.5,0.5", r, ADA_MAX_R) < 0 && strstr(err_msg(), "increase"), "%s", err_msg());
    CHECK(ada_parse_rset("0.5,1.5", r, ADA_MAX_R) < 0 && strstr(err_msg(), "1.5"), "%s", err_msg());
    CHECK(ada_parse_rset("0.7", r, ADA_MAX_R) < 0, "a single ratio is refused");
    CHECK(ada_parse_rset("0.8,0.9", r, ADA_MAX_R) < 0 && strstr(err_msg(), "fixed-r GeNIe at r 0.9"), "%s", err_msg());
    CHECK(ada_parse_rset("0.5;0.6", r, ADA_MAX_R) < 0, "bad separator is refused");
}

static void test_plan_confused(void)
{
    /* 5 classes, as rates: target 0's row (10) goes 0.8 to 3 and 0.2 to 1; all of rows 3 (1), 4 (5) and 1 (2) go
     * to 0; row 2 stays home. Class 4 sent 5 images but class 1 is more confused with 0 (0.2 + 1 > 0 + 1). */
    double m[25] = {0};
    m[0 * 5 + 3] = 8, m[3 * 5 + 0] = 1, m[4 * 5 + 0] = 5, m[0 * 5 + 1] = 2, m[1 * 5 + 0] = 2, m[2 * 5 + 2] = 50;
    int out[4];
    CHECK(planner_confused(m, 5, 0, 3, out) == 3 && out[0] == 3 && out[1] == 1 && out[2] == 4, "top-3 %d %d %d", out[0],
          out[1], out[2]);
    CHECK(planner_confused(m, 5, 0, 4, out) == 4 && out[3] == 2, "the 4th (a zero) is class 2: %d", out[3]);
    /* a big class does not win by its size: 1000 images of class 2 with 1% to 0 vs 5 of class 1 with 40% */
    double b[9] = {10, 0, 0, 2, 3, 0, 10, 0, 990};
    CHECK(planner_confused(b, 3, 0, 1, out) == 1 && out[0] == 1, "rates, not counts: %d", out[0]);
    double z[25] = {0};
    CHECK(planner_confused(z, 5, 2, 2, out) == 2 && out[0] == 0 && out[1] == 1, "ties go to lower classes");
    /* sources drawn in proportion to the rates among the top 4 of m: 3 (0.8 + 1), 1 (0.2 + 1), 4 (1), 2 (0) */
    int hits[5] = {0}, top[4], nt = planner_confused(m, 5, 0, 4, top);
    for (int i = 0; i < 4000; i++) hits[planner_source(m, 5, 0, top, nt, (i + 0.5) / 4000)]++;
    CHECK(hits[3] == 1800 && hits[1] == 1200 && hits[4] == 1000 && hits[2] == 0 && hits[0] == 0,
          "rate-weighted sources: %d %d %d %d %d", hits[0], hits[1], hits[2], hits[3], hits[4]);
    CHECK(planner_source(m, 5, 0, top, 1, 0.99) == 3, "top-1: always the most confused");
    for (int i = 0; i < 5; i++) hits[i] = 0;
    nt = planner_confused(z, 5, 2, 2, top);
    for (int i = 0; i < 200; i++) hits[planner_source(z, 5, 2, top, nt, (i + 0.5) / 200)]++;
    CHECK(hits[0] == 100 && hits[1] == 100, "all rates 0: uniform over the top k (%d %d)", hits[0], hits[1]);
}

/* The online planner follows a planted confusion matrix: targets drawn in proportion to how wrong the model is on
 * them and to the quota they have left; none past its quota; -1 when nothing is left. */
static void test_planner_target(void)
{
    /* 4 classes: 0 right 90%, 1 right 10%, 2 right 99% (floored to 5% wrong), 3 not eligible */
    double m[16] = {90, 10, 0, 0, 40, 10, 50, 0, 1, 0, 99, 0, 0, 0, 0, 100};
    unsigned char eligible[4] = {1, 1, 1, 0};
    int made[4] = {0, 0, 0, 0}, hits[4] = {0};
    enum { N = 10000 };
    for (int i = 0; i < N; i++) hits[planner_target(m, 4, eligible, made, 50, (i + 0.5) / N)]++;
    /* weights 0.1 : 0.9 : 0.05 */
    CHECK(abs(hits[0] - 952) <= 2 && abs(hits[1] - 8571) <= 2 && abs(hits[2] - 476) <= 2 && hits[3] == 0,
          "targets %d %d %d %d", hits[0], hits[1], hits[2], hits[3]);
    /* class 1 with 40 of 50 made weighs 0.9 * 0.2 = 0.18; class 0 at its quota never comes */
    made[0] = 50, made[1] = 40;
    memset(hits, 0, sizeof hits);
    for (int i = 0; i < N; i++) hits[planner_target(m, 4, eligible, made, 50, (i + 0.5) / N)]++;
    CHECK(hits[0] == 0 && abs(hits[1] - 7826) <= 2 && abs(hits[2] - 2174) <= 2, "with quotas: %d %d %d", hits[0], hits[1],
          hits[2]);
    made[1] = made[2] = 50;
    CHECK(planner_target(m, 4, eligible, made, 50, 0.3) == -1, "a target past its quota was drawn");
}

/* Ada through the engine: the kept image equals a fixed-r run at the chosen r with the same seed. */
static void test_ada_engine(void)
{
    char *words[10] = {"tee", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"};
    genie_opts go;
    genie_opts_default(&go);
    go.eo.model = "data/models/fmnist-ldm";
    go.eo.threads = 2;
    go.eo.steps = 10;
    go.backbone_cfg = "cfg/fmnist.cfg";
    go.backbone_weights = "data/models/fmnist-judge.weights";
    genie *g = genie_load(&go, words, 10);
    CHECK(g != NULL, "genie_load: %s", err_msg());
    if (!g) return;
    img_u8 src = {0}, means[2] = {{0}};
    CHECK(imgio_load(SRC, 0, 0, &src) == 0, "%s", err_msg());
    CHECK(imgio_load("data/fmnist/images/test/00004_shirt.jpg", 0, 0, &means[0]) == 0, "%s", err_msg());
    CHECK(imgio_load("data/fmnist/images/test/00040_shirt.jpg", 0, 0, &means[1]) == 0 ||
              imgio_load("data/fmnist/images/test/00004_shirt.jpg", 0, 0, &means[1]) == 0, "%s", err_msg());
    img_u8 *per_class[10] = {0};
    int counts[10] = {0};
    per_class[6] = means;
    counts[6] = 2;
    CHECK(genie_set_class_means(g, per_class, counts) == 0, "%s", err_msg());
    size_t ni = genie_image_floats(g);
    float *a = malloc(ni * sizeof *a), *b = malloc(ni * sizeof *b), *c = malloc(ni * sizeof *c);
    genie_request rq[2] = {{.source = &src, .target = 6, .r = GENIE_R_ADA, .seed = 99, .stream = 3},
                           {.source = &src, .target = 6, .r = 0.3, .seed = 5}};
    genie_result res[2] = {{.image = a}, {.image = c}};
    CHECK(genie_request_cost(g, &rq[0]) == 5, "Ada costs the r set");
    CHECK(genie_run(g, rq, 2, res) == 0, "%s", err_msg());
    CHECK(res[0].n_gaps == 4 && !res[0].ada_fallback && res[0].r >= 0.6 && res[0].r <= 0.9, "Ada chose r %g (%d gaps)",
          res[0].r, res[0].n_gaps);
    /* the same pair alone at the chosen r */
    genie_request fixed = {.source = &src, .target = 6, .r = res[0].r, .seed = 99, .stream = 3};
    genie_result fr = {.image = b};
    CHECK(genie_run(g, &fixed, 1, &fr) == 0, "%s", err_msg());
    CHECK(check_max_abs(a, b, ni) < 1e-5, "Ada's image vs img2img at r %g: %g", res[0].r, check_max_abs(a, b, ni));
    /* a round trip stays close to its source; r 0 is its own engine call beside generations */
    genie_request rt[2] = {{.source = &src, .target = 4, .r = 0}, {.target = 6, .r = 1, .seed = 1}};
    genie_result rr[2] = {{.image = b}, {.image = c}};
    CHECK(genie_run(g, rt, 2, rr) == 0, "%s", err_msg());
    float *want = malloc(ni * sizeof *want);
    int W, H;
    genie_image_size(g, &W, &H);
    image_to_planar(&src, W, H, want);
    double mse = 0;
    for (size_t i = 0; i < ni; i++) mse += (b[i] - want[i]) * (b[i] - want[i]) / ni;
    CHECK(mse < 0.01, "round trip MSE %g", mse);
    /* bad requests */
    genie_request bad = {.source = NULL, .target = 6, .r = GENIE_R_ADA};
    CHECK(genie_run(g, &bad, 1, res) < 0, "Ada without a source must fail");
    bad.r = 0.5;
    bad.target = 12;
    CHECK(genie_run(g, &bad, 1, res) < 0 && strstr(err_msg(), "target"), "%s", err_msg());
    genie_request many[3] = {rq[0], rq[0], rq[0]};
    CHECK(genie_run(g, many, 3, res) < 0 && strstr(err_msg(), "engine items"), "%s", err_msg());
    free(a);
    free(b);
    free(c);
    free(want);
    imgio_free(&src);
    imgio_free(&means[0]);
    imgio_free(&means[1]);
    genie_free(g);
}

static void test_cli(void)
{
    char cmd[2048], out[16384];
    const char *G = genie_bin();
    system("rm -rf " DIR);
    mkdir("build/tests", 0755);
    mkdir(DIR, 0755);
    check_write_text(DIR "/lt.data", "classes=10\ntrain=data/fmnist/lt/train.list\nlabels=data/fmnist/labels.list\n");
    check_write_text(DIR "/conf.csv", "truth\\predicted,tee,trouser,pullover,dress,coat,sandal,shirt,sneaker,bag,boot\n"
                                "tee,5,0,0,0,0,0,1,0,0,0\ntrouser,0,1,0,0,0,0,0,0,0,0\npullover,0,0,1,0,0,0,0,0,0,0\n"
                                "dress,0,0,0,1,0,0,0,0,0,0\ncoat,0,0,0,0,1,0,0,0,0,0\nsandal,0,0,0,0,0,1,0,0,0,0\n"
                                "shirt,3,0,9,0,0,0,1,0,0,0\nsneaker,0,0,0,0,0,0,0,1,0,0\nbag,0,0,0,0,0,0,0,0,1,0\n"
                                "boot,0,0,0,0,0,0,0,0,0,1\n");
    /* genie plan: 2 per Few class (shirt, coat, tee), sources from the top-1 confused class */
    snprintf(cmd, sizeof cmd, "%s plan %s/lt.data -mode genie -per-class 2 -top-k 1 -confusion %s/conf.csv -dir %s/g -o %s/p.csv -seed 3",
             G, DIR, DIR, DIR, DIR);
    CHECK(check_sh(cmd, out, sizeof out) == 0, "%s", out);
    CHECK(count_lines(DIR "/p.csv") == 7, "plan lines %d", count_lines(DIR "/p.csv"));
    FILE *f = fopen(DIR "/p.csv", "r");
    char line[1024];
    int pullover_for_shirt = 0, shirt_for_tee = 0;
    while (f && fgets(line, sizeof line, f)) {
        pullover_for_shirt += strstr(line, "_pullover.jpg,shirt,0.8,") != NULL;
        shirt_for_tee += strstr(line, "_shirt.jpg,tee,0.8,") != NULL;
    }
    if (f) fclose(f);
    CHECK(pullover_for_shirt == 2 && shirt_for_tee == 2, "sources: %d pullover->shirt, %d shirt->tee", pullover_for_shirt, shirt_for_tee);
    char again[4096];
    snprintf(cmd, sizeof cmd, "%s plan %s/lt.data -mode genie -per-class 2 -top-k 1 -confusion %s/conf.csv -dir %s/g -o %s/p2.csv -seed 3 && cmp %s/p.csv %s/p2.csv",
             G, DIR, DIR, DIR, DIR, DIR, DIR);
    CHECK(check_sh(cmd, again, sizeof again) == 0, "a plan is a function of its inputs: %s", again);

    /* genie generate: makes 6, resumes, remakes a deleted one */
    snprintf(cmd, sizeof cmd, "%s generate %s/p.csv -data %s/lt.data -steps 5 -batch 4 -threads 2", G, DIR, DIR);
    CHECK(check_sh(cmd, out, sizeof out) == 0 && strstr(out, "made 6 images"), "%s", out);
    CHECK(count_lines(DIR "/p.csv.index.csv") == 7, "index lines %d", count_lines(DIR "/p.csv.index.csv"));
    CHECK(check_sh(cmd, out, sizeof out) == 0 && strstr(out, "6 already made, 0 to make"), "%s", out);
    CHECK(count_lines(DIR "/p.csv.index.csv") == 7, "index kept: %d lines", count_lines(DIR "/p.csv.index.csv"));
    system("rm -f " DIR "/g/00004_shirt.png");
    CHECK(check_sh(cmd, out, sizeof out) == 0 && strstr(out, "5 already made, 1 to make") && strstr(out, "made 1 images"), "%s", out);
    img_u8 im = {0};
    CHECK(imgio_load(DIR "/g/00004_shirt.png", 0, 0, &im) == 0 && im.w == 32, "%s", err_msg());
    imgio_free(&im);
    /* a resume with other settings would mix two kinds of image under one index: refused, naming both */
    system("rm -f " DIR "/g/00004_shirt.png");
    snprintf(cmd, sizeof cmd, "%s generate %s/p.csv -data %s/lt.data -steps 5 -batch 4 -threads 2 -guidance 5", G, DIR, DIR);
    CHECK(check_sh(cmd, out, sizeof out) == 1 && strstr(out, "p.csv.index.csv.settings") && strstr(out, "guidance 3") &&
              strstr(out, "guidance 5"), "%s", out);
    /* -remake makes them all anew under the new settings, and a resume with those settings keeps them */
    CHECK(check_sh("cp \"$(ls " DIR "/g/*.png | head -n 1)\" " DIR "/before.png", out, sizeof out) == 0, "%s", out);
    snprintf(cmd, sizeof cmd, "%s generate %s/p.csv -data %s/lt.data -steps 5 -batch 4 -threads 2 -guidance 5 -remake",
             G, DIR, DIR);
    CHECK(check_sh(cmd, out, sizeof out) == 0 && strstr(out, "5 outputs were made with other settings") &&
              strstr(out, "making them anew") && strstr(out, "made 6 images"), "%s", out);
    CHECK(check_sh("grep -q 'guidance 5,' " DIR "/p.csv.index.csv.settings", out, sizeof out) == 0, "settings now");
    CHECK(count_lines(DIR "/p.csv.index.csv") == 7, "index after -remake: %d lines", count_lines(DIR "/p.csv.index.csv"));
    CHECK(check_sh("! cmp -s \"$(ls " DIR "/g/*.png | head -n 1)\" " DIR "/before.png", out, sizeof out) == 0,
          "the image was made anew at guidance 5");
    snprintf(cmd, sizeof cmd, "%s generate %s/p.csv -data %s/lt.data -steps 5 -batch 4 -threads 2 -guidance 5", G, DIR, DIR);
    CHECK(check_sh(cmd, out, sizeof out) == 0 && strstr(out, "6 already made, 0 to make"), "%s", out);
    /* the index lost: a resume indexes the outputs it finds with what the plan asked for, r included */
    snprintf(cmd, sizeof cmd, "rm %s/p.csv.index.csv && %s generate %s/p.csv -data %s/lt.data -steps 5 -batch 4 -threads 2 "
             "-guidance 5 && grep -c ',0.8,[0-9]*,,[0-9a-f]\\{8\\}$' %s/p.csv.index.csv", DIR, G, DIR, DIR, DIR);
    CHECK(check_sh(cmd, out, sizeof out) == 0 && strstr(out, "6 already made, 0 to make") && strstr(out, "\n6\n"),
          "index rebuilt from the plan: %s", out);

    /* a resume over bad data: outputs cut short or overwritten with garbage are made anew, not counted as made */
    snprintf(cmd, sizeof cmd, "%s generate %s/p.csv -data %s/lt.data -steps 5 -batch 4 -threads 2 -guidance 5", G, DIR, DIR);
    char bad[4096];
    snprintf(bad, sizeof bad, "set -- %s/g/*.png && head -c 100 \"$1\" > %s/cut && mv %s/cut \"$1\" && echo garbage > \"$2\" "
             "&& %s", DIR, DIR, DIR, cmd);
    CHECK(check_sh(bad, out, sizeof out) == 0 && strstr(out, "4 already made, 2 to make") && strstr(out, "made 2 images"),
          "damaged outputs: %s", out);
    int rows;
    CHECK(index_matches_plan(DIR "/p.csv", DIR "/p.csv.index.csv", &rows) && rows == 6, "index after the remake: %d rows",
          rows);
    /* ... and an index line cut short (a run killed while appending it) is dropped, not copied: its output is
     * indexed again from the plan */
    snprintf(bad, sizeof bad, "truncate -s -16 %s/p.csv.index.csv && %s", DIR, cmd);
    CHECK(check_sh(bad, out, sizeof out) == 0 && strstr(out, "cut short") && strstr(out, "6 already made, 0 to make"),
          "torn index line: %s", out);
    CHECK(index_matches_plan(DIR "/p.csv", DIR "/p.csv.index.csv", &rows) && rows == 6,
          "index after a torn line: %d rows, or a row that is not the plan's", rows);
    /* one file however the plan spells it: o//e.png and o/e.png are the same output */
    check_write_text(DIR "/dup.csv", "source,target,r,seed,output\n,tee,1,1," DIR "/d/e.png\n,tee,1,2," DIR "/d//e.png\n");
    snprintf(cmd, sizeof cmd, "%s generate %s/dup.csv -data %s/lt.data -steps 5 -threads 2", G, DIR, DIR);
    CHECK(check_sh(cmd, out, sizeof out) == 1 && strstr(out, "dup.csv:3") && strstr(out, "line 2"), "duplicate: %s", out);
    /* errors name the plan's file line (blank lines count), also the engine's (which knows items, not lines) */
    check_write_text(DIR "/bad.csv", "source,target,r,seed,output\n\nno/such.jpg,shirt,0.5,1," DIR "/x.png\n");
    snprintf(cmd, sizeof cmd, "%s generate %s/bad.csv -data %s/lt.data -steps 5 -threads 2", G, DIR, DIR);
    CHECK(check_sh(cmd, out, sizeof out) == 1 && strstr(out, "bad.csv:3") && strstr(out, "no/such.jpg"), "%s", out);
    check_write_text(DIR "/bad.csv", "source,target,r,seed,output\n" SRC ",shirt,0.8,1," DIR "/e/a.png\n" SRC ",shirt,0.01,2,"
               DIR "/e/b.png\n");
    CHECK(check_sh(cmd, out, sizeof out) == 1 && strstr(out, "bad.csv:3") && strstr(out, "0.01"), "engine error: %s", out);

    /* a plan of 200000 rows starts at once (a linear duplicate check, an index appended to), and a second run on
     * the same index while it works is refused, naming the first one's pid */
    snprintf(cmd, sizeof cmd,
             "awk 'BEGIN { print \"source,target,r,seed,output\"; for (i = 0; i < 200000; i++) "
             "printf \",tee,1,%%d,%s/big/%%06d.png\\n\", i, i }' > %s/big.csv && "
             "{ %s generate %s/big.csv -data %s/lt.data -steps 2 -batch 2 -threads 1 > %s/big.log 2>&1 & pid=$!; "
             "n=0; until grep -q '/200000 images' %s/big.log || [ $n -gt 1200 ]; do sleep 0.1; n=$((n + 1)); done; "
             "cat %s/big.log; timeout 120 %s generate %s/big.csv -data %s/lt.data; echo \"second: $?\"; "
             "kill -9 $pid; wait $pid; }",
             DIR, DIR, G, DIR, DIR, DIR, DIR, DIR, G, DIR, DIR);
    check_sh(cmd, out, sizeof out);
    CHECK(strstr(out, "200000 requests, 0 already made, 200000 to make") && strstr(out, "/200000 images") &&
              strstr(out, "in use by another run (pid ") && strstr(out, "second: 1"),
          "200000 rows, two runs: %s", out);
    system("rm -rf " DIR "/big " DIR "/big.*");

    /* bad plans: file and line named */
    check_write_text(DIR "/bad.csv", "source,target,r,seed,output\n," "hail,0.5,1," DIR "/x.png\n");
    snprintf(cmd, sizeof cmd, "%s generate %s/bad.csv -data %s/lt.data", G, DIR, DIR);
    CHECK(check_sh(cmd, out, sizeof out) == 1 && strstr(out, "bad.csv:2") && strstr(out, "hail"), "%s", out);
    check_write_text(DIR "/bad.csv", "source,target,r,seed,output\n," "shirt,1.5,1," DIR "/x.png\n");
    CHECK(check_sh(cmd, out, sizeof out) == 1 && strstr(out, "bad.csv:2") && strstr(out, "1.5"), "%s", out);
    check_write_text(DIR "/bad.csv", "src,tgt\n");
    CHECK(check_sh(cmd, out, sizeof out) == 1 && strstr(out, "bad.csv:1") && strstr(out, "header"), "%s", out);
    check_write_text(DIR "/bad.csv", "source,target,r,seed,output\n" SRC ",shirt,ada,1," DIR "/x.png\n");
    CHECK(check_sh(cmd, out, sizeof out) == 1 && strstr(out, "-backbone"), "Ada without a backbone: %s", out);
    check_write_text(DIR "/bad.csv", "source,target,r,seed,output\nno/such.jpg,shirt,0.5,1," DIR "/x.png\n");
    CHECK(check_sh(cmd, out, sizeof out) == 1 && strstr(out, "no/such.jpg"), "missing source: %s", out);
    snprintf(cmd, sizeof cmd, "%s generate %s/p.csv -data %s/lt.data -model no/such/model", G, DIR, DIR);
    system("rm -rf " DIR "/g");
    CHECK(check_sh(cmd, out, sizeof out) == 1 && strstr(out, "no/such/model") && !strstr(out, "settings"),
          "missing model: %s", out);
}

int main(void)
{
    test_ada_rule();
    test_plan_confused();
    test_planner_target();
    test_ada_engine();
    test_cli();
    return check_done("test_genie");
}
