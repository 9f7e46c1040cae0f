/* The one argument parser: options by table, positionals in order, and every kind of bad command line. */
#include "common/args.h"
#include "tests/check.h"
#include "common/err.h"

#include <string.h>

typedef struct {
    int sw, n;
    uint64_t seed;
    double r;
    const char *s;
    char *pos[3];
} parsed;

static int run(parsed *p, int argc, char **argv)
{
    memset(p, 0, sizeof *p);
    p->n = 7;
    p->seed = 1;
    p->r = 0.8;
    p->s = "default";
    const arg_opt opts[] = {ARG_OPT("-on", ARG_SWITCH, &p->sw),
                            ARG_RANGE("-n", ARG_INT, &p->n, 0, 100),
                            ARG_OPT("-seed", ARG_U64, &p->seed),
                            ARG_RANGE("-r", ARG_DOUBLE, &p->r, -1, 1),
                            ARG_OPT("-s", ARG_STR, &p->s),
                            ARG_END};
    return args_parse("cmd", argc, argv, opts, p->pos, 3);
}

#define ARGV(...) (sizeof((char *[]){__VA_ARGS__}) / sizeof(char *)), ((char *[]){__VA_ARGS__})

static void bad(const char *what, int argc, char **argv, const char *expect)
{
    parsed p;
    int rc = run(&p, argc, argv);
    CHECK(rc == -1 && strstr(err_msg(), "cmd: ") && strstr(err_msg(), expect), "%s: rc %d, message '%s' lacks '%s'",
          what, rc, err_msg(), expect);
}

int main(void)
{
    parsed p;
    /* defaults stay when an option is absent */
    CHECK(run(&p, ARGV("a")) == 1 && !strcmp(p.pos[0], "a") && p.n == 7 && p.seed == 1 && p.r == 0.8 && !p.sw &&
              !strcmp(p.s, "default"),
          "defaults");
    /* options anywhere among the positionals; negative numbers and "-" are values */
    CHECK(run(&p, ARGV("-n", "12", "a", "-on", "-r", "-0.5", "b", "-seed", "18446744073709551615", "-", "-s", "x y")) == 3 &&
              !strcmp(p.pos[0], "a") && !strcmp(p.pos[1], "b") && !strcmp(p.pos[2], "-") && p.n == 12 && p.sw == 1 &&
              p.r == -0.5 && p.seed == UINT64_MAX && !strcmp(p.s, "x y"),
          "mixed: n %d sw %d r %g", p.n, p.sw, p.r);
    /* an option given twice: the last one counts, as with getopt */
    CHECK(run(&p, ARGV("-n", "1", "-n", "2")) == 0 && p.n == 2, "repeated option gave %d", p.n);

    bad("misspelled", ARGV("-iter", "1"), "unknown option -iter");
    bad("no value", ARGV("a", "-n"), "option -n needs a value");
    bad("not a number", ARGV("-n", "abc"), "-n \"abc\" is not an integer in 0..100");
    bad("trailing junk", ARGV("-n", "12x"), "-n \"12x\"");
    bad("out of range", ARGV("-n", "101"), "-n \"101\" is not an integer in 0..100");
    bad("int overflow", ARGV("-n", "99999999999999999999"), "-n");
    bad("negative seed", ARGV("-seed", "-1"), "-seed \"-1\" is not an unsigned integer");
    bad("seed with a sign", ARGV("-seed", "+5"), "-seed \"+5\"");
    bad("seed overflow", ARGV("-seed", "18446744073709551616"), "not an unsigned 64-bit integer");
    bad("seed text", ARGV("-seed", "abc"), "-seed \"abc\"");
    bad("nan", ARGV("-r", "nan"), "-r \"nan\" is not a number");
    bad("inf", ARGV("-r", "inf"), "-r \"inf\"");
    bad("double range", ARGV("-r", "1.5"), "-r \"1.5\" is not a number in -1..1");
    bad("empty number", ARGV("-r", ""), "-r \"\"");
    bad("too many positionals", ARGV("a", "b", "c", "d"), "unexpected argument \"d\"");
    return check_done("args");
}
