#include "confusion.h"
#include "err.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int confusion_init(confusion *c, int classes, double decay)
{
    c->classes = classes;
    c->decay = decay;
    c->m = calloc((size_t)classes * classes, sizeof *c->m);
    return c->m ? 0 : err_set("out of memory for a %dx%d confusion matrix", classes, classes);
}

void confusion_free(confusion *c)
{
    free(c->m);
    c->m = NULL;
}

int argmax(const float *a, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (a[i] > a[best]) best = i;
    return best;
}

void confusion_update(confusion *c, const int *truth, const float *probs, int n)
{
    int k = c->classes;
    if (c->decay < 1)
        for (int i = 0; i < k * k; i++) c->m[i] *= c->decay;
    for (int i = 0; i < n; i++)
        if (truth[i] >= 0) c->m[truth[i] * k + argmax(probs + (size_t)i * k, k)] += 1;
}

void confusion_update_soft(confusion *c, const int *truth, const float *probs, int n)
{
    int k = c->classes;
    if (c->decay < 1)
        for (int i = 0; i < k * k; i++) c->m[i] *= c->decay;
    for (int i = 0; i < n; i++)
        if (truth[i] >= 0)
            for (int j = 0; j < k; j++) c->m[truth[i] * k + j] += probs[(size_t)i * k + j];
}

double confusion_class_total(const confusion *c, int t)
{
    double s = 0;
    for (int j = 0; j < c->classes; j++) s += c->m[t * c->classes + j];
    return s;
}

double confusion_class_accuracy(const confusion *c, int t)
{
    double tot = confusion_class_total(c, t);
    return tot > 0 ? c->m[t * c->classes + t] / tot : 0;
}

double confusion_accuracy(const confusion *c)
{
    double hit = 0, tot = 0;
    for (int t = 0; t < c->classes; t++) {
        hit += c->m[t * c->classes + t];
        tot += confusion_class_total(c, t);
    }
    return tot > 0 ? hit / tot : 0;
}

int confusion_write_csv(const confusion *c, char *const *labels, const char *path)
{
    char tmp[4200];
    FILE *f = util_open_tmp(path, tmp, sizeof tmp);
    if (!f) return -1;
    fprintf(f, "truth\\predicted");
    for (int j = 0; j < c->classes; j++) fprintf(f, ",%s", labels[j]);
    fputc('\n', f);
    for (int t = 0; t < c->classes; t++) {
        fprintf(f, "%s", labels[t]);
        for (int j = 0; j < c->classes; j++) fprintf(f, ",%.6g", c->m[t * c->classes + j]);
        fputc('\n', f);
    }
    return util_commit(f, tmp, path);
}
