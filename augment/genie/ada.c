#include "augment/genie/ada.h"
#include "common/err.h"
#include "common/image.h"
#include "common/num.h"
#include "common/util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ada_choose(const float *emb, int n, int d, const float *zs, const float *zt, float *gaps)
{
    if (n < 2) return -1;
    double vv = 0;
    for (int j = 0; j < d; j++) vv += (double)(zt[j] - zs[j]) * (zt[j] - zs[j]);
    double norm = sqrt(vv);
    if (!(norm >= ADA_MIN_NORM)) return -1;
    /* projections p_i = e_i . v / |v|; the gaps are differences of consecutive projections */
    double prev = 0, best = -1;
    int chosen = 1;
    for (int i = 0; i < n; i++) {
        double p = 0;
        for (int j = 0; j < d; j++) p += (double)emb[(size_t)i * d + j] * (zt[j] - zs[j]);
        p /= norm;
        if (i > 0) {
            double gap = fabs(p - prev);
            if (gaps) gaps[i - 1] = (float)gap;
            if (gap > best) {      /* strict: a tie keeps the lower r */
                best = gap;
                chosen = i;
            }
        }
        prev = p;
    }
    return chosen;
}

int ada_parse_rset(const char *text, double *r, int max)
{
    int n = 0;
    char buf[64];
    for (const char *s = text;;) {
        size_t len = strcspn(s, ",");
        double v;
        snprintf(buf, sizeof buf, "%.*s", (int)(len < sizeof buf - 1 ? len : sizeof buf - 1), s);
        if (len >= sizeof buf || num_double(util_trim(buf), 0, 1, &v) || !(v > 0))
            return err_set("r set \"%s\": \"%.20s\" is not a ratio in (0, 1]", text, s);
        if (n == max) return err_set("r set \"%s\": at most %d values", text, max);
        if (n > 0 && v <= r[n - 1]) return err_set("r set \"%s\": values must increase", text);
        r[n++] = v;
        if (!s[len]) break;
        s += len + 1;
    }
    if (n < ADA_MIN_R)
        return err_set("r set \"%s\": GeNIe-Ada needs at least %d ratios (it never keeps the first, so with two it "
                       "always keeps the second: fixed-r GeNIe at r %g, for twice the work)", text, ADA_MIN_R,
                       r[n - 1]);
    return n;
}

int ada_mean_images(char *const *paths, int *const *members, const int *count, const unsigned char *need, int classes,
                    img_u8 **imgs, int *counts)
{
    for (int c = 0; c < classes; c++) {
        if (!need[c] || !count[c]) continue;
        int want = count[c] < ADA_MEAN_IMAGES ? count[c] : ADA_MEAN_IMAGES;
        if (!(imgs[c] = calloc(want, sizeof(img_u8)))) return err_set("GeNIe-Ada: out of memory for class means");
        for (int i = 0; i < want; i++) {
            if (imgio_load(paths[members[c][(long)i * count[c] / want]], 0, 0, &imgs[c][i])) return -1;
            counts[c]++;
        }
    }
    return 0;
}

void ada_mean_images_free(img_u8 **imgs, int *counts, int classes)
{
    for (int c = 0; c < classes; c++) {
        for (int i = 0; imgs[c] && i < counts[c]; i++) imgio_free(&imgs[c][i]);
        free(imgs[c]);
        imgs[c] = NULL;
        counts[c] = 0;
    }
}

struct ada {
    backbone *bb;
    int classes, W, H, dim, n_r;
    double r_set[ADA_MAX_R], fallback_r;
    float *zt;                  /* [classes, dim] class means; NULL until set */
    unsigned char *has_mean;    /* [classes] */
    img_u8 *img;                /* [n_r] the results as 8-bit images */
    float *emb;                 /* [n_r + 1, dim]: the results', then the source's */
};

ada *ada_new(backbone *bb, int classes, int W, int H, const double *r_set, int n_r, double fallback_r)
{
    ada *a = calloc(1, sizeof *a);
    if (!a) goto oom;
    a->bb = bb;
    a->classes = classes, a->W = W, a->H = H, a->n_r = n_r, a->fallback_r = fallback_r;
    a->dim = backbone_dim(bb);
    memcpy(a->r_set, r_set, sizeof(double) * n_r);
    a->has_mean = calloc(classes, 1);
    a->img = calloc(n_r, sizeof *a->img);
    a->emb = malloc(sizeof(float) * (size_t)a->dim * (n_r + 1));
    if (!a->has_mean || !a->img || !a->emb) goto oom;
    for (int i = 0; i < n_r; i++) {
        a->img[i] = (img_u8){.w = W, .h = H, .cap = (size_t)W * H * 3};
        if (!(a->img[i].rgb = malloc(a->img[i].cap))) goto oom;
    }
    return a;
oom:
    ada_free(a);
    err_set("GeNIe-Ada: out of memory");
    return NULL;
}

void ada_free(ada *a)
{
    if (!a) return;
    for (int i = 0; a->img && i < a->n_r; i++) imgio_free(&a->img[i]);
    free(a->img);
    free(a->zt);
    free(a->has_mean);
    free(a->emb);
    free(a);
}

static int embed(ada *a, const img_u8 *imgs, int n, float *out)
{
    int B = backbone_max_batch(a->bb);
    for (int i = 0; i < n; i += B)
        if (backbone_embed(a->bb, imgs + i, n - i < B ? n - i : B, out + (size_t)i * a->dim)) return -1;
    return 0;
}

int ada_set_class_means(ada *a, img_u8 *const *imgs, const int *counts)
{
    float *zt = calloc((size_t)a->classes * a->dim, sizeof *zt);
    int most = 0;
    for (int c = 0; c < a->classes; c++) most = counts[c] > most ? counts[c] : most;
    float *e = malloc(sizeof(float) * (size_t)a->dim * (most ? most : 1));
    if (!zt || !e) {
        free(zt);
        free(e);
        return err_set("GeNIe-Ada: out of memory for class means");
    }
    for (int c = 0; c < a->classes; c++) {
        a->has_mean[c] = counts[c] > 0;
        if (!counts[c]) continue;
        if (embed(a, imgs[c], counts[c], e)) {
            free(zt);
            free(e);
            return -1;
        }
        for (int i = 0; i < counts[c]; i++)
            for (int j = 0; j < a->dim; j++) zt[(size_t)c * a->dim + j] += e[(size_t)i * a->dim + j] / counts[c];
    }
    free(e);
    free(a->zt);
    a->zt = zt;
    return 0;
}

int ada_pick(ada *a, const float *outs, const img_u8 *source, int target, float *gaps, int *fell_back)
{
    const int n = a->n_r;
    if (!a->zt) return err_set("GeNIe-Ada: a request before the class means were set");
    if (!source) return err_set("GeNIe-Ada: a request needs a source image");
    for (int i = 0; i < n; i++) image_from_planar(outs + (size_t)i * 3 * a->W * a->H, a->W, a->H, a->img[i].rgb, a->W);
    float *zs = a->emb + (size_t)n * a->dim;
    if (embed(a, a->img, n, a->emb) || embed(a, source, 1, zs)) return -1;
    int k = a->has_mean[target] ? ada_choose(a->emb, n, a->dim, zs, a->zt + (size_t)target * a->dim, gaps) : -1;
    *fell_back = k < 0;
    if (k < 0) {
        k = 0;
        for (int i = 1; i < n; i++)
            if (fabs(a->r_set[i] - a->fallback_r) < fabs(a->r_set[k] - a->fallback_r)) k = i;
    }
    return k;
}
