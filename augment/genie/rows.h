/* Which rows of a training run take what: the one rule that the loader (which fills the rows) and the online GeNIe
 * module (which, with sync=1, makes the samples for them in row order) both ask.
 *
 * Pure: row k's kind (k is the sample number of the run, iteration i's rows are i * batch ... i * batch + batch - 1
 * counted from the run's start) depends on the options and k alone, each draw a Philox stream keyed by (seed, k),
 * so threads, timing and the thread count never change it. */
#ifndef GENIE_ROWS_H
#define GENIE_ROWS_H
#include <stdint.h>

#include "common/philox.h"

typedef struct {
    uint64_t seed;
    double tail_share;          /* rows drawn class-balanced from the Few classes (0: none) */
    int tail_classes;           /* Few classes with a sample: without one no row is a tail row */
    double pair_source;         /* row pairs (2j, 2j+1) that show a generated sample's source beside it */
    /* online GeNIe: rows taking a generated sample, share of the tail rows when tail_share > 0 (then only those:
     * generated samples enter through the tail rows, as in the offline recipe), else of every row; none before
     * first_generated (the module's warmup) */
    double share;
    uint64_t first_generated;
} rows_opts;

enum {
    ROW_TAIL = 1,               /* drawn from a Few class (its real or offline generated samples) */
    ROW_GENERATED = 2,          /* takes an online generated sample */
    ROW_PAIR_SOURCE = 4,        /* when the other row of its pair holds a generated sample with a known source, this
                                 * row shows that source (the same for both rows of a pair) */
};

/* Row k's kind: ROW_* bits; 0 is a real row of the sampling order. */
unsigned rows_kind(const rows_opts *o, uint64_t k);
/* The first row in [from, limit) that takes an online generated sample, or limit. */
uint64_t rows_next_generated(const rows_opts *o, uint64_t from, uint64_t limit);
/* The stream that drew whether row k is a tail row, just after that draw: a tail row's class and image come next. */
void rows_tail_stream(const rows_opts *o, uint64_t k, philox_t *g);

#endif
