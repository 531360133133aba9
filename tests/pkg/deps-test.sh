#!/usr/bin/env bash
# Shows with a real package manager that luci-app-upnp cannot be installed over rupnpd, and that
# rupnpd cannot be installed over miniupnpd or luci-app-upnp.
#
# Neither opkg nor apk is packaged for Debian. dpkg stands in: opkg's control files are dpkg's
# format and their Depends, Provides and Conflicts fields mean the same (an unversioned Provides
# satisfies a dependency on that name; Conflicts refuses both packages side by side). dpkg is
# stricter in one way: it also refuses a package that an installed one declares a conflict with,
# which opkg does not check (so rupnpd names luci-app-upnp in its own CONFLICTS, and the
# dependency of luci-app-upnp is what stops it in every manager); apk's solver, like dpkg, takes
# every installed package's conflicts into account.
#
# The control files of rupnpd and luci-app-rupnpd are generated from their OpenWrt Makefiles
# (DEPENDS/LUCI_DEPENDS `+pkg` -> Depends, PROVIDES -> Provides, CONFLICTS -> Conflicts, the
# architecture guard dropped), as OpenWrt's package build does; those of miniupnpd and
# luci-app-upnp carry the relations their packages declare (docs/openwrt.md, "What the miniupnpd
# package installs"). Every package is built with dpkg-deb and installed into a scratch root with
# `dpkg --root`. As a control, the same steps with rupnpd's former metadata (PROVIDES:=miniupnpd)
# must let luci-app-upnp in, so the test can fail.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() {
	echo "FAIL $1"
	[ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/     /'
	failed=$((failed + 1))
}

for tool in dpkg dpkg-deb dpkg-query; do
	command -v "$tool" >/dev/null || { echo "FAIL $tool is missing"; exit 1; }
done

# mk_value <Makefile> <VAR> [define-block]: the value of VAR:= (inside the block, when given).
mk_value() {
	if [ -n "${3:-}" ]; then
		sed -n "/^define ${3//\//\\/}\$/,/^endef\$/p" "$1"
	else
		cat "$1"
	fi | sed -n "s/^[[:space:]]*$2:=//p" | head -n 1
}

# The `+pkg` dependencies of an OpenWrt DEPENDS value, comma-separated.
depends_of() {
	local deps=() w
	for w in $1; do
		case "$w" in
			+*) deps+=("${w#+}") ;;
		esac
	done
	local IFS=,
	echo "${deps[*]}"
}

# A space-separated list, comma-separated.
commas() {
	local IFS=' '
	# shellcheck disable=SC2086
	set -- $1
	IFS=,
	echo "$*"
}

# build <name> <Depends> <Provides> <Conflicts> [file]: a .deb in $work/debs/<set>/.
build() {
	local name=$1 dir="$work/src/$set/$1"
	mkdir -p "$dir/DEBIAN" "$work/debs/$set"
	{
		echo "Package: $name"
		echo "Version: 1.0"
		echo "Architecture: all"
		echo "Maintainer: rupnpd tests <tests@invalid>"
		[ -n "$2" ] && echo "Depends: $2"
		[ -n "$3" ] && echo "Provides: $3"
		[ -n "$4" ] && echo "Conflicts: $4"
		echo "Description: $name (package relations only)"
	} >"$dir/DEBIAN/control"
	if [ -n "${5:-}" ]; then
		mkdir -p "$dir$(dirname "$5")"
		echo "# $name" >"$dir$5"
	fi
	dpkg-deb --root-owner-group -Zgzip --build "$dir" "$work/debs/$set/$name.deb" >/dev/null
}

# packages <set> <rupnpd Makefile>: every package of one scenario.
packages() {
	set=$1
	local mk=$2 luci="$root/openwrt-pkg/luci-app-rupnpd/Makefile"
	build rupnpd "$(depends_of "$(mk_value "$mk" DEPENDS Package/rupnpd)")" \
		"$(commas "$(mk_value "$mk" PROVIDES Package/rupnpd)")" \
		"$(commas "$(mk_value "$mk" CONFLICTS Package/rupnpd)")" /etc/config/upnpd
	build luci-app-rupnpd "$(depends_of "$(mk_value "$luci" LUCI_DEPENDS)")" "" ""
	build miniupnpd-nftables "" miniupnpd miniupnpd-iptables /etc/config/upnpd
	build miniupnpd-iptables "" miniupnpd miniupnpd-nftables /etc/config/upnpd
	build luci-app-upnp "luci-base,miniupnpd,rpcd-mod-ucode" "" ""
	for p in luci-base rpcd-mod-ucode nftables-json kmod-nft-nat; do build "$p" "" "" ""; done
}

# A fresh scratch root for `dpkg --root`.
new_root() {
	r="$work/root.$1"
	rm -rf "$r"
	mkdir -p "$r/var/lib/dpkg/info" "$r/var/lib/dpkg/updates"
	: >"$r/var/lib/dpkg/status"
	: >"$r/var/lib/dpkg/available"
}
dpkg_in() { dpkg --root="$r" --log="$work/dpkg.log" --force-script-chrootless "$@" 2>&1; }
installed() { [ "$(dpkg-query --root="$r" -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }
debs() { local d; for d in "$@"; do echo "$work/debs/$set/$d.deb"; done; }

base="luci-base rpcd-mod-ucode nftables-json kmod-nft-nat"

packages new "$root/openwrt-pkg/rupnpd/Makefile"
# shellcheck disable=SC2046,SC2086 # word lists on purpose
{
	new_root a
	out=$(dpkg_in -i $(debs $base rupnpd luci-app-rupnpd))
	if installed rupnpd && installed luci-app-rupnpd; then ok "rupnpd and luci-app-rupnpd install"; else bad "rupnpd and luci-app-rupnpd install" "$out"; fi

	out=$(dpkg_in -i $(debs luci-app-upnp))
	if ! installed luci-app-upnp && grep -q 'rupnpd conflicts with luci-app-upnp' <<<"$out"; then
		ok "luci-app-upnp over rupnpd: refused (rupnpd's conflict)"
	else
		bad "luci-app-upnp over rupnpd: refused (rupnpd's conflict)" "$out"
	fi
	dpkg_in --purge luci-app-upnp >/dev/null

	out=$(dpkg_in -i $(debs luci-app-upnp miniupnpd-nftables))
	if ! installed luci-app-upnp && ! installed miniupnpd-nftables && installed rupnpd &&
		grep -q 'conflict' <<<"$out"; then
		ok "luci-app-upnp with its miniupnpd over rupnpd: refused (conflict), rupnpd stays"
	else
		bad "luci-app-upnp with its miniupnpd over rupnpd: refused (conflict), rupnpd stays" "$out"
	fi
	dpkg_in --purge luci-app-upnp miniupnpd-nftables >/dev/null

	new_root b
	dpkg_in -i $(debs $base miniupnpd-nftables luci-app-upnp) >/dev/null
	out=$(dpkg_in -i $(debs rupnpd))
	if ! installed rupnpd && installed luci-app-upnp && grep -q 'conflict' <<<"$out"; then
		ok "rupnpd over miniupnpd and luci-app-upnp: refused until they are removed"
	else
		bad "rupnpd over miniupnpd and luci-app-upnp: refused until they are removed" "$out"
	fi
	dpkg_in --purge luci-app-upnp miniupnpd-nftables >/dev/null
	out=$(dpkg_in -i $(debs rupnpd))
	if installed rupnpd; then ok "rupnpd installs once they are removed (README)"; else bad "rupnpd installs once they are removed (README)" "$out"; fi
}

# As opkg checks it: only the conflicts of the package being installed count, so rupnpd's own
# are ignored here; luci-app-upnp is still refused, because nothing installed provides miniupnpd.
sed -e 's/^\([[:space:]]*\)CONFLICTS:=.*/\1CONFLICTS:=/' "$root/openwrt-pkg/rupnpd/Makefile" >"$work/Makefile.opkg"
packages opkg "$work/Makefile.opkg"
# shellcheck disable=SC2046,SC2086 # word lists on purpose
{
	new_root o
	dpkg_in -i $(debs $base rupnpd) >/dev/null
	out=$(dpkg_in -i $(debs luci-app-upnp))
	if ! installed luci-app-upnp && grep -q 'luci-app-upnp depends on miniupnpd' <<<"$out"; then
		ok "luci-app-upnp over rupnpd, rupnpd's conflicts aside (opkg): refused, nothing provides miniupnpd"
	else
		bad "luci-app-upnp over rupnpd, rupnpd's conflicts aside (opkg): refused, nothing provides miniupnpd" "$out"
	fi
}

# Control: rupnpd's former metadata let luci-app-upnp in.
sed -e 's/^\([[:space:]]*\)CONFLICTS:=.*/\1PROVIDES:=miniupnpd\n\1CONFLICTS:=miniupnpd-nftables miniupnpd-iptables/' \
	"$root/openwrt-pkg/rupnpd/Makefile" >"$work/Makefile.old"
packages old "$work/Makefile.old"
# shellcheck disable=SC2046,SC2086 # word lists on purpose
{
	new_root c
	dpkg_in -i $(debs $base rupnpd) >/dev/null
	out=$(dpkg_in -i $(debs luci-app-upnp))
	if installed luci-app-upnp; then
		ok "control: with PROVIDES:=miniupnpd, luci-app-upnp installed over rupnpd (the bug this guards)"
	else
		bad "control: with PROVIDES:=miniupnpd, luci-app-upnp installed over rupnpd (the bug this guards)" "$out"
	fi
}

echo "package relation tests (dpkg $(dpkg-query -W -f='${Version}' dpkg)): $passed passed, $failed failed"
[ "$failed" = 0 ]
