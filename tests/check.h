/* Minimal test harness: CHECK records a pass or a failure with its location; check_done prints the closing
 * line "N passed, N failed" and returns the exit status. Include once per test program. */
#ifndef GENIE_CHECK_H
#define GENIE_CHECK_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static int check_passed, check_failed;

#define CHECK(cond, ...)                                                               \
    do {                                                                               \
        if (cond) {                                                                    \
            check_passed++;                                                            \
        } else {                                                                       \
            check_failed++;                                                            \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);            \
            fprintf(stderr, __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                       \
        }                                                                              \
    } while (0)

/* Max abs difference of two float arrays; NaN anywhere counts as infinite. */
static inline double check_max_abs(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d != d) return INFINITY;
        if (d > m) m = d;
    }
    return m;
}

/* Runs a shell command with $G standing for the genie binary under test (GENIE, default ./genie: `make test` sets
 * it to the build's binary, so `make asan` runs the sanitised one); returns its exit status (-1 when it died of a
 * signal) and the tail of its output (stdout and stderr) in out. */
static inline int check_sh(const char *cmd, char *out, size_t n)
{
    char full[4096];
    const char *g = getenv("GENIE");
    snprintf(full, sizeof full, "G='%s'; ( %s ) 2>&1", g ? g : "./genie", cmd);
    FILE *p = popen(full, "r");
    size_t len = 0;
    char buf[4096];
    out[0] = 0;
    while (p && fgets(buf, sizeof buf, p)) {
        size_t l = strlen(buf);
        if (len + l + 1 > n) { /* keep the tail */
            memmove(out, out + len / 2, len - len / 2 + 1);
            len -= len / 2;
        }
        memcpy(out + len, buf, l + 1);
        len += l;
    }
    int st = p ? pclose(p) : -1;
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Writes text to path as a test fixture (plain stdio, independent of the code under test); a failure is a failed
 * check. */
static inline void check_write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0, "cannot write the fixture %s", path);
}

static inline int check_done(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
    return check_failed ? 1 : 0;
}
#endif
