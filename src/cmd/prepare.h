/* Data set preparation: Fashion-MNIST and Fashion-MNIST-LT in darknet layout. */
#ifndef GENIE_PREPARE_H
#define GENIE_PREPARE_H
#include <stdint.h>

#define FMNIST_CLASSES 10
extern const char *const fmnist_classes[FMNIST_CLASSES];

/* Writes OUTDIR/images, the train/test/labels lists and lt/train.list. */
int prepare_fmnist(const char *outdir, uint64_t seed);
/* Another Fashion-MNIST-LT split: OUTDIR/train.list cut from FROM/train.list (a prepared fmnist folder) with the
 * LT profile; the seed decides which class gets which count (seed 1 is FROM/lt/train.list's split). */
int prepare_fmnist_lt(const char *from, const char *outdir, uint64_t seed);
/* n photo-sized JPEGs (w x h, quality) made from FROM's training images (upscaled, tinted, noisy), with
 * OUTDIR/train.list: the bench's stand-in for ImageNet-like files, nothing downloaded. */
int prepare_big_jpegs(const char *from, const char *outdir, int n, int w, int h, int quality, uint64_t seed);
/* Images per class of the LT profile, largest first (1280 ... 5). */
void prepare_lt_counts(int *counts);
#endif
