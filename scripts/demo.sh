#!/bin/sh
# The main job on the bundled defaults: Fashion-MNIST-LT prepared from Debian's dataset-fashion-mnist, a darknet
# classifier trained on it by genie, then validated: per-class, Many/Medium/Few accuracy and the confusion matrix.
# Then the long-tail fine-tuning recipe (cfg/fmnist-ft.cfg from that model, tail_share 0.25, VAE round trips of
# real images with p 0.5) twice, the same seed and schedule: without GeNIe, and with online GeNIe-Ada
# (cfg/fmnist-genie.cfg: the bundled diffusion model makes hard negatives for the Few classes during training,
# its noise ratio chosen per sample from the network being trained), and with few-step online GeNIe-Ada
# (cfg/fmnist-genie-fast.cfg: the model's GeNIe-distilled student, 2 TCD steps; 1.3x the time without GeNIe
# where the recipe's takes 5x); Many/Medium/Few and wall time side by side.
# Last, a GeNIe sweep strip over r from a tail-class image.
set -e
cd "$(dirname "$0")/.."
SEED=${SEED:-1}
B=backup/fmnist-lt
[ -f data/fmnist/lt/train.list ] || ./genie prepare fmnist data/fmnist
./genie classifier train cfg/fmnist-lt.data cfg/fmnist.cfg -seed "$SEED" 2>&1 |
    awk 'NR % 100 == 0 || /img\/s, waited|saved|error|genie:/'
./genie classifier valid cfg/fmnist-lt.data cfg/fmnist.cfg $B/fmnist.weights 2>&1 | grep -v '^ \|^layer\|^Loading'

mkdata() {   # name [extra lines]
    n=$1; shift
    { sed "s|^backup=.*|backup=$B/$n|" cfg/fmnist-lt.data; for l in "$@"; do echo "$l"; done; } > "$B/$n.data"
}
echo "== VAE round trips of the training images (real images that look generated carry no label information)"
mkdata plain
# resumes (made images are kept); round trips that an earlier bundled model made (the demo's own) are made anew
./genie plan $B/plain.data -mode roundtrip -dir $B/roundtrip -o $B/roundtrip.csv
./genie generate $B/roundtrip.csv -data $B/plain.data -model data/models/fmnist-ldm -batch 32 \
    -index $B/roundtrip.index.csv -remake 2> $B/roundtrip.log || { cat $B/roundtrip.log >&2; exit 1; }
grep -v '^\[' $B/roundtrip.log   # what generate said, without its progress lines
recipe="tail_share=0.25
roundtrip=$B/roundtrip.index.csv
roundtrip_p=0.5"
mkdata ft-none "$recipe"
mkdata ft-genie-ada "$recipe" "genie=cfg/fmnist-genie.cfg"
mkdata ft-genie-ada-fast "$recipe" "genie=cfg/fmnist-genie-fast.cfg"
for arm in ft-none ft-genie-ada ft-genie-ada-fast; do
    echo "== fine-tuning on the tail: $arm"
    t0=$(date +%s)
    ./genie classifier train $B/$arm.data cfg/fmnist-ft.cfg $B/fmnist.weights -clear -seed "$SEED" 2>&1 |
        awk 'NR % 50 == 0 || /img\/s, waited|saved|error|genie|GeNIe|chosen r|target/'
    echo $(($(date +%s) - t0)) > $B/$arm.wall_s
done
echo "== long-tail fine-tuning, seed $SEED, validated on the 10000 test images"
printf '%-26s %7s %7s %7s %7s %7s\n' arm top-1 Many Medium Few wall_s
for arm in ft-none ft-genie-ada ft-genie-ada-fast; do
    case $arm in ft-none) name="without GeNIe" ;; ft-genie-ada) name="online GeNIe-Ada" ;; *) name="online GeNIe-Ada, 2 steps" ;; esac
    ./genie classifier valid $B/$arm.data cfg/fmnist-ft.cfg $B/$arm/fmnist-ft.weights 2>/dev/null |
        awk -v arm="$name" -v wall="$(cat $B/$arm.wall_s)" '
            /^top-1:/ { t = $2 } /^Many/ { m = $NF } /^Medium/ { md = $NF } /^Few/ { f = $NF }
            $3 ~ /^[0-9.]+$/ && $4 ~ /^[0-9]+$/ && $4 < 20 { few = few sprintf(" %s %s", $1, $3) }
            END { printf "%-26s %7s %7s %7s %7s %7s   Few classes:%s\n", arm, t, m, md, f, wall, few }'
done
echo "GeNIe-Ada's latest samples (source | generated | S -> T, r): $B/ft-genie-ada/fmnist-ft_genie_grid.png"

# A GeNIe sweep with the bundled model (data/models/fmnist-ldm): a coat (a Few class here), denoised towards
# "A photo of a pullover", the class it is most confused with, at r = 0.1 ... 1.0.
./genie sweep -i data/fmnist/images/test/00010_coat.jpg -p "A photo of a pullover" -guidance 3 -steps 25 \
    -o $B/genie_sweep_coat_pullover.png
echo "GeNIe sweep (coat -> pullover, r = 0.1 ... 1.0): $B/genie_sweep_coat_pullover.png"
