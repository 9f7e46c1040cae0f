#!/bin/sh
# make bench-gpu: the engine on a CUDA device at Stable Diffusion 1.5's shapes (512x512; random F16 weights that
# scripts/bench_gpu_model.py writes once into $OUT/model, ~2 GB), next to the published anchors for SD 1.5 at
# 512x512 with CFG on an H100: PyTorch 54.5 it/s, torch.compile 66 it/s, stable-fast 104.6 it/s.
#
# All runs use CFG (guidance 7.5) and DDIM with a 50-step schedule:
#   denoising it/s at batch 1 (r = 1: 50 steps; steps 2..50 timed), and the UNet forward alone at batch 2;
#   GeNIe, r = 0.8 (40 steps run), kept images/s at batch 1, 4, 8, VAE encode and decode included;
#   GeNIe-Ada, r = 0.5 .. 0.9 in one batch of 5 (one image of the five is kept), kept images/s;
#   memory: the peak of weights + buffers the backend tracked, and the device memory in use (all processes).
# Without a CUDA device it prints one line saying so and exits 0.
# Settings (environment): PRECISION (f16|bf16|f32; default f16), DEVICE (cuda), GENIE (build-gpu/genie, built
# here), OUT (build/bench-gpu).
set -e

PRECISION=${PRECISION:-f16}
DEVICE=${DEVICE:-cuda}
GENIE=${GENIE:-build-gpu/genie}
OUT=${OUT:-build/bench-gpu}

if ! { [ -e /dev/nvidia0 ] || nvidia-smi -L >/dev/null 2>&1; }; then
    echo "bench-gpu: needs a CUDA device (none found); nothing measured"
    exit 0
fi
if [ "$GENIE" = build-gpu/genie ]; then make -s GPU=1 build-gpu/genie; fi
mkdir -p "$OUT"

# the binary's own word that it runs on the device (a CUDA build without a usable device falls back to the CPU)
PROBE_IMG=$(ls tests/fixtures/images/*.png | head -n 1)
"$GENIE" bench-engine -model tests/fixtures/sd-tiny-a -i "$PROBE_IMG" -device "$DEVICE" -steps 2 -repeat 1 \
    > "$OUT/probe.txt" 2>&1 || true
if ! grep -q "^genie device cuda" "$OUT/probe.txt"; then
    echo "bench-gpu: needs a CUDA device ($GENIE cannot use one: see $OUT/probe.txt); nothing measured"
    exit 0
fi

MODEL=$OUT/model
if [ ! -f "$MODEL/bench.json" ]; then python3 scripts/bench_gpu_model.py --out "$MODEL"; fi
PROMPT=$(sed -n 's/.*"prompt": *"\([^"]*\)".*/\1/p' "$MODEL/bench.json")

# run NAME ARGS...: one bench-engine run, its `genie <key> <value>` lines in $OUT/NAME.txt
run() {
    name=$1
    shift
    "$GENIE" bench-engine -model "$MODEL" -i "$MODEL/image.png" -p "$PROMPT" -device "$DEVICE" \
        -precision "$PRECISION" -scheduler ddim -steps 50 -guidance 7.5 "$@" > "$OUT/$name.txt"
}
val() { sed -n "s/^genie $2 //p" "$OUT/$1.txt"; }

run rate -batch 1 -r 1.0 -repeat 10
for b in 1 4 8; do run genie_b$b -batch $b -r 0.8 -repeat 1; done
run ada -batch 5 -ada -repeat 1

PEAK=0
USED=0
for n in rate genie_b1 genie_b4 genie_b8 ada; do
    PEAK=$(awk -v a="$PEAK" -v b="$(val $n mem_peak_mb)" 'BEGIN { print (b > a ? b : a) }')
    USED=$(awk -v a="$USED" -v b="$(val $n device_used_mb)" 'BEGIN { print (b > a ? b : a) }')
done
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
UNET=$(awk -v t="$(val rate unet_forward_s)" 'BEGIN { printf "%.2f", 1 / t }')
ADA=$(val ada images_per_s)
ADA_KEPT=$(awk -v r="$ADA" 'BEGIN { printf "%.3f", r / 5 }')
{
    echo "== bench-gpu: SD 1.5 shapes, 512x512, CFG 7.5, DDIM, $PRECISION weights, ${GPU:-CUDA device}"
    echo "denoising, batch 1 with CFG: $(val rate denoise_it_s) it/s (UNet forward alone at batch 2: $UNET it/s)"
    echo "  anchors (H100, SD 1.5 512x512 CFG): PyTorch 54.5 it/s, torch.compile 66 it/s, stable-fast 104.6 it/s"
    echo "GeNIe r=0.8 (40 of 50 steps), kept images/s: batch 1 $(val genie_b1 images_per_s)," \
        "batch 4 $(val genie_b4 images_per_s), batch 8 $(val genie_b8 images_per_s)"
    echo "GeNIe-Ada (5 r's in one batch, 1 kept): $ADA_KEPT kept images/s ($ADA generated/s)"
    echo "memory: peak weights + buffers $PEAK MB (tracked), device in use up to $USED MB (all processes)"
} | tee "$OUT/summary.txt"
