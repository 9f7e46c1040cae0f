/* The loader pool: persistent threads that decode and augment whole batches into a ring of pre-allocated
 * slots, in batch order, while the trainer trains on an earlier slot.
 *
 * A batch's content depends only on (seed, batch number): sample k of the run is image order(k) augmented by
 * the Philox stream (seed, k), so the thread count never changes what the network sees. */
#ifndef GENIE_LOADER_H
#define GENIE_LOADER_H
#include <signal.h>
#include <stdint.h>

#include "augment/genie/rows.h"
#include "src/train/dataset.h"
#include "src/net/transform.h"

enum sampling {
    SAMPLE_SHUFFLE,     /* epoch-wise permutation without replacement (default) */
    SAMPLE_REPLACE,     /* uniform with replacement, as darknet's get_random_paths */
    SAMPLE_BALANCED,    /* class uniform, then an image of that class */
    SAMPLE_SEQUENTIAL,  /* the list in order, one pass, last batch partial (validation) */
};

typedef struct {
    const dataset *ds;
    aug_params aug;
    aug_params gen_aug;          /* generated samples (offline and online); all zero: as aug */
    aug_params tail_aug;         /* real images in the tail rows (tail_share); all zero: as aug */
    int batch, threads, slots;   /* slots: batches in the ring (0: threads + 2) */
    uint64_t seed;
    uint64_t start;              /* first sample number (resume: the network's seen counter) */
    enum sampling sampling;
    int mixup, cutmix;           /* AlexeyAB's [net] keys: each sample mixed with probability 0.5 */
    float label_smooth;          /* label_smooth_eps */
    /* generated samples (dataset rows from n_real on) and the recipe of the .data keys (dataset.h) */
    double tail_share;           /* rows drawn class-balanced from the Few classes (real + generated) */
    double gen_share;            /* a tail row takes a generated sample with this probability (0: uniformly over the
                                  * class's real and generated samples) */
    double gen_soft;             /* generated sample's label: 1 - gen_soft on its target, gen_soft on its source */
    double roundtrip_p;          /* a real image is replaced by its VAE round trip (ds->alt) with this probability */
    double pair_source;          /* rows 2j and 2j+1: when one draws a generated sample and the other a real image,
                                  * the real row shows the sample's source instead, with this probability */
    struct module *genie;        /* optional: online GeNIe; its rows (rows.h: its share, after its warmup) take a
                                  * generated sample */
    volatile sig_atomic_t *cancel; /* optional: once non-zero (a signal handler sets it), loader_next stops waiting
                                    * and returns NULL, and loader_stop waits for stuck workers only briefly */
} loader_opts;

typedef struct {
    float *x, *y;                /* rows of w*h*c and classes floats */
    int n;                       /* rows filled (< batch only for the last SEQUENTIAL batch) */
    int *index;                  /* dataset index of each row (after any bad-image replacement) */
    int *truth;                  /* the class of each row for training statistics; -1 for a row whose label is not
                                  * one real sample's (mixup/cutmix, generated), which would feed back into GeNIe */
    uint64_t number;             /* batch number since start */
} loader_batch;

typedef struct {
    uint64_t images, bad_images, replaced;
    double wait_s;               /* time loader_next spent blocked */
    /* rows of the batches loader_next returned that asked for a generated sample: served one, and short (a real
     * image instead). Batches filled ahead count once taken, so a sync run's counts are the same every time. */
    uint64_t gen_served, gen_short;
} loader_stats;

typedef struct loader loader;

loader *loader_start(const loader_opts *o);
/* Batches the loader may fill ahead of the one being trained on (its ring of slots). */
int loader_lookahead(const loader_opts *o);
/* The next batch in order; blocks until it is ready. Returns NULL at the end of a SEQUENTIAL pass, or NULL with
 * err_msg() set when the data cannot be read at all (every replacement of a bad image failed). */
const loader_batch *loader_next(loader *l);
/* Hands the batch's slot back for refilling. */
void loader_release(loader *l, const loader_batch *b);
void loader_get_stats(loader *l, loader_stats *s);
int loader_failed(loader *l);
void loader_stop(loader *l);

/* The dataset index of sample number k under opts' sampling, without bad-image replacement. */
int loader_sample_index(const loader_opts *o, uint64_t k);
/* What the rows of opts are (augment/genie/rows.h) before online GeNIe's part: seed, tail share and classes,
 * pair_source; the trainer gives the module the same, so both ask one rule. */
void loader_rows(const loader_opts *o, rows_opts *r);

#endif
