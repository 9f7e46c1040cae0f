/* Text on images, in darknet's own alphabet: the glyph PNGs the darknet package installs for its detection
 * labels (data/labels/<char>_<size>.png, dark ink on white), size 0 (about 9 x 11 pixels a character). */
#ifndef GENIE_FONT_H
#define GENIE_FONT_H

#define FONT_DARKNET_DIR "/usr/share/darknet/data/labels"

typedef struct font font;

/* Printable ASCII glyphs of the given size from dir; NULL + err_msg() naming the file that is missing or bad. */
font *font_load(const char *dir, int size);
void font_free(font *f);
int font_height(const font *f);
/* Width in pixels of text as font_draw lays it out (characters outside printable ASCII draw as '?'). */
int font_width(const font *f, const char *text);
/* Darkens interleaved RGB (w x h) with text's ink, its top-left corner at (x, y); clipped at the edges. */
void font_draw(const font *f, unsigned char *rgb, int w, int h, int x, int y, const char *text);

#endif
