/* One command-line parser for every command: options from a table ("-name value", or a bare "-name" for a switch),
 * positional arguments in order. An unknown option, a missing value, a value that is not a number or is out of its
 * range, or one positional too many is an error naming the command and the option, never a silent default. */
#ifndef GENIE_ARGS_H
#define GENIE_ARGS_H
#include <stdint.h>

typedef enum {
    ARG_SWITCH, /* int *: set to 1 when present, takes no value */
    ARG_INT,    /* int *: decimal, within [lo, hi] */
    ARG_U64,    /* uint64_t *: decimal digits only (no sign), up to 2^64-1 */
    ARG_DOUBLE, /* double *: finite, within [lo, hi] */
    ARG_STR,    /* const char **: any text */
    ARG_LIST,   /* const char *[hi]: any text, once per time the option is given; how many into *count */
} arg_type;

typedef struct {
    const char *name; /* "-seed" */
    arg_type type;
    void *out;        /* holds the default on entry */
    double lo, hi;    /* ARG_INT and ARG_DOUBLE; ARG_LIST: hi is the most values */
    int *count;       /* ARG_LIST: values stored so far (0 on entry) */
} arg_opt;

/* Table entries: an option without a range, one with a range, the end of the table. */
#define ARG_OPT(name, type, out) {(name), (type), (out), 0, 0, NULL}
#define ARG_RANGE(name, type, out, lo, hi) {(name), (type), (out), (lo), (hi), NULL}
/* an option that may be given up to max times ("-lora a -lora b") */
#define ARG_REPEAT(name, out, count, max) {(name), ARG_LIST, (out), 0, (max), (count)}
#define ARG_END {NULL, ARG_SWITCH, NULL, 0, 0, NULL}

/* Parses argv[0 .. argc) against opts (ended by an entry with name NULL) and stores the positionals in pos (at most
 * max_pos). Returns how many positionals there were, or -1 with err_msg() "cmd: ...". */
int args_parse(const char *cmd, int argc, char **argv, const arg_opt *opts, char **pos, int max_pos);

#endif
