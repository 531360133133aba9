#!/usr/bin/env bash
# Cross-checks the crate on the two CPU families OpenWrt routers are most often built on and that
# the x86-64 host cannot stand in for: 32-bit big-endian MIPS (byte order, no 64-bit atomics) and
# 32-bit ARM. For each target it
#   1. builds the library's unit tests (src/proto, src/core, src/config: pure, no root, no network)
#      and runs them under qemu-user,
#   2. builds the stripped release daemon (`--release --bin rupnpd`), reports its size and checks
#      that it starts (`rupnpd --version`) under qemu-user.
#
# Everything comes from Debian 12's own archive, installed here with apt-get when missing:
# rustc-web/cargo-web (Debian's newer Rust), rust-web-src (the std sources, built with
# -Zbuild-std because Debian ships std only for the host), gcc + libc for each target, and
# qemu-user-static. Crates are fetched from crates.io by cargo. Debian's toolchain is used even when
# rustup is installed: /usr/bin/cargo is called directly, RUSTC points at /usr/bin/rustc and
# ~/.cargo/bin is dropped from PATH. RUSTC_BOOTSTRAP=1 (needed by -Zbuild-std on a stable
# compiler) is set for these cargo runs only.
#
# Usage: scripts/cross-test.sh
# Environment:
#   CROSS_TARGETS        targets to check (default: mips-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
#   CROSS_TEST_FILTERS   libtest filters, e.g. "proto:: core::" (default: none, every unit test
#                        of the library, netlink and sock_diag ones included)
#   CROSS_NO_RELEASE=1   skip the release builds
#   CARGO_TARGET_DIR     default target/cross (kept apart from the host build's target/)
#
# Exits non-zero if a package cannot be installed, a build fails or a test fails.
# Time on a 2-core machine, cold: about 3 minutes per target (std is built twice per target: once
# for the test profile, once for release with panic=abort); see docs/openwrt.md.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

read -r -a TARGETS <<<"${CROSS_TARGETS:-mips-unknown-linux-gnu armv7-unknown-linux-gnueabihf}"
read -r -a FILTERS <<<"${CROSS_TEST_FILTERS-}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/cross}"

DEB_CARGO=/usr/bin/cargo
DEB_RUSTC=/usr/bin/rustc
DEB_RUSTDOC=/usr/bin/rustdoc

# target → GNU triplet of Debian's cross gcc / libc (also the qemu -L sysroot under /usr),
# qemu-user binary, and the Debian packages providing them.
gnu_triplet() {
	case "$1" in
		mips-unknown-linux-gnu) echo mips-linux-gnu ;;
		mipsel-unknown-linux-gnu) echo mipsel-linux-gnu ;;
		armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf ;;
		aarch64-unknown-linux-gnu) echo aarch64-linux-gnu ;;
		*) return 1 ;;
	esac
}
qemu_for() {
	case "$1" in
		mips-*) echo qemu-mips-static ;;
		mipsel-*) echo qemu-mipsel-static ;;
		armv7-*) echo qemu-arm-static ;;
		aarch64-*) echo qemu-aarch64-static ;;
		*) return 1 ;;
	esac
}
libc_dev_pkg() {
	case "$1" in
		mips-linux-gnu) echo libc6-dev-mips-cross ;;
		mipsel-linux-gnu) echo libc6-dev-mipsel-cross ;;
		arm-linux-gnueabihf) echo libc6-dev-armhf-cross ;;
		aarch64-linux-gnu) echo libc6-dev-arm64-cross ;;
	esac
}

log() { printf '\n==> %s\n' "$*"; }
fail() { printf 'cross-test: %s\n' "$*" >&2; exit 1; }

# --- packages ---------------------------------------------------------------------------------
need=(rustc-web cargo-web rust-web-src qemu-user-static)
for t in "${TARGETS[@]}"; do
	tr=$(gnu_triplet "$t") || fail "unsupported target $t"
	need+=("gcc-$tr" "$(libc_dev_pkg "$tr")")
done
missing=()
for p in "${need[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	log "installing ${missing[*]}"
	[ "$(id -u)" = 0 ] || fail "not root: install ${missing[*]} first"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

"$DEB_RUSTC" -vV >/dev/null 2>&1 || fail "$DEB_RUSTC does not run (is rustc-web installed?)"
rust_src=$("$DEB_RUSTC" --print sysroot)/lib/rustlib/src/rust/library
[ -f "$rust_src/Cargo.lock" ] || fail "std sources not found at $rust_src (rust-web-src)"
log "toolchain: $("$DEB_RUSTC" --version) / $("$DEB_CARGO" --version)"

# Debian's cargo with Debian's rustc; nothing from rustup, no wrappers, no outer cargo's settings.
deb_cargo() {
	env -u RUSTUP_TOOLCHAIN -u RUSTC_WRAPPER -u CARGO_BUILD_RUSTC_WRAPPER -u RUSTFLAGS \
		-u CARGO_BUILD_TARGET -u CARGO -u CARGO_ENCODED_RUSTFLAGS \
		PATH="/usr/sbin:/usr/bin:/sbin:/bin" \
		RUSTC="$DEB_RUSTC" RUSTDOC="$DEB_RUSTDOC" RUSTC_BOOTSTRAP=1 \
		"$DEB_CARGO" "$@"
}

# --- per target -------------------------------------------------------------------------------
failures=()
sizes=()
start_all=$SECONDS
for t in "${TARGETS[@]}"; do
	tr=$(gnu_triplet "$t")
	qemu=$(qemu_for "$t")
	up=$(echo "$t" | tr 'a-z-' 'A-Z_')
	export "CARGO_TARGET_${up}_LINKER=$tr-gcc"
	# cargo runs each test binary through qemu; -L makes the target's dynamic loader and libc
	# (Debian's cross libc6 under /usr/<triplet>) visible to it.
	export "CARGO_TARGET_${up}_RUNNER=$qemu -L /usr/$tr"

	log "$t: unit tests under $qemu (filters: ${FILTERS[*]:-none})"
	t0=$SECONDS
	# -Zbuild-std needs an explicit --target (host build scripts then use the host's std); the
	# test profile unwinds, so the default crate set (std with panic_unwind, plus test) is right.
	if deb_cargo test --locked --lib -Zbuild-std --target "$t" -- "${FILTERS[@]}"; then
		log "$t: tests passed ($((SECONDS - t0)) s)"
	else
		failures+=("$t: unit tests")
	fi
	# The PCP cross-check: our test client's codec against the daemon's, in memory and over
	# loopback UDP, on this byte order.
	if deb_cargo test --locked --test pcp_crosscheck -Zbuild-std --target "$t"; then
		log "$t: pcp_crosscheck passed"
	else
		failures+=("$t: pcp_crosscheck")
	fi

	[ "${CROSS_NO_RELEASE:-0}" = 1 ] && continue
	log "$t: release build"
	t0=$SECONDS
	# The release profile has panic = "abort", so panic_abort must be among the std crates built.
	if deb_cargo build --locked --release --bin rupnpd -Zbuild-std=std,panic_abort --target "$t"; then
		bin="$CARGO_TARGET_DIR/$t/release/rupnpd"
		out="$CARGO_TARGET_DIR/dist/rupnpd-$t"
		mkdir -p "$CARGO_TARGET_DIR/dist"
		cp "$bin" "$out"
		"$tr-strip" --strip-all "$out"
		size=$(stat -c %s "$out")
		sizes+=("$(printf '%-32s %9d bytes (%d KiB)' "$t" "$size" $(((size + 1023) / 1024)))")
		log "$t: release build done ($((SECONDS - t0)) s): $out, $size bytes"
		if ! $qemu -L "/usr/$tr" "$out" --version; then
			failures+=("$t: release binary does not start (rupnpd --version)")
		fi
	else
		failures+=("$t: release build")
	fi
done

log "summary ($((SECONDS - start_all)) s)"
for s in "${sizes[@]}"; do echo "  $s"; done
if [ "${#failures[@]}" -gt 0 ]; then
	for f in "${failures[@]}"; do echo "  FAILED: $f"; done
	exit 1
fi
echo "  all cross checks passed"
