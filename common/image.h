/* Images in memory: source images resampled to the engine's planar float layout, planar float back to 8-bit
 * RGB, and labelled grids of tiles (the sweep strip, the online module's inspection grid). */
#ifndef GENIE_IMAGE_H
#define GENIE_IMAGE_H
#include "common/font.h"
#include "common/imgio.h"

/* Interleaved RGB u8 (any size) to planar float [3, dh, dw] in [0,1]: area averaging where an axis shrinks,
 * bilinear (half-pixel centres, as torch's interpolate with align_corners=False) where it grows. 0, or -1 +
 * err_msg() when out of memory. */
int image_to_planar(const img_u8 *src, int dw, int dh, float *dst);

/* Planar float [3, h, w] in [0,1] -> interleaved 8-bit RGB, clamped, rounded half to even (as numpy), into rgb
 * whose rows are stride pixels apart (w for an image of its own, wider to place it in a canvas). */
void image_from_planar(const float *planar, int w, int h, unsigned char *rgb, int stride);

/* A grid of rows x cols tiles, each interleaved RGB tile_w x tile_h, gap white pixels between tiles and between
 * rows, on white. With a font, labels in darknet's alphabet:
 *   IMAGE_LABEL_ABOVE: labels[r * cols + c] centred in a band of font height + 2 above each tile (left-aligned
 *                      where wider than the tile);
 *   IMAGE_LABEL_RIGHT: labels[r] in a column right of the row, 4 pixels after the last tile, centred on the
 *                      tile height, 2 pixels of margin after the widest.
 * A NULL label or font draws none (and a grid with no label takes no room for them). */
enum image_label_pos { IMAGE_LABEL_ABOVE, IMAGE_LABEL_RIGHT };
typedef struct {
    int rows, cols, tile_w, tile_h, gap;
    const font *font;
    enum image_label_pos label_pos;
} image_grid;

/* The grid of tiles[r * cols + c] (NULL: left white) with its labels (may be NULL): a malloc'd interleaved RGB
 * canvas of *w x *h, or NULL + err_msg() when out of memory. */
unsigned char *image_grid_build(const image_grid *g, const unsigned char *const *tiles, const char *const *labels,
                                int *w, int *h);

#endif
