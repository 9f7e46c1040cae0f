/* Confusion statistics: counts, the per-sample decay of the live matrix against a direct computation (through
 * the lazy rescaling), skipped rows, and consistent snapshots taken while another thread updates. */
#include "tests/check.h"
#include "src/train/confusion.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define K 3

static void one_hot(float *p, int c)
{
    for (int j = 0; j < K; j++) p[j] = j == c ? 0.9f : 0.05f;
}

static void decay_against_direct(void)
{
    /* 30000 samples at decay 0.98: the scale folds back several times (0.98^30000 ~ 1e-263) */
    const double decay = 0.98;
    const int n = 30000;
    confusion c;
    confusion_init(&c, K, decay);
    double want[K * K] = {0}, got[K * K];
    float p[K];
    for (int i = 0; i < n; i++) {
        int t = (i * 7) % K, pred = (i * 13 + i / 5) % K, skip = i % 11 == 0 ? -1 : t;
        one_hot(p, pred);
        confusion_update(&c, &skip, p, 1);
        if (skip < 0) continue; /* a skipped row is no sample: nothing decays */
        for (int j = 0; j < K * K; j++) want[j] *= decay;
        want[t * K + pred] += 1;
    }
    confusion_snapshot(&c, got);
    double worst = 0;
    for (int j = 0; j < K * K; j++) worst = fmax(worst, fabs(got[j] - want[j]) / (fabs(want[j]) + 1e-12));
    CHECK(worst < 1e-9, "per-sample decay: relative error %g", worst);
    double tot = 0, hit = 0;
    for (int t = 0; t < K; t++)
        for (int j = 0; j < K; j++) tot += want[t * K + j], hit += t == j ? want[t * K + j] : 0;
    CHECK(fabs(confusion_accuracy(&c) - hit / tot) < 1e-9, "accuracy %g vs %g", confusion_accuracy(&c), hit / tot);
    confusion_free(&c);

    /* decay 1 counts: a batch of rows, two skipped */
    confusion_init(&c, K, 1);
    int truth[5] = {0, 1, -1, 2, -1};
    float probs[5 * K];
    for (int i = 0; i < 5; i++) one_hot(probs + i * K, i % K);
    confusion_update(&c, truth, probs, 5);
    confusion_snapshot(&c, got);
    CHECK(got[0 * K + 0] == 1 && got[1 * K + 1] == 1 && got[2 * K + 0] == 1 && confusion_class_total(&c, 2) == 1 &&
              confusion_class_accuracy(&c, 2) == 0,
          "counts");
    confusion_free(&c);
}

/* While one thread adds batches of 10 counted rows, snapshots never see half a batch. */
struct upd {
    confusion *c;
    int batches;
};

static void *updater(void *arg)
{
    struct upd *u = arg;
    int truth[10];
    float probs[10 * K];
    for (int i = 0; i < 10; i++) {
        truth[i] = i % K;
        one_hot(probs + i * K, (i + 1) % K);
    }
    for (int b = 0; b < u->batches; b++) {
        confusion_update(u->c, truth, probs, 10);
    }
    return NULL;
}

static void snapshots(void)
{
    confusion c;
    confusion_init(&c, K, 1);
    struct upd u = {&c, 20000};
    pthread_t th;
    pthread_create(&th, NULL, updater, &u);
    double m[K * K];
    int torn = 0, taken = 0;
    for (int i = 0; i < 2000; i++) {
        confusion_snapshot(&c, m);
        double s = 0;
        for (int j = 0; j < K * K; j++) s += m[j];
        torn += fmod(s, 10) != 0;
        taken++;
    }
    pthread_join(th, NULL);
    confusion_snapshot(&c, m);
    double s = 0;
    for (int j = 0; j < K * K; j++) s += m[j];
    CHECK(torn == 0, "%d of %d snapshots caught a batch half added", torn, taken);
    CHECK(s == 200000, "final total %g", s);
    confusion_free(&c);
}

int main(void)
{
    decay_against_direct();
    snapshots();
    return check_done("confusion");
}
