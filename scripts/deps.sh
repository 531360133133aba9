#!/bin/sh
# Installs every system package the demo, the tests and the benchmarks
# need, from Debian's archive. Safe to run again: only missing packages
# are installed. Run as root on Debian 12 (bookworm).
set -eu

# coturn (RFC 5780) and stun-server (stund, RFC 3489) are the real STUN
# servers of tests/stun.rs, which starts its own instances inside its
# test namespaces.
PKGS="nftables libnftables1 iproute2 miniupnpc natpmpc socat netcat-openbsd curl \
python3 procps psmisc iputils-ping shellcheck nodejs gcc libc6-dev pkg-config \
coturn stun-server"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
# Rust: the machine's toolchain (rustup) if present, else Debian's.
if ! command -v cargo >/dev/null 2>&1; then
	missing="$missing cargo-web rustc-web"
fi
if [ -n "$missing" ]; then
	echo "deps: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
