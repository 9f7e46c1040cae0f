#include "src/net/transform.h"

#include <math.h>
#include <string.h>

/* out(x, y) = src(a*x + b*y + c0, d*x + e*y + f0), bilinear, 0 outside the image (darknet's
 * bilinear_interpolate with get_pixel_extend): one resampling for crop, scale, rotation and flip. */
static void warp_affine(const img_u8 *src, int w, int h, const float m[6], float *out)
{
    const size_t plane = (size_t)w * h;
    const float k = 1.0f / 255.0f;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float sx = m[0] * x + m[1] * y + m[2], sy = m[3] * x + m[4] * y + m[5];
            int ix = (int)floorf(sx), iy = (int)floorf(sy);
            float dx = sx - ix, dy = sy - iy, v[3] = {0, 0, 0};
            for (int j = 0; j < 2; j++) {
                int yy = iy + j;
                if (yy < 0 || yy >= src->h) continue;
                float wy = j ? dy : 1 - dy;
                const unsigned char *row = src->rgb + (size_t)yy * src->w * 3;
                for (int i = 0; i < 2; i++) {
                    int xx = ix + i;
                    if (xx < 0 || xx >= src->w) continue;
                    float wgt = wy * (i ? dx : 1 - dx);
                    const unsigned char *p = row + 3 * xx;
                    v[0] += wgt * p[0], v[1] += wgt * p[1], v[2] += wgt * p[2];
                }
            }
            size_t o = (size_t)y * w + x;
            out[o] = v[0] * k, out[plane + o] = v[1] * k, out[2 * plane + o] = v[2] * k;
        }
}

/* warp_affine for maps without rotation (m[1] = m[3] = 0: every preset at angle 0): the source column and its
 * two weights depend on x alone and the row on y alone, so they are computed once per column and per row instead
 * of per pixel; taps, order and arithmetic are warp_affine's, and so is the result, bit for bit. xs holds 3*w
 * floats of scratch. */
static void warp_scale(const img_u8 *src, int w, int h, const float m[6], float *out, float *xs)
{
    const size_t plane = (size_t)w * h;
    const float k = 1.0f / 255.0f;
    int *ix = (int *)xs;
    float *w0 = xs + w, *w1 = xs + 2 * w;
    /* the columns whose two taps are both inside the image: one run, as the source column moves monotonically */
    int xa = w, xb = 0;
    for (int x = 0; x < w; x++) {
        float sx = m[0] * x + m[1] * 0 + m[2];
        ix[x] = (int)floorf(sx);
        float dx = sx - ix[x];
        w0[x] = 1 - dx;
        w1[x] = dx;
        if (ix[x] >= 0 && ix[x] + 1 < src->w) {
            if (x < xa) xa = x;
            xb = x + 1;
        }
    }
    for (int y = 0; y < h; y++) {
        float sy = m[3] * 0 + m[4] * y + m[5];
        int iy = (int)floorf(sy);
        float dy = sy - iy, wy[2] = {1 - dy, dy};
        const unsigned char *row[2] = {NULL, NULL};
        for (int j = 0; j < 2; j++)
            if (iy + j >= 0 && iy + j < src->h) row[j] = src->rgb + (size_t)(iy + j) * src->w * 3;
        float *o0 = out + (size_t)y * w, *o1 = o0 + plane, *o2 = o1 + plane;
        /* the common case, both taps of both rows inside the image, with the sums written out in the same order
         * as below; the border columns take the general loop */
        int both = row[0] && row[1];
        for (int x = xa; both && x < xb; x++) {
            const unsigned char *p0 = row[0] + 3 * ix[x], *p1 = row[1] + 3 * ix[x];
            float g00 = wy[0] * w0[x], g01 = wy[0] * w1[x], g10 = wy[1] * w0[x], g11 = wy[1] * w1[x];
            o0[x] = (g00 * p0[0] + g01 * p0[3] + g10 * p1[0] + g11 * p1[3]) * k;
            o1[x] = (g00 * p0[1] + g01 * p0[4] + g10 * p1[1] + g11 * p1[4]) * k;
            o2[x] = (g00 * p0[2] + g01 * p0[5] + g10 * p1[2] + g11 * p1[5]) * k;
        }
        for (int x = 0; x < w; x++) {
            if (both && x == xa && (x = xb) >= w) break;
            int x0 = ix[x];
            int in0 = x0 >= 0 && x0 < src->w, in1 = x0 + 1 >= 0 && x0 + 1 < src->w;
            float v[3] = {0, 0, 0};
            for (int j = 0; j < 2; j++) {
                if (!row[j]) continue;
                if (in0) {
                    float wgt = wy[j] * w0[x];
                    const unsigned char *p = row[j] + 3 * x0;
                    v[0] += wgt * p[0], v[1] += wgt * p[1], v[2] += wgt * p[2];
                }
                if (in1) {
                    float wgt = wy[j] * w1[x];
                    const unsigned char *p = row[j] + 3 * (x0 + 1);
                    v[0] += wgt * p[0], v[1] += wgt * p[1], v[2] += wgt * p[2];
                }
            }
            o0[x] = v[0] * k, o1[x] = v[1] * k, o2[x] = v[2] * k;
        }
    }
}

/* darknet's rand_scale: uniform in [1, s], inverted with probability 0.5. */
static float rand_scale(philox_t *g, float s)
{
    float lo = s < 1 ? s : 1, hi = s < 1 ? 1 : s;
    float v = philox_range(g, lo, hi);
    return (philox_next(g) & 1) ? v : 1 / v;
}

/* darknet's random_augment_image + rotate_crop_image, as one affine map. */
static void affine_darknet(const aug_params *p, const img_u8 *im, philox_t *g, float m[6])
{
    float aspect = rand_scale(g, p->aspect);
    int lo = p->min_crop, hi = p->max_crop > p->min_crop ? p->max_crop : p->min_crop;
    int r = lo + philox_int(g, hi - lo + 1);
    float shorter = im->h < im->w * aspect ? im->h : im->w * aspect;
    float s = r / shorter;
    float rad = philox_range(g, -p->angle, p->angle) * (float)M_PI / 180.0f;
    float dx = (im->w * s / aspect - p->w) / 2, dy = (im->h * s - p->h) / 2;
    dx = philox_range(g, -fabsf(dx), fabsf(dx));
    dy = philox_range(g, -fabsf(dy), fabsf(dy));
    float c = cosf(rad), sn = sinf(rad);
    /* rx = c*((x - w/2)/s*aspect + dx/s*aspect) - sn*((y - h/2)/s + dy/s) + W/2, likewise ry. */
    float ax = aspect / s, ay = 1 / s;
    float ox = (-p->w / 2.0f + dx) * ax, oy = (-p->h / 2.0f + dy) * ay;
    m[0] = c * ax;  m[1] = -sn * ay; m[2] = c * ox - sn * oy + im->w / 2.0f;
    m[3] = sn * ax; m[4] = c * ay;   m[5] = sn * ox + c * oy + im->h / 2.0f;
}

static float crop_scale(const aug_params *p) { return p->crop_scale > 0 ? p->crop_scale : AUG_CROP_SCALE; }

/* torchvision's RandomResizedCrop box (10 tries, then the centre crop of the clamped ratio), mapped to w x h. */
static void affine_resized_crop(const aug_params *p, const img_u8 *im, philox_t *g, float m[6])
{
    float W = im->w, H = im->h, area = W * H, cw = W, ch = H, x0 = 0, y0 = 0;
    int ok = 0;
    for (int t = 0; t < 10 && !ok; t++) {
        float target = area * philox_range(g, crop_scale(p), 1.0f);
        float ratio = expf(philox_range(g, logf(3.0f / 4), logf(4.0f / 3)));
        float bw = roundf(sqrtf(target * ratio)), bh = roundf(sqrtf(target / ratio));
        if (bw > 0 && bh > 0 && bw <= W && bh <= H) {
            cw = bw;
            ch = bh;
            x0 = (float)philox_int(g, (int)(W - bw) + 1);
            y0 = (float)philox_int(g, (int)(H - bh) + 1);
            ok = 1;
        }
    }
    if (!ok) {
        float r = W / H;
        if (r < 3.0f / 4) ch = roundf(W / (3.0f / 4));
        else if (r > 4.0f / 3) cw = roundf(H * (4.0f / 3));
        x0 = (W - cw) / 2;
        y0 = (H - ch) / 2;
    }
    float sx = cw / p->w, sy = ch / p->h;
    m[0] = sx; m[1] = 0;  m[2] = x0 + 0.5f * sx - 0.5f;
    m[3] = 0;  m[4] = sy; m[5] = y0 + 0.5f * sy - 0.5f;
}

/* Shorter side to the output size, centre crop: darknet's resize_min + crop_image for validation. */
static void affine_eval(const aug_params *p, const img_u8 *im, float m[6])
{
    float s = (float)(im->w < im->h ? im->w : im->h) / (p->w < p->h ? p->w : p->h);
    float x0 = (im->w - p->w * s) / 2, y0 = (im->h - p->h * s) / 2;
    m[0] = s; m[1] = 0; m[2] = x0 + 0.5f * s - 0.5f;
    m[3] = 0; m[4] = s; m[5] = y0 + 0.5f * s - 0.5f;
}

static void flip_horizontal(float m[6], int w)
{
    /* x -> (w-1-x): the source coordinate's x coefficient changes sign and the offset moves. */
    m[2] += m[0] * (w - 1);
    m[0] = -m[0];
    m[5] += m[3] * (w - 1);
    m[3] = -m[3];
}

static inline float clamp01(float x) { return x < 0 ? 0 : x > 1 ? 1 : x; }
static inline float max2(float a, float b) { return a > b ? a : b; }
static inline float min2(float a, float b) { return a < b ? a : b; }

/* darknet's distort_image: hue shift (wrapping), saturation and value scaling, in HSV. Written without branches
 * or traps (hsv -> rgb as c = v - v*s*clamp(min(k, 4-k), 0, 1), k = (n + 6h) mod 6; every division by a value
 * that may be 0 made safe before the select) so that the compiler vectorises it (this file is built with -O3):
 * it is the costliest step of darknet's augmentation at ImageNet sizes. Element by element the operations are
 * the scalar ones (no FMA), so the result is the same bit for bit; where the CPU has AVX2 a copy of the loop
 * compiled for it runs 8 lanes wide (chosen per call, not by an ifunc, which sanitizer runtimes cannot take). */
static inline __attribute__((always_inline)) void distort_hsv(float *im, size_t n, float dhue, float dsat, float dexp)
{
    float *R = im, *G = im + n, *B = im + 2 * n;
    for (size_t i = 0; i < n; i++) {
        float r = R[i], g = G[i], b = B[i];
        float mx = max2(r, max2(g, b)), mn = min2(r, min2(g, b)), d = mx - mn;
        float inv = 1 / (d > 0 ? d : 1);
        inv = d > 0 ? inv : 0;
        float hr = (g - b) * inv, hg = 2 + (b - r) * inv, hb = 4 + (r - g) * inv;
        float h = mx == r ? hr : mx == g ? hg : hb;
        h = h * (1.0f / 6) + dhue;
        h -= floorf(h);
        /* Like darknet, saturation and value are scaled unclamped; only the RGB result is clamped. */
        float s0 = d / (mx > 0 ? mx : 1);
        float sat = (mx > 0 ? s0 : 0) * dsat;
        float v = mx * dexp, vs = v * sat, h6 = 6 * h;
        float k5 = h6 + 5, k3 = h6 + 3, k1 = h6 + 1;
        k5 -= k5 >= 6 ? 6 : 0, k3 -= k3 >= 6 ? 6 : 0, k1 -= k1 >= 6 ? 6 : 0;
        R[i] = clamp01(v - vs * clamp01(min2(k5, 4 - k5)));
        G[i] = clamp01(v - vs * clamp01(min2(k3, 4 - k3)));
        B[i] = clamp01(v - vs * clamp01(min2(k1, 4 - k1)));
    }
}

__attribute__((target("avx2"))) static void distort_hsv_avx2(float *im, size_t n, float dhue, float dsat, float dexp)
{
    distort_hsv(im, n, dhue, dsat, dexp);
}

static void distort_hsv_base(float *im, size_t n, float dhue, float dsat, float dexp)
{
    distort_hsv(im, n, dhue, dsat, dexp);
}

void transform_distort_hsv(float *im, size_t n, float dhue, float dsat, float dexp)
{
    (__builtin_cpu_supports("avx2") ? distort_hsv_avx2 : distort_hsv_base)(im, n, dhue, dsat, dexp);
}

static float luma(float r, float g, float b) { return 0.299f * r + 0.587f * g + 0.114f * b; }

/* torchvision ColorJitter(0.4, 0.4, 0.4, 0.1) in a fixed order: brightness, contrast, saturation, hue. */
static void color_jitter(float *im, size_t n, philox_t *g)
{
    float bri = philox_range(g, 0.6f, 1.4f), con = philox_range(g, 0.6f, 1.4f);
    float sat = philox_range(g, 0.6f, 1.4f), hue = philox_range(g, -0.1f, 0.1f);
    float *R = im, *G = im + n, *B = im + 2 * n;
    double mean = 0;
    for (size_t i = 0; i < n; i++) {
        R[i] = clamp01(R[i] * bri), G[i] = clamp01(G[i] * bri), B[i] = clamp01(B[i] * bri);
        mean += luma(R[i], G[i], B[i]);
    }
    float m = (float)(mean / n);
    for (size_t i = 0; i < n; i++) {
        R[i] = clamp01((R[i] - m) * con + m), G[i] = clamp01((G[i] - m) * con + m), B[i] = clamp01((B[i] - m) * con + m);
        float l = luma(R[i], G[i], B[i]);
        R[i] = clamp01((R[i] - l) * sat + l), G[i] = clamp01((G[i] - l) * sat + l), B[i] = clamp01((B[i] - l) * sat + l);
    }
    transform_distort_hsv(im, n, hue, 1, 1);
}

static void to_gray(float *im, size_t n)
{
    for (size_t i = 0; i < n; i++) im[i] = im[n + i] = im[2 * n + i] = luma(im[i], im[n + i], im[2 * n + i]);
}

/* Separable Gaussian blur, kernel about 10% of the image side (SimCLR), reflecting at the borders. */
static void gaussian_blur(float *im, int w, int h, float sigma, float *tmp)
{
    int k = (int)(0.1f * (w < h ? w : h));
    if (k < 3) k = 3;
    int r = k / 2;
    float kern[64];
    if (r > 31) r = 31;
    float sum = 0;
    for (int i = -r; i <= r; i++) sum += kern[i + r] = expf(-0.5f * i * i / (sigma * sigma));
    for (int i = 0; i <= 2 * r; i++) kern[i] /= sum;
    for (int ch = 0; ch < 3; ch++) {
        float *p = im + (size_t)ch * w * h;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                float v = 0;
                for (int i = -r; i <= r; i++) {
                    int xx = x + i;
                    xx = xx < 0 ? -xx : xx >= w ? 2 * w - 2 - xx : xx;
                    v += kern[i + r] * p[y * w + (xx < 0 ? 0 : xx)];
                }
                tmp[y * w + x] = v;
            }
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                float v = 0;
                for (int i = -r; i <= r; i++) {
                    int yy = y + i;
                    yy = yy < 0 ? -yy : yy >= h ? 2 * h - 2 - yy : yy;
                    v += kern[i + r] * tmp[(yy < 0 ? 0 : yy) * w + x];
                }
                p[y * w + x] = v;
            }
    }
}

void transform_sample(const aug_params *p, const img_u8 *src, philox_t *g, float *out, float *tmp)
{
    int w = p->w, h = p->h;
    size_t n = (size_t)w * h;
    float m[6];
    /* Work in RGB; a 1-channel net gets luma at the end. */
    float *rgb = p->c == 3 ? out : tmp + n;
    if (p->preset == AUG_DARKNET)
        affine_darknet(p, src, g, m);
    else if (p->preset == AUG_WEAK || p->preset == AUG_STRONG)
        affine_resized_crop(p, src, g, m);
    else
        affine_eval(p, src, m);
    if (p->preset != AUG_EVAL && p->flip && (philox_next(g) & 1)) flip_horizontal(m, w);
    /* for c == 1 the RGB work image is tmp + n, so tmp's first n floats are free for the column table */
    if (m[1] == 0 && m[3] == 0 && 3 * (size_t)w <= n) warp_scale(src, w, h, m, rgb, tmp);
    else warp_affine(src, w, h, m, rgb);
    if (p->preset == AUG_DARKNET && (p->hue != 0 || p->saturation != 1 || p->exposure != 1)) {
        float dhue = philox_range(g, -p->hue, p->hue);
        float dsat = rand_scale(g, p->saturation), dexp = rand_scale(g, p->exposure);
        transform_distort_hsv(rgb, n, dhue, dsat, dexp);
    }
    if (p->preset == AUG_STRONG) {
        if (philox_uniform(g) < 0.8f) color_jitter(rgb, n, g);
        if (philox_uniform(g) < 0.2f) to_gray(rgb, n);
        if (philox_uniform(g) < 0.5f) gaussian_blur(rgb, w, h, philox_range(g, 0.1f, 2.0f), tmp);
    }
    if (p->c == 1)
        for (size_t i = 0; i < n; i++) out[i] = luma(rgb[i], rgb[n + i], rgb[2 * n + i]);
}

void transform_min_decode(const aug_params *p, int *min_w, int *min_h)
{
    /* darknet scales the shorter side to at most max_crop; a resized crop keeps at least sqrt(crop_scale) of a side. */
    int side = p->w > p->h ? p->w : p->h;
    if (p->preset == AUG_DARKNET && p->max_crop > side) side = p->max_crop;
    if (p->preset == AUG_WEAK || p->preset == AUG_STRONG) side = (int)ceilf(side / sqrtf(crop_scale(p)));
    *min_w = *min_h = side;
}
