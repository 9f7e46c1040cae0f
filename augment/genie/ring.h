/* The ring of generated samples between the GeNIe module (the one producer) and the loader threads (consumers).
 *
 * Pre-allocated: `slots` samples of `image_bytes` bytes each (an image in whatever layout the two sides agree
 * on), never resized. Neither side ever waits on the other
 * in the default mode: the producer evicts when every slot holds a sample (the most used first, then the oldest),
 * and a consumer that finds nothing ready gets -1 and the shortfall is counted; images are copied in and out
 * outside the lock, so a slow copy of a big image never holds the other threads. A sample retires after `reuse`
 * takes.
 *
 * Sync mode (deterministic runs): sample number q always lives in slot q % slots; ring_put waits until that slot
 * has served its previous sample `reuse` times, and ring_take_seq(q) waits until sample q is there. Which sample a
 * loader row gets then depends on the row alone, never on timing. */
#ifndef GENIE_RING_H
#define GENIE_RING_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int target;          /* the label the sample trains as */
    int source_class;    /* the source image's class, -1 for txt2img */
    int source_index;    /* the source image's index in the training list, -1 for txt2img */
    float r;             /* the noise ratio it was made at */
    int snapshot_iter;   /* the trainer iteration of the backbone snapshot that chose r (Ada), else -1 */
    uint64_t seq;        /* production number, set by ring_put */
    int uses;            /* takes so far, including this one (set by the take) */
} ring_meta;

typedef struct {
    uint64_t produced, taken, shortfall;
    uint64_t evicted;        /* samples dropped before their last use */
    int ready;               /* samples in the ring now */
} ring_stats;

typedef struct ring ring;

/* NULL with err_msg() on bad sizes or no memory. */
ring *ring_create(int slots, size_t image_bytes, int reuse, int sync);
void ring_free(ring *r);

/* Copies image_bytes of img and meta in; returns the sample's number. Never blocks in the default mode (evicts instead); in sync
 * mode waits for its slot and returns UINT64_MAX if the ring is closed meanwhile. */
uint64_t ring_put(ring *r, const void *img, const ring_meta *meta);
/* Default mode: copies a ready sample out (the least used, then the oldest) and counts the use. 0, or -1 when
 * none is ready (counted as a shortfall). */
int ring_take(ring *r, void *img, ring_meta *meta);
/* Sync mode: waits for sample number seq, then the same. -1 if the ring is closed first. */
int ring_take_seq(ring *r, uint64_t seq, void *img, ring_meta *meta);
/* Wakes every waiter; later waits return at once. */
void ring_close(ring *r);
void ring_get_stats(ring *r, ring_stats *st);

#endif
