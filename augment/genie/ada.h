/* GeNIe-Ada's choice of the noise ratio (arXiv 2312.02548, Algorithm 1; the official notebook's rule).
 *
 * For one (source, target) pair, an image was generated at each r of an increasing set r_1 < ... < r_n from the
 * same source latent and the same noise. With v = Z_T - Z_S (target class mean embedding minus the source's
 * embedding), each result's embedding e_i is projected on v; the gaps d_i = |(e_{i+1} - e_i) . v| / |v| measure
 * how far each step of r moved the image along the source-to-target path. The chosen sample is the one just after
 * the largest jump: r_{argmax d + 1} (ties to the lower r), so r_1 is never chosen. Shared by `genie generate`
 * and the online module. */
#ifndef GENIE_ADA_H
#define GENIE_ADA_H

#define ADA_MAX_R 16

/* |v| below this (embeddings are L2-normalised) means source and target cannot be told apart along v. */
#define ADA_MIN_NORM 1e-6

/* emb: n rows of d floats (the results at r_1..r_n in order), zs, zt: d floats. Writes the n - 1 gaps into gaps
 * (may be NULL) and returns the index in 1..n-1 of the chosen r, or -1 when |v| < ADA_MIN_NORM (the caller
 * falls back to its fixed r and counts it) or n < 2. */
int ada_choose(const float *emb, int n, int d, const float *zs, const float *zt, float *gaps);

/* Parses "0.5,0.6,..." into r (strictly increasing, each in (0, 1]); returns the count, or -1 + err_msg(). */
int ada_parse_rset(const char *text, double *r, int max);

#endif
