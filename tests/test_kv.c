/* common/kv: every key type with its range, messages naming file:line and key, the nearest-key hint (an error, or
 * one warning per unknown key), sections, a byte order mark, and NUL bytes, overlong lines and directories
 * reported as what they are. */
#include "tests/check.h"
#include "common/err.h"
#include "common/kv.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define P "build/test_kv.cfg"
#define W "build/test_kv.warn"

typedef struct {
    int i, b, w, odd;
    long long l;
    double d, list[4];
    int nlist;
    char s[8], *dyn;
} vals;

static int odd_only(char *val, void *out)
{
    int v = atoi(val);
    if (!(v & 1)) return -1;
    *(int *)out = v;
    return 0;
}

static int not_seven(const kv_key *k) { return *(int *)k->out == 7 ? -1 : 0; }

static vals v;
static kv_key keys[] = {
    {.name = "count", .type = KV_INT, .out = &v.i, .lo = -2, .hi = 10, .check = not_seven},
    KV_NUM("big", KV_INT64, &v.l, 1, 1LL << 40),
    {.name = "ratio", .type = KV_DOUBLE, .out = &v.d, .lo = 0, .hi = 1, .flags = KV_OPEN_LO},
    {.name = "flag", .type = KV_BOOL, .out = &v.b},
    KV_TEXT("name", v.s, sizeof v.s, NULL),
    KV_TEXT("path", &v.dyn, 0, "a path"),
    {.name = "set", .type = KV_LIST, .out = v.list, .lo = 0, .hi = 1, .size = 4, .count = &v.nlist},
    {.name = "mode", .type = KV_WORD, .out = &v.w, .words = "fast|slow|exact"},
    {.name = "odd", .type = KV_FUNC, .out = &v.odd, .set = odd_only, .want = "an odd number"},
};
#define NK ((int)(sizeof keys / sizeof keys[0]))

static void write_bytes(const char *text, size_t n)
{
    FILE *f = fopen(P, "wb");
    fwrite(text, 1, n, f);
    fclose(f);
}

static int read_text(const char *text, const kv_spec *spec)
{
    free(v.dyn);
    memset(&v, 0, sizeof v);
    write_bytes(text, strlen(text));
    return kv_read(P, keys, NK, spec);
}

static void bad(const char *text, const kv_spec *spec, const char *expect)
{
    int rc = read_text(text, spec);
    CHECK(rc == -1 && !strncmp(err_msg(), P, strlen(P)) && strstr(err_msg(), expect),
          "'%s': rc %d, message '%s' lacks '%s'", text, rc, rc ? err_msg() : "", expect);
}

/* Runs read_text with stderr going to a file; returns what was written there (static buffer). */
static const char *warnings(const char *text, const kv_spec *spec, int *rc)
{
    static char buf[4096];
    fflush(stderr);
    int saved = dup(2), fd = open(W, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    *rc = read_text(text, spec);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *f = fopen(W, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
    remove(W);
    return buf;
}

int main(void)
{
    const kv_spec plain = {0};
    /* every type, white space around keys and values, comments, inner spaces kept */
    int rc = read_text("# comment\n; comment\n\n count = -2\nbig=1099511627776\nratio=1\nflag=1\nname=abc de\n"
                       "path = my dir/x y.txt \nset=0.5, 0.25,1\nmode=slow\nodd=9\n", &plain);
    CHECK(rc == 0, "all types: %s", err_msg());
    CHECK(v.i == -2 && v.l == 1LL << 40 && v.d == 1 && v.b == 1 && !strcmp(v.s, "abc de") && v.dyn &&
              !strcmp(v.dyn, "my dir/x y.txt") && v.nlist == 3 && v.list[0] == 0.5 && v.list[1] == 0.25 &&
              v.list[2] == 1 && v.w == 1 && v.odd == 9,
          "values read wrong");
    CHECK(keys[0].line == 4 && keys[8].line == 12, "lines: count %d, odd %d", keys[0].line, keys[8].line);

    /* absent keys keep their values; line 0 */
    rc = read_text("flag=0\n", &plain);
    CHECK(rc == 0 && keys[0].line == 0 && keys[3].line == 1 && v.i == 0, "absent key: %s", err_msg());

    /* a key given twice: the last value (as the readers before kv did) */
    rc = read_text("count=1\ncount=3\npath=a\npath=b\n", &plain);
    CHECK(rc == 0 && v.i == 3 && !strcmp(v.dyn, "b") && keys[0].line == 2, "duplicate: %d %s", v.i, v.dyn);

    /* ranges and forms, each named with file:line, the key and what it allows */
    bad("\ncount=11\n", &plain, P ":2: key 'count' must be an integer in -2..10, got '11'");
    bad("count=-3\n", &plain, ":1: key 'count' must be an integer in -2..10");
    bad("count=1.5\n", &plain, "key 'count' must be an integer in -2..10, got '1.5'");
    bad("count=0x3\n", &plain, "key 'count' must be");
    bad("count=3 apples\n", &plain, "key 'count' must be");
    bad("count=\n", &plain, "key 'count' must be an integer in -2..10, got ''");
    bad("count=99999999999999999999\n", &plain, "key 'count' must be");
    bad("count=7\n", &plain, "key 'count' must be an integer in -2..10, got '7'"); /* the check hook */
    bad("big=0\n", &plain, "key 'big' must be an integer in 1..1099511627776, got '0'");
    bad("big=1099511627777\n", &plain, "key 'big' must be");
    bad("ratio=0\n", &plain, "key 'ratio' must be a number in (0, 1], got '0'");
    bad("ratio=1e999\n", &plain, "key 'ratio' must be a number in (0, 1]");
    bad("ratio=nan\n", &plain, "key 'ratio' must be");
    bad("flag=yes\n", &plain, "key 'flag' must be 0 or 1, got 'yes'");
    bad("flag=2\n", &plain, "key 'flag' must be 0 or 1");
    bad("name=abcdefgh\n", &plain, ":1: key 'name' is 8 bytes long, at most 7");
    bad("set=0.1,0.2,0.3,0.4,0.5\n", &plain, ":1: key 'set' takes at most 4 values, got 5");
    bad("set=0.1,,0.3\n", &plain, "key 'set' must be a comma-separated list of at most 4 numbers in [0, 1], got '0.1,,0.3'");
    bad("set=0.1,2\n", &plain, "key 'set' must be");
    bad("set=0.1,\n", &plain, "key 'set' must be");
    bad("mode=quick\n", &plain, "key 'mode' must be fast, slow or exact, got 'quick'");
    bad("odd=4\n", &plain, "key 'odd' must be an odd number, got '4'");
    bad("just words\n", &plain, ":1: expected key=value, got 'just words'");

    /* unknown keys: an error with the nearest key, or one warning each */
    bad("cuont=1\n", &plain, ":1: unknown key 'cuont' (did you mean 'count'?)");
    bad("zzzzzz=1\n", &plain, ":1: unknown key 'zzzzzz'");
    CHECK(!strstr(err_msg(), "did you mean"), "no hint for a key near nothing: %s", err_msg());
    static const char *const ignored[] = {"eval", "results", NULL};
    const kv_spec warn = {.warn_unknown = 1, .ignored = ignored};
    const char *w = warnings("count=2\nratoi=0.5\neval=coco\nresults=x\nwhatever=1\n", &warn, &rc);
    CHECK(rc == 0 && v.i == 2, "warnings are not errors: %s", err_msg());
    CHECK(strstr(w, P ":2: warning: unknown key 'ratoi' (did you mean 'ratio'?)") != NULL, "warning: '%s'", w);
    CHECK(strstr(w, P ":5: warning: unknown key 'whatever'") != NULL, "second warning: '%s'", w);
    CHECK(!strstr(w, "eval") && !strstr(w, "results"), "ignored keys are silent: '%s'", w);
    int lines = 0;
    for (const char *p = w; *p; p++) lines += *p == '\n';
    CHECK(lines == 2, "one warning per unknown key: '%s'", w);
    w = warnings("resluts=x\n", &warn, &rc);
    CHECK(rc == 0 && strstr(w, "did you mean 'results'?"), "hint among ignored keys: '%s'", w);
    bad("resluts=x\n", &(kv_spec){.ignored = ignored}, "unknown key 'resluts' (did you mean 'results'?)");

    /* sections */
    const kv_spec sect = {.section = "main"};
    rc = read_text("# c\n[main]\ncount=4\n", &sect);
    CHECK(rc == 0 && v.i == 4, "section: %s", err_msg());
    bad("[main]\ncuont=4\n", &sect, ":2: unknown key 'cuont' in [main] (did you mean 'count'?)");
    bad("count=4\n[main]\n", &sect, ":1: 'count=4' before the [main] section");
    bad("[main]\n[other]\n", &sect, ":2: [other]: the only section is [main]");
    bad("[main]\n[main]\n", &sect, ":2: a second [main] section");
    bad("# nothing\n", &sect, ": no [main] section");

    /* a byte order mark, CRLF line ends */
    rc = read_text("\xEF\xBB\xBF" "count=5\r\nname=x\r\n", &plain);
    CHECK(rc == 0 && v.i == 5 && !strcmp(v.s, "x"), "BOM and CRLF: %s", err_msg());
    rc = read_text("\xEF\xBB\xBF[main]\ncount=5\n", &sect);
    CHECK(rc == 0 && v.i == 5, "BOM before a section: %s", err_msg());

    /* binary and odd files, reported as what they are */
    write_bytes("[main]\nna\0me=x\n", 15);
    rc = kv_read(P, keys, NK, &sect);
    CHECK(rc == -1 && strstr(err_msg(), P ":2: a NUL byte"), "NUL: %s", err_msg());
    char *big = malloc(KV_MAX_LINE + 16);
    memset(big, 'a', KV_MAX_LINE + 8);
    memcpy(big, "name=", 5);
    big[KV_MAX_LINE + 8] = '\n';
    write_bytes("[main]\n", 7);
    FILE *f = fopen(P, "ab");
    fwrite(big, 1, KV_MAX_LINE + 9, f);
    fclose(f);
    free(big);
    rc = kv_read(P, keys, NK, &sect);
    CHECK(rc == -1 && strstr(err_msg(), P ":2: a line of") && strstr(err_msg(), "more than 65536"), "long line: %s",
          err_msg());
    mkdir("build/test_kv.dir", 0755);
    rc = kv_read("build/test_kv.dir", keys, NK, &sect);
    CHECK(rc == -1 && strstr(err_msg(), "build/test_kv.dir: is a directory"), "directory: %s", err_msg());
    rmdir("build/test_kv.dir");
    rc = kv_read("build/no/such.cfg", keys, NK, &sect);
    CHECK(rc == -1 && strstr(err_msg(), "build/no/such.cfg: No such file"), "missing: %s", err_msg());

    /* a darknet cfg: the first section's keys only, other keys (darknet's) silent, later sections not read */
    const kv_spec net = {.section = "net", .first_section = 1};
    rc = read_text("[net]\nbatch=128\ncount=3\nmode=slow\n\n[convolutional]\ncount=9\nfilters=8\n", &net);
    CHECK(rc == 0 && v.i == 3 && v.w == 1, "first section: rc %d count %d mode %d: %s", rc, v.i, v.w, err_msg());
    bad("[net]\ncount=11\n[maxpool]\n", &net, P ":2: key 'count' must be");
    rc = read_text("[net]\nflip=1\n[maxpool]\ncount=oops\n", &net);
    CHECK(rc == 0, "a later section's values are its own reader's: %s", err_msg());

    /* the hint: typos within 2 edits, never a word shorter than the distance */
    const char *cands[] = {"tail_share", "gen_soft", "top"};
    CHECK(kv_nearest("tail_shar", cands, 3) == cands[0], "tail_shar");
    CHECK(kv_nearest("gen_sfot", cands, 3) == cands[1], "gen_sfot");
    CHECK(kv_nearest("xy", cands, 3) == NULL, "xy is near nothing");
    CHECK(kv_nearest("tail", cands, 3) == NULL, "tail is 6 edits away");

    free(v.dyn);
    remove(P);
    return check_done("kv");
}
