#include "common/font.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/err.h"
#include "common/imgio.h"

#define FIRST 32
#define LAST 126

struct font {
    img_u8 g[LAST - FIRST + 1];
    int height;
};

font *font_load(const char *dir, int size)
{
    font *f = calloc(1, sizeof *f);
    if (!f) {
        err_set("font: out of memory");
        return NULL;
    }
    char path[1200];
    for (int c = FIRST; c <= LAST; c++) {
        snprintf(path, sizeof path, "%s/%d_%d.png", dir, c, size);
        if (imgio_load(path, 0, 0, &f->g[c - FIRST])) {
            font_free(f);
            return NULL;
        }
        if (f->g[c - FIRST].h > f->height) f->height = f->g[c - FIRST].h;
    }
    return f;
}

void font_free(font *f)
{
    if (!f) return;
    for (int c = FIRST; c <= LAST; c++) imgio_free(&f->g[c - FIRST]);
    free(f);
}

int font_height(const font *f) { return f->height; }

static const img_u8 *glyph(const font *f, char ch)
{
    unsigned char c = (unsigned char)ch;
    return &f->g[(c >= FIRST && c <= LAST ? c : '?') - FIRST];
}

/* darknet lays its glyphs out overlapping by one column (tile_images with -1 at size 0) */
int font_width(const font *f, const char *text)
{
    int w = 0;
    for (const char *p = text; *p; p++) w += glyph(f, *p)->w - 1;
    return w > 0 ? w + 1 : 0;
}

void font_draw(const font *f, unsigned char *rgb, int w, int h, int x, int y, const char *text)
{
    for (const char *p = text; *p; p++) {
        const img_u8 *g = glyph(f, *p);
        for (int gy = 0; gy < g->h; gy++)
            for (int gx = 0; gx < g->w; gx++) {
                int px = x + gx, py = y + gy;
                if (px < 0 || py < 0 || px >= w || py >= h) continue;
                for (int k = 0; k < 3; k++) {
                    unsigned char v = g->rgb[((size_t)gy * g->w + gx) * 3 + k], *d = rgb + ((size_t)py * w + px) * 3 + k;
                    if (v < *d) *d = v;
                }
            }
        x += g->w - 1;
    }
}
