#include "src/cmd/show_recipe.h"
#include "augment/genie/recipe.h"
#include "common/args.h"
#include "common/err.h"

int show_recipe_main(int argc, char **argv)
{
    const arg_opt opts[] = {ARG_END};
    char *pos[1];
    int np = args_parse("recipe", argc, argv, opts, pos, 1);
    if (np < 0) return -1;
    if (np < 1) return err_set("usage: genie recipe <genie.cfg>   (its settings, defaults filled in, as key=value)");
    genie_cfg c;
    if (genie_cfg_read(pos[0], &c)) return -1;
    return recipe_write_cfg(stdout, &c);
}
