#include "src/net/cfgcheck.h"
#include "common/err.h"
#include "common/kv.h"
#include "common/num.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define INF HUGE_VAL
#define I(k, lo, hi) {k, CFG_INT, lo, hi, 0, NULL}
#define IREQ(k, lo, hi) {k, CFG_INT, lo, hi, CFG_REQUIRED, NULL}
#define B(k) {k, CFG_BOOL, 0, 1, 0, NULL}
#define F(k, lo, hi) {k, CFG_FLOAT, lo, hi, 0, NULL}
#define FO(k, lo, hi, open) {k, CFG_FLOAT, lo, hi, open, NULL}
#define W(k, words) {k, CFG_WORD, 0, 0, 0, words}
#define ACT "logistic|loggy|relu|elu|selu|relie|plse|hardtan|lhtan|linear|ramp|leaky|tanh|stair"

/* Every section and key libdarknet's parser (pjreddie, 2018) reads, with the values that make sense. The ranges are
 * sanity bounds; what depends on the layer's input (kernel against input size, groups against channels, route
 * indexes) is checked in finish() as the shapes are followed. */
static const cfg_section TABLE[] = {
    {"net", "network", CFG_NET, {
        I("batch", 1, 65536), I("subdivisions", 1, 65536),
        /* time_steps multiplies the batch for recurrent layers, which genie does not train */
        I("time_steps", 1, 1), B("notruth"), B("random"),
        B("adam"), FO("B1", 0, 1, CFG_OPEN_HI), FO("B2", 0, 1, CFG_OPEN_HI), FO("eps", 0, 1, CFG_OPEN_LO),
        IREQ("height", 1, 65536), IREQ("width", 1, 65536),
        /* genie's loader makes RGB or luma inputs only */
        {"channels", CFG_WORD, 0, 0, CFG_REQUIRED, "1|3"},
        I("inputs", 1, INF),
        I("max_crop", 1, 65536), I("min_crop", 1, 65536), FO("max_ratio", 0, INF, CFG_OPEN_LO),
        FO("min_ratio", 0, INF, CFG_OPEN_LO), B("center"), F("clip", 0, INF),
        F("angle", 0, 360), FO("aspect", 0, INF, CFG_OPEN_LO), FO("saturation", 0, INF, CFG_OPEN_LO),
        FO("exposure", 0, INF, CFG_OPEN_LO), F("hue", 0, 1),
        F("learning_rate", 0, INF), FO("momentum", 0, 1, CFG_OPEN_HI), F("decay", 0, 1),
        W("policy", "constant|step|steps|exp|poly|sigmoid|random"), I("burn_in", 0, INF), F("power", 0, INF),
        I("max_batches", 0, INF), I("step", 1, INF), F("scale", 0, INF), FO("gamma", 0, INF, CFG_OPEN_LO),
        {"steps", CFG_INTS, 0, INF, 0, NULL}, {"scales", CFG_FLOATS, 0, INF, 0, NULL},
        /* genie's own keys (netio.c's read_extras) */
        {"augment", CFG_WORD, 0, 0, CFG_NOCASE, "darknet|weak|strong"},
        FO("crop_scale", 0, 1, CFG_OPEN_LO),
        {"gen_augment", CFG_WORD, 0, 0, CFG_NOCASE, "same|none|darknet|weak|strong"},
        {"tail_augment", CFG_WORD, 0, 0, CFG_NOCASE, "same|none|darknet|weak|strong"}, B("flip"), B("mixup"), B("cutmix"),
        FO("label_smooth_eps", 0, 1, CFG_OPEN_HI)}},
    /* read for every layer section by parse_network_cfg itself */
    {"*", NULL, CFG_COMMON, {
        B("truth"), B("onlyforward"), B("stopbackward"), B("dontsave"), B("dontload"), I("numload", 0, INF),
        B("dontloadscales"), F("learning_rate", 0, INF), F("smooth", 0, 1)}},
    {"convolutional", "conv", CFG_CONV, {
        I("filters", 1, INF), I("size", 1, INF), I("stride", 1, INF), B("pad"), I("padding", 0, INF),
        I("groups", 1, INF), W("activation", ACT), B("batch_normalize"), B("binary"), B("xnor"), B("flipped"),
        F("dot", -INF, INF)}},
    {"deconvolutional", "deconv", CFG_DECONV, {
        I("filters", 1, INF), I("size", 1, INF), I("stride", 1, INF), B("pad"), I("padding", 0, INF),
        W("activation", ACT), B("batch_normalize")}},
    {"local", NULL, CFG_LOCAL, {
        I("filters", 1, INF), I("size", 1, INF), I("stride", 1, INF), B("pad"), W("activation", ACT)}},
    {"connected", "conn", CFG_CONNECTED, {I("output", 1, INF), W("activation", ACT), B("batch_normalize")}},
    {"maxpool", "max", CFG_MAXPOOL, {I("size", 1, INF), I("stride", 1, INF), I("padding", 0, INF)}},
    {"avgpool", "avg", CFG_AVGPOOL, {{0}}},
    {"softmax", "soft", CFG_SOFTMAX, {
        I("groups", 1, INF), FO("temperature", 0, INF, CFG_OPEN_LO), {"tree", CFG_FILE, 0, 0, 0, NULL},
        B("spatial"), B("noloss")}},
    {"dropout", NULL, CFG_DROPOUT, {FO("probability", 0, 1, CFG_OPEN_HI)}},
    {"batchnorm", NULL, CFG_BATCHNORM, {{0}}},
    {"route", NULL, CFG_ROUTE, {{"layers", CFG_INTS, -INF, INF, CFG_REQUIRED, NULL}}},
    {"shortcut", NULL, CFG_SHORTCUT, {
        IREQ("from", -INF, INF), W("activation", ACT), F("alpha", -INF, INF), F("beta", -INF, INF)}},
    {"cost", NULL, CFG_COST, {
        W("type", "sse|masked|smooth|L1|seg|wgan"), F("scale", 0, INF), F("ratio", 0, 1), F("noobj", 0, INF),
        F("thresh", 0, INF)}},
    {"activation", NULL, CFG_SAME, {W("activation", ACT)}},
    {"logistic", NULL, CFG_SAME, {{0}}},
    {"l2norm", NULL, CFG_SAME, {{0}}},
    {"normalization", "lrn", CFG_NORMALIZATION, {
        I("size", 1, INF), F("alpha", 0, INF), F("beta", 0, INF), FO("kappa", 0, INF, CFG_OPEN_LO)}},
    {"upsample", NULL, CFG_UPSAMPLE, {I("stride", -INF, INF), F("scale", -INF, INF)}},
    {"reorg", NULL, CFG_REORG, {I("stride", 1, INF), B("reverse"), B("flatten"), I("extra", 0, INF)}},
    {"crop", NULL, CFG_CROP, {
        I("crop_height", 1, INF), I("crop_width", 1, INF), B("flip"), F("angle", 0, 360),
        FO("saturation", 0, INF, CFG_OPEN_LO), FO("exposure", 0, INF, CFG_OPEN_LO), B("noadjust"),
        F("shift", 0, 1)}},
    /* parsed by libdarknet but meaningless for (or crashing) a classifier trained on images */
    {"region", NULL, CFG_UNSUPPORTED, {{0}}}, {"yolo", NULL, CFG_UNSUPPORTED, {{0}}},
    {"detection", NULL, CFG_UNSUPPORTED, {{0}}}, {"iseg", NULL, CFG_UNSUPPORTED, {{0}}},
    {"rnn", NULL, CFG_UNSUPPORTED, {{0}}}, {"gru", NULL, CFG_UNSUPPORTED, {{0}}},
    {"lstm", NULL, CFG_UNSUPPORTED, {{0}}}, {"crnn", NULL, CFG_UNSUPPORTED, {{0}}},
};
#define NSECT ((int)(sizeof TABLE / sizeof TABLE[0]))

const cfg_section *cfgcheck_table(int *n)
{
    *n = NSECT;
    return TABLE;
}

/* ---- one section as read ---- */

typedef struct {
    const cfg_key *k;
    char *val;
    int line;
} kv;

typedef struct {
    const cfg_section *s;
    char head[64]; /* the header as written, without brackets */
    int line, n;
    kv kv[2 * CFG_MAX_KEYS];
} sect;

/* A layer's output as libdarknet sets it: w, h, c are 0 when the layer outputs a flat vector. */
typedef struct {
    long long w, h, c, n;
    int line;
} shape;

typedef struct {
    const char *path;
    shape in;         /* the next layer's input */
    shape *out;       /* every layer's output, for route and shortcut */
    int nl, cap;
    long long batch;  /* per forward pass: batch / subdivisions */
    int adam;
    double bytes, workspace, big_bytes;
    int big_line;
    char big_head[64];
    const char *big_key;
} state;

static const cfg_key *key_in(const cfg_section *s, const char *key)
{
    for (int i = 0; i < CFG_MAX_KEYS && s->keys[i].key; i++)
        if (!strcmp(s->keys[i].key, key)) return &s->keys[i];
    return NULL;
}

static const cfg_section *section_named(const char *name)
{
    for (int i = 0; i < NSECT; i++)
        if (strcmp(TABLE[i].name, "*") && (!strcmp(TABLE[i].name, name) || (TABLE[i].alias && !strcmp(TABLE[i].alias, name))))
            return &TABLE[i];
    return NULL;
}

static const cfg_section *common_keys(void)
{
    for (int i = 0; i < NSECT; i++)
        if (TABLE[i].kind == CFG_COMMON) return &TABLE[i];
    return NULL;
}

static const kv *find(const sect *s, const char *key)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->kv[i].k->key, key)) return &s->kv[i];
    return NULL;
}

/* Integers and numbers as the one parser has them (darknet's atoi/atof would read "12x" as 12 and "x" as 0). */
static int parse_ll(const char *v, long long *out)
{
    int64_t x;
    int rc = num_int64(v, INT64_MIN, INT64_MAX, &x);
    if (rc == 0) *out = x;
    return rc;
}

static int parse_d(const char *v, double *out) { return num_double(v, -INF, INF, out); }

static long long geti(const sect *s, const char *key, long long def)
{
    const kv *v = find(s, key);
    long long x = def;
    if (v) parse_ll(v->val, &x); /* checked by check_value when it was read */
    return x;
}

/* "path:line: [section] key message": the line of key when the section has it, else the section's header line. */
static int serr(const state *st, const sect *s, const char *key, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int serr(const state *st, const sect *s, const char *key, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const kv *v = key ? find(s, key) : NULL;
    return err_set("%s:%d: [%s] %s%s%s", st->path, v ? v->line : s->line, s->head, key ? key : "", key ? " " : "", msg);
}

/* ---- values ---- */

static void range_text(const cfg_key *k, char *buf, size_t n)
{
    int olo = k->flags & CFG_OPEN_LO, ohi = k->flags & CFG_OPEN_HI;
    double lo = k->lo, hi = k->hi;
    if (k->type == CFG_INT || k->type == CFG_INTS) {
        if (lo < INT_MIN) lo = -INF;
        if (hi > INT_MAX) hi = INF;
    }
    if (lo == -INF && hi == INF && (k->type == CFG_INT || k->type == CFG_INTS)) snprintf(buf, n, "be in %d..%d", INT_MIN, INT_MAX);
    else if (lo == -INF && hi == INF) snprintf(buf, n, "be finite");
    else if (lo == hi) snprintf(buf, n, "be %g", lo);
    else if (hi == INF) snprintf(buf, n, "be %s %g", olo ? ">" : ">=", lo);
    else if (lo == -INF) snprintf(buf, n, "be %s %g", ohi ? "<" : "<=", hi);
    else if (k->type == CFG_INT || k->type == CFG_INTS) snprintf(buf, n, "be in %g..%g", lo, hi);
    else snprintf(buf, n, "be in %c%g, %g%c", olo ? '(' : '[', lo, hi, ohi ? ')' : ']');
}

static int in_range(const cfg_key *k, double x)
{
    if (k->type == CFG_INT || k->type == CFG_INTS)
        if (x < INT_MIN || x > INT_MAX) return 0;
    if (x < k->lo || (x == k->lo && (k->flags & CFG_OPEN_LO))) return 0;
    if (x > k->hi || (x == k->hi && (k->flags & CFG_OPEN_HI))) return 0;
    return 1;
}

static int list_count(const char *v)
{
    int n = 1;
    for (; *v; v++) n += *v == ',';
    return n;
}

static int check_value(const state *st, const sect *s, const kv *v)
{
    const cfg_key *k = v->k;
    char rng[64];
    range_text(k, rng, sizeof rng);
    long long i = 0;
    double d = 0;
    switch (k->type) {
    case CFG_INT: {
        int rc = parse_ll(v->val, &i);
        if (rc == NUM_SYNTAX) return serr(st, s, k->key, "must be an integer, got '%s'", v->val);
        if (rc || i < INT_MIN || i > INT_MAX) return serr(st, s, k->key, "must fit in an int, got %s", v->val);
        if (!in_range(k, (double)i)) return serr(st, s, k->key, "must %s, got %s", rng, v->val);
        return 0;
    }
    case CFG_BOOL:
        if (strcmp(v->val, "0") && strcmp(v->val, "1")) return serr(st, s, k->key, "must be 0 or 1, got '%s'", v->val);
        return 0;
    case CFG_FLOAT:
        if (parse_d(v->val, &d)) return serr(st, s, k->key, "must be a number, got '%s'", v->val);
        if (!in_range(k, d)) return serr(st, s, k->key, "must %s, got %s", rng, v->val);
        return 0;
    case CFG_WORD: {
        size_t n = strlen(v->val);
        for (const char *w = k->words; *w;) {
            const char *e = strchr(w, '|');
            size_t l = e ? (size_t)(e - w) : strlen(w);
            if (l == n && !((k->flags & CFG_NOCASE) ? strncasecmp(w, v->val, n) : strncmp(w, v->val, n))) return 0;
            w += l + (e != NULL);
        }
        char list[256];
        snprintf(list, sizeof list, "%s", k->words);
        for (char *p = list; (p = strchr(p, '|'));) *p = '/';
        return serr(st, s, k->key, "must be one of %s, got '%s'", list, v->val);
    }
    case CFG_INTS:
    case CFG_FLOATS: {
        /* darknet walks these lists with strchr(..., ',') + 1 and atoi: an empty or non-numeric entry is misread */
        char *buf = strdup(v->val);
        if (!buf) return err_set("%s: out of memory", st->path);
        int idx = 0, rc = 0;
        for (char *p = buf, *e; rc == 0; p = e + 1, idx++) {
            if ((e = strchr(p, ','))) *e = 0;
            int bad = k->type == CFG_INTS ? parse_ll(p, &i) : parse_d(p, &d);
            if (bad)
                rc = serr(st, s, k->key, "must be a comma-separated list of %s, got '%s' (entry %d)",
                          k->type == CFG_INTS ? "integers" : "numbers", v->val, idx + 1);
            else if (!in_range(k, k->type == CFG_INTS ? (double)i : d))
                rc = serr(st, s, k->key, "entries must %s, got %s (entry %d)", rng, p, idx + 1);
            if (!e) break;
        }
        free(buf);
        return rc;
    }
    case CFG_FILE:
        if (access(v->val, R_OK) != 0) return serr(st, s, k->key, "'%s': %s", v->val, strerror(errno));
        return 0;
    }
    return 0;
}

/* ---- shapes ---- */

static int is_image(shape x) { return x.w > 0 && x.h > 0 && x.c > 0; }

static int need_image(const state *st, const sect *s)
{
    if (is_image(st->in)) return 0;
    return serr(st, s, NULL, "needs an image input, but the layer before it (line %d) outputs %lld flat values",
                st->in.line, st->in.n);
}

/* libdarknet counts the values of one buffer in an int. */
static int fits(const state *st, const sect *s, const char *key, const char *what, double count)
{
    if (count <= INT_MAX) return 0;
    return serr(st, s, key, "gives %.0f %s, more than libdarknet can count (%d)", count, what, INT_MAX);
}

/* Adds a layer: its output, the floats libdarknet allocates for it when training (output and delta, weights and
 * their updates, batch-norm buffers) and its im2col workspace (one, shared, sized by the largest layer). */
static int add_layer(state *st, const sect *s, shape out, double weights, double extra, double work,
                     const char *key)
{
    if (out.n < 1) return serr(st, s, NULL, "has no outputs");
    double outs = (double)st->batch * out.n;
    if (fits(st, s, key, "output values for a batch", outs) || fits(st, s, key, "weights", weights)) return -1;
    double floats = 2 * outs + (st->adam ? 4 : 2) * weights + extra;
    double bytes = floats * sizeof(float);
    st->bytes += bytes;
    if (work * sizeof(float) > st->workspace) st->workspace = work * sizeof(float);
    if (bytes + work * sizeof(float) > st->big_bytes) {
        st->big_bytes = bytes + work * sizeof(float);
        st->big_line = s->line;
        snprintf(st->big_head, sizeof st->big_head, "%s", s->head);
        st->big_key = key;
    }
    if (st->nl == st->cap) {
        int cap = st->cap ? 2 * st->cap : 16;
        shape *o = realloc(st->out, cap * sizeof *o);
        if (!o) return err_set("%s: out of memory", st->path);
        st->out = o, st->cap = cap;
    }
    out.line = s->line;
    st->out[st->nl++] = out;
    st->in = out;
    return 0;
}

/* A route/shortcut index as libdarknet resolves it: negative counts back from this layer. */
static int layer_index(const state *st, const sect *s, const char *key, long long v, int *idx)
{
    long long i = v < 0 ? st->nl + v : v;
    if (i < 0 || i >= st->nl)
        return serr(st, s, key, "%lld points at layer %lld, but this is layer %d: it must name an earlier one (0..%d)",
                    v, i, st->nl, st->nl - 1);
    *idx = (int)i;
    return 0;
}

static int finish_net(state *st, const sect *s)
{
    long long batch = geti(s, "batch", 1), sub = geti(s, "subdivisions", 1);
    if (sub > batch) return serr(st, s, "subdivisions", "must be <= batch (%lld), got %lld", batch, sub);
    if (batch % sub)
        return serr(st, s, "subdivisions", "must divide batch (%lld), got %lld: darknet would drop %lld images of each batch",
                    batch, sub, batch % sub);
    shape in = {geti(s, "width", 0), geti(s, "height", 0), geti(s, "channels", 0), 0, s->line};
    in.n = in.w * in.h * in.c;
    if (find(s, "inputs") && geti(s, "inputs", 0) != in.n)
        return serr(st, s, "inputs", "must be width*height*channels (%lld) or absent, got %lld", in.n, geti(s, "inputs", 0));
    const kv *policy = find(s, "policy");
    if (policy && !strcmp(policy->val, "steps")) {
        if (!find(s, "steps")) return serr(st, s, "steps", "is missing: policy=steps needs steps and scales");
        if (!find(s, "scales")) return serr(st, s, "scales", "is missing: policy=steps needs steps and scales");
        int ns = list_count(find(s, "steps")->val), nc = list_count(find(s, "scales")->val);
        if (ns != nc) return serr(st, s, "scales", "has %d values but steps has %d", nc, ns);
    }
    st->batch = batch / sub;
    st->adam = geti(s, "adam", 0) != 0;
    if (fits(st, s, "batch", "input values (batch*height*width*channels)", (double)st->batch * in.n)) return -1;
    st->in = in;
    st->bytes += 2.0 * st->batch * in.n * sizeof(float);
    return 0;
}

static int finish_layer(state *st, const sect *s)
{
    shape in = st->in, out = in;
    double weights = 0, extra = 0, work = 0;
    const char *key = NULL;
    long long maxwh = in.w > in.h ? in.w : in.h;
    switch (s->s->kind) {
    case CFG_CONV:
    case CFG_LOCAL: {
        if (need_image(st, s)) return -1;
        long long f = geti(s, "filters", 1), k = geti(s, "size", 1), str = geti(s, "stride", 1);
        long long pad = s->s->kind == CFG_CONV ? geti(s, "padding", 0) : 0, g = geti(s, "groups", 1);
        if (geti(s, "pad", 0)) pad = k / 2;
        if (k > in.w + 2 * pad || k > in.h + 2 * pad)
            return serr(st, s, "size", "%lld is larger than the %lldx%lld input padded by %lld", k, in.w, in.h, pad);
        /* past 2*side+1 some kernel taps only ever see padding: a typo, and gigabytes of weights */
        if (k > 2 * maxwh + 1)
            return serr(st, s, "size", "%lld is larger than its %lldx%lld input can use (at most %lld)", k, in.w,
                        in.h, 2 * maxwh + 1);
        if (in.c % g) return serr(st, s, "groups", "%lld does not divide the input's %lld channels", g, in.c);
        if (f % g) return serr(st, s, "groups", "%lld does not divide filters (%lld)", g, f);
        out = (shape){(in.w + 2 * pad - k) / str + 1, (in.h + 2 * pad - k) / str + 1, f, 0, 0};
        out.n = out.w * out.h * out.c;
        weights = (double)in.c / g * f * k * k;
        if (s->s->kind == CFG_LOCAL) weights *= (double)out.w * out.h;
        work = (double)out.w * out.h * k * k * in.c / g;
        extra = geti(s, "batch_normalize", 0) ? 2.0 * st->batch * out.n + 8.0 * f : 2.0 * f;
        key = "filters";
        break;
    }
    case CFG_DECONV: {
        if (need_image(st, s)) return -1;
        long long f = geti(s, "filters", 1), k = geti(s, "size", 1), str = geti(s, "stride", 1);
        long long pad = geti(s, "pad", 0) ? k / 2 : geti(s, "padding", 0);
        out = (shape){(in.w - 1) * str + k - 2 * pad, (in.h - 1) * str + k - 2 * pad, f, 0, 0};
        if (out.w < 1 || out.h < 1)
            return serr(st, s, "padding", "%lld with size %lld gives a %lldx%lld output", pad, k, out.w, out.h);
        out.n = out.w * out.h * out.c;
        weights = (double)in.c * f * k * k;
        work = (double)in.w * in.h * k * k * f;
        extra = geti(s, "batch_normalize", 0) ? 2.0 * st->batch * out.n + 8.0 * f : 2.0 * f;
        key = "filters";
        break;
    }
    case CFG_CONNECTED: {
        long long o = geti(s, "output", 1);
        out = (shape){1, 1, o, o, 0};
        weights = (double)in.n * o;
        extra = geti(s, "batch_normalize", 0) ? 2.0 * st->batch * o + 8.0 * o : 2.0 * o;
        key = "output";
        break;
    }
    case CFG_MAXPOOL: {
        if (need_image(st, s)) return -1;
        long long str = geti(s, "stride", 1), k = geti(s, "size", str), pad = geti(s, "padding", k - 1);
        if (k > in.w + pad || k > in.h + pad)
            return serr(st, s, "size", "%lld is larger than the %lldx%lld input padded by %lld", k, in.w, in.h, pad);
        out = (shape){(in.w + pad - k) / str + 1, (in.h + pad - k) / str + 1, in.c, 0, 0};
        out.n = out.w * out.h * out.c;
        extra = (double)st->batch * out.n; /* argmax indexes */
        break;
    }
    case CFG_AVGPOOL:
        if (need_image(st, s)) return -1;
        out = (shape){1, 1, in.c, in.c, 0};
        break;
    case CFG_SOFTMAX: {
        long long g = geti(s, "groups", 1);
        if (in.n % g) return serr(st, s, "groups", "%lld does not divide the layer's %lld inputs", g, in.n);
        out = (shape){0, 0, 0, in.n, 0};
        break;
    }
    case CFG_COST:
        out = (shape){0, 0, 0, in.n, 0};
        break;
    case CFG_DROPOUT:
    case CFG_SAME:
        break;
    case CFG_BATCHNORM:
    case CFG_NORMALIZATION:
        if (need_image(st, s)) return -1;
        extra = 4.0 * st->batch * in.n;
        break;
    case CFG_ROUTE: {
        const char *p = find(s, "layers")->val;
        shape first = {0};
        for (int j = 0;; j++) {
            int idx = 0;
            long long li = 0;
            char *entry = strndup(p, strcspn(p, ","));
            if (!entry) return err_set("%s: out of memory", st->path);
            parse_ll(entry, &li); /* each entry checked by check_value */
            free(entry);
            if (layer_index(st, s, "layers", li, &idx)) return -1;
            shape o = st->out[idx];
            /* as libdarknet: channels concatenated while each input has the first one's size, else flat */
            if (j == 0) {
                out = first = o;
            } else {
                if (o.w == first.w && o.h == first.h) out.c += o.c;
                else out.w = out.h = out.c = 0;
                out.n += o.n;
            }
            if (!(p = strchr(p, ','))) break;
            p++;
        }
        break;
    }
    case CFG_SHORTCUT: {
        int idx = 0;
        if (layer_index(st, s, "from", geti(s, "from", 0), &idx) || need_image(st, s)) return -1;
        shape f = st->out[idx];
        /* libdarknet adds the two by sampling one with the integer ratio of their sizes (and divides by them) */
        if (!is_image(f) || f.w / in.w != f.h / in.h || in.w / f.w != in.h / f.h)
            return serr(st, s, "from", "layer %d's %lldx%lldx%lld output cannot be added to this %lldx%lldx%lld input",
                        idx, f.w, f.h, f.c, in.w, in.h, in.c);
        break;
    }
    case CFG_UPSAMPLE: {
        if (need_image(st, s)) return -1;
        long long str = geti(s, "stride", 2);
        if (str == 0) return serr(st, s, "stride", "must not be 0");
        if (str < 0 && (in.w % -str || in.h % -str))
            return serr(st, s, "stride", "%lld: %lld does not divide the %lldx%lld input", str, -str, in.w, in.h);
        out = str > 0 ? (shape){in.w * str, in.h * str, in.c, 0, 0} : (shape){in.w / -str, in.h / -str, in.c, 0, 0};
        out.n = out.w * out.h * out.c;
        break;
    }
    case CFG_REORG: {
        if (need_image(st, s)) return -1;
        long long str = geti(s, "stride", 1);
        if (geti(s, "reverse", 0)) {
            if (in.c % (str * str))
                return serr(st, s, "stride", "%lld: %lld does not divide the input's %lld channels", str, str * str, in.c);
            out = (shape){in.w * str, in.h * str, in.c / (str * str), 0, 0};
        } else {
            if (in.w % str || in.h % str)
                return serr(st, s, "stride", "%lld does not divide the %lldx%lld input", str, in.w, in.h);
            out = (shape){in.w / str, in.h / str, in.c * str * str, 0, 0};
        }
        out.n = out.w * out.h * out.c;
        if (geti(s, "extra", 0)) out = (shape){0, 0, 0, in.n + geti(s, "extra", 0), 0};
        break;
    }
    case CFG_CROP: {
        if (need_image(st, s)) return -1;
        long long ch = geti(s, "crop_height", 1), cw = geti(s, "crop_width", 1);
        /* libdarknet draws the offset with rand() % (h - crop_height + 1) */
        if (ch > in.h) return serr(st, s, "crop_height", "%lld is larger than the input's height %lld", ch, in.h);
        if (cw > in.w) return serr(st, s, "crop_width", "%lld is larger than the input's width %lld", cw, in.w);
        out = (shape){cw, ch, in.c, cw * ch * in.c, 0};
        break;
    }
    default:
        break;
    }
    return add_layer(st, s, out, weights, extra, work, key);
}

static int finish(state *st, sect *s)
{
    for (int i = 0; i < CFG_MAX_KEYS && s->s->keys[i].key; i++)
        if ((s->s->keys[i].flags & CFG_REQUIRED) && !find(s, s->s->keys[i].key))
            return serr(st, s, s->s->keys[i].key, "is missing%s",
                        s->s->kind == CFG_NET ? ": genie needs the input's height, width and channels" : "");
    return s->s->kind == CFG_NET ? finish_net(st, s) : finish_layer(st, s);
}

static void sect_clear(sect *s)
{
    for (int i = 0; i < s->n; i++) free(s->kv[i].val);
    s->n = 0;
}

/* darknet's read_cfg strips spaces, tabs and newlines everywhere in a line (not '\r'). */
static void strip(char *s)
{
    char *d = s;
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n') *d++ = *s;
    *d = 0;
}

static int unknown_key(const state *st, const sect *s, const char *key, int lineno)
{
    const char *cands[2 * CFG_MAX_KEYS];
    int n = 0;
    const cfg_section *lists[2] = {s->s, s->s->kind == CFG_NET ? NULL : common_keys()};
    for (int l = 0; l < 2; l++)
        for (int i = 0; lists[l] && i < CFG_MAX_KEYS && lists[l]->keys[i].key; i++) cands[n++] = lists[l]->keys[i].key;
    const char *best = kv_nearest(key, cands, n);
    char hint[96] = "";
    if (best) snprintf(hint, sizeof hint, " (did you mean '%s'?)", best);
    return err_set("%s:%d: [%s] %s is not a key of [%s]%s; libdarknet would ignore it", st->path, lineno, s->head, key,
                   s->s->name, hint);
}

static int read_line(state *st, sect *cur, int *have, int lineno, char *s)
{
    if (strchr(s, '\r'))
        return err_set("%s:%d: the line ends in a carriage return (a Windows file?): libdarknet does not strip it",
                       st->path, lineno);
    if (*s == '[') {
        size_t l = strlen(s);
        if (*have && finish(st, cur)) return -1;
        sect_clear(cur);
        if (l < 3 || s[l - 1] != ']')
            return err_set("%s:%d: '%s' is not a section header like [convolutional]", st->path, lineno, s);
        s[l - 1] = 0;
        const cfg_section *sec = section_named(s + 1);
        if (!sec) {
            const char *names[2 * NSECT];
            int n = 0;
            for (int i = 0; i < NSECT; i++) {
                names[n++] = TABLE[i].name;
                if (TABLE[i].alias) names[n++] = TABLE[i].alias;
            }
            const char *best = kv_nearest(s + 1, names, n);
            char hint[96] = "";
            if (best) snprintf(hint, sizeof hint, " (did you mean [%s]?)", best);
            return err_set("%s:%d: unknown section [%s]%s", st->path, lineno, s + 1, hint);
        }
        if (!*have && sec->kind != CFG_NET)
            return err_set("%s:%d: the first section must be [net], got [%s]", st->path, lineno, s + 1);
        if (*have && sec->kind == CFG_NET)
            return err_set("%s:%d: [%s] may only be the first section", st->path, lineno, s + 1);
        if (sec->kind == CFG_UNSUPPORTED)
            return err_set("%s:%d: [%s] is a detection or recurrent layer; genie trains image classifiers and does "
                           "not support it", st->path, lineno, s + 1);
        cur->s = sec;
        cur->line = lineno;
        snprintf(cur->head, sizeof cur->head, "%s", s + 1);
        *have = 1;
        return 0;
    }
    if (!*have) return err_set("%s:%d: '%s' outside any section", st->path, lineno, s);
    char *eq = strchr(s, '=');
    if (!eq) return err_set("%s:%d: [%s] '%s' is not key=value", st->path, lineno, cur->head, s);
    *eq = 0;
    const char *key = s, *val = eq + 1;
    if (!*key) return err_set("%s:%d: [%s] '=%s' has no key", st->path, lineno, cur->head, val);
    const cfg_key *k = key_in(cur->s, key);
    if (!k && cur->s->kind != CFG_NET) k = key_in(common_keys(), key);
    if (!k) return unknown_key(st, cur, key, lineno);
    const kv *prev = find(cur, key);
    if (prev)
        return err_set("%s:%d: [%s] %s is given twice (lines %d and %d); darknet would use the first", st->path,
                       lineno, cur->head, key, prev->line, lineno);
    if (!*val) return err_set("%s:%d: [%s] %s has no value", st->path, lineno, cur->head, key);
    if (cur->n == (int)(sizeof cur->kv / sizeof cur->kv[0]))
        return err_set("%s:%d: [%s] too many keys", st->path, lineno, cur->head);
    kv *v = &cur->kv[cur->n];
    if (!(v->val = strdup(val))) return err_set("%s: out of memory", st->path);
    v->k = k;
    v->line = lineno;
    cur->n++;
    return check_value(st, cur, v);
}

static double phys_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (double)pages * size : INF;
}

int cfgcheck_file(const char *cfg)
{
    FILE *f = fopen(cfg, "r");
    if (!f) return err_set("%s: %s", cfg, strerror(errno));
    state st = {.path = cfg};
    sect *cur = calloc(1, sizeof *cur);
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, have = 0, rc = 0;
    if (!cur) rc = err_set("%s: out of memory", cfg);
    while (rc == 0 && getline(&line, &cap, f) >= 0) {
        lineno++;
        strip(line);
        if (!*line || *line == '#' || *line == ';') continue;
        rc = read_line(&st, cur, &have, lineno, line);
    }
    if (rc == 0 && ferror(f)) rc = err_set("%s: %s", cfg, strerror(errno));
    if (rc == 0 && !have) rc = err_set("%s: no [net] section", cfg);
    if (rc == 0) rc = finish(&st, cur);
    if (rc == 0 && st.nl == 0) rc = err_set("%s: no layers after [net]", cfg);
    double total = st.bytes + st.workspace, ram = phys_bytes();
    if (rc == 0 && total > ram) {
        /* named by its largest layer, the one to shrink */
        sect big = {.line = st.big_line};
        snprintf(big.head, sizeof big.head, "%s", st.big_head);
        rc = serr(&st, &big, st.big_key, "%sthe network needs about %.1f GiB to train (this layer %.1f GiB), more "
                  "than this machine's %.1f GiB", st.big_key ? "is too large: " : "", total / (1 << 30),
                  st.big_bytes / (1 << 30), ram / (1 << 30));
    }
    if (cur) sect_clear(cur);
    free(cur);
    free(line);
    free(st.out);
    fclose(f);
    return rc;
}
