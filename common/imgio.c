#include "common/imgio.h"
#include "common/err.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <png.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

/* Beyond this an image is treated as corrupt rather than decoded: a flipped bit in a header must not become a
 * multi-gigabyte allocation inside a loader thread. */
#define IMGIO_MAX_SIDE 32768
/* The pixel limit (imgio_set_max_pixels); each decoding thread's buffers stay below about 4 bytes per pixel of
 * it (3 for RGB, the compressed file a little more), whatever the files are. */
static long long max_pixels = IMGIO_DEFAULT_MAX_PIXELS;

void imgio_set_max_pixels(long long n) { max_pixels = n > 0 ? n : IMGIO_DEFAULT_MAX_PIXELS; }
long long imgio_max_pixels(void) { return max_pixels; }

static long long max_file_bytes(void) { return 4 * max_pixels + (1 << 20); }

/* One TurboJPEG handle per thread, made on first use: handles are not thread-safe, and creating one per image
 * costs more than decoding a 28x28 JPEG. */
static pthread_key_t tj_key;
static pthread_once_t tj_once = PTHREAD_ONCE_INIT;

static void tj_destroy(void *h) { tjDestroy(h); }
static void tj_key_make(void) { pthread_key_create(&tj_key, tj_destroy); }

static tjhandle tj_decompressor(void)
{
    pthread_once(&tj_once, tj_key_make);
    tjhandle h = pthread_getspecific(tj_key);
    if (!h) {
        h = tjInitDecompress();
        if (h) pthread_setspecific(tj_key, h);
    }
    return h;
}

static int reserve(img_u8 *out, int w, int h)
{
    size_t need = (size_t)w * h * 3;
    if (out->cap < need) {
        unsigned char *p = realloc(out->rgb, need);
        if (!p) return err_set("out of memory for a %dx%d image", w, h);
        out->rgb = p;
        out->cap = need;
    }
    out->w = w;
    out->h = h;
    return 0;
}

static int check_dims(const char *name, int w, int h)
{
    if (w <= 0 || h <= 0 || w > IMGIO_MAX_SIDE || h > IMGIO_MAX_SIDE)
        return err_set("%s: absurd image dimensions %dx%d", name, w, h);
    if ((long long)w * h > max_pixels)
        return err_set("%s: %dx%d is more than the pixel limit %lld (max_pixels)", name, w, h, max_pixels);
    return 0;
}

/* After a failed decode TurboJPEG 2 can leave the handle mid-stream, so that the next, good, image fails too:
 * drop it and start the next image with a fresh one. */
static void tj_discard(tjhandle h)
{
    tjDestroy(h);
    pthread_setspecific(tj_key, NULL);
}

static int decode_jpeg_with(tjhandle tj, const unsigned char *buf, size_t len, const char *name, int min_w,
                            int min_h, int luma, img_u8 *out)
{
    /* TurboJPEG can return success on a header it could not read (a 20-byte file) without setting the outputs */
    int w = 0, h = 0, subsamp = -1, cs = -1;
    if (tjDecompressHeader3(tj, buf, len, &w, &h, &subsamp, &cs) != 0)
        return err_set("%s: corrupt JPEG header (%s)", name, tjGetErrorStr2(tj));
    if (w <= 0 || h <= 0) return err_set("%s: corrupt JPEG header (no frame size)", name);
    if (check_dims(name, w, h)) return -1;

    /* Largest reduction among 1/8, 1/4, 1/2 (the factors with SIMD IDCT) that keeps the requested size. */
    int sw = w, sh = h;
    if (min_w > 0 && min_h > 0) {
        for (int d = 8; d >= 2; d /= 2) {
            tjscalingfactor f = {1, d};
            if (TJSCALED(w, f) >= min_w && TJSCALED(h, f) >= min_h) {
                sw = TJSCALED(w, f);
                sh = TJSCALED(h, f);
                break;
            }
        }
    }
    int cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    if (cmyk) {
        /* TurboJPEG will not convert CMYK to RGB; decode the 4 channels and convert (Adobe's inverted CMYK,
         * which is what libjpeg-turbo and Photoshop write). */
        unsigned char *tmp = malloc((size_t)sw * sh * 4);
        if (!tmp) return err_set("%s: out of memory", name);
        int rc = tjDecompress2(tj, buf, len, tmp, sw, 0, sh, TJPF_CMYK, 0);
        if (rc != 0 && tjGetErrorCode(tj) != TJERR_WARNING) {
            free(tmp);
            return err_set("%s: corrupt JPEG data (%s)", name, tjGetErrorStr2(tj));
        }
        if (rc != 0) {
            free(tmp);
            return err_set("%s: truncated or damaged JPEG (%s)", name, tjGetErrorStr2(tj));
        }
        if (reserve(out, sw, sh)) {
            free(tmp);
            return -1;
        }
        for (size_t i = 0; i < (size_t)sw * sh; i++) {
            unsigned k = tmp[4 * i + 3];
            for (int c = 0; c < 3; c++)
                out->rgb[3 * i + c] = (unsigned char)((tmp[4 * i + c] * k + 127) / 255);
        }
        free(tmp);
        return 0;
    }
    if (reserve(out, sw, sh)) return -1;
    /* A warning (premature end of data) still fills the buffer with grey: for training that is a corrupt
     * sample, not a usable one. */
    if (tjDecompress2(tj, buf, len, out->rgb, sw, 0, sh, luma ? TJPF_GRAY : TJPF_RGB, 0) != 0)
        return err_set("%s: %s JPEG (%s)", name, tjGetErrorCode(tj) == TJERR_WARNING ? "truncated or damaged" : "corrupt",
                       tjGetErrorStr2(tj));
    /* luma: the decoder's Y plane (no chroma upsampling or colour conversion), spread to R = G = B from the end
     * so the buffer can be expanded in place */
    if (luma)
        for (size_t i = (size_t)sw * sh; i-- > 0;) {
            unsigned char y = out->rgb[i];
            out->rgb[3 * i] = out->rgb[3 * i + 1] = out->rgb[3 * i + 2] = y;
        }
    return 0;
}

static int decode_jpeg(const unsigned char *buf, size_t len, const char *name, int min_w, int min_h, int luma,
                       img_u8 *out)
{
    tjhandle tj = tj_decompressor();
    if (!tj) return err_set("%s: cannot create a JPEG decoder", name);
    int rc = decode_jpeg_with(tj, buf, len, name, min_w, min_h, luma, out);
    if (rc) tj_discard(tj);
    return rc;
}

static int decode_png(const unsigned char *buf, size_t len, const char *name, img_u8 *out)
{
    /* IHDR is the first chunk: check its dimensions before libpng allocates anything for them. */
    if (len >= 24 && memcmp(buf + 12, "IHDR", 4) == 0) {
        unsigned long w = (unsigned long)buf[16] << 24 | buf[17] << 16 | buf[18] << 8 | buf[19];
        unsigned long h = (unsigned long)buf[20] << 24 | buf[21] << 16 | buf[22] << 8 | buf[23];
        if (w > IMGIO_MAX_SIDE || h > IMGIO_MAX_SIDE)
            return err_set("%s: absurd image dimensions %lux%lu", name, w, h);
        if ((long long)(w * h) > max_pixels)
            return err_set("%s: %lux%lu is more than the pixel limit %lld (max_pixels)", name, w, h, max_pixels);
    }
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&im, buf, len))
        return err_set("%s: corrupt PNG (%s)", name, im.message);
    if (check_dims(name, (int)im.width, (int)im.height)) {
        png_image_free(&im);
        return -1;
    }
    im.format = PNG_FORMAT_RGB;
    if (reserve(out, (int)im.width, (int)im.height)) {
        png_image_free(&im);
        return -1;
    }
    if (!png_image_finish_read(&im, NULL, out->rgb, 0, NULL))
        return err_set("%s: truncated or corrupt PNG (%s)", name, im.message);
    return 0;
}

int imgio_decode(const unsigned char *buf, size_t len, const char *name, int min_w, int min_h, img_u8 *out)
{
    if (len == 0) return err_set("%s: empty file", name);
    if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF)
        return decode_jpeg(buf, len, name, min_w, min_h, 0, out);
    if (len >= 8 && png_sig_cmp(buf, 0, 8) == 0) return decode_png(buf, len, name, out);
    return err_set("%s: not a JPEG or PNG file", name);
}

/* Reads a whole file into *buf, which is reused across calls (plain read(2): no stdio buffer per file). */
static int read_file(const char *path, unsigned char **buf, size_t *cap, size_t *len)
{
    return util_read_file(path, (size_t)max_file_bytes(), "bytes the pixel limit (max_pixels) allows", buf, cap, len);
}

int imgio_load(const char *path, int min_w, int min_h, img_u8 *out)
{
    size_t len = 0;
    if (read_file(path, &out->file, &out->file_cap, &len)) return -1;
    return imgio_decode(out->file, len, path, min_w, min_h, out);
}

int imgio_load_luma(const char *path, int min_w, int min_h, img_u8 *out)
{
    size_t len = 0;
    if (read_file(path, &out->file, &out->file_cap, &len)) return -1;
    const unsigned char *b = out->file;
    if (len >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return decode_jpeg(b, len, path, min_w, min_h, 1, out);
    return imgio_decode(b, len, path, min_w, min_h, out);
}

void imgio_free(img_u8 *img)
{
    free(img->rgb);
    free(img->file);
    memset(img, 0, sizeof *img);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

int imgio_write(const char *path, const unsigned char *rgb, int w, int h, int quality)
{
    /* a temporary name of this process and call: concurrent writers of one path never share one */
    char tmp[4200];
    FILE *f = util_open_tmp(path, tmp, sizeof tmp);
    if (!f) return -1;
    int ok;
    if (ends_with(path, ".jpg") || ends_with(path, ".jpeg")) {
        tjhandle tj = tjInitCompress();
        unsigned char *jpg = NULL;
        unsigned long jlen = 0;
        ok = tj && tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &jpg, &jlen, TJSAMP_444, quality, 0) == 0 &&
             fwrite(jpg, 1, jlen, f) == jlen;
        tjFree(jpg);
        if (tj) tjDestroy(tj);
    } else {
        png_image im;
        memset(&im, 0, sizeof im);
        im.version = PNG_IMAGE_VERSION;
        im.width = (png_uint_32)w;
        im.height = (png_uint_32)h;
        im.format = PNG_FORMAT_RGB;
        ok = png_image_write_to_stdio(&im, f, 0, rgb, 0, NULL) != 0;
    }
    if (!ok) {
        fclose(f);
        unlink(tmp);
        return err_set("%s: cannot write image", path);
    }
    return util_commit(f, tmp, path);
}
