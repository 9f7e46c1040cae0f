#!/bin/sh
# The main job on the bundled defaults: Fashion-MNIST-LT prepared from Debian's dataset-fashion-mnist, a darknet
# classifier trained on it by genie, then validated: per-class, Many/Medium/Few accuracy and the confusion matrix.
set -e
cd "$(dirname "$0")/.."
[ -f data/fmnist/lt/train.list ] || ./genie prepare fmnist data/fmnist
./genie classifier train cfg/fmnist-lt.data cfg/fmnist.cfg ${SEED:+-seed $SEED} 2>&1 |
    awk 'NR % 100 == 0 || /img\/s, waited|saved|error|genie:/'
./genie classifier valid cfg/fmnist-lt.data cfg/fmnist.cfg backup/fmnist-lt/fmnist.weights 2>&1 | grep -v '^ \|^layer\|^Loading'
