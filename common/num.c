#include "common/num.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

/* [sign] digits: what strtoll/strtoull may read, without the white space, "0x" or locale forms they also take */
static int plain_integer(const char *s, int sign_ok)
{
    if (sign_ok && (*s == '-' || *s == '+')) s++;
    if (!*s) return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s)) return 0;
    return 1;
}

/* [sign] digits [. digits] [e [sign] digits], at least one digit in the mantissa */
static int plain_decimal(const char *s)
{
    int digits = 0;
    if (*s == '-' || *s == '+') s++;
    for (; isdigit((unsigned char)*s); s++) digits++;
    if (*s == '.')
        for (s++; isdigit((unsigned char)*s); s++) digits++;
    if (!digits) return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '-' || *s == '+') s++;
        if (!isdigit((unsigned char)*s)) return 0;
        while (isdigit((unsigned char)*s)) s++;
    }
    return *s == 0;
}

int num_int64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    if (!plain_integer(s, 1)) return NUM_SYNTAX;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE || v < lo || v > hi) return NUM_RANGE;
    *out = v;
    return NUM_OK;
}

int num_int(const char *s, int lo, int hi, int *out)
{
    int64_t v;
    int rc = num_int64(s, lo, hi, &v);
    if (rc == NUM_OK) *out = (int)v;
    return rc;
}

int num_uint64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!plain_integer(s, 0)) return NUM_SYNTAX;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno == ERANGE || v < lo || v > hi) return NUM_RANGE;
    *out = v;
    return NUM_OK;
}

int num_double(const char *s, double lo, double hi, double *out)
{
    if (!plain_decimal(s)) return NUM_SYNTAX;
    double v = strtod(s, NULL);
    /* ERANGE on underflow gives a finite value: only overflow is out of range */
    if (!isfinite(v) || v < lo || v > hi) return NUM_RANGE;
    *out = v;
    return NUM_OK;
}
