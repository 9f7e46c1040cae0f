#!/bin/sh
# Installs the Debian packages genie builds, tests and runs with, and any named as arguments, when one is missing
# (needs root or sudo).
# Optional, named as arguments where wanted: libopenmpi-dev openmpi-bin (Open MPI: make then builds with MPI=1, and
# `mpirun -np N ./genie generate` splits a plan over N ranks; without them everything builds and runs alone).
set -e
PKGS="gcc make darknet libturbojpeg0-dev libopenblas-dev libpng-dev libcjson-dev zlib1g-dev dataset-fashion-mnist $*"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
