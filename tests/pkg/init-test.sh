#!/usr/bin/env bash
# Runs the package's shell hooks against fixture UCI files with OpenWrt's procd and UCI helpers
# replaced by recording stand-ins (tests/pkg/stubs), and compares what they registered or did
# with the exact expected calls:
#   - /etc/init.d/rupnpd start, reload, stop (procd instance, params, triggers, signals),
#   - /usr/share/rupnpd/firewall.include (fw4 script include),
#   - /etc/hotplug.d/iface/50-rupnpd,
#   - /etc/uci-defaults/99-rupnpd (firewall include registration, idempotent),
#   - the package's postrm (the include removed on removal, kept on upgrade),
#     on /etc/config/firewall through a `uci` stand-in that keeps uci's file format.
# The scripts run under $PKGTEST_SH (default: busybox's ash, OpenWrt's shell, else sh).
# Prints one line per case; exits non-zero if any case fails.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
files="$root/openwrt-pkg/rupnpd/files"
stubs="$here/stubs"
fixtures="$here/fixtures"

if [ -z "${PKGTEST_SH:-}" ]; then
	if command -v busybox >/dev/null; then PKGTEST_SH="busybox sh"; else PKGTEST_SH="sh"; fi
fi
read -r -a SH <<<"$PKGTEST_SH"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Signal numbers as the shell under test spells them (USR1/USR2 differ on MIPS).
sig_usr1=$("${SH[@]}" -c 'kill -l USR1')
sig_usr2=$("${SH[@]}" -c 'kill -l USR2')
case "$sig_usr1$sig_usr2" in
	'' | *[!0-9]*)
		echo "FAIL $PKGTEST_SH cannot convert signal names (kill -l USR1); use busybox sh"
		exit 1
		;;
esac

passed=0
failed=0

# new_case <fixture>: a fresh fake root with /etc/config/upnpd = <fixture>.
new_case() {
	case_dir=$(mktemp -d "$work/case.XXXXXX")
	mkdir -p "$case_dir/etc/config" "$case_dir/etc/init.d"
	cp "$1" "$case_dir/etc/config/upnpd"
	cp "$files/rupnpd.init" "$case_dir/etc/init.d/rupnpd"
	: >"$case_dir/log"
}

# run_in_case <command...>: runs with the stand-ins, PATH fakes first; sets $rc.
run_in_case() {
	env PKGTEST_LOG="$case_dir/log" PKGTEST_CONFDIR="$case_dir/etc/config" \
		PATH="$stubs/bin:$PATH" "$@"
	rc=$?
}

init() {
	run_in_case "${SH[@]}" "$stubs/rc.common" "$case_dir/etc/init.d/rupnpd" "$@"
}

# check <name> <expected rc> <expected log>: the log, with the fake daemon's path shown as the
# real one, must equal the expected text exactly.
check() {
	local name=$1 want_rc=$2 want=$3 got
	got=$(sed "s|$stubs/bin/rupnpd|/usr/sbin/rupnpd|g" "$case_dir/log")
	if [ "$got" == "$want" ] && [ "$rc" = "$want_rc" ]; then
		echo "ok   $name"
		passed=$((passed + 1))
	else
		echo "FAIL $name (exit status $rc, expected $want_rc)"
		diff -u <(printf '%s\n' "$want") <(printf '%s\n' "$got") | sed 's/^/     /'
		failed=$((failed + 1))
	fi
}

# --- init script ------------------------------------------------------------------------------

# The one instance and the trigger a successful start registers.
instance="procd_open_instance
procd_set_param command /usr/sbin/rupnpd
procd_set_param respawn
procd_set_param stdout 1
procd_set_param stderr 1
procd_close_instance
procd_add_reload_trigger upnpd firewall
procd_close_service"

new_case "$files/upnpd.config"
PKGTEST_NFT_STRUCTURE=1 init start
check "start: shipped config, fw4 structure present" 0 "procd_open_service rupnpd
rupnpd --check-config
nft list map inet fw4 upnp_dnat
$instance"

new_case "$fixtures/upnpd.debug"
PKGTEST_NFT_STRUCTURE=0 init start
check "start: log_output 1 adds --debug; missing fw4 structure reloads fw4" 0 "procd_open_service rupnpd
rupnpd --check-config
nft list map inet fw4 upnp_dnat
logger -t rupnpd -p daemon.notice firewall has no rupnpd chains yet, reloading fw4
fw4 -q reload
procd_open_instance
procd_set_param command /usr/sbin/rupnpd
procd_append_param command --debug
procd_set_param respawn
procd_set_param stdout 1
procd_set_param stderr 1
procd_close_instance
procd_add_reload_trigger upnpd firewall
procd_close_service"

new_case "$fixtures/upnpd.nft-names"
init start
check "start: own nftables table, fw4 not consulted" 0 "procd_open_service rupnpd
rupnpd --check-config
$instance"

new_case "$files/upnpd.config"
PKGTEST_CONFIG_ERROR=$'upnpd.config.port: invalid value "70000" (expected a port 1-65535)\nupnpd.@perm_rule[0].action: invalid value "alow" (expected allow or deny)' init start
check "start: invalid config is refused and logged, triggers still registered" 1 "procd_open_service rupnpd
rupnpd --check-config
logger -t rupnpd -p daemon.err invalid configuration: upnpd.config.port: invalid value \"70000\" (expected a port 1-65535)
logger -t rupnpd -p daemon.err invalid configuration: upnpd.@perm_rule[0].action: invalid value \"alow\" (expected allow or deny)
logger -t rupnpd -p daemon.err /etc/config/upnpd is invalid, not (re)loading
procd_add_reload_trigger upnpd firewall
procd_close_service"

new_case "$files/upnpd.config"
PKGTEST_RUNNING=1 init reload
check "reload: running daemon gets SIGHUP after validation" 0 "rupnpd --check-config
procd_send_signal rupnpd * HUP"

new_case "$files/upnpd.config"
PKGTEST_RUNNING=1 PKGTEST_CONFIG_ERROR='upnpd.config.port: invalid value "x"' init reload
check "reload: invalid config keeps the running daemon as it is" 1 "rupnpd --check-config
logger -t rupnpd -p daemon.err invalid configuration: upnpd.config.port: invalid value \"x\"
logger -t rupnpd -p daemon.err /etc/config/upnpd is invalid, not (re)loading"

new_case "$files/upnpd.config"
PKGTEST_RUNNING=0 PKGTEST_NFT_STRUCTURE=1 init reload
check "reload: daemon not running (config was invalid at start) starts it" 0 "procd_open_service rupnpd
rupnpd --check-config
nft list map inet fw4 upnp_dnat
$instance"

new_case "$files/upnpd.config"
PKGTEST_RUNNING=1 init stop
check "stop: running daemon cleans up after itself on SIGTERM" 0 "procd_kill rupnpd"

new_case "$fixtures/upnpd.nft-names"
PKGTEST_RUNNING=0 init stop
check "stop: dead daemon, chains/maps/sets flushed (configured names)" 0 "nft flush chain inet upnpd fwd
nft flush chain inet upnpd pre
nft flush chain inet upnpd post
nft flush map inet upnpd upnp_dnat
nft flush map inet upnpd upnp_dnat_rh
nft flush map inet upnpd upnp_snat
nft flush set inet upnpd upnp_fwd
nft flush set inet upnpd upnp_extaddr
nft flush set inet upnpd upnp_pin6
nft flush set inet upnpd upnp_pin6_h
nft flush set inet upnpd upnp_pin6_p
nft flush set inet upnpd upnp_pin6_hp
nft flush set inet upnpd upnp_alive
procd_kill rupnpd"

# --- fw4 script include -----------------------------------------------------------------------

new_case "$files/upnpd.config"
# fw4 sources script includes with `sh -c '. <path>'`.
run_in_case "${SH[@]}" -c ". '$files/firewall.include'; echo after >>\"\$PKGTEST_LOG\""
check "firewall.include: SIGUSR2 through procd, sourcing shell goes on" 0 "ubus -t 5 call service signal {\"name\":\"rupnpd\",\"signal\":$sig_usr2}
after"

# --- hotplug ----------------------------------------------------------------------------------

# hotplug-call sources /lib/functions.sh, then each script, with the event in the environment.
hotplug() {
	run_in_case env "$@" "${SH[@]}" -c ". '$stubs/functions.sh'; . '$files/rupnpd.hotplug'"
}
usr1="ubus -t 5 call service signal {\"name\":\"rupnpd\",\"signal\":$sig_usr1}"

new_case "$files/upnpd.config"
hotplug ACTION=ifup INTERFACE=wan
check "hotplug: ifup of a non-LAN interface, WAN not configured: SIGUSR1" 0 "$usr1"

new_case "$files/upnpd.config"
hotplug ACTION=ifup INTERFACE=lan
check "hotplug: ifup of the LAN: nothing" 0 ""

new_case "$fixtures/upnpd.debug"
hotplug ACTION=ifupdate IFUPDATE_ADDRESSES=1 INTERFACE=guest
check "hotplug: address update of a second LAN: nothing" 0 ""

new_case "$fixtures/upnpd.wan-set"
hotplug ACTION=ifupdate IFUPDATE_ADDRESSES=1 INTERFACE=wan
check "hotplug: address update of the configured WAN: SIGUSR1" 0 "$usr1"

new_case "$fixtures/upnpd.wan-set"
hotplug ACTION=ifup INTERFACE=vpn
check "hotplug: ifup of another interface when the WAN is configured: nothing" 0 ""

new_case "$fixtures/upnpd.wan-set"
hotplug ACTION=ifupdate IFUPDATE_ROUTES=1 INTERFACE=wan
check "hotplug: route-only update: nothing" 0 ""

new_case "$files/upnpd.config"
hotplug ACTION=ifdown INTERFACE=wan
check "hotplug: ifdown: nothing" 0 ""

# --- uci-defaults and postrm, on /etc/config/firewall in uci's file format ------------------------
#
# The `uci` stand-in (stubs/bin/uci) reads and writes packages as uci does: staged changes, the
# file written at commit in uci's export layout. fixtures/firewall is a firewall package as uci
# writes it. The package's postrm is taken from openwrt-pkg/rupnpd/Makefile (make's `$$` undone).

postrm="$work/postrm"
sed -n '/^define Package\/rupnpd\/postrm$/,/^endef$/p' "$root/openwrt-pkg/rupnpd/Makefile" |
	sed -e '1d' -e '$d' -e 's/\$\$/$/g' >"$postrm"
if [ "$(head -n 1 "$postrm")" != '#!/bin/sh' ]; then
	echo "FAIL no Package/rupnpd/postrm in the Makefile"
	failed=$((failed + 1))
fi
if command -v shellcheck >/dev/null; then
	if shellcheck -s sh "$postrm"; then
		echo "ok   postrm passes shellcheck (POSIX sh)"
		passed=$((passed + 1))
	else
		echo "FAIL postrm: shellcheck"
		failed=$((failed + 1))
	fi
fi

include_batch="uci set firewall.rupnpd=include
uci set firewall.rupnpd.type=script
uci set firewall.rupnpd.path=/usr/share/rupnpd/firewall.include
uci set firewall.rupnpd.fw4_compatible=1
uci commit firewall"
include_section="
config include 'rupnpd'
	option type 'script'
	option path '/usr/share/rupnpd/firewall.include'
	option fw4_compatible '1'
"
default_firewall=$(cat "$fixtures/firewall")

# firewall_case [extra text appended to the default firewall]: a case whose
# /etc/config/firewall is the default one plus the extra text.
firewall_case() {
	new_case "$files/upnpd.config"
	# As uci writes it: the sections, then one empty line.
	printf '%s\n%s\n' "$default_firewall" "${1:-}" >"$case_dir/etc/config/firewall"
}
# check_firewall <name> <expected file content>: the committed file, nothing left staged.
check_firewall() {
	{
		echo "--- /etc/config/firewall"
		cat "$case_dir/etc/config/firewall"
		[ -e "$case_dir/etc/config/.staged/firewall" ] && echo "(uncommitted changes)"
	} >>"$case_dir/log"
	check "$1" 0 "$(printf '%s' "$2")"
}

firewall_case
run_in_case "${SH[@]}" "$files/rupnpd.uci-defaults"
run_in_case "${SH[@]}" "$files/rupnpd.uci-defaults"
check_firewall "uci-defaults: registers the script include, twice = once" "$include_batch
$include_batch
--- /etc/config/firewall
$default_firewall
$include_section"

firewall_case "
config include 'rupnpd'
	option enabled '0'
"
run_in_case "${SH[@]}" "$files/rupnpd.uci-defaults"
check_firewall "uci-defaults: an include the user disabled stays disabled" "$include_batch
--- /etc/config/firewall
$default_firewall

config include 'rupnpd'
	option enabled '0'
	option type 'script'
	option path '/usr/share/rupnpd/firewall.include'
	option fw4_compatible '1'
"

firewall_case "
config include 'miniupnpd'
	option type 'script'
	option path '/usr/share/miniupnpd/firewall.include'
"
run_in_case "${SH[@]}" "$files/rupnpd.uci-defaults"
check_firewall "uci-defaults: drops miniupnpd's orphaned fw3 include" "$include_batch
uci delete firewall.miniupnpd
uci commit firewall
--- /etc/config/firewall
$default_firewall
$include_section"

# Removal (opkg: `postrm remove`; apk: post-deinstall with the old version).
for arg in remove 0.1.0-r1; do
	firewall_case "$include_section"
	run_in_case "${SH[@]}" "$postrm" "$arg"
	check_firewall "postrm $arg: removal deletes firewall.rupnpd and reloads fw4" "uci delete firewall.rupnpd
uci commit firewall
fw4 -q reload
--- /etc/config/firewall
$default_firewall"
done

firewall_case "$include_section"
run_in_case "${SH[@]}" "$postrm" upgrade 0.2.0-r1
check_firewall "postrm upgrade (opkg's old package during an upgrade): the include stays" "--- /etc/config/firewall
$default_firewall
$include_section"

firewall_case "$include_section"
IPKG_INSTROOT=/build/root run_in_case "${SH[@]}" "$postrm" remove
check_firewall "postrm while building an image (IPKG_INSTROOT): nothing" "--- /etc/config/firewall
$default_firewall
$include_section"

firewall_case "
config include 'rupnpd'
	option type 'script'
	option path '/etc/my-own-include.sh'
"
run_in_case "${SH[@]}" "$postrm" remove
check_firewall "postrm: a section the user pointed elsewhere is left alone" "--- /etc/config/firewall
$default_firewall

config include 'rupnpd'
	option type 'script'
	option path '/etc/my-own-include.sh'
"

firewall_case
run_in_case "${SH[@]}" "$postrm" remove
check_firewall "postrm: no include, nothing to do" "--- /etc/config/firewall
$default_firewall"

echo "init/hotplug/include tests ($PKGTEST_SH): $passed passed, $failed failed"
[ "$failed" = 0 ]
