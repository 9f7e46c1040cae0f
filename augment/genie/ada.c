#include "augment/genie/ada.h"
#include "common/err.h"
#include "common/num.h"
#include "common/util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

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
    char buf[64];
    for (const char *s = text;;) {
        size_t len = strcspn(s, ",");
        double v;
        snprintf(buf, sizeof buf, "%.*s", (int)(len < sizeof buf - 1 ? len : sizeof buf - 1), s);
        if (len >= sizeof buf || num_double(util_trim(buf), 0, 1, &v) || !(v > 0))
            return err_set("r set \"%s\": \"%.20s\" is not a ratio in (0, 1]", text, s);
        if (n == max) return err_set("r set \"%s\": at most %d values", text, max);
        if (n > 0 && v <= r[n - 1]) return err_set("r set \"%s\": values must increase", text);
        r[n++] = v;
        if (!s[len]) break;
        s += len + 1;
    }
    if (n < 2) return err_set("r set \"%s\": GeNIe-Ada needs at least two ratios", text);
    return n;
}
