/* common/image: resampling to planar against per-axis weights written from the definitions (area: the overlap of
 * each source pixel with the output pixel's footprint; bilinear: torch's half-pixel centres, clamped) and known
 * answers; planar float -> u8 against its own rounding (half to even, clamped); the grid builder's layout (sizes,
 * where each tile lands, labels drawn in darknet's alphabet). */
#include "tests/check.h"
#include "common/err.h"
#include "common/font.h"
#include "common/image.h"

/* weights[i * sn + j] of source pixel j in output pixel i, in double */
static void axis_weights(int sn, int dn, double *wt)
{
    for (int i = 0; i < dn; i++) {
        double *row = wt + (size_t)i * sn, sum = 0;
        for (int j = 0; j < sn; j++) row[j] = 0;
        if (sn > dn) {
            double lo = (double)i * sn / dn, hi = (double)(i + 1) * sn / dn;
            for (int j = 0; j < sn; j++) {
                double ov = (j + 1 < hi ? j + 1 : hi) - (j > lo ? j : lo);
                if (ov > 0) row[j] = ov, sum += ov;
            }
            for (int j = 0; j < sn; j++) row[j] /= sum;
        } else {
            double x = (i + 0.5) * sn / dn - 0.5;   /* source coordinate of the output centre */
            for (int j = 0; j < sn; j++) {
                double hat = 1 - fabs(x - j);       /* the tent around each source pixel */
                if (hat > 0) row[j] += hat;
            }
            if (x < 0) row[0] = 1;                  /* clamped at the edges */
            if (x > sn - 1) row[sn - 1] = 1;
        }
    }
}

static void check_resample(int sw, int sh, int dw, int dh, unsigned seed)
{
    img_u8 src = {.w = sw, .h = sh, .rgb = malloc((size_t)sw * sh * 3)};
    for (int i = 0; i < sw * sh * 3; i++) src.rgb[i] = (unsigned char)((seed = seed * 1103515245u + 12345u) >> 16);
    float *got = malloc(sizeof(float) * 3 * dw * dh);
    double *wx = malloc(sizeof(double) * dw * sw), *wy = malloc(sizeof(double) * dh * sh), worst = 0;
    axis_weights(sw, dw, wx);
    axis_weights(sh, dh, wy);
    CHECK(image_to_planar(&src, dw, dh, got) == 0, "%s", err_msg());
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < dh; y++)
            for (int x = 0; x < dw; x++) {
                double want = 0;
                for (int sy = 0; sy < sh; sy++)
                    for (int sx = 0; sx < sw; sx++)
                        want += wy[y * sh + sy] * wx[x * sw + sx] * src.rgb[((size_t)sy * sw + sx) * 3 + c];
                double d = fabs(got[(size_t)c * dw * dh + (size_t)y * dw + x] - want / 255);
                if (d > worst) worst = d;
            }
    CHECK(worst < 2e-6, "%dx%d -> %dx%d: off by %g", sw, sh, dw, dh, worst);
    free(src.rgb), free(got), free(wx), free(wy);
}

static void test_resample(void)
{
    /* known answers on one row: 2 -> 4 bilinear, 4 -> 2 and 3 -> 2 area */
    unsigned char px[4 * 3] = {0, 0, 0, 200, 200, 200, 40, 40, 40, 100, 100, 100};
    img_u8 two = {.w = 2, .h = 1, .rgb = px}, four = {.w = 4, .h = 1, .rgb = px}, three = {.w = 3, .h = 1, .rgb = px};
    float o[3 * 4];
    CHECK(image_to_planar(&two, 4, 1, o) == 0, "%s", err_msg());
    CHECK(fabsf(o[0]) < 1e-7 && fabsf(o[1] - 50 / 255.0f) < 1e-6 && fabsf(o[2] - 150 / 255.0f) < 1e-6 &&
              fabsf(o[3] - 200 / 255.0f) < 1e-6, "2 -> 4: %g %g %g %g", o[0], o[1], o[2], o[3]);
    CHECK(image_to_planar(&four, 2, 1, o) == 0, "%s", err_msg());
    CHECK(fabsf(o[0] - 100 / 255.0f) < 1e-6 && fabsf(o[1] - 70 / 255.0f) < 1e-6, "4 -> 2: %g %g", o[0], o[1]);
    CHECK(image_to_planar(&three, 2, 1, o) == 0, "%s", err_msg());
    CHECK(fabsf(o[0] - 100 / 1.5f / 255) < 1e-6 && fabsf(o[1] - (100 + 40) / 1.5f / 255) < 1e-6, "3 -> 2: %g %g",
          o[0], o[1]);
    /* every mix of shrinking and growing axes, against the weights */
    check_resample(7, 5, 3, 4, 1);
    check_resample(5, 7, 11, 2, 2);
    check_resample(28, 28, 32, 32, 3);
    check_resample(64, 48, 32, 32, 4);
    check_resample(9, 9, 9, 9, 5);
}

/* numpy's rounding of the clamped product, written out: nearest, ties to the even neighbour */
static unsigned char ref_u8(float v)
{
    float p = v * 255.0f;
    if (!(p > 0)) return 0;
    if (p >= 255) return 255;
    float fl = floorf(p), d = p - fl;
    int r = (int)fl + (d > 0.5f || (d == 0.5f && ((int)fl & 1)));
    return (unsigned char)r;
}

static void test_from_planar(void)
{
    enum { W = 300, H = 2, S = W + 5 };
    float *pl = malloc(sizeof(float) * 3 * W * H);
    int ties = 0, bad = 0;
    for (int i = 0; i < 3 * W * H; i++) {
        int k = i % 600;
        pl[i] = k < 255 ? (k + 0.5f) / 255.0f : k < 510 ? (k - 255) / 254.0f : (k - 555) / 30.0f;   /* ties, steps, out of [0,1] */
        float p = pl[i] * 255.0f;
        ties += p == floorf(p) + 0.5f;
    }
    unsigned char *rgb = malloc((size_t)S * H * 3);
    memset(rgb, 7, (size_t)S * H * 3);
    image_from_planar(pl, W, H, rgb, S);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < S; x++)
            for (int c = 0; c < 3; c++) {
                unsigned char got = rgb[((size_t)y * S + x) * 3 + c];
                unsigned char want = x < W ? ref_u8(pl[(size_t)c * W * H + (size_t)y * W + x]) : 7;
                if (got != want && bad++ < 5) CHECK(0, "(%d,%d,%d): %d, want %d", x, y, c, got, want);
            }
    CHECK(!bad, "%d values differ", bad);
    CHECK(ties > 100, "only %d exact ties exercised", ties);
    free(pl), free(rgb);
}

/* ink: a pixel clearly darker than the white canvas and than every tile colour used (all >= 120) */
static int ink_in(const unsigned char *img, int w, int x0, int y0, int x1, int y1, int *first_x)
{
    int n = 0;
    if (first_x) *first_x = -1;
    for (int x = x0; x < x1; x++)
        for (int y = y0; y < y1; y++)
            if (img[((size_t)y * w + x) * 3] < 100) {
                n++;
                if (first_x && *first_x < 0) *first_x = x;
            }
    return n;
}

static int tile_at(const unsigned char *img, int w, int x0, int y0, int tw, int th, unsigned char v)
{
    for (int y = 0; y < th; y++)
        for (int x = 0; x < tw; x++)
            for (int c = 0; c < 3; c++)
                if (img[(((size_t)y0 + y) * w + x0 + x) * 3 + c] != (unsigned char)(v + c)) return 0;
    return 1;
}

static int white(const unsigned char *img, int w, int x0, int y0, int x1, int y1)
{
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            for (int c = 0; c < 3; c++)
                if (img[((size_t)y * w + x) * 3 + c] != 255) return 0;
    return 1;
}

/* the canvas the layout documented in image.h gives: white, tiles at their places, labels by font_draw */
static unsigned char *expected(int w, int h, const unsigned char *const *tiles, int n, const int *tx, const int *ty,
                               int tw, int th, const font *f, const char *const *labels, int nl, const int *lx,
                               const int *ly)
{
    unsigned char *e = malloc((size_t)w * h * 3);
    memset(e, 255, (size_t)w * h * 3);
    for (int t = 0; t < n; t++)
        for (int y = 0; tiles[t] && y < th; y++)
            memcpy(e + (((size_t)ty[t] + y) * w + tx[t]) * 3, tiles[t] + (size_t)y * tw * 3, (size_t)tw * 3);
    for (int i = 0; i < nl; i++)
        if (labels[i]) font_draw(f, e, w, h, lx[i], ly[i], labels[i]);
    return e;
}

static void test_grid(void)
{
    font *f = font_load(FONT_DARKNET_DIR, 0);
    CHECK(f != NULL, "darknet's alphabet: %s", err_msg());
    if (!f) return;
    const int fh = font_height(f);
    enum { TW = 10, TH = 14 };
    unsigned char tiles[6][TW * TH * 3];
    const unsigned char *tp[6];
    for (int t = 0; t < 6; t++) {
        for (int i = 0; i < TW * TH * 3; i++) tiles[t][i] = (unsigned char)(120 + 20 * t + i % 3);
        tp[t] = tiles[t];
    }
    tp[3] = NULL;   /* left white */

    /* a row label right of each row (the module's grid) */
    const char *rl[3] = {"a", "bb -> c", NULL};
    image_grid g = {.rows = 3, .cols = 2, .tile_w = TW, .tile_h = TH, .gap = 2, .font = f,
                    .label_pos = IMAGE_LABEL_RIGHT};
    int w, h, lw = font_width(f, "bb -> c") > font_width(f, "a") ? font_width(f, "bb -> c") : font_width(f, "a");
    unsigned char *img = image_grid_build(&g, tp, rl, &w, &h);
    CHECK(img && w == 2 * TW + 2 + lw + 6 && h == 3 * (TH + 2) - 2, "right labels: %dx%d", w, h);
    if (img) {
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 2; c++) {
                int x0 = c * (TW + 2), y0 = r * (TH + 2), t = r * 2 + c;
                if (t == 3) CHECK(white(img, w, x0, y0, x0 + TW, y0 + TH), "NULL tile not white");
                else CHECK(tile_at(img, w, x0, y0, TW, TH, (unsigned char)(120 + 20 * t)), "tile %d,%d misplaced", r, c);
            }
        CHECK(white(img, w, TW, 0, TW + 2, h) && white(img, w, 0, TH, 2 * TW + 2, TH + 2), "gaps not white");
        int fx, ink0 = ink_in(img, w, 2 * TW + 2, 0, w, TH + 2, &fx);
        int ink1 = ink_in(img, w, 2 * TW + 2, TH + 2, w, 2 * (TH + 2), NULL);
        int ink2 = ink_in(img, w, 2 * TW + 2, 2 * (TH + 2), w, h, NULL);
        CHECK(ink0 > 5 && ink1 > ink0 && ink2 == 0 && fx >= 2 * TW + 6, "row labels: ink %d %d %d, first x %d",
              ink0, ink1, ink2, fx);
        const int tx[6] = {0, TW + 2, 0, TW + 2, 0, TW + 2}, ty[6] = {0, 0, TH + 2, TH + 2, 2 * (TH + 2), 2 * (TH + 2)};
        const int lx[3] = {2 * TW + 6, 2 * TW + 6, 0}, ly[3] = {(TH - fh) / 2, TH + 2 + (TH - fh) / 2, 0};
        unsigned char *e = expected(w, h, tp, 6, tx, ty, TW, TH, f, rl, 3, lx, ly);
        CHECK(!memcmp(e, img, (size_t)w * h * 3), "right labels: the canvas differs from the documented layout");
        free(e);
        free(img);
    }

    /* a label band above each tile (the sweep strip), centred where it fits, left-aligned where not */
    const char *al[3] = {NULL, "r=1", "r=0.25678"};
    image_grid s = {.rows = 1, .cols = 3, .tile_w = 32, .tile_h = TH, .font = f, .label_pos = IMAGE_LABEL_ABOVE};
    unsigned char big[3][32 * TH * 3];
    const unsigned char *bp[3] = {big[0], big[1], big[2]};
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < 32 * TH * 3; i++) big[t][i] = (unsigned char)(120 + 20 * t + i % 3);
    img = image_grid_build(&s, bp, al, &w, &h);
    int band = fh + 2;
    CHECK(img && w == 96 && h == band + TH, "above labels: %dx%d (font height %d)", w, h, fh);
    if (img) {
        for (int t = 0; t < 3; t++)
            CHECK(tile_at(img, w, 32 * t, band, 32, TH, (unsigned char)(120 + 20 * t)), "strip tile %d misplaced", t);
        int fx1, fx2, lw1 = font_width(f, "r=1");
        CHECK(ink_in(img, w, 0, 0, 32, band, NULL) == 0, "a NULL label drew ink");
        CHECK(ink_in(img, w, 32, 0, 64, band, &fx1) > 5 && fx1 >= 32 + (32 - lw1) / 2, "centred label: first ink at %d",
              fx1);
        CHECK(ink_in(img, w, 64, 0, 96, band, &fx2) > 5 && fx2 < 64 + 3 && font_width(f, "r=0.25678") > 32,
              "left-aligned label: first ink at %d", fx2);
        const int tx[3] = {0, 32, 64}, ty[3] = {band, band, band};
        const int lx[3] = {0, 32 + (32 - lw1) / 2, 64}, ly[3] = {1, 1, 1};
        unsigned char *e = expected(w, h, bp, 3, tx, ty, 32, TH, f, al, 3, lx, ly);
        CHECK(!memcmp(e, img, (size_t)w * h * 3), "above labels: the canvas differs from the documented layout");
        free(e);
        free(img);
    }

    /* without a font: no room for labels */
    g.font = NULL;
    img = image_grid_build(&g, tp, rl, &w, &h);
    CHECK(img && w == 2 * TW + 2 && h == 3 * (TH + 2) - 2, "no font: %dx%d", w, h);
    free(img);
    s.font = NULL;
    img = image_grid_build(&s, bp, al, &w, &h);
    CHECK(img && w == 96 && h == TH && tile_at(img, w, 0, 0, 32, TH, 120), "no font, above: %dx%d", w, h);
    free(img);
    font_free(f);
}

int main(void)
{
    test_resample();
    test_from_planar();
    test_grid();
    return check_done("image");
}
