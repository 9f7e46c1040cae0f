#include "augment/genie/rows.h"

void rows_tail_stream(const rows_opts *o, uint64_t k, philox_t *g)
{
    philox_init(g, o->seed, philox_mix(k, PHILOX_TAIL));
    (void)philox_uniform(g);
}

static int tail(const rows_opts *o, uint64_t k)
{
    if (!(o->tail_share > 0) || o->tail_classes < 1) return 0;
    philox_t g;
    philox_init(&g, o->seed, philox_mix(k, PHILOX_TAIL));
    return philox_uniform(&g) < o->tail_share;
}

/* whether row k takes a generated sample, given whether it is a tail row */
static int generated(const rows_opts *o, uint64_t k, int is_tail)
{
    if (!(o->share > 0) || k < o->first_generated || (o->tail_share > 0 && !is_tail)) return 0;
    uint32_t w[4];
    philox_block(o->seed, philox_mix(k, PHILOX_GENERATED_ROW), 0, w);
    return w[0] * (1.0 / 4294967296.0) < o->share;
}

unsigned rows_kind(const rows_opts *o, uint64_t k)
{
    int t = tail(o, k);
    unsigned kind = t ? ROW_TAIL : 0;
    if (generated(o, k, t)) kind |= ROW_GENERATED;
    if (o->pair_source > 0) {
        philox_t g;
        philox_init(&g, o->seed, philox_mix(k >> 1, PHILOX_PAIR));
        if (philox_uniform(&g) < o->pair_source) kind |= ROW_PAIR_SOURCE;
    }
    return kind;
}

uint64_t rows_next_generated(const rows_opts *o, uint64_t from, uint64_t limit)
{
    /* no row at all: without a share, or with a tail share and no tail */
    if (!(o->share > 0) || (o->tail_share > 0 && o->tail_classes < 1)) return limit;
    if (from < o->first_generated) from = o->first_generated;
    for (uint64_t k = from; k < limit; k++)
        if (generated(o, k, tail(o, k))) return k;
    return limit;
}
