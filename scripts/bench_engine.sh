#!/bin/sh
# make bench-engine: the C engine against PyTorch on the same realistic-size model, inputs and threads.
#
# scripts/bench_engine_ref.py builds a seeded random model of SD proportions, times it in torch and saves it as
# a diffusers folder (+ source image, noise, torch's output); `genie bench-engine` then loads that folder and
# times the same UNet forward and the same img2img. Prints the torch/genie time ratios (> 1: genie is faster),
# the largest difference of the two outputs, and genie's peak memory (VmHWM) against the weights' size.
#
# Settings (environment): THREADS (default: online CPUs), SIZE (256), STEPS (10), STRENGTH (0.5),
# SCHED (dpm|ddim), BATCH (1), REPEAT (3), DTYPE (f16|f32), GENIE (./genie).
set -e

THREADS=${THREADS:-$(nproc)}
SIZE=${SIZE:-256}
STEPS=${STEPS:-10}
STRENGTH=${STRENGTH:-0.5}
SCHED=${SCHED:-dpm}
BATCH=${BATCH:-1}
REPEAT=${REPEAT:-3}
DTYPE=${DTYPE:-f16}
GENIE=${GENIE:-./genie}

case "$SCHED" in
    dpm) GSCHED=dpmpp2m ;;
    ddim) GSCHED=ddim ;;
    *) echo "bench_engine: SCHED must be dpm or ddim" >&2; exit 1 ;;
esac

DIR=$(mktemp -d "${TMPDIR:-/tmp}/genie-bench-engine.XXXXXX")
trap 'rm -rf "$DIR"' EXIT INT TERM

echo "== torch (threads $THREADS, ${SIZE}px, $STEPS steps, strength $STRENGTH, $SCHED, batch $BATCH)"
python3 scripts/bench_engine_ref.py --threads "$THREADS" --size "$SIZE" --steps "$STEPS" --strength "$STRENGTH" \
    --scheduler "$SCHED" --batch "$BATCH" --repeat "$REPEAT" --dtype "$DTYPE" --save "$DIR" | tee "$DIR/torch.txt"

PROMPT=$(sed -n 's/.*"prompt": *"\([^"]*\)".*/\1/p' "$DIR/bench.json")
echo "== genie"
"$GENIE" bench-engine -model "$DIR" -i "$DIR/image.png" -p "$PROMPT" -r "$STRENGTH" -steps "$STEPS" \
    -scheduler "$GSCHED" -threads "$THREADS" -batch "$BATCH" -repeat "$REPEAT" \
    -noise "$DIR/noise.safetensors" -ref "$DIR/torch_out.safetensors" | tee "$DIR/genie.txt"

echo "== torch / genie"
cat "$DIR/torch.txt" "$DIR/genie.txt" | awk '
    { v[$1 " " $2] = $3 }
    END {
        for (k = 0; k < 2; k++) {
            key = k == 0 ? "unet_forward_s" : "img2img_s"
            t = v["torch " key]; g = v["genie " key]
            if (t > 0 && g > 0) printf "%-16s torch %8.3f s   genie %8.3f s   ratio %.2f\n", key, t, g, t / g
        }
        printf "%-16s %s\n", "max_abs_diff", v["genie max_abs_diff_vs_torch"]
        w = v["genie weights_mb"]; p = v["genie peak_rss_mb"]
        printf "%-16s genie %.1f MiB   weight files %.1f MiB   ratio %.2f   (torch peak %s MiB)\n", "peak_memory", p, w,
               (w > 0 ? p / w : 0), v["torch peak_rss_mb"]
    }'
