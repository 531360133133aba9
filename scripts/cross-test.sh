#!/usr/bin/env bash
# Cross-checks the crate on the two CPU families OpenWrt routers are most often built on and that
# the x86-64 host cannot stand in for: 32-bit big-endian MIPS (byte order, no 64-bit atomics) and
# 32-bit ARM. For each target it
#   1. builds the library's unit tests (src/proto, src/core, src/config: pure, no root, no network)
#      and the PCP cross-check and runs them under qemu-user, in the test profile and in the
#      OpenWrt packages feed's profile (`feed` in Cargo.toml: optimised, overflow checks, unwind),
#   2. builds the stripped daemon (`--bin rupnpd`) in our release profile and in the feed's,
#      records its size (scripts/sizes.sh) and checks that it starts (`rupnpd --version`) under
#      qemu-user.
#
# Everything comes from Debian 12's own archive, installed here with apt-get when missing:
# rustc-web/cargo-web with rust-web-src (std built with -Zbuild-std, because Debian ships std
# only for the host; see scripts/lib/debian-rust.sh), gcc + libc for each target, and
# qemu-user-static. Crates are fetched from crates.io by cargo.
#
# Usage: scripts/cross-test.sh
# Environment:
#   CROSS_TARGETS        targets to check (default: mips-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
#   CROSS_TEST_FILTERS   libtest filters, e.g. "proto:: core::" (default: none, every unit test
#                        of the library, netlink and sock_diag ones included)
#   CROSS_NO_RELEASE=1   skip the daemon builds
#   CARGO_TARGET_DIR     default target/cross (kept apart from the host build's target/)
#
# Exits non-zero if a package cannot be installed, a build fails or a test fails.
# Time on a 2-core machine: see docs/openwrt.md (std is built once per profile and target).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

read -r -a TARGETS <<<"${CROSS_TARGETS:-mips-unknown-linux-gnu armv7-unknown-linux-gnueabihf}"
read -r -a FILTERS <<<"${CROSS_TEST_FILTERS-}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/cross}"

# shellcheck source=scripts/lib/debian-rust.sh
. scripts/lib/debian-rust.sh

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

# --- packages ---------------------------------------------------------------------------------
need=(rustc-web cargo-web rust-web-src qemu-user-static)
for t in "${TARGETS[@]}"; do
	tr=$(gnu_triplet "$t") || fail "unsupported target $t"
	need+=("gcc-$tr" "$(libc_dev_pkg "$tr")")
done
apt_need "${need[@]}"
deb_rust_check

# --- per target -------------------------------------------------------------------------------
failures=()
start_all=$SECONDS
for t in "${TARGETS[@]}"; do
	tr=$(gnu_triplet "$t")
	qemu=$(qemu_for "$t")
	up=$(echo "$t" | tr 'a-z-' 'A-Z_')
	export "CARGO_TARGET_${up}_LINKER=$tr-gcc"
	# cargo runs each test binary through qemu; -L makes the target's dynamic loader and libc
	# (Debian's cross libc6 under /usr/<triplet>) visible to it.
	export "CARGO_TARGET_${up}_RUNNER=$qemu -L /usr/$tr"
	# qemu-user passes only NETLINK_ROUTE (and a few message types of it) through to the kernel:
	# the unit tests of sock_diag and of an unanswered NOOP say "skipped" under it, and only there.
	export RUPNPD_TEST_UNDER_QEMU=1

	# -Zbuild-std needs an explicit --target (host build scripts then use the host's std). The
	# test profile and the feed's unwind, so the default crate set (std with panic_unwind, plus
	# test) is right for the tests.
	for profile in test feed; do
		log "$t: unit tests under $qemu, $profile profile (filters: ${FILTERS[*]:-none})"
		t0=$SECONDS
		if deb_cargo test --locked --profile "$profile" --lib -Zbuild-std --target "$t" -- "${FILTERS[@]}"; then
			log "$t: tests passed ($((SECONDS - t0)) s)"
		else
			failures+=("$t: unit tests ($profile profile)")
		fi
		# The PCP cross-check: our test client's codec against the daemon's, in memory and over
		# loopback UDP, on this byte order.
		if deb_cargo test --locked --profile "$profile" --test pcp_crosscheck -Zbuild-std --target "$t"; then
			log "$t: pcp_crosscheck passed ($profile profile)"
		else
			failures+=("$t: pcp_crosscheck ($profile profile)")
		fi
	done

	[ "${CROSS_NO_RELEASE:-0}" = 1 ] && continue
	for profile in release feed; do
		log "$t: $profile build"
		t0=$SECONDS
		if deb_build_daemon "$profile" "$t"; then
			bin="$CARGO_TARGET_DIR/$t/$profile/rupnpd"
			log "$t: $profile build done ($((SECONDS - t0)) s): $bin"
			sh scripts/sizes.sh record "$t" "$profile" "$bin" "$tr-strip" "$DEB_COMPILER"
			if ! $qemu -L "/usr/$tr" "$bin" --version; then
				failures+=("$t: $profile binary does not start (rupnpd --version)")
			fi
		else
			failures+=("$t: $profile build")
		fi
	done
done

log "summary ($((SECONDS - start_all)) s)"
if [ "${#failures[@]}" -gt 0 ]; then
	for f in "${failures[@]}"; do echo "  FAILED: $f"; done
	exit 1
fi
echo "  all cross checks passed"
