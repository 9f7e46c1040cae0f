/* `genie plan`: writes a `genie generate` plan for a data set, as the GeNIe paper's long-tail protocol does:
 * `-per-class` requests for each target class (default: the Few classes, < 20 training images), with sources
 * by mode:
 *   genie, ada   a real training image of one of the `-top-k` classes most confused with the target
 *                (augment/genie/planner.h's ranking of a confusion CSV: truth rows, predicted columns, e.g. `genie classifier valid -soft` of the
 *                plain model on its training list; both directions count, as rates), the class drawn
 *                uniformly among them
 *   img2img      a real training image of the target class itself
 *   txt2img      none (r = 1)
 *   roundtrip    every training image once (r = 0): the real set with the autoencoder's look
 * Every draw comes from Philox keyed by (-seed, request number), so a plan is a pure function of its inputs. */
#ifndef GENIE_PLAN_H
#define GENIE_PLAN_H

int plan_main(int argc, char **argv);

#endif
