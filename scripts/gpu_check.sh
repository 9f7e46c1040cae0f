#!/bin/sh
# The one device check of the GPU build (under 8 minutes on one H100): scripts/gpu_check.sh OUTDIR writes
# OUTDIR/report.md and one raw log per step beside it (six files). Every step runs under its own time limit; a
# failed step is reported and the next one runs.
#   1 build      make GPU=1 (the GPU libdarknet.so from Debian's darknet source, build-gpu/genie) and the CPU ./genie
#   2 tests      test_backend_ops (every CUDA op against the CPU backend) and test_engine, on the device
#   3 bench-gpu  make bench-gpu: the engine at SD 1.5 shapes (it/s at 512x512 with CFG, GeNIe r 0.8 and GeNIe-Ada
#                kept img/s, peak memory) next to PyTorch 54.5, torch.compile 66.0, stable-fast 104.6 it/s (H100)
#   4 train      classifier train of cfg/fmnist.cfg, TRAIN_ITERS iterations from one seed, on the GPU (-gpu 0) and
#                on the CPU (./genie): img/s of each, and top-1 on the test set within TOL points of each other
#                (the GPU sums in another order: the runs part after a few iterations, the accuracy should not)
#   5 genie      the demo's long-tail fine-tuning (cfg/fmnist-ft.cfg from the judge's weights, FT_ITERS
#                iterations) on the GPU without and with online GeNIe-Ada (cfg/fmnist-genie.cfg with sync=0, the
#                engine on the same device): trainer img/s of both, and the share of the asked rows served
# Environment: TRAIN_ITERS (300), FT_ITERS (200), TOL (2.0 points of top-1), JOBS (make -j, nproc).
set -u
OUT=${1:?usage: scripts/gpu_check.sh OUTDIR}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TRAIN_ITERS=${TRAIN_ITERS:-300}
FT_ITERS=${FT_ITERS:-200}
TOL=${TOL:-2.0}
JOBS=${JOBS:-$(nproc)}
G=build-gpu/genie
W=$OUT/work
R=$OUT/report.md
rm -rf "$W"
mkdir -p "$W"
T0=$(date +%s)

{
    echo "# GPU check ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo
    echo "- device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
    echo "- CUDA: $(/usr/local/cuda/bin/nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
    echo
    echo "| step | result | seconds | log |"
    echo "|---|---|---|---|"
} > "$R"
NOTES=$W/notes.md
: > "$NOTES"

# step NAME LIMIT_S COMMAND: runs COMMAND (sh -c) into NAME.log with a time limit; a line in the report's table
step() {
    name=$1 limit=$2
    shift 2
    s=$(date +%s)
    echo "== $name: $*" >> "$OUT/$name.log"
    timeout -k 10 "$limit" sh -c "$*" >> "$OUT/$name.log" 2>&1
    rc=$?
    t=$(($(date +%s) - s))
    case $rc in
    0) res=ok ;;
    124 | 137) res="**timed out** (${limit} s)" ;;
    *) res="**failed** (exit $rc)" ;;
    esac
    echo "| $name | $res | $t | $name.log |" >> "$R"
    echo "$name: $res (${t} s)"
    return $rc
}
note() { echo "$*" >> "$NOTES"; }
# the value after KEY on the last "N iterations in" line: img/s
imgs() { awk '/iterations in/ { for (i = 1; i <= NF; i++) if ($i == "img/s,") v = $(i - 1) } END { print v }' "$1"; }
top1() { sed -n 's/^top-1: \([0-9.]*\).*/\1/p' "$1" | tail -n 1; }

# 1 build
rm -f "$OUT"/*.log
step build 360 "make -j$JOBS GPU=1 && make -j$JOBS"

# 2 the CUDA tests on the device
step tests 150 "make -j$JOBS GPU=1 build-gpu/tests/test_backend_ops build-gpu/tests/test_engine &&
    GENIE=$G ./build-gpu/tests/test_backend_ops && GENIE=$G ./build-gpu/tests/test_engine"
note "- tests: $(grep -E 'passed, [0-9]+ failed|^skipped' "$OUT/tests.log" | tr '\n' ';' | sed 's/;$//')"

# 3 the engine at SD 1.5 shapes
step bench-gpu 200 "make bench-gpu"
note "- bench-gpu:"
sed -n '/^bench-gpu\|it\/s\|img\/s\|MB\|GB/p' "$OUT/bench-gpu.log" | grep -v '^==' | head -n 20 | sed 's/^/    /' >> "$NOTES"

# 4 the classifier on the GPU and on the CPU: same cfg, seed and iterations
[ -f data/fmnist/train.list ] || ./genie prepare fmnist data/fmnist > "$W/prepare.log" 2>&1
sed "s/^max_batches=.*/max_batches=$TRAIN_ITERS/" cfg/fmnist.cfg > "$W/t.cfg"
for d in gpu cpu; do sed "s|^backup=.*|backup=$W/$d|" cfg/fmnist.data > "$W/$d.data"; done
step train 150 "
    echo '-- GPU'; $G classifier train $W/gpu.data $W/t.cfg -seed 7 -gpu 0 > $W/train-gpu.log 2>&1; r=\$?; tail -n 3 $W/train-gpu.log
    [ \$r -eq 0 ] || exit \$r
    $G classifier valid $W/gpu.data $W/t.cfg $W/gpu/t.weights -gpu 0 > $W/valid-gpu.log 2>&1 || exit 1; grep '^top-1' $W/valid-gpu.log
    echo '-- CPU'; ./genie classifier train $W/cpu.data $W/t.cfg -seed 7 > $W/train-cpu.log 2>&1 || exit 1; tail -n 3 $W/train-cpu.log
    ./genie classifier valid $W/cpu.data $W/t.cfg $W/cpu/t.weights > $W/valid-cpu.log 2>&1 || exit 1; grep '^top-1' $W/valid-cpu.log
    awk -v g=\$(sed -n 's/^top-1: \([0-9.]*\).*/\1/p' $W/valid-gpu.log) -v c=\$(sed -n 's/^top-1: \([0-9.]*\).*/\1/p' $W/valid-cpu.log) \
        -v tol=$TOL 'BEGIN { d = 100 * (g - c); if (d < 0) d = -d; printf \"top-1 GPU %.4f CPU %.4f: %.2f points apart (tolerance %s)\\n\", g, c, d, tol; exit d > tol }'"
GI=$(imgs "$W/train-gpu.log" 2>/dev/null) CI=$(imgs "$W/train-cpu.log" 2>/dev/null)
note "- classifier train, cfg/fmnist.cfg, $TRAIN_ITERS iterations, seed 7: GPU ${GI:-?} img/s, CPU ${CI:-?} img/s; top-1 GPU $(top1 "$W/valid-gpu.log" 2>/dev/null) CPU $(top1 "$W/valid-cpu.log" 2>/dev/null) (tolerance $TOL points)"

# 5 the demo's online GeNIe-Ada fine-tuning on the GPU, sync=0
printf 'classes=10\ntrain=data/fmnist/lt/train.list\nvalid=data/fmnist/test.list\nlabels=data/fmnist/labels.list\nbackup=%s/ft\ntail_share=0.25\n' \
    "$W" > "$W/ft.data"
sed -e '/^cache=/d' -e 's/^sync=.*/sync=0/' cfg/fmnist-genie.cfg > "$W/genie.cfg"
step genie 180 "
    echo '-- without the module'; $G classifier train $W/ft.data cfg/fmnist-ft.cfg data/models/fmnist-judge.weights -clear -seed 1 -iters $FT_ITERS -gpu 0 > $W/ft-none.log 2>&1 || exit 1
    tail -n 2 $W/ft-none.log
    echo '-- with online GeNIe-Ada (sync=0)'; $G classifier train $W/ft.data cfg/fmnist-ft.cfg data/models/fmnist-judge.weights -clear -seed 1 -iters $FT_ITERS -gpu 0 -genie $W/genie.cfg > $W/ft-genie.log 2>&1 || exit 1
    grep -E 'genie module|online GeNIe|iterations in' $W/ft-genie.log | tail -n 6"
A=$(imgs "$W/ft-none.log" 2>/dev/null) B=$(imgs "$W/ft-genie.log" 2>/dev/null)
SERVED=$(awk '/^online GeNIe:/ { for (i = 1; i <= NF; i++) { if ($i == "rows") s = $(i - 1); if ($i == "short;") f = $(i - 1) } }
              END { if (s + f > 0) printf "%s of %s asked rows served (%.1f%%)", s, s + f, 100 * s / (s + f) }' "$W/ft-genie.log" 2>/dev/null)
note "- online GeNIe-Ada fine-tuning, $FT_ITERS iterations, sync=0: trainer ${A:-?} img/s alone, ${B:-?} img/s with the module; ${SERVED:-rows served: not found}"
grep -h '^online GeNIe:' "$W/ft-genie.log" 2>/dev/null | sed 's/^/    /' >> "$NOTES"

{
    echo
    echo "Total: $(($(date +%s) - T0)) s"
    echo
    echo "## Figures"
    echo
    cat "$NOTES"
} >> "$R"
# the work folder's logs go into the steps' logs (what comes back is the report and one log per step)
for f in train-gpu valid-gpu train-cpu valid-cpu; do [ -f "$W/$f.log" ] && { echo "== $f.log"; cat "$W/$f.log"; } >> "$OUT/train.log"; done
for f in ft-none ft-genie; do [ -f "$W/$f.log" ] && { echo "== $f.log"; cat "$W/$f.log"; } >> "$OUT/genie.log"; done
rm -rf "$W"
cat "$R"
