/* What GeNIe makes next, read off confusion statistics (truth rows, predicted columns). The offline `genie plan`
 * and the online module rank sources the same way. */
#ifndef GENIE_PLANNER_H
#define GENIE_PLANNER_H

/* Ranks the classes most confused with target t by rates, so big classes do not win by their size alone:
 * m[t][s] / row(t) + m[s][t] / row(s) over s != t, largest first (ties: lower class first). Writes up to
 * k <= 64 classes into out and returns how many. */
int planner_confused(const double *m, int classes, int t, int k, int *out);
/* One source class among cand[0..n) (planner_confused's top k for t), drawn with probability proportional to its
 * confusion rate with t (uniformly when all rates are 0), so a class that is barely confused with t (ranked in
 * only because there are few classes) is rarely drawn. u in [0, 1) is the draw; -1 when n is 0. */
int planner_source(const double *m, int classes, int t, const int *cand, int n, double u);

/* Draws the next target among the eligible classes with what is left of their quota, each weighted by how wrong
 * the model is on it (1 - its accuracy in m, at least 0.05: a class learnt well still gets a little) times the
 * share of its quota left. u in [0, 1) is the draw. Returns the class, or -1 when none is eligible with quota
 * left. */
int planner_target(const double *m, int classes, const unsigned char *eligible, const int *made, int quota, double u);

#endif
