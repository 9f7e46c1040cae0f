#include "augment/engine/backend/memtrack.h"
#include <stdlib.h>
#include <string.h>
#include "common/err.h"

/* the first index whose address is >= p */
static size_t lower(const memtrack *t, const void *p)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if ((const char *)t->b[mid].p < (const char *)p) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

int mt_add(memtrack *t, const void *p, size_t bytes, int kind)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 256;
        mt_block *b = realloc(t->b, cap * sizeof *b);
        if (!b) return err_set("memory tracking: out of memory");
        t->b = b;
        t->cap = cap;
    }
    size_t i = lower(t, p);
    memmove(t->b + i + 1, t->b + i, (t->n - i) * sizeof *t->b);
    t->b[i] = (mt_block){p, bytes, kind};
    t->n++;
    t->bytes[kind] += bytes;
    size_t dev = t->bytes[MT_BUFFER] + t->bytes[MT_WEIGHT] + t->bytes[MT_WEIGHT_HALF];
    if (dev > t->peak) t->peak = dev;
    return 0;
}

int mt_remove(memtrack *t, const void *p)
{
    size_t i = lower(t, p);
    if (i == t->n || t->b[i].p != p) return -1;
    int kind = t->b[i].kind;
    t->bytes[kind] -= t->b[i].bytes;
    memmove(t->b + i, t->b + i + 1, (t->n - i - 1) * sizeof *t->b);
    t->n--;
    return kind;
}

int mt_kind(const memtrack *t, const void *p)
{
    size_t i = lower(t, p);
    return i < t->n && t->b[i].p == p ? t->b[i].kind : -1;
}

void mt_free(memtrack *t)
{
    free(t->b);
    memset(t, 0, sizeof *t);
}
