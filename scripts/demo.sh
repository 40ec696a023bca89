#!/bin/sh
# The packd demo: a daemon on a temporary root, the busybox base, the hello example packed,
# installed, run, listed and removed; then the ticker service installed, refreshed, reverted
# and removed. Cleans up after itself, even on failure.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug}
WORK=$(mktemp -d /tmp/packd-demo.XXXXXX)
ROOT=$WORK/root
mkdir -p "$ROOT"
export PACKD_SOCKET="$ROOT/run/packd.socket"
PACKD_PID=""

cleanup() {
	if [ -n "$PACKD_PID" ]; then kill "$PACKD_PID" 2>/dev/null || true; wait "$PACKD_PID" 2>/dev/null || true; fi
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
step "$PACK" base build busybox "$WORK/busybox.pack"
step "$PACK" pack examples/hello --output "$WORK/hello_1.0.pack"
step "$PACK" install "$WORK/busybox.pack" --dangerous
step "$PACK" install "$WORK/hello_1.0.pack" --dangerous
step "$PACK" list
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
