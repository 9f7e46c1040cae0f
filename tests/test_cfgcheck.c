/* The cfg validator: every key of its table rejects a bad value with the file, line, section and key named and
 * accepts a good one (which libdarknet then parses); shapes are followed through the layers (kernel sizes, route
 * and shortcut indexes, groups); the shipped cfgs pass; the values that crashed libdarknet's parser stop the real
 * binary with status 1 and a message. Also the .weights header: an absurd `seen`, a negative old-style one, a
 * version out of range. */
#include "src/net/cfgcheck.h"
#include "tests/check.h"
#include "common/err.h"
#include "src/net/netio.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define T "build/test_cfgcheck"

/* 1-based line of the first line of path equal to text, 0 if none. */
static int line_of(const char *path, const char *text)
{
    FILE *f = fopen(path, "r");
    char buf[1024];
    int n = 0, found = 0;
    while (f && fgets(buf, sizeof buf, f)) {
        n++;
        buf[strcspn(buf, "\r\n")] = 0;
        if (!strcmp(buf, text)) {
            found = n;
            break;
        }
    }
    if (f) fclose(f);
    return found;
}

/* libdarknet prints every layer it parses; the walk parses hundreds of nets. */
static int quiet_begin(void)
{
    fflush(stderr);
    int saved = dup(2), null = open("/dev/null", O_WRONLY);
    dup2(null, 2);
    close(null);
    return saved;
}

static void quiet_end(int saved)
{
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
}

/* ---- the table walk ---- */

static const char *net_base[] = {"batch=4", "subdivisions=1", "height=8", "width=8", "channels=3"};
#define NBASE 5

static int is_int(const cfg_key *k) { return k->type == CFG_INT || k->type == CFG_INTS; }

/* A value the table must accept (the low end of its range where there is one). */
static void good_value(const cfg_section *s, const cfg_key *k, char *v, size_t n)
{
    if (!strcmp(k->key, "inputs")) snprintf(v, n, "192"); /* must equal width*height*channels */
    else if (k->type == CFG_BOOL) snprintf(v, n, "0");
    else if (k->type == CFG_WORD) snprintf(v, n, "%.*s", (int)strcspn(k->words, "|"), k->words);
    else if (k->type == CFG_FILE) snprintf(v, n, "cfg/fmnist.cfg");
    else if (is_int(k)) snprintf(v, n, "%lld", k->lo > -1e18 ? (long long)k->lo : -1LL);
    else if (k->lo > -1e300) {
        double d = k->lo;
        if (k->flags & CFG_OPEN_LO) d += k->hi < 1e300 ? (k->hi - k->lo) / 2 : 1;
        snprintf(v, n, "%g", d);
    } else
        snprintf(v, n, "%g", k->hi < 1e300 ? k->hi - 1 : 0.5);
}

/* Values the table must reject; returns how many. */
static int bad_values(const cfg_key *k, char v[][64])
{
    int n = 0;
    snprintf(v[n++], 64, "%s", ""); /* no value */
    switch (k->type) {
    case CFG_INT:
        snprintf(v[n++], 64, "x1");
        snprintf(v[n++], 64, "1.5");
        if (k->lo > -1e18) snprintf(v[n++], 64, "%lld", (long long)k->lo - 1);
        if (k->hi < 1e18) snprintf(v[n++], 64, "%lld", (long long)k->hi + 1);
        else snprintf(v[n++], 64, "99999999999");
        break;
    case CFG_BOOL:
        snprintf(v[n++], 64, "2");
        snprintf(v[n++], 64, "yes");
        break;
    case CFG_FLOAT:
        snprintf(v[n++], 64, "abc");
        snprintf(v[n++], 64, "nan");
        if (k->lo > -1e300) snprintf(v[n++], 64, "%g", (k->flags & CFG_OPEN_LO) ? k->lo : k->lo - 1);
        if (k->hi < 1e300) snprintf(v[n++], 64, "%g", (k->flags & CFG_OPEN_HI) ? k->hi : k->hi + 1);
        break;
    case CFG_WORD:
        snprintf(v[n++], 64, "frobnicate");
        break;
    case CFG_INTS:
    case CFG_FLOATS:
        snprintf(v[n++], 64, "1,x");
        snprintf(v[n++], 64, "1,,2");
        if (k->lo > -1e18) snprintf(v[n++], 64, "%g", k->lo - 1);
        break;
    case CFG_FILE:
        snprintf(v[n++], 64, T "/no/such/file");
        break;
    }
    return n;
}

/* Writes [net] + a 3x3 conv giving 8x8x4 (+ [sec] with its required keys when sec is a layer), with key=val set
 * (or, when val is NULL, the required key `key` left out); returns the line of key (or of [sec]). */
static int walk_cfg(const char *path, const cfg_section *sec, const char *key, const char *val)
{
    char text[4096] = "";
    int line = 0, at = 0;
    size_t len = 0;
#define ADD(...) (len += snprintf(text + len, sizeof text - len, __VA_ARGS__), line++)
    int net = sec->kind == CFG_NET;
    ADD("[net]\n");
    if (net && !val) at = line;
    int done = 0;
    for (int i = 0; i < NBASE; i++) {
        size_t kl = strlen(key);
        if (net && !strncmp(net_base[i], key, kl) && net_base[i][kl] == '=') {
            done = 1;
            if (!val) continue;
            ADD("%s=%s\n", key, val);
            at = line;
        } else
            ADD("%s\n", net_base[i]);
    }
    if (net && val && !done) {
        ADD("%s=%s\n", key, val);
        at = line;
    }
    ADD("[convolutional]\n");
    ADD("filters=4\n");
    ADD("size=3\n");
    ADD("pad=1\n");
    ADD("activation=leaky\n");
    if (!net) {
        ADD("[%s]\n", sec->name);
        if (!val) at = line;
        for (int i = 0; i < CFG_MAX_KEYS && sec->keys[i].key; i++)
            if ((sec->keys[i].flags & CFG_REQUIRED) && strcmp(sec->keys[i].key, key))
                ADD("%s=%s\n", sec->keys[i].key, sec->kind == CFG_ROUTE || sec->kind == CFG_SHORTCUT ? "-1" : "1");
    }
    if (!net && val) {
        ADD("%s=%s\n", key, val);
        at = line;
    }
#undef ADD
    check_write_text(path, text);
    return at;
}

static void walk_key(const cfg_section *sec, const cfg_key *k, int *keys, int *layer_ok)
{
    const char *path = T "/walk.cfg";
    char good[64], bad[8][64], want[512];
    (*keys)++;
    good_value(sec, k, good, sizeof good);
    walk_cfg(path, sec, k->key, good);
    int rc = cfgcheck_file(path);
    CHECK(rc == 0, "[%s] %s=%s rejected: %s", sec->name, k->key, good, err_msg());
    /* a file for softmax's tree is only checked for being readable; libdarknet's free_network leaks a [logistic]
     * layer's buffers, which make asan would report */
    if (rc == 0 && k->type != CFG_FILE && strcmp(sec->name, "logistic")) {
        int q = quiet_begin();
        network *net = netio_load(path, NULL, 0, NULL);
        quiet_end(q);
        CHECK(net != NULL, "[%s] %s=%s passed the check but netio_load failed: %s", sec->name, k->key, good,
              err_msg());
        if (net) {
            (*layer_ok)++;
            free_network(net);
        }
    }
    int nb = bad_values(k, bad);
    for (int b = 0; b < nb; b++) {
        int line = walk_cfg(path, sec, k->key, bad[b]);
        snprintf(want, sizeof want, "%s:%d: [%s] %s ", path, line, sec->name, k->key);
        rc = cfgcheck_file(path);
        CHECK(rc == -1 && strstr(err_msg(), want), "[%s] %s='%s': want '%s...', got %d '%s'", sec->name, k->key,
              bad[b], want, rc, err_msg());
    }
    if (k->flags & CFG_REQUIRED) {
        int line = walk_cfg(path, sec, k->key, NULL);
        snprintf(want, sizeof want, "%s:%d: [%s] %s is missing", path, line, sec->name, k->key);
        rc = cfgcheck_file(path);
        CHECK(rc == -1 && strstr(err_msg(), want), "[%s] without %s: want '%s', got '%s'", sec->name, k->key, want,
              err_msg());
    }
}

static void test_table_walk(void)
{
    int n, keys = 0, parsed = 0, sections = 0;
    const cfg_section *t = cfgcheck_table(&n), *common = NULL;
    for (int i = 0; i < n; i++)
        if (t[i].kind == CFG_COMMON) common = &t[i];
    CHECK(common != NULL, "no [*] keys in the table");
    for (int i = 0; i < n; i++) {
        const cfg_section *s = &t[i];
        if (s->kind == CFG_COMMON) continue;
        if (s->kind == CFG_UNSUPPORTED) {
            char text[256], want[256];
            snprintf(text, sizeof text, "[net]\nbatch=1\nheight=8\nwidth=8\nchannels=3\n[%s]\n", s->name);
            check_write_text(T "/walk.cfg", text);
            snprintf(want, sizeof want, T "/walk.cfg:6: [%s] is a detection or recurrent layer", s->name);
            CHECK(cfgcheck_file(T "/walk.cfg") == -1 && strstr(err_msg(), want), "[%s]: %s", s->name, err_msg());
            continue;
        }
        sections++;
        /* the section with no keys set at all: defaults must pass */
        if (s->kind != CFG_NET) {
            int ok = 1;
            for (int j = 0; j < CFG_MAX_KEYS && s->keys[j].key; j++) ok &= !(s->keys[j].flags & CFG_REQUIRED);
            if (ok) {
                char text[512];
                snprintf(text, sizeof text, "[net]\nbatch=4\nheight=8\nwidth=8\nchannels=3\n[convolutional]\n"
                                            "filters=4\nsize=3\npad=1\n[%s]\n", s->name);
                check_write_text(T "/walk.cfg", text);
                CHECK(cfgcheck_file(T "/walk.cfg") == 0, "[%s] with defaults: %s", s->name, err_msg());
            }
        }
        for (int j = 0; j < CFG_MAX_KEYS && s->keys[j].key; j++) walk_key(s, &s->keys[j], &keys, &parsed);
        if (s->kind != CFG_NET)
            for (int j = 0; j < CFG_MAX_KEYS && common->keys[j].key; j++)
                walk_key(s, &common->keys[j], &keys, &parsed);
    }
    printf("table walk: %d sections, %d section/key pairs, %d good cfgs parsed by libdarknet\n", sections, keys, parsed);
    CHECK(sections >= 20 && keys >= 150, "the table is smaller than expected: %d sections, %d keys", sections, keys);
}

/* ---- shapes and structure, in process ---- */

static const char *NET = "[net]\nbatch=8\nsubdivisions=1\nheight=16\nwidth=16\nchannels=3\n";

/* cfg = NET + body; expects rc 0 (want NULL) or an error containing want, whose line is `line` when > 0. */
static void expect(const char *body, const char *want, int line)
{
    char text[8192], full[512];
    snprintf(text, sizeof text, "%s%s", NET, body);
    check_write_text(T "/s.cfg", text);
    int rc = cfgcheck_file(T "/s.cfg");
    if (!want) {
        CHECK(rc == 0, "rejected: %s\n%s", err_msg(), body);
        if (rc == 0) { /* and libdarknet agrees it is a network */
            int q = quiet_begin();
            network *net = netio_load(T "/s.cfg", NULL, 0, NULL);
            quiet_end(q);
            CHECK(net != NULL, "netio_load: %s", err_msg());
            if (net) free_network(net);
        }
        return;
    }
    if (line > 0) snprintf(full, sizeof full, T "/s.cfg:%d: %s", line, want);
    else snprintf(full, sizeof full, "%s", want);
    CHECK(rc == -1 && strstr(err_msg(), full), "want '%s', got %d '%s'\n%s", full, rc, err_msg(), body);
}

static void test_shapes(void)
{
    /* NET is lines 1-6; the body starts at line 7 */
    const char *conv = "[convolutional]\nfilters=8\nsize=3\npad=1\nactivation=leaky\n"; /* lines 7-11 */
    char b[4096];
    /* a network using most layer types, with aliases and darknet's white space */
    expect("[conv]\nfilters = 8\nsize=3\nstride=1\npad=1\nactivation=leaky\nbatch_normalize=1\n"
           "[max]\nsize=2\nstride=2\n"
           "[convolutional]\nfilters=8\nsize=1\nactivation=linear\n"
           "[shortcut]\nfrom=-2\nactivation=linear\n"
           "[route]\nlayers=-1,-3\n"
           "[upsample]\nstride=2\n[upsample]\nstride=-2\n"
           "[reorg]\nstride=2\n[reorg]\nstride=2\nreverse=1\n"
           "[crop]\ncrop_height=6\ncrop_width=6\n"
           "[lrn]\n[batchnorm]\n[activation]\nactivation=relu\n[l2norm]\n"
           "[deconv]\nfilters=4\nsize=2\nstride=2\n"
           "[local]\nfilters=2\nsize=3\n"
           "[conv]\nfilters=6\nsize=3\ngroups=2\n"
           "[avg]\n[dropout]\nprobability=.5\n[conn]\noutput=10\n[soft]\n[cost]\ntype=sse\n",
           NULL, 0);
    /* kernel against the input */
    expect("[convolutional]\nfilters=4\nsize=17\n", "[convolutional] size 17 is larger than the 16x16 input padded by 0", 9);
    expect("[convolutional]\nfilters=4\nsize=35\npad=1\n", "[convolutional] size 35 is larger than its 16x16 input can use (at most 33)", 9);
    expect("[convolutional]\nfilters=4\nsize=33\npad=1\n", NULL, 0);
    expect("[maxpool]\nsize=18\nstride=1\n", NULL, 0); /* padding defaults to size-1 */
    expect("[maxpool]\nsize=18\nstride=1\npadding=0\n", "[maxpool] size 18 is larger than the 16x16 input padded by 0", 8);
    expect("[convolutional]\nfilters=4\nsize=3\ngroups=2\n", "[convolutional] groups 2 does not divide the input's 3 channels", 10);
    snprintf(b, sizeof b, "%s[convolutional]\nfilters=5\ngroups=2\n", conv);
    expect(b, "[convolutional] groups 2 does not divide filters (5)", 14);
    expect("[connected]\noutput=10\n[softmax]\ngroups=3\n", "[softmax] groups 3 does not divide the layer's 10 inputs", 10);
    expect("[connected]\noutput=12\n[softmax]\ngroups=3\n", NULL, 0);
    expect("[deconvolutional]\nfilters=2\nsize=1\npadding=2\n", NULL, 0);
    expect("[deconvolutional]\nfilters=2\nsize=1\npadding=9\n", "[deconvolutional] padding 9 with size 1 gives a -2x-2 output", 10);
    /* a layer that needs an image after a flat one */
    expect("[connected]\noutput=10\n[softmax]\n[convolutional]\nfilters=2\n",
           "[convolutional] needs an image input, but the layer before it (line 9) outputs 10 flat values", 10);
    expect("[upsample]\nstride=0\n", "[upsample] stride must not be 0", 8);
    expect("[upsample]\nstride=-3\n", "[upsample] stride -3: 3 does not divide the 16x16 input", 8);
    expect("[reorg]\nstride=3\n", "[reorg] stride 3 does not divide the 16x16 input", 8);
    expect("[reorg]\nstride=2\nreverse=1\n", "[reorg] stride 2: 4 does not divide the input's 3 channels", 8);
    expect("[crop]\ncrop_height=17\ncrop_width=4\n", "[crop] crop_height 17 is larger than the input's height 16", 8);
    /* route and shortcut indexes */
    snprintf(b, sizeof b, "%s[route]\nlayers=-2\n", conv);
    expect(b, "[route] layers -2 points at layer -1, but this is layer 1: it must name an earlier one (0..0)", 13);
    snprintf(b, sizeof b, "%s[route]\nlayers=0,1\n", conv);
    expect(b, "[route] layers 1 points at layer 1, but this is layer 1", 13);
    snprintf(b, sizeof b, "%s[route]\nlayers=-1\n", conv);
    expect(b, NULL, 0);
    snprintf(b, sizeof b, "%s[shortcut]\nfrom=5\n", conv);
    expect(b, "[shortcut] from 5 points at layer 5, but this is layer 1", 13);
    snprintf(b, sizeof b, "%s[maxpool]\nsize=2\nstride=2\n[shortcut]\nfrom=-3\n", "[convolutional]\nfilters=8\nsize=3\n");
    expect(b, "[shortcut] from -3 points at layer -1", 0);
    snprintf(b, sizeof b, "%s[crop]\ncrop_height=8\ncrop_width=4\n[shortcut]\nfrom=-2\n", conv);
    expect(b, "[shortcut] from layer 0's 16x16x8 output cannot be added to this 4x8x8 input", 16);
    snprintf(b, sizeof b, "%s[maxpool]\nsize=3\nstride=3\n[shortcut]\nfrom=-2\n", conv);
    expect(b, NULL, 0); /* 16x16 onto 6x6: libdarknet samples every 2nd value */
    snprintf(b, sizeof b, "%s[maxpool]\nsize=2\nstride=2\n[shortcut]\nfrom=-2\n", conv);
    expect(b, NULL, 0);
    /* structure */
    expect("[convolutional]\nfilters=4\nfilters=8\n", "[convolutional] filters is given twice (lines 8 and 9)", 9);
    expect("[convolutional]\nbatch_normalize\n", "[convolutional] 'batch_normalize' is not key=value", 8);
    expect("[convolutional]\nfiltres=4\n", "[convolutional] filtres is not a key of [convolutional] (did you mean 'filters'?)", 8);
    expect("[maxpool]\nfilters=4\n", "[maxpool] filters is not a key of [maxpool]", 8);
    expect("[convolutional]\nfilters=4\n[net]\n", "[net] may only be the first section", 9);
    expect("[convolution]\n", "unknown section [convolution] (did you mean [convolutional]?)", 7);
    expect("[convolutional\n", "'[convolutional' is not a section header", 7);
    expect("", T "/s.cfg: no layers after [net]", -1);
    expect("[convolutional]\nfilters=4\nactivation=Leaky\n",
           "[convolutional] activation must be one of logistic/loggy/relu/elu/selu/relie/plse/hardtan/lhtan/linear/"
           "ramp/leaky/tanh/stair, got 'Leaky'", 9);
    check_write_text(T "/s.cfg", "batch=1\n[net]\n");
    CHECK(cfgcheck_file(T "/s.cfg") == -1 && strstr(err_msg(), T "/s.cfg:1: 'batch=1' outside any section"), "%s", err_msg());
    check_write_text(T "/s.cfg", "# nothing\n");
    CHECK(cfgcheck_file(T "/s.cfg") == -1 && strstr(err_msg(), "no [net] section"), "%s", err_msg());
    check_write_text(T "/s.cfg", "[convolutional]\n[net]\n");
    CHECK(cfgcheck_file(T "/s.cfg") == -1 && strstr(err_msg(), T "/s.cfg:1: the first section must be [net]"), "%s", err_msg());
    check_write_text(T "/s.cfg", "[net]\r\nbatch=1\r\n");
    CHECK(cfgcheck_file(T "/s.cfg") == -1 && strstr(err_msg(), T "/s.cfg:1: the line ends in a carriage return"), "%s", err_msg());
    CHECK(cfgcheck_file(T "/missing.cfg") == -1 && strstr(err_msg(), "missing.cfg"), "%s", err_msg());
    /* [net] cross-checks */
    check_write_text(T "/s.cfg", "[net]\nbatch=30\nsubdivisions=4\nheight=8\nwidth=8\nchannels=3\n[avgpool]\n");
    CHECK(cfgcheck_file(T "/s.cfg") == -1 && strstr(err_msg(), T "/s.cfg:3: [net] subdivisions must divide batch (30), got 4"), "%s", err_msg());
    check_write_text(T "/s.cfg", "[net]\nbatch=8\nheight=8\nwidth=8\nchannels=3\ninputs=100\n[avgpool]\n");
    CHECK(cfgcheck_file(T "/s.cfg") == -1 && strstr(err_msg(), T "/s.cfg:6: [net] inputs must be width*height*channels (192)"), "%s", err_msg());
    check_write_text(T "/s.cfg", "[net]\nbatch=8\nheight=8\nwidth=8\nchannels=3\npolicy=steps\nsteps=10,20\n[avgpool]\n");
    CHECK(cfgcheck_file(T "/s.cfg") == -1 && strstr(err_msg(), T "/s.cfg:1: [net] scales is missing: policy=steps needs"), "%s", err_msg());
    check_write_text(T "/s.cfg", "[net]\nbatch=8\nheight=8\nwidth=8\nchannels=3\npolicy=steps\nsteps=10,20\nscales=.1\n[avgpool]\n");
    CHECK(cfgcheck_file(T "/s.cfg") == -1 && strstr(err_msg(), T "/s.cfg:8: [net] scales has 1 values but steps has 2"), "%s", err_msg());
    check_write_text(T "/s.cfg", "[net]\nbatch=8\nheight=8\nwidth=8\nchannels=3\npolicy=steps\nsteps=10,20\nscales=.1,.1\n[avgpool]\n");
    CHECK(cfgcheck_file(T "/s.cfg") == 0, "%s", err_msg());
    check_write_text(T "/s.cfg", "[net]\nbatch=8\nheight=8\nwidth=8\nchannels=3\nmixpu=1\n[avgpool]\n");
    CHECK(cfgcheck_file(T "/s.cfg") == -1 && strstr(err_msg(), T "/s.cfg:6: [net] mixpu is not a key of [net] (did you mean 'mixup'?)"), "%s", err_msg());
    /* genie's own keys are keys; augment ignores case as read_extras does */
    check_write_text(T "/s.cfg", "[net]\nbatch=8\nheight=8\nwidth=8\nchannels=3\naugment=Strong\nflip=0\nmixup=1\ncutmix=1\n"
                           "label_smooth_eps=0.1\n[avgpool]\n");
    CHECK(cfgcheck_file(T "/s.cfg") == 0, "genie's [net] keys: %s", err_msg());
    /* libdarknet counts a layer's outputs over the batch in an int */
    expect("[convolutional]\nfilters=1048576\nsize=1\n",
           "[convolutional] filters gives 2147483648 output values for a batch, more than libdarknet can count", 8);
    expect("[connected]\noutput=3000000\n", "[connected] output gives 2304000000 weights, more than libdarknet can count", 8);
    /* a network that fits libdarknet's ints but not this machine's memory (named by its largest layer) */
    long long ram = (long long)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE);
    int layers = (int)(ram / (8LL << 30)) + 2;
    size_t len = snprintf(b, sizeof b, "[net]\nbatch=32\nheight=256\nwidth=256\nchannels=3\n");
    for (int i = 0; i < layers && len < sizeof b - 100; i++)
        len += snprintf(b + len, sizeof b - len, "[convolutional]\nfilters=%d\nsize=1\n", i == 1 ? 512 : 510);
    check_write_text(T "/s.cfg", b);
    CHECK(cfgcheck_file(T "/s.cfg") == -1 && strstr(err_msg(), T "/s.cfg:9: [convolutional] filters is too large: the network needs about") &&
              strstr(err_msg(), "more than this machine's"),
          "%d layers of 8 GiB: %s", layers, err_msg());
}

/* The cfgs genie ships and the variants the tests and scripts make of them. */
static void test_shipped(void)
{
    const char *cfgs[] = {"cfg/fmnist.cfg", "cfg/fmnist-ft.cfg"};
    for (int i = 0; i < 2; i++) CHECK(cfgcheck_file(cfgs[i]) == 0, "%s: %s", cfgs[i], err_msg());
    const char *seds[] = {"s/^max_batches=.*/max_batches=150/; s/^burn_in=.*/burn_in=20/", /* test_trainer */
                          "s/filters=128/filters=96/", "s/^\\[net\\]$/[net]\\naugment=weak/", /* scripts/ablate.sh */
                          "s/^\\[net\\]$/[net]\\naugment=strong/", "s/^\\[net\\]$/[net]\\ncutmix=1/",
                          "s/^\\[net\\]$/[net]\\nmixup=1/"};
    char cmd[512];
    for (int i = 0; i < (int)(sizeof seds / sizeof seds[0]); i++)
        for (int j = 0; j < 2; j++) {
            snprintf(cmd, sizeof cmd, "sed -e '%s' %s > " T "/v.cfg", seds[i], cfgs[j]);
            CHECK(system(cmd) == 0, "%s", cmd);
            CHECK(cfgcheck_file(T "/v.cfg") == 0, "%s: %s", cmd, err_msg());
        }
}

/* ---- through the binary: the values that crashed libdarknet's parser ---- */

static void run_case(const char *sed, const char *key_line, const char *want)
{
    static char out[1 << 16];
    char cmd[1024], full[512];
    snprintf(cmd, sizeof cmd, "sed -e '%s' cfg/fmnist.cfg > " T "/c.cfg", sed);
    CHECK(system(cmd) == 0, "%s", cmd);
    int line = line_of(T "/c.cfg", key_line);
    CHECK(line > 0, "no line '%s' in " T "/c.cfg after %s", key_line, sed);
    snprintf(full, sizeof full, T "/c.cfg:%d: %s", line, want);
    int rc = check_sh("timeout 120 $G classifier train " T "/bin.data " T "/c.cfg -iters 1", out,
                sizeof out);
    CHECK(rc == 1 && strstr(out, full), "%s: want exit 1 and '%s', got %d:\n%s", sed, full, rc, out);
}

static void test_binary(void)
{
    check_write_text(T "/labels.list", "a\nb\n");
    check_write_text(T "/t.list", "x/1_a.jpg\nx/2_b.jpg\n");
    check_write_text(T "/bin.data", "classes=2\ntrain=" T "/t.list\nlabels=" T "/labels.list\nbackup=" T "/backup\n");
    run_case("s/filters=32/filters=-3/", "filters=-3", "[convolutional] filters must be >= 1, got -3");
    run_case("0,/^stride=1/s//stride=0/", "stride=0", "[convolutional] stride must be >= 1, got 0");
    run_case("s/^groups=1/groups=0/", "groups=0", "[softmax] groups must be >= 1, got 0");
    run_case("s/^batch=.*/batch=32/; s/^subdivisions=.*/subdivisions=64/", "subdivisions=64",
             "[net] subdivisions must be <= batch (32), got 64");
    run_case("/^height=/d", "[net]", "[net] height is missing: genie needs the input's height, width and channels");
    run_case("/^width=/d", "[net]", "[net] width is missing");
    run_case("s/^\\[maxpool\\]/[frobnicate]/", "[frobnicate]", "unknown section [frobnicate]");
    run_case("$a [frobnicate]", "[frobnicate]", "unknown section [frobnicate]");
    run_case("0,/^size=3/s//size=9999/", "size=9999", "[convolutional] size 9999 is larger than its 28x28 input can use (at most 57)");
    run_case("s/^filters=64/filter=64/", "filter=64",
             "[convolutional] filter is not a key of [convolutional] (did you mean 'filters'?); libdarknet would ignore it");
    run_case("s/^output=10/output=0/", "output=0", "[connected] output must be >= 1, got 0");
    run_case("s/^channels=.*/channels=4/", "channels=4", "[net] channels must be one of 1/3, got '4'");
}

/* ---- .weights headers ---- */

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* Copies src's payload (after its 20-byte header) behind a new header: 3 ints and a 4- or 8-byte seen. */
static void rewrite_header(const char *src, const char *dst, int major, int minor, int rev, int wide, uint64_t seen)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    int hdr[3] = {major, minor, rev};
    int32_t s32 = (int32_t)seen;
    char buf[4096];
    size_t n;
    fwrite(hdr, sizeof hdr, 1, out);
    if (wide) fwrite(&seen, sizeof seen, 1, out);
    else fwrite(&s32, sizeof s32, 1, out);
    fseek(in, 20, SEEK_SET);
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    fclose(in);
    fclose(out);
}

static void expect_weights(const char *cfg, const char *w, const char *want, long long seen)
{
    int q = quiet_begin();
    network *net = netio_load(cfg, w, 0, NULL);
    quiet_end(q);
    if (want) {
        CHECK(!net && strstr(err_msg(), w) && strstr(err_msg(), want), "%s: want '%s', got '%s'", w, want,
              net ? "(loaded)" : err_msg());
    } else {
        CHECK(net && (long long)*net->seen == seen, "%s: %s, seen %lld, want %lld", w, net ? "loaded" : err_msg(),
              net ? (long long)*net->seen : -1, seen);
    }
    if (net) free_network(net);
}

static void test_weights_header(void)
{
    const char *cfg = T "/w.cfg";
    check_write_text(cfg, "[net]\nbatch=2\nheight=8\nwidth=8\nchannels=1\n[convolutional]\nfilters=4\nsize=3\npad=1\n"
                    "activation=leaky\n[avgpool]\n[softmax]\n");
    int q = quiet_begin();
    network *net = netio_load(cfg, NULL, 0, NULL);
    quiet_end(q);
    CHECK(net != NULL, "%s", err_msg());
    if (!net) return;
    *net->seen = 1000;
    q = quiet_begin();
    CHECK(netio_save(net, T "/ok.weights") == 0, "%s", err_msg());
    quiet_end(q);
    free_network(net);
    CHECK(file_size(T "/ok.weights") == 20 + 4 * (4 + 4 * 9), "saved %lld bytes", file_size(T "/ok.weights"));
    expect_weights(cfg, T "/ok.weights", NULL, 1000);

    rewrite_header(T "/ok.weights", T "/huge.weights", 0, 2, 0, 1, ((uint64_t)1 << 63) + 5);
    expect_weights(cfg, T "/huge.weights", "seen 9223372036854775813 is more than 2^48 images", 0);
    rewrite_header(T "/ok.weights", T "/edge.weights", 0, 2, 0, 1, ((uint64_t)1 << 48) + 1);
    expect_weights(cfg, T "/edge.weights", "seen 281474976710657 is more than 2^48", 0);
    rewrite_header(T "/ok.weights", T "/max.weights", 0, 2, 0, 1, (uint64_t)1 << 48);
    expect_weights(cfg, T "/max.weights", NULL, 1LL << 48);
    /* version 0.1 keeps seen in an int: a 4-byte field, never negative */
    rewrite_header(T "/ok.weights", T "/old.weights", 0, 1, 0, 0, 7);
    expect_weights(cfg, T "/old.weights", NULL, 7);
    rewrite_header(T "/ok.weights", T "/oldneg.weights", 0, 1, 0, 0, (uint64_t)(uint32_t)-5);
    expect_weights(cfg, T "/oldneg.weights", "seen -5 is negative", 0);
    rewrite_header(T "/ok.weights", T "/major.weights", 5000, 2, 0, 1, 1);
    expect_weights(cfg, T "/major.weights", "weights header: major version 5000 is not in 0..1000", 0);
    rewrite_header(T "/ok.weights", T "/minor.weights", 0, -1, 0, 1, 1);
    expect_weights(cfg, T "/minor.weights", "weights header: minor version -1", 0);
    rewrite_header(T "/ok.weights", T "/rev.weights", 0, 2, 123456789, 1, 1);
    expect_weights(cfg, T "/rev.weights", "weights header: revision 123456789 is not in 0..1000", 0);
    /* a header cut inside seen */
    CHECK(system("head -c 14 " T "/ok.weights > " T "/cut.weights") == 0, "head");
    expect_weights(cfg, T "/cut.weights", "truncated weights header", 0);
}

/* augment=, gen_augment= and tail_augment= reach the loader as the presets they name */
static void test_presets(void)
{
    static const struct { const char *name; int preset; } want[] = {
        {"darknet", AUG_DARKNET}, {"weak", AUG_WEAK}, {"strong", AUG_STRONG}, {"none", AUG_EVAL}};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) {
            char text[512];
            snprintf(text, sizeof text, "[net]\nbatch=8\nsubdivisions=1\nheight=16\nwidth=16\nchannels=3\naugment=%s\n"
                     "gen_augment=%s\ntail_augment=%s\n[convolutional]\nfilters=8\nsize=3\npad=1\n"
                     "activation=leaky\n", want[i].name, want[j].name, want[3 - j].name);
            check_write_text(T "/p.cfg", text);
            net_extras ex;
            int q = quiet_begin();
            network *net = netio_load(T "/p.cfg", NULL, 0, &ex);
            quiet_end(q);
            CHECK(net != NULL, "netio_load: %s", err_msg());
            if (!net) continue;
            int a = netio_aug_params(net, &ex).preset, g = netio_gen_aug_params(net, &ex).preset,
                t = netio_tail_aug_params(net, &ex).preset;
            CHECK(a == want[i].preset && g == want[j].preset && t == want[3 - j].preset,
                  "augment=%s gen_augment=%s tail_augment=%s: presets %d %d %d, want %d %d %d", want[i].name,
                  want[j].name, want[3 - j].name, a, g, t, want[i].preset, want[j].preset, want[3 - j].preset);
            free_network(net);
        }
}

int main(void)
{
    mkdir("build", 0755);
    CHECK(system("rm -rf " T " && mkdir -p " T) == 0, "workdir");
    test_table_walk();
    test_shapes();
    test_presets();
    test_shipped();
    test_binary();
    test_weights_header();
    return check_done("cfgcheck");
}
