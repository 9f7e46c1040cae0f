/* The online module's cache: a directory of kept samples (PNGs) reused across runs, described by index.csv in the
 * format of augment/genie/genindex.h (output is the PNG's name in the directory).
 *
 * The index describes exactly the PNGs beside it, also after a run killed at any moment: an image is written
 * (atomically) before its line is appended, and opening repairs what a stopped run leaves: a last line cut short,
 * lines whose PNG is missing or damaged, and PNGs (or temporary files) of the cache's own naming that no line
 * names, each dropped with a message. Names carry a number that continues from the index (never reused, whatever
 * the settings), the settings fingerprint and the target. One run at a time: opening takes the index's lock
 * (genindex_lock), a second run sharing the directory is refused naming the holder's pid. */
#ifndef GENIE_CACHE_H
#define GENIE_CACHE_H
#include <stdint.h>

typedef struct cache cache;

typedef struct {
    const char *dir;
    unsigned settings;                 /* the fingerprint of what makes a cached sample reusable */
    char *const *labels;
    int classes;
    int W, H;                          /* the model's image size */
    /* called for each usable sample made with these settings, in index order: 0 to go on, -1 (err_msg() set)
     * to stop opening with that error */
    int (*take)(void *ctx, const unsigned char *rgb, int target, int source_class);
    void *ctx;
} cache_opts;

/* Opens (creating the directory), locks and repairs the cache, handing its usable samples to take. NULL with
 * err_msg() (a lock held by another run, an index that is not a regular file or not of this format). */
cache *cache_open(const cache_opts *o);
/* A kept sample (W x H x 3) into the cache: its PNG, then its index line. -1 with err_msg(): the sample is not
 * cached (training goes on). source: the source image's path or NULL; source_class -1 when none; gaps as
 * genindex.h has them ("" when none). */
int cache_add(cache *c, const unsigned char *rgb, int target, const char *source, int source_class, double r,
              uint64_t seed, const char *gaps);
void cache_close(cache *c);

#endif
