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
    ada *ada;                   /* GeNIe-Ada's rule on bb; NULL without a backbone */
    int classes, W, H;
    size_t nimg;
    int *prompt;                /* [classes] engine prompt handles */
    float *src, *out;           /* [max_batch, nimg] planar sources and engine outputs */
    engine_item *items;         /* [max_batch] */
    int *item_req;              /* [max_batch] request of each engine item */
};

int genie_template_ok(const char *tmpl) { return strstr(tmpl, "{}") != NULL; }

static int make_prompt(const char *tmpl, const char *words, char *out, size_t n)
{
    const char *hole = strstr(tmpl, "{}");
    if (!hole) return err_set("prompt template \"%s\" has no {} for the class's words (every class would get the same "
                              "prompt)", tmpl);
    int len = snprintf(out, n, "%.*s%s%s", (int)(hole - tmpl), tmpl, words, hole + 2);
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
    if (!g->prompt || !g->src || !g->out || !g->items || !g->item_req) {
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
        if (!(g->ada = ada_new(g->bb, classes, g->W, g->H, o->r_set, o->n_r, o->ada_fallback_r))) goto fail;
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
    ada_free(g->ada);
    backbone_free(g->bb);
    free(g->prompt);
    free(g->src);
    free(g->out);
    free(g->items);
    free(g->item_req);
    free(g);
}

int genie_image_size(const genie *g, int *w, int *h)
{
    *w = g->W;
    *h = g->H;
    return 0;
}

size_t genie_image_floats(const genie *g) { return g->nimg; }

int genie_opts_cost(const genie_opts *o, const genie_request *rq) { return rq->r == GENIE_R_ADA ? o->n_r : 1; }

int genie_request_cost(const genie *g, const genie_request *rq) { return genie_opts_cost(&g->o, rq); }

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
    if (!g->ada) return err_set("generator: no backbone (GeNIe-Ada needs a classifier cfg and weights)");
    return ada_set_class_means(g->ada, imgs, counts);
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
                int k = ada_pick(g->ada, g->out + (size_t)i * g->nimg, rq[q].source, rq[q].target, res[q].gaps,
                                 &res[q].ada_fallback);
                if (k < 0) return -1;
                res[q].n_gaps = res[q].ada_fallback ? 0 : g->o.n_r - 1;
                res[q].r = g->o.r_set[k];
                memcpy(res[q].image, g->items[i + k].out, sizeof(float) * g->nimg);
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
