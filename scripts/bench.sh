#!/bin/sh
# Benchmarks (not tests): packd against its peers, in the same run, reported as ratios.
#   pack       `pack pack` vs `mksquashfs`, same tree and compressor (goal: time ratio <= 1.0,
#              size within 1%)
#   launch     `pack run` of a confined no-op app vs `bwrap --unshare-all` of /bin/true (goal:
#              ratio <= 1.0), back to back and spaced out
#   refresh    the downtime of a service during a refresh: from the old service's end to the
#              new one running (goal: under 100 ms plus the app's own start-up)
#   store      1,000 devices (packd's own refresh client, concurrent, one connection each)
#              polling a pack-store with 50 packs: p99 latency (goal < 50 ms), share of 304s
#              (goal >= 95%), the store's RSS before and after (goal: flat)
#   rollout    10,000 simulated devices (packd's refresh and report client) through a
#              progressive release whose first wave fails 30%: the halt within one poll
#              interval of the rule being crossed, no device outside the first wave offered,
#              bucket shares over 100,000 ids, p99 poll latency
# BENCH=pack|launch|refresh runs one section (default: all). BENCH_TREE overrides the pack payload
# (default: Debian's python3 library trees). BIN names the binaries (`make bench` builds static
# release binaries and sets it).
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
BENCH=${BENCH:-pack launch refresh store rollout}
# pack-store and store-bench (not in the static set of BIN).
HOSTBIN=${HOSTBIN:-$BIN}
STORE_PID=""
WORK=$(mktemp -d /tmp/packd-bench.XXXXXX)
PACKD_PID=""
cleanup() {
	if [ -n "$PACKD_PID" ]; then kill "$PACKD_PID" 2>/dev/null || true; wait "$PACKD_PID" 2>/dev/null || true; fi
	if [ -n "$STORE_PID" ]; then kill "$STORE_PID" 2>/dev/null || true; wait "$STORE_PID" 2>/dev/null || true; fi
	# Unmount what the bench daemon left under its root, deepest first.
	grep -o " $WORK/[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

bench_pack() {
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
}

bench_launch() {
	RUNS=${LAUNCH_RUNS:-300}
	start_daemon
	mkdir -p "$WORK/tools/meta"
	printf "name: tools\nversion: '1'\nbase: busybox\napps:\n  noop:\n    command: /bin/true\n" \
		>"$WORK/tools/meta/pack.yaml"
	"$BIN/pack" pack "$WORK/tools" --output "$WORK/tools.pack" >/dev/null
	"$BIN/pack" install "$WORK/tools.pack" --dangerous >/dev/null
	"$BIN/pack" run tools.noop
	BWRAP="bwrap --ro-bind / / --dev /dev --proc /proc --unshare-all /bin/true"
	echo "== pack run vs bwrap ($(nproc) cores, $RUNS runs each)"
	echo "   pack run: pid, mount, ipc, uts, cgroup and network namespaces, a cgroup, Landlock,"
	echo "   seccomp, capabilities dropped; bwrap: the same namespaces plus a user namespace, no"
	echo "   cgroup, Landlock or seccomp."
	for mode in back-to-back spaced; do
		if [ "$mode" = spaced ]; then set -- --prepare "sleep 0.05"; else set --; fi
		hyperfine -N --style basic --warmup 20 --runs "$RUNS" "$@" --export-json "$WORK/launch.json" \
			-n "pack run" "$BIN/pack run tools.noop" -n bwrap "$BWRAP" -n "/bin/true" /bin/true \
			>/dev/null
		python3 - "$WORK/launch.json" "$mode" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
ours, theirs, bare = r["pack run"], r["bwrap"], r["/bin/true"]
ms = lambda x, k: x[k] * 1e3
print(f"{sys.argv[2]:12} pack run median {ms(ours,'median'):.2f} ms (mean {ms(ours,'mean'):.2f})  "
      f"bwrap median {ms(theirs,'median'):.2f} ms (mean {ms(theirs,'mean'):.2f})  "
      f"/bin/true {ms(bare,'median'):.2f} ms  ratio median {ours['median']/theirs['median']:.2f} "
      f"mean {ours['mean']/theirs['mean']:.2f} (goal <= 1.00)")
PY
	done
}

# Starts a bench daemon on $WORK/root (once) and installs the busybox base.
start_daemon() {
	[ -z "$PACKD_PID" ] || return 0
	ROOT=$WORK/root
	export PACKD_SOCKET="$ROOT/run/packd.socket"
	"$BIN/packd" --root "$ROOT" >"$WORK/packd.log" 2>&1 &
	PACKD_PID=$!
	i=0
	until [ -S "$PACKD_SOCKET" ]; do
		i=$((i + 1)); [ $i -lt 200 ] || { cat "$WORK/packd.log"; exit 1; }
		sleep 0.05
	done
	"$BIN/pack" base build busybox "$WORK/busybox.pack" >/dev/null
	"$BIN/pack" install "$WORK/busybox.pack" --dangerous >/dev/null
}

bench_refresh() {
	RUNS=${REFRESH_RUNS:-15}
	start_daemon
	# No health window: it runs after the new service is up and would only slow the runs.
	"$BIN/pack" set system refresh.health-window=0s refresh.retain=2
	mkdir -p "$WORK/svc/meta" "$WORK/svc/bin"
	printf '#!/bin/sh\nexec sleep 1000\n' >"$WORK/svc/bin/svc"
	chmod +x "$WORK/svc/bin/svc"
	for v in $(seq 1 $((RUNS + 1))); do
		printf "name: svc\nversion: '%s'\nbase: busybox\napps:\n  svc:\n    command: bin/svc\n    daemon: simple\n" "$v" \
			>"$WORK/svc/meta/pack.yaml"
		"$BIN/pack" pack "$WORK/svc" --output "$WORK/svc.pack" >/dev/null
		"$BIN/pack" install "$WORK/svc.pack" --dangerous >/dev/null
	done
	echo "== service downtime of a refresh ($RUNS refreshes; the service is exec sleep)"
	python3 - "$WORK/root/var/log/packd/svc.svc.log" <<'PY'
import sys, datetime, statistics
def t(s): return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
lines = [l.split(" ", 1) for l in open(sys.argv[1]).read().splitlines()]
stopped, gaps = None, []
for ts, msg in lines:
    if msg == "[packd] stopped": stopped = t(ts)
    elif msg == "[packd] started" and stopped is not None:
        gaps.append((t(ts) - stopped) * 1e3); stopped = None
print(f"downtime median {statistics.median(gaps):.1f} ms  min {min(gaps):.1f}  max {max(gaps):.1f} "
      f"over {len(gaps)} refreshes (goal < 100 ms + the app's own start-up)")
PY
}

# A new pack-store in $1, served on loopback: sets S, TOKEN, URL, STORE_PID, and the
# publisher environment.
start_store() {
	S=$1
	"$HOSTBIN/pack-store" init "$S" >/dev/null
	TOKEN=$("$HOSTBIN/pack-store" publisher add "$S" bench)
	"$HOSTBIN/pack-store" serve "$S" --listen 127.0.0.1:0 >"$S.out" 2>"$S.log" &
	STORE_PID=$!
	i=0
	until [ -s "$S.out" ]; do i=$((i + 1)); [ $i -lt 200 ] || { cat "$S.log"; exit 1; }; sleep 0.05; done
	URL=$(head -n1 "$S.out" | awk '{print $NF}')
	export PACK_STORE_URL="$URL" PACK_STORE_TOKEN="$TOKEN"
}

bench_store() {
	DEVICES=${STORE_DEVICES:-1000}
	ROUNDS=${STORE_ROUNDS:-40}
	start_store "$WORK/store"
	for n in $(seq -w 1 50); do
		mkdir -p "$WORK/p$n/meta" "$WORK/p$n/bin"
		printf "name: p%s\nversion: '1'\nbase: busybox\nsummary: bench pack %s\napps:\n  p%s:\n    command: bin/run\n" "$n" "$n" "$n" >"$WORK/p$n/meta/pack.yaml"
		printf '#!/bin/sh\necho %s\n' "$n" >"$WORK/p$n/bin/run"
		chmod +x "$WORK/p$n/bin/run"
		"$BIN/pack" pack "$WORK/p$n" --output "$WORK/p$n.pack" >/dev/null
		"$HOSTBIN/pack-store" register "p$n" >/dev/null
		"$HOSTBIN/pack-store" upload "$WORK/p$n.pack" --release stable >/dev/null
	done
	# One connection per device: more descriptors than the usual 1024 on both sides.
	ulimit -n 65536 2>/dev/null || true
	echo "== store: $DEVICES devices polling pack-store ($(nproc) cores, client and store on the same machine)"
	"$HOSTBIN/store-bench" "$URL" "$S/root.assert" "$STORE_PID" "$DEVICES" "$ROUNDS"
	kill "$STORE_PID"; wait "$STORE_PID" 2>/dev/null || true; STORE_PID=""
}

bench_rollout() {
	DEVICES=${ROLLOUT_DEVICES:-10000}
	start_store "$WORK/rstore"
	"$HOSTBIN/pack-store" register sim >/dev/null
	for v in 1 2; do
		mkdir -p "$WORK/sim$v/meta" "$WORK/sim$v/bin"
		printf "name: sim\nversion: '%s'\nbase: busybox\napps:\n  sim:\n    command: bin/run\n" "$v" >"$WORK/sim$v/meta/pack.yaml"
		printf '#!/bin/sh\necho %s\n' "$v" >"$WORK/sim$v/bin/run"
		chmod +x "$WORK/sim$v/bin/run"
		"$BIN/pack" pack "$WORK/sim$v" --output "$WORK/sim$v.pack" >/dev/null
	done
	"$HOSTBIN/pack-store" upload "$WORK/sim1.pack" --release stable >/dev/null
	"$HOSTBIN/pack-store" upload "$WORK/sim2.pack" >/dev/null
	ulimit -n 65536 2>/dev/null || true
	echo "== rollout: $DEVICES simulated devices through a progressive release ($(nproc) cores, one machine)"
	"$HOSTBIN/store-bench" rollout "$URL" "$S/root.assert" "$STORE_PID" "$TOKEN" "$DEVICES" 30
	kill "$STORE_PID"; wait "$STORE_PID" 2>/dev/null || true; STORE_PID=""
}

for section in $BENCH; do
	case $section in
	pack) bench_pack ;;
	launch) bench_launch ;;
	refresh) bench_refresh ;;
	store) bench_store ;;
	rollout) bench_rollout ;;
	*) echo "unknown bench section '$section' (known: pack launch refresh store rollout)" >&2; exit 2 ;;
	esac
done
