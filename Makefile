# duet — `make run` starts the server on port 4004, `make test` runs every test.
# Both work on a fresh Debian machine with cargo: test tools are installed when missing.

CARGO   ?= cargo
PORT    ?= 4004
TARGET  ?= x86_64-unknown-linux-musl
STATIC  := target/$(TARGET)/release/duet
# Test peers: command → Debian package.
TOOLS   := nc:netcat-openbsd ncat:ncat socat:socat python3:python3 sha256sum:coreutils file:file \
           curl:curl haproxy:haproxy nginx:nginx promtool:prometheus pebble:pebble \
           openssl:openssl ss:iproute2 systemd-analyze:systemd systemd-socket-activate:systemd \
           espeak-ng:espeak-ng sox:sox redis-server:redis-server \
           wormhole-william:wormhole-william

# The browser automation for tests/browser.rs (npm), pointed at Debian's chromium.
PUPPETEER         := target/peers/puppeteer
PUPPETEER_VERSION := 24
# The Python magic-wormhole client for tests/wormhole.rs (PyPI).
WORMHOLE_VENV     := target/peers/wormhole-venv

# The page's WebAssembly (web/ and the protocol in transfer/): built by `make wasm` and kept
# in git as web/pkg/, so `cargo build` needs nothing but cargo. web/pkg/SOURCES lists the
# digest of every file it was built from; a test fails when one has changed since.
WASM_BINDGEN_VERSION := 0.2.130
WASM_INPUTS = $$(find transfer/src web/src -name '*.rs' ! -name tests.rs | LC_ALL=C sort) transfer/Cargo.toml web/Cargo.toml .cargo/config.toml

# Seconds per fuzz target: a short run in `make test`, a long one in `make fuzz`.
FUZZ_SHORT ?= 15
FUZZ_SECS  ?= 600
FUZZ_TARGETS := parse lines
# Seconds of load and clients at once in `make soak`.
SOAK_SECS    ?= 180
SOAK_CLIENTS ?= 2000

.PHONY: run test deps unit smoke fuzz-short fuzz soak lint release bench clean screenshots interop wasm wasm-tools wasm-test

run:
	$(CARGO) run --release --bin duet -- serve -p $(PORT)

test: deps lint release unit wasm-test smoke fuzz-short

# Installs the programs the tests talk to, only when they are missing.
deps:
	@missing=""; for pair in $(TOOLS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing test tools:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; } \
	    || { echo "could not install:$$missing — install them by hand (Debian package names)"; exit 1; }; \
	fi
	@python3 -c 'import prometheus_client' 2>/dev/null || { echo "installing prometheus_client (PyPI, to parse /metrics)"; \
	  python3 -m pip install -q prometheus_client; }
	@missing=""; command -v chromium >/dev/null 2>&1 || missing=" chromium fonts-dejavu-core"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (the web page's tests drive a real headless browser)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	      --no-install-recommends $$missing >/dev/null; } \
	    || { echo "could not install$$missing — install them by hand"; exit 1; }; \
	fi
	@test -x $(WORMHOLE_VENV)/bin/wormhole || { echo "installing magic-wormhole (PyPI, once, under $(WORMHOLE_VENV))"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  python3 -m venv $(WORMHOLE_VENV) 2>/dev/null || { rm -rf $(WORMHOLE_VENV); \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv >/dev/null && python3 -m venv $(WORMHOLE_VENV); }; \
	  $(WORMHOLE_VENV)/bin/pip install -q magic-wormhole; }
	@test -d $(PUPPETEER)/node_modules/puppeteer-core || { echo "installing puppeteer-core (npm, once, under $(PUPPETEER))"; \
	  npm install --silent --no-audit --no-fund --prefix $(PUPPETEER) puppeteer-core@$(PUPPETEER_VERSION); }

# Unit and integration tests, every one: those that need the peers `deps` installs or move
# gigabytes are #[ignore]d for a bare `cargo test` (the fast tier: nothing but cargo) and
# run here. Optimized (the tests move gigabytes through the server), in Cargo.toml's `tests`
# profile: release without its link-time optimization, which only the shipped binary needs.
unit:
	$(CARGO) test --profile tests --workspace -- --include-ignored

# The wasm32 target and wasm-bindgen-cli at the version web/Cargo.toml pins.
wasm-tools:
	@rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $(WASM_BINDGEN_VERSION)" || { \
	  echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION) (once; it builds the page's WebAssembly and runs its tests)"; \
	  $(CARGO) install -q wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); }

# Rebuilds web/pkg/ (commit it with the change that needed it).
wasm: wasm-tools
	$(CARGO) build -p duet-web --release --target wasm32-unknown-unknown
	wasm-bindgen --target no-modules --no-typescript --remove-name-section --remove-producers-section \
	  --out-dir web/pkg target/wasm32-unknown-unknown/release/duet_web.wasm
	sha256sum $(WASM_INPUTS) > web/pkg/SOURCES
	@ls -l web/pkg/duet_web_bg.wasm | awk '{print "web/pkg/duet_web_bg.wasm:", $$5, "bytes"}'

# The protocol's own tests again, compiled to wasm32 and run in Node (the page's build).
wasm-test: wasm-tools
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
	  $(CARGO) test -p duet-transfer --no-default-features --features rustcrypto --target wasm32-unknown-unknown

# The shipped binary (`make release`'s static one) driven by real nc, the way a user would.
smoke: release
	bash tests/smoke.sh $(STATIC)

# Pictures of the web page for the README (not part of `make test`): the browser tests'
# harness against a server on a free port.
screenshots: deps
	$(CARGO) build --release --bin duet
	@mkdir -p docs/screenshots; \
	  target/release/duet serve -p 0 > target/screenshots.log 2>&1 & pid=$$!; \
	  for i in $$(seq 50); do port=$$(sed -n 's/^waiting for clients on port \([0-9]*\).*/\1/p' target/screenshots.log); \
	    [ -n "$$port" ] && break; sleep 0.1; done; \
	  DUET_PUPPETEER=$(CURDIR)/$(PUPPETEER) node tests/browser/drive.cjs screenshots http://127.0.0.1:$$port docs/screenshots; \
	  status=$$?; kill $$pid; exit $$status

# libFuzzer through cargo-fuzz, which needs the nightly toolchain. Without one, the
# pseudo-random run in the unit tests (fuzz::tests::short_fuzz_run) is all there is.
fuzz-short:
	@if ! rustup run nightly rustc --version >/dev/null 2>&1; then \
	  echo "fuzz-short: no nightly toolchain, skipping libFuzzer (the unit tests ran the targets)"; \
	else \
	  command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install --locked -q cargo-fuzz; \
	  for t in $(FUZZ_TARGETS); do \
	    mkdir -p target; \
	    $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SHORT) -max_len=4096 \
	      >target/fuzz-$$t.log 2>&1 || { tail -n 40 target/fuzz-$$t.log; exit 1; }; \
	    echo "fuzz $$t: $$(tail -n 1 target/fuzz-$$t.log)"; \
	  done; \
	fi

fuzz:
	command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install --locked -q cargo-fuzz
	for t in $(FUZZ_TARGETS); do \
	  $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECS) -max_len=4096 || exit 1; \
	done

# Thousands of random clients (chat, pipes, resets, idle, trickle, garbage, HTTP and
# WebSocket pipes, transits, mailboxes, cut pipes) for SOAK_SECS; fails on a leaked descriptor, a wrong
# byte, a cut transfer that arrives whole, or memory that keeps growing.
soak:
	$(CARGO) build --release --features bench --bins
	ulimit -n 65536 2>/dev/null || ulimit -n $$(ulimit -Hn); \
	  target/release/duet-soak --duet target/release/duet --secs $(SOAK_SECS) --clients $(SOAK_CLIENTS)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

# A small static binary (musl, LTO, stripped): no glibc NSS libraries wanted at run time
# (`--relay host:port` resolves names with musl's own resolver). The target and a musl C
# compiler (for ring) are installed when missing.
release:
	@rustup target list --installed 2>/dev/null | grep -qx $(TARGET) || rustup target add $(TARGET)
	@command -v musl-gcc >/dev/null 2>&1 || { echo "installing musl-tools (a C compiler for the musl target)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq musl-tools >/dev/null; }
	$(CARGO) build --release --bin duet --target $(TARGET)
	@ls -l $(STATIC) | awk '{print "size:", $$5, "bytes"}'
	@file $(STATIC)

# duet beside its peers (direct loopback, the seed Go server, socat, ncat) in one run.
bench: deps release
	@command -v go >/dev/null 2>&1 || { echo "installing golang-go (for the seed server)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null; }
	$(CARGO) build --release --features bench --bins
	ulimit -n 65536 2>/dev/null || ulimit -n $$(ulimit -Hn); python3 bench/run.py

# magic-wormhole clients of different implementations through one duet serve (wormhole-rs,
# the Python client, wormhole-william); not part of `make test`: wormhole-rs takes minutes to build.
interop: deps release
	$(CARGO) build --release --bin duet
	python3 bench/interop.py

clean:
	$(CARGO) clean
