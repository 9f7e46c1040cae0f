#!/bin/sh
# The main job on the bundled defaults: Fashion-MNIST-LT prepared from Debian's dataset-fashion-mnist, a darknet
# classifier trained on it by genie, then validated: per-class, Many/Medium/Few accuracy and the confusion matrix.
# Last, the bundled diffusion model makes GeNIe hard negatives from a tail-class image: a sweep strip over r.
set -e
cd "$(dirname "$0")/.."
[ -f data/fmnist/lt/train.list ] || ./genie prepare fmnist data/fmnist
./genie classifier train cfg/fmnist-lt.data cfg/fmnist.cfg ${SEED:+-seed $SEED} 2>&1 |
    awk 'NR % 100 == 0 || /img\/s, waited|saved|error|genie:/'
./genie classifier valid cfg/fmnist-lt.data cfg/fmnist.cfg backup/fmnist-lt/fmnist.weights 2>&1 | grep -v '^ \|^layer\|^Loading'

# A GeNIe sweep with the bundled model (data/models/fmnist-ldm): a coat (a Few class here), denoised towards
# "A photo of a pullover", the class it is most confused with, at r = 0.1 ... 1.0.
./genie sweep -i data/fmnist/images/test/00010_coat.jpg -p "A photo of a pullover" -guidance 3 -steps 25 \
    -o backup/fmnist-lt/genie_sweep_coat_pullover.png
echo "GeNIe sweep (coat -> pullover, r = 0.1 ... 1.0): backup/fmnist-lt/genie_sweep_coat_pullover.png"
