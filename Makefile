# packd — build, test, demo and benchmarks. `make test` is what CI runs (.ci/run).

CARGO ?= cargo
# System packages the build, the tests, the demo and the benchmarks need.
APT_PACKAGES := libsquashfs-dev libclang-dev clang pkg-config squashfs-tools squashfs-tools-ng \
	busybox-static debootstrap apparmor hyperfine bubblewrap util-linux dbus-daemon

.PHONY: all deps build release test lint unit e2e demo bench clean

all: build

# Installs missing system packages with apt (root); does nothing when all are present.
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps
	$(CARGO) build --workspace --bins

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Unit tests beside the code, then end-to-end tests against real daemons (need root;
# under CI=true they never skip).
test: lint build
	$(CARGO) test --workspace --no-fail-fast

demo: build
	./scripts/demo.sh

# Release binaries in target/dist, all static. `pack` is on every app's start-up path: a
# static binary skips the dynamic loader, and musl's start-up skips glibc's, which probes the
# CPU's caches with CPUID (trapped by the hypervisor in a VM: ~0.5 ms per start here). `pack`
# links no C library (packd-api, not packd), so it builds for musl; the others link
# libsquashfs from Debian's -dev packages, built for glibc, and stay glibc-static.
HOST := $(shell rustc -vV | sed -n 's/^host: //p')
MUSL := $(shell uname -m)-unknown-linux-musl
RELEASE_DIR := target/dist
release: deps
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --workspace --bins --target $(HOST)
	rustup target list --installed | grep -qx $(MUSL) || rustup target add $(MUSL)
	$(CARGO) build --release -p pack-cli --bin pack --no-default-features --target $(MUSL)
	mkdir -p $(RELEASE_DIR)
	cp target/$(HOST)/release/packd target/$(HOST)/release/pack-confine \
		target/$(HOST)/release/pack-build target/$(MUSL)/release/pack $(RELEASE_DIR)/
	@echo "static binaries in $(RELEASE_DIR)"

bench: release
	BIN=$(RELEASE_DIR) HOSTBIN=target/$(HOST)/release ./scripts/bench.sh

clean:
	$(CARGO) clean
