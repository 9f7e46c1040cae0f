#!/bin/sh
# `make bench`: training and loading speed on Fashion-MNIST with cfg/fmnist.cfg (batch 128), run from the
# repository root after `make`.
#
#   (a) stock darknet: Debian's /usr/bin/darknet classifier train (its 32-thread load_data included)
#   (b) ./genie classifier train: libdarknet with src/net/blas.c's replacements and genie's loader
#   (c) PyTorch CPU, the same network on random inputs (scripts/bench_torch.py; the training step only)
#   (d) loaders alone: ./genie bench-loader, darknet's load_data against genie's loader (same list,
#       augmentation and thread count)
#   (e) the same at ImageNet sizes: 1,024 JPEGs of 500x375 made by `genie prepare big-jpegs`, a 224x224 cfg with
#       min_crop 224, max_crop 256 and hue/saturation/exposure on; next to the raw decode of the same files with
#       the same threads (the physical limit) and, when installed, torchvision's DataLoader
#
# (a) and (b) train on the same .data and cfg for ITERS batches; img/s counts every batch after the first SKIP,
# data waits included (darknet: "Loaded" + train seconds of each iteration; genie: its per-iteration seconds).
# The machine may be shared: the share of CPU time others used just before each part is printed with it, and a
# busy machine lowers all numbers (PyTorch's OpenMP threads most of all).
#
# Environment: ITERS (default 40), SKIP (5), THREADS (number of online CPUs), LOADER_BATCHES (30), PYTHON.
set -eu

ITERS=${ITERS:-40}
SKIP=${SKIP:-5}
THREADS=${THREADS:-$(getconf _NPROCESSORS_ONLN)}
LOADER_BATCHES=${LOADER_BATCHES:-30}
OUT=build/bench
DARKNET=${DARKNET:-/usr/bin/darknet}

[ -x ./genie ] || { echo "bench: run make first" >&2; exit 1; }
[ -f data/fmnist/train.list ] || ./genie prepare fmnist data/fmnist

# The shipped cfg and .data, stopped after ITERS batches and saving weights under $OUT.
mkdir -p "$OUT/backup"
sed "s/^max_batches=.*/max_batches=$ITERS/" cfg/fmnist.cfg > "$OUT/fmnist.cfg"
sed "s|^backup=.*|backup=$OUT/backup|" cfg/fmnist.data > "$OUT/fmnist.data"

# Share of all CPUs busy over one second (other users of the machine), printed before each part.
busy() {
    a=$(head -n 1 /proc/stat); sleep 1; b=$(head -n 1 /proc/stat)
    printf '%s\n%s\n' "$a" "$b" | awk 'NR == 1 { for (i = 2; i <= NF; i++) t1 += $i; i1 = $5 + $6 }
        NR == 2 { for (i = 2; i <= NF; i++) t2 += $i; i2 = $5 + $6 }
        END { printf "%.0f%%", 100 * (1 - (i2 - i1) / (t2 - t1)) }'
}

echo "== $THREADS threads, $ITERS iterations (first $SKIP untimed); load average $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== (a) stock darknet: $DARKNET classifier train (CPUs busy before: $(busy))"
"$DARKNET" classifier train "$OUT/fmnist.data" "$OUT/fmnist.cfg" > "$OUT/darknet.log" 2>&1
# "Loaded: S seconds" precedes each iteration's "N, E: loss, avg, rate, S seconds, I images" line.
DK=$(awk -v skip="$SKIP" '
    /^Loaded:/ { wait = $2 }
    / seconds, [0-9]+ images/ {
        n++
        for (i = 1; i < NF; i++) if ($(i + 1) == "seconds,") s = $i
        if (n > skip) { t += wait + s; imgs += 128 }
    }
    END { if (t > 0) printf "%.1f", imgs / t; else print "0" }' "$OUT/darknet.log")
echo "stock darknet: $DK img/s"

echo "== (b) ./genie classifier train (CPUs busy before: $(busy))"
./genie classifier train "$OUT/fmnist.data" "$OUT/fmnist.cfg" -clear -threads "$THREADS" > "$OUT/genie.log" 2>&1
GN=$(awk -v skip="$SKIP" '
    / seconds, [0-9]+ images, / {
        n++
        for (i = 1; i < NF; i++) if ($(i + 1) == "seconds,") s = $i
        if (n > skip) { t += s; imgs += 128 }
    }
    END { if (t > 0) printf "%.1f", imgs / t; else print "0" }' "$OUT/genie.log")
grep -E "img/s, waited" "$OUT/genie.log" || true
echo "genie: $GN img/s"

echo "== (c) PyTorch CPU (CPUs busy before: $(busy))"
PY=${PYTHON:-python3}
"$PY" -c "import torch" 2>/dev/null || PY=/usr/bin/python3
if "$PY" -c "import torch" 2>/dev/null; then
    TORCH_LINE=$("$PY" scripts/bench_torch.py --iters "$ITERS" --skip "$SKIP" --threads "$THREADS")
    echo "$TORCH_LINE"
    TH=$(echo "$TORCH_LINE" | awk '{ print $2 }')
else
    echo "PyTorch is not installed (apt-get install python3-torch; make bench installs it): no PyTorch row"
    TH=0
fi

echo "== (d) loaders alone: ./genie bench-loader (CPUs busy before: $(busy))"
LOADER=$(./genie bench-loader "$OUT/fmnist.data" "$OUT/fmnist.cfg" -threads "$THREADS" -batches "$LOADER_BATCHES" \
    2> "$OUT/loader.log")
echo "$LOADER"
# "... genie G img/s, darknet load_data D img/s, ratio R"
LG=$(echo "$LOADER" | sed -n 's/.*genie \([0-9.]*\) img\/s.*/\1/p')
LD=$(echo "$LOADER" | sed -n 's/.*load_data \([0-9.]*\) img\/s.*/\1/p')

echo "== (e) loaders at 224x224 from 500x375 JPEGs (CPUs busy before: $(busy))"
[ -f "$OUT/big/train.list" ] || ./genie prepare big-jpegs "$OUT/big" -n 1024 -size 500x375 -quality 90 2> /dev/null
printf 'classes=10\ntrain=%s/big/train.list\nlabels=data/fmnist/labels.list\nbackup=%s/backup\n' "$OUT" "$OUT" \
    > "$OUT/big.data"
printf '[net]\nbatch=64\nsubdivisions=1\nheight=224\nwidth=224\nchannels=3\nmin_crop=224\nmax_crop=256\nhue=.1
saturation=.75\nexposure=.75\nlearning_rate=0.1\npolicy=constant\nmax_batches=10\n[convolutional]\nfilters=8\nsize=3
stride=4\npad=1\nactivation=leaky\n[avgpool]\n[connected]\noutput=10\nactivation=linear\n[softmax]\ngroups=1\n' \
    > "$OUT/loader224.cfg"
BIG=$(./genie bench-loader "$OUT/big.data" "$OUT/loader224.cfg" -threads "$THREADS" -batches "$LOADER_BATCHES" \
    2> "$OUT/loader224.log")
echo "$BIG"
BG=$(echo "$BIG" | sed -n 's/.*genie \([0-9.]*\) img\/s.*/\1/p')
BD=$(echo "$BIG" | sed -n 's/.*load_data \([0-9.]*\) img\/s.*/\1/p')
BR=$(echo "$BIG" | sed -n 's/.*raw decode \([0-9.]*\) img\/s.*/\1/p')
TV=0
if "$PY" -c "import torchvision, PIL" 2>/dev/null; then
    TV=$("$PY" scripts/bench_torchvision.py "$OUT/big/train.list" --workers "$THREADS" --batches "$LOADER_BATCHES" |
        awk '{ print $2 }')
    echo "torchvision DataLoader: $TV img/s"
else
    echo "torchvision is not installed (apt-get install python3-torchvision python3-pil): no torchvision row"
fi

echo "== summary (batch 128, $THREADS threads, load average now $(cut -d' ' -f1-3 /proc/loadavg))"
awk -v dk="$DK" -v gn="$GN" -v th="$TH" -v ld="$LD" -v lg="$LG" 'BEGIN {
    printf "stock darknet     %9.1f img/s\n", dk
    printf "genie             %9.1f img/s   genie/darknet %.2fx\n", gn, (dk > 0 ? gn / dk : 0)
    if (th > 0) printf "torch CPU         %9.1f img/s   genie/torch   %.2fx\n", th, gn / th
    else print "torch CPU         (not measured: PyTorch is not installed)"
    printf "darknet loader    %9.1f img/s\n", ld
    printf "genie loader      %9.1f img/s   loader/darknet-loader %.2fx\n", lg, (ld > 0 ? lg / ld : 0)
}'
awk -v bd="$BD" -v bg="$BG" -v br="$BR" -v tv="$TV" 'BEGIN {
    printf "at 224x224 from 500x375 JPEGs:\n"
    printf "raw JPEG decode   %9.1f img/s   (the limit: the same files, threads and decoder, nothing else)\n", br
    printf "darknet loader    %9.1f img/s\n", bd
    printf "genie loader      %9.1f img/s   loader/darknet-loader %.2fx, %.0f%% of the raw decode\n", bg, (bd > 0 ? bg / bd : 0), (br > 0 ? 100 * bg / br : 0)
    if (tv > 0) printf "torchvision       %9.1f img/s   genie/torchvision %.2fx\n", tv, bg / tv
}'
