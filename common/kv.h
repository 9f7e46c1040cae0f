/* The one reader of key=value files (darknet's .data, genie.cfg): a table of keys, each with its type, range and
 * where its value goes. One key=value a line; white space around keys and values is dropped (values keep inner
 * spaces, so paths with spaces work); lines starting with '#' or ';' are comments; a UTF-8 byte order mark at the
 * start is skipped. A key given twice takes its last value. Errors name the file, the line and the key with the
 * values it allows:
 *
 *   genie.cfg:3: key 'steps' must be an integer in 1..1000, got '0'
 *   genie.cfg:4: unknown key 'qouta' in [genie] (did you mean 'quota'?)
 *
 * A NUL byte, a line longer than KV_MAX_LINE and a directory given as the file are reported as such. */
#ifndef GENIE_KV_H
#define GENIE_KV_H
#include <stddef.h>

#define KV_MAX_LINE 65536

typedef enum {
    KV_INT,    /* int *: an integer within [lo, hi] */
    KV_INT64,  /* long long *: an integer within [lo, hi] */
    KV_DOUBLE, /* double *: a finite number within lo..hi (ends open with KV_OPEN_LO / KV_OPEN_HI) */
    KV_BOOL,   /* int *: 0 or 1 */
    KV_STRING, /* size > 0: a char[size] at out; size 0: a char ** (the old string freed, the new one strdup'd) */
    KV_LIST,   /* double[size] at out: comma-separated numbers, each as KV_DOUBLE; how many into *count */
    KV_WORD,   /* int *: the index of the value among words ("ddim|dpmpp2m") */
    KV_FUNC,   /* set(val, out) stores it, or returns -1 when it is not what want says */
} kv_type;

#define KV_OPEN_LO 1
#define KV_OPEN_HI 2

typedef struct kv_key {
    const char *name;
    kv_type type;
    void *out;
    double lo, hi;                         /* KV_INT, KV_INT64, KV_DOUBLE and each KV_LIST entry */
    int flags;                             /* KV_OPEN_LO, KV_OPEN_HI */
    size_t size;                           /* KV_STRING, KV_LIST: see above */
    int *count;                            /* KV_LIST */
    const char *words;                     /* KV_WORD */
    int (*set)(char *val, void *out);          /* KV_FUNC (val is a copy it may change) */
    int (*check)(const struct kv_key *k);  /* optional, after the value is stored: 0, or -1 when it is not want */
    const char *want;                      /* what the values may be, for messages; NULL: said from type and range */
    int line;                              /* set by kv_read: the line the key was last given on, 0 when absent */
} kv_key;

/* Table entries for the common cases: a number in a closed range; a string (size 0: a char **) */
#define KV_NUM(key, type_, out_, lo_, hi_) {.name = (key), .type = (type_), .out = (out_), .lo = (lo_), .hi = (hi_)}
#define KV_TEXT(key, out_, size_, want_) {.name = (key), .type = KV_STRING, .out = (out_), .size = (size_), .want = (want_)}

typedef struct {
    const char *section;         /* "genie": the keys are in the one [genie] section, which must be there; NULL:
                                  * a file without sections */
    int warn_unknown;            /* an unknown key: 0 an error, 1 one warning on stderr (as darknet's
                                  * option_unused) and the line is ignored */
    const char *const *ignored;  /* known keys that are not used, silent (NULL-ended; may be NULL) */
    int first_section;           /* a darknet cfg: the keys are in the file's first section ([net], whose name and
                                  * other keys darknet's own parser checks); reading stops at the next section and
                                  * keys not in the table are silently someone else's */
} kv_spec;

/* Reads path into the n keys' outputs (what is absent keeps its value). 0, or -1 with err_msg() "path:line: ...". */
int kv_read(const char *path, kv_key *keys, int n, const kv_spec *spec);

/* The candidate nearest to word by edit distance, when it is close enough to be a typo of it (at most 2 edits,
 * fewer than the candidate's length); NULL when none is. For "did you mean" hints. */
const char *kv_nearest(const char *word, const char *const *cands, int n);

#endif
