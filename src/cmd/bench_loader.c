/* `genie bench-loader <data> <cfg> [-threads N] [-batches K]`: the loader alone (decode + augment to the net
 * size) against libdarknet's own load_data, same list, same cfg augmentation, same thread count, one run. */
#include "src/cmd/bench_loader.h"
#include "common/args.h"
#include "common/imgio.h"
#include "src/train/dataset.h"
#include "common/err.h"
#include "common/util.h"
#include "src/train/loader.h"
#include "src/net/netio.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* darknet's classifier loop: one load_data in flight while the previous batch is used. */
static double darknet_rate(const dataset *ds, const network *net, int imgs, int threads, int batches)
{
    load_args args = {0};
    args.w = net->w;
    args.h = net->h;
    args.threads = threads;
    args.min = net->min_crop;
    args.max = net->max_crop;
    args.size = net->w;
    args.angle = net->angle;
    args.aspect = net->aspect;
    args.exposure = net->exposure;
    args.saturation = net->saturation;
    args.hue = net->hue;
    args.paths = ds->paths;
    args.classes = ds->classes;
    args.n = imgs;
    args.m = ds->n;
    args.labels = ds->labels;
    args.type = CLASSIFICATION_DATA;
    data buffer;
    args.d = &buffer;
    double t0 = util_now();
    pthread_t th = load_data(args);
    for (int b = 0; b < batches; b++) {
        pthread_join(th, 0);
        data d = buffer;
        if (b + 1 < batches) th = load_data(args);
        free_data(d);
    }
    return (double)batches * imgs / (util_now() - t0);
}

static double genie_rate(const dataset *ds, const aug_params *aug, int imgs, int threads, int batches)
{
    loader_opts o = {.ds = ds, .aug = *aug, .batch = imgs, .threads = threads, .seed = 1};
    double t0 = util_now();
    loader *l = loader_start(&o);
    for (int b = 0; b < batches; b++) {
        const loader_batch *lb = loader_next(l);
        if (!lb) break;
        loader_release(l, lb);
    }
    double rate = (double)batches * imgs / (util_now() - t0);
    loader_stop(l);
    return rate;
}

/* The physical limit: the same files decoded at full size by the same number of threads, nothing else. */
struct raw_job {
    const dataset *ds;
    int first, step, count;
};

static void *raw_worker(void *arg)
{
    struct raw_job *j = arg;
    img_u8 im = {0};
    for (int i = j->first; i < j->count; i += j->step) imgio_load(j->ds->paths[i % j->ds->n], 0, 0, &im);
    imgio_free(&im);
    return NULL;
}

static double raw_rate(const dataset *ds, int threads, int count)
{
    pthread_t th[64];
    struct raw_job jobs[64];
    if (threads > 64) threads = 64;
    double t0 = util_now();
    for (int t = 0; t < threads; t++) {
        jobs[t] = (struct raw_job){ds, t, threads, count};
        pthread_create(&th[t], NULL, raw_worker, &jobs[t]);
    }
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
    return count / (util_now() - t0);
}

/* libdarknet's load_data runs system("echo <path> >> bad.list") for an image it cannot read, and its image
 * decoder aborts the process on some bad files: it only ever sees a list genie has checked first, where every
 * path is a decodable regular file whose name holds no character a shell would act on. */
static int check_for_darknet(const dataset *ds, const char *list)
{
    img_u8 im = {0};
    int rc = 0;
    for (int i = 0; i < ds->n && rc == 0; i++) {
        const char *p = ds->paths[i];
        for (const char *c = p; *c && rc == 0; c++)
            if (!isalnum((unsigned char)*c) && !strchr("._-/+,=@%:", *c))
                rc = err_set("%s: \"%s\" has the character '%c', which libdarknet's load_data would hand to a shell: "
                             "not benchmarked against it", list, p, *c);
        if (rc == 0 && imgio_load(p, 0, 0, &im))
            rc = err_wrap("%s: not benchmarked against libdarknet's load_data, which cannot take a bad image: ", list);
    }
    imgio_free(&im);
    return rc;
}

int bench_loader_main(int argc, char **argv)
{
    int threads = util_cores(), batches = 50;
    const arg_opt opts[] = {ARG_RANGE("-threads", ARG_INT, &threads, 1, 1024),
                            ARG_RANGE("-batches", ARG_INT, &batches, 1, 1000000), ARG_END};
    char *pos[2];
    int np = args_parse("bench-loader", argc, argv, opts, pos, 2);
    if (np < 0) return -1;
    if (np < 2) return err_set("usage: genie bench-loader <data> <cfg> [-threads N] [-batches K]");
    datacfg dc;
    if (datacfg_read(pos[0], &dc)) return -1;
    imgio_set_max_pixels(dc.max_pixels);
    dataset ds;
    net_extras ex;
    network *net = NULL;
    int rc = -1;
    if (!dc.train || dataset_load(dc.train, dc.labels, dc.classes, &ds)) {
        if (!dc.train) err_set("%s: no train= line", pos[0]);
        datacfg_free(&dc);
        return -1;
    }
    if (check_for_darknet(&ds, dc.train) == 0 && (net = netio_load(pos[1], NULL, 0, &ex))) {
        aug_params aug = netio_aug_params(net, &ex);
        int imgs = net->batch * net->subdivisions;
        /* Warm the page cache for both. */
        genie_rate(&ds, &aug, imgs, threads, batches / 5 + 1);
        double g = genie_rate(&ds, &aug, imgs, threads, batches);
        double d = darknet_rate(&ds, net, imgs, threads, batches);
        double r = raw_rate(&ds, threads, batches * imgs);
        printf("loader, %d threads, %d batches of %d (%dx%dx%d): genie %.0f img/s, darknet load_data %.0f img/s, "
               "ratio %.2fx; raw decode %.0f img/s, genie at %.0f%% of it\n", threads, batches, imgs, net->w, net->h,
               net->c, g, d, g / d, r, 100 * g / r);
        free_network(net);
        rc = 0;
    }
    dataset_free(&ds);
    datacfg_free(&dc);
    return rc;
}
