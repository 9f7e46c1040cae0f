/* The resident GeNIe module: online generative hard negatives during training. The trainer's one header to it.
 *
 * One thread, started with the trainer, owns the engine (loaded once, every class prompt encoded once), f_theta
 * (a second network of the trainer's cfg) and a ring of generated samples. It plans requests from the live
 * confusion statistics (targets weighted by error and quota left, sources among the top_k classes most confused
 * with the target, a real training image of the source drawn by Philox from (seed, request number)), runs them
 * through the generation path `genie generate` uses (GeNIe-Ada: every r of the set in one engine batch, the r
 * just after the largest jump kept), and puts the kept samples in the ring, in memory and in the cache directory.
 * Once every target has its quota it refills the ring from the kept samples instead of generating.
 *
 * By default the trainer never waits on it: module_snapshot copies the trainer's parameters into a staging network only if
 * the module is not picking the previous one up at that moment (else it tries again next iteration), and a loader
 * row that finds no sample ready takes a real image (counted as shortfall). */
#ifndef GENIE_MODULE_H
#define GENIE_MODULE_H
#include <stddef.h>
#include <stdint.h>

#include "augment/genie/ada.h"
#include "augment/genie/genie_cfg.h"
#include "augment/genie/rows.h"
#include "common/imgio.h"

typedef struct {
    const genie_cfg *cfg;
    const char *cfg_path;              /* for messages */
    int classes;
    char *const *labels;
    /* the real training images: sources and GeNIe-Ada's class means */
    int n_real;
    char *const *paths;
    const int *cls;
    const char *net_cfg;               /* the trainer's cfg: f_theta is a network of it */
    uint64_t seed;
    /* a consistent copy of the live confusion matrix (classes x classes, truth rows) */
    void (*confusion)(void *ctx, double *m);
    void *confusion_ctx;
    /* the trainer's first sample number and iteration and its rows per iteration (which rows come before warmup
     * ends); sync=1 also needs how many batches the loader may run ahead of training (its ring of batches) */
    uint64_t start;
    int start_iter, batch, lookahead;
    /* optional: a PNG of the latest kept pairs (rows of source | generated) and its labels in grid_path.csv
     * (source, target, r), rewritten as samples come */
    const char *grid_path;
    /* the trainer's rows (its loader's: seed, tail share, pair_source); the module adds its share and warmup, and
     * with sync=1 makes the samples for the rows that then take one, in row order */
    rows_opts rows;
    /* optional: the memory the kept samples may take (0: GENIE_KEPT_MAX_BYTES, genie_cfg.h) */
    size_t kept_bytes;
    /* the trainer's CUDA device (f_theta's networks are built there), -1 the CPU; with device= empty in genie.cfg
     * the engine runs on the same device (a zeroed module_opts: device 0, which a CPU build never asks for) */
    int gpu;
} module_opts;

typedef struct {
    uint64_t requests, kept, dropped, ada_fallback, cached;   /* cached: kept samples loaded from the cache */
    int resident;                      /* kept samples in memory (at most kept_bytes' worth) */
    uint64_t taken, shortfall, snapshots, replayed;
    int ring_ready, snapshot_iter;
    double gen_seconds;                /* time spent in the engine */
    int r_hist[ADA_MAX_R];             /* kept samples by r (the r_set's, or the fixed r in slot 0) */
    int targets[GENIE_CFG_MAX_TARGETS], made[GENIE_CFG_MAX_TARGETS], n_targets;
} module_stats;

typedef struct module module;

/* Loads everything and starts the thread; NULL + err_msg() (bad model, unknown target label, no source images). */
module *module_start(const module_opts *o);
/* Under `mpirun -np 1+K`, rank 0 trains and its module plans every request (sync=1: exactly as alone, so the run
 * gives the same weights, byte for byte) while ranks 1..K make them (augment/genie/remote.h). module_start on rank 0
 * finds the ranks itself; each rank >= 1 calls module_serve with the options rank 0 starts its module with (it
 * reads the same arguments: the trainer's position fields are not used), which loads the same generator and runs
 * rank 0's requests until rank 0's module_stop. 0, or -1 + err_msg() (a failed load is reported to rank 0 too). */
int module_serve(const module_opts *o);
/* Rank 0 of such a job, at its end: the ranks >= 1 stop, when its module (which tells them) did not. */
void module_dismiss(void);
/* Wakes everything that waits on the module (sync rows then take real images); call it before stopping the
 * loader, whose threads may be waiting. The module does it itself when it fails in sync mode. */
void module_close(module *m);
/* Stops generation promptly (between denoising steps) and frees everything; after the loader has stopped. */
void module_stop(module *m);
/* The trainer, at an iteration boundary: every snapshot_every iterations (and at iteration 0) its parameters go to
 * f_theta; never waits. Returns 1 when a snapshot was taken. */
struct network;
int module_snapshot(module *m, const struct network *trainer, int iter);
/* The module's part of the rows (rows.h) into r: its share, and no generated row before warmup iterations of this
 * run (in sync mode warmup + lookahead). */
void module_rows(const module *m, rows_opts *r);
/* sync=1: the loader numbers the rows that want a sample in sample order (j = 0, 1, ...) and row j waits for
 * sample j / reuse, which the module plans from the snapshot (parameters and confusion) the trainer took at a
 * fixed iteration before the row's batch: the same seed and settings give the same samples in the same rows. */
int module_sync(const module *m);
/* What a taken sample trains as and where it came from. */
typedef struct {
    int target;         /* its label */
    int source_class;   /* its source's class, -1 for txt2img */
    int source_index;   /* its source image's index in the training list, -1 when none or not known (the cache) */
} module_label;
int module_take_seq(module *m, uint64_t j, img_u8 *out, module_label *lab);
/* Loader threads: a generated sample as an image (resized and augmented by the caller like a real one) and its
 * label. 0, or -1 when none is ready (counted as shortfall). */
int module_take(module *m, img_u8 *out, module_label *lab);
void module_get_stats(module *m, module_stats *st);
/* 1 once generation failed (an engine error, no sample to serve, no usable source for any target), with the
 * module's message in err_msg() and the trainer's iteration then in *iter (may be NULL); else 0. A sync run must
 * stop (rows after the failure took real images in place of theirs); otherwise training went on without samples. */
int module_failed(module *m, int *iter);

#endif
