#!/bin/bash
# rupnpd against Debian's miniupnpd-nftables 2.3.1: the same workloads,
# the same client program, the same three-namespace bed, one daemon right
# after the other in one run. Method and results: BENCHMARKS.md.
#
# The headline table is what a router owner's client sees: requests
# shaped like libminiupnpc's (upnpc, torrent clients, games), a new TCP
# connection per request with `Connection: Close`, both daemons keeping
# their lease file on tmpfs as OpenWrt ships them, and router-sized
# socket hashes in the namespaces. rupnpd driven over one keep-alive
# connection is a second table, labelled as such.
#
#   bash bench/compare.sh            full run (N = 100, 1000, 10000; about 10-15 min)
#   bash bench/compare.sh --quick    N = 100, 1000, shorter budgets (about 3 min)
#   bash bench/compare.sh --help     every option
#   bash bench/compare.sh --daemons rupnpd --levels 1000 --workloads profile
#                                    where rupnpd's time goes (strace, perf, callgrind)
#
# Run as root on Debian 12. Installs what it needs with apt-get (without
# starting a system miniupnpd), builds rupnpd and bench/client, creates
# namespaces bench-c / bench-r / bench-w (removed on every exit path,
# Ctrl-C included), and never touches the host's interfaces, routes or
# ruleset. Results: bench/results/latest.{json,csv,md} (+ raw .jsonl and
# the daemons' logs).
# The whole script is one brace group, read to its end before anything
# runs: editing this file during a run cannot change the running one.
{
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# ---------------------------------------------------------------- options
LEVELS=100,1000,10000
CONN_LEVELS=""          # default: 0 and the largest level
K=200                   # operations per measured workload
BUDGET=30               # seconds per measured workload (at least MIN_OPS ops)
MIN_OPS=5
LIST_BUDGET=150         # seconds for one GetGenericPortMappingEntry walk
CONN_SECS=2
CONN_RUNS=5
ROUNDS=3                # rounds of each add/delete/NAT-PMP workload for rupnpd
MINI_ROUNDS=1           # the same for miniupnpd (slow: one round, time-budgeted)
AB_CYCLES=3             # rupnpd: N=0 / N=n connection-rate cycles (0 = off)
STARTUP_REPS=5
DAEMONS=rupnpd,miniupnpd
WORKLOADS=startup,soap,keepalive,pmp,list,rss,restore,conn,natpmpc,overhead
MINI_BIN=/usr/sbin/miniupnpd
LEASES=1                # both daemons keep a lease file, as OpenWrt ships them
LEASE_DIR=""            # default: a fresh directory on tmpfs (/run, else /dev/shm)
PROFILE_K=200           # requests per profiled workload
PROFILE_TOOLS=strace,perf,callgrind
MINI_SOAP_FILL_MAX=1000 # miniupnpd: fill by SOAP up to here, then direct rules
HOST_TCP_HASH=0
INSTALL=1
OUT=bench/results

usage() {
	cat <<'EOF'
usage: bash bench/compare.sh [options]
  --quick               N=100,1000, K=100, 15 s budgets, 3 startup reps, 1 s conn runs, 2 A/B cycles
  --levels A,B,C        existing-mapping counts to measure at (default 100,1000,10000; max 40000)
  --conn-levels A,B     where to measure the new-connection rate (default 0 and the largest level)
  --k N                 operations per add/delete/NAT-PMP workload (default 200)
  --budget S            stop a workload after S seconds once --min-ops were done (default 30)
  --min-ops N           (default 5)
  --list-budget S       time budget of one GetGenericPortMappingEntry walk (default 150)
  --conn-secs S         length of one connection-rate run (default 2); --conn-runs N (default 5)
  --rounds N            rounds of each add/delete/NAT-PMP workload for rupnpd (default 3);
  --mini-rounds N       the same for miniupnpd (default 1); figures are the median over rounds
  --ab-cycles N         rupnpd: alternate N=0 / N=level connection-rate runs N times (default 3, 0 = off)
  --startup-reps N      start/stop cycles for the start-up time (default 5)
  --daemons LIST        rupnpd,miniupnpd (default both)
  --workloads LIST      startup,soap,keepalive,pmp,list,rss,restore,conn,natpmpc,overhead (default
                        all of these) and profile (rupnpd only, not in the default: strace, perf and
                        callgrind of adds, deletes and the listing walk at each level, into OUT/profile)
  --miniupnpd PATH      the miniupnpd binary to compare with (default /usr/sbin/miniupnpd, Debian's
                        2.3.1; e.g. a 2.3.11 built elsewhere with the nftables backend)
  --no-lease-file       run both daemons without a lease file
  --lease-dir DIR       where the lease files go (must be tmpfs; default a fresh directory in /run or /dev/shm)
  --profile-k N         requests per profiled workload (default 200)
  --profile-tools LIST  strace,perf,callgrind (default all three; each skipped if missing)
  --mini-soap-fill N    fill miniupnpd through SOAP up to N mappings, beyond by direct rules (default 1000)
  --host-tcp-hash       keep the host-sized TCP/UDP socket hash in the namespaces (see BENCHMARKS.md)
  --no-install          do not run apt-get
  --out DIR             results directory (default bench/results)
EOF
}

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) LEVELS=100,1000; K=100; BUDGET=15; LIST_BUDGET=60; CONN_SECS=1; STARTUP_REPS=3; AB_CYCLES=2 ;;
	--levels) LEVELS=$2; shift ;;
	--conn-levels) CONN_LEVELS=$2; shift ;;
	--k) K=$2; shift ;;
	--budget) BUDGET=$2; shift ;;
	--min-ops) MIN_OPS=$2; shift ;;
	--list-budget) LIST_BUDGET=$2; shift ;;
	--conn-secs) CONN_SECS=$2; shift ;;
	--conn-runs) CONN_RUNS=$2; shift ;;
	--rounds) ROUNDS=$2; shift ;;
	--mini-rounds) MINI_ROUNDS=$2; shift ;;
	--ab-cycles) AB_CYCLES=$2; shift ;;
	--startup-reps) STARTUP_REPS=$2; shift ;;
	--daemons) DAEMONS=$2; shift ;;
	--workloads) WORKLOADS=$2; shift ;;
	--mini-soap-fill) MINI_SOAP_FILL_MAX=$2; shift ;;
	--miniupnpd) MINI_BIN=$2; shift ;;
	--no-lease-file) LEASES=0 ;;
	--lease-dir) LEASE_DIR=$2; shift ;;
	--profile-k) PROFILE_K=$2; shift ;;
	--profile-tools) PROFILE_TOOLS=$2; shift ;;
	--host-tcp-hash) HOST_TCP_HASH=1 ;;
	--no-install) INSTALL=0 ;;
	--out) OUT=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "compare.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

[ "$(id -u)" = 0 ] || { echo "compare.sh: run as root" >&2; exit 1; }
IFS=, read -r -a LEVEL_LIST <<<"$LEVELS"
for n in "${LEVEL_LIST[@]}"; do
	if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 40000 ]; then
		echo "compare.sh: bad level $n (1..40000)" >&2
		exit 2
	fi
done
MAX_LEVEL=$(printf '%s\n' "${LEVEL_LIST[@]}" | sort -n | tail -1)
[ -n "$CONN_LEVELS" ] || CONN_LEVELS="0,$MAX_LEVEL"
has() { [[ ",$1," == *",$2,"* ]]; }

# Ports: fill mappings 10000.. (TCP, internal port = external port),
# measured adds 50000.., NAT-PMP (UDP) 56000.., the connection probe
# 61000, the natpmpc sanity run 62000.
FILL_BASE=10000
ADD_BASE=50000
PMP_BASE=56000
PROBE_PORT=61000
NATPMPC_PORT=62000

NS_C=bench-c
NS_R=bench-r
NS_W=bench-w
NS_P=bench-p
LAN_IP=192.168.77.1
CLIENT_IP=192.168.77.2
WAN_IP=192.0.3.1
HTTP=$LAN_IP:5000

WORK=$(mktemp -d /tmp/rupnpd-bench.XXXXXX)
RAW=$WORK/raw.jsonl
: >"$RAW"
RUPNPD_PID=""
RUPNPD_WRAP=()          # a command rupnpd runs under (valgrind while profiling)
READY_MS=15000          # how long a start may take until the description is served
MINI_PIDFILE=$WORK/miniupnpd.pid
CREATED_POLICY=0
LOCK_FD=""
CREATED_LEASE_DIR=0
LEASE_FILE=""

say() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

# ---------------------------------------------------------------- cleanup
alive() {
	# A zombie (exited, not yet reaped) is not alive.
	[ -n "${1:-}" ] && [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

mini_pid() {
	if [ -s "$MINI_PIDFILE" ]; then cat "$MINI_PIDFILE"; fi
}

bed_down() {
	for ns in "$NS_C" "$NS_R" "$NS_W" "$NS_P"; do
		ip netns del "$ns" 2>/dev/null || true
	done
}

# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	if alive "$RUPNPD_PID"; then
		kill -TERM "$RUPNPD_PID" 2>/dev/null
		for _ in $(seq 50); do alive "$RUPNPD_PID" || break; sleep 0.1; done
		alive "$RUPNPD_PID" && kill -KILL "$RUPNPD_PID" 2>/dev/null
		wait "$RUPNPD_PID" 2>/dev/null
	fi
	local mp
	mp=$(mini_pid)
	if alive "$mp"; then
		kill -TERM "$mp" 2>/dev/null
		for _ in $(seq 50); do alive "$mp" || break; sleep 0.1; done
		alive "$mp" && kill -KILL "$mp" 2>/dev/null
	fi
	bed_down
	[ "$CREATED_POLICY" = 1 ] && rm -f /usr/sbin/policy-rc.d
	[ "$CREATED_LEASE_DIR" = 1 ] && rm -rf "$LEASE_DIR"
	if [ -d "$WORK" ]; then
		mkdir -p "$OUT/logs"
		cp "$WORK"/*.log "$OUT/logs/" 2>/dev/null
		rm -rf "$WORK"
	fi
	[ "$rc" -ne 0 ] && say "stopped (exit $rc); namespaces removed, daemons stopped"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One run at a time: the namespace names are fixed.
exec {LOCK_FD}>/run/rupnpd-bench.lock
flock -n "$LOCK_FD" || { echo "compare.sh: another run is in progress" >&2; exit 1; }

# Lease files on tmpfs, as OpenWrt keeps them in /var/run (a link to
# /tmp/run, tmpfs): both daemons write theirs on every change.
if [ "$LEASES" = 1 ]; then
	if [ -z "$LEASE_DIR" ]; then
		for base in /run /dev/shm; do
			if [ "$(stat -f -c %T "$base" 2>/dev/null)" = tmpfs ]; then
				LEASE_DIR=$(mktemp -d "$base/rupnpd-bench-leases.XXXXXX")
				CREATED_LEASE_DIR=1
				break
			fi
		done
		[ -n "$LEASE_DIR" ] || { echo "compare.sh: neither /run nor /dev/shm is tmpfs; give --lease-dir" >&2; exit 1; }
	fi
	if [ "$(stat -f -c %T "$LEASE_DIR" 2>/dev/null)" != tmpfs ]; then
		echo "compare.sh: --lease-dir $LEASE_DIR is not on tmpfs" >&2
		exit 1
	fi
	LEASE_FILE=$LEASE_DIR/miniupnpd.leases
fi

# ---------------------------------------------------------------- install, build
if [ "$INSTALL" = 1 ]; then
	PKGS="miniupnpd-nftables miniupnpc natpmpc nftables libnftables1 iproute2 util-linux procps python3 curl"
	has "$WORKLOADS" profile && PKGS="$PKGS strace linux-perf valgrind"
	missing=""
	for p in $PKGS; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		say "installing$missing"
		# No system miniupnpd may start: policy-rc.d refuses every service
		# start during the install (Debian policy, invoke-rc.d). The
		# miniupnpd-nftables package ships no init script or unit anyway.
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
			chmod 755 /usr/sbin/policy-rc.d
			CREATED_POLICY=1
		fi
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		# shellcheck disable=SC2086
		apt-get install -y -qq --no-install-recommends $missing >/dev/null
		if [ "$CREATED_POLICY" = 1 ]; then rm -f /usr/sbin/policy-rc.d; CREATED_POLICY=0; fi
	fi
fi
for t in ip nft nsenter unshare upnpc natpmpc python3 cargo; do
	command -v "$t" >/dev/null || { echo "compare.sh: $t missing" >&2; exit 1; }
done
has "$DAEMONS" miniupnpd && { [ -x "$MINI_BIN" ] || { echo "compare.sh: $MINI_BIN missing" >&2; exit 1; }; }
if [ -s /run/miniupnpd.pid ] && alive "$(cat /run/miniupnpd.pid)"; then
	say "note: a system miniupnpd is running (pid $(cat /run/miniupnpd.pid)); it is not in our namespaces and is left alone"
fi

say "building rupnpd and bench/client (release)"
cargo build --release --locked --quiet
cargo build --release --locked --quiet --manifest-path bench/client/Cargo.toml
RUPNPD=$ROOT/target/release/rupnpd
BC=$ROOT/bench/client/target/release/bench-client
if has "$WORKLOADS" profile && has "$DAEMONS" rupnpd; then
	# The same release build with its symbols and line tables kept, for
	# perf and callgrind to name functions (the code is the same).
	say "building rupnpd with symbols for the profile (target/bench-profile)"
	CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
		cargo build --release --locked --quiet --target-dir "$ROOT/target/bench-profile"
	RUPNPD=$ROOT/target/bench-profile/release/rupnpd
fi
mkdir -p "$OUT"

# ---------------------------------------------------------------- records
# One JSON object per line: daemon, n (null when not per-level), name,
# status (ok | crashed | failed | truncated | lost | info) and the data.
rec() { # daemon n name status json
	printf '{"daemon":"%s","n":%s,"name":"%s","status":"%s","data":%s}\n' "$1" "${2:-null}" "$3" "$4" "${5:-null}" >>"$RAW"
}
jget() { # json key -> value
	python3 -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print("" if v is None else v)' "$1" "$2"
}
in_c() { ip netns exec "$NS_C" "$@"; }
in_r() { ip netns exec "$NS_R" "$@"; }

rss_json() { # pid
	awk '/^VmRSS/{r=$2} /^RssAnon/{a=$2} /^RssFile/{f=$2} /^VmHWM/{h=$2}
		END{printf "{\"rss_kb\":%d,\"anon_kb\":%d,\"file_kb\":%d,\"hwm_kb\":%d}", r, a, f, h}' "/proc/$1/status"
}
# Records the RSS figures and keeps the daemon's smaps beside its log
# (bench/results/logs/smaps-DAEMON-nN.log): where the pages are, per mapping.
rss_rec() { # daemon n name
	local pid
	pid=$(daemon_pid "$1")
	rec "$1" "$2" "$3" ok "$(rss_json "$pid")"
	cp "/proc/$pid/smaps" "$WORK/smaps-$1-n$2${3#rss}.log" 2>/dev/null || true
}

# ---------------------------------------------------------------- the bed
mkns() {
	if [ "$HOST_TCP_HASH" = 1 ]; then
		ip netns add "$1"
	else
		# Created from inside $NS_P, whose tcp_child_ehash_entries /
		# udp_child_hash_entries give the new namespace a router-sized
		# socket hash of its own (Linux >= 6.1 / 6.2) instead of a share
		# of the host's 262144-bucket table: miniupnpd reads
		# /proc/net/tcp on every add, and walking a host-sized table costs
		# ~10 ms that no router pays. Only our own namespaces are affected.
		touch "/run/netns/$1"
		nsenter --net="/run/netns/$NS_P" unshare --net="/run/netns/$1" true
	fi
	ip -n "$1" link set lo up
}

bed_up() {
	bed_down
	if [ "$HOST_TCP_HASH" = 0 ]; then
		mkdir -p /run/netns
		ip netns add "$NS_P"
		ip netns exec "$NS_P" sysctl -qw net.ipv4.tcp_child_ehash_entries=1024
		ip netns exec "$NS_P" sysctl -qw net.ipv4.udp_child_hash_entries=256 2>/dev/null || true
	fi
	for ns in "$NS_C" "$NS_R" "$NS_W"; do mkns "$ns"; done
	[ "$HOST_TCP_HASH" = 0 ] && ip netns del "$NS_P"
	ip link add c-eth0 netns "$NS_C" type veth peer name br-lan netns "$NS_R"
	ip link add w-eth0 netns "$NS_W" type veth peer name eth1 netns "$NS_R"
	ip -n "$NS_C" addr add $CLIENT_IP/24 dev c-eth0
	ip -n "$NS_R" addr add $LAN_IP/24 dev br-lan
	ip -n "$NS_R" addr add $WAN_IP/24 dev eth1
	ip -n "$NS_W" addr add 192.0.3.2/24 dev w-eth0
	ip -n "$NS_C" link set c-eth0 up
	ip -n "$NS_R" link set br-lan up
	ip -n "$NS_R" link set eth1 up
	ip -n "$NS_W" link set w-eth0 up
	ip -n "$NS_C" route add default via $LAN_IP
	ip netns exec "$NS_R" sysctl -qw net.ipv4.ip_forward=1
	# The WAN host's connect loop cycles through source ports quickly.
	ip netns exec "$NS_W" sysctl -qw net.ipv4.ip_local_port_range="1024 65000"
	sleep 0.2
}

# firewall4's recorded ruleset with rupnpd's include files (scripts/fw4-ruleset.sh); loading it
# again is a fw4 reload. fw4's SYN flood limit (`jump syn_flood`: 25 new TCP connections a second
# to the router, burst 50) is left out: it would cap both daemons' request rates at the same
# figure, and miniupnpd's ruleset has none.
FW4=$WORK/fw4.nft
sh "$ROOT/scripts/fw4-ruleset.sh" | sed '/jump syn_flood/d' >"$FW4"
MINI_NFT=$WORK/miniupnpd.nft
MINI_CONF=$WORK/miniupnpd.conf
CFG=$WORK/config
mkdir -p "$CFG"

# testbed.md §3.1, miniupnpd layout; applying it again is a firewall reload.
cat >"$MINI_NFT" <<'EOF'
table inet filter
flush table inet filter
table inet filter {
	chain forward {
		type filter hook forward priority 0; policy drop;
		ct state established,related accept
		jump miniupnpd
	}
	chain miniupnpd {
	}
	chain prerouting {
		type nat hook prerouting priority -100; policy accept;
		jump prerouting_miniupnpd
	}
	chain postrouting {
		type nat hook postrouting priority 100; policy accept;
		jump postrouting_miniupnpd
	}
	chain prerouting_miniupnpd {
	}
	chain postrouting_miniupnpd {
	}
}
EOF

# testbed.md §6.
cat >"$MINI_CONF" <<'EOF'
ext_ifname=eth1
listening_ip=br-lan
http_port=5000
enable_upnp=yes
enable_natpmp=yes
secure_mode=no
system_uptime=yes
notify_interval=60
uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b
allow 1024-65535 192.168.77.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
EOF
# OpenWrt's init script writes lease_file= from upnp_lease_file.
[ -n "$LEASE_FILE" ] && echo "lease_file=$LEASE_FILE" >>"$MINI_CONF"

# The same permissions for rupnpd, with the table limits raised, and
# the lease file as OpenWrt's /etc/config/upnpd names it.
cat >"$CFG/upnpd" <<EOF
config upnpd 'config'
	option enabled '1'
	option enable_upnp '1'
	option enable_natpmp '1'
	option secure_mode '0'
	option internal_iface 'br-lan'
	option external_iface 'eth1'
	option port '5000'
	option notify_interval '60'
	option max_mappings '65535'
	option max_mappings_per_client '65535'
$([ -n "$LEASE_FILE" ] && printf "\toption upnp_lease_file '%s'" "$LEASE_FILE")

config perm_rule
	option action 'allow'
	option ext_ports '1024-65535'
	option int_addr '192.168.77.0/24'
	option int_ports '1024-65535'

config perm_rule
	option action 'deny'
	option ext_ports '0-65535'
	option int_addr '0.0.0.0/0'
	option int_ports '0-65535'
EOF

load_ruleset() { # daemon
	case $1 in
	rupnpd) in_r nft -f "$FW4" ;;
	miniupnpd) in_r nft -f "$MINI_NFT" ;;
	esac
}

# ---------------------------------------------------------------- daemons
# wait-ready polls before the daemon starts; t0 is taken by the shell
# right before the spawn ($EPOCHREALTIME, no fork), so the figure includes
# `ip netns exec` (measured separately as netns_exec).
start_daemon() { # daemon log; sets STARTUP_MS (time to serve the description)
	local d=$1 log=$2 waitout=$WORK/ready.json
	in_c "$BC" wait-ready --addr "$HTTP" --timeout-ms "$READY_MS" >"$waitout" 2>>"$WORK/client.log" &
	local waiter=$!
	sleep 0.3
	local t0=$EPOCHREALTIME
	case $d in
	rupnpd)
		ip netns exec "$NS_R" "${RUPNPD_WRAP[@]}" "$RUPNPD" --config-dir "$CFG" --lan br-lan --wan eth1 --stderr >>"$log" 2>&1 &
		RUPNPD_PID=$!
		;;
	miniupnpd)
		rm -f "$MINI_PIDFILE"
		# It forks; the parent exits once the child is set up.
		ip netns exec "$NS_R" "$MINI_BIN" -f "$MINI_CONF" -P "$MINI_PIDFILE" >>"$log" 2>&1
		;;
	esac
	if ! wait "$waiter"; then
		say "$d did not serve its description"
		return 1
	fi
	if [ "$d" = miniupnpd ]; then
		for _ in $(seq 50); do [ -s "$MINI_PIDFILE" ] && break; sleep 0.02; done
	fi
	STARTUP_MS=$(python3 -c 'import json,sys; print("%.3f" % ((json.load(open(sys.argv[1]))["ready_epoch_us"] - float(sys.argv[2]) * 1e6) / 1000))' "$waitout" "$t0")
}

daemon_pid() {
	case $1 in
	rupnpd) echo "$RUPNPD_PID" ;;
	miniupnpd) mini_pid ;;
	esac
}

stop_daemon() { # daemon
	local p
	p=$(daemon_pid "$1")
	if alive "$p"; then
		kill -TERM "$p"
		for _ in $(seq 100); do alive "$p" || break; sleep 0.05; done
		if alive "$p"; then say "$1 ignored SIGTERM; killing it"; kill -KILL "$p"; fi
	fi
	[ "$1" = rupnpd ] && { wait "$RUPNPD_PID" 2>/dev/null || true; RUPNPD_PID=""; }
	[ "$1" = miniupnpd ] && rm -f "$MINI_PIDFILE"
	# miniupnpd leaves its rules behind (testbed.md §6).
	[ "$1" = miniupnpd ] && in_r nft -f "$MINI_NFT"
	return 0
}

kernel_mappings() { # daemon -> DNAT entries in the kernel
	case $1 in
	rupnpd) { in_r nft list map inet fw4 upnp_dnat | grep -o "192\.168\.77\.[0-9]* \. [0-9]*" || true; } | wc -l ;;
	miniupnpd) in_r nft list chain inet filter prerouting_miniupnpd | grep -c dnat || true ;;
	esac
}

rounds_of() { [ "$1" = rupnpd ] && echo "$ROUNDS" || echo "$MINI_ROUNDS"; }

# Runs one SOAP workload; prints its JSON (and records it).
soap() { # daemon n name mode op from count [budget] [min]
	local d=$1 n=$2 name=$3 mode=$4 op=$5 from=$6 count=$7 budget=${8:-$BUDGET} min=${9:-$MIN_OPS}
	local out status=ok
	if ! out=$(in_c "$BC" soap --addr "$HTTP" --mode "$mode" --op "$op" --from "$from" --count "$count" \
		--max-secs "$budget" --min-count "$min" 2>>"$WORK/client.log"); then
		rec "$d" "$n" "$name" failed '{"error":"client failed"}'
		echo '{}'
		return 0
	fi
	[ "$(jget "$out" truncated)" = True ] && status=truncated
	if [ "$(jget "$out" aborted)" = True ]; then
		alive "$(daemon_pid "$d")" && status=failed || status=crashed
	fi
	rec "$d" "$n" "$name" "$status" "$out"
	echo "$out"
}

restart_if_dead() { # daemon n
	if ! alive "$(daemon_pid "$1")"; then
		say "$1 is dead; restarting it (it keeps the kernel's rules as its state)"
		[ "$1" = rupnpd ] && { wait "$RUPNPD_PID" 2>/dev/null || true; }
		local held=""
		if [ "$1" = miniupnpd ] && [ -s "$LEASE_FILE" ]; then
			# miniupnpd re-adds every lease line, one full rule update
			# each, before it serves a request; its rules are still in the
			# kernel, so the file is held aside while it starts.
			held=$WORK/leases.held
			mv "$LEASE_FILE" "$held"
		fi
		start_daemon "$1" "$WORK/$1.log"
		[ -n "$held" ] && mv "$held" "$LEASE_FILE"
		rec "$1" "$2" restart info "{\"ms\":$STARTUP_MS}"
	fi
}

pmp() { # daemon n name op from count
	local d=$1 n=$2 name=$3 op=$4 from=$5 count=$6 out status=ok
	# One long wait, no retransmission: a slow daemon would otherwise get
	# duplicates and do each request several times.
	if ! out=$(in_c "$BC" pmp --gw $LAN_IP --op "$op" --proto udp --from "$from" --count "$count" \
		--rto-ms 60000 --tries 1 --max-secs "$BUDGET" --min-count "$MIN_OPS" 2>>"$WORK/client.log"); then
		rec "$d" "$n" "$name" failed '{"error":"client failed"}'
		echo '{}'
		return 0
	fi
	[ "$(jget "$out" truncated)" = True ] && status=truncated
	alive "$(daemon_pid "$d")" || status=crashed
	rec "$d" "$n" "$name" "$status" "$out"
	echo "$out"
}

conn_rate() { # daemon n
	local d=$1 n=$2
	# The probe mapping is added after the N others: with miniupnpd's rule
	# chains it is evaluated last, as a new mapping on a busy router is.
	soap "$d" "$n" probe_add close add $PROBE_PORT 1 >/dev/null
	for _ in $(seq "$CONN_RUNS"); do
		local out
		if out=$("$BC" connrate --lan-ns "$NS_C" --wan-ns "$NS_W" --listen $CLIENT_IP:$PROBE_PORT \
			--dst $WAN_IP:$PROBE_PORT --secs "$CONN_SECS" --warmup 200 2>>"$WORK/client.log"); then
			rec "$d" "$n" conn ok "$out"
		else
			rec "$d" "$n" conn failed '{"error":"no connection through the mapping"}'
		fi
	done
	soap "$d" "$n" probe_del close del $PROBE_PORT 1 >/dev/null
}

# rupnpd's per-packet cost must not depend on N; a difference of 10 % is
# below this shared machine's drift over a few minutes, so N=0 and N=n are
# also measured alternately: all n mappings deleted, runs, all re-added,
# runs, AB_CYCLES times (the probe mapping stays throughout).
conn_ab() { # n
	local n=$1
	soap rupnpd "$n" probe_add keepalive add $PROBE_PORT 1 >/dev/null
	for _ in $(seq "$AB_CYCLES"); do
		in_c "$BC" soap --addr "$HTTP" --mode keepalive --op del --from $FILL_BASE --count "$n" >/dev/null
		for _ in 1 2; do
			"$BC" connrate --lan-ns "$NS_C" --wan-ns "$NS_W" --listen $CLIENT_IP:$PROBE_PORT \
				--dst $WAN_IP:$PROBE_PORT --secs "$CONN_SECS" --warmup 200 >"$WORK/ab.json" 2>>"$WORK/client.log" &&
				rec rupnpd 0 conn_ab ok "$(cat "$WORK/ab.json")"
		done
		in_c "$BC" soap --addr "$HTTP" --mode keepalive --op add --from $FILL_BASE --count "$n" >/dev/null
		for _ in 1 2; do
			"$BC" connrate --lan-ns "$NS_C" --wan-ns "$NS_W" --listen $CLIENT_IP:$PROBE_PORT \
				--dst $WAN_IP:$PROBE_PORT --secs "$CONN_SECS" --warmup 200 >"$WORK/ab.json" 2>>"$WORK/client.log" &&
				rec rupnpd "$n" conn_ab ok "$(cat "$WORK/ab.json")"
		done
	done
	soap rupnpd "$n" probe_del keepalive del $PROBE_PORT 1 >/dev/null
	rec rupnpd "$n" kernel_count_after_ab info "{\"entries\":$(kernel_mappings rupnpd)}"
}

restore() { # rupnpd n: time until a mapping works again after a fw4 reload
	local n=$1 port=$((FILL_BASE + $1 - 1)) out before
	before=$(grep -c 'reinstalled [0-9]* mappings' "$WORK/rupnpd.log" || true)
	if out=$("$BC" restore-probe --lan-ns "$NS_C" --wan-ns "$NS_W" --listen $CLIENT_IP:$port \
		--dst $WAN_IP:$port --timeout-ms 60000 -- ip netns exec "$NS_R" nft -f "$FW4" 2>>"$WORK/client.log"); then
		local inner count
		# The daemon logs its own figure right after the transaction.
		for _ in $(seq 100); do
			[ "$(grep -c 'reinstalled [0-9]* mappings' "$WORK/rupnpd.log" || true)" -gt "$before" ] && break
			sleep 0.05
		done
		inner=$(grep -o 'reinstalled [0-9]* mappings[a-z0-9 ]* in [0-9]* ms' "$WORK/rupnpd.log" | tail -n +$((before + 1)) | tail -1 | awk '{print $(NF-1)}')
		count=$(kernel_mappings rupnpd)
		rec rupnpd "$n" restore ok "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["daemon_ms"]=int(sys.argv[2]) if sys.argv[2] else None; d["elements"]=int(sys.argv[3]); print(json.dumps(d))' "$out" "$inner" "$count")"
	else
		rec rupnpd "$n" restore failed '{"error":"mapping did not come back"}'
	fi
}

# ---------------------------------------------------------------- profile
# Where rupnpd's time goes with N mappings, on the headline path (a new
# connection per request, lease file on), for PROFILE_K adds, as many
# deletes of them, and one GetGenericPortMappingEntry walk:
#   strace -c -w -f  system calls per request and their wall time
#   strace -T -yy    every system call of 5 adds and 5 deletes, timed, fds named
#   perf record      cpu-clock samples of the daemon, kernel and user, with
#                    DWARF call graphs (this VM has no hardware counters)
#   callgrind        instructions in user space: repeatable under load
# Into OUT/profile/nN/; bench/profile_summary.py writes summary.md there.
PROF_BASE=58000

has_tool() { has "$PROFILE_TOOLS" "$1" && command -v "$2" >/dev/null; }

wait_traced() { # pid: until every thread of it has a tracer
	local t all
	for _ in $(seq 500); do
		all=1
		for t in /proc/"$1"/task/*; do
			[ "$(awk '/^TracerPid/ {print $2}' "$t/status" 2>/dev/null)" != 0 ] || { all=0; break; }
		done
		[ "$all" = 1 ] && return 0
		sleep 0.01
	done
	say "the tracer did not attach to $1"
	return 1
}

prof_ops() { # add|del|walk count: the headline client's requests
	case $1 in
	add | del) in_c "$BC" soap --addr "$HTTP" --mode close --op "$1" --from $PROF_BASE --count "$2" 2>>"$WORK/client.log" ;;
	walk) in_c "$BC" soap --addr "$HTTP" --mode close --op generic 2>>"$WORK/client.log" ;;
	esac
}

profile() { # n
	local n=$1 dir=$OUT/profile/n$1 pid=$RUPNPD_PID w tp
	rm -rf "$dir"
	mkdir -p "$dir"
	# To name the daemon's netlink sockets in the traces.
	ls -l "/proc/$pid/fd" >"$dir/fds.txt"
	in_r cat /proc/net/netlink >"$dir/netlink.txt"
	printf '{"n":%s,"k":%s,"lease_file":"%s"}\n' "$n" "$PROFILE_K" "$LEASE_FILE" >"$dir/meta.json"
	if has_tool strace strace; then
		for w in add del walk; do
			strace -c -w -f -p "$pid" -o "$dir/strace-c-$w.txt" 2>>"$WORK/profile.log" &
			tp=$!
			wait_traced "$pid" || true
			prof_ops "$w" "$PROFILE_K" >"$dir/strace-c-$w.json"
			kill -INT "$tp"
			wait "$tp" || true
		done
		for w in add del; do
			strace -f -tt -T -yy -s 80 -p "$pid" -o "$dir/strace-T-$w.txt" 2>>"$WORK/profile.log" &
			tp=$!
			wait_traced "$pid" || true
			prof_ops "$w" 5 >"$dir/strace-T-$w.json"
			kill -INT "$tp"
			wait "$tp" || true
		done
	fi
	if has_tool perf perf; then
		local ack_fd
		for w in add del walk; do
			rm -f "$WORK/perf.ctl" "$WORK/perf.ack"
			mkfifo "$WORK/perf.ctl" "$WORK/perf.ack"
			# Started disabled (-D -1); enabled, and acknowledged, right
			# before the client starts.
			perf record -q -e cpu-clock -F 10000 --call-graph dwarf,16384 -m 1024 -p "$pid" -o "$WORK/perf-$w.data" \
				-D -1 --control "fifo:$WORK/perf.ctl,$WORK/perf.ack" 2>>"$WORK/profile.log" &
			tp=$!
			exec {ack_fd}<>"$WORK/perf.ack"
			if timeout 10 sh -c "echo enable >'$WORK/perf.ctl'" && read -r -t 10 -u "$ack_fd" _; then
				prof_ops "$w" "$PROFILE_K" >"$dir/perf-$w.json"
			else
				say "perf did not start; see $WORK/profile.log"
			fi
			kill -INT "$tp"
			wait "$tp" || true
			exec {ack_fd}>&-
			perf report -i "$WORK/perf-$w.data" --stdio --no-children --sort dso,sym -g none \
				--percent-limit 0.3 >"$dir/perf-$w.txt" 2>/dev/null || true
			perf script -i "$WORK/perf-$w.data" -F period,ip,sym,dso 2>/dev/null | gzip >"$dir/perf-$w.script.gz" || true
			rm -f "$WORK/perf-$w.data"
		done
	fi
	if has_tool callgrind valgrind && command -v callgrind_control >/dev/null; then
		# Restarted under callgrind, not instrumenting until told; the lease file
		# brings its N mappings back. The count covers the requests only,
		# one dump per workload.
		stop_daemon rupnpd
		RUPNPD_WRAP=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.out")
		READY_MS=600000
		start_daemon rupnpd "$WORK/rupnpd.log"
		RUPNPD_WRAP=()
		READY_MS=15000
		pid=$RUPNPD_PID
		callgrind_control -i on "$pid" >>"$WORK/profile.log" 2>&1
		for w in add del walk; do
			prof_ops "$w" "$PROFILE_K" >"$dir/callgrind-$w.json"
			callgrind_control -d "$w" "$pid" >>"$WORK/profile.log" 2>&1
		done
		stop_daemon rupnpd
		local i=1
		for w in add del walk; do
			if [ -s "$WORK/callgrind.out.$i" ]; then
				callgrind_annotate --auto=no --threshold=100 --inclusive=yes "$WORK/callgrind.out.$i" >"$dir/callgrind-$w-inclusive.txt" 2>/dev/null || true
				callgrind_annotate --auto=no --threshold=100 --inclusive=no "$WORK/callgrind.out.$i" >"$dir/callgrind-$w-self.txt" 2>/dev/null || true
				gzip -c "$WORK/callgrind.out.$i" >"$dir/callgrind.out.$w.gz"
			fi
			i=$((i + 1))
		done
		rm -f "$WORK"/callgrind.out*
		start_daemon rupnpd "$WORK/rupnpd.log"
	fi
	python3 bench/profile_summary.py "$dir" || say "profile summary failed"
	rec rupnpd "$n" profile info "{\"dir\":\"$dir\"}"
}

# ---------------------------------------------------------------- one daemon
run_daemon() { # daemon
	local d=$1 log=$WORK/$1.log filled=0
	: >"$log"
	[ -n "$LEASE_FILE" ] && rm -f "$LEASE_FILE"
	say "== $d: building the bed"
	bed_up
	load_ruleset "$d"

	if has "$WORKLOADS" startup; then
		for _ in $(seq "$STARTUP_REPS"); do
			start_daemon "$d" "$log"
			rec "$d" "" startup ok "{\"ms\":$STARTUP_MS}"
			stop_daemon "$d"
			load_ruleset "$d"
		done
		say "$d: start-up to description measured ($STARTUP_REPS runs)"
	fi

	start_daemon "$d" "$log"
	sleep 2
	has "$WORKLOADS" rss && rss_rec "$d" 0 rss

	if has "$WORKLOADS" natpmpc; then
		local o1 o2 ok=false
		o1=$(in_c timeout 30 natpmpc -g $LAN_IP -a $NATPMPC_PORT $NATPMPC_PORT udp 3600 2>&1 || true)
		o2=$(in_c timeout 30 natpmpc -g $LAN_IP -a $NATPMPC_PORT $NATPMPC_PORT udp 0 2>&1 || true)
		if grep -q "Mapped public port $NATPMPC_PORT protocol UDP to local port $NATPMPC_PORT liftime 3600" <<<"$o1" &&
			grep -q "liftime 0" <<<"$o2"; then ok=true; fi
		rec "$d" "" natpmpc info "{\"ok\":$ok,\"map\":$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$(grep -E 'Mapped|FAILED|Public IP' <<<"$o1" | tr '\n' ' ')")}"
	fi

	if has "$WORKLOADS" conn && has "$CONN_LEVELS" 0; then
		conn_rate "$d" 0
		say "$d: connection rate at N=0 measured"
	fi

	local ifindex
	ifindex=$(in_r cat /sys/class/net/eth1/ifindex)
	for n in $(printf '%s\n' "${LEVEL_LIST[@]}" | sort -n); do
		say "$d: filling to N=$n"
		local need=$((n - filled))
		if [ "$d" = rupnpd ]; then
			soap "$d" "$n" fill keepalive add $((FILL_BASE + filled)) "$need" 0 0 >/dev/null
		else
			local by_soap=$need
			[ $((filled + by_soap)) -gt "$MINI_SOAP_FILL_MAX" ] && by_soap=$((MINI_SOAP_FILL_MAX > filled ? MINI_SOAP_FILL_MAX - filled : 0))
			[ "$by_soap" -gt 0 ] && soap "$d" "$n" fill close add $((FILL_BASE + filled)) "$by_soap" 0 0 >/dev/null
			local direct=$((need - by_soap))
			if [ "$direct" -gt 0 ]; then
				local out
				out=$(in_r "$BC" mupnp-fill --wan-ifindex "$ifindex" --from $((FILL_BASE + filled + by_soap)) \
					--count "$direct" --client $CLIENT_IP --desc bench)
				rec "$d" "$n" fill_direct info "$out"
				# Their lease lines as miniupnpd writes them (timestamp 0:
				# permanent), so that its lease file holds N lines too.
				[ -n "$LEASE_FILE" ] && awk -v from=$((FILL_BASE + filled + by_soap)) -v n="$direct" -v ip=$CLIENT_IP \
					'BEGIN { for (i = 0; i < n; i++) printf "TCP:%d:%s:%d:0:bench\n", from + i, ip, from + i }' >>"$LEASE_FILE"
			fi
		fi
		filled=$n
		rec "$d" "$n" kernel_count info "{\"entries\":$(kernel_mappings "$d")}"
		# Evidence that the daemon keeps its lease file (one line per mapping).
		[ -n "$LEASE_FILE" ] && rec "$d" "$n" lease_lines info "{\"lines\":$(wc -l 2>/dev/null <"$LEASE_FILE" || echo 0)}"
		restart_if_dead "$d" "$n"

		if has "$WORKLOADS" soap || has "$WORKLOADS" keepalive; then
			say "$d: N=$n AddPortMapping / DeletePortMapping"
			local out calls
			# Rounds of K adds then K deletes of the same ports; a short
			# round-to-round spread says the machine was quiet enough.
			for _ in $(seq "$(rounds_of "$d")"); do
				if has "$WORKLOADS" soap; then
					# The headline: a connection per request, as libminiupnpc.
					out=$(soap "$d" "$n" add close add $ADD_BASE "$K")
					calls=$(jget "$out" calls)
					soap "$d" "$n" del close del $ADD_BASE "${calls:-$K}" 0 0 >/dev/null
					restart_if_dead "$d" "$n"
				fi
				if [ "$d" = rupnpd ] && has "$WORKLOADS" keepalive; then
					# One keep-alive connection for all K (miniupnpd closes
					# every connection, so it has no such figure).
					out=$(soap "$d" "$n" add_keepalive keepalive add $ADD_BASE "$K")
					calls=$(jget "$out" calls)
					soap "$d" "$n" del_keepalive keepalive del $ADD_BASE "${calls:-$K}" 0 0 >/dev/null
				fi
			done
		fi
		if has "$WORKLOADS" pmp; then
			say "$d: N=$n NAT-PMP map / delete"
			local out calls
			for _ in $(seq "$(rounds_of "$d")"); do
				out=$(pmp "$d" "$n" pmp_map map $PMP_BASE "$K")
				calls=$(jget "$out" calls)
				pmp "$d" "$n" pmp_del del $PMP_BASE "${calls:-$K}" >/dev/null
				restart_if_dead "$d" "$n"
			done
		fi
		if has "$WORKLOADS" list; then
			say "$d: N=$n GetGenericPortMappingEntry for every index"
			soap "$d" "$n" list_generic close generic 0 0 "$LIST_BUDGET" 10 >/dev/null
			restart_if_dead "$d" "$n"
			if [ "$d" = rupnpd ] && has "$WORKLOADS" keepalive; then
				soap "$d" "$n" list_generic_keepalive keepalive generic 0 0 "$LIST_BUDGET" 10 >/dev/null
			fi
		fi
		has "$WORKLOADS" rss && rss_rec "$d" "$n" rss
		if has "$WORKLOADS" conn && has "$CONN_LEVELS" "$n"; then
			say "$d: N=$n connection rate"
			conn_rate "$d" "$n"
			if [ "$d" = rupnpd ] && [ "$AB_CYCLES" -gt 0 ] && has "$CONN_LEVELS" 0; then
				say "$d: N=0 and N=$n connection rate, alternated"
				conn_ab "$n"
			fi
		fi
		if has "$WORKLOADS" restore && [ "$d" = rupnpd ]; then
			say "$d: N=$n restore after a firewall reload"
			restore "$n"
			has "$WORKLOADS" rss && rss_rec "$d" "$n" rss_after_restore
		fi
		if has "$WORKLOADS" list; then
			# Last: miniupnpd 2.3.1 crashes here above ~135 mappings.
			say "$d: N=$n GetListOfPortMappings"
			soap "$d" "$n" list_all close listall 0 0 0 0 >/dev/null
			restart_if_dead "$d" "$n"
			if [ "$d" = rupnpd ] && has "$WORKLOADS" keepalive; then
				soap "$d" "$n" list_all_keepalive keepalive listall 0 0 0 0 >/dev/null
			fi
		fi
		if has "$WORKLOADS" profile && [ "$d" = rupnpd ]; then
			say "$d: N=$n profile (strace, perf, callgrind)"
			profile "$n"
		fi
	done

	if has "$WORKLOADS" restore && [ "$d" = miniupnpd ]; then
		local before after
		before=$(kernel_mappings miniupnpd)
		in_r nft -f "$MINI_NFT"
		sleep 2
		after=$(kernel_mappings miniupnpd)
		rec miniupnpd "$MAX_LEVEL" restore lost "{\"before\":$before,\"after_2s\":$after}"
		say "$d: after a firewall reload $after of $before mappings are back (it never restores them)"
	fi
	stop_daemon "$d"
	bed_down
}

# ---------------------------------------------------------------- run
say "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date +%s)

bed_up
# Cost of entering a namespace (part of the start-up figures).
ns_ms=$(python3 - "$NS_R" <<'EOF'
import subprocess, sys, time
v = []
for _ in range(10):
    t = time.perf_counter()
    subprocess.run(["ip", "netns", "exec", sys.argv[1], "true"], check=True)
    v.append((time.perf_counter() - t) * 1000)
v.sort()
print("%.3f" % v[len(v) // 2])
EOF
)
rec host "" netns_exec info "{\"ms\":$ns_ms}"
if has "$WORKLOADS" overhead; then
	say "client overhead against trivial local responders"
	rec client "" overhead info "$(in_c "$BC" overhead --count 5000)"
fi
bed_down

IFS=, read -r -a DAEMON_LIST <<<"$DAEMONS"
for d in "${DAEMON_LIST[@]}"; do
	case $d in rupnpd | miniupnpd) run_daemon "$d" ;; *) echo "unknown daemon $d" >&2; exit 2 ;; esac
done

END_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
META=$WORK/meta.json
python3 - "$META" <<EOF
import json, platform, subprocess, sys
def sh(c):
    try:
        return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return ""
meta = {
    "date": sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
    "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
    "cpus": int(sh("nproc") or 0),
    "mem_mb": int(sh("awk '/MemTotal/{print int(\$2/1024)}' /proc/meminfo") or 0),
    "kernel": platform.release(),
    "os": sh(". /etc/os-release && echo \$PRETTY_NAME"),
    "rupnpd": sh("git -C '$ROOT' describe --always --dirty") + " (" + sh("'$RUPNPD' --version") + ")",
    "miniupnpd": (sh("dpkg-query -W -f='\${Version}' miniupnpd-nftables") + " (Debian miniupnpd-nftables)"
                  if "$MINI_BIN" == "/usr/sbin/miniupnpd" else
                  sh("'$MINI_BIN' --version 2>&1 | head -1") + " ($MINI_BIN)"),
    "nftables": sh("dpkg-query -W -f='\${Version}' nftables"),
    "rustc": sh("rustc --version"),
    "load_start": "$START_LOAD",
    "load_end": "$END_LOAD",
    "seconds": $(($(date +%s) - START)),
    "options": {"levels": "$LEVELS", "conn_levels": "$CONN_LEVELS", "k": $K, "budget_s": $BUDGET,
                "min_ops": $MIN_OPS, "list_budget_s": $LIST_BUDGET, "conn_secs": $CONN_SECS,
                "conn_runs": $CONN_RUNS, "startup_reps": $STARTUP_REPS,
                "rounds": $ROUNDS, "mini_rounds": $MINI_ROUNDS, "ab_cycles": $AB_CYCLES,
                "mini_soap_fill_max": $MINI_SOAP_FILL_MAX, "host_tcp_hash": bool($HOST_TCP_HASH),
                "workloads": "$WORKLOADS", "daemons": "$DAEMONS", "lease_file": "$LEASE_FILE",
                "profile_k": $PROFILE_K},
}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
EOF
if [ "$WORKLOADS" = profile ]; then
	say "done in $(($(date +%s) - START)) s; profile only: $OUT/profile/n*/summary.md (the comparison report is left as it was)"
	exit 0
fi
cp "$RAW" "$OUT/latest.jsonl"
# Kept with the logs so that the report can be made again by hand:
#   python3 bench/report.py bench/results/latest.jsonl bench/results/logs/meta.json bench/results
mkdir -p "$OUT/logs"
cp "$META" "$OUT/logs/meta.json"
python3 bench/report.py "$RAW" "$META" "$OUT"
cat "$OUT/latest.md"
say "done in $(($(date +%s) - START)) s; results in $OUT/latest.{json,csv,md}"
exit 0
}
