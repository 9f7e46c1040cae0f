/* Per-sample augmentation: decoded RGB bytes in, a planar float image of the network's size out.
 * All randomness comes from the sample's own Philox stream, so a sample looks the same whichever thread makes it. */
#ifndef GENIE_TRANSFORM_H
#define GENIE_TRANSFORM_H
#include "common/imgio.h"
#include "common/philox.h"

enum aug_preset {
    AUG_EVAL,       /* no randomness: shorter side resized to the net size, centre crop (darknet's valid) */
    AUG_DARKNET,    /* darknet's random_augment_image + flip + random_distort_image, from the [net] keys */
    AUG_WEAK,       /* RandomResizedCrop(scale crop_scale..1, ratio 3/4..4/3) + flip */
    AUG_STRONG,     /* weak + colour jitter (p 0.8) + grayscale (p 0.2) + Gaussian blur (p 0.5) */
};

/* crop_scale= unset: the smallest share of the area a weak or strong resized crop keeps */
#define AUG_CROP_SCALE 0.2f

typedef struct {
    enum aug_preset preset;
    int w, h, c;                 /* output size; c is 1 (luma) or 3 (RGB) */
    /* darknet [net] keys, same meaning as darknet */
    int min_crop, max_crop;      /* shorter side scaled to a random size in [min_crop, max_crop] */
    float angle, aspect, hue, saturation, exposure;
    int flip;                    /* horizontal flip with probability 0.5 */
    float crop_scale;            /* weak/strong: the smallest share of the area a resized crop keeps (0:
                                    AUG_CROP_SCALE) */
} aug_params;

/* Writes c*h*w floats in [0,1], planar, into out. tmp holds at least 4*w*h floats of scratch. */
void transform_sample(const aug_params *p, const img_u8 *src, philox_t *rng, float *out, float *tmp);

/* darknet's distort_image on a planar RGB image of n pixels: hue shift (wrapping), saturation and value scale. */
void transform_distort_hsv(float *im, size_t n, float dhue, float dsat, float dexp);

/* The smallest decode size that loses no detail for this augmentation (lets JPEG decode at 1/2..1/8 scale). */
void transform_min_decode(const aug_params *p, int *min_w, int *min_h);

#endif
