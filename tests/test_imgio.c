/* Image decoding against Pillow-made fixtures (tests/fixtures/images, scripts/make_image_fixtures.py), DCT
 * scaling, PNG/JPEG writing, and every kind of bad file. */
#include "tests/check.h"
#include "common/err.h"
#include "common/imgio.h"

#include <glob.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define DIR "tests/fixtures/images/"

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len + 1);
    if (fread(b, 1, *len, f) != *len) *len = 0;
    fclose(f);
    return b;
}

static int max_diff(const unsigned char *a, const unsigned char *b, size_t n)
{
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs(a[i] - b[i]);
        if (d > m) m = d;
    }
    return m;
}

static void check_fixture(const char *name, int tol)
{
    char path[256], ref[256];
    snprintf(path, sizeof path, DIR "%s", name);
    snprintf(ref, sizeof ref, DIR "%s.rgb", name);
    img_u8 im = {0};
    size_t n;
    unsigned char *want = slurp(ref, &n);
    int rc = imgio_load(path, 0, 0, &im);
    CHECK(rc == 0 && want, "%s: %s", name, rc ? err_msg() : "missing reference");
    if (rc == 0 && want) {
        CHECK((size_t)im.w * im.h * 3 == n, "%s: %dx%d vs %zu reference bytes", name, im.w, im.h, n);
        if ((size_t)im.w * im.h * 3 == n) {
            int d = max_diff(im.rgb, want, n);
            CHECK(d <= tol, "%s: max pixel difference %d > %d", name, d, tol);
        }
    }
    free(want);
    imgio_free(&im);
}

/* A PNG with a valid CRC claiming w x h. */
static size_t png_with_dims(unsigned char *buf, unsigned w, unsigned h)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char ihdr[17] = {'I', 'H', 'D', 'R', w >> 24, w >> 16, w >> 8, w, h >> 24, h >> 16, h >> 8, h, 8, 2, 0, 0, 0};
    memcpy(buf, sig, 8);
    buf[8] = 0, buf[9] = 0, buf[10] = 0, buf[11] = 13;
    memcpy(buf + 12, ihdr, 17);
    unsigned long crc = crc32(0, ihdr, 17);
    buf[29] = crc >> 24, buf[30] = crc >> 16, buf[31] = crc >> 8, buf[32] = crc;
    return 33;
}

static void check_bad(const char *what, const unsigned char *buf, size_t len, const char *expect)
{
    img_u8 im = {0};
    int rc = imgio_decode(buf, len, what, 0, 0, &im);
    CHECK(rc == -1, "%s: decoded a bad image", what);
    CHECK(strstr(err_msg(), what) && strstr(err_msg(), expect), "%s: message '%s' lacks '%s'", what, err_msg(), expect);
    imgio_free(&im);
}

int main(void)
{
    check_fixture("rgb.png", 0);
    check_fixture("gray.png", 0);
    check_fixture("palette.png", 0);
    check_fixture("rgba.png", 0);
    check_fixture("rgb444.jpg", 1);
    check_fixture("rgb420.jpg", 2);
    check_fixture("gray.jpg", 1);
    check_fixture("cmyk.jpg", 4);
    check_fixture("big.jpg", 1);

    /* DCT scaling: 96x64 decodes at 1/2 for 40x30 and at 1/8 for 12x8, and still looks like the image. */
    img_u8 im = {0};
    CHECK(imgio_load(DIR "big.jpg", 40, 30, &im) == 0 && im.w == 48 && im.h == 32, "1/2 scale gave %dx%d", im.w, im.h);
    CHECK(imgio_load(DIR "big.jpg", 12, 8, &im) == 0 && im.w == 12 && im.h == 8, "1/8 scale gave %dx%d", im.w, im.h);
    /* Pixel (x, y) of the 1/8 image averages source pixels 8x..8x+7: red = 2*(8x+3.5) */
    CHECK(fabs(im.rgb[(2 * 12 + 5) * 3] - 2 * (8 * 5 + 3.5)) <= 3, "1/8 red %d", im.rgb[(2 * 12 + 5) * 3]);
    CHECK(imgio_load(DIR "big.jpg", 97, 10, &im) == 0 && im.w == 96, "no scaling below the request: %d", im.w);

    /* Luma decoding (networks with channels=1): the JPEG's Y plane as R = G = B, within 2 levels of the luma of
     * the colour decode (which went through chroma upsampling and colour conversion), at full and reduced scale */
    for (int scale = 0; scale < 2; scale++) {
        img_u8 rgb = {0}, y = {0};
        int mw = scale ? 40 : 0, mh = scale ? 30 : 0;
        CHECK(imgio_load(DIR "big.jpg", mw, mh, &rgb) == 0 && imgio_load_luma(DIR "big.jpg", mw, mh, &y) == 0,
              "luma: %s", err_msg());
        int same = y.w == rgb.w && y.h == rgb.h, gray = 1, worst = 0;
        for (int i = 0; same && i < y.w * y.h; i++) {
            gray &= y.rgb[3 * i] == y.rgb[3 * i + 1] && y.rgb[3 * i] == y.rgb[3 * i + 2];
            float l = 0.299f * rgb.rgb[3 * i] + 0.587f * rgb.rgb[3 * i + 1] + 0.114f * rgb.rgb[3 * i + 2];
            int d = (int)fabsf(l - y.rgb[3 * i] + 0.5f);
            worst = d > worst ? d : worst;
        }
        CHECK(same && gray && worst <= 2, "luma at scale %d: %dx%d vs %dx%d, gray %d, worst %d levels", scale, y.w,
              y.h, rgb.w, rgb.h, gray, worst);
        imgio_free(&rgb);
        imgio_free(&y);
    }

    /* Writing: PNG round-trips exactly, through a temp file that does not stay behind. */
    unsigned char px[6 * 4 * 3];
    for (int i = 0; i < (int)sizeof px; i++) px[i] = (unsigned char)(i * 7);
    char out[] = "build/test_imgio_out.png";
    CHECK(imgio_write(out, px, 6, 4, 0) == 0, "write: %s", err_msg());
    CHECK(imgio_load(out, 0, 0, &im) == 0 && im.w == 6 && max_diff(im.rgb, px, sizeof px) == 0, "PNG round trip");
    glob_t left;
    CHECK(glob("build/test_imgio_out.png*.tmp", 0, NULL, &left) == GLOB_NOMATCH, "temp file left behind");
    CHECK(imgio_write("no/such/dir/x.png", px, 6, 4, 0) == -1 && strstr(err_msg(), "no/such/dir"), "unwritable path");
    unlink(out);

    /* Bad inputs: each gives -1 and a message naming the file and the problem. */
    size_t len;
    unsigned char *jpg = slurp(DIR "rgb444.jpg", &len);
    check_bad("empty.jpg", jpg, 0, "empty");
    check_bad("truncated.jpg", jpg, len / 2, "JPEG");
    check_bad("header-only.jpg", jpg, 3, "");
    check_bad("20-bytes.jpg", jpg, 20, "JPEG");
    unsigned char *bad = malloc(len);
    memcpy(bad, jpg, len);
    for (size_t i = len / 3; i < len - 2; i++) bad[i] = (unsigned char)(i * 31);
    check_bad("corrupt.jpg", bad, len, "JPEG");
    memcpy(bad, jpg, len);
    /* Walk the marker segments to SOF0 (height and width at +5 and +7) and claim 61440x61440. */
    for (size_t i = 2; i + 8 < len; i += 2 + (bad[i + 2] << 8 | bad[i + 3]))
        if (bad[i] == 0xFF && bad[i + 1] == 0xC0) {
            bad[i + 5] = bad[i + 7] = 0xF0;
            bad[i + 6] = bad[i + 8] = 0x00;
            break;
        }
    check_bad("huge.jpg", bad, len, "absurd image dimensions");
    unsigned char png[64];
    check_bad("huge.png", png, png_with_dims(png, 100000, 100000), "absurd image dimensions");
    check_bad("zero.png", png, png_with_dims(png, 0, 5), "PNG");
    /* The pixel limit: 4096 x 4096 by default, settable; beyond it an image is a bad image. */
    check_bad("10000x10000.png", png, png_with_dims(png, 10000, 10000), "pixel limit 16777216");
    imgio_set_max_pixels(64 * 32);
    CHECK(imgio_load(DIR "big.jpg", 0, 0, &im) == -1 && strstr(err_msg(), "pixel limit 2048"), "limit: %s", err_msg());
    imgio_set_max_pixels(0);
    CHECK(imgio_max_pixels() == IMGIO_DEFAULT_MAX_PIXELS && imgio_load(DIR "big.jpg", 0, 0, &im) == 0,
          "default limit restored: %s", err_msg());
    check_bad("text.jpg", (const unsigned char *)"hello world", 11, "not a JPEG or PNG");
    CHECK(imgio_load("tests/fixtures/images/missing.jpg", 0, 0, &im) == -1 && strstr(err_msg(), "missing.jpg"),
          "missing file: %s", err_msg());
    CHECK(imgio_load("tests/fixtures/images", 0, 0, &im) == -1 && strstr(err_msg(), "not a regular file"),
          "directory: %s", err_msg());
    /* A FIFO in a list is a bad image, not a read that waits for a writer forever. */
    unlink("build/test_imgio.fifo");
    CHECK(mkfifo("build/test_imgio.fifo", 0600) == 0, "mkfifo");
    CHECK(imgio_load("build/test_imgio.fifo", 0, 0, &im) == -1 && strstr(err_msg(), "not a regular file"),
          "FIFO: %s", err_msg());
    unlink("build/test_imgio.fifo");
    /* A failed decode must not poison the thread's decoder for the next, good image. */
    check_fixture("rgb444.jpg", 1);
    free(bad);
    free(jpg);
    imgio_free(&im);
    return check_done("imgio");
}
