/* GeNIe's recipe in one place: every default of the generation path, of genie.cfg and of `genie plan` (with why),
 * the shot groups of a long-tailed training list, and the settings fingerprint: the one line that says what makes
 * a generated image what it is, which `genie generate` keeps beside its index (a resume must make its images the
 * same way) and the online module hashes into its cache (a sample is reused only under the same line). */
#ifndef GENIE_RECIPE_H
#define GENIE_RECIPE_H
#include <stddef.h>
#include <stdio.h>
#include "augment/genie/genie.h"
#include "augment/genie/genie_cfg.h"

/* The defaults as a genie.cfg: genie_cfg_default copies it, genie_opts_default and `genie plan` take theirs from
 * it. */
const genie_cfg *recipe_defaults(void);

/* Many / Medium / Few as ImageNet-LT: more than 100 training images, 20..100, fewer than 20. GeNIe's "few" targets,
 * the trainer's per-group report and its tail rows all ask this one function. */
enum shot_group { SHOT_MANY, SHOT_MEDIUM, SHOT_FEW };
#define RECIPE_FEW_BELOW 20
enum shot_group recipe_shot_group(int count);

/* With sync=1 the loader runs this many batches ahead of training, whatever its thread count: the first row that
 * takes a generated sample and the snapshot each sample is planned from depend on it, so a fixed value keeps a
 * seed's run the same on any machine and -threads (4: what 2 loader threads gave, the committed runs'). */
#define RECIPE_SYNC_LOOKAHEAD 4

/* The settings fingerprint of images made through genie_load(o, words) for classes (labels[c] prompted as
 * words[c]): the model (path and the stamp of its files, util_files_stamp), steps, guidance, scheduler, the VAE's
 * posterior mean or sample, the prompt template, every class's label and words (as a hash, so a renamed class
 * inside the same names file counts), and with ada the r set, the fallback r, f_theta's cfg, weights (with their
 * stamps) and layer. `how` (may be NULL) adds how the caller makes its requests (the online module: mode, fixed r,
 * sources). Not in it: the device, precision, threads and batch (a request's image does not depend on them beyond
 * the backends' stated tolerances). One line, no newline; 0, or -1 + err_msg() when it does not fit in n. */
int recipe_settings(const genie_opts *o, char *const *labels, char *const *words, int classes, int ada, const char *how,
                    char *line, size_t n);

/* A genie.cfg as read (defaults filled in), one key=value line per key in genie_cfg.h's order (names, device and
 * cache only when set): what `genie recipe <genie.cfg>` prints for scripts; it reads back as the same settings.
 * 0, or -1 + err_msg() when a write fails. */
int recipe_write_cfg(FILE *f, const genie_cfg *c);
/* genie.cfg's name of a sources= value */
const char *recipe_sources_name(enum genie_sources s);

#endif
