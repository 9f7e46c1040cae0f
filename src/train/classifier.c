/* `genie classifier train|valid|predict`: darknet's classifier loops on libdarknet, fed by genie's loader. */
#include "src/train/classifier.h"
#include "common/args.h"
#include "common/csv.h"
#include "src/net/blas.h"
#include "src/train/confusion.h"
#include "common/dist.h"
#include "src/train/dataset.h"
#include "augment/genie/recipe.h"
#include "common/err.h"
#include "common/imgio.h"
#include "common/util.h"
#include "augment/genie/genie_cfg.h"
#include "src/train/loader.h"
#include "augment/genie/module.h"
#include "src/net/netio.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) { interrupted = sig; }

static void cfg_base(const char *cfg, char *out, size_t n)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", cfg);
    char *b = basename(tmp), *dot = strrchr(b, '.');
    if (dot) *dot = 0;
    snprintf(out, n, "%s", b);
}

/* Runs the network over a SEQUENTIAL pass of ds and fills conf (and the top-k hit count); with pred, one line per
 * image: path,truth,predicted,probability of the predicted class (RFC 4180: a path with a comma is quoted). */
static int evaluate(network *net, const dataset *ds, const aug_params *aug, int threads, int k, int soft,
                    confusion *conf, long *topk_hits, long *seen, FILE *pred)
{
    loader_opts o = {.ds = ds, .aug = *aug, .batch = net->batch, .threads = threads, .sampling = SAMPLE_SEQUENTIAL};
    o.aug.preset = AUG_EVAL;
    loader *l = loader_start(&o);
    int classes = ds->classes, *truth = malloc(net->batch * sizeof *truth), *idx = malloc(k * sizeof *idx);
    *topk_hits = *seen = 0;
    const loader_batch *b;
    while ((b = loader_next(l))) {
        float *p = network_predict(net, b->x);
        for (int i = 0; i < b->n; i++) {
            truth[i] = b->index[i] < 0 ? -1 : ds->cls[b->index[i]];
            if (truth[i] < 0) continue;
            top_k(p + (size_t)i * classes, classes, k, idx);
            for (int j = 0; j < k; j++) *topk_hits += idx[j] == truth[i];
            (*seen)++;
            if (pred) {
                csv_put(pred, ds->paths[b->index[i]], ',');
                csv_put(pred, ds->labels[truth[i]], ',');
                csv_put(pred, ds->labels[idx[0]], ',');
                fprintf(pred, "%.6f\n", p[(size_t)i * classes + idx[0]]);
            }
        }
        (soft ? confusion_update_soft : confusion_update)(conf, truth, p, b->n);
        loader_release(l, b);
    }
    int rc = loader_failed(l) ? -1 : 0;
    loader_stop(l);
    free(truth);
    free(idx);
    return rc;
}

static void print_accuracy(confusion *conf, const dataset *ds, const int *train_count, int k, long topk_hits,
                           long seen)
{
    printf("top-1: %.4f  top-%d: %.4f  (%ld images)\n", confusion_accuracy(conf), k,
           seen ? (double)topk_hits / seen : 0, seen);
    double grp_hit[3] = {0}, grp_tot[3] = {0};
    printf("%-16s %8s %8s %10s\n", "class", "images", "top-1", "train-imgs");
    for (int c = 0; c < ds->classes; c++) {
        double tot = confusion_class_total(conf, c);
        printf("%-16s %8.0f %8.4f", ds->labels[c], tot, confusion_class_accuracy(conf, c));
        if (train_count) {
            enum shot_group g = recipe_shot_group(train_count[c]);
            printf(" %10d", train_count[c]);
            grp_hit[g] += confusion_count(conf, c, c);
            grp_tot[g] += tot;
        }
        printf("\n");
    }
    if (!train_count) return;
    /* Only meaningful when the training set is long-tailed: all three groups present. */
    if (grp_tot[SHOT_MANY] > 0 && grp_tot[SHOT_MEDIUM] + grp_tot[SHOT_FEW] > 0) {
        static const char *const names[3] = {"Many (>100)", "Medium (20-100)", "Few (<20)"};
        for (int g = 0; g < 3; g++)
            if (grp_tot[g] > 0) printf("%-16s %8.0f %8.4f\n", names[g], grp_tot[g], grp_hit[g] / grp_tot[g]);
    }
}

typedef struct {
    const char *data, *cfg, *weights, *genie;
    int clear, threads, blas_threads, topk, iters, backup_every;
    int gpu;                    /* darknet's device (netio_device), -1 the CPU */
    uint64_t seed;
    enum sampling sampling;
} train_args;

static void live_snapshot(void *ctx, double *m) { confusion_snapshot(ctx, m); }

/* The module's account at the end of a run: what it made, for whom, at which r, and what the batches got. */
static void print_genie(module *gm, const genie_cfg *c, char *const *labels, const loader_stats *ls)
{
    module_stats ms;
    module_get_stats(gm, &ms);
    fprintf(stderr, "online GeNIe: %llu requests, %llu kept (+%llu from the cache), %llu dropped (non-finite), "
                    "%.1f s generating (%.2f img/s); %llu rows served, %llu short; %llu snapshots of f_theta, "
                    "%llu Ada fallbacks, %llu replays\n",
            (unsigned long long)ms.requests, (unsigned long long)ms.kept, (unsigned long long)ms.cached,
            (unsigned long long)ms.dropped, ms.gen_seconds, ms.gen_seconds > 0 ? ms.requests / ms.gen_seconds : 0.0,
            (unsigned long long)ls->gen_served, (unsigned long long)ls->gen_short, (unsigned long long)ms.snapshots,
            (unsigned long long)ms.ada_fallback, (unsigned long long)ms.replayed);
    fprintf(stderr, "  per target:");
    for (int i = 0; i < ms.n_targets; i++) fprintf(stderr, " %s %d", labels[ms.targets[i]], ms.made[i]);
    if (c->mode == GENIE_MODE_ADA) {
        fprintf(stderr, "\n  chosen r:");
        for (int k = 0; k < c->n_r; k++) fprintf(stderr, " %.2g: %d", c->r_set[k], ms.r_hist[k]);
    }
    fprintf(stderr, "\n");
}

/* A rank >= 1 of `mpirun -np 1+K genie classifier train ...`: no training, a generator for rank 0's online GeNIe
 * (module_serve), from the same .data and genie.cfg. */
static int serve(const train_args *a)
{
    datacfg dc;
    if (datacfg_read(a->data, &dc)) return -1;
    dataset ds = {0};
    genie_cfg gcfg;
    const char *gpath = a->genie ? a->genie : dc.genie;
    int rc = -1;
    if (!dc.train) err_set("%s: no train= line", a->data);
    else if (dataset_load(dc.train, dc.labels, dc.classes, &ds) == 0 && (!gpath || genie_cfg_read(gpath, &gcfg) == 0)) {
        if (!gpath || gcfg.mode == GENIE_MODE_NONE) {
            fprintf(stderr, "rank %d of %d: this run has no online GeNIe (genie= in %s, or -genie): nothing to make\n",
                    dist_rank(), dist_size(), a->data);
            rc = 0;
        } else {
            imgio_set_max_pixels(dc.max_pixels);
            if (!strcmp(gcfg.device, "cuda"))   /* one device per rank of a machine, as genie generate does */
                snprintf(gcfg.device, sizeof gcfg.device, "cuda:%d", dist_local_rank());
            module_opts mo = {.cfg = &gcfg, .cfg_path = gpath, .classes = ds.classes, .labels = ds.labels,
                              .n_real = ds.n_real, .paths = ds.paths, .cls = ds.cls, .net_cfg = a->cfg,
                              .seed = a->seed, .gpu = a->gpu};
            rc = module_serve(&mo);
        }
    }
    if (ds.paths) dataset_free(&ds);
    datacfg_free(&dc);
    return rc;
}

static int train(const train_args *a)
{
    if (dist_rank() > 0) return serve(a);
    datacfg dc;
    if (datacfg_read(a->data, &dc)) return -1;
    int rc = -1;
    dataset ds = {0}, vs = {0};
    network *net = NULL;
    loader *l = NULL;
    confusion live = {0};
    genie_cfg gcfg;
    char grid_path[4400]; /* the module keeps the pointer for the whole run */
    module *gm = NULL;
    blas_pool *bp = NULL;
    FILE *log = NULL;
    if (!dc.train) {
        err_set("%s: no train= line", a->data);
        goto out;
    }
    if (dataset_load(dc.train, dc.labels, dc.classes, &ds)) goto out;
    if (dc.generated && dataset_add_generated(&ds, dc.generated)) goto out;
    if (dc.roundtrip && dataset_add_roundtrips(&ds, dc.roundtrip)) goto out;
    if (a->topk && (!dc.valid || dataset_load(dc.valid, dc.labels, dc.classes, &vs))) {
        if (!dc.valid) err_set("%s: -topk needs a valid= line", a->data);
        goto out;
    }
    net_extras ex;
    /* libdarknet initialises weights with rand(): seeding it makes -seed reproduce a run from scratch too. */
    srand((unsigned)a->seed);
    if (!(net = netio_load(a->cfg, a->weights, a->clear, &ex))) goto out;
    if (net->outputs != dc.classes) {
        err_set("%s: the network has %d outputs but %s says classes=%d", a->cfg, net->outputs, a->data, dc.classes);
        goto out;
    }
    if (util_mkdirs(dc.backup)) goto out;
    bp = blas_pool_create(a->blas_threads); /* NULL: the kernels run on this thread alone, to the same bits */
    blas_pool_use(bp);
    imgio_set_max_pixels(dc.max_pixels);

    char base[256], path[4400];
    cfg_base(a->cfg, base, sizeof base);
    int imgs = net->batch * net->subdivisions;
    aug_params aug = netio_aug_params(net, &ex);
    loader_opts o = {.ds = &ds, .aug = aug, .gen_aug = netio_gen_aug_params(net, &ex),
                     .tail_aug = netio_tail_aug_params(net, &ex), .batch = imgs, .threads = a->threads, .seed = a->seed,
                     .start = *net->seen, .sampling = a->sampling, .mixup = ex.mixup, .cutmix = ex.cutmix,
                     .label_smooth = ex.label_smooth, .tail_share = dc.tail_share, .gen_share = dc.gen_share, .gen_soft = dc.gen_soft,
                     .roundtrip_p = dc.roundtrip_p, .pair_source = dc.pair_source, .cancel = &interrupted};
    fprintf(stderr, "training %s on %d images (%d classes), batch %d, %d loader threads, seed %llu, from image %zu\n",
            a->cfg, ds.n, ds.classes, imgs, a->threads, (unsigned long long)a->seed, *net->seen);
    if (ds.n > ds.n_real || ds.alt)
        fprintf(stderr, "%d generated samples (%s), tail_share %g, gen_share %g, gen_soft %g, round trips %s with p %g, "
                "pair_source %g\n", ds.n - ds.n_real, dc.generated ? dc.generated : "none", dc.tail_share,
                dc.gen_share, dc.gen_soft, dc.roundtrip ? dc.roundtrip : "none", dc.roundtrip_p, dc.pair_source);
    /* the recent past of about 6,400 training samples (0.98 per batch of 128) */
    confusion_init(&live, ds.classes, pow(0.98, 1.0 / 128));
    const char *gpath = a->genie ? a->genie : dc.genie;
    if (gpath) {
        if (genie_cfg_read(gpath, &gcfg)) goto out;
        if (gcfg.mode != GENIE_MODE_NONE) {
            if (gcfg.sync) o.slots = RECIPE_SYNC_LOOKAHEAD;
            snprintf(grid_path, sizeof grid_path, "%s/%s_genie_grid.png", dc.backup, base);
            module_opts mo = {.cfg = &gcfg, .cfg_path = gpath, .classes = ds.classes, .labels = ds.labels,
                              .n_real = ds.n_real, .paths = ds.paths, .cls = ds.cls, .net_cfg = a->cfg,
                              .seed = a->seed, .confusion = live_snapshot, .confusion_ctx = &live,
                              .start = *net->seen, .start_iter = (int)get_current_batch(net), .batch = imgs,
                              .lookahead = loader_lookahead(&o), .grid_path = grid_path,
                              .gpu = a->gpu};
            loader_rows(&o, &mo.rows);
            if (!(gm = module_start(&mo))) goto out;
            module_snapshot(gm, net, (int)get_current_batch(net));
            o.genie = gm;
            fprintf(stderr, "online GeNIe (%s): mode %s, share %g of %s, quota %d per target, warmup %d\n", gpath,
                    genie_mode_name(gcfg.mode), gcfg.share, o.tail_share > 0 ? "the tail rows" : "each batch",
                    gcfg.quota, gcfg.warmup);
        }
    }
    l = loader_start(&o);
    /* one CSV line per iteration, flushed as it goes (a log, not a result: it is appended, not replaced) */
    snprintf(path, sizeof path, "%s/%s_log.csv", dc.backup, base);
    if (!(log = fopen(path, *net->seen ? "a" : "w"))) {
        err_set("%s: %s", path, strerror(errno));
        goto out;
    }
    if (!*net->seen)
        fprintf(log, "iteration,epoch,loss,avg_loss,rate,seconds,images,img_s,data_wait,train_acc%s\n",
                gm ? ",genie_kept,genie_img_s,genie_ring,genie_served,genie_short" : "");

    data d = {0};
    d.shallow = 1;
    d.X.rows = d.y.rows = imgs;
    d.X.cols = net->inputs;
    d.y.cols = ds.classes;
    d.X.vals = malloc(imgs * sizeof(float *));
    d.y.vals = malloc(imgs * sizeof(float *));

    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    float avg_loss = -1;
    int gen_failed = 0; /* sync=1 and the module failed: rows from then on lack their samples */
    double t_start = util_now(), wait_prev = 0;
    /* -topk: once an epoch, but small data sets (an LT epoch is ~20 iterations) no more often than every 200. */
    int iter = 0, epoch = (int)(*net->seen / ds.n), topk_every = (ds.n + imgs - 1) / imgs;
    if (topk_every < 200) topk_every = 200;
    while ((int)get_current_batch(net) < net->max_batches || net->max_batches == 0) {
        if (interrupted || (a->iters && iter >= a->iters)) break;
        double t0 = util_now();
        const loader_batch *b = loader_next(l);
        if (!b && interrupted) break;
        if (gm && gcfg.sync && module_failed(gm, NULL)) {
            if (b) loader_release(l, b);
            gen_failed = 1;
            break;
        }
        if (!b) goto out_data;
        for (int i = 0; i < imgs; i++) {
            d.X.vals[i] = b->x + (size_t)i * net->inputs;
            d.y.vals[i] = b->y + (size_t)i * ds.classes;
        }
        /* libdarknet's train_network, one subdivision at a time, so that each one's softmax outputs reach the
         * live confusion statistics (the output layer only keeps the last) */
        float loss = 0;
        for (int sub = 0; sub < net->subdivisions; sub++) {
            get_next_batch(d, net->batch, sub * net->batch, net->input, net->truth);
            loss += train_network_datum(net);
            confusion_update(&live, b->truth + sub * net->batch, net->output, net->batch);
        }
        loss /= imgs;
        if (!(loss == loss)) {
            loader_release(l, b);
            err_set("loss became NaN at iteration %d (learning rate %g): lower learning_rate or check the data",
                    (int)get_current_batch(net), get_current_rate(net));
            goto out_data;
        }
        loader_release(l, b);
        iter++;
        avg_loss = avg_loss < 0 ? loss : avg_loss * .9f + loss * .1f;
        double t2 = util_now();
        loader_stats st;
        loader_get_stats(l, &st);
        printf("%d, %.3f: %f, %f avg, %f rate, %lf seconds, %zu images, %.0f img/s, data wait %.1f%%, train acc %.3f",
               (int)get_current_batch(net), (double)*net->seen / ds.n, loss, avg_loss, get_current_rate(net), t2 - t0,
               *net->seen, imgs / (t2 - t0), 100 * (st.wait_s - wait_prev) / (t2 - t0), confusion_accuracy(&live));
        fprintf(log, "%d,%.4f,%g,%g,%g,%.4f,%zu,%.1f,%.4f,%.4f", (int)get_current_batch(net),
                (double)*net->seen / ds.n, loss, avg_loss, get_current_rate(net), t2 - t0, *net->seen,
                imgs / (t2 - t0), (st.wait_s - wait_prev) / (t2 - t0), confusion_accuracy(&live));
        if (gm) {
            module_snapshot(gm, net, (int)get_current_batch(net));
            module_stats ms;
            module_get_stats(gm, &ms);
            double rate = ms.gen_seconds > 0 ? ms.requests / ms.gen_seconds : 0.0;
            printf(", genie: %llu kept (%.1f img/s), ring %d, %llu served, %llu short",
                   (unsigned long long)(ms.kept + ms.cached), rate, ms.ring_ready, (unsigned long long)st.gen_served,
                   (unsigned long long)st.gen_short);
            fprintf(log, ",%llu,%.2f,%d,%llu,%llu", (unsigned long long)(ms.kept + ms.cached), rate, ms.ring_ready,
                    (unsigned long long)st.gen_served, (unsigned long long)st.gen_short);
        }
        printf("\n");
        fputc('\n', log);
        fflush(log);
        wait_prev = st.wait_s;
        fflush(stdout);

        int e = (int)(*net->seen / ds.n);
        if (e > epoch) {
            epoch = e;
            snprintf(path, sizeof path, "%s/%s_%d.weights", dc.backup, base, epoch);
            if (netio_save(net, path)) goto out_data;
        }
        if (a->backup_every && (int)get_current_batch(net) % a->backup_every == 0) {
            snprintf(path, sizeof path, "%s/%s.backup", dc.backup, base);
            if (netio_save(net, path)) goto out_data;
        }
        if (a->topk && (int)get_current_batch(net) % topk_every == 0) {
            confusion vc;
            long hits, seen;
            confusion_init(&vc, ds.classes, 1);
            if (evaluate(net, &vs, &aug, a->threads, dc.top, 0, &vc, &hits, &seen, NULL) == 0)
                printf("valid after %d: top-1 %.4f, top-%d %.4f\n", (int)get_current_batch(net), confusion_accuracy(&vc),
                       dc.top, seen ? (double)hits / seen : 0);
            confusion_free(&vc);
        }
    }
    loader_stats st;
    loader_get_stats(l, &st);
    if (gm) print_genie(gm, &gcfg, ds.labels, &st);
    double wall = util_now() - t_start;
    fprintf(stderr, "%d iterations in %.1f s: %.0f img/s, waited for data %.2f%% of the time, %llu bad images\n", iter,
            wall, iter * imgs / wall, 100 * st.wait_s / wall, (unsigned long long)st.bad_images);
    if (interrupted || gen_failed) {
        snprintf(path, sizeof path, "%s/%s.backup", dc.backup, base);
        fprintf(stderr, "%s: saving %s\n", interrupted ? "interrupted" : "online GeNIe failed", path);
        rc = netio_save(net, path);
        if (gen_failed && rc == 0) {
            module_failed(gm, NULL);
            err_wrap("online GeNIe failed (sync=1: the run stops; %s saved): ", path);
            rc = -1;
        }
        goto out_data;
    }
    snprintf(path, sizeof path, "%s/%s.weights", dc.backup, base);
    rc = netio_save(net, path);
    if (rc == 0) fprintf(stderr, "saved %s\n", path);
    int fail_iter;
    if (rc == 0 && module_failed(gm, &fail_iter)) {
        err_wrap("online GeNIe failed at iteration %d, no samples were made from then on (training went on without "
                 "them): ", fail_iter);
        rc = -1;
    }

out_data:
    free(d.X.vals);
    free(d.y.vals);
out:
    module_close(gm); /* loader threads waiting on it (sync) take real images and finish */
    loader_stop(l);
    module_stop(gm); /* after the loader: its threads take from the module's ring */
    blas_pool_use(NULL);
    blas_pool_free(bp);
    if (log && fclose(log) != 0 && rc == 0) rc = err_set("%s/%s_log.csv: cannot write", dc.backup, base);
    confusion_free(&live);
    if (net) free_network(net);
    dataset_free(&ds);
    if (vs.paths) dataset_free(&vs);
    datacfg_free(&dc);
    return rc;
}

static int valid(const char *datafile, const char *cfg, const char *weights, int threads, const char *csv, int soft,
                 const char *pred_path)
{
    datacfg dc;
    if (datacfg_read(datafile, &dc)) return -1;
    dataset vs = {0}, ts = {0};
    network *net = NULL;
    confusion conf = {0};
    blas_pool *bp = NULL;
    int rc = -1;
    if (!dc.valid) {
        err_set("%s: no valid= line", datafile);
        goto out;
    }
    if (dataset_load(dc.valid, dc.labels, dc.classes, &vs)) goto out;
    /* The training list's class counts define the Many/Medium/Few groups. */
    int have_train = dc.train && dataset_load(dc.train, dc.labels, dc.classes, &ts) == 0;
    net_extras ex;
    if (!(net = netio_load(cfg, weights, 0, &ex))) goto out;
    if (net->outputs != dc.classes) {
        err_set("%s: the network has %d outputs but %s says classes=%d", cfg, net->outputs, datafile, dc.classes);
        goto out;
    }
    bp = blas_pool_create(0);
    blas_pool_use(bp);
    imgio_set_max_pixels(dc.max_pixels);
    aug_params aug = netio_aug_params(net, &ex);
    long hits, seen;
    confusion_init(&conf, dc.classes, 1);
    int k = dc.top < dc.classes ? dc.top : dc.classes;
    /* written whole or not at all: committed once every image is in */
    char pred_tmp[4400];
    FILE *pred = NULL;
    if (pred_path) {
        if (!(pred = util_open_tmp(pred_path, pred_tmp, sizeof pred_tmp))) goto out;
        fprintf(pred, "image,truth,predicted,p\n");
    }
    if (evaluate(net, &vs, &aug, threads, k, soft, &conf, &hits, &seen, pred)) {
        if (pred) fclose(pred), remove(pred_tmp);
        goto out;
    }
    if (pred && util_commit(pred, pred_tmp, pred_path)) goto out;
    if (soft) printf("soft confusion: rows sum the softmax (accuracies below are expected accuracies)\n");
    print_accuracy(&conf, &vs, have_train ? ts.count : NULL, k, hits, seen);
    char path[4400];
    if (!csv) {
        char base[256];
        cfg_base(cfg, base, sizeof base);
        if (util_mkdirs(dc.backup)) goto out;
        snprintf(path, sizeof path, "%s/%s_confusion.csv", dc.backup, base);
        csv = path;
    }
    if (confusion_write_csv(&conf, vs.labels, csv)) goto out;
    printf("confusion matrix: %s\n", csv);
    if (pred_path) printf("predictions: %s\n", pred_path);
    rc = 0;
out:
    blas_pool_use(NULL);
    blas_pool_free(bp);
    confusion_free(&conf);
    if (net) free_network(net);
    if (vs.paths) dataset_free(&vs);
    if (ts.paths) dataset_free(&ts);
    datacfg_free(&dc);
    return rc;
}

static int predict(const char *datafile, const char *cfg, const char *weights, const char *image)
{
    datacfg dc;
    if (datacfg_read(datafile, &dc)) return -1;
    int rc = -1, n = 0;
    char **names = NULL;
    network *net = NULL;
    img_u8 im = {0};
    const char *names_path = dc.names ? dc.names : dc.labels;
    FILE *f = fopen(names_path, "r");
    if (!f) {
        err_set("%s: cannot open the class names", names_path);
        goto out;
    }
    char line[1024];
    names = calloc(dc.classes, sizeof *names);
    while (n < dc.classes && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0]) names[n++] = strdup(line);
    }
    fclose(f);
    net_extras ex;
    if (!(net = netio_load(cfg, weights, 0, &ex))) goto out;
    if (net->outputs != dc.classes || n != dc.classes) {
        err_set("%s: %d outputs, %d names, classes=%d", cfg, net->outputs, n, dc.classes);
        goto out;
    }
    set_batch_network(net, 1);
    aug_params aug = netio_aug_params(net, &ex);
    aug.preset = AUG_EVAL;
    int min_w, min_h;
    transform_min_decode(&aug, &min_w, &min_h);
    if (imgio_load(image, min_w, min_h, &im)) goto out;
    float *x = malloc(net->inputs * sizeof *x), *tmp = malloc(4 * (size_t)net->w * net->h * sizeof *tmp);
    transform_sample(&aug, &im, NULL, x, tmp);
    float *p = network_predict(net, x);
    int k = dc.top < dc.classes ? dc.top : dc.classes, idx[64];
    if (k > 64) k = 64;
    top_k(p, dc.classes, k, idx);
    printf("%s:\n", image);
    for (int i = 0; i < k; i++) printf("%6.2f%%: %s\n", 100 * p[idx[i]], names[idx[i]]);
    free(x);
    free(tmp);
    rc = 0;
out:
    imgio_free(&im);
    if (net) free_network(net);
    for (int i = 0; names && i < n; i++) free(names[i]);
    free(names);
    datacfg_free(&dc);
    return rc;
}

int classifier_signal(void) { return interrupted; }

int classifier_main(int argc, char **argv)
{
    if (argc < 1) return err_set("classifier: expected train, valid or predict");
    const char *cmd = argv[0];
    char *pos[4] = {0};
    int threads = 0, gpu = NETIO_DEVICE_DEFAULT;
    if (!strcmp(cmd, "train")) {
        train_args a = {.backup_every = 1000, .seed = 1};
        const char *s = "shuffle";
        const arg_opt opts[] = {ARG_OPT("-clear", ARG_SWITCH, &a.clear),
                                ARG_OPT("-topk", ARG_SWITCH, &a.topk),
                                ARG_OPT("-seed", ARG_U64, &a.seed),
                                ARG_RANGE("-threads", ARG_INT, &threads, 0, 1024),
                                ARG_RANGE("-blas-threads", ARG_INT, &a.blas_threads, 0, 1024),
                                ARG_RANGE("-iters", ARG_INT, &a.iters, 0, 1e9),
                                ARG_RANGE("-backup", ARG_INT, &a.backup_every, 0, 1e9),
                                ARG_OPT("-sampling", ARG_STR, &s),
                                ARG_OPT("-genie", ARG_STR, &a.genie),
                                ARG_RANGE("-gpu", ARG_INT, &gpu, -1, 63),
                                ARG_END};
        int np = args_parse("classifier train", argc - 1, argv + 1, opts, pos, 3);
        if (np < 0) return -1;
        if (np < 2)
            return err_set("usage: genie classifier train <data> <cfg> [weights] [-clear] [-seed S] [-threads N] "
                           "[-blas-threads N] [-iters N] [-backup N] [-sampling shuffle|replace|balanced] [-topk] "
                           "[-genie genie.cfg] [-gpu N|-1]");
        a.data = pos[0];
        a.cfg = pos[1];
        a.weights = pos[2];
        a.threads = threads > 0 ? threads : util_cores();
        if (!strcmp(s, "shuffle")) a.sampling = SAMPLE_SHUFFLE;
        else if (!strcmp(s, "replace")) a.sampling = SAMPLE_REPLACE;
        else if (!strcmp(s, "balanced")) a.sampling = SAMPLE_BALANCED;
        else return err_set("-sampling must be shuffle, replace or balanced, got '%s'", s);
        if ((a.gpu = netio_device(gpu)) < -1) return -1;
        /* under mpirun, ranks >= 1 generate for rank 0's online GeNIe (module.h) */
        if (dist_init()) return -1;
        int rc = train(&a);
        module_dismiss();   /* rank 0: ranks still waiting for a module that did not start (or ended) stop */
        dist_finalize();
        return rc;
    }
    if (!strcmp(cmd, "valid")) {
        const char *csv = NULL, *pred = NULL;
        int soft = 0;
        const arg_opt opts[] = {ARG_OPT("-csv", ARG_STR, &csv),
                                ARG_OPT("-predictions", ARG_STR, &pred),
                                ARG_OPT("-soft", ARG_SWITCH, &soft),
                                ARG_RANGE("-threads", ARG_INT, &threads, 0, 1024),
                                ARG_RANGE("-gpu", ARG_INT, &gpu, -1, 63),
                                ARG_END};
        int np = args_parse("classifier valid", argc - 1, argv + 1, opts, pos, 3);
        if (np < 0) return -1;
        if (np < 3)
            return err_set("usage: genie classifier valid <data> <cfg> <weights> [-csv file] [-predictions file] [-soft] "
                           "[-threads N] [-gpu N|-1]");
        /* where the results go is checked before the whole test set is run */
        if ((csv && util_check_dest(csv)) || (pred && util_check_dest(pred))) return -1;
        if (netio_device(gpu) < -1) return -1;
        return valid(pos[0], pos[1], pos[2], threads > 0 ? threads : util_cores(), csv, soft, pred);
    }
    if (!strcmp(cmd, "predict")) {
        const arg_opt opts[] = {ARG_RANGE("-gpu", ARG_INT, &gpu, -1, 63), ARG_END};
        int np = args_parse("classifier predict", argc - 1, argv + 1, opts, pos, 4);
        if (np < 0) return -1;
        if (np < 4) return err_set("usage: genie classifier predict <data> <cfg> <weights> <image> [-gpu N|-1]");
        if (netio_device(gpu) < -1) return -1;
        return predict(pos[0], pos[1], pos[2], pos[3]);
    }
    return err_set("classifier: unknown command '%s' (train, valid, predict)", cmd);
}
