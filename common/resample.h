#ifndef GENIE_RESAMPLE_H
#define GENIE_RESAMPLE_H
#include "common/imgio.h"

/* Interleaved RGB u8 (any size) to planar float [3, dh, dw] in [0,1]: area averaging where an axis shrinks,
 * bilinear (half-pixel centres, as torch's interpolate with align_corners=False) where it grows. 0, or -1 +
 * err_msg() when out of memory. */
int resample_to_planar(const img_u8 *src, int dw, int dh, float *dst);

#endif
