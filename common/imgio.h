/* Image files in and out: JPEG through TurboJPEG (with DCT scaling), PNG through libpng.
 * Every image comes back as interleaved 8-bit RGB, whatever it was on disk (gray, CMYK, palette, alpha, 16-bit). */
#ifndef GENIE_IMGIO_H
#define GENIE_IMGIO_H
#include <stddef.h>

typedef struct {
    int w, h;
    unsigned char *rgb;         /* w*h*3, interleaved, malloc'd (or owned by the caller's buffer) */
    size_t cap;                 /* bytes allocated at rgb, so a buffer can be reused without malloc */
    unsigned char *file;        /* imgio_load's buffer for the compressed bytes, reused likewise */
    size_t file_cap;
} img_u8;

/* Decodes path into out, reusing out->rgb when it is big enough. With min_w/min_h > 0 a JPEG may be decoded
 * at 1/2, 1/4 or 1/8 scale as long as the result stays at least min_w x min_h. Returns 0, or -1 with err_msg()
 * naming the file and the problem (missing, empty, truncated, corrupt, absurd dimensions, unknown format). */
int imgio_load(const char *path, int min_w, int min_h, img_u8 *out);
/* The same for a network that sees luma only: a JPEG is decoded straight to its Y plane (no chroma upsampling
 * or colour conversion, the costliest part of a colour decode) and given back with R = G = B = Y; other
 * formats as imgio_load. */
int imgio_load_luma(const char *path, int min_w, int min_h, img_u8 *out);
/* Same, from memory; name is only used in messages. */
int imgio_decode(const unsigned char *buf, size_t len, const char *name, int min_w, int min_h, img_u8 *out);
/* Images of more pixels than this are refused as bad images (default: 4096 x 4096, which holds every image of
 * common training sets; a flipped header bit must not become a gigabyte allocation in a loader thread). Set it
 * before any thread decodes; <= 0 restores the default. */
#define IMGIO_DEFAULT_MAX_PIXELS (4096LL * 4096)
void imgio_set_max_pixels(long long n);
long long imgio_max_pixels(void);
/* Frees both buffers; img can be reused afterwards. */
void imgio_free(img_u8 *img);

/* Writes interleaved RGB as PNG (or JPEG at the given quality when the path ends in .jpg/.jpeg) through a
 * temporary file and a rename. */
int imgio_write(const char *path, const unsigned char *rgb, int w, int h, int quality);

#endif
