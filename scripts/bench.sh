#!/bin/sh
# Benchmarks (not tests): packd against its peers, in the same run, reported as ratios.
#   pack-vs-mksquashfs   `pack pack` vs `mksquashfs`, same tree and compressor (goal: ratio <= 1.0,
#                        size within 1%)
# BENCH_TREE overrides the payload (default: Debian's python3 library trees).
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
WORK=$(mktemp -d /tmp/packd-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT INT TERM
RUNS=${RUNS:-3}

# One tree, packed by both tools.
TREE=$WORK/tree
mkdir -p "$TREE/meta" "$TREE/payload"
printf "name: bench\nversion: '1'\n" >"$TREE/meta/pack.yaml"
for src in ${BENCH_TREE:-/usr/lib/python3.11 /usr/lib/python3}; do
	cp -a "$src" "$TREE/payload/"
done
SIZE=$(du -sm "$TREE" | cut -f1)
echo "== pack pack vs mksquashfs on ${SIZE} MB ($(nproc) cores, $RUNS runs each)"

for comp in zstd xz; do
	hyperfine --style basic --runs "$RUNS" --warmup 1 --export-json "$WORK/$comp.json" \
		-n "pack pack ($comp)" "$BIN/pack pack $TREE --compression $comp --output $WORK/pack.$comp" \
		-n "mksquashfs ($comp)" "mksquashfs $TREE $WORK/mksq.$comp -comp $comp -noappend -no-xattrs -all-root -quiet -no-progress" \
		>/dev/null
	python3 - "$WORK/$comp.json" "$WORK/pack.$comp" "$WORK/mksq.$comp" "$comp" <<'PY'
import json, os, sys
results = json.load(open(sys.argv[1]))["results"]
ours, theirs = results[0], results[1]
size_ours, size_theirs = os.path.getsize(sys.argv[2]), os.path.getsize(sys.argv[3])
ratio = ours["mean"] / theirs["mean"]
print(f"{sys.argv[4]:5} pack pack {ours['mean']:.2f}s ± {ours['stddev']:.2f}  "
      f"mksquashfs {theirs['mean']:.2f}s ± {theirs['stddev']:.2f}  time ratio {ratio:.2f} "
      f"(goal <= 1.00)  size {size_ours/1e6:.1f} MB vs {size_theirs/1e6:.1f} MB "
      f"({(size_ours/size_theirs-1)*100:+.2f}%, goal within 1%)")
PY
done
