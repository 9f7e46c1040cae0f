#!/bin/sh
# What a refactoring must leave unchanged, byte for byte: md5 sums of what one seed makes through each path.
#   - classifier train (loader pool, transforms, kernels), 100 iterations from scratch on Fashion-MNIST-LT, and
#     classifier valid's confusion CSV
#   - the engine: txt2img and img2img PNGs of the bundled model
#   - genie plan and genie generate (offline GeNIe-Ada, its index)
#   - a sync-mode online GeNIe-Ada fine-tuning (module, ring, rows, live f_theta), 60 iterations
#   - a fine-tuning under named augmentation presets (augment=strong, tail_augment=weak), 20 iterations
# Usage: scripts/fingerprint.sh [GENIE] [OUT]  (defaults ./genie, build/fingerprint); prints "name md5" lines.
# Compare two binaries with the same OUT (the plan holds its paths): sh scripts/fingerprint.sh A/genie > a.txt;
# sh scripts/fingerprint.sh B/genie > b.txt; diff a.txt b.txt
set -e
G=$(realpath "${1:-./genie}")
O=${2:-build/fingerprint}
cd "$(dirname "$0")/.."
rm -rf "$O"; mkdir -p "$O"
[ -f data/fmnist/lt/train.list ] || "$G" prepare fmnist data/fmnist >/dev/null
q() { "$@" > "$O/log" 2>&1 || { cat "$O/log" >&2; exit 1; }; }

sed 's/^max_batches=.*/max_batches=100/' cfg/fmnist.cfg > "$O/train.cfg"
sed "s|^backup=.*|backup=$O/train|" cfg/fmnist-lt.data > "$O/train.data"
q "$G" classifier train "$O/train.data" "$O/train.cfg" -seed 7 -threads 2
echo "train $(md5sum < "$O/train/train.weights" | cut -d' ' -f1)"

M=data/models/fmnist-ldm
q "$G" txt2img -model $M -p "A photo of a coat" -steps 8 -guidance 3 -seed 5 -o "$O/t2i.png"
echo "txt2img $(md5sum < "$O/t2i.png" | cut -d' ' -f1)"
q "$G" img2img -model $M -i data/fmnist/images/test/00010_coat.jpg -p "A photo of a pullover" -r 0.7 -steps 8 \
    -guidance 3 -seed 5 -o "$O/i2i.png"
echo "img2img $(md5sum < "$O/i2i.png" | cut -d' ' -f1)"

q "$G" classifier valid "$O/train.data" "$O/train.cfg" "$O/train/train.weights" -csv "$O/confusion.csv" -soft
echo "valid $(md5sum < "$O/confusion.csv" | cut -d' ' -f1)"

# offline GeNIe-Ada through plan and generate, with the trained model as f_theta
q "$G" plan "$O/train.data" -mode ada -dir "$O/gen" -o "$O/plan.csv" -confusion "$O/confusion.csv" -per-class 3 \
    -seed 3
echo "plan $(md5sum < "$O/plan.csv" | cut -d' ' -f1)"
q "$G" generate "$O/plan.csv" -data "$O/train.data" -model $M -batch 6 -rset 0.7,0.8,0.9 -steps 8 -guidance 3 \
    -backbone "$O/train.cfg" -weights "$O/train/train.weights" -index "$O/gen.index.csv"
echo "generate $(cat "$O"/gen/*.png | md5sum | cut -d' ' -f1)"
# the index without its settings column: that names the files' stamps (f_theta's weights were made just now)
echo "generate-index $(cut -d, -f1-7 "$O/gen.index.csv" | md5sum | cut -d' ' -f1)"

# online GeNIe-Ada, sync mode: the same seed must give the same weights
sed 's/^max_batches=.*/max_batches=60/' cfg/fmnist-ft.cfg > "$O/ft.cfg"
sed 's/^quota=.*/quota=6/; s/^steps=.*/steps=8/; s/^warmup=.*/warmup=5/; s/^snapshot_every=.*/snapshot_every=20/' \
    cfg/fmnist-genie.cfg > "$O/genie.cfg"
{ sed "s|^backup=.*|backup=$O/ft|" cfg/fmnist-lt.data; echo "tail_share=0.25"; echo "genie=$O/genie.cfg"; } > "$O/ft.data"
q "$G" classifier train "$O/ft.data" "$O/ft.cfg" "$O/train/train.weights" -clear -seed 9 -threads 2
echo "online $(md5sum < "$O/ft/ft.weights" | cut -d' ' -f1)"

# the augmentation presets by name: a preset read as another changes these weights
sed 's/^max_batches=.*/max_batches=20/; s/^\[net\]$/[net]\naugment=strong\ntail_augment=weak/' cfg/fmnist-ft.cfg > "$O/aug.cfg"
{ sed "s|^backup=.*|backup=$O/aug|" cfg/fmnist-lt.data; echo "tail_share=0.25"; } > "$O/aug.data"
q "$G" classifier train "$O/aug.data" "$O/aug.cfg" "$O/train/train.weights" -clear -seed 11 -threads 2
echo "augment $(md5sum < "$O/aug/aug.weights" | cut -d' ' -f1)"
