# The GeNIe recipe's generation settings for the ablation scripts (sourced from the repository root): each comes
# from cfg/fmnist-genie.cfg, the online module's cfg that make demo runs, unless the environment sets it, so the
# offline arms, the online arms and the demo are written down once. The cfg is read by genie's own reader
# (`genie recipe`: its keys with the defaults filled in), so what the scripts use is what the module would.
RECIPE_CFG=$("${GENIE:-./genie}" recipe cfg/fmnist-genie.cfg) || { echo "recipe.sh: cannot read cfg/fmnist-genie.cfg" >&2; exit 1; }
recipe_key() { printf '%s\n' "$RECIPE_CFG" | sed -n "s/^$1=//p"; }
MODEL=${MODEL:-$(recipe_key model)}
GUIDANCE=${GUIDANCE:-$(recipe_key guidance)}
STEPS=${STEPS:-$(recipe_key steps)}
SCHEDULER=${SCHEDULER:-$(recipe_key scheduler)}
ETA=${ETA:-$(recipe_key eta)}
TOP_K=${TOP_K:-$(recipe_key top_k)}
GENIE_R=${GENIE_R:-$(recipe_key r)}
ADA_RSET=${ADA_RSET:-$(recipe_key r_set)}
