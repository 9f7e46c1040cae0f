#!/bin/sh
# Few-class accuracy of the generative arms against the classifier-free guidance their images were made with.
#
#   BASE=build/ablate/lt scripts/guidance_sweep.sh [train.list]
#
# BASE is a finished scripts/ablate.sh run on the same list: its plain models, training confusions, round trips
# and `none` rows are reused, so each guidance costs only generation and fine-tuning (about 8 minutes per split
# on 2 cores). For every guidance in GUIDANCES, scripts/ablate.sh runs ARMS into OUT/g<guidance> (resumable);
# then OUT/guidance.csv (guidance,arm,seeds,many,medium,few,few_std: means over the seeds) and OUT/guidance.png
# (Few against guidance per arm, `none` as a line) are written, and copied to RESULTS.csv/.png when RESULTS is set.
# Environment: GUIDANCES ("2 3 5 7.5"), ARMS ("img2img-L txt2img genie genie-ada"), OUT (build/guidance/<split>),
# SEEDS and the rest as scripts/ablate.sh.
set -e
cd "$(dirname "$0")/.."
LIST=${1:-data/fmnist/lt/train.list}
NAME=$(basename "$(dirname "$LIST")")
[ -n "$BASE" ] && [ -f "$BASE/results.csv" ] || { echo "guidance_sweep: BASE must be a finished scripts/ablate.sh run on $LIST" >&2; exit 1; }
OUT=${OUT:-build/guidance/$NAME}
GUIDANCES=${GUIDANCES:-2 3 5 7.5}
ARMS=${ARMS:-img2img-L txt2img genie genie-ada}
SEEDS=${SEEDS:-1 2 3}
export BASE SEEDS
mkdir -p "$OUT"
for g in $GUIDANCES; do
    # a guidance whose rows are all there is not run again (its images may be gone)
    missing=0
    for a in $ARMS; do for s in $SEEDS; do
        grep -q "^$a,$s," "$OUT/g$g/results.csv" 2> /dev/null || missing=1
    done; done
    [ $missing = 0 ] || RESULTS= OUT=$OUT/g$g GUIDANCE=$g ARMS="$ARMS" sh scripts/ablate.sh "$LIST"
done

echo "guidance,arm,seeds,many,medium,few,few_std" > "$OUT/guidance.csv"
for g in $GUIDANCES; do
    awk -F, -v g="$g" -v arms="none $ARMS" -v seeds="$SEEDS" '
        BEGIN { na = split(arms, a, " "); split(seeds, s, " "); for (i in s) want[s[i]] = 1 }
        FNR == 1 { next }
        FILENAME == ARGV[1] && $1 != "none" { next }      # none comes from BASE
        FILENAME == ARGV[2] && $1 == "none" { next }
        ($2 in want) { n[$1]++; m[$1] += $4; md[$1] += $5; f[$1] += $6; q[$1] += $6 * $6 }
        END { for (i = 1; i <= na; i++) { k = a[i]; if (!n[k]) continue
                  mu = f[k] / n[k]; v = q[k] / n[k] - mu * mu
                  printf "%s,%s,%d,%.4f,%.4f,%.4f,%.4f\n", g, k, n[k], m[k] / n[k], md[k] / n[k], mu, (v > 0 ? sqrt(v) : 0) } }
    ' "$BASE/results.csv" "$OUT/g$g/results.csv" >> "$OUT/guidance.csv"
done
cat "$OUT/guidance.csv"

if command -v gnuplot > /dev/null; then
    plot=""
    for a in $ARMS; do
        awk -F, -v a="$a" '$2 == a { print $1, $6, $7 }' "$OUT/guidance.csv" > "$OUT/curve-$a.dat"
        plot="$plot${plot:+, }\"$OUT/curve-$a.dat\" using 1:2:3 with yerrorlines title \"$a\""
    done
    none=$(awk -F, '$2 == "none" { print $6; exit }' "$OUT/guidance.csv")
    gnuplot <<GP
set terminal pngcairo size 800,480 font ",10"
set output "$OUT/guidance.png"
set title "Fashion-MNIST-LT ($NAME): Few-class accuracy against guidance, mean ± std over seeds $SEEDS"
set xlabel "classifier-free guidance of the generated images"
set ylabel "Few top-1 accuracy"
set key outside right
set grid
plot $plot, $none with lines dashtype 2 lc rgb "black" title "none"
GP
else
    echo "guidance_sweep: gnuplot not installed (apt-get install gnuplot-nox): no plot" >&2
fi
if [ -n "$RESULTS" ]; then
    mkdir -p "$(dirname "$RESULTS")"
    cp "$OUT/guidance.csv" "$RESULTS.csv"
    [ -f "$OUT/guidance.png" ] && cp "$OUT/guidance.png" "$RESULTS.png"
fi
