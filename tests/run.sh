#!/bin/sh
# Runs each test program given on the command line and adds up their "N passed, N failed" lines. Lines starting
# with "skipped:" (a group that needs what this machine lacks, e.g. a CUDA device) are counted as skipped.
total_p=0; total_f=0; total_s=0; broken=""
for t in "$@"; do
    name=$(basename "$t")
    out=$("$t" 2>&1); rc=$?
    line=$(printf '%s\n' "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    p=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/'); f=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    s=$(printf '%s\n' "$out" | grep -c '^skipped:')
    [ -n "$p" ] || { p=0; f=1; }
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    [ "$f" -ne 0 ] && { broken="$broken $name"; printf '%s\n' "$out" | tail -n 40; }
    if [ "$s" -gt 0 ]; then echo "  $name: $p passed, $f failed, $s skipped"; else echo "  $name: $p passed, $f failed"; fi
    total_p=$((total_p + p)); total_f=$((total_f + f)); total_s=$((total_s + s))
done
[ -n "$broken" ] && echo "failing:$broken"
[ "$total_s" -gt 0 ] && echo "$total_s skipped"
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
