/* genie recipe <genie.cfg>: the settings a genie.cfg resolves to (defaults filled in), one key=value line per key,
 * read by genie's own reader (scripts/recipe.sh takes the ablation's settings from it). */
#ifndef GENIE_SHOW_RECIPE_H
#define GENIE_SHOW_RECIPE_H

int show_recipe_main(int argc, char **argv);

#endif
