#!/bin/sh
# `make bench-dist`: offline GeNIe (genie generate) alone and split over MPI ranks on this machine: the same plan of
# ROWS img2img rows (Fashion-MNIST test images, r 0.9, STEPS DPM-Solver++ steps, guidance 3, the bundled model),
# made once by one process with every core and once by `mpirun -np RANKS` (each rank its share of the cores), the
# kept images/s of each from the job's wall time (model loads included), and whether both made the same bytes.
# Environment: ROWS (48), STEPS (25), RANKS (2), BATCH (4), GENIE (./genie).
set -eu
ROWS=${ROWS:-48}
STEPS=${STEPS:-25}
RANKS=${RANKS:-2}
BATCH=${BATCH:-4}
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
