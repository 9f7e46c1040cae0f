#!/bin/sh
# `make bench-dist`: offline GeNIe (genie generate) alone and split over MPI ranks on this machine: the same plan of
# ROWS img2img rows (Fashion-MNIST test images, r 0.9, STEPS DPM-Solver++ steps, guidance 3, the bundled model),
# made once by one process with every core and once by `mpirun -np RANKS` (each rank its share of the cores), the
# kept images/s of each from the job's wall time (model loads included), and whether both made the same bytes.
# Then online GeNIe (sync=1 GeNIe-Ada fine-tuning, cfg/fmnist-genie.cfg with warmup 0, ITERS iterations): the module
# in the trainer's process, then rank 0 training beside 1 and 2 generator ranks (mpirun -np 2, -np 3): kept img/s
# from the training's wall time (the trainer waits for every sample, so that is the module's pace), and whether all
# three trained the same weights (they must: rank 0 plans every request). The engine's threads per process share
# the cores: all of them in one process, half each beside 2 generator ranks (its output does not depend on them).
# Environment: ROWS (48), STEPS (25), RANKS (2), BATCH (4), ITERS (12), GENIE (./genie).
set -eu
ROWS=${ROWS:-48}
STEPS=${STEPS:-25}
RANKS=${RANKS:-2}
BATCH=${BATCH:-4}
ITERS=${ITERS:-12}
G=${GENIE:-./genie}
OUT=build/bench-dist
[ -x "$G" ] || { echo "bench-dist: run make first" >&2; exit 1; }
command -v mpirun > /dev/null || { echo "bench-dist: no mpirun (apt-get install openmpi-bin libopenmpi-dev, then make)"; exit 0; }
[ -f data/fmnist/test.list ] || "$G" prepare fmnist data/fmnist
rm -rf "$OUT"; mkdir -p "$OUT"
{ echo "source,target,r,seed,output"
  head -n "$ROWS" data/fmnist/test.list | awk -v o="$OUT/g" \
      'BEGIN { split("tee trouser pullover dress coat sandal shirt sneaker bag boot", c, " ") }
       { printf "%s,%s,0.9,%d,%s/%05d.png\n", $0, c[(NR % 10) + 1], NR, o, NR }'; } > "$OUT/p.csv"
ARGS="-labels data/fmnist/labels.list -steps $STEPS -guidance 3 -scheduler dpmpp2m -batch $BATCH"

job() {   # name command...: the wall time of one whole job from an empty output folder
    name=$1; shift
    rm -rf "$OUT/g" "$OUT"/p.csv.index.csv*
    t0=$(date +%s.%N)
    "$@" > "$OUT/$name.log" 2>&1 || { tail -n 20 "$OUT/$name.log"; exit 1; }
    t1=$(date +%s.%N)
    (cd "$OUT" && md5sum g/*.png p.csv.index.csv) > "$OUT/$name.md5"
    awk -v a="$t0" -v b="$t1" -v n="$ROWS" -v name="$name" \
        'BEGIN { printf "%-24s %6.1f s  %6.2f kept img/s\n", name, b - a, n / (b - a) }'
}

CORES=$(nproc)
echo "bench-dist: $ROWS rows, $STEPS steps at r 0.9, batch $BATCH, $CORES cores"
job "1 process, $CORES threads" "$G" generate "$OUT/p.csv" $ARGS -threads "$CORES"
job "$RANKS ranks (mpirun)" mpirun --oversubscribe --allow-run-as-root -np "$RANKS" "$G" generate "$OUT/p.csv" $ARGS
if cmp -s "$OUT/1 process, $CORES threads.md5" "$OUT/$RANKS ranks (mpirun).md5"; then
    echo "same images and index: yes"
else
    echo "same images and index: NO"; exit 1
fi

# online: the same run with the module in the trainer's process and beside 1 and 2 generator ranks
{ sed "s|^backup=.*|backup=$OUT/on|" cfg/fmnist-lt.data; echo "tail_share=0.25"; } > "$OUT/on.data"
gcfg() { sed -e "s/^warmup=.*/warmup=0/" -e "s/^sync=.*/sync=1/" -e "s/^threads=.*/threads=$1/" -e "/^cache=/d" \
    cfg/fmnist-genie.cfg; echo "steps=$STEPS"; }
half=$((CORES / 2 > 0 ? CORES / 2 : 1))
gcfg "$CORES" > "$OUT/g-all.cfg"
gcfg "$half" > "$OUT/g-half.cfg"
online() {   # name genie.cfg launcher...: kept samples / the training's wall time, and the weights' md5
    name=$1 cfg=$2; shift 2
    rm -rf "$OUT/on"
    "$@" "$G" classifier train "$OUT/on.data" cfg/fmnist-ft.cfg data/models/fmnist-judge.weights -clear -seed 1 \
        -iters "$ITERS" -genie "$cfg" > "$OUT/online-$name.log" 2>&1 || { tail -n 20 "$OUT/online-$name.log"; exit 1; }
    md5sum < "$OUT/on/fmnist-ft.weights" > "$OUT/online-$name.md5"
    awk -v name="$name" '/^online GeNIe:/ { kept = $5 } / iterations in / { t = $4 }
        END { printf "online, %-17s %4d kept in %6.1f s  %6.2f kept img/s\n", name, kept, t, kept / t; print kept / t > "/dev/stderr" }' \
        "$OUT/online-$name.log" 2> "$OUT/online-$name.rate"
}
echo "online GeNIe-Ada (sync=1), $ITERS iterations, $STEPS steps:"
online "in the trainer" "$OUT/g-all.cfg"
online "1 generator rank" "$OUT/g-all.cfg" mpirun --oversubscribe --allow-run-as-root -np 2
online "2 generator ranks" "$OUT/g-half.cfg" mpirun --oversubscribe --allow-run-as-root -np 3
awk '{ r[NR] = $1 } END { printf "online kept img/s against the module in the trainer: 1 rank %.2fx, 2 ranks %.2fx\n",
    r[2] / r[1], r[3] / r[1] }' "$OUT/online-in the trainer.rate" "$OUT/online-1 generator rank.rate" \
    "$OUT/online-2 generator ranks.rate"
if cmp -s "$OUT/online-in the trainer.md5" "$OUT/online-1 generator rank.md5" &&
   cmp -s "$OUT/online-in the trainer.md5" "$OUT/online-2 generator ranks.md5"; then
    echo "same weights: yes"
else
    echo "same weights: NO"; exit 1
fi
