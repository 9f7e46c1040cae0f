#include "common/args.h"
#include "common/err.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int parse_value(const char *cmd, const arg_opt *o, const char *v)
{
    char *end;
    errno = 0;
    switch (o->type) {
    case ARG_INT: {
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end || x < o->lo || x > o->hi)
            return err_set("%s: %s \"%s\" is not an integer in %.0f..%.0f", cmd, o->name, v, o->lo, o->hi);
        *(int *)o->out = (int)x;
        return 0;
    }
    case ARG_U64: {
        /* strtoull accepts a sign and wraps "-1" to 2^64-1: digits only */
        if (!isdigit((unsigned char)v[0])) return err_set("%s: %s \"%s\" is not an unsigned integer", cmd, o->name, v);
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || *end) return err_set("%s: %s \"%s\" is not an unsigned 64-bit integer", cmd, o->name, v);
        *(uint64_t *)o->out = x;
        return 0;
    }
    case ARG_DOUBLE: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x) || x < o->lo || x > o->hi)
            return err_set("%s: %s \"%s\" is not a number in %g..%g", cmd, o->name, v, o->lo, o->hi);
        *(double *)o->out = x;
        return 0;
    }
    case ARG_STR: *(const char **)o->out = v; return 0;
    case ARG_SWITCH: break;
    }
    return 0;
}

int args_parse(const char *cmd, int argc, char **argv, const arg_opt *opts, char **pos, int max_pos)
{
    int np = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        /* "-" alone and negative numbers are values, not options */
        if (a[0] != '-' || !a[1] || isdigit((unsigned char)a[1]) || a[1] == '.') {
            if (np >= max_pos) return err_set("%s: unexpected argument \"%s\"", cmd, a);
            pos[np++] = argv[i];
            continue;
        }
        const arg_opt *o = opts;
        while (o->name && strcmp(o->name, a)) o++;
        if (!o->name) return err_set("%s: unknown option %s", cmd, a);
        if (o->type == ARG_SWITCH) {
            *(int *)o->out = 1;
            continue;
        }
        if (i + 1 >= argc) return err_set("%s: option %s needs a value", cmd, a);
        if (parse_value(cmd, o, argv[++i])) return -1;
    }
    return np;
}
