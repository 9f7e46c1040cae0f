#!/bin/sh
# How far a diffusion model's images are from real Fashion-MNIST, through genie itself:
#   (a) the judge classifier (data/models/fmnist-judge.weights) on the real test set and on its VAE round trips
#       (encode -> decode, `genie generate` rows with r 0), plus the round trips' PSNR;
#   (b) the classification accuracy score (CAS): cfg/fmnist.cfg trained on N txt2img images per class only, tested
#       on the real test set, next to the same training on N real images per class.
#
#   scripts/measure_ldm.sh [MODEL] [OUT]        (defaults: data/models/fmnist-ldm, build/measure-ldm)
# Environment: N (300 per class), ITERS (1000 training iterations), GUIDANCE (3), STEPS (25), SEED (1).
# Prints the figures and writes OUT/summary.json.
set -e
cd "$(dirname "$0")/.."
MODEL=${1:-data/models/fmnist-ldm}
OUT=${2:-build/measure-ldm}
N=${N:-300}
ITERS=${ITERS:-1000}
GUIDANCE=${GUIDANCE:-3}
STEPS=${STEPS:-25}
SEED=${SEED:-1}
G=./genie
mkdir -p "$OUT"

mkdata() {   # file train valid backup
    printf 'classes=10\ntrain=%s\nvalid=%s\nlabels=data/fmnist/labels.list\nbackup=%s\ntop=2\n' "$2" "$3" "$4" > "$1"
}
top1() { awk '/^top-1:/ { print $2 }'; }

# (a) judge on real test images and on their round trips
mkdata "$OUT/test.data" data/fmnist/test.list data/fmnist/test.list "$OUT"
real=$($G classifier valid "$OUT/test.data" cfg/fmnist.cfg data/models/fmnist-judge.weights -csv "$OUT/judge_real.csv" 2>/dev/null | top1)
$G plan "$OUT/test.data" -mode roundtrip -dir "$OUT/rt" -o "$OUT/rt.csv"
$G generate "$OUT/rt.csv" -data "$OUT/test.data" -model "$MODEL" -batch 50 -index "$OUT/rt.index.csv" 2> "$OUT/rt.log"
psnr=$(awk '/VAE round trips/ { for (i = 1; i <= NF; i++) if ($i == "PSNR") print $(i + 1) }' "$OUT/rt.log")
tail -n +2 "$OUT/rt.index.csv" | cut -d, -f1 > "$OUT/rt.list"
mkdata "$OUT/rt.data" data/fmnist/test.list "$OUT/rt.list" "$OUT"
rt=$($G classifier valid "$OUT/rt.data" cfg/fmnist.cfg data/models/fmnist-judge.weights -csv "$OUT/judge_rt.csv" 2>/dev/null | top1)
echo "judge: real test set $real, VAE round trips $rt; round-trip PSNR ${psnr:-?} dB"

# (b) CAS: N txt2img images per class vs N real images per class, same network and schedule
mkdata "$OUT/full.data" data/fmnist/train.list data/fmnist/test.list "$OUT"
$G plan "$OUT/full.data" -mode txt2img -targets all -per-class "$N" -seed "$SEED" -dir "$OUT/t2i" -o "$OUT/t2i.csv"
$G generate "$OUT/t2i.csv" -data "$OUT/full.data" -model "$MODEL" -guidance "$GUIDANCE" -steps "$STEPS" -batch 50 \
    -index "$OUT/t2i.index.csv" 2> "$OUT/t2i.log"
tail -n +2 "$OUT/t2i.index.csv" | cut -d, -f1 > "$OUT/t2i.list"
awk -F_ -v n="$N" '{ c = $NF; if (k[c]++ < n) print }' data/fmnist/train.list > "$OUT/real.list"
sed "s/^max_batches=.*/max_batches=$ITERS/" cfg/fmnist.cfg > "$OUT/fmnist-cas.cfg"
for kind in t2i real; do
    mkdata "$OUT/cas-$kind.data" "$OUT/$kind.list" data/fmnist/test.list "$OUT/cas-$kind"
    [ -f "$OUT/cas-$kind/fmnist-cas.weights" ] ||
        $G classifier train "$OUT/cas-$kind.data" "$OUT/fmnist-cas.cfg" -seed "$SEED" > "$OUT/cas-$kind.log" 2>&1
done
cas=$($G classifier valid "$OUT/cas-t2i.data" "$OUT/fmnist-cas.cfg" "$OUT/cas-t2i/fmnist-cas.weights" 2>/dev/null | top1)
ras=$($G classifier valid "$OUT/cas-real.data" "$OUT/fmnist-cas.cfg" "$OUT/cas-real/fmnist-cas.weights" 2>/dev/null | top1)
echo "CAS ($N txt2img images per class, guidance $GUIDANCE): $cas; same training on $N real images per class: $ras"
cat > "$OUT/summary.json" <<J
{"model": "$MODEL", "judge_real": $real, "judge_roundtrip": $rt, "roundtrip_psnr_db": ${psnr:-null},
 "cas": $cas, "real_same_n": $ras, "n_per_class": $N, "iters": $ITERS, "guidance": $GUIDANCE, "steps": $STEPS}
J
cat "$OUT/summary.json"
