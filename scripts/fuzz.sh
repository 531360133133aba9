#!/bin/sh
# Runs every fuzz target of fuzz/ (cargo-fuzz, libFuzzer) for a while.
#
#   sh scripts/fuzz.sh              60 s per target (release, AddressSanitizer)
#   sh scripts/fuzz.sh SECONDS      SECONDS per target
#   sh scripts/fuzz.sh --smoke      a few seconds per target, for CI: built
#                                   as the OpenWrt packages feed builds the
#                                   daemon (opt-level z, LTO, overflow
#                                   checks, panic=unwind), no sanitizer
#   sh scripts/fuzz.sh SECONDS pcp soap    only the targets named
#
# Installs cargo-fuzz (crates.io) if it is missing. Uses the nightly
# toolchain, or stable with RUSTC_BOOTSTRAP=1 when nightly cannot be had;
# it never skips.
# Prints per target the seconds run, libFuzzer's executions and whether it
# found a crash, and exits non-zero if any target did; the input that
# crashed is left in fuzz/artifacts/<target>/. New corpus entries of a
# full run go to fuzz/corpus/<target>/ under libFuzzer's hash names, which
# git ignores; the smoke run leaves the corpus as it is.
set -eu

cd "$(dirname "$0")/.."

die() {
	echo "fuzz.sh: $*" >&2
	exit 1
}

usage() {
	echo "usage: sh scripts/fuzz.sh [--smoke | SECONDS] [TARGET...]" >&2
	exit 2
}

smoke=0
secs=60
case "${1:-}" in
--smoke)
	smoke=1
	secs=4
	shift
	;;
-h | --help) usage ;;
'' | -*) ;;
*[!0-9]*) usage ;;
*)
	secs=$1
	shift
	;;
esac
[ "$secs" -gt 0 ] || usage

# ---------------------------------------------------------------- tools

command -v cargo >/dev/null 2>&1 || die "cargo not found (install Rust with rustup)"
command -v rustup >/dev/null 2>&1 || die "rustup not found (cargo-fuzz needs a rustup toolchain)"
# cargo-fuzz wants nightly. Without one (and no way to fetch it), the
# stable toolchain builds the same targets with RUSTC_BOOTSTRAP=1, which
# unlocks the unstable flags cargo-fuzz passes.
tc=nightly
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
	echo "fuzz.sh: installing the nightly toolchain" >&2
	if ! rustup toolchain install nightly --profile minimal; then
		tc=stable
		rustup run "$tc" rustc --version >/dev/null 2>&1 ||
			die "neither a nightly nor a stable rustup toolchain"
		echo "fuzz.sh: no nightly toolchain; building with stable and RUSTC_BOOTSTRAP=1" >&2
		export RUSTC_BOOTSTRAP=1
	fi
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "fuzz.sh: installing cargo-fuzz" >&2
	cargo install cargo-fuzz --locked || die "cargo-fuzz cannot be installed"
	cargo fuzz --version >/dev/null 2>&1 || die "cargo-fuzz installed but 'cargo fuzz' does not run (is ~/.cargo/bin on PATH?)"
fi
host=$(rustup run "$tc" rustc -vV | sed -n 's/^host: //p')
[ -n "$host" ] || die "cannot tell the $tc toolchain's host triple"

# ---------------------------------------------------------------- build

cd fuzz
all=$(cargo +"$tc" fuzz list) || die "cargo fuzz list failed"
[ -n "$all" ] || die "no fuzz targets in fuzz/Cargo.toml"
if [ $# -gt 0 ]; then
	for t in "$@"; do
		echo "$all" | grep -qx "$t" || die "no fuzz target '$t' (have: $(echo "$all" | tr '\n' ' '))"
	done
	targets=$*
else
	targets=$all
fi

# One build of every target serves them all. Overflow checks are on in
# both builds, so an arithmetic overflow is found as a panic, not silently
# wrapped. The smoke build is the router's: the packages feed's overrides
# of the release profile (lang/rust/rust-values.mk; our Cargo.toml's
# profile `feed`), applied here to fuzz/'s release profile.
if [ $smoke -eq 1 ]; then
	CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_DEBUG=false \
		CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=false CARGO_PROFILE_RELEASE_LTO=true \
		CARGO_PROFILE_RELEASE_OPT_LEVEL=z CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true \
		CARGO_PROFILE_RELEASE_PANIC=unwind CARGO_PROFILE_RELEASE_RPATH=false \
		cargo +"$tc" fuzz build --release --sanitizer none --target-dir target/feed ||
		die "build failed"
	bindir=target/feed/$host/release
else
	cargo +"$tc" fuzz build --debug-assertions || die "build failed"
	bindir=target/$host/release
fi

# ---------------------------------------------------------------- run

# Longest input per target: a little past each parser's own limit, so the
# "too large" paths are fuzzed too.
max_len() {
	case $1 in
	http_head) echo 9000 ;;   # MAX_HEAD 8 KiB
	soap) echo 16640 ;;       # MAX_BODY 16 KiB plus the SOAPACTION line
	ssdp) echo 2100 ;;        # MAX_DATAGRAM 2048
	gena) echo 600 ;;         # MAX_CALLBACK 512
	natpmp) echo 1200 ;;      # MAX_ECHO 1100
	pcp) echo 1200 ;;         # MAX_MESSAGE 1100
	pmp_handler) echo 8192 ;; # up to 64 datagrams
	igd_handler) echo 16384 ;; # up to 32 SOAP bodies (MAX_BODY 16 KiB each)
	uci) echo 16384 ;;        # real configs are a few KiB
	lease) echo 8192 ;;
	blobmsg) echo 8192 ;;   # real ubus messages are small; MAX_LEN is 1 MiB
	nfnl | rtnl | sock_diag) echo 65536 ;; # sys::nfnl's RECV_BUF: one netlink datagram
	stun) echo 1600 ;;      # MAX_MESSAGE 1500
	*) echo 4096 ;;
	esac
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rupnpd-fuzz.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

failed=0
repro=
report="target|seconds|executions|result"
for t in $targets; do
	bin=$bindir/$t
	[ -x "$bin" ] || die "built, yet $bin is missing"
	mkdir -p "artifacts/$t" "corpus/$t"
	if [ $smoke -eq 1 ]; then
		# new inputs go to a scratch directory; the seeds are read only
		mkdir -p "$tmp/new-$t"
		corpus="$tmp/new-$t corpus/$t"
	else
		corpus="corpus/$t"
	fi
	log=$tmp/$t.log
	echo "fuzz.sh: $t for $secs s" >&2
	start=$(date +%s)
	rc=0
	# shellcheck disable=SC2086 # $corpus is one or two directories
	"$bin" -max_total_time="$secs" -max_len="$(max_len "$t")" -rss_limit_mb=1024 \
		-timeout=10 -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
		$corpus >"$log" 2>&1 || rc=$?
	ran=$(($(date +%s) - start))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	[ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
	[ -n "$execs" ] || execs='?'
	if [ $rc -eq 0 ]; then
		result=ok
	else
		failed=1
		artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
		result="CRASH (exit $rc) ${artifact:+fuzz/$artifact}"
		repro="$repro
  (cd fuzz && cargo +nightly fuzz run -a $t ${artifact:-artifacts/$t/<crash file>})"
		# the panic message (or sanitizer report) and libFuzzer's verdict,
		# without the long stack traces
		echo "fuzz.sh: $t failed:" >&2
		grep -E -A 3 "panicked at|ERROR: (AddressSanitizer|libFuzzer)" "$log" |
			grep -v -E "^ *(#[0-9]|[0-9]+:|at |stack backtrace|--$|SUMMARY)" |
			head -n 20 >&2 || true
		grep -E "^SUMMARY|Test unit written" "$log" >&2 || true
	fi
	report="$report
$t|$ran|$execs|$result"
done

echo
echo "$report" | awk -F'|' '{ printf "%-12s %8s %12s  %s\n", $1, $2, $3, $4 }'
if [ $failed -ne 0 ]; then
	echo
	echo "reproduce:$repro"
	exit 1
fi
