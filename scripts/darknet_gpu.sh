#!/bin/sh
# The GPU libdarknet.so of `make GPU=1`: Debian's darknet source package at the version Debian's libdarknet.so is
# built from (pinned below), Debian's patch series (applied by dpkg-source), then patches/darknet/*.patch (each
# says why in its first line), built with upstream's Makefile with GPU=1, OPENCV=0, and genie's CUDA architectures.
#   scripts/darknet_gpu.sh fetch OUTDIR                      the source, unpacked and patched, into OUTDIR/src
#   scripts/darknet_gpu.sh build OUTDIR CUDA CUDNN ARCH...   OUTDIR/libdarknet.so and OUTDIR/include/darknet.h
# Fetching adds a deb-src entry for this system's suite when apt has none for darknet (needs root or sudo). The
# build is cached: it runs again only when the version, the patches, CUDA, CUDNN or ARCH change (OUTDIR/stamp).
set -e
VERSION=0.0.0+git20180914.61c9d02e-2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
verb=$1 OUT=$2
[ -n "$OUT" ] || { echo "usage: $0 fetch|build OUTDIR [CUDA CUDNN ARCH...]" >&2; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

has_source() { apt-cache showsrc darknet 2>/dev/null | grep -qx "Version: $VERSION"; }

fetch() {
    [ -f "$OUT/src/.genie-patched" ] && return 0
    command -v dpkg-source >/dev/null || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dpkg-dev
    if ! has_source; then
        suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
        echo "darknet_gpu: adding a deb-src entry for Debian $suite (/etc/apt/sources.list.d/genie-deb-src.sources)"
        printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
            "$suite" /usr/share/keyrings/debian-archive-keyring.gpg |
            $SUDO tee /etc/apt/sources.list.d/genie-deb-src.sources >/dev/null
        $SUDO apt-get update -qq
        has_source || { echo "darknet_gpu: apt has no source of darknet $VERSION" >&2; exit 1; }
    fi
    rm -rf "$OUT/dl" "$OUT/src"
    mkdir -p "$OUT/dl"
    (cd "$OUT/dl" && apt-get source -qq --download-only "darknet=$VERSION")
    dpkg-source -q -x "$OUT/dl/darknet_$VERSION.dsc" "$OUT/src"   # applies debian/patches/series
    for p in "$ROOT"/patches/darknet/*.patch; do
        patch -s -p1 -d "$OUT/src" < "$p" || { echo "darknet_gpu: $p does not apply" >&2; exit 1; }
    done
    touch "$OUT/src/.genie-patched"
}

case $verb in
fetch) fetch ;;
build)
    CUDA=$3 CUDNN=$4
    shift 4
    ARCH="$*"
    want="$VERSION cuda=$CUDA cudnn=$CUDNN arch=$ARCH patches=$(cat "$ROOT"/patches/darknet/*.patch | md5sum | cut -d' ' -f1)"
    if [ -f "$OUT/libdarknet.so" ] && [ "$(cat "$OUT/stamp" 2>/dev/null)" = "$want" ]; then exit 0; fi
    if [ -f "$OUT/stamp" ]; then rm -rf "$OUT/src" "$OUT/stamp"; fi   # other patches or flags: start clean
    fetch
    mkdir -p "$OUT/src/obj"
    echo "darknet_gpu: building libdarknet.so (GPU=1 CUDNN=$CUDNN) from Debian's darknet $VERSION"
    make -s -C "$OUT/src" -j"$(nproc)" GPU=1 CUDNN="$CUDNN" OPENCV=0 CUDA="$CUDA" NVCC="$CUDA/bin/nvcc" ARCH="$ARCH" \
        libdarknet.so
    mkdir -p "$OUT/include"
    cp "$OUT/src/include/darknet.h" "$OUT/include/darknet.h"
    cp "$OUT/src/libdarknet.so" "$OUT/libdarknet.so.tmp" && mv "$OUT/libdarknet.so.tmp" "$OUT/libdarknet.so"
    echo "$want" > "$OUT/stamp"
    ;;
*) echo "usage: $0 fetch|build OUTDIR [CUDA CUDNN ARCH...]" >&2; exit 2 ;;
esac
