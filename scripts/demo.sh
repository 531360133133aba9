#!/bin/sh
# The demo: rupnpd doing its job inside three network namespaces with real
# clients. A LAN host discovers the router over SSDP with upnpc, reads its
# status, adds, lists and deletes mappings, and a WAN host connects through
# a mapping to a server on the LAN host; natpmpc does the same over NAT-PMP.
# Everything it creates is removed on every exit path, Ctrl-C included.
#
# Run as root on Debian 12: sh scripts/demo.sh
set -eu
cd "$(dirname "$0")/.."

sh scripts/deps.sh
echo "demo: building rupnpd (release)"
cargo build --release --locked --quiet
BIN=$PWD/target/release/rupnpd

BED=rupnpd-demo-
. scripts/netns.sh
WORK=$(mktemp -d /tmp/rupnpd-demo.XXXXXX)
DAEMON=""

cleanup() {
	trap - EXIT INT TERM
	if [ -n "$DAEMON" ]; then
		kill -TERM "$DAEMON" 2>/dev/null || true
		wait "$DAEMON" 2>/dev/null || true
	fi
	bed_down
	rm -rf "$WORK"
	echo "demo: cleaned up (namespaces removed)"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
lan() { ip netns exec "$C" "$@"; }
wan() { ip netns exec "$W" "$@"; }

say "Three namespaces: LAN host $C (192.168.77.2), router $R, WAN host $W (192.0.3.2)"
bed_up
bed_fw4

mkdir -p "$WORK/config"
cat > "$WORK/config/upnpd" <<CONF
config upnpd 'config'
	option enabled '1'
	option enable_upnp '1'
	option enable_natpmp '1'
	option secure_mode '1'
	option internal_iface 'br-lan'
	option external_iface 'eth1'
	option port '5000'
	option upnp_lease_file '$WORK/upnp.leases'

config perm_rule
	option action 'allow'
	option ext_ports '1024-65535'
	option int_addr '0.0.0.0/0'
	option int_ports '1024-65535'
	option comment 'Allow high ports'

config perm_rule
	option action 'deny'
	option ext_ports '0-65535'
	option int_addr '0.0.0.0/0'
	option int_ports '0-65535'
	option comment 'Default deny'
CONF

say "Starting rupnpd in the router namespace"
ip netns exec "$R" "$BIN" --config-dir "$WORK/config" --lan br-lan --wan eth1 --stderr >"$WORK/rupnpd.log" 2>&1 &
DAEMON=$!
for _ in $(seq 50); do
	lan curl -s -o /dev/null http://192.168.77.1:5000/rootDesc.xml && break
	sleep 0.1
done
sed 's/^/  rupnpd: /' "$WORK/rupnpd.log"

say "upnpc discovers the router over SSDP and shows its status"
lan upnpc -m c-eth0 -s | sed -n '5,20p'

U() { lan upnpc -u http://192.168.77.1:5000/rootDesc.xml "$@"; }
say "upnpc adds TCP 18080 -> 192.168.77.2:8080 and UDP 19000 -> 192.168.77.2:9000"
U -e demo-web -a 192.168.77.2 8080 18080 TCP 3600 | tail -1
U -e demo-voip -a 192.168.77.2 9000 19000 UDP 3600 | tail -1

say "upnpc lists them (GetGenericPortMappingEntry, then GetListOfPortMappings)"
U -l | sed -n '/ i protocol/,$p'
U -L | sed -n '/ i protocol/,$p'

say "The mappings in the kernel: fw4 maps with timeouts and counters"
ip netns exec "$R" nft list map inet fw4 upnp_dnat

say "A WAN host connects to 192.0.3.1:18080 and reaches the LAN host's server on 8080"
lan timeout 5 nc -l -p 8080 >"$WORK/tcp.out" &
sleep 0.3
echo "hello from the Internet over TCP" | wan timeout 3 nc -N -w 2 192.0.3.1 18080 || true
wait $! 2>/dev/null || true
printf '  LAN server received: %s\n' "$(cat "$WORK/tcp.out")"
lan timeout 5 socat -u UDP-RECV:9000 OPEN:"$WORK/udp.out",creat,trunc &
sleep 0.3
echo "hello from the Internet over UDP" | wan socat -u - UDP:192.0.3.1:19000
wait $! 2>/dev/null || true
printf '  LAN server received: %s\n' "$(cat "$WORK/udp.out")"

say "natpmpc maps TCP 7000 -> 192.168.77.2:27000 over NAT-PMP"
lan timeout 20 natpmpc -g 192.168.77.1 -a 7000 27000 tcp 600 | grep -E "Public IP|Mapped"

say "A refused request: port 22 is below the permission rules' range"
U -a 192.168.77.2 22 2222 TCP || true

say "upnpc deletes TCP 18080; natpmpc deletes TCP 7000"
U -d 18080 TCP | tail -1
lan timeout 20 natpmpc -g 192.168.77.1 -a 7000 27000 tcp 0 | grep Mapped
U -l | sed -n '/ i protocol/,$p'

say "The lease file (miniupnpd's format)"
cat "$WORK/upnp.leases" 2>/dev/null || echo "  (no lease file)"

say "What rupnpd logged"
sed 's/^/  /' "$WORK/rupnpd.log" | grep -v "^  debug" | tail -n 12
