#include "augment/genie/genie.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "augment/genie/backbone.h"
#include "common/err.h"
#include "common/image.h"
#include "common/util.h"

struct genie {
    genie_opts o;
    engine *e;
    backbone *bb;
    int classes, W, H, dim;
    size_t nimg;
    int *prompt;                /* [classes] engine prompt handles */
    float *zt;                  /* [classes, dim] class means; NULL until set */
    float *src, *out;           /* [max_batch, nimg] planar sources and engine outputs */
    engine_item *items;         /* [max_batch] */
    int *item_req;              /* [max_batch] request of each engine item */
    img_u8 *emb_img;            /* [n_r + 1] quantised images for the backbone */
    float *emb;                 /* [n_r + 1, dim] */
};

void genie_opts_default(genie_opts *o)
{
    memset(o, 0, sizeof *o);
    engine_opts_default(&o->eo);
    o->eo.scheduler = SD_SCHED_DPMPP_2M;
    o->eo.steps = 25;
    o->eo.guidance = 3.0;
    o->eo.vae_mean = 1;
    o->eo.max_batch = 10;
    o->prompt_template = "A photo of a {}";
    static const double rs[] = {0.5, 0.6, 0.7, 0.8, 0.9};
    o->n_r = 5;
    memcpy(o->r_set, rs, sizeof rs);
    o->ada_fallback_r = 0.8;
    o->embed_layer = -1;
}

static int make_prompt(const char *tmpl, const char *words, char *out, size_t n)
{
    const char *hole = strstr(tmpl, "{}");
    int len = hole ? snprintf(out, n, "%.*s%s%s", (int)(hole - tmpl), tmpl, words, hole + 2)
                   : snprintf(out, n, "%s", tmpl);
    if (len < 0 || (size_t)len >= n) return err_set("prompt template \"%s\" with \"%s\" is too long", tmpl, words);
    return 0;
}

genie *genie_load(const genie_opts *o, char *const *words, int classes)
{
    genie *g = calloc(1, sizeof *g);
    if (!g) {
        err_set("generator: out of memory");
        return NULL;
    }
    g->o = *o;
    g->classes = classes;
    if (o->backbone_cfg && o->eo.max_batch < o->n_r) {
        err_set("generator: engine batch %d is smaller than the Ada r set (%d ratios)", o->eo.max_batch, o->n_r);
        goto fail;
    }
    if (!(g->e = engine_load(&o->eo))) goto fail;
    engine_info info;
    engine_get_info(g->e, &info);
    g->W = info.width;
    g->H = info.height;
    g->nimg = (size_t)3 * g->W * g->H;
    int B = o->eo.max_batch;
    g->prompt = calloc(classes, sizeof *g->prompt);
    g->src = malloc(sizeof(float) * g->nimg * B);
    g->out = malloc(sizeof(float) * g->nimg * B);
    g->items = calloc(B, sizeof *g->items);
    g->item_req = calloc(B, sizeof *g->item_req);
    g->emb_img = calloc(o->n_r + 1, sizeof *g->emb_img);
    if (!g->prompt || !g->src || !g->out || !g->items || !g->item_req || !g->emb_img) {
        err_set("generator: out of memory");
        goto fail;
    }
    for (int c = 0; c < classes; c++) {
        char text[1024];
        if (make_prompt(o->prompt_template, words[c], text, sizeof text)) goto fail;
        if ((g->prompt[c] = engine_prompt(g->e, text)) < 0) goto fail;
    }
    if (o->backbone_cfg) {
        if (!(g->bb = backbone_load(o->backbone_cfg, o->backbone_weights, o->embed_layer, o->n_r + 1))) goto fail;
        g->dim = backbone_dim(g->bb);
        g->emb = malloc(sizeof(float) * (size_t)g->dim * (o->n_r + 1));
        if (!g->emb) {
            err_set("generator: out of memory");
            goto fail;
        }
        for (int i = 0; i <= o->n_r; i++) {
            g->emb_img[i].w = g->W;
            g->emb_img[i].h = g->H;
            g->emb_img[i].cap = (size_t)g->W * g->H * 3;
            if (!(g->emb_img[i].rgb = malloc(g->emb_img[i].cap))) {
                err_set("generator: out of memory");
                goto fail;
            }
        }
    }
    return g;
fail:
    genie_free(g);
    return NULL;
}

void genie_free(genie *g)
{
    if (!g) return;
    engine_free(g->e);
    backbone_free(g->bb);
    for (int i = 0; g->emb_img && i <= g->o.n_r; i++) imgio_free(&g->emb_img[i]);
    free(g->emb_img);
    free(g->prompt);
    free(g->zt);
    free(g->src);
    free(g->out);
    free(g->items);
    free(g->item_req);
    free(g->emb);
    free(g);
}

int genie_image_size(const genie *g, int *w, int *h)
{
    *w = g->W;
    *h = g->H;
    return 0;
}

size_t genie_image_floats(const genie *g) { return g->nimg; }
int genie_embed_dim(const genie *g) { return g->dim; }

int genie_request_cost(const genie *g, const genie_request *rq) { return rq->r == GENIE_R_ADA ? g->o.n_r : 1; }


int genie_embed(genie *g, const img_u8 *imgs, int n, float *out)
{
    if (!g->bb) return err_set("generator: no backbone (GeNIe-Ada needs a classifier cfg and weights)");
    int B = backbone_max_batch(g->bb);
    for (int i = 0; i < n; i += B)
        if (backbone_embed(g->bb, imgs + i, n - i < B ? n - i : B, out + (size_t)i * g->dim)) return -1;
    return 0;
}

int genie_copy_backbone(genie *g, const struct network *src)
{
    if (!g->bb) return err_set("generator: no backbone to copy into");
    return backbone_copy_params(g->bb, src);
}

char **genie_read_words(const char *names, char *const *labels, int classes)
{
    char **w = calloc(classes, sizeof *w);
    if (!w) return NULL;
    if (!names) {
        for (int c = 0; c < classes; c++) w[c] = strdup(labels[c]);
        return w;
    }
    FILE *f = fopen(names, "r");
    char line[1024];
    int n = 0;
    while (f && n < classes && fgets(line, sizeof line, f)) {
        char *s = util_trim(line);
        if (*s) w[n++] = strdup(s);
    }
    if (f) fclose(f);
    if (n != classes) {
        err_set("%s: %s (%d names for %d labels)", names, f ? "one line of prompt words per label" : strerror(errno),
                n, classes);
        for (int c = 0; c < n; c++) free(w[c]);
        free(w);
        return NULL;
    }
    return w;
}

int genie_set_class_means(genie *g, img_u8 *const *imgs, const int *counts)
{
    if (!g->bb) return err_set("generator: no backbone (GeNIe-Ada needs a classifier cfg and weights)");
    float *zt = calloc((size_t)g->classes * g->dim, sizeof *zt);
    int most = 0;
    for (int c = 0; c < g->classes; c++) most = counts[c] > most ? counts[c] : most;
    float *e = malloc(sizeof(float) * (size_t)g->dim * (most ? most : 1));
    if (!zt || !e) {
        free(zt);
        free(e);
        return err_set("generator: out of memory for class means");
    }
    for (int c = 0; c < g->classes; c++) {
        if (!counts[c]) continue;
        if (genie_embed(g, imgs[c], counts[c], e)) {
            free(zt);
            free(e);
            return -1;
        }
        /* the mean of normalised embeddings, not renormalised (as the official notebook) */
        for (int i = 0; i < counts[c]; i++)
            for (int j = 0; j < g->dim; j++) zt[(size_t)c * g->dim + j] += e[(size_t)i * g->dim + j] / counts[c];
    }
    free(e);
    free(g->zt);
    g->zt = zt;
    return 0;
}

/* Ada's pick for request q whose results sit at items first .. first + n_r - 1. */
static int ada_pick(genie *g, const genie_request *rq, int first, genie_result *res)
{
    const int n = g->o.n_r;
    if (!g->zt) return err_set("generator: GeNIe-Ada request before the class means were set");
    if (!rq->source) return err_set("generator: a GeNIe-Ada request needs a source image");
    for (int i = 0; i < n; i++) image_from_planar(g->items[first + i].out, g->W, g->H, g->emb_img[i].rgb, g->W);
    /* the source as the classifier sees real data: its own decoded pixels */
    if (backbone_embed(g->bb, g->emb_img, n, g->emb)) return -1;
    float *zs = g->emb + (size_t)n * g->dim;
    if (backbone_embed(g->bb, rq->source, 1, zs)) return -1;
    int k = ada_choose(g->emb, n, g->dim, zs, g->zt + (size_t)rq->target * g->dim, res->gaps);
    res->ada_fallback = k < 0;
    res->n_gaps = k < 0 ? 0 : n - 1;
    if (k < 0) {
        k = 0;
        for (int i = 1; i < n; i++)
            if (fabs(g->o.r_set[i] - g->o.ada_fallback_r) < fabs(g->o.r_set[k] - g->o.ada_fallback_r)) k = i;
    }
    res->r = g->o.r_set[k];
    memcpy(res->image, g->items[first + k].out, sizeof(float) * g->nimg);
    return 0;
}

int genie_run(genie *g, const genie_request *rq, int n, genie_result *res)
{
    int cost = 0;
    for (int q = 0; q < n; q++) {
        if (rq[q].target < 0 || rq[q].target >= g->classes)
            return err_set("generator: request %d: target class %d (0..%d)", q, rq[q].target, g->classes - 1);
        if (rq[q].r == GENIE_R_ADA && !g->bb) return err_set("generator: request %d: GeNIe-Ada needs a backbone", q);
        if (rq[q].r == GENIE_R_ADA ? !rq[q].source : !(rq[q].r >= 0 && rq[q].r <= 1))
            return err_set("generator: request %d: r = %g", q, rq[q].r);
        if (rq[q].r == 0 && !rq[q].source) return err_set("generator: request %d: a round trip needs a source image", q);
        cost += genie_request_cost(g, &rq[q]);
    }
    if (cost > g->o.eo.max_batch) return err_set("generator: %d engine items in one call (at most %d)", cost, g->o.eo.max_batch);
    /* Round trips (r == 0) and generations run as two engine calls; a request's items are contiguous. */
    for (int pass = 0; pass < 2; pass++) {
        int k = 0;
        for (int q = 0; q < n; q++) {
            if ((rq[q].r == 0) != (pass == 0)) continue;
            float *src = NULL;
            if (rq[q].source) {
                src = g->src + (size_t)k * g->nimg;
                if (image_to_planar(rq[q].source, g->W, g->H, src)) return -1;
            }
            int m = genie_request_cost(g, &rq[q]);
            for (int i = 0; i < m; i++, k++) {
                engine_item *it = &g->items[k];
                memset(it, 0, sizeof *it);
                it->image = src;
                it->prompt = g->prompt[rq[q].target];
                it->r = rq[q].r == GENIE_R_ADA ? g->o.r_set[i] : rq[q].r;
                it->seed = rq[q].seed;
                it->stream = rq[q].stream;   /* the same noise at every r of an Ada pair */
                it->out = g->out + (size_t)k * g->nimg;
                g->item_req[k] = q;
            }
        }
        if (!k) continue;
        if ((pass == 0 ? engine_roundtrip(g->e, g->items, k) : engine_img2img(g->e, g->items, k))) return -1;
        for (int i = 0; i < k;) {
            int q = g->item_req[i];
            res[q].n_gaps = res[q].ada_fallback = res[q].nonfinite = 0;
            int m = genie_request_cost(g, &rq[q]);
            for (int j = 0; j < m; j++) res[q].nonfinite |= g->items[i + j].nonfinite;
            if (res[q].nonfinite) {
                /* one of its items went non-finite (engine's drop_nonfinite): the request is dropped alone */
                res[q].r = rq[q].r;
                i += m;
            } else if (rq[q].r == GENIE_R_ADA) {
                if (ada_pick(g, &rq[q], i, &res[q])) return -1;
                i += g->o.n_r;
            } else {
                res[q].r = rq[q].source ? rq[q].r : 1.0;
                memcpy(res[q].image, g->items[i].out, sizeof(float) * g->nimg);
                i++;
            }
        }
    }
    return 0;
}
