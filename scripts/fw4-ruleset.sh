#!/bin/sh
# Prints the ruleset firewall4 loads on the router of the shell beds (scripts/netns.sh,
# bench/compare.sh): firewall4's recorded `fw4 print` of its default configuration with rupnpd's
# include lines placed where fw4 places them (tests/fixtures/fw4/derived/, kept current by
# tests/fw4.rs), the include files read from this checkout, no user include files, and the
# recorded subnets replaced by the bed's. The router's devices carry the recorded names (br-lan,
# eth1). Loading it again over a running table is a `fw4 reload`.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
inc=$root/openwrt-pkg/rupnpd/files/nftables.d
sed -e "s#include \"/usr/share/nftables.d/#include \"$inc/#" \
	-e '\#include "/etc/nftables.d/\*\.nft"#d' \
	-e 's#192\.168\.1\.0/24#192.168.77.0/24#g' \
	-e 's#192\.0\.4\.0/24#192.0.3.0/24#g' \
	"$root/tests/fixtures/fw4/derived/fw4-print-default-with-includes.nft"
