#!/bin/sh
# How much of GeNIe's effect is lost to label noise: samples that still show their source class but carry the
# target's label. A diagnostic, not a recipe: the judge (data/models/fmnist-judge.weights, trained on all of
# Fashion-MNIST, so it knows the Few classes far better than anything trained on the split) is an oracle.
#
#   scripts/label_noise.sh BASE [train.list]      (BASE: a finished scripts/ablate.sh run on the list)
#
# 1. Judge agreement: each generated image of BASE's arms in ARMS (txt2img genie genie-ada) is given to the judge
#    (`classifier valid -predictions`);
#    OUT/agreement.md: per arm and target, then per source class too, the share the judge gives the target (and
#    what else; genie-all: the requests of step 2 before the judge).
# 2. The judged arm: per seed a genie plan of 8/5 PER_CLASS requests per Few class (the same sources and r as the
#    genie arm), of which the first PER_CLASS per class that the judge gives the target are kept as the arm
#    genie-judged; it is fine-tuned like every arm of BASE (scripts/ablate.sh, same recipe, same plain model), so
#    OUT/report/{table,paired,fewclass}.md compare it with BASE's rows.
# Environment: SEEDS ("1 2 3"), ARMS, OUT (build/label_noise/<split>), PER_CLASS (50), JUDGE_W, GENIE (./genie),
# and the recipe's keys as scripts/ablate.sh (defaults the same: scripts/recipe.sh).
set -e
cd "$(dirname "$0")/.."
BASE=${1:?usage: scripts/label_noise.sh BASE [train.list]}
LIST=${2:-data/fmnist/lt/train.list}
[ -f "$BASE/results.csv" ] || { echo "label_noise: $BASE is not a finished scripts/ablate.sh run" >&2; exit 1; }
NAME=$(basename "$(dirname "$LIST")")
OUT=${OUT:-build/label_noise/$NAME}
SEEDS=${SEEDS:-1 2 3}
ARMS=${ARMS:-txt2img genie genie-ada}
PER_CLASS=${PER_CLASS:-50}
. scripts/recipe.sh   # MODEL GUIDANCE STEPS TOP_K GENIE_R ADA_RSET, as scripts/ablate.sh
JUDGE_W=${JUDGE_W:-data/models/fmnist-judge.weights}
G=${GENIE:-./genie}
mkdir -p "$OUT"
export BASE SEEDS PER_CLASS GENIE="$G"

judge() {   # index.csv -> lines "output,source class,target,judged" (source "none" for txt2img)
    awk -F, 'NR > 1 { print $1 }' "$1" > "$OUT/judge.list"
    printf 'classes=10\ntrain=%s\nvalid=%s\nlabels=data/fmnist/labels.list\nbackup=%s\n' "$OUT/judge.list" \
        "$OUT/judge.list" "$OUT" > "$OUT/judge.data"
    $G classifier valid "$OUT/judge.data" cfg/fmnist.cfg "$JUDGE_W" -csv "$OUT/judge.confusion.csv" \
        -predictions "$OUT/judge.pred.csv" > "$OUT/judge.log" 2>&1 || { cat "$OUT/judge.log" >&2; return 1; }
    awk -F, 'FNR == NR { if (FNR > 1) p[$1] = $3; next }
             FNR > 1 { s = $2; sub(/^.*\//, "", s); sub(/\.[^.]*$/, "", s); sub(/^.*_/, "", s)
                       print $1 "," (s == "" ? "none" : s) "," $3 "," p[$1] }' "$OUT/judge.pred.csv" "$1"
}

for seed in $SEEDS; do
    d=$OUT/s$seed
    mkdir -p "$d/gen"
    for arm in $ARMS; do
        [ -f "$d/$arm.judged.csv" ] || { judge "$BASE/s$seed/gen/$arm.index.csv" > "$d/$arm.judged.tmp"
                                          mv "$d/$arm.judged.tmp" "$d/$arm.judged.csv"; }
    done
    if [ ! -f "$d/gen/genie-judged.index.csv" ]; then
        $G plan "$BASE/s$seed/base.data" -mode genie -r "$GENIE_R" -per-class $((PER_CLASS * 8 / 5)) -top-k "$TOP_K" \
            -seed "$seed" -confusion "$BASE/s$seed/train_confusion.csv" -dir "$d/gen/all" -o "$d/gen/all.csv"
        $G generate "$d/gen/all.csv" -data "$BASE/s$seed/base.data" -model "$MODEL" \
            -guidance "$GUIDANCE" -steps "$STEPS" -batch 20 -index "$d/gen/all.index.csv" 2>&1 | grep -v '^\['
        judge "$d/gen/all.index.csv" > "$d/genie-all.judged.csv"
        awk -F, -v n="$PER_CLASS" 'FNR == NR { ok[$1] = $3 == $4; next } FNR == 1 || (ok[$1] && k[$3]++ < n)' \
            "$d/genie-all.judged.csv" "$d/gen/all.index.csv" > "$d/gen/genie-judged.tmp"
        mv "$d/gen/genie-judged.tmp" "$d/gen/genie-judged.index.csv"
    fi
done

# agreement per arm, target and source class, over the seeds (genie-all: the judged arm's requests before the judge)
for arm in $ARMS genie-all; do
    for seed in $SEEDS; do sed "s/^/$arm,/" "$OUT/s$seed/$arm.judged.csv"; done
done | awk -F, '{ k = $1 " | " $4 " | " $3; n[k]++; a[k] += $4 == $5; if ($4 != $5) other[k, $5]++
                  if (!(k in seen)) { seen[k] = 1; order[++no] = k }; cls[$5] = 1
                  t = $1 " | " $4; nt[t]++; at[t] += $4 == $5; if (!(t in seent)) { seent[t] = 1; ordert[++nto] = t } }
    END { print "| arm | target | images | judge says target |"; print "|---|---|---|---|"
          for (j = 1; j <= nto; j++) printf "| %s | %d | %.3f |\n", ordert[j], nt[ordert[j]], at[ordert[j]] / nt[ordert[j]]
          print ""
          print "| arm | target | source | images | judge says target | else (count) |"; print "|---|---|---|---|---|---|"
          for (j = 1; j <= no; j++) { k = order[j]; e = ""
              for (c in cls) if ((k, c) in other) e = e sprintf("%s%s %d", e == "" ? "" : ", ", c, other[k, c])
              printf "| %s | %d | %.2f | %s |\n", k, n[k], a[k] / n[k], e } }' > "$OUT/agreement.md"
cat "$OUT/agreement.md"

# the judged arm, fine-tuned as BASE's arms; rows of BASE joined for the report
PHASE=base OUT=$OUT ARMS=genie-judged sh scripts/ablate.sh "$LIST"
[ -f "$OUT/rt.index.csv" ] || cp "$BASE/rt.index.csv" "$OUT/rt.index.csv"
PHASE=arms OUT=$OUT ARMS=genie-judged sh scripts/ablate.sh "$LIST"
mkdir -p "$OUT/report"
{ head -n 1 "$OUT/results.csv"; grep -hE '^(none|txt2img|genie|genie-ada),' "$BASE/results.csv"; grep -h '^genie-judged,' "$OUT/results.csv"; } \
    > "$OUT/report/results.csv"
for seed in $SEEDS; do mkdir -p "$OUT/report/s$seed"
    for a in none txt2img genie genie-ada; do [ -f "$BASE/s$seed/$a.confusion.csv" ] && cp "$BASE/s$seed/$a.confusion.csv" "$OUT/report/s$seed/"; done
    cp "$OUT/s$seed/genie-judged.confusion.csv" "$OUT/report/s$seed/"
done
PHASE=report OUT=$OUT/report ARMS="none txt2img genie genie-ada genie-judged" sh scripts/ablate.sh "$LIST"
