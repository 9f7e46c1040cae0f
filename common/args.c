#include "common/args.h"
#include "common/err.h"
#include "common/num.h"

#include <ctype.h>
#include <limits.h>
#include <string.h>

static int parse_value(const char *cmd, const arg_opt *o, const char *v)
{
    switch (o->type) {
    case ARG_INT:
        /* a range wider than an int still stores an int */
        if (num_int(v, o->lo < INT_MIN ? INT_MIN : o->lo, o->hi > INT_MAX ? INT_MAX : o->hi, o->out))
            return err_set("%s: %s \"%s\" is not an integer in %.0f..%.0f", cmd, o->name, v, o->lo, o->hi);
        return 0;
    case ARG_U64: {
        int rc = num_uint64(v, 0, UINT64_MAX, o->out);
        if (rc == NUM_SYNTAX) return err_set("%s: %s \"%s\" is not an unsigned integer", cmd, o->name, v);
        if (rc) return err_set("%s: %s \"%s\" is not an unsigned 64-bit integer", cmd, o->name, v);
        return 0;
    }
    case ARG_DOUBLE:
        if (num_double(v, o->lo, o->hi, o->out))
            return err_set("%s: %s \"%s\" is not a number in %g..%g", cmd, o->name, v, o->lo, o->hi);
        return 0;
    case ARG_STR: *(const char **)o->out = v; return 0;
    case ARG_LIST:
        if (*o->count >= (int)o->hi) return err_set("%s: %s given more than %.0f times", cmd, o->name, o->hi);
        ((const char **)o->out)[(*o->count)++] = v;
        return 0;
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
