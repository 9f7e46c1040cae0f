#!/bin/bash
# Measures a Fashion-MNIST latent diffusion model through the C engine (one ./genie generate plan and ./genie sweep, what
# GeNIe runs), judged by a darknet classifier trained with ./genie classifier train on Fashion-MNIST:
#   1. txt2img: N_T2I samples per class prompt "A photo of a <class>"; share the judge gives the prompted class;
#   2. GeNIe: sources of class S (Fashion-MNIST test images), prompt of class T, r = 0.1 .. 1.0: P(judge says T),
#      P(judge says S) per r, for the pairs in PAIRS; a plot of P(T) vs r and a ./genie sweep strip per pair;
#   3. the C engine against the PyTorch reference (scripts/ldm_torch_check.py) on the same inputs and noise.
# Generated images are 32x32 PNGs given to the judge as files: its validation transform scales the shorter side to
# 28 and centre-crops, as the trainer's loader does with GeNIe outputs.
# usage: scripts/judge_ldm.sh [MODEL] [OUTDIR]     (env: N_T2I, N_SRC, STEPS, GUIDANCE, SCHED (ddim; lcm or tcd for
#        an LCM-distilled model, whose engine-vs-PyTorch check is tests/test_lcm.c: part 3 is then skipped), ETA
#        (tcd's eta, 0.3), PAIRS, JUDGE_CFG, JUDGE_W)
# Writes OUTDIR/results.json, OUTDIR/genie_curve.png, OUTDIR/sweep_<S>_<T>.png; prints every figure.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-data/models/fmnist-ldm}
OUT=${2:-build/judge-ldm}
N_T2I=${N_T2I:-30}
N_SRC=${N_SRC:-20}
STEPS=${STEPS:-25}
GUIDANCE=${GUIDANCE:-7.5}
SCHED=${SCHED:-ddim}
ETA=${ETA:-0.3}
PAIRS=${PAIRS:-"sandal:sneaker tee:dress bag:boot trouser:coat"}
JUDGE_CFG=${JUDGE_CFG:-cfg/fmnist.cfg}
JUDGE_W=${JUDGE_W:-data/models/fmnist-judge.weights}
PY=/usr/bin/python3
CLASSES=(tee trouser pullover dress coat sandal shirt sneaker bag boot)
G="./genie"
OPTS=(-model "$MODEL" -steps "$STEPS" -guidance "$GUIDANCE" -scheduler "$SCHED" -eta "$ETA")

rm -rf "$OUT"
mkdir -p "$OUT"

# valid LIST -> OUT/NAME.csv confusion matrix (rows: intended class from the file name, columns: judged class)
judge() {
    local list=$1 name=$2
    printf 'classes=10\ntrain=%s\nvalid=%s\nlabels=data/fmnist/labels.list\nbackup=%s\n' "$list" "$list" "$OUT" \
        > "$OUT/$name.data"
    "$G" classifier valid "$OUT/$name.data" "$JUDGE_CFG" "$JUDGE_W" -csv "$OUT/$name.csv" > "$OUT/$name.log" 2>&1
}

# Every image comes from one `genie generate` plan (batched, prompts encoded once; sources encoded with the
# posterior mean, as GeNIe does): rows "source,target,r,seed,output".
PLAN="$OUT/plan.csv"
echo "source,target,r,seed,output" > "$PLAN"
n=0
: > "$OUT/t2i.list"
mkdir -p "$OUT/t2i"
for c in "${CLASSES[@]}"; do
    for s in $(seq 1 "$N_T2I"); do
        f=$(printf '%s/t2i/%05d_%s.png' "$OUT" "$n" "$c")
        echo ",$c,1,$s,$f" >> "$PLAN"
        echo "$f" >> "$OUT/t2i.list"
        n=$((n + 1))
    done
done
p=0
for pair in $PAIRS; do
    S=${pair%%:*}
    T=${pair##*:}
    grep -m "$N_SRC" "_${S}\.jpg$" data/fmnist/test.list > "$OUT/src_p$p.list"
    for ri in 1 2 3 4 5 6 7 8 9 10; do
        r=$(printf '0.%d' "$ri")
        [ "$ri" = 10 ] && r=1.0
        d=$(printf '%s/genie/p%d/r%02d' "$OUT" "$p" "$ri")
        mkdir -p "$d"
        : > "$d.list"
        k=0
        while read -r src; do
            f=$(printf '%s/%05d_%s.png' "$d" "$k" "$T")
            echo "$src,$T,$r,$((k + 1)),$f" >> "$PLAN"
            echo "$f" >> "$d.list"
            k=$((k + 1))
        done < "$OUT/src_p$p.list"
    done
    p=$((p + 1))
done
echo "== $n txt2img samples ($N_T2I per class) and GeNIe img2img of $N_SRC sources per pair at r = 0.1 .. 1.0" \
     "($SCHED $STEPS steps, guidance $GUIDANCE$([ "$SCHED" = tcd ] && echo ", eta $ETA"))"
"$G" generate "$PLAN" -labels data/fmnist/labels.list -model "$MODEL" -steps "$STEPS" -guidance "$GUIDANCE" \
    -scheduler "$SCHED" -eta "$ETA" -batch 20 2> "$OUT/generate.log"
judge "$OUT/t2i.list" t2i
p=0
for pair in $PAIRS; do
    S=${pair%%:*}
    T=${pair##*:}
    for ri in 1 2 3 4 5 6 7 8 9 10; do
        judge "$(printf '%s/genie/p%d/r%02d' "$OUT" "$p" "$ri").list" "genie_p${p}_r$(printf '%02d' "$ri")"
    done
    "$G" sweep "${OPTS[@]}" -i "$(head -n 1 "$OUT/src_p$p.list")" -p "A photo of a $T" -seed 1 \
        -o "$OUT/sweep_${S}_${T}.png" 2> /dev/null
    p=$((p + 1))
done

if [ "$SCHED" = ddim ]; then
echo "== C engine vs PyTorch reference (same source, noise file, DDIM $STEPS steps, guidance $GUIDANCE)"
$PY scripts/ldm_torch_check.py "$MODEL" "$OUT/torch" --steps "$STEPS" --guidance "$GUIDANCE" --r 0.8 \
    --prompt "A photo of a bag" > /dev/null
"$G" bench-engine "${OPTS[@]}" -i "$OUT/torch/src.png" -p "A photo of a bag" -r 0.8 -batch 2 -repeat 1 \
    -noise "$OUT/torch/noise.safetensors" -ref "$OUT/torch/ref.safetensors" > "$OUT/torch/bench.log" 2>&1
"$G" txt2img "${OPTS[@]}" -p "A photo of a bag" -noise "$OUT/torch/noise.safetensors" -o "$OUT/torch/genie_t2i.png" \
    2> /dev/null
$PY scripts/ldm_torch_check.py --compare-png "$OUT/torch/genie_t2i.png" "$OUT/torch/txt2img.png" > "$OUT/torch/png.log"
fi

OUT="$OUT" PAIRS="$PAIRS" STEPS="$STEPS" GUIDANCE="$GUIDANCE" MODEL="$MODEL" SCHED="$SCHED" ETA="$ETA" $PY - <<'EOF'
import json, os, re, sys
import numpy as np
sys.path.insert(0, "scripts")
import sd_ref as R

out, pairs = os.environ["OUT"], [p.split(":") for p in os.environ["PAIRS"].split()]
names = "tee trouser pullover dress coat sandal shirt sneaker bag boot".split()

def conf(name):
    rows = [l.strip().split(",") for l in open(os.path.join(out, name + ".csv"))][1:]
    return np.array([[float(v) for v in r[1:]] for r in rows])

res = {"model": os.environ["MODEL"], "steps": int(os.environ["STEPS"]), "guidance": float(os.environ["GUIDANCE"]),
       "scheduler": os.environ["SCHED"]}
if res["scheduler"] == "tcd":
    res["eta"] = float(os.environ["ETA"])
m = conf("t2i")
per = {names[c]: m[c, c] / m[c].sum() for c in range(10)}
res["txt2img_accuracy"] = float(np.trace(m) / m.sum())
res["txt2img_per_class"] = per
res["txt2img_samples"] = int(m.sum())
print(f"txt2img: judge agrees with the prompt on {res['txt2img_accuracy']:.3f} of {int(m.sum())} samples")
print("  " + " ".join(f"{k} {v:.2f}" for k, v in per.items()))
curves = {}
for p, (s, t) in enumerate(pairs):
    si, ti = names.index(s), names.index(t)
    pt, ps = [], []
    for ri in range(1, 11):
        c = conf(f"genie_p{p}_r{ri:02d}")
        pt.append(c[ti, ti] / c[ti].sum())
        ps.append(c[ti, si] / c[ti].sum())
    curves[f"{s}->{t}"] = {"r": [ri / 10 for ri in range(1, 11)], "p_target": pt, "p_source": ps,
                           "sources": int(c[ti].sum())}
    print(f"GeNIe {s} -> {t}: P(T) " + " ".join(f"{v:.2f}" for v in pt))
    print(f"{'':>{len(s) + len(t) + 10}}P(S) " + " ".join(f"{v:.2f}" for v in ps))
res["genie"] = curves
res["genie_mean_p_target_r08"] = float(np.mean([v["p_target"][7] for v in curves.values()]))
res["genie_mean_p_source_r03"] = float(np.mean([v["p_source"][2] for v in curves.values()]))
print(f"GeNIe mean over pairs: P(T) at r=0.8 {res['genie_mean_p_target_r08']:.3f}, "
      f"P(S) at r=0.3 {res['genie_mean_p_source_r03']:.3f}")
if os.environ["SCHED"] == "ddim":
    bench = open(os.path.join(out, "torch", "bench.log")).read()
    res["engine_vs_torch_img2img_max_abs"] = float(re.search(r"max_abs_diff_vs_torch (\S+)", bench).group(1))
    res["engine_vs_torch_txt2img_png_max_abs_8bit"] = int(open(os.path.join(out, "torch", "png.log")).read().split()[1])
    print(f"C engine vs PyTorch: img2img r=0.8 batch 2 max abs diff {res['engine_vs_torch_img2img_max_abs']:.3g} "
          f"(images in [0,1]); txt2img 8-bit PNGs max diff {res['engine_vs_torch_txt2img_png_max_abs_8bit']} levels")
R.write_json(os.path.join(out, "results.json"), res)

# P(T) vs r: a small line plot drawn with numpy (no matplotlib), written with sd_ref.write_png
W, H, m0 = 320, 220, 30
img = np.full((H, W, 3), 255, np.uint8)
cols = [(200, 30, 30), (30, 120, 200), (30, 160, 60), (160, 80, 200), (230, 140, 20), (0, 0, 0)]
X = lambda r: int(m0 + (r - 0.1) / 0.9 * (W - 2 * m0))
Y = lambda v: int(H - m0 - v * (H - 2 * m0))
for v in np.linspace(0, 1, 6):
    img[Y(v), m0:W - m0] = 220
for r in np.linspace(0.1, 1.0, 10):
    img[m0:H - m0, X(r)] = 235
img[H - m0, m0:W - m0] = 0
img[m0:H - m0 + 1, m0] = 0
def line(a, b, col):
    n = max(abs(b[0] - a[0]), abs(b[1] - a[1])) + 1
    for x, y in zip(np.linspace(a[0], b[0], n).round().astype(int), np.linspace(a[1], b[1], n).round().astype(int)):
        img[max(y - 1, 0):y + 1, max(x - 1, 0):x + 1] = col
for k, (key, c) in enumerate(curves.items()):
    pts = [(X(r), Y(v)) for r, v in zip(c["r"], c["p_target"])]
    for a, b in zip(pts[:-1], pts[1:]):
        line(a, b, cols[k % len(cols)])
    for x, y in pts:
        img[y - 2:y + 3, x - 2:x + 3] = cols[k % len(cols)]
R.write_png(os.path.join(out, "genie_curve.png"), img)
print("plot: " + os.path.join(out, "genie_curve.png") + " (x: r 0.1..1.0, y: P(T) 0..1; colours in PAIRS order: "
      + ", ".join(f"{k}" for k in curves) + " = red, blue, green, purple, ...)")
EOF
