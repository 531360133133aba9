#!/bin/sh
# The stripped size of the daemon, per target and profile, against the figures recorded in
# sizes.txt: CI fails when a build grows more than 3 % over its recorded figure.
#
#   sh scripts/sizes.sh record TARGET PROFILE BINARY STRIP COMPILER
#       strips a copy of BINARY with STRIP (the target's strip) into
#       target/sizes/rupnpd-TARGET-PROFILE and keeps its size for the check in
#       target/sizes/TARGET.PROFILE (the build steps call this: scripts/test.sh for x86_64
#       glibc, scripts/musl-test.sh, scripts/cross-test.sh)
#   sh scripts/sizes.sh check
#       prints every recorded figure beside the measured one and exits non-zero if one grew
#       more than 3 % or was not measured
#
# Recording a new figure in sizes.txt is a deliberate commit of its own, saying why the size
# changed. A figure depends on the compiler too: the check prints the compiler of each
# measurement beside the recorded one, so a growth that comes with a compiler change shows
# as such.
set -eu
cd "$(dirname "$0")/.."

dir=target/sizes
limit_pct=3

die() {
	echo "sizes.sh: $*" >&2
	exit 2
}

case "${1:-}" in
record)
	[ $# -eq 6 ] || die "usage: sizes.sh record TARGET PROFILE BINARY STRIP COMPILER"
	target=$2 profile=$3 bin=$4 strip=$5 compiler=$6
	[ -f "$bin" ] || die "no binary $bin"
	mkdir -p "$dir"
	out="$dir/rupnpd-$target-$profile"
	cp "$bin" "$out"
	"$strip" --strip-all "$out"
	bytes=$(stat -c %s "$out")
	printf '%s\t%s\n' "$bytes" "$compiler" >"$dir/$target.$profile"
	printf 'size: %s %s: %d B (%d KiB), %s: %s\n' "$target" "$profile" "$bytes" \
		$(((bytes + 1023) / 1024)) "$compiler" "$out"
	;;
check)
	[ -f sizes.txt ] || die "sizes.txt is missing"
	failed=0
	printf '%-30s %-8s %10s %10s %8s  %s\n' target profile recorded now change compiler
	# sizes.txt: "target profile bytes compiler…", '#' starts a comment
	while read -r target profile recorded compiler; do
		case "$target" in '' | '#'*) continue ;; esac
		f="$dir/$target.$profile"
		if [ ! -f "$f" ]; then
			printf '%-30s %-8s %10s %10s %8s  %s\n' "$target" "$profile" "$recorded" - - \
				"NOT MEASURED (its build step did not run or failed)"
			failed=1
			continue
		fi
		now=$(cut -f1 "$f")
		now_compiler=$(cut -f2 "$f")
		# change in tenths of a percent, rounded towards zero
		permille=$(((now - recorded) * 1000 / recorded))
		sign=+
		[ "$permille" -lt 0 ] && sign=- && permille=$((-permille))
		change=$(printf '%s%d.%d%%' "$sign" $((permille / 10)) $((permille % 10)))
		note=$now_compiler
		[ "$now_compiler" = "$compiler" ] || note="$now_compiler (recorded with $compiler)"
		if [ $((now * 100)) -gt $((recorded * (100 + limit_pct))) ]; then
			note="$note  GREW MORE THAN $limit_pct %"
			failed=1
		fi
		printf '%-30s %-8s %10d %10d %8s  %s\n' "$target" "$profile" "$recorded" "$now" \
			"$change" "$note"
	done <sizes.txt
	if [ $failed -ne 0 ]; then
		echo "sizes.sh: a size grew more than $limit_pct % over sizes.txt, or was not measured." >&2
		echo "If the growth is wanted, record the new figure in sizes.txt in a commit that says why." >&2
		exit 1
	fi
	echo "sizes: every build within $limit_pct % of sizes.txt"
	;;
*)
	die "usage: sizes.sh record TARGET PROFILE BINARY STRIP COMPILER | sizes.sh check"
	;;
esac
