/* The online GeNIe module with the bundled model on Fashion-MNIST-LT: it generates for the Few classes only,
 * from sources the planted confusion points at, serves samples to takers, stops promptly in the middle of
 * generating, writes a cache a second start reuses (a damaged line skipped), and GeNIe-Ada picks its r
 * from the r set on a live snapshot of a trainer's network. */
#include "tests/check.h"
#include "src/train/dataset.h"
#include "common/err.h"
#include "common/font.h"
#include "augment/genie/genie_cfg.h"
#include "augment/genie/genindex.h"
#include "src/train/loader.h"
#include "augment/genie/module.h"
#include "src/net/netio.h"
#include "common/util.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CACHE "build/test_module_cache"
#define MODEL_COPY "build/test_module_model"   /* the bundled model, for the cache runs */

static dataset ds;
static int coat = -1, pullover = -1;
static size_t kept_bytes;   /* module_opts.kept_bytes of start() */

/* a planted confusion: every class right, except that the Few classes are mostly taken for pullovers */
static void planted(void *ctx, double *m)
{
    (void)ctx;
    int K = ds.classes;
    memset(m, 0, sizeof(double) * K * K);
    for (int t = 0; t < K; t++) {
        m[t * K + t] = 100;
        if (ds.real_count[t] < 20) m[t * K + t] = 10, m[t * K + pullover] = 90;
    }
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static module *start(genie_cfg *c)
{
    module_opts o = {.cfg = c, .cfg_path = "test.cfg", .classes = ds.classes, .labels = ds.labels,
                     .n_real = ds.n_real, .paths = ds.paths, .cls = ds.cls, .net_cfg = "cfg/fmnist.cfg", .seed = 3,
                     .confusion = planted, .kept_bytes = kept_bytes};
    return module_start(&o);
}

/* Whether the cache's index describes exactly the PNGs beside it: every line whole, each names a file that is
 * there, no name twice, no PNG that no line names; the lines in *entries. */
static int cache_exact(int *entries)
{
    genindex_reader rd;
    genindex_row row;
    char **names = NULL;
    int n = 0, ok = genindex_open(&rd, CACHE "/index.csv") == 0, got = 0;
    while (ok && (got = genindex_read(&rd, &row)) > 0) {
        char path[1200];
        struct stat st;
        snprintf(path, sizeof path, CACHE "/%s", row.f[GX_OUTPUT]);
        ok &= stat(path, &st) == 0;
        for (int i = 0; i < n; i++) ok &= strcmp(names[i], row.f[GX_OUTPUT]) != 0;
        names = realloc(names, (n + 1) * sizeof *names);
        names[n++] = strdup(row.f[GX_OUTPUT]);
    }
    if (ok) ok &= got == 0 && rd.torn_line == 0;
    if (ok || got >= 0) genindex_close(&rd);
    int pngs = 0;
    DIR *d = opendir(CACHE);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        pngs += l > 4 && !strcmp(e->d_name + l - 4, ".png");
        ok &= !strstr(e->d_name, ".tmp");
    }
    if (d) closedir(d);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    *entries = n;
    return ok && pngs == n;
}

/* stderr into a file while the module starts and runs, for its messages */
static int saved_err = -1;
static void capture_begin(void)
{
    fflush(stderr);
    saved_err = dup(2);
    int fd = open("build/test_module_err.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
}
static const char *capture_end(void)
{
    static char text[16384];
    fflush(stderr);
    dup2(saved_err, 2);
    close(saved_err);
    FILE *f = fopen("build/test_module_err.log", "r");
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    text[n] = 0;
    if (f) fclose(f);
    return text;
}

/* waits up to `s` seconds for `want` kept samples */
static int wait_kept(module *m, int want, double s)
{
    module_stats st;
    double t0 = util_now();
    do {
        module_get_stats(m, &st);
        if ((int)(st.kept + st.cached) >= want) return 1;
        sleep_ms(20);
    } while (util_now() - t0 < s);
    return 0;
}

int main(void)
{
    CHECK(dataset_load("data/fmnist/lt/train.list", "data/fmnist/labels.list", 10, &ds) == 0, "%s", err_msg());
    if (ds.n == 0) return check_done("module");
    for (int c = 0; c < ds.classes; c++) {
        if (!strcmp(ds.labels[c], "coat")) coat = c;
        if (!strcmp(ds.labels[c], "pullover")) pullover = c;
    }
    CHECK(system("rm -rf " CACHE " " MODEL_COPY " && cp -r data/models/fmnist-ldm " MODEL_COPY) == 0, "copy the model");

    /* GeNIe at a fixed r, Few targets, sources = the confused class (pullover) */
    genie_cfg c;
    genie_cfg_default(&c);
    c.mode = GENIE_MODE_GENIE;
    c.warmup = 0;
    c.quota = 3;
    c.top_k = 1;
    c.batch = 6;
    c.ring = 16;
    c.reuse = 2;
    c.threads = 2;
    snprintf(c.model, sizeof c.model, "%s", MODEL_COPY);
    snprintf(c.cache, sizeof c.cache, "%s", CACHE);
    module *m = start(&c);
    CHECK(m != NULL, "start: %s", err_msg());
    if (!m) return check_done("module");
    CHECK(wait_kept(m, 9, 120), "3 Few classes x quota 3 not kept in 2 minutes");
    module_stats st;
    module_get_stats(m, &st);
    CHECK(st.n_targets == 3 && st.kept == 9 && st.dropped == 0, "%d targets, %llu kept", st.n_targets,
          (unsigned long long)st.kept);
    int few_only = 1;
    for (int i = 0; i < st.n_targets; i++) few_only &= ds.real_count[st.targets[i]] < 20 && st.made[i] == 3;
    CHECK(few_only, "targets are not the Few classes at their quota");
    img_u8 im = {0};
    module_label lab;
    int took = 0, right = 1;
    while (module_take(m, &im, &lab) == 0) {
        took++;
        right &= ds.real_count[lab.target] < 20 && lab.source_class == pullover && im.w == 32 && im.h == 32 &&
                 lab.source_index >= 0 && lab.source_index < ds.n_real && ds.cls[lab.source_index] == pullover;
    }
    CHECK(took >= 9 && right, "took %d samples; target Few, source a pullover of the list, 32x32: %s", took, right ? "yes" : "no");
    module_get_stats(m, &st);
    CHECK(st.shortfall >= 1, "an empty ring did not count a shortfall");

    /* pair_source in the loader: a real row beside an online sample shows the sample's source (a pullover here),
     * with its own label; without it, such rows are pullovers only by chance */
    for (int pass = 0; pass < 2; pass++) {
        loader_opts lo = {.ds = &ds, .aug = {.preset = AUG_EVAL, .w = 28, .h = 28, .c = 1}, .batch = 16,
                          .threads = 1, .seed = 5, .sampling = SAMPLE_SHUFFLE, .genie = m,
                          .pair_source = pass ? 1 : 0};
        loader *l = loader_start(&lo);
        int beside = 0, shown = 0, label_ok = 1;
        for (int b = 0; l && b < 40; b++) {
            const loader_batch *lb = loader_next(l);
            if (!lb) break;
            for (int i = 0; i < lb->n; i++) {
                int o = lb->index[i ^ 1];
                if (lb->index[i] < 0 || o >= 0) continue;
                beside++;
                if (ds.cls[lb->index[i]] == pullover)
                    shown++, label_ok &= lb->y[(size_t)i * ds.classes + pullover] == 1.0f;
            }
            loader_release(l, lb);
        }
        if (l) loader_stop(l);
        if (pass)
            CHECK(beside > 5 && shown == beside && label_ok, "pair_source 1: %d of %d rows beside a sample show a pullover",
                  shown, beside);
        else
            CHECK(beside > 5 && shown < beside / 2, "pair_source 0: %d of %d rows beside a sample show a pullover",
                  shown, beside);
    }
    module_stop(m);

    /* which rows take generated samples: none in the run's first warmup iterations, then share of the trainer's
     * tail rows (its recipe has a tail share) and no other */
    {
        genie_cfg cw = c;
        cw.share = 0.5, cw.warmup = 3, cw.cache[0] = 0;
        module_opts o = {.cfg = &cw, .cfg_path = "test.cfg", .classes = ds.classes, .labels = ds.labels,
                         .n_real = ds.n_real, .paths = ds.paths, .cls = ds.cls, .net_cfg = "cfg/fmnist.cfg",
                         .seed = 3, .confusion = planted, .start = 1000, .start_iter = 7, .batch = 10,
                         .rows = {.seed = 3, .tail_share = 0.5, .tail_classes = 3}};
        module *mw = module_start(&o);
        CHECK(mw != NULL, "start: %s", err_msg());
        rows_opts r = o.rows;
        if (mw) module_rows(mw, &r);
        int early = 0, outside = 0, inside = 0, n_tail = 0;
        for (uint64_t k = 1000; mw && k < 1030; k++) early += (rows_kind(&r, k) & ROW_GENERATED) != 0;
        for (uint64_t k = 1030; mw && k < 5030; k++) {
            unsigned kind = rows_kind(&r, k);
            if (!(kind & ROW_TAIL)) outside += (kind & ROW_GENERATED) != 0;
            else inside += (kind & ROW_GENERATED) != 0, n_tail++;
        }
        CHECK(early == 0 && outside == 0 && n_tail > 1800 && inside > 0.45 * n_tail && inside < 0.55 * n_tail,
              "rows wanted: %d in warmup, %d outside the tail, %d of %d inside", early, outside, inside, n_tail);
        module_stop(mw);
    }

    /* a run resumed on the cache with more quota goes on numbering its names: none overwritten, the index
     * describing exactly the PNGs beside it; a last line cut short (a run killed mid-write) is dropped with a
     * message, not glued to this run's first line */
    int entries = 0;
    CHECK(cache_exact(&entries) && entries == 9, "cache after the first run: %d lines", entries);
    FILE *f = fopen(CACHE "/index.csv", "a");
    fputs("00000099_deadbeef_coat.png,,co", f);
    fclose(f);
    c.quota = 6;
    capture_begin();
    m = start(&c);
    int more = m && wait_kept(m, 18, 120);
    if (m) module_stop(m);
    const char *said = capture_end();
    CHECK(m != NULL && more, "resume with quota 6: %s", m ? "fewer than 18 kept" : err_msg());
    CHECK(strstr(said, "index.csv:11") && strstr(said, "cut short"), "the torn line: %s", said);
    CHECK(cache_exact(&entries) && entries == 18, "cache after the resumed run: %d lines, or a name twice, or a PNG "
          "that no line names", entries);
    c.quota = 3;

    /* a second start reuses the cache (quotas met: no generation at all), also after the model's card (its notes
     * and plots beside the components) changed; a damaged line and one whose PNG is missing are named and
     * dropped; at most kept_bytes of kept samples stay in memory, replayed all the same */
    unsigned stamp = util_files_stamp(UTIL_FNV_INIT, MODEL_COPY);
    CHECK(system("touch -d 2002-02-02 " MODEL_COPY "/README.md " MODEL_COPY "/genie_curve.png") == 0, "touch");
    CHECK(util_files_stamp(UTIL_FNV_INIT, MODEL_COPY) == stamp, "the model card is not part of the model's stamp");
    f = fopen(CACHE "/index.csv", "a");
    fputs("garbage without fields\n", f);
    fclose(f);
    CHECK(system("rm \"$(ls " CACHE "/*.png | head -n 1)\"") == 0, "rm a PNG");
    kept_bytes = 4 * 32 * 32 * 3;
    capture_begin();
    m = start(&c);
    said = capture_end();
    CHECK(m != NULL, "restart: %s", err_msg());
    CHECK(strstr(said, "the PNG is missing") && !strstr(said, "image size") && strstr(said, "index.csv:20"),
          "messages: %s", said);
    if (m) {
        CHECK(wait_kept(m, 9, 5), "the cache was not reused");
        sleep_ms(300);
        module_get_stats(m, &st);
        CHECK(st.cached == 9 && st.kept == 0 && st.replayed > 0, "cached %llu, kept %llu, replayed %llu",
              (unsigned long long)st.cached, (unsigned long long)st.kept, (unsigned long long)st.replayed);
        CHECK(st.resident == 4, "%d kept samples in memory, the bound is 4", st.resident);
        CHECK(module_take(m, &im, &lab) == 0 && ds.real_count[lab.target] < 20 && lab.source_index == -1,
              "replayed sample (from the cache, which names no source image)");
        module_stop(m);
    }
    kept_bytes = 0;
    CHECK(cache_exact(&entries) && entries == 17, "cache after the repair: %d lines", entries);
    /* an index that is not a regular file (a FIFO) is refused at once, naming it */
    {
        genie_cfg cf = c;
        snprintf(cf.cache, sizeof cf.cache, "build/test_module_fifo");
        CHECK(system("rm -rf build/test_module_fifo && mkdir build/test_module_fifo && "
                     "mkfifo build/test_module_fifo/index.csv") == 0, "mkfifo");
        alarm(60);   /* a start that waited for a writer would hang here */
        module *mf = start(&cf);
        alarm(0);
        CHECK(mf == NULL && strstr(err_msg(), "build/test_module_fifo/index.csv") &&
                  strstr(err_msg(), "not a regular file"), "FIFO: %s", mf ? "started" : err_msg());
        if (mf) module_stop(mf);
        CHECK(system("rm -rf build/test_module_fifo") == 0, "rm");
    }
    /* ... but not once the model's files change (a model retrained in place): then it generates anew */
    CHECK(system("touch -d 2001-01-01 " MODEL_COPY "/unet/diffusion_pytorch_model.safetensors") == 0, "touch");
    CHECK(util_files_stamp(UTIL_FNV_INIT, MODEL_COPY) != stamp, "a component's file is part of the stamp");
    capture_begin();
    m = start(&c);
    said = capture_end();
    CHECK(strstr(said, CACHE "/index.csv: 17 samples made with other settings"), "other settings: %s", said);
    if (m) {
        CHECK(wait_kept(m, 1, 60), "nothing made with another model");
        module_get_stats(m, &st);
        CHECK(st.cached == 0, "a changed model reused %llu cached samples", (unsigned long long)st.cached);
        module_stop(m);
    }
    snprintf(c.model, sizeof c.model, "data/models/fmnist-ldm");
    CHECK(system("rm -rf " MODEL_COPY) == 0, "rm");

    /* GeNIe-Ada on a snapshot of a trained network; stop in the middle of generating is prompt */
    network *trainer = netio_load("cfg/fmnist.cfg", "data/models/fmnist-judge.weights", 0, &(net_extras){0});
    CHECK(trainer != NULL, "%s", err_msg());
    c.mode = GENIE_MODE_ADA;
    c.cache[0] = 0;
    c.quota = 50;
    c.batch = 10;
    c.targets = GENIE_TARGETS_LIST;
    c.n_targets = 1;
    snprintf(c.target_list[0], sizeof c.target_list[0], "coat");
    m = start(&c);
    CHECK(m != NULL, "Ada start: %s", err_msg());
    if (m && trainer) {
        sleep_ms(200);
        module_get_stats(m, &st);
        CHECK(st.kept == 0, "Ada generated before any snapshot of f_theta");
        CHECK(module_snapshot(m, trainer, 0) == 1, "snapshot at iteration 0 not taken");
        CHECK(module_snapshot(m, trainer, 1) == 0, "snapshot taken off its period");
        CHECK(wait_kept(m, 2, 120), "Ada kept nothing in 2 minutes");
        module_get_stats(m, &st);
        int hist = 0;
        for (int k = 0; k < c.n_r; k++) hist += st.r_hist[k];
        CHECK(st.snapshots >= 1 && st.r_hist[0] == 0 && hist == (int)st.kept && st.targets[0] == coat,
              "Ada: %llu snapshots, r histogram %d %d %d %d %d for %llu kept", (unsigned long long)st.snapshots,
              st.r_hist[0], st.r_hist[1], st.r_hist[2], st.r_hist[3], st.r_hist[4], (unsigned long long)st.kept);
        double t0 = util_now();
        module_stop(m);
        CHECK(util_now() - t0 < 3, "stopping took %.1f s", util_now() - t0);
    }
    if (trainer) free_network(trainer);

    /* a target that is not a label, and a missing model, stop the start */
    snprintf(c.target_list[0], sizeof c.target_list[0], "hat");
    CHECK(start(&c) == NULL && strstr(err_msg(), "'hat' is not a label"), "unknown target: %s", err_msg());
    snprintf(c.target_list[0], sizeof c.target_list[0], "coat");
    snprintf(c.model, sizeof c.model, "build/no/such/model");
    CHECK(start(&c) == NULL && strstr(err_msg(), "build/no/such/model"), "missing model: %s", err_msg());

    /* through the trainer: sync=1 makes a run with online GeNIe reproducible to the byte, whatever the loader's
     * thread count (1 and 3 threads: the same weights); a run killed with -9 leaves a cache the next run starts
     * from */
    FILE *w = fopen("build/test_module.data", "w");
    fputs("classes=10\ntrain=data/fmnist/lt/train.list\nlabels=data/fmnist/labels.list\nbackup=build/test_module_bk\n", w);
    fclose(w);
    w = fopen("build/test_module_sync.cfg", "w");
    fputs("[genie]\nmode=genie\nwarmup=0\nshare=0.1\nreuse=8\nring=16\nsnapshot_every=5\nsync=1\n", w);
    fclose(w);
    char out[8192];
    const char *run = "$G classifier train build/test_module.data cfg/fmnist-ft.cfg data/models/fmnist-judge.weights "
                      "-clear -seed 2 -iters 12 -genie build/test_module_sync.cfg";
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf build/test_module_bk && %s -threads 1 && cp build/test_module_bk/fmnist-ft.weights "
             "build/test_module_a.weights && %s -threads 3 && cmp build/test_module_bk/fmnist-ft.weights "
             "build/test_module_a.weights", run, run);
    int rc = check_sh(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "rows served, 0 short"), "sync runs differ or failed: %d %s", rc, out);
    /* the same batches trained, the same rows served: counted as the trainer takes a batch, not as the loader fills
     * batches ahead (3 threads fill more of them than 1 before the run stops) */
    unsigned long long served[2] = {0, 0}, sh[2] = {1, 1};
    const char *at = out;
    for (int i = 0; i < 2 && (at = strstr(at, "img/s); ")); i++, at++)
        sscanf(at + 8, "%llu rows served, %llu short", &served[i], &sh[i]);
    CHECK(served[0] > 0 && served[0] == served[1] && sh[0] == 0 && sh[1] == 0,
          "rows served at 1 and 3 loader threads: %llu and %llu (short %llu, %llu)", served[0], served[1], sh[0], sh[1]);
    /* the inspection grid: 8 rows of source | generated (2 x 32 + 2 wide) | "S -> T  r 0.80" in darknet's
     * alphabet, and the same labels in its CSV */
    FILE *gc = fopen("build/test_module_bk/fmnist-ft_genie_grid.png.csv", "r");
    int lines = 0, few = 1, tw = 0;
    char gl[256], src_l[64], dst_l[64], text[200];
    float gr;
    font *fnt = font_load(FONT_DARKNET_DIR, 0);
    CHECK(fnt != NULL, "darknet's alphabet: %s", err_msg());
    while (gc && fgets(gl, sizeof gl, gc)) {
        if (lines++ == 0) continue;
        few &= strstr(gl, ",tee,") || strstr(gl, ",coat,") || strstr(gl, ",shirt,");
        if (fnt && sscanf(gl, "%*d,%63[^,],%63[^,],%f", src_l, dst_l, &gr) == 3) {
            snprintf(text, sizeof text, "%s -> %s  r %.2f", src_l, dst_l, gr);
            if (font_width(fnt, text) > tw) tw = font_width(fnt, text);
        }
    }
    if (gc) fclose(gc);
    CHECK(lines == 9 && few, "grid CSV: %d lines, targets Few: %d", lines, few);
    img_u8 grid = {0};
    int ink = 0;
    if (imgio_load("build/test_module_bk/fmnist-ft_genie_grid.png", 0, 0, &grid) == 0)
        for (int y = 0; y < grid.h; y++)
            for (int x = 70; x < grid.w; x++) ink += grid.rgb[((size_t)y * grid.w + x) * 3] < 100;
    CHECK(tw > 100 && grid.w == 66 + tw + 6 && grid.h == 8 * 34 - 2 && ink > 8 * 60,
          "grid PNG: %s %dx%d (label column %d wide), %d ink pixels", err_msg(), grid.w, grid.h, tw, ink);
    imgio_free(&grid);
    font_free(fnt);

    w = fopen("build/test_module_cache.cfg", "w");
    fputs("[genie]\nmode=genie\nwarmup=0\nshare=0.1\nthreads=2\ncache=" CACHE "\n", w);
    fclose(w);
    rc = check_sh("rm -rf " CACHE "; $G classifier train build/test_module.data cfg/fmnist-ft.cfg "
                  "data/models/fmnist-judge.weights -clear -genie build/test_module_cache.cfg > build/test_module_kill.log "
                  "2>&1 & pid=$!; n=0; until [ $(grep -c . " CACHE "/index.csv 2>/dev/null || echo 0) -ge 5 ] || "
                  "[ $n -gt 1200 ]; do sleep 0.1; n=$((n+1)); done; kill -9 $pid; wait $pid; "
                  "$G classifier train build/test_module.data cfg/fmnist-ft.cfg data/models/fmnist-judge.weights -clear "
                  "-iters 2 -genie build/test_module_cache.cfg",
                  out, sizeof out);
    int cached = 0;
    const char *p = strstr(out, "kept (+");
    if (p) cached = atoi(p + 7);
    CHECK(rc == 0 && cached >= 4, "resume after kill -9: %d from the cache, rc %d: %s", cached, rc, out);
    CHECK(cache_exact(&entries) && entries >= cached, "cache after kill -9 and a resume: %d lines", entries);

    /* runs that used to hang (each under `timeout`, so a hang that comes back fails the check, not the suite): sync
     * with no row ever taking a sample, a target without a usable source image (missing files, or no image at
     * all), and a module that fails while a sync trainer waits on it (6 iterations: with warmup 0 and the loader's
     * lookahead of 4 batches, the 5th is the first with generated rows) */
    CHECK(system("sed '/_tee\\./s|^|build/nowhere/|' data/fmnist/lt/train.list > build/test_module_notee.list && "
                 "grep -v _tee data/fmnist/lt/train.list > build/test_module_0tee.list && "
                 "sed 's|data/fmnist/lt/train.list|build/test_module_0tee.list|' build/test_module.data > build/test_module_0tee.data && "
                 "sed 's|data/fmnist/lt/train.list|build/test_module_notee.list|' build/test_module.data > build/test_module_notee.data")
          == 0, "lists");
    static const struct {
        const char *what, *data, *cfg;
        int want_rc;          /* the exit status */
        const char *says;     /* in the output */
    } hangs[] = {
        {"sync, share 0", "build/test_module.data", "mode=genie\nwarmup=0\nshare=0\nsync=1\n", 0, "saved "},
        {"sync, share 1e-12", "build/test_module.data", "mode=genie\nwarmup=0\nshare=1e-12\nsync=1\n", 0, "saved "},
        {"tee's files missing", "build/test_module_notee.data",
         "mode=genie\nwarmup=0\nshare=0.2\ntargets=tee\nsources=same\n", 1, "no samples were made"},
        {"no tee image", "build/test_module_0tee.data", "mode=genie\nwarmup=0\nshare=0.2\ntargets=tee\nsources=same\n",
         1, "target tee has no training image"},
        {"sync, tee's files missing", "build/test_module_notee.data",
         "mode=genie\nwarmup=0\nshare=0.2\ntargets=tee\nsources=same\nsync=1\n", 1, "fmnist-ft.backup saved"},
    };
    for (size_t i = 0; i < sizeof hangs / sizeof *hangs; i++) {
        w = fopen("build/test_module_hang.cfg", "w");
        fprintf(w, "[genie]\n%s", hangs[i].cfg);
        fclose(w);
        /* the source lines are counted, not kept: the old module printed millions */
        snprintf(cmd, sizeof cmd, "rm -rf build/test_module_bk; ( timeout -k 5 60 $G classifier train %s cfg/fmnist-ft.cfg "
                 "data/models/fmnist-judge.weights -clear -iters 6 -genie build/test_module_hang.cfg; echo \"exit $?\" ) 2>&1 "
                 "| awk '/genie module: source/ {n++; next} {print} END {print \"source lines \" n+0}'", hangs[i].data);
        check_sh(cmd, out, sizeof out);
        const char *e = strstr(out, "\nexit ");
        int status = e ? atoi(e + 6) : -1;
        int gave_up = 0;
        for (const char *q = out; (q = strstr(q, "no usable source image in")); q++) gave_up++;
        CHECK(status == hangs[i].want_rc && strstr(out, hangs[i].says) && strstr(out, "source lines 0") && gave_up <= 1,
              "%s: exit %d (want %d; 124/137: it hung), %d give-up messages: %s", hangs[i].what, status,
              hangs[i].want_rc, gave_up, out);
    }
    CHECK(access("build/test_module_bk/fmnist-ft.backup", R_OK) == 0, "a failed sync run saved no backup weights");
    /* an engine error (r x steps < 1: no denoising step; a genie.cfg reader that refuses it first stops the run
     * at start, naming the file): a sync run stops with the module's message and its backup, a run without sync
     * trains on and its closing line and exit status say that no samples were made */
    for (int sync = 0; sync < 2; sync++) {
        w = fopen("build/test_module_err.cfg", "w");
        fprintf(w, "[genie]\nmode=genie\nwarmup=0\nshare=0.2\nr=0.05\nsteps=5\nsync=%d\n", sync);
        fclose(w);
        rc = check_sh("rm -rf build/test_module_bk; timeout -k 5 60 $G classifier train build/test_module.data "
                      "cfg/fmnist-ft.cfg data/models/fmnist-judge.weights -clear -iters 6 -genie build/test_module_err.cfg",
                      out, sizeof out);
        int refused = strstr(out, "test_module_err.cfg:") != NULL && !strstr(out, "saved");
        const char *says = sync ? "fmnist-ft.backup saved" : "no samples were made";
        CHECK(rc == 1 && (refused || (strstr(out, "no denoising step") && strstr(out, says))),
              "engine error, sync=%d: exit %d: %s", sync, rc, out);
    }
    CHECK(system("rm -rf build/test_module_bk build/test_module_*.cfg build/test_module*.data build/test_module_a.weights "
                 "build/test_module_kill.log build/test_module_*tee.list build/test_module_err.log") == 0, "rm");

    imgio_free(&im);
    dataset_free(&ds);
    CHECK(system("rm -rf " CACHE) == 0, "rm");
    return check_done("module");
}
