#!/bin/sh
# The three-namespace test bed (docs/testbed.md), as tests/common/mod.rs builds it:
#
#   $C (LAN host)                 $R (router, runs the daemon)            $W (WAN host)
#   c-eth0 192.168.77.2/24 --veth-- br-lan 192.168.77.1/24 | eth1 192.0.3.1/24 --veth-- w-eth0 192.0.3.2/24
#
# The router's devices carry the names of the router firewall4's ruleset was recorded on, so
# that ruleset loads as printed (bed_fw4).
#
# Source this file, set BED (a short prefix, default "igd") and call
# bed_up / bed_down. Namespaces are named ${BED}c, ${BED}r, ${BED}w.
# Nothing here touches the host's own interfaces, routes or ruleset.

BED=${BED:-igd}
C=${BED}c
R=${BED}r
W=${BED}w

bed_down() {
	for ns in "$C" "$R" "$W"; do
		ip netns del "$ns" 2>/dev/null || true
	done
}

bed_up() {
	bed_down
	for ns in "$C" "$R" "$W"; do
		ip netns add "$ns" || return 1
		ip -n "$ns" link set lo up
	done
	ip link add c-eth0 netns "$C" type veth peer name br-lan netns "$R" || return 1
	ip link add w-eth0 netns "$W" type veth peer name eth1 netns "$R" || return 1
	ip -n "$C" addr add 192.168.77.2/24 dev c-eth0
	ip -n "$R" addr add 192.168.77.1/24 dev br-lan
	ip -n "$R" addr add 192.0.3.1/24 dev eth1
	ip -n "$W" addr add 192.0.3.2/24 dev w-eth0
	ip -n "$C" link set c-eth0 up
	ip -n "$R" link set br-lan up
	ip -n "$R" link set eth1 up
	ip -n "$W" link set w-eth0 up
	ip -n "$C" route add default via 192.168.77.1
	# SSDP replies and M-SEARCH go to the multicast group over the veth.
	ip -n "$C" route add 239.0.0.0/8 dev c-eth0 2>/dev/null || true
	ip netns exec "$R" sysctl -qw net.ipv4.ip_forward=1
	ip netns exec "$R" sysctl -qw net.ipv4.conf.all.route_localnet=0
}

# Loads firewall4's ruleset (scripts/fw4-ruleset.sh) into the router namespace (again = a
# `fw4 reload`). Run from the repository's top directory.
bed_fw4() {
	sh scripts/fw4-ruleset.sh | ip netns exec "$R" nft -f -
}
