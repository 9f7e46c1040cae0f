#include "augment/genie/planner.h"

/* how confused t and s are: the share of t's row that went to s plus the share of s's row that went to t */
static double confusion_rate(const double *m, int classes, int t, int s)
{
    double rt = 0, rs = 0;
    for (int j = 0; j < classes; j++) rt += m[t * classes + j], rs += m[s * classes + j];
    return (rt > 0 ? m[t * classes + s] / rt : 0) + (rs > 0 ? m[s * classes + t] / rs : 0);
}

int planner_confused(const double *m, int classes, int t, int k, int *out)
{
    int n = 0;
    double v[64];
    if (k > 64) k = 64;
    for (int s = 0; s < classes; s++) {
        if (s == t) continue;
        double x = confusion_rate(m, classes, t, s);
        int pos = n < k ? n++ : k;
        /* insertion into the top-k list; strict comparison keeps lower classes ahead on ties */
        while (pos > 0 && x > v[pos - 1]) {
            if (pos < k) out[pos] = out[pos - 1], v[pos] = v[pos - 1];
            pos--;
        }
        if (pos < k) out[pos] = s, v[pos] = x;
    }
    return n;
}

int planner_source(const double *m, int classes, int t, const int *cand, int n, double u)
{
    double w[64], total = 0;
    if (n < 1) return -1;
    if (n > 64) n = 64;
    for (int i = 0; i < n; i++) total += w[i] = confusion_rate(m, classes, t, cand[i]);
    if (!(total > 0)) return cand[(int)(u * n) < n ? (int)(u * n) : n - 1];
    double x = u * total;
    for (int i = 0; i < n; i++)
        if ((x -= w[i]) < 0) return cand[i];
    return cand[n - 1]; /* u * total rounding past the end */
}

static double target_weight(const double *m, int classes, int t, int made, int quota)
{
    double row = 0;
    for (int j = 0; j < classes; j++) row += m[t * classes + j];
    double wrong = row > 0 ? 1 - m[t * classes + t] / row : 1;
    if (wrong < 0.05) wrong = 0.05;
    return wrong * (double)(quota - made) / quota;
}

int planner_target(const double *m, int classes, const unsigned char *eligible, const int *made, int quota, double u)
{
    double total = 0;
    for (int t = 0; t < classes; t++)
        if (eligible[t] && made[t] < quota) total += target_weight(m, classes, t, made[t], quota);
    if (total <= 0) return -1;
    double x = u * total;
    int last = -1;
    for (int t = 0; t < classes; t++) {
        if (!eligible[t] || made[t] >= quota) continue;
        last = t;
        x -= target_weight(m, classes, t, made[t], quota);
        if (x < 0) return t;
    }
    return last; /* u * total rounding past the end */
}
