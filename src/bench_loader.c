/* `genie bench-loader <data> <cfg> [-threads N] [-batches K]`: the loader alone (decode + augment to the net
 * size) against libdarknet's own load_data, same list, same cfg augmentation, same thread count, one run. */
#include "bench_loader.h"
#include "dataset.h"
#include "err.h"
#include "util.h"
#include "loader.h"
#include "netio.h"

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

int bench_loader_main(int argc, char **argv)
{
    if (argc < 2) return err_set("usage: genie bench-loader <data> <cfg> [-threads N] [-batches K]");
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), batches = 50;
    for (int i = 2; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "-threads")) threads = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "-batches")) batches = atoi(argv[i + 1]);
    }
    if (threads < 1 || batches < 1) return err_set("-threads and -batches must be positive");
    datacfg dc;
    if (datacfg_read(argv[0], &dc)) return -1;
    dataset ds;
    net_extras ex;
    network *net = NULL;
    int rc = -1;
    if (!dc.train || dataset_load(dc.train, dc.labels, dc.classes, &ds)) {
        if (!dc.train) err_set("%s: no train= line", argv[0]);
        datacfg_free(&dc);
        return -1;
    }
    if ((net = netio_load(argv[1], NULL, 0, &ex))) {
        aug_params aug = netio_aug_params(net, &ex);
        int imgs = net->batch * net->subdivisions;
        /* Warm the page cache for both. */
        genie_rate(&ds, &aug, imgs, threads, batches / 5 + 1);
        double g = genie_rate(&ds, &aug, imgs, threads, batches);
        double d = darknet_rate(&ds, net, imgs, threads, batches);
        printf("loader, %d threads, %d batches of %d (%dx%dx%d): genie %.0f img/s, darknet load_data %.0f img/s, "
               "ratio %.2fx\n", threads, batches, imgs, net->w, net->h, net->c, g, d, g / d);
        free_network(net);
        rc = 0;
    }
    dataset_free(&ds);
    datacfg_free(&dc);
    return rc;
}
