#include "src/train/confusion.h"
#include "common/csv.h"
#include "common/err.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int confusion_init(confusion *c, int classes, double decay)
{
    c->classes = classes;
    c->decay = decay;
    c->g = 1;
    pthread_mutex_init(&c->mu, NULL);
    c->m = calloc((size_t)classes * classes, sizeof *c->m);
    return c->m ? 0 : err_set("out of memory for a %dx%d confusion matrix", classes, classes);
}

void confusion_free(confusion *c)
{
    free(c->m);
    c->m = NULL;
    pthread_mutex_destroy(&c->mu);
}

int argmax(const float *a, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (a[i] > a[best]) best = i;
    return best;
}

/* One sample's decay, then its weight into m: 1/g keeps it at 1 in the scaled matrix. Called with the lock. */
static double sample_weight(confusion *c)
{
    if (c->decay >= 1) return 1;
    c->g *= c->decay;
    if (c->g < 1e-150) {
        /* fold g in before it underflows */
        for (int i = 0; i < c->classes * c->classes; i++) c->m[i] *= c->g;
        c->g = 1;
    }
    return 1 / c->g;
}

void confusion_update(confusion *c, const int *truth, const float *probs, int n)
{
    int k = c->classes;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < n; i++)
        if (truth[i] >= 0) c->m[truth[i] * k + argmax(probs + (size_t)i * k, k)] += sample_weight(c);
    pthread_mutex_unlock(&c->mu);
}

void confusion_update_soft(confusion *c, const int *truth, const float *probs, int n)
{
    int k = c->classes;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < n; i++)
        if (truth[i] >= 0) {
            double w = sample_weight(c);
            for (int j = 0; j < k; j++) c->m[truth[i] * k + j] += w * probs[(size_t)i * k + j];
        }
    pthread_mutex_unlock(&c->mu);
}

void confusion_snapshot(confusion *c, double *out)
{
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->classes * c->classes; i++) out[i] = c->m[i] * c->g;
    pthread_mutex_unlock(&c->mu);
}

double confusion_class_total(confusion *c, int t)
{
    double s = 0;
    pthread_mutex_lock(&c->mu);
    for (int j = 0; j < c->classes; j++) s += c->m[t * c->classes + j];
    s *= c->g;
    pthread_mutex_unlock(&c->mu);
    return s;
}

double confusion_count(confusion *c, int t, int p)
{
    pthread_mutex_lock(&c->mu);
    double v = c->m[t * c->classes + p] * c->g;
    pthread_mutex_unlock(&c->mu);
    return v;
}

double confusion_class_accuracy(confusion *c, int t)
{
    double tot = confusion_class_total(c, t);
    return tot > 0 ? confusion_count(c, t, t) / tot : 0;
}

double confusion_accuracy(confusion *c)
{
    double hit = 0, tot = 0;
    pthread_mutex_lock(&c->mu);
    for (int t = 0; t < c->classes; t++)
        for (int j = 0; j < c->classes; j++) {
            tot += c->m[t * c->classes + j];
            if (j == t) hit += c->m[t * c->classes + j];
        }
    pthread_mutex_unlock(&c->mu);
    return tot > 0 ? hit / tot : 0;
}

int confusion_write_csv(confusion *c, char *const *labels, const char *path)
{
    char tmp[4200];
    FILE *f = util_open_tmp(path, tmp, sizeof tmp);
    if (!f) return -1;
    csv_put(f, "truth\\predicted", ',');
    for (int j = 0; j < c->classes; j++) csv_put(f, labels[j], j + 1 < c->classes ? ',' : '\n');
    for (int t = 0; t < c->classes; t++) {
        csv_put(f, labels[t], ',');
        for (int j = 0; j < c->classes; j++)
            fprintf(f, "%.6g%c", c->m[t * c->classes + j] * c->g, j + 1 < c->classes ? ',' : '\n');
    }
    return util_commit(f, tmp, path);
}
