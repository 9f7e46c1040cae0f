/* Loader throughput for scripts/bench.sh: darknet's own load_data (CLASSIFICATION_DATA, as `darknet classifier
 * train` uses it) against genie's loader pool, on the same image list, [net] augmentation and thread count.
 * Not a test (make test runs only test_*): build with `make build/tests/bench_loader`.
 *
 *   bench_loader <data> <cfg> <threads> <batches>
 *
 * Prints "darknet loader: <img/s> img/s" and "genie loader: <img/s> img/s". */
#include "dataset.h"
#include "err.h"
#include "loader.h"
#include "netio.h"

#include <darknet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* darknet's loader: one load_data call per batch, each starting `threads` fresh threads, joined before the next */
static double bench_darknet(network *net, const dataset *ds, int threads, int batch, int batches)
{
    load_args args = get_base_args(net);
    args.threads = threads;
    args.paths = ds->paths;
    args.n = batch;
    args.m = ds->n;
    args.labels = ds->labels;
    args.classes = ds->classes;
    args.type = CLASSIFICATION_DATA;
    data d;
    args.d = &d;
    double t = 0;
    for (int i = -2; i < batches; i++) { /* two untimed batches warm the page cache */
        if (i == 0) t = what_time_is_it_now();
        pthread_join(load_data(args), NULL);
        free_data(d);
    }
    return batches * batch / (what_time_is_it_now() - t);
}

static double bench_genie(network *net, const net_extras *ex, const dataset *ds, int threads, int batch,
                          int batches)
{
    loader_opts o = {.ds = ds, .aug = netio_aug_params(net, ex), .batch = batch, .threads = threads, .seed = 1,
                     .sampling = SAMPLE_REPLACE};
    loader *l = loader_start(&o);
    if (!l) return -1;
    double t = 0;
    for (int i = -2; i < batches; i++) {
        if (i == 0) t = what_time_is_it_now();
        const loader_batch *b = loader_next(l);
        if (!b) {
            loader_stop(l);
            return -1;
        }
        loader_release(l, b);
    }
    t = what_time_is_it_now() - t;
    loader_stop(l);
    return batches * batch / t;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: bench_loader <data> <cfg> <threads> <batches>\n");
        return 2;
    }
    int threads = atoi(argv[3]), batches = atoi(argv[4]);
    datacfg dc;
    dataset ds = {0};
    net_extras ex;
    network *net = NULL;
    if (datacfg_read(argv[1], &dc) || dataset_load(dc.train, dc.labels, dc.classes, &ds) ||
        !(net = netio_load(argv[2], NULL, 0, &ex))) {
        fprintf(stderr, "bench_loader: %s\n", err_msg());
        return 1;
    }
    int batch = net->batch * net->subdivisions;
    double dk = bench_darknet(net, &ds, threads, batch, batches);
    printf("darknet loader: %.1f img/s (%d threads, batch %d)\n", dk, threads, batch);
    fflush(stdout);
    double gn = bench_genie(net, &ex, &ds, threads, batch, batches);
    if (gn < 0) {
        fprintf(stderr, "bench_loader: %s\n", err_msg());
        return 1;
    }
    printf("genie loader: %.1f img/s (%d threads, batch %d)\n", gn, threads, batch);
    free_network(net);
    dataset_free(&ds);
    datacfg_free(&dc);
    return 0;
}
