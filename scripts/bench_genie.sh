#!/bin/sh
# `make bench-genie`: the online GeNIe module on Fashion-MNIST-LT with the bundled model, in one command:
#   (a) the trainer alone: cfg/fmnist-ft.cfg from a trained model, ITERS iterations (img/s), run before and after
#       (b) and (c), the mean of the two
#   (b) the same with -genie, mode genie (fixed r) and (c) mode genie-ada, generating as GENIE_CFG does (its model,
#       scheduler, steps, r) but with sync=0, no warmup and SHARE of every batch's rows: trainer img/s next to (a),
#       the module's kept images/s, and the share of the rows the module was asked for that it served
#   (d) make demo's long-tail fine-tuning (cfg/fmnist-ft.cfg, the recipe's .data keys, 200 iterations) without and
#       with online GeNIe-Ada as GENIE_CFG makes it (sync=1): the wall-time ratio (without: the mean of a run before
#       and one after)
# Each -genie run starts with an empty cache, so every sample is made during the run. Last, the goals of online
# GeNIe at the price of plain training, each with today's figure: (d) at most 1.5x; with sync=0, the trainer at
# least 0.8x its speed alone while the module serves at least 50% of the rows asked.
# Environment: ITERS (default 200), THREADS (the module's threads, 1), SHARE (0.25), GENIE (the binary, ./genie),
# GENIE_CFG (the online cfg of (b), (c) and (d): cfg/fmnist-genie-fast.cfg, the few-step setting the goals are
# about; cfg/fmnist-genie.cfg for the recipe's 25 steps with CFG).
# Then the engine on the bundled model and on its distilled student next to PyTorch (engine_figures below;
# `sh scripts/bench_genie.sh engine` runs that part alone).
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
GENIE_CFG=${GENIE_CFG:-cfg/fmnist-genie-fast.cfg}
gen_cfg() {   # mode: GENIE_CFG with these keys after its own (the last value of a key wins)
    rm -rf "$OUT/cache-$1"
    { sed '/^cache=/d' "$GENIE_CFG"
      printf 'mode=%s\nwarmup=0\nsync=0\nshare=%s\nthreads=%s\ncache=%s/cache-%s\n' "$1" "$SHARE" "$THREADS" "$OUT" "$1"
    } > "$OUT/$1.cfg"
    echo "$OUT/$1.cfg"
}
module_line() {   # name -> "kept img/s served short"
    awk '/^online GeNIe:/ { for (i = 1; i <= NF; i++) { if ($i == "img/s);") r = substr($(i - 1), 2)
                                                         if ($i == "rows") s = $(i - 1); if ($i == "short;") f = $(i - 1) }
                            k = $5 } END { printf "%s %s %s %s", k, r, s, f }' "$OUT/$1.log"
}

# ---- engine_figures: the engine on the bundled model next to PyTorch (scripts/bench_engine_ref.py --model) ----
# GeNIe's img2img batch as the module runs it (E_BATCH items, 25 steps at r 0.8 = 20 denoising steps, guidance 3,
# DPM-Solver++ 2M, CFG: the UNet at 2*E_BATCH), at 1 and 2 threads, torch and genie in turn on the same inputs:
# ms per item-step of the denoising loop, GFLOP/s of one UNet call (FLOPs counted by bench_engine_ref.py: convs,
# linears, attention products), sgemm's GFLOP/s at 2048^3 on the same threads (genie -peak), the ratio
# torch/genie (> 1: genie is faster) and the largest difference of the two outputs. E_BATCH (10), E_REPEAT (5).
engine_row() {   # label threads torch.txt genie.txt: one line of figures
    cat "$3" "$4" | awk -v name="$1" -v t="$2" '{ v[$1 " " $2] = $3 }
        END {
            gm = v["genie ms_per_item_step"]; tm = v["torch ms_per_item_step"]
            gg = v["genie unet_gflops_s"]; tg = v["torch unet_gflops_s"]; pk = v["genie sgemm_peak_gflops_s"]
            printf "%s threads %d: genie %7.2f ms/item-step", name, t, gm
            if (gg > 0) printf ", %6.2f GFLOP/s (%.0f%% of sgemm %.1f)", gg, 100 * gg / pk, pk
            if (tm > 0) printf "; torch %7.2f ms/item-step, %6.2f GFLOP/s; genie %.2fx torch (UNet call %.2fx)",
                tm, tg, tm / gm, v["torch unet_forward_s"] / v["genie unet_forward_s"]
            if (v["genie max_abs_diff_vs_torch"] != "") printf "; max |diff| %s", v["genie max_abs_diff_vs_torch"]
            printf "\n" }'
}
engine_figures() {
    E_BATCH=${E_BATCH:-10}
    E_REPEAT=${E_REPEAT:-5}
    M=data/models/fmnist-ldm
    D="$OUT/engine"
    mkdir -p "$D"
    if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
        echo "engine_figures: no python3-torch (/usr/bin/python3): the engine's figures without PyTorch's"
    fi
    for t in 1 2; do
        : > "$D/torch$t.txt"
        /usr/bin/python3 scripts/bench_engine_ref.py --model "$M" --threads "$t" --batch "$E_BATCH" --steps 25 \
            --strength 0.8 --guidance 3 --scheduler dpm --prompt "A photo of a coat" --repeat "$E_REPEAT" \
            --save "$D" > "$D/torch$t.txt" 2>/dev/null || : > "$D/torch$t.txt"
        flops=$(awk '$2 == "unet_flops" { print $3 }' "$D/torch$t.txt")
        if [ -s "$D/torch$t.txt" ]; then   # torch's inputs, and its output to compare with
            set -- -i "$D/image.png" -noise "$D/noise.safetensors" -ref "$D/torch_out.safetensors"
        else
            set -- -i data/fmnist/images/test/00010_coat.jpg
        fi
        "$G" bench-engine -model "$M" "$@" -p "A photo of a coat" -batch "$E_BATCH" -steps 25 -r 0.8 -guidance 3 \
            -scheduler dpmpp2m -threads "$t" -repeat "$E_REPEAT" ${flops:+-flops "$flops"} -peak \
            > "$D/genie$t.txt" 2>/dev/null
        engine_row engine "$t" "$D/torch$t.txt" "$D/genie$t.txt"
    done
    # the few-step path as cfg/fmnist-genie-fast.cfg runs it: the GeNIe-distilled student, TCD 2 steps at r 0.8,
    # eta 0, the guidance folded into the UNet (one call per step at the batch, no CFG pair); timing only
    for t in 1 2; do
        /usr/bin/python3 scripts/bench_engine_ref.py --model data/models/fmnist-genie-student --tcd-eta 0 --threads "$t" \
            --batch "$E_BATCH" --steps 2 --strength 0.8 --guidance 3 --prompt "A photo of a coat" \
            --repeat "$E_REPEAT" > "$D/torch-fast$t.txt" 2>/dev/null || : > "$D/torch-fast$t.txt"
        flops=$(awk '$2 == "unet_flops" { print $3 }' "$D/torch-fast$t.txt")
        "$G" bench-engine -model data/models/fmnist-genie-student -i data/fmnist/images/test/00010_coat.jpg \
            -p "A photo of a coat" -batch "$E_BATCH" -steps 2 -r 0.8 -guidance 3 -scheduler tcd -eta 0 -threads "$t" \
            -repeat "$E_REPEAT" ${flops:+-flops "$flops"} -peak > "$D/genie-fast$t.txt" 2>/dev/null
        engine_row "engine, few-step student (TCD 2 steps)" "$t" "$D/torch-fast$t.txt" "$D/genie-fast$t.txt"
    done
}
[ "${1:-}" = engine ] && { engine_figures; exit 0; }
# ---- end of engine_figures ----

# The runs alone bracket the runs with the module and count as their mean: on a shared machine one run alone can
# differ from the next by 20%, more than the effect measured.
mean2() { echo "$1 $2" | awk '{ printf "%.1f", ($1 + $2) / 2 }'; }
echo "== (a) trainer alone, $ITERS iterations"
A1=$(run plain)
echo "== (b) with -genie, mode genie (fixed r), module threads $THREADS, share $SHARE"
B=$(run genie "$(gen_cfg genie)")
echo "== (c) with -genie, mode genie-ada"
C=$(run ada "$(gen_cfg genie-ada)")
echo "== (a) trainer alone again"
A=$(mean2 "$A1" "$(run plain2)")
echo "== (d) the demo's fine-tuning without and with online GeNIe-Ada ($GENIE_CFG)"
# the demo's recipe keys; its VAE round trips when make demo has made them (they change which real pixels a row
# shows, not the work)
RT=backup/fmnist-lt/roundtrip.index.csv
{ cat "$OUT/lt.data"; echo "tail_share=0.25"; [ -f "$RT" ] && printf 'roundtrip=%s\nroundtrip_p=0.5\n' "$RT"; } > "$OUT/ft.data"
sed '/^cache=/d' "$GENIE_CFG" > "$OUT/demo-genie.cfg"
wall() {   # name [genie.cfg] -> seconds
    t0=$(date +%s.%N)
    "$G" classifier train "$OUT/ft.data" cfg/fmnist-ft.cfg "$W" -clear -seed 1 ${2:+-genie "$2"} > "$OUT/$1.log" 2>&1
    echo "$t0 $(date +%s.%N)" | awk '{ printf "%.1f", $2 - $1 }'
}
D0=$(wall ft-none)
D1=$(wall ft-genie "$OUT/demo-genie.cfg")
D0=$(mean2 "$D0" "$(wall ft-none2)")
echo "== summary"
awk -v a="$D0" -v b="$D1" 'BEGIN { printf "demo fine-tuning: %.1f s without GeNIe, %.1f s with online GeNIe-Ada (sync=1): %.2fx the wall time\n", a, b, b / a }'
for x in "genie $B $(module_line genie)" "genie-ada $C $(module_line ada)"; do
    set -- $x
    awk -v name="$1" -v t="$2" -v a="$A" -v kept="$3" -v rate="$4" -v served="$5" -v short="$6" 'BEGIN {
        printf "%-10s trainer %7.1f img/s (%.2fx of the trainer alone, %.1f img/s); module kept %s (%s img/s); rows served %s of %s asked (%.1f%%)\n",
            name, t, (a > 0 ? t / a : 0), a, kept, rate, served, served + short, (served + short > 0 ? 100 * served / (served + short) : 0) }'
done
echo "== engine on the bundled model"
engine_figures
echo "== goals (online GeNIe at the price of plain training)"
ADA=$(module_line ada)
set -- $C $ADA
awk -v a="$A" -v t="$1" -v served="$4" -v short="$5" -v d0="$D0" -v d1="$D1" 'BEGIN {
    r = d1 / d0; tr = a > 0 ? t / a : 0; sh = served + short > 0 ? 100 * served / (served + short) : 0
    printf "  sync=1 demo fine-tuning wall time  %.2fx  (goal <= 1.5x)   %s\n", r, (r <= 1.5 ? "met" : "not met")
    printf "  sync=0 trainer speed               %.2fx  (goal >= 0.8x)   %s\n", tr, (tr >= 0.8 ? "met" : "not met")
    printf "  sync=0 rows served                 %.1f%%  (goal >= 50%%)   %s\n", sh, (sh >= 50 ? "met" : "not met") }'
