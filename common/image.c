#include "common/image.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
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

/* one axis at a time: rows to dw wide, then columns to dh high */
int image_to_planar(const img_u8 *src, int dw, int dh, float *dst)
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

void image_from_planar(const float *planar, int w, int h, unsigned char *rgb, int stride)
{
    const size_t plane = (size_t)w * h;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                float v = planar[c * plane + (size_t)y * w + x] * 255.0f;
                rgb[((size_t)y * stride + x) * 3 + c] = (unsigned char)nearbyintf(v < 0 ? 0 : v > 255 ? 255 : v);
            }
}

unsigned char *image_grid_build(const image_grid *g, const unsigned char *const *tiles, const char *const *labels,
                                int *w, int *h)
{
    const int above = g->label_pos == IMAGE_LABEL_ABOVE, n_labels = above ? g->rows * g->cols : g->rows;
    int widest = 0, any = 0;
    for (int i = 0; g->font && labels && i < n_labels; i++)
        if (labels[i]) {
            int lw = font_width(g->font, labels[i]);
            any = 1;
            if (lw > widest) widest = lw;
        }
    const int fh = any ? font_height(g->font) : 0, band = above && any ? fh + 2 : 0;
    const int tiles_w = g->cols * (g->tile_w + g->gap) - g->gap, row_h = band + g->tile_h;
    *w = tiles_w + (!above && widest ? widest + 6 : 0);
    *h = g->rows * (row_h + g->gap) - g->gap;
    unsigned char *img = malloc((size_t)*w * *h * 3);
    if (!img) {
        err_set("out of memory for a %dx%d grid", *w, *h);
        return NULL;
    }
    memset(img, 255, (size_t)*w * *h * 3);
    for (int r = 0; r < g->rows; r++) {
        const int y0 = r * (row_h + g->gap);
        for (int c = 0; c < g->cols; c++) {
            const int x0 = c * (g->tile_w + g->gap);
            const unsigned char *t = tiles[r * g->cols + c];
            for (int y = 0; t && y < g->tile_h; y++)
                memcpy(img + (((size_t)y0 + band + y) * *w + x0) * 3, t + (size_t)y * g->tile_w * 3,
                       (size_t)g->tile_w * 3);
            const char *l = above && any ? labels[r * g->cols + c] : NULL;
            if (l) {
                int lw = font_width(g->font, l);
                font_draw(g->font, img, *w, *h, x0 + (g->tile_w > lw ? (g->tile_w - lw) / 2 : 0), y0 + 1, l);
            }
        }
        if (!above && any && labels[r])
            font_draw(g->font, img, *w, *h, tiles_w + 4, y0 + (g->tile_h - fh) / 2, labels[r]);
    }
    return img;
}
