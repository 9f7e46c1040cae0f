/* A darknet cfg checked before libdarknet's parse_network_cfg sees it: the parser trusts every value (filters=-3
 * crashes, stride=0 divides by zero, a missing height abort()s, size=9999 allocates gigabytes) and ignores
 * misspelt keys. One table lists every section and key libdarknet reads with its type and range; the layer
 * shapes are followed section by section so sizes, strides, route and shortcut indexes are checked against the
 * input each layer gets. */
#ifndef GENIE_CFGCHECK_H
#define GENIE_CFGCHECK_H

enum cfg_type {
    CFG_INT,    /* lo..hi */
    CFG_BOOL,   /* 0 or 1 */
    CFG_FLOAT,  /* lo..hi, either end open with CFG_OPEN_LO/CFG_OPEN_HI; always finite */
    CFG_WORD,   /* one of words */
    CFG_INTS,   /* comma-separated integers, each lo..hi */
    CFG_FLOATS, /* comma-separated finite numbers, each lo..hi */
    CFG_FILE,   /* a readable file */
};

enum { CFG_OPEN_LO = 1, CFG_OPEN_HI = 2, CFG_REQUIRED = 4, CFG_NOCASE = 8 };

/* What a section is, for the shape it turns its input into. */
enum cfg_kind {
    CFG_NET, CFG_COMMON, CFG_CONV, CFG_DECONV, CFG_LOCAL, CFG_CONNECTED, CFG_MAXPOOL, CFG_AVGPOOL, CFG_SOFTMAX,
    CFG_DROPOUT, CFG_BATCHNORM, CFG_ROUTE, CFG_SHORTCUT, CFG_COST, CFG_SAME, CFG_NORMALIZATION, CFG_UPSAMPLE,
    CFG_REORG, CFG_CROP, CFG_UNSUPPORTED,
};

typedef struct {
    const char *key;
    enum cfg_type type;
    double lo, hi;
    int flags;
    const char *words; /* CFG_WORD: "a|b|c" */
} cfg_key;

#define CFG_MAX_KEYS 48
typedef struct {
    const char *name, *alias; /* without brackets; alias may be NULL */
    enum cfg_kind kind;
    cfg_key keys[CFG_MAX_KEYS]; /* ends at the first entry without a key */
} cfg_section;

/* 0 when libdarknet can parse cfg and genie can train it; else -1 with err_msg()
 * "cfg:line: [section] key must be ..., got '...'" (the first problem found). */
int cfgcheck_file(const char *cfg);
/* The table (for tests): the "*" section holds the keys every layer section takes. */
const cfg_section *cfgcheck_table(int *n);

#endif
