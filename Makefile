# packd — build, test, demo and benchmarks. `make test` is what CI runs (.ci/run).

CARGO ?= cargo
# System packages the build, the tests, the demo and the benchmarks need.
APT_PACKAGES := libsquashfs-dev libclang-dev clang pkg-config squashfs-tools squashfs-tools-ng \
	busybox-static debootstrap apparmor hyperfine bubblewrap util-linux

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

# Release binaries, statically linked: `pack run` is on every app's start-up path, and a static
# binary starts about 0.4 ms sooner than one the dynamic loader has to assemble.
HOST := $(shell rustc -vV | sed -n 's/^host: //p')
RELEASE_DIR := target/$(HOST)/release
release: deps
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --workspace --bins --target $(HOST)
	@echo "static binaries in $(RELEASE_DIR)"

bench: release
	BIN=$(RELEASE_DIR) ./scripts/bench.sh

clean:
	$(CARGO) clean
