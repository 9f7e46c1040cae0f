/* The training recipe for generated samples (.data keys generated=, tail_share=, gen_soft=, roundtrip=,
 * roundtrip_p=, pair_source=): indexes of `genie generate` join the data set, tail rows, soft labels, round-trip
 * swaps, sources beside their samples. */
#include "tests/check.h"
#include "src/train/dataset.h"
#include "common/err.h"
#include "src/train/loader.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define W 28
static char dir[] = "build/test_recipe_XXXXXX";
static char *labels[] = {"rain", "snow", "sun"};

static void image(const char *path, int value)
{
    unsigned char px[W * W * 3];
    memset(px, value, sizeof px);
    imgio_write(path, px, W, W, 100);
}

/* Rows of nb batches: index, first pixel, labels, and the class the row counts as in training statistics. */
static int truth_rows[40 * 32];

static void run(loader_opts o, int nb, int *idx, float *px, float *y)
{
    loader *l = loader_start(&o);
    int row = o.aug.w * o.aug.h * o.aug.c;
    for (int b = 0; b < nb; b++) {
        const loader_batch *lb = loader_next(l);
        for (int i = 0; i < o.batch; i++) {
            idx[b * o.batch + i] = lb->index[i];
            truth_rows[b * o.batch + i] = lb->truth[i];
            px[b * o.batch + i] = lb->x[(size_t)i * row];
            memcpy(y + (size_t)(b * o.batch + i) * 3, lb->y + (size_t)i * 3, 3 * sizeof(float));
        }
        loader_release(l, lb);
    }
    loader_stop(l);
}

int main(void)
{
    mkdir("build", 0755);
    if (!mkdtemp(dir)) return 1;
    char path[512], list[512], gen[512], rt[512], text[65536];
    /* real: rain 30 (Medium), snow 120 (Many), sun 3 (Few); pixel value 10 + class * 20 */
    snprintf(list, sizeof list, "%s/train.list", dir);
    FILE *f = fopen(list, "w");
    int counts[3] = {30, 120, 3};
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < counts[c]; i++) {
            snprintf(path, sizeof path, "%s/r%03d_%s.png", dir, i, labels[c]);
            image(path, 10 + c * 20);
            fprintf(f, "%s\n", path);
        }
    fclose(f);
    snprintf(path, sizeof path, "%s/labels.list", dir);
    check_write_text(path, "rain\nsnow\nsun\n");
    char labels_path[512];
    snprintf(labels_path, sizeof labels_path, "%s", path);

    /* generated: 6 sun from rain sources (value 200; the first 3 sources in the list, the rest not), 2 snow from
     * nothing (value 220) */
    snprintf(gen, sizeof gen, "%s/gen.index.csv", dir);
    int o = sprintf(text, "output,source,target,r,seed,gaps\n");
    for (int i = 0; i < 8; i++) {
        snprintf(path, sizeof path, "%s/g%d.png", dir, i);
        image(path, i < 6 ? 200 : 220);
        char src[512];
        snprintf(src, sizeof src, i < 3 ? "%s/r%03d_rain.png" : i < 6 ? "x/r000_rain.png" : "", dir, i);
        o += sprintf(text + o, "%s,%s,%s,0.8,%d,\n", path, src, i < 6 ? "sun" : "snow", i);
    }
    check_write_text(gen, text);
    /* round trips of every real image: value 250 */
    snprintf(rt, sizeof rt, "%s/rt.index.csv", dir);
    snprintf(path, sizeof path, "%s/rt.png", dir);
    image(path, 250);
    dataset ds;
    CHECK(dataset_load(list, labels_path, 3, &ds) == 0, "%s", err_msg());
    o = sprintf(text, "output,source,target,r,seed,gaps\n");
    for (int i = 0; i < ds.n; i++) o += sprintf(text + o, "%s,%s,%s,0,0,\n", path, ds.paths[i], labels[ds.cls[i]]);
    check_write_text(rt, text);

    CHECK(dataset_add_generated(&ds, gen) == 0, "%s", err_msg());
    CHECK(ds.n == 161 && ds.n_real == 153, "n %d, n_real %d", ds.n, ds.n_real);
    CHECK(ds.count[2] == 9 && ds.real_count[2] == 3 && ds.count[1] == 122 && ds.real_count[1] == 120,
          "counts sun %d/%d snow %d/%d", ds.count[2], ds.real_count[2], ds.count[1], ds.real_count[1]);
    CHECK(ds.cls[153] == 2 && ds.src_cls[153] == 0 && ds.cls[160] == 1 && ds.src_cls[160] == -1,
          "generated classes %d/%d %d/%d", ds.cls[153], ds.src_cls[153], ds.cls[160], ds.src_cls[160]);
    /* sources found among the real images by path (rain's images come first in the list) */
    CHECK(ds.src_idx[153] == 0 && ds.src_idx[155] == 2 && ds.src_idx[156] == -1 && ds.src_idx[160] == -1 &&
              ds.src_idx[0] == -1, "source indices %d %d %d %d", ds.src_idx[153], ds.src_idx[155], ds.src_idx[156],
          ds.src_idx[160]);
    CHECK(dataset_add_roundtrips(&ds, rt) == 0, "%s", err_msg());
    int with_alt = 0;
    for (int i = 0; i < ds.n_real; i++) with_alt += ds.alt[i] != NULL;
    CHECK(with_alt == 153, "%d real images have a round trip", with_alt);

    aug_params aug = {.preset = AUG_EVAL, .w = W, .h = W, .c = 3};
    enum { NB = 40, B = 32, N = NB * B };
    int *idx = malloc(N * sizeof *idx);
    float *px = malloc(N * sizeof *px), *y = malloc(N * 3 * sizeof *y);

    /* no recipe keys: generated samples join the shuffle, nothing is swapped */
    loader_opts lo = {.ds = &ds, .aug = aug, .batch = B, .threads = 2, .seed = 7, .sampling = SAMPLE_SHUFFLE};
    run(lo, NB, idx, px, y);
    int gen_rows = 0, snow_gen = 0, alt_rows = 0;
    for (int i = 0; i < N; i++) {
        gen_rows += idx[i] >= ds.n_real;
        snow_gen += idx[i] >= 159;
        alt_rows += px[i] > 0.97f;
    }
    CHECK(gen_rows > 0 && snow_gen > 0 && alt_rows == 0, "plain: %d generated rows (%d snow), %d swapped", gen_rows,
          snow_gen, alt_rows);
    /* statistics count real rows by their class and leave generated rows out */
    int truth_ok = 1;
    for (int i = 0; i < N; i++) truth_ok &= truth_rows[i] == (idx[i] < ds.n_real ? ds.cls[idx[i]] : -1);
    CHECK(truth_ok, "row truth: real rows by class, generated rows -1");
    /* ... and mixed rows (mixup: half the rows) too */
    loader_opts lm = lo;
    lm.mixup = 1;
    run(lm, NB, idx, px, y);
    int mixed = 0, mixed_ok = 1;
    for (int i = 0; i < N; i++) {
        int pure = 0;
        for (int j = 0; j < 3; j++) pure |= y[(size_t)i * 3 + j] == 1;
        /* a row mixed with its own class keeps a one-hot label, but is still a mixed image: -1 either way */
        mixed += truth_rows[i] == -1 && idx[i] < ds.n_real;
        mixed_ok &= pure ? truth_rows[i] == -1 || truth_rows[i] == ds.cls[idx[i]] : truth_rows[i] == -1;
    }
    CHECK(mixed > N * 0.4 && mixed < N * 0.6 && mixed_ok, "mixup rows: %d of %d real rows left out, truth %s", mixed,
          N, mixed_ok ? "right" : "wrong");

    /* tail_share 0.5: about half the rows are sun (real or generated); generated rows only there */
    lo.tail_share = 0.5;
    run(lo, NB, idx, px, y);
    int sun = 0, bad_gen = 0, sun_gen = 0;
    for (int i = 0; i < N; i++) {
        sun += ds.cls[idx[i]] == 2;
        sun_gen += idx[i] >= ds.n_real && ds.cls[idx[i]] == 2;
        bad_gen += idx[i] >= ds.n_real && ds.cls[idx[i]] != 2;
    }
    CHECK(sun > N * 0.45 && sun < N * 0.56, "tail rows %d of %d", sun, N);
    CHECK(bad_gen == 0 && sun_gen > sun / 2, "generated outside the tail %d, generated sun %d of %d", bad_gen, sun_gen, sun);
    /* gen_share 0.25: a quarter of the sun rows take a generated sun (uniformly: 6 of 9) */
    {
        loader_opts lg = lo;
        lg.gen_share = 0.25;
        run(lg, NB, idx, px, y);
        int s_rows = 0, s_gen = 0;
        for (int i = 0; i < N; i++)
            if (ds.cls[idx[i]] == 2) s_rows++, s_gen += idx[i] >= ds.n_real;
        CHECK(s_rows > N * 0.45 && s_gen > s_rows * 0.2 && s_gen < s_rows * 0.3, "gen_share 0.25: %d of %d sun rows "
              "generated", s_gen, s_rows);
    }
    /* the rows the online module may take (rows.h's tail rows): exactly those drawn from the tail (about half here,
     * each a sun) */
    int gated = 0, gate_ok = 1;
    rows_opts ro;
    loader_rows(&lo, &ro);
    for (int i = 0; i < N; i++)
        if (rows_kind(&ro, lo.start + i) & ROW_TAIL)
            gated++, gate_ok &= ds.cls[loader_sample_index(&lo, lo.start + i)] == 2;
    CHECK(gate_ok && gated > N * 0.45 && gated < N * 0.55, "tail rows by the gate: %d of %d, all sun: %d", gated, N, gate_ok);

    /* pair_source: a row beside a generated sample with a known source shows that source, with its own label;
     * with 0, only chance does */
    for (int pass = 0; pass < 2; pass++) {
        lo.pair_source = pass ? 1 : 0;
        run(lo, NB, idx, px, y);
        int paired = 0, could = 0, label_ok = 1;
        for (int i = 0; i < N; i++) {
            int other = idx[i ^ 1];
            if (idx[i] >= ds.n_real || other < ds.n_real || ds.src_idx[other] < 0) continue;
            could++;
            if (idx[i] == ds.src_idx[other]) paired++, label_ok &= y[(size_t)i * 3] == 1.0f && truth_rows[i] == 0;
        }
        if (pass)
            CHECK(could > 20 && paired == could && label_ok, "pair_source 1: %d of %d pairs show the source, labels %s",
                  paired, could, label_ok ? "right" : "wrong");
        else
            CHECK(could > 20 && paired < could / 4, "pair_source 0: %d of %d pairs show the source", paired, could);
    }
    lo.pair_source = 0;

    /* gen_augment: real rows under strong augmentation (colour jitter moves a flat image's value), generated rows
     * under the evaluation transform keep their PNG's value exactly; unset, they take the real rows' */
    for (int pass = 0; pass < 2; pass++) {
        loader_opts la = lo;
        la.aug.preset = AUG_STRONG;
        la.gen_aug = la.aug;
        if (pass) la.gen_aug.preset = AUG_EVAL;
        else memset(&la.gen_aug, 0, sizeof la.gen_aug);
        run(la, NB, idx, px, y);
        int gen = 0, kept = 0, real = 0, moved = 0;
        for (int i = 0; i < N; i++) {
            if (idx[i] >= ds.n_real) gen++, kept += fabsf(px[i] - (idx[i] < 159 ? 200 : 220) / 255.0f) < 1e-5f;
            else real++, moved += fabsf(px[i] - (10 + ds.cls[idx[i]] * 20) / 255.0f) > 1e-3f;
        }
        CHECK(gen > 20 && moved > real / 2 && (pass ? kept == gen : kept < gen / 2),
              "gen_augment %s: %d of %d generated rows as made, %d of %d real rows jittered", pass ? "none" : "unset",
              kept, gen, moved, real);
    }

    /* tail_augment: the tail rows' real images under strong augmentation, every other real row as it is */
    {
        loader_opts lt = lo;
        lt.tail_aug = lt.aug;
        lt.tail_aug.preset = AUG_STRONG;
        rows_opts rt_rows;
        loader_rows(&lt, &rt_rows);
        run(lt, NB, idx, px, y);
        int tail = 0, moved = 0, other = 0, exact = 0;
        for (int i = 0; i < N; i++) {
            if (idx[i] >= ds.n_real) continue;
            int same = fabsf(px[i] - (10 + ds.cls[idx[i]] * 20) / 255.0f) < 1e-5f;
            if (rows_kind(&rt_rows, lt.start + i) & ROW_TAIL) tail++, moved += !same;
            else other++, exact += same;
        }
        CHECK(tail > 20 && moved > tail / 2 && other > 20 && exact == other,
              "tail_augment strong: %d of %d tail rows jittered, %d of %d other rows as they are", moved, tail, exact,
              other);
    }

    /* gen_soft 0.3: sun made from a rain source -> 0.7 sun, 0.3 rain; real rows stay one-hot */
    lo.gen_soft = 0.3;
    run(lo, NB, idx, px, y);
    int soft_ok = 1, checked = 0;
    for (int i = 0; i < N; i++) {
        const float *r = y + (size_t)i * 3;
        if (idx[i] >= ds.n_real) {
            soft_ok &= fabsf(r[2] - 0.7f) < 1e-6f && fabsf(r[0] - 0.3f) < 1e-6f;
            checked++;
        } else {
            soft_ok &= r[ds.cls[idx[i]]] == 1.0f;
        }
    }
    CHECK(soft_ok && checked > 0, "soft labels (%d generated rows)", checked);

    /* roundtrip_p 1: every real row shows its round trip; 0.5: about half; generated rows never */
    lo.gen_soft = 0;
    lo.tail_share = 0;
    int gate_none = 0;
    loader_rows(&lo, &ro);
    for (int i = 0; i < N; i++) gate_none += (rows_kind(&ro, lo.start + i) & ROW_TAIL) != 0;
    CHECK(gate_none == 0, "no tail share, yet the gate let %d rows through", gate_none);
    lo.roundtrip_p = 1;
    run(lo, NB, idx, px, y);
    int real = 0, swapped = 0, gen_swapped = 0;
    for (int i = 0; i < N; i++) {
        if (idx[i] < ds.n_real) real++, swapped += px[i] > 0.97f;
        else gen_swapped += px[i] > 0.97f;
    }
    CHECK(real == swapped && gen_swapped == 0, "p 1: %d of %d real rows swapped, %d generated", swapped, real, gen_swapped);
    lo.roundtrip_p = 0.5;
    run(lo, NB, idx, px, y);
    real = swapped = 0;
    for (int i = 0; i < N; i++)
        if (idx[i] < ds.n_real) real++, swapped += px[i] > 0.97f;
    CHECK(swapped > real * 0.4 && swapped < real * 0.6, "p 0.5: %d of %d swapped", swapped, real);

    /* bad indexes name the file and line */
    snprintf(path, sizeof path, "%s/bad.csv", dir);
    check_write_text(path, "path,label\n");
    CHECK(dataset_add_generated(&ds, path) < 0 && strstr(err_msg(), "bad.csv") && strstr(err_msg(), "header"), "%s", err_msg());
    check_write_text(path, "output,source,target,r,seed,gaps\nx.png,,hail,0.8,1,\n");
    CHECK(dataset_add_generated(&ds, path) < 0 && strstr(err_msg(), "bad.csv:2") && strstr(err_msg(), "hail"), "%s", err_msg());
    check_write_text(path, "output,source,target,r,seed,gaps\nx.png\n");
    CHECK(dataset_add_roundtrips(&ds, path) < 0 && strstr(err_msg(), "bad.csv:2"), "%s", err_msg());

    /* .data keys: ranges checked */
    datacfg dc;
    snprintf(path, sizeof path, "%s/x.data", dir);
    check_write_text(path, "classes=3\ntail_share=0.25\ngen_soft=0.2\nroundtrip_p=0.5\ngenerated=a.csv\nroundtrip=b.csv\n");
    CHECK(datacfg_read(path, &dc) == 0 && dc.tail_share == 0.25 && dc.gen_soft == 0.2 && dc.roundtrip_p == 0.5 &&
              !strcmp(dc.generated, "a.csv") && !strcmp(dc.roundtrip, "b.csv"), "%s", err_msg());
    datacfg_free(&dc);
    check_write_text(path, "classes=3\ntail_share=1.5\n");
    CHECK(datacfg_read(path, &dc) < 0 && strstr(err_msg(), "x.data:2") && strstr(err_msg(), "tail_share"), "%s", err_msg());
    check_write_text(path, "classes=3\npair_source=0.5\n");
    CHECK(datacfg_read(path, &dc) == 0 && dc.pair_source == 0.5, "%s", err_msg());
    datacfg_free(&dc);
    check_write_text(path, "classes=3\npair_source=yes\n");
    CHECK(datacfg_read(path, &dc) < 0 && strstr(err_msg(), "pair_source"), "%s", err_msg());

    free(idx);
    free(px);
    free(y);
    dataset_free(&ds);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) return 1;
    return check_done("test_recipe");
}
