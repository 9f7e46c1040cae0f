#include "augment/genie/ada.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include "common/err.h"

int ada_choose(const float *emb, int n, int d, const float *zs, const float *zt, float *gaps)
{
    if (n < 2) return -1;
    double vv = 0;
    for (int j = 0; j < d; j++) vv += (double)(zt[j] - zs[j]) * (zt[j] - zs[j]);
    double norm = sqrt(vv);
    if (!(norm >= ADA_MIN_NORM)) return -1;
    /* projections p_i = e_i . v / |v|; the gaps are differences of consecutive projections */
    double prev = 0, best = -1;
    int chosen = 1;
    for (int i = 0; i < n; i++) {
        double p = 0;
        for (int j = 0; j < d; j++) p += (double)emb[(size_t)i * d + j] * (zt[j] - zs[j]);
        p /= norm;
        if (i > 0) {
            double gap = fabs(p - prev);
            if (gaps) gaps[i - 1] = (float)gap;
            if (gap > best) {      /* strict: a tie keeps the lower r */
                best = gap;
                chosen = i;
            }
        }
        prev = p;
    }
    return chosen;
}

int ada_parse_rset(const char *text, double *r, int max)
{
    int n = 0;
    const char *s = text;
    for (;;) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || !(v > 0 && v <= 1))
            return err_set("r set \"%s\": \"%.20s\" is not a ratio in (0, 1]", text, s);
        if (n == max) return err_set("r set \"%s\": more than %d values", text, max);
        if (n > 0 && v <= r[n - 1]) return err_set("r set \"%s\": values must increase", text);
        r[n++] = v;
        if (*end == 0) break;
        if (*end != ',') return err_set("r set \"%s\": expected a comma after %g", text, v);
        s = end + 1;
    }
    if (n < 2) return err_set("r set \"%s\": GeNIe-Ada needs at least two ratios", text);
    return n;
}
