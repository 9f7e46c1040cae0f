/* Confusion statistics: plain counts for validation, an exponential moving average during training (what the
 * model currently gets wrong, for reporting and for GeNIe's request planner). */
#ifndef GENIE_CONFUSION_H
#define GENIE_CONFUSION_H

#include <pthread.h>

/* The matrix is m[truth * classes + predicted] * g: with decay < 1 every sample first scales the whole matrix by
 * decay, done lazily by shrinking g (and folding it back into m now and then), so an update costs O(1) whatever
 * the number of classes. Updates and reads lock: the trainer updates while the GeNIe planner reads snapshots. */
typedef struct {
    int classes;
    double *m;
    double g;
    double decay;       /* per sample: 1 counts; < 1 weighs a sample n samples ago by decay^n */
    pthread_mutex_t mu;
} confusion;

int confusion_init(confusion *c, int classes, double decay);
void confusion_free(confusion *c);
/* Adds n predictions: truth[i] (a class index; < 0 skips the row) against the argmax of probs row i (classes
 * floats). Each counted row is one sample of decay. */
void confusion_update(confusion *c, const int *truth, const float *probs, int n);
/* A consistent copy of the matrix (classes x classes, scaled), taken under the lock. */
void confusion_snapshot(confusion *c, double *out);
/* The same with each row's whole softmax added: where a model puts probability mass even when its argmax is
 * right (a model that fits its training set still ranks the classes a tail class is confused with). */
void confusion_update_soft(confusion *c, const int *truth, const float *probs, int n);
double confusion_accuracy(confusion *c);
double confusion_class_accuracy(confusion *c, int truth);
double confusion_class_total(confusion *c, int truth);
/* The (scaled) entry of true class t predicted as p. */
double confusion_count(confusion *c, int t, int p);
/* Writes the matrix as RFC 4180 CSV through a temp file and rename: a header "truth\predicted,<label 0>,...", then one
 * row per true class in class order, "<label>,<count>,...". */
int confusion_write_csv(confusion *c, char *const *labels, const char *path);

int argmax(const float *a, int n);
#endif
