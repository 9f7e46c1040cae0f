/* Source images to the engine's size: separable resampling, area averaging where an axis shrinks, bilinear
 * (half-pixel centres) where it grows. */
#include "common/resample.h"
#include <math.h>
#include <stdlib.h>
#include "common/err.h"

/* One axis: out[i * ostride], i < dn, from in[j * istride], j < sn; area averaging where the axis shrinks,
 * bilinear (half-pixel centres) where it grows. */
static void resample_axis(const float *in, size_t istride, int sn, float *out, size_t ostride, int dn)
{
    for (int i = 0; i < dn; i++) {
        float v = 0;
        if (sn > dn) {
            double a = (double)i * sn / dn, b = (double)(i + 1) * sn / dn, wsum = 0;
            for (int j = (int)a; j < sn && j < b; j++) {
                double wgt = fmin(b, j + 1) - fmax(a, j);
                v += wgt * in[j * istride];
                wsum += wgt;
            }
            v /= wsum;
        } else {
            double f = (i + 0.5) * sn / dn - 0.5;
            int j0 = (int)floor(f);
            double t = f - j0;
            int ja = j0 < 0 ? 0 : j0, jb = j0 + 1 >= sn ? sn - 1 : j0 + 1;
            v = (1 - t) * in[ja * istride] + t * in[jb * istride];
        }
        out[i * ostride] = v;
    }
}

/* Resamples interleaved RGB u8 (sw x sh) to planar float [3, dh, dw] in [0,1], one axis at a time. */
int resample_to_planar(const img_u8 *src, int dw, int dh, float *dst)
{
    const int sw = src->w, sh = src->h;
    const size_t nin = 3 * (size_t)sw * sh, nrows = 3 * (size_t)dw * sh, plane = (size_t)dw * dh;
    float *in = malloc(sizeof(float) * (nin + nrows + 3 * plane));
    if (!in) return err_set("out of memory resampling a %dx%d image to %dx%d", sw, sh, dw, dh);
    float *rows = in + nin, *out = rows + nrows; /* interleaved [sh][dw][3], then [dh][dw][3] */
    for (size_t i = 0; i < nin; i++) in[i] = src->rgb[i];
    for (int y = 0; y < sh; y++)
        for (int c = 0; c < 3; c++)
            resample_axis(in + (size_t)y * sw * 3 + c, 3, sw, rows + (size_t)y * dw * 3 + c, 3, dw);
    for (int x = 0; x < dw; x++)
        for (int c = 0; c < 3; c++)
            resample_axis(rows + (size_t)x * 3 + c, 3 * (size_t)dw, sh, out + (size_t)x * 3 + c, 3 * (size_t)dw, dh);
    for (size_t p = 0; p < plane; p++)
        for (int c = 0; c < 3; c++) dst[c * plane + p] = out[p * 3 + c] / 255.0f;
    free(in);
    return 0;
}

