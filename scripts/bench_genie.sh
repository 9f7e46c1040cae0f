#!/bin/sh
# `make bench-genie`: the online GeNIe module on Fashion-MNIST-LT with the bundled model, in one run each:
#   (a) the trainer alone: cfg/fmnist-ft.cfg from a trained model, ITERS iterations (img/s)
#   (b) the same with -genie, mode genie (fixed r) and (c) mode genie-ada: trainer img/s next to (a), the
#       module's kept images/s, and the share of the rows the module was asked for that it served
# Each -genie run starts with an empty cache, so every sample is made during the run.
# Environment: ITERS (default 200), THREADS (the module's threads, 1), SHARE (0.25), GENIE (the binary, ./genie).
set -eu
ITERS=${ITERS:-200}
THREADS=${THREADS:-1}
SHARE=${SHARE:-0.25}
OUT=build/bench-genie
G=${GENIE:-./genie}
[ -x "$G" ] || { echo "bench-genie: run make first" >&2; exit 1; }
[ -f data/fmnist/lt/train.list ] || "$G" prepare fmnist data/fmnist
mkdir -p "$OUT"
printf 'classes=10\ntrain=data/fmnist/lt/train.list\nvalid=data/fmnist/test.list\nlabels=data/fmnist/labels.list\nbackup=%s/bk\n' \
    "$OUT" > "$OUT/lt.data"
# a starting model: the judge (trained on the full set) stands in for "a model trained on the split"
W=data/models/fmnist-judge.weights

run() {   # name [genie.cfg]
    log="$OUT/$1.log"
    "$G" classifier train "$OUT/lt.data" cfg/fmnist-ft.cfg "$W" -clear -seed 1 -iters "$ITERS" ${2:+-genie "$2"} \
        > "$log" 2>&1
    awk '/iterations in/ { for (i = 1; i <= NF; i++) if ($i == "img/s,") print $(i - 1) }' "$log"
}
gen_cfg() {   # mode
    rm -rf "$OUT/cache-$1"
    printf '[genie]\nmode=%s\nwarmup=0\nshare=%s\nthreads=%s\ncache=%s/cache-%s\n' "$1" "$SHARE" "$THREADS" "$OUT" "$1" \
        > "$OUT/$1.cfg"
    echo "$OUT/$1.cfg"
}
module_line() {   # name -> "kept img/s served short"
    awk '/^online GeNIe:/ { for (i = 1; i <= NF; i++) { if ($i == "img/s);") r = substr($(i - 1), 2)
                                                         if ($i == "rows") s = $(i - 1); if ($i == "short;") f = $(i - 1) }
                            k = $5 } END { printf "%s %s %s %s", k, r, s, f }' "$OUT/$1.log"
}

echo "== (a) trainer alone, $ITERS iterations"
A=$(run plain)
echo "== (b) with -genie, mode genie (r 0.8), module threads $THREADS, share $SHARE"
B=$(run genie "$(gen_cfg genie)")
echo "== (c) with -genie, mode genie-ada"
C=$(run ada "$(gen_cfg genie-ada)")
echo "== summary"
for x in "genie $B $(module_line genie)" "genie-ada $C $(module_line ada)"; do
    set -- $x
    awk -v name="$1" -v t="$2" -v a="$A" -v kept="$3" -v rate="$4" -v served="$5" -v short="$6" 'BEGIN {
        printf "%-10s trainer %7.1f img/s (%.2fx of the trainer alone, %.1f img/s); module kept %s (%s img/s); rows served %s of %s asked (%.1f%%)\n",
            name, t, (a > 0 ? t / a : 0), a, kept, rate, served, served + short, (served + short > 0 ? 100 * served / (served + short) : 0) }'
done
