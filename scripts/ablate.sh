#!/bin/sh
# GeNIe ablation on a Fashion-MNIST-LT split: Many / Medium / Few accuracy per arm, over seeds.
#
#   scripts/ablate.sh [train.list]        (default: the project's split, data/fmnist/lt/train.list)
#   genie prepare fmnist-lt build/split4 -seed 4 && scripts/ablate.sh build/split4/train.list
#
# Per seed: a plain model is trained on the split (cfg/fmnist.cfg, the demo's schedule); its soft confusion on
# the training list (`classifier valid -soft`) ranks the classes each Few class is confused with (GeNIe's sources:
# the TOP_K first, all 9 others by default). Every arm then fine-tunes that model the same way (cfg/fmnist-ft.cfg
# from its weights with -clear, the same recipe keys, the same seed); only what is added differs:
#   none                 nothing
#   weak strong          augment=weak / strong in [net]
#   cutmix mixup         cutmix=1 / mixup=1 in [net]
#   img2img-L img2img-H  50 images per Few class: its own images at r 0.3 / 0.7 under its own prompt
#   txt2img              50 per Few class from the prompt alone
#   genie                50 per Few class: images of the other classes (TOP_K) at r GENIE_R under its prompt
#   genie-ada            the same pairs, r chosen per pair by GeNIe-Ada over ADA_RSET with f_theta = the plain
#                        model (the paper's frozen backbone)
#   online-genie         the same, made during fine-tuning by the online module (cfg/fmnist-genie.cfg, sync=1):
#   online-genie-ada     sources from the live confusion, Ada's f_theta = the network being trained; they take
#                        0.8 of the tail rows, about the offline arms' share of generated images there
#   online-genie-ada-fast  online GeNIe-Ada as cfg/fmnist-genie-fast.cfg makes it (the GeNIe-distilled student,
#                        2 TCD steps, no CFG pair): that cfg as it is, none of the generation settings below
#   any other name       trains on OUT/s<seed>/gen/<name>.index.csv when one is there (scripts/label_noise.sh's
#                        genie-judged), else on nothing
# The recipe (every arm, from the environment): TAIL_SHARE (default 0.25), GEN_SHARE (unset: a tail row draws
# uniformly from its class's real and generated samples; else the share of tail rows taking a generated sample, for
# the offline arms as gen_share= and the online ones as their cfg's share=, 0.8 unset), GEN_SOFT (0), RT_P (0.5: real images
# replaced by their VAE round trip with this probability, so "looks generated" carries no label), PAIR_SOURCE (0:
# with this probability a generated sample's real source takes the other row of its row pair).
# The base augmentation of every arm (from the environment): AUG (none: cfg/fmnist-ft.cfg as it is; weak, strong,
# cutmix, mixup, or [net] keys such as "augment=weak flip=0"), added to every arm's cfg, so that `none` is the
# base alone and each other arm is base + that arm, all fine-tuned from the same plain models; GEN_AUG (same: as
# the real images) sets gen_augment=, the augmentation of generated samples (none, darknet, weak, strong), and
# TAIL_AUG (same) tail_augment=, that of the real images in the tail rows (TAIL_SHARE's class-balanced rows).
# Many/Medium/Few always by the split's real per-class counts. Results: OUT/results.csv (arm,seed,top1,many,
# medium,few), OUT/table.md (means +- std), OUT/paired.md (each arm against none and txt2img, paired by seed:
# mean difference +- standard error, and on how many seeds it is ahead), OUT/fewclass.md (each Few class's recall
# per arm), OUT/classes.md (every class's recall per arm and its change against none, paired by seed: which head
# classes pay the Many cost), OUT/ablation.png, OUT/front.md and OUT/front.png (Few against Many of every arm, and
# of the runs in FRONT_WITH, other OUTs, so that one plot holds each base; the arms no other arm beats on both are
# marked); with RESULTS=path also copied there (path.csv/.md/.paired.md/.fewclass.md/.classes.md/.png/.front.md/
# .front.png).
# Resumable: finished models, images and rows are kept.
#
# Environment (MODEL, GUIDANCE, STEPS, SCHEDULER, ETA, TOP_K, GENIE_R and ADA_RSET default to cfg/fmnist-genie.cfg's
# model, guidance, steps, scheduler, eta, top_k, r and r_set: scripts/recipe.sh): SEEDS ("1 2 3"), ARMS (all), OUT (build/ablate/<split>),
# MODEL (data/models/fmnist-ldm), PER_CLASS (50), GUIDANCE (3), STEPS (25), SCHEDULER
# (dpmpp2m; lcm or tcd with an LCM-distilled MODEL), ETA (tcd's eta, 0.3), THREADS (loader threads, 2), PHASE (all | base | gen | arms | report),
# GENIE_R (the genie arm's r, 0.9), ADA_RSET (GeNIe-Ada's candidates, 0.7,0.8,0.9: the rule keeps the image just
# after the largest jump; the paper's 0.5..0.9 also keeps 0.6, where many of the bundled model's images still show
# their source), TOP_K (9: from how many of the classes most confused with a Few class the GeNIe arms draw their
# sources; the paper's long-tail protocol takes 4 of ImageNet's 999, but of Fashion-MNIST's 9 the top 4 give too
# few kinds of source: data/results/README.md), SOURCE_WEIGHT (uniform: sources drawn uniformly from those classes,
# as the paper; rate: in proportion to their confusion rates); the online arms take GUIDANCE, STEPS, SCHEDULER, ETA,
# TOP_K, GENIE_R and ADA_RSET into their copy of cfg/fmnist-genie.cfg (the -fast arm none). GENIE (the binary, ./genie),
# BASE (the OUT of an earlier run on the same list: its plain models, training confusions and VAE round trips are
# reused, so a run that changes only how images are generated, e.g. GUIDANCE or a model with the same VAE, trains
# no plain model; and its generated images too when they were made with the same generation settings, so a run
# that changes only AUG or the recipe generates nothing offline)
set -e
cd "$(dirname "$0")/.."
LIST=${1:-data/fmnist/lt/train.list}
[ -f "$LIST" ] || { echo "ablate: $LIST: no such list (genie prepare fmnist-lt DIR -seed K makes one)" >&2; exit 1; }
NAME=$(basename "$(dirname "$LIST")")
AUG=${AUG:-none}
GEN_AUG=${GEN_AUG:-same}
TAIL_AUG=${TAIL_AUG:-same}
case $AUG in
    none) AUG_KEYS="" ;; weak|strong) AUG_KEYS="augment=$AUG" ;; cutmix|mixup) AUG_KEYS="$AUG=1" ;; *) AUG_KEYS=$AUG ;;
esac
[ "$TAIL_AUG" = same ] || AUG_KEYS="$AUG_KEYS tail_augment=$TAIL_AUG"
[ "$GEN_AUG" = same ] || AUG_KEYS="$AUG_KEYS gen_augment=$GEN_AUG"
TAG=$(printf '%s' "$AUG_KEYS" | tr -s ' =' '-' | sed 's/^-//; s/-$//')
OUT=${OUT:-build/ablate/$NAME${TAG:+-$TAG}}
SEEDS=${SEEDS:-1 2 3}
ARMS=${ARMS:-none weak strong cutmix mixup img2img-L img2img-H txt2img genie genie-ada online-genie online-genie-ada online-genie-ada-fast}
. scripts/recipe.sh   # MODEL GUIDANCE STEPS SCHEDULER ETA TOP_K GENIE_R ADA_RSET
PER_CLASS=${PER_CLASS:-50}
THREADS=${THREADS:-2}
TAIL_SHARE=${TAIL_SHARE:-0.25}
GEN_SOFT=${GEN_SOFT:-0}
RT_P=${RT_P:-0.5}
PAIR_SOURCE=${PAIR_SOURCE:-0}
PHASE=${PHASE:-all}
SOURCE_WEIGHT=${SOURCE_WEIGHT:-uniform}
G=${GENIE:-./genie}
mkdir -p "$OUT"
AUG_KEYS=${AUG_KEYS# }
BASE_NAME="base: ${AUG_KEYS:-no augmentation}${GEN_SHARE:+, gen_share=$GEN_SHARE} (AUG=$AUG TAIL_AUG=$TAIL_AUG GEN_AUG=$GEN_AUG)"
echo "ablate: $LIST -> $OUT; seeds $SEEDS; $BASE_NAME; recipe tail_share=$TAIL_SHARE gen_share=${GEN_SHARE:-uniform} gen_soft=$GEN_SOFT roundtrip_p=$RT_P pair_source=$PAIR_SOURCE; model $MODEL"
echo "$BASE_NAME" > "$OUT/base.txt"
# what the offline images depend on: a BASE run with the same line lends its images
GEN_SETTINGS="model=$MODEL guidance=$GUIDANCE steps=$STEPS scheduler=$SCHEDULER top_k=$TOP_K r=$GENIE_R r_set=$ADA_RSET per_class=$PER_CLASS source_weight=$SOURCE_WEIGHT"
[ "$SCHEDULER" = tcd ] && GEN_SETTINGS="$GEN_SETTINGS eta=$ETA"   # the others ignore it: their settings stay as they were
echo "$GEN_SETTINGS" > "$OUT/gen.settings"

mkdata() {   # file backup [extra lines]
    f=$1; b=$2; shift 2
    { echo "classes=10"; echo "train=$LIST"; echo "valid=data/fmnist/test.list"
      echo "labels=data/fmnist/labels.list"; echo "backup=$b"; echo "top=2"
      for l in "$@"; do echo "$l"; done; } > "$f"
}

gen_mode() {  # arm -> "mode r"
    case $1 in
        img2img-L) echo "img2img 0.3" ;; img2img-H) echo "img2img 0.7" ;; txt2img) echo "txt2img 1" ;;
        genie) echo "genie $GENIE_R" ;; genie-ada) echo "ada 0.8" ;; *) echo "" ;;
    esac
}

base() {   # seed
    d=$OUT/s$1
    mkdir -p "$d"
    mkdata "$d/base.data" "$d/base"
    if [ -n "$BASE" ] && [ ! -e "$d/base" ]; then
        [ -f "$BASE/s$1/base/fmnist.weights" ] || { echo "ablate: BASE=$BASE has no plain model for seed $1" >&2; exit 1; }
        ln -s "$(cd "$BASE/s$1" && pwd -P)/base" "$d/base"
        cp "$BASE/s$1/train_confusion.csv" "$d/"
    fi
    if [ -n "$BASE" ] && [ ! -e "$d/gen" ] && [ -d "$BASE/s$1/gen" ] && [ "$(cat "$BASE/gen.settings" 2>/dev/null)" = "$GEN_SETTINGS" ]; then
        ln -s "$(cd "$BASE/s$1" && pwd -P)/gen" "$d/gen"
    fi
    if [ ! -f "$d/base/fmnist.weights" ]; then
        echo "== seed $1: plain model"
        $G classifier train "$d/base.data" cfg/fmnist.cfg -seed "$1" -threads "$THREADS" > "$d/base.log" 2>&1
    fi
    if [ ! -f "$d/train_confusion.csv" ]; then
        mkdata "$d/trainconf.data" "$d/base" && sed -i "s|^valid=.*|valid=$LIST|" "$d/trainconf.data"
        $G classifier valid "$d/trainconf.data" cfg/fmnist.cfg "$d/base/fmnist.weights" -soft \
            -csv "$d/train_confusion.csv" > /dev/null 2>&1
    fi
}

generate() {   # seed
    d=$OUT/s$1
    # generate resumes a plan (made images are kept), and stops if they were made with another model or settings
    if [ "$RT_P" != 0 ] && [ -n "$BASE" ]; then
        [ -f "$OUT/rt.index.csv" ] || cp "$BASE/rt.index.csv" "$OUT/rt.index.csv"
    elif [ "$RT_P" != 0 ]; then
        echo "== VAE round trips of the split"
        $G plan "$d/base.data" -mode roundtrip -dir "$OUT/rt" -o "$OUT/rt.csv"
        $G generate "$OUT/rt.csv" -data "$d/base.data" -model "$MODEL" -batch 32 -index "$OUT/rt.index.csv"
    fi
    for arm in $ARMS; do
        m=$(gen_mode "$arm")
        [ -n "$m" ] || continue
        # images lent by BASE (the same generation settings): made already, their f_theta path aside
        if [ -L "$d/gen" ] && [ -f "$d/gen/$arm.index.csv" ]; then echo "== seed $1: $arm: BASE's images"; continue; fi
        set -- $m "$1"
        mkdir -p "$d/gen"
        echo "== seed $3: generating $arm"
        $G plan "$d/base.data" -mode "$1" -r "$2" -per-class "$PER_CLASS" -top-k "$TOP_K" -seed "$3" \
            -source-weight "$SOURCE_WEIGHT" \
            -confusion "$d/train_confusion.csv" -dir "$d/gen/$arm" -o "$d/gen/$arm.csv"
        $G generate "$d/gen/$arm.csv" -data "$d/base.data" -model "$MODEL" -guidance "$GUIDANCE" -steps "$STEPS" -scheduler "$SCHEDULER" -eta "$ETA" \
            -batch 20 -rset "$ADA_RSET" -backbone cfg/fmnist.cfg -weights "$d/base/fmnist.weights" -index "$d/gen/$arm.index.csv"
        set -- "$3"
    done
}

valid_row() {   # arm seed data cfg weights
    $G classifier valid "$3" "$4" "$5" -csv "$OUT/s$2/$1.confusion.csv" 2>/dev/null | awk -v arm="$1" -v seed="$2" '
        /^top-1:/ { t = $2 } /^Many/ { m = $NF } /^Medium/ { md = $NF } /^Few/ { f = $NF }
        END { if (t == "" || f == "") exit 1; printf "%s,%s,%s,%s,%s,%s\n", arm, seed, t, m, md, f }'
}

arms() {   # seed
    d=$OUT/s$1
    [ -f "$OUT/results.csv" ] || echo "arm,seed,top1,many,medium,few" > "$OUT/results.csv"
    grep -q "^plain,$1," "$OUT/results.csv" || valid_row plain "$1" "$d/base.data" cfg/fmnist.cfg "$d/base/fmnist.weights" >> "$OUT/results.csv"
    mkdir -p "$OUT/cfg"
    for arm in $ARMS; do
        grep -q "^$arm,$1," "$OUT/results.csv" && continue
        extra="tail_share=$TAIL_SHARE"
        [ -n "$GEN_SHARE" ] && extra="$extra
gen_share=$GEN_SHARE"
        [ "$GEN_SOFT" != 0 ] && extra="$extra
gen_soft=$GEN_SOFT"
        [ "$PAIR_SOURCE" != 0 ] && extra="$extra
pair_source=$PAIR_SOURCE"
        [ "$RT_P" != 0 ] && extra="$extra
roundtrip=$OUT/rt.index.csv
roundtrip_p=$RT_P"
        { [ -n "$(gen_mode "$arm")" ] || [ -f "$d/gen/$arm.index.csv" ]; } && extra="$extra
generated=$d/gen/$arm.index.csv"
        # the base's keys, then the arm's own (the last value of a key wins): cfg/fmnist-ft.cfg with lines after [net]
        keys=$AUG_KEYS
        case $arm in weak|strong) keys="$keys augment=$arm" ;; cutmix|mixup) keys="$keys $arm=1" ;; esac
        cfg=cfg/fmnist-ft.cfg
        if [ -n "$keys" ]; then
            cfg=$OUT/cfg/fmnist-ft-$arm.cfg
            printf '%s\n' $keys | awk 'FNR == NR { k = $0; sub(/=.*/, "", k); if (!(k in v)) order[++n] = k; v[k] = $0; next }
                /^\[net\]$/ { print; for (i = 1; i <= n; i++) print v[order[i]]; next } { print }' - cfg/fmnist-ft.cfg > "$cfg"
        fi
        case $arm in
            online-*-fast)
                gcfg=$OUT/cfg/$arm.cfg
                mode=${arm#online-}
                sed "s/^mode=.*/mode=${mode%-fast}/; s/^threads=.*/threads=$THREADS/${GEN_SHARE:+; s/^share=.*/share=$GEN_SHARE/}" \
                    cfg/fmnist-genie-fast.cfg > "$gcfg"
                extra="$extra
genie=$gcfg" ;;
            online-*)
                gcfg=$OUT/cfg/$arm.cfg
                sed "s/^mode=.*/mode=${arm#online-}/; s/^threads=.*/threads=$THREADS/; s|^model=.*|model=$MODEL|; s/^guidance=.*/guidance=$GUIDANCE/; s/^steps=.*/steps=$STEPS/; s/^scheduler=.*/scheduler=$SCHEDULER/; s/^top_k=.*/top_k=$TOP_K/; s/^r=.*/r=$GENIE_R/; s/^r_set=.*/r_set=$ADA_RSET/${GEN_SHARE:+; s/^share=.*/share=$GEN_SHARE/}" \
                    cfg/fmnist-genie.cfg > "$gcfg"
                [ "$SCHEDULER" = tcd ] && echo "eta=$ETA" >> "$gcfg"
                extra="$extra
genie=$gcfg" ;;
        esac
        mkdata "$d/$arm.data" "$d/$arm" "$extra"
        echo "== seed $1: $arm"
        $G classifier train "$d/$arm.data" "$cfg" "$d/base/fmnist.weights" -clear -seed "$1" -threads "$THREADS" \
            > "$d/$arm.log" 2>&1
        valid_row "$arm" "$1" "$d/$arm.data" "$cfg" "$d/$arm/$(basename "$cfg" .cfg).weights" >> "$OUT/results.csv"
        tail -n 1 "$OUT/results.csv"
    done
}

report() {
    # rows in a fixed order: the plain model, then the arms as ARMS lists them, seeds ascending
    awk -F, -v arms="plain $ARMS" 'NR == 1 { print; next } { row[$1, $2] = $0; seen[$2] = 1 }
        END { na = split(arms, a, " "); for (i = 1; i <= na; i++) for (sd = 0; sd <= 1000; sd++)
                  if ((a[i], sd) in row) print row[a[i], sd] }' "$OUT/results.csv" > "$OUT/results.sorted.csv"
    awk -F, 'NR > 1 { k = $1; if (!(k in n)) order[++no] = k; n[k]++
                      for (i = 3; i <= 6; i++) { s[k, i] += $i; q[k, i] += $i * $i } }
        END { print "| arm | seeds | top-1 | Many | Medium | Few |"; print "|---|---|---|---|---|---|"
              for (j = 1; j <= no; j++) { k = order[j]; line = "| " k " | " n[k]
                  for (i = 3; i <= 6; i++) { m = s[k, i] / n[k]; v = q[k, i] / n[k] - m * m
                      line = line sprintf(" | %.3f ± %.3f", m, (v > 0 ? sqrt(v) : 0)) }
                  print line " |" } }' "$OUT/results.sorted.csv" > "$OUT/table.md"
    awk -F, 'NR > 1 { k = $1; if (!(k in n)) order[++no] = k; n[k]++; for (i = 4; i <= 6; i++) { s[k, i] += $i; q[k, i] += $i * $i } }
        END { for (j = 1; j <= no; j++) { k = order[j]; printf "%s", k
                  for (i = 4; i <= 6; i++) { m = s[k, i] / n[k]; v = q[k, i] / n[k] - m * m; printf " %.4f %.4f", m, (v > 0 ? sqrt(v) : 0) }
                  printf "\n" } }' "$OUT/results.sorted.csv" > "$OUT/means.dat"
    # paired by seed (each seed's arms fine-tune the same plain model): the seed-to-seed spread of the plain model
    # cancels, so these differences are what the arms are judged by; points, mean ± standard error over the seeds
    awk -F, 'NR > 1 { k = $1; if (!(k in seen)) { seen[k] = 1; order[++no] = k }; few[k, $2] = $6; many[k, $2] = $4
                      sd[$2] = 1 }
        function diff(a, b, col,   n, s, q, w, d, m, v) {
            n = s = q = w = 0
            for (x in sd) if ((a, x) in few && (b, x) in few) {
                d = 100 * (col == "few" ? few[a, x] - few[b, x] : many[a, x] - many[b, x]); n++; s += d; q += d * d; w += d > 0 }
            if (!n) return "| | "
            m = s / n; v = n > 1 ? (q - n * m * m) / (n - 1) : 0
            return sprintf("| %+.1f ± %.1f | %d/%d ", m, (v > 0 ? sqrt(v / n) : 0), w, n) }
        END { print "| arm | Few vs none | wins | Few vs txt2img | wins | Many vs none | wins |"
              print "|---|---|---|---|---|---|---|"
              for (j = 1; j <= no; j++) { k = order[j]; if (k == "plain" || k == "none") continue
                  print "| " k " " diff(k, "none", "few") (k == "txt2img" ? "| | " : diff(k, "txt2img", "few")) \
                        diff(k, "none", "many") "|" } }' "$OUT/results.sorted.csv" > "$OUT/paired.md"
    # "count label" of each class of the list (the label is what follows the last _ of a file name), and the arms
    counts=$(awk '{ n = split($0, p, "/"); f = p[n]; sub(/\.[^.]*$/, "", f); sub(/^.*_/, "", f); c[f]++ }
                  END { for (k in c) print c[k], k }' "$LIST")
    arml=$(awk -F, 'NR > 1 && !seen[$1]++ { print $1 }' "$OUT/results.sorted.csv" | tr '\n' ' ')
    # each Few class's recall per arm, mean over the seeds' confusion CSVs: which class an arm's Few gain comes from
    fewc=$(printf '%s\n' "$counts" | awk '$1 < 20' | sort -n | awk '{ print $2 }' | tr '\n' ' ')
    { printf '| arm | seeds |'; for c in $fewc; do printf ' %s |' "$c"; done; echo
      printf '|---|---|'; for c in $fewc; do printf -- '---|'; done; echo
      for arm in $arml; do
          files=$(awk -F, -v a="$arm" '$1 == a { print $2 }' "$OUT/results.sorted.csv" | while read -r s; do
                      if [ -f "$OUT/s$s/$arm.confusion.csv" ]; then echo "$OUT/s$s/$arm.confusion.csv"; fi; done)
          [ -n "$files" ] || continue
          awk -F, -v arm="$arm" -v few="$fewc" 'FNR == 1 { nf++; next }
              { t = 0; for (i = 2; i <= NF; i++) t += $i; r[$1] += t ? $FNR / t : 0 }
              END { printf "| %s | %d |", arm, nf; n = split(few, c, " ")
                    for (i = 1; i <= n; i++) printf " %.3f |", r[c[i]] / nf; printf "\n" }' $files
      done; } > "$OUT/fewclass.md"
    # every class's recall per arm, most training images first, and its change against none paired by seed
    # (points): which head classes pay an arm's Many cost (those its generated samples' sources come from)
    allc=$(printf '%s\n' "$counts" | sort -k1,1nr -k2 | awk '{ print $2 }' | tr '\n' ' ')
    rm -f "$OUT/classes.md"   # none from an earlier report when no confusion file is left
    set --
    for arm in $arml; do
        for s in $(awk -F, -v a="$arm" '$1 == a { print $2 }' "$OUT/results.sorted.csv"); do
            [ -f "$OUT/s$s/$arm.confusion.csv" ] && set -- "$@" "a=$arm" "s=$s" "$OUT/s$s/$arm.confusion.csv"
        done
    done
    [ $# -gt 0 ] && awk -F, -v cls="$allc" -v arms="$arml" 'FNR == 1 { next }
        { t = 0; for (i = 2; i <= NF; i++) t += $i; r[a, s, $1] = t ? $FNR / t : 0; if (!((a, s) in n)) { n[a, s] = 1; ns[a]++ } }
        END { nc = split(cls, c, " "); na = split(arms, ar, " ")
              printf "| arm | seeds |"; for (i = 1; i <= nc; i++) printf " %s |", c[i]; printf "\n|---|---|"
              for (i = 1; i <= nc; i++) printf "---|"; printf "\n"
              for (j = 1; j <= na; j++) { k = ar[j]; if (!ns[k]) continue; printf "| %s | %d |", k, ns[k]
                  for (i = 1; i <= nc; i++) { m = d = nd = 0
                      for (x in n) { split(x, q, SUBSEP); if (q[1] != k) continue; m += r[k, q[2], c[i]]
                          if (k != "none" && ("none", q[2]) in n) { d += r[k, q[2], c[i]] - r["none", q[2], c[i]]; nd++ } }
                      printf " %.3f", m / ns[k]; if (nd) printf " (%+.1f)", 100 * d / nd; printf " |" }
                  printf "\n" } }' "$@" > "$OUT/classes.md"
    # Few against Many: every arm of this run and of the FRONT_WITH runs (each its own base); an arm is on the front
    # when no other arm (the plain model aside: it is where every arm starts) has at least its Few and its Many
    for o in "$OUT" $FRONT_WITH; do
        [ -f "$o/means.dat" ] || { echo "ablate: FRONT_WITH: $o/means.dat: none (run its report first)" >&2; continue; }
        b=$(cat "$o/base.txt" 2>/dev/null || echo "base: no augmentation")
        awk -v b="${b#base: }" '$1 != "plain" { print b "\t" $0 }' "$o/means.dat"
    done | awk -F'\t' -v out="$OUT" '{ split($2, f, " "); base[NR] = $1; arm[NR] = f[1]; many[NR] = f[2]; ms[NR] = f[3]; few[NR] = f[6]; fs[NR] = f[7] }
        END { print "| base | arm | Few | Many | on the front |"; print "|---|---|---|---|---|"
              for (i = 1; i <= NR; i++) { dom = 0
                  for (j = 1; j <= NR; j++) if (j != i && few[j] >= few[i] && many[j] >= many[i] && (few[j] > few[i] || many[j] > many[i])) dom = 1
                  front[i] = !dom
                  printf "| %s | %s | %.3f ± %.3f | %.3f ± %.3f | %s |\n", base[i], arm[i], few[i], fs[i], many[i], ms[i], dom ? "" : "**yes**"
                  if (!(base[i] in bi)) bi[base[i]] = ++nb
                  printf "%d\t%s\t%s\t%s\t%s\t%s\t%d\n", bi[base[i]], arm[i], few[i], fs[i], many[i], ms[i], front[i] > (out "/front.dat") }
              for (k in bi) printf "%d\t%s\n", bi[k], k > (out "/front.bases") }' > "$OUT/front.md"
    if command -v gnuplot > /dev/null; then
        nb=$(wc -l < "$OUT/front.bases")
        plots=""
        for i in $(seq 1 "$nb"); do
            t=$(awk -F'\t' -v i="$i" '$1 == i { print $2 }' "$OUT/front.bases" | sed 's/"/\\"/g')
            plots="$plots${plots:+, }'$OUT/front.dat' using (\$1 == $i ? \$3 : 1/0):5:4:6 with xyerrorbars pt $((i + 5)) ps 1.2 lc $i title \"$t\""
        done
        # gnuplot 5.4 crashes on a labels plot with no defined point: one only for the kinds that have points
        for on in 0 1; do
            awk -F'\t' -v on="$on" '$7 == on { n++ } END { exit !n }' "$OUT/front.dat" || continue
            [ "$on" = 1 ] && font=",9:Bold" || font=",8"
            plots="$plots, '$OUT/front.dat' using (\$7 == $on ? \$3 : 1/0):5:2 with labels offset 0.6,0.6 left font \"$font\" notitle"
        done
        gnuplot <<GP
set terminal pngcairo size 1000,700 font ",10"
set output "$OUT/front.png"
set datafile separator "\t"
set title "Fashion-MNIST-LT ($NAME): Few against Many, mean ± std over seeds $SEEDS; filled: on the front"
set xlabel "Few top-1"
set ylabel "Many top-1"
set termoption noenhanced
set offsets graph 0.03, graph 0.12, graph 0.05, graph 0.05
set key outside bottom center
plot $plots, \
     '$OUT/front.dat' using (\$7 == 1 ? \$3 : 1/0):5 with points pt 7 ps 0.7 lc black title "on the front"
GP
        gnuplot <<GP
set terminal pngcairo size 1100,480 font ",10"
set output "$OUT/ablation.png"
set title "Fashion-MNIST-LT ($NAME): accuracy by shot group, mean ± std over seeds $SEEDS"
set ylabel "top-1 accuracy"
set xlabel "arm"
set yrange [0:1]
set style data histograms
set style histogram errorbars gap 2 lw 1
set style fill solid 0.8 border -1
set xtics rotate by -30
set rmargin 10
set key outside top center horizontal
plot "$OUT/means.dat" using 2:3:xtic(1) title "Many", '' using 4:5 title "Medium", '' using 6:7 title "Few"
GP
    else
        echo "ablate: gnuplot not installed (apt-get install gnuplot-nox): no plot" >&2
    fi
    cat "$OUT/base.txt"; echo
    cat "$OUT/table.md"
    echo; echo "Paired by seed (points, mean ± standard error; wins: seeds where the arm is ahead):"; cat "$OUT/paired.md"
    echo; echo "Recall of each Few class (mean over the seeds):"; cat "$OUT/fewclass.md"
    echo; echo "Recall of every class (mean over the seeds; in brackets its change against none, points, paired by seed):"
    cat "$OUT/classes.md" 2>/dev/null || true
    echo; echo "Few against Many (the front: no other arm has at least its Few and its Many):"; cat "$OUT/front.md"
    if [ -n "$RESULTS" ]; then
        mkdir -p "$(dirname "$RESULTS")"
        cp "$OUT/results.sorted.csv" "$RESULTS.csv"
        cp "$OUT/table.md" "$RESULTS.md"
        cp "$OUT/paired.md" "$RESULTS.paired.md"
        cp "$OUT/fewclass.md" "$RESULTS.fewclass.md"
        [ -f "$OUT/classes.md" ] && cp "$OUT/classes.md" "$RESULTS.classes.md"
        [ -f "$OUT/ablation.png" ] && cp "$OUT/ablation.png" "$RESULTS.png"
        cp "$OUT/base.txt" "$RESULTS.base.txt"
        cp "$OUT/front.md" "$RESULTS.front.md"
        [ -f "$OUT/front.png" ] && cp "$OUT/front.png" "$RESULTS.front.png"
    fi
}

for s in $SEEDS; do case $PHASE in all|base) base "$s" ;; esac; done
for s in $SEEDS; do case $PHASE in all|gen) generate "$s" ;; esac; done
for s in $SEEDS; do case $PHASE in all|arms) arms "$s" ;; esac; done
case $PHASE in all|report|arms) report ;; esac
