#!/bin/sh
# Runs every test: formatting and lints, unit and core tests, the
# integration tests in network namespaces (real nftables, upnpc, natpmpc),
# all of them again in the OpenWrt packages feed's profile, the packaging
# checks, the MIPS/ARM suites under qemu, the integration tests against the
# router's musl build, a fuzz smoke, and the binary sizes against
# sizes.txt. Run as root on Debian 12: `sh scripts/test.sh`. Exits non-zero
# on any failure.
set -eu
cd "$(dirname "$0")/.."

sh scripts/deps.sh

step() { printf '\n=== %s\n' "$*"; }

# Test namespaces are named rupt-<pid>-<test>-<host>, <pid> being the test
# process. Those of a process that is gone (a killed earlier run) are
# removed; a run still going in another checkout keeps its own.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
	case "$ns" in
		rupt-*)
			pid=$(echo "$ns" | cut -d- -f2)
			case "$pid" in
				'' | *[!0-9]*) ip netns del "$ns" 2>/dev/null || true ;;
				*) kill -0 "$pid" 2>/dev/null || ip netns del "$ns" 2>/dev/null || true ;;
			esac
			;;
	esac
done

# tests/kernel_log.rs sets the host-wide net.netfilter.nf_log_all_netns for a moment and
# restores it itself, also after a failure; a run killed meanwhile leaves the old value in
# /run/rupnpd-test-nf_log_all_netns.<pid>. Those of processes that are gone are put back here,
# before and after the tests, under the lock the test takes (so a test running in another checkout
# is not disturbed).
restore_nf_log_all_netns() {
	# shellcheck disable=SC2016 # the inner shell expands them
	flock /run/rupnpd-test-nf_log_all_netns.lock sh -c '
		for note in /run/rupnpd-test-nf_log_all_netns.[0-9]*; do
			[ -f "$note" ] || continue
			kill -0 "${note##*.}" 2>/dev/null && continue
			cat "$note" >/proc/sys/net/netfilter/nf_log_all_netns && rm -f "$note"
		done' || true
}
restore_nf_log_all_netns

# tests/nft.rs runs a bridged LAN as OpenWrt with kmod-br-netfilter has it; the bed sets
# bridge-nf-call-iptables in its own router namespace only, but the kernel needs br_netfilter.
# Loading it would hand the frames of the host's own bridges to the IP hooks, so when this run
# loads it, the host's namespace gets the behaviour it had without it (the three sysctls at 0)
# and the module is unloaded again at the end.
BR_NETFILTER_LOADED=0
if [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ] && modprobe br_netfilter 2>/dev/null; then
	BR_NETFILTER_LOADED=1
	for t in iptables ip6tables arptables; do
		echo 0 >"/proc/sys/net/bridge/bridge-nf-call-$t" 2>/dev/null || true
	done
fi
on_exit() {
	restore_nf_log_all_netns
	if [ "$BR_NETFILTER_LOADED" = 1 ]; then modprobe -r br_netfilter 2>/dev/null || true; fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if cargo fmt --version >/dev/null 2>&1; then
	step "cargo fmt --check"
	cargo fmt --all -- --check
fi
if cargo clippy --version >/dev/null 2>&1; then
	step "cargo clippy -- -D warnings"
	cargo clippy --all-targets --locked -- -D warnings
fi

# Seconds of each step, printed at the end.
timings=""
t0=$(date +%s)
timed() {
	t1=$(date +%s)
	timings="$timings
$(printf '%6d s  %s' $((t1 - t0)) "$1")"
	t0=$t1
}
timed "packages, fmt, clippy"
# sizes measured by this run only (scripts/sizes.sh)
rm -rf target/sizes

step "unit, core and integration tests"
cargo test --locked --all-targets
timed "tests, test profile"

# The router's build: the packages feed builds with panic=unwind and
# overflow checks (Cargo.toml's profile feed). A panic in a daemon fails
# its test (tests/common/mod.rs).
step "unit, core and integration tests in the packages feed's profile"
cargo test --profile feed --locked --all-targets
timed "tests, feed profile"

step "x86_64 glibc builds: sizes"
cargo build --locked --release --bin rupnpd
compiler=$(rustc --version | cut -d' ' -f1-2)
for profile in release feed; do
	sh scripts/sizes.sh record x86_64-unknown-linux-gnu "$profile" "target/$profile/rupnpd" strip "$compiler"
done
timed "x86_64 release build"

for extra in scripts/check-pkg.sh scripts/cross-test.sh scripts/musl-test.sh scripts/fuzz.sh; do
	step "$extra"
	case "$extra" in
		*fuzz.sh) bash "$extra" --smoke ;;
		*) bash "$extra" ;;
	esac
	timed "$extra"
done

step "sizes against sizes.txt"
sh scripts/sizes.sh check

step "time per step"
echo "$timings" | sed 1d

step "all tests passed"
