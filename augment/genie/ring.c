#include "augment/genie/ring.h"
#include "common/err.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { SLOT_EMPTY, SLOT_WRITING, SLOT_READY, SLOT_DRAINING };

typedef struct {
    int state;
    int readers;      /* takes copying the image out right now: the slot is not rewritten under them */
    ring_meta meta;
    unsigned char *img;
} slot;

struct ring {
    pthread_mutex_t mu;
    pthread_cond_t changed;
    int n, reuse, sync, closed;
    size_t bytes;
    slot *s;
    uint64_t next_seq;
    ring_stats st;
};

ring *ring_create(int slots, size_t image_bytes, int reuse, int sync)
{
    if (slots < 1 || image_bytes < 1 || reuse < 1) {
        err_set("ring: %d slots of %zu bytes, reuse %d: each must be at least 1", slots, image_bytes, reuse);
        return NULL;
    }
    ring *r = calloc(1, sizeof *r);
    if (r) r->s = calloc((size_t)slots, sizeof *r->s);
    for (int i = 0; r && r->s && i < slots; i++)
        if (!(r->s[i].img = malloc(image_bytes))) break;
    if (!r || !r->s || !r->s[slots - 1].img) {
        for (int i = 0; r && r->s && i < slots; i++) free(r->s[i].img);
        if (r) free(r->s);
        free(r);
        err_set("ring: out of memory for %d samples of %zu bytes", slots, image_bytes);
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->changed, NULL);
    r->n = slots;
    r->bytes = image_bytes;
    r->reuse = reuse;
    r->sync = sync;
    return r;
}

void ring_free(ring *r)
{
    if (!r) return;
    for (int i = 0; i < r->n; i++) free(r->s[i].img);
    free(r->s);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->changed);
    free(r);
}

/* Default mode: an empty slot, else the ready one to evict (most used, then oldest); -1 when every slot is being
 * read at this moment. */
static int put_slot(ring *r)
{
    int best = -1;
    for (int i = 0; i < r->n; i++) {
        const slot *s = &r->s[i];
        if (s->state == SLOT_EMPTY) return i;
        if (s->state != SLOT_READY || s->readers) continue;
        const slot *b = best < 0 ? NULL : &r->s[best];
        if (!b || s->meta.uses > b->meta.uses || (s->meta.uses == b->meta.uses && s->meta.seq < b->meta.seq))
            best = i;
    }
    return best;
}

uint64_t ring_put(ring *r, const void *img, const ring_meta *meta)
{
    pthread_mutex_lock(&r->mu);
    uint64_t seq = r->next_seq++;
    int i;
    if (r->sync) {
        i = (int)(seq % (uint64_t)r->n);
        while (r->s[i].state != SLOT_EMPTY && !r->closed) pthread_cond_wait(&r->changed, &r->mu);
        if (r->closed) {
            pthread_mutex_unlock(&r->mu);
            return UINT64_MAX;
        }
    } else if ((i = put_slot(r)) < 0) {
        /* every slot is being copied out: the new sample is the one dropped */
        r->st.produced++;
        r->st.evicted++;
        pthread_mutex_unlock(&r->mu);
        return seq;
    } else if (r->s[i].state == SLOT_READY) {
        r->st.ready--;
        if (r->s[i].meta.uses < r->reuse) r->st.evicted++;
    }
    slot *s = &r->s[i];
    s->state = SLOT_WRITING;
    pthread_mutex_unlock(&r->mu);

    memcpy(s->img, img, r->bytes);

    pthread_mutex_lock(&r->mu);
    s->meta = *meta;
    s->meta.seq = seq;
    s->meta.uses = 0;
    s->state = SLOT_READY;
    r->st.produced++;
    r->st.ready++;
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->mu);
    return seq;
}

/* Called with the lock held on a ready slot: counts the use, copies the image out without the lock. */
static void take_from(ring *r, slot *s, void *img, ring_meta *meta)
{
    s->meta.uses++;
    *meta = s->meta;
    if (s->meta.uses >= r->reuse) {
        s->state = SLOT_DRAINING;   /* no further takes; empty once the copies in flight are done */
        r->st.ready--;
    }
    s->readers++;
    r->st.taken++;
    pthread_mutex_unlock(&r->mu);

    memcpy(img, s->img, r->bytes);

    pthread_mutex_lock(&r->mu);
    if (--s->readers == 0 && s->state == SLOT_DRAINING) {
        s->state = SLOT_EMPTY;
        pthread_cond_broadcast(&r->changed);
    }
    pthread_mutex_unlock(&r->mu);
}

int ring_take(ring *r, void *img, ring_meta *meta)
{
    pthread_mutex_lock(&r->mu);
    slot *best = NULL;
    for (int i = 0; i < r->n; i++) {
        slot *s = &r->s[i];
        if (s->state != SLOT_READY) continue;
        if (!best || s->meta.uses < best->meta.uses || (s->meta.uses == best->meta.uses && s->meta.seq < best->meta.seq))
            best = s;
    }
    if (!best) {
        r->st.shortfall++;
        pthread_mutex_unlock(&r->mu);
        return -1;
    }
    take_from(r, best, img, meta);
    return 0;
}

int ring_take_seq(ring *r, uint64_t seq, void *img, ring_meta *meta)
{
    pthread_mutex_lock(&r->mu);
    slot *s = &r->s[seq % (uint64_t)r->n];
    while (!(s->state == SLOT_READY && s->meta.seq == seq) && !r->closed) pthread_cond_wait(&r->changed, &r->mu);
    if (!(s->state == SLOT_READY && s->meta.seq == seq)) {
        pthread_mutex_unlock(&r->mu);
        return -1;
    }
    take_from(r, s, img, meta);
    return 0;
}

void ring_close(ring *r)
{
    pthread_mutex_lock(&r->mu);
    r->closed = 1;
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->mu);
}

void ring_get_stats(ring *r, ring_stats *st)
{
    pthread_mutex_lock(&r->mu);
    *st = r->st;
    pthread_mutex_unlock(&r->mu);
}
