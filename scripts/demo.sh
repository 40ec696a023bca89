#!/bin/sh
# The packd demo: a daemon on a temporary root and a local pack-store; the busybox base and the
# hello example packed and published to the store, hello installed from it by name (its base
# with it), run, listed and removed; then the ticker service installed from a file, refreshed,
# reverted and removed. Cleans up after itself, even on failure.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug}
WORK=$(mktemp -d /tmp/packd-demo.XXXXXX)
ROOT=$WORK/root
mkdir -p "$ROOT"
export PACKD_SOCKET="$ROOT/run/packd.socket"
PACKD_PID=""
STORE_PID=""

cleanup() {
	if [ -n "$PACKD_PID" ]; then kill "$PACKD_PID" 2>/dev/null || true; wait "$PACKD_PID" 2>/dev/null || true; fi
	if [ -n "$STORE_PID" ]; then kill "$STORE_PID" 2>/dev/null || true; wait "$STORE_PID" 2>/dev/null || true; fi
	# Unmount whatever is left under the demo root, deepest first (loop devices clear themselves).
	grep -o " $ROOT[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

step() {
	printf '\n\033[1m$ %s\033[0m\n' "$*"
	"$@"
}

if [ "$(id -u)" != 0 ]; then
	echo "make demo needs root: packd mounts packages and builds sandboxes" >&2
	exit 1
fi

echo "Starting packd on $ROOT (log: $WORK/packd.log)"
"$BIN/packd" --root "$ROOT" >"$WORK/packd.log" 2>&1 &
PACKD_PID=$!
i=0
until [ -S "$PACKD_SOCKET" ]; do
	i=$((i + 1)); [ $i -lt 200 ] || { cat "$WORK/packd.log"; exit 1; }
	sleep 0.05
done

PACK="$BIN/pack"
STORE="$BIN/pack-store"
step "$PACK" base build busybox "$WORK/busybox.pack"
step "$PACK" pack examples/hello --output "$WORK/hello_1.0.pack"

# A store of our own on loopback, and the two packs published to its stable channel.
step "$STORE" init "$WORK/store"
PACK_STORE_TOKEN=$("$STORE" publisher add "$WORK/store" demo)
export PACK_STORE_TOKEN
"$STORE" serve "$WORK/store" --listen 127.0.0.1:0 >"$WORK/store.out" 2>"$WORK/store.log" &
STORE_PID=$!
i=0
until [ -s "$WORK/store.out" ]; do
	i=$((i + 1)); [ $i -lt 200 ] || { cat "$WORK/store.log"; exit 1; }
	sleep 0.05
done
PACK_STORE_URL=$(head -n1 "$WORK/store.out" | awk '{print $NF}')
export PACK_STORE_URL
echo "pack-store serving on $PACK_STORE_URL"
step "$STORE" register busybox
step "$STORE" register hello
step "$STORE" upload "$WORK/busybox.pack" --release stable
step "$STORE" upload "$WORK/hello_1.0.pack" --release stable

# The device trusts the store's root, and installs by name.
step "$PACK" remote add demo "$PACK_STORE_URL" --trust "$WORK/store/root.assert"
step "$PACK" find hello
step "$PACK" info hello
step "$PACK" install hello
step "$PACK" list
step "$PACK" refresh --list
step "$PACK" run hello -- from the demo
step "$PACK" run hello
step "$PACK" info hello
step "$PACK" remove hello
step "$PACK" list

# A service: installed and started, its log, a refresh (data copied, post-refresh hook, a
# short health window), a revert, the changes that did it all.
step "$PACK" set system refresh.health-window=2s
step "$PACK" pack examples/ticker --output "$WORK/ticker.pack"
step "$PACK" install "$WORK/ticker.pack" --dangerous
step "$PACK" services
sleep 1.5
step "$PACK" logs ticker -n 3
step "$PACK" install "$WORK/ticker.pack" --dangerous
step "$PACK" logs ticker -n 5
step "$PACK" revert ticker
step "$PACK" info ticker
step "$PACK" changes
step "$PACK" remove ticker
printf '\nDemo done; stopping packd.\n'
