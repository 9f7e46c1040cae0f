#!/bin/sh
# The layer check (ARCHITECTURE.md): every folder is a layer, and a file includes only headers of its own layer or
# of the layers below, by their path from the repository root. Also: darknet.h only where libdarknet is adapted
# (src/ and the backbone snapshot). Prints one line per offence and the closing line "check_layers: N passed, N failed"
# (files checked, plus the self-test's five checks); exits non-zero on any offence.
#
#   scripts/check_layers.sh [ROOT]      (ROOT defaults to the repository root)
# It first checks itself on a made-up tree: an upward include, an unqualified one and a stray darknet.h must fail.

# lowest first; tests/ may include anything
LAYERS="common augment/engine/backend augment/engine src/net augment/genie src/train src/cmd"

layer_of() {  # prints the layer index of a file (its folder's place in LAYERS), or nothing when it is in no layer
    d=$(dirname "$1"); i=0
    for l in $LAYERS; do [ "$d" = "$l" ] && { printf '%s' $i; return; }; i=$((i + 1)); done
}

check_tree() {
    root=$1; passed=0; failed=0
    cd "$root" || exit 2
    for f in $(find common augment src tests -name '*.[ch]' -o -name '*.cu' 2>/dev/null | sort); do
        bad=0
        lf=$(layer_of "$f")
        case "$f" in tests/*) lf=99 ;; esac
        if [ -z "$lf" ]; then echo "$f: in no layer (add its folder to LAYERS in scripts/check_layers.sh)"; bad=1; fi
        grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*["<]' "$f" > "${TMPDIR:-/tmp}/layers.$$" || true
        while IFS= read -r line; do
            n=${line%%:*}
            inc=$(printf '%s' "$line" | sed -n 's/.*#[[:space:]]*include[[:space:]]*\(["<][^">]*[">]\).*/\1/p')
            case "$inc" in
            '<darknet.h>')
                case "$f" in src/* | augment/genie/backbone.[ch] | tests/*) ;;
                *) echo "$f:$n: darknet.h outside src/ and the backbone snapshot"; bad=1 ;; esac ;;
            '<'*) ;;
            '"'*)
                h=${inc#\"}; h=${h%\"}
                case "$h" in */*) ;; *) echo "$f:$n: \"$h\" does not name its folder"; bad=1; continue ;; esac
                if [ ! -f "$h" ]; then echo "$f:$n: \"$h\" is not a file of the repository"; bad=1; continue; fi
                lh=$(layer_of "$h")
                case "$h" in tests/*) [ "$lf" = 99 ] || { echo "$f:$n: includes test code \"$h\""; bad=1; }; continue ;; esac
                if [ -z "$lh" ]; then echo "$f:$n: \"$h\" is in no layer"; bad=1
                elif [ "$lh" -gt "$lf" ]; then echo "$f:$n: \"$h\" is a higher layer's (layers, lowest first: $LAYERS)"; bad=1; fi ;;
            esac
        done < "${TMPDIR:-/tmp}/layers.$$"
        rm -f "${TMPDIR:-/tmp}/layers.$$"
        if [ $bad -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
    done
    echo "layers: $passed passed, $failed failed"
    [ $failed -eq 0 ]
}

self_test() {
    t=$(mktemp -d) || return 2
    mkdir -p "$t/common" "$t/augment/engine/backend" "$t/augment/genie" "$t/src/net"
    echo '#include "common/b.h"' > "$t/common/a.c"; : > "$t/common/b.h"
    : > "$t/augment/genie/g.h"
    echo '#include "augment/genie/g.h"' > "$t/augment/engine/backend/up.c"      # upward: genie over the backend
    echo '#include "b.h"' > "$t/src/net/short.c"                               # not qualified
    echo '#include <darknet.h>' > "$t/augment/genie/dk.c"                       # darknet.h outside the snapshot
    out=$( (check_tree "$t") 2>&1); rc=$?
    rm -rf "$t"
    st_ok=0
    [ $rc -ne 0 ] && st_ok=$((st_ok + 1))
    printf '%s\n' "$out" | grep -q 'backend/up.c:1: "augment/genie/g.h" is a higher layer' && st_ok=$((st_ok + 1))
    printf '%s\n' "$out" | grep -q 'short.c:1: "b.h" does not name its folder' && st_ok=$((st_ok + 1))
    printf '%s\n' "$out" | grep -q 'dk.c:1: darknet.h outside' && st_ok=$((st_ok + 1))
    printf '%s\n' "$out" | grep -q 'layers: 3 passed, 3 failed' && st_ok=$((st_ok + 1))
    [ $st_ok -eq 5 ] || { echo "self-test: the check missed a planted offence:"; printf '%s\n' "$out"; }
}

self_test
out=$( (check_tree "${1:-$(dirname "$0")/..}") 2>&1); rc=$?
printf '%s\n' "$out" | grep -v '^layers: '
p=$(printf '%s\n' "$out" | sed -n 's/^layers: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
f=$(printf '%s\n' "$out" | sed -n 's/^layers: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
[ -n "$p" ] || { p=0; f=1; }
echo "check_layers: $((p + st_ok)) passed, $((f + 5 - st_ok)) failed"
[ $rc -eq 0 ] && [ $st_ok -eq 5 ]
