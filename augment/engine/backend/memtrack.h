/* Byte counts of a backend's memory by kind, with the size of each live block (a block's size is not known when
 * it is freed) and the peak. Both backends use it for the memory report (ops_mem); the CUDA backend also asks it
 * which pointers are reduced-precision weights. One thread at a time, as the backend. */
#ifndef GENIE_MEMTRACK_H
#define GENIE_MEMTRACK_H
#include <stddef.h>

enum mt_kind { MT_BUFFER, MT_WEIGHT, MT_WEIGHT_HALF, MT_HOST, MT_KINDS };

typedef struct {
    const void *p;
    size_t bytes;
    int kind;
} mt_block;

typedef struct {
    mt_block *b;                /* sorted by address */
    size_t n, cap;
    size_t bytes[MT_KINDS];
    size_t peak;                /* most buffer + weight bytes at once (host staging apart) */
} memtrack;

/* Records a block: 0, or -1 + err_msg() when the table cannot grow. */
int mt_add(memtrack *t, const void *p, size_t bytes, int kind);
/* Forgets the block at p; its kind, or -1 when p is not recorded. */
int mt_remove(memtrack *t, const void *p);
/* The kind of the block starting at p, or -1. */
int mt_kind(const memtrack *t, const void *p);
void mt_free(memtrack *t);

#endif
