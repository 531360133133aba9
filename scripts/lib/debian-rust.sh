# shellcheck shell=bash
# Sourced by scripts/cross-test.sh and scripts/musl-test.sh (bash): Debian 12's own Rust
# toolchain for targets Debian ships no std for.
#
# rustc-web/cargo-web are Debian's newer Rust; rust-web-src has std's sources, built with
# -Zbuild-std (RUSTC_BOOTSTRAP=1 lets the stable compiler accept it, in these cargo runs only).
# Debian's toolchain is used even when rustup is installed: /usr/bin/cargo is called directly,
# RUSTC points at /usr/bin/rustc and ~/.cargo/bin is dropped from PATH, so the two toolchains
# never mix (rustup's rustc cannot use std built by Debian's and vice versa).

DEB_CARGO=/usr/bin/cargo
DEB_RUSTC=/usr/bin/rustc
DEB_RUSTDOC=/usr/bin/rustdoc

log() { printf '\n==> %s\n' "$*"; }
fail() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# Installs the Debian packages named that are missing (root only).
apt_need() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ "${#missing[@]}" -eq 0 ] && return 0
	log "installing ${missing[*]}"
	[ "$(id -u)" = 0 ] || fail "not root: install ${missing[*]} first"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Checks Debian's compiler and std sources; call after apt_need rustc-web cargo-web rust-web-src.
deb_rust_check() {
	"$DEB_RUSTC" -vV >/dev/null 2>&1 || fail "$DEB_RUSTC does not run (is rustc-web installed?)"
	local src
	src=$("$DEB_RUSTC" --print sysroot)/lib/rustlib/src/rust/library
	[ -f "$src/Cargo.lock" ] || fail "std sources not found at $src (rust-web-src)"
	log "toolchain: $("$DEB_RUSTC" --version) / $("$DEB_CARGO" --version)"
	# what the sizes of these builds record as their compiler (scripts/sizes.sh)
	# shellcheck disable=SC2034 # used by the scripts that source this file
	DEB_COMPILER="$("$DEB_RUSTC" --version | cut -d' ' -f1-2), -Zbuild-std"
}

# Debian's cargo with Debian's rustc; nothing from rustup, no wrappers, no outer cargo's
# settings. RUSTFLAGS is dropped unless DEB_RUSTFLAGS is set (then it is used).
deb_cargo() {
	local flags=()
	[ -z "${DEB_RUSTFLAGS:-}" ] || flags=("RUSTFLAGS=$DEB_RUSTFLAGS")
	env -u RUSTUP_TOOLCHAIN -u RUSTC_WRAPPER -u CARGO_BUILD_RUSTC_WRAPPER -u RUSTFLAGS \
		-u CARGO_BUILD_TARGET -u CARGO -u CARGO_ENCODED_RUSTFLAGS "${flags[@]}" \
		PATH="/usr/sbin:/usr/bin:/sbin:/bin" \
		RUSTC="$DEB_RUSTC" RUSTDOC="$DEB_RUSTDOC" RUSTC_BOOTSTRAP=1 \
		"$DEB_CARGO" "$@"
}

# Builds the daemon for target $2 in cargo profile $1, std included; it is then
# $CARGO_TARGET_DIR/$2/$1/rupnpd. panic = "abort" (our release profile) needs panic_abort among
# the std crates built; the other profiles unwind, and std brings panic_unwind.
deb_build_daemon() {
	local std=std
	[ "$1" = release ] && std=std,panic_abort
	deb_cargo build --locked --profile "$1" --bin rupnpd -Zbuild-std="$std" --target "$2"
}
