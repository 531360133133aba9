#!/usr/bin/env bash
# Checks the OpenWrt packaging (openwrt-pkg/) and every shell script of the repository:
#   1. shellcheck on every shell script (by extension, shebang or `# shellcheck shell=` line);
#      OpenWrt's scripts are checked as POSIX sh, since they run under busybox ash;
#   2. package metadata: PKG_VERSION matches Cargo.toml, Cargo.lock is present (the package
#      builds with --locked), every file the Makefile installs exists, cross.toml parses;
#   3. tests/pkg/nft-test.sh: the fw4 include files in a fw4-shaped ruleset (network namespace);
#   4. tests/pkg/init-test.sh: init script, fw4 script include, hotplug, uci-defaults and postrm
#      against recording procd stand-ins and a uci stand-in keeping uci's file format, under
#      busybox ash;
#   5. tests/pkg/deps-test.sh: the package relations (luci-app-upnp cannot go over rupnpd) with
#      dpkg standing in for opkg/apk;
#   6. tests/pkg/luci-test.js: LuCI views against stand-ins of rpc.js/uhttpd/rpcd (refusals in
#      words, escaping, Start/Stop), JSON files parse, the ACL grants exactly what the pages use.
# Installs shellcheck, busybox and nftables with apt-get when missing (needs root, as do the
# nftables checks). Prints what failed; exits non-zero on any failure.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1

failures=()
step() { printf '\n==> %s\n' "$*"; }
record() { # record <name> <status>
	if [ "$2" = 0 ]; then echo "--- $1: passed"; else failures+=("$1"); echo "--- $1: FAILED"; fi
}

need=()
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v busybox >/dev/null || need+=(busybox)
command -v nft >/dev/null || need+=(nftables)
command -v node >/dev/null || need+=(nodejs)
if [ "${#need[@]}" -gt 0 ]; then
	step "installing ${need[*]}"
	if [ "$(id -u)" = 0 ]; then
		export DEBIAN_FRONTEND=noninteractive
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } >/dev/null ||
			failures+=("apt-get install ${need[*]}")
	else
		failures+=("missing tools (not root, cannot install): ${need[*]}")
	fi
fi

# --- 1. shellcheck ------------------------------------------------------------------------------
step "shellcheck"
sc_status=0
sc_count=0
while IFS= read -r -d '' f; do
	[ -f "$f" ] || continue
	# Binary files (fixtures, images) are not scripts.
	grep -Iq . "$f" || continue
	first=$(head -n 1 "$f")
	dialect=
	case "$f" in
		*.sh) dialect=auto ;;
	esac
	case "$first" in
		'#!/bin/sh /etc/rc.common'* | '#!/bin/sh'* | '#!/usr/bin/env sh'*) dialect='sh' ;;
		'#!/bin/bash'* | '#!/usr/bin/env bash'*) dialect=bash ;;
		'#!'*) [ "$dialect" = auto ] || dialect= ;;
	esac
	if [ -z "$dialect" ] && head -n 5 "$f" | grep -q '^# shellcheck shell=sh'; then
		dialect='sh'
	fi
	[ -n "$dialect" ] || continue
	# Everything packaged for OpenWrt runs under busybox ash: check it as POSIX sh.
	case "$f" in
		openwrt-pkg/* | tests/pkg/stubs/*) dialect='sh' ;;
	esac
	sc_count=$((sc_count + 1))
	if [ "$dialect" = auto ]; then
		shellcheck -x "$f" || sc_status=1
	else
		shellcheck -x -s "$dialect" "$f" || sc_status=1
	fi
done < <(git ls-files -z --cached --others --exclude-standard | grep -z -v -e '^target/' -e '^fuzz/')
echo "shellcheck: $sc_count scripts"
[ "$sc_count" -gt 0 ] || sc_status=1
record shellcheck "$sc_status"

# --- 2. package metadata -------------------------------------------------------------------------
step "package metadata"
meta_status=0
mk=openwrt-pkg/rupnpd/Makefile
cargo_version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
pkg_version=$(sed -n 's/^PKG_VERSION:=//p' "$mk")
if [ "$cargo_version" = "$pkg_version" ]; then
	echo "PKG_VERSION $pkg_version = Cargo.toml version"
else
	echo "PKG_VERSION $pkg_version differs from Cargo.toml version $cargo_version"
	meta_status=1
fi
[ -f Cargo.lock ] || { echo "Cargo.lock missing: the package builds with cargo install --locked"; meta_status=1; }
while read -r f; do
	[ -f "openwrt-pkg/rupnpd/$f" ] || { echo "$mk installs $f, which does not exist"; meta_status=1; }
done < <(grep -o '\./files/[^ ]*' "$mk" | sort -u)
for f in openwrt-pkg/rupnpd/files/*; do
	[ -d "$f" ] || grep -q "\./files/${f##*/}" "$mk" || { echo "$f is never installed"; meta_status=1; }
done
python3 -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' cross.toml ||
	{ echo "cross.toml is not valid TOML"; meta_status=1; }
grep -q '^include .*luci\.mk' openwrt-pkg/luci-app-rupnpd/Makefile || { echo "luci-app-rupnpd does not include luci.mk"; meta_status=1; }
record "package metadata" "$meta_status"

# --- 3.-6. tests ---------------------------------------------------------------------------------
step "fw4 include files (tests/pkg/nft-test.sh)"
bash tests/pkg/nft-test.sh
record "nftables includes" $?

step "init script and hooks (tests/pkg/init-test.sh)"
bash tests/pkg/init-test.sh
record "init script and hooks" $?

step "package relations (tests/pkg/deps-test.sh)"
bash tests/pkg/deps-test.sh
record "package relations" $?

step "LuCI app (tests/pkg/luci-test.js)"
node tests/pkg/luci-test.js
record "LuCI app" $?

step "summary"
if [ "${#failures[@]}" -gt 0 ]; then
	for f in "${failures[@]}"; do echo "FAILED: $f"; done
	exit 1
fi
echo "all package checks passed"
