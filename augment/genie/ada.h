/* GeNIe-Ada's choice of the noise ratio (arXiv 2312.02548, Algorithm 1; the official notebook's rule).
 *
 * For one (source, target) pair, an image was generated at each r of an increasing set r_1 < ... < r_n from the
 * same source latent and the same noise. With v = Z_T - Z_S (target class mean embedding minus the source's
 * embedding), each result's embedding e_i is projected on v; the gaps d_i = |(e_{i+1} - e_i) . v| / |v| measure
 * how far each step of r moved the image along the source-to-target path. The chosen sample is the one just after
 * the largest jump: r_{argmax d + 1} (ties to the lower r), so r_1 is never chosen. The whole rule lives here, and
 * `genie generate` and the online module run it the same way: the same Z_T images (ada_mean_images), the same class
 * means (ada_set_class_means), the same results quantised to 8 bits before f_theta sees them, the same fallback
 * (ada_pick). */
#ifndef GENIE_ADA_H
#define GENIE_ADA_H

#include "augment/genie/backbone.h"
#include "common/imgio.h"

#define ADA_MAX_R 16
/* The rule never keeps r_1 (it is the far end of the first gap), so with two ratios it always keeps the second:
 * fixed-r GeNIe at twice the work. An r set for GeNIe-Ada has at least three. */
#define ADA_MIN_R 3

/* |v| below this (embeddings are L2-normalised) means source and target cannot be told apart along v. */
#define ADA_MIN_NORM 1e-6

/* emb: n rows of d floats (the results at r_1..r_n in order), zs, zt: d floats. Writes the n - 1 gaps into gaps
 * (may be NULL) and returns the index in 1..n-1 of the chosen r, or -1 when |v| < ADA_MIN_NORM (the caller
 * falls back to its fixed r and counts it) or n < 2. */
int ada_choose(const float *emb, int n, int d, const float *zs, const float *zt, float *gaps);

/* Z_T's images: of each class c with need[c] and training images, up to ADA_MEAN_IMAGES of them spread evenly over
 * its list (members[c][i * count[c] / m], members in list order), decoded into imgs[c] (calloc'd; counts[c] of
 * them, also after a failure). A class without images gets none (its pairs fall back). 0, or -1 + err_msg(). */
#define ADA_MEAN_IMAGES 64
int ada_mean_images(char *const *paths, int *const *members, const int *count, const unsigned char *need, int classes,
                    img_u8 **imgs, int *counts);
void ada_mean_images_free(img_u8 **imgs, int *counts, int classes);

/* The rule on f_theta (bb, borrowed) for pairs whose results are W x H, over r_set[0..n_r-1]. NULL + err_msg(). */
typedef struct ada ada;
ada *ada_new(backbone *bb, int classes, int W, int H, const double *r_set, int n_r, double fallback_r);
void ada_free(ada *a);
/* Z_T of each class with counts[c] > 0: the mean of its images' normalised embeddings (not renormalised, as the
 * official notebook); set again after every new f_theta. 0, or -1 + err_msg(). */
int ada_set_class_means(ada *a, img_u8 *const *imgs, const int *counts);
/* One pair: outs holds its n_r results (planar [3, H, W] in [0, 1], one after another, at r_set's ratios). Each is
 * quantised to 8 bits as a saved sample would be and embedded with the source (its own decoded pixels, as the
 * classifier sees real data); returns the index of the kept result, with the n_r - 1 gaps in gaps and *fell_back 0,
 * or, when the rule cannot choose (|Z_T - Z_S| ~ 0, or a target without a class mean), the ratio nearest
 * fallback_r with *fell_back 1. -1 + err_msg(). */
int ada_pick(ada *a, const float *outs, const img_u8 *source, int target, float *gaps, int *fell_back);

/* Parses "0.5,0.6,..." into r (strictly increasing, each in (0, 1]); returns the count, or -1 + err_msg(). */
int ada_parse_rset(const char *text, double *r, int max);

#endif
