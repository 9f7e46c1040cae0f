/* Confusion statistics: plain counts for validation, an exponential moving average during training (what the
 * model currently gets wrong, for reporting and for GeNIe's request planner). */
#ifndef GENIE_CONFUSION_H
#define GENIE_CONFUSION_H

typedef struct {
    int classes;
    double *m;          /* m[truth * classes + predicted] */
    double decay;       /* 1: counts; < 1: each update first scales the matrix by decay */
} confusion;

int confusion_init(confusion *c, int classes, double decay);
void confusion_free(confusion *c);
/* Adds n predictions: truth[i] (a class index) against the argmax of probs row i (classes floats). */
void confusion_update(confusion *c, const int *truth, const float *probs, int n);
/* The same with each row's whole softmax added: where a model puts probability mass even when its argmax is
 * right (a model that fits its training set still ranks the classes a tail class is confused with). */
void confusion_update_soft(confusion *c, const int *truth, const float *probs, int n);
double confusion_accuracy(const confusion *c);
double confusion_class_accuracy(const confusion *c, int truth);
double confusion_class_total(const confusion *c, int truth);
/* Writes the matrix as CSV (header of labels, one row per true class) through a temp file and rename. */
int confusion_write_csv(const confusion *c, char *const *labels, const char *path);

int argmax(const float *a, int n);
#endif
