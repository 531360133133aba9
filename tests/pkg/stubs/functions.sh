# shellcheck shell=sh disable=SC3043
# Test stand-in for OpenWrt's /lib/functions.sh: the UCI helpers init and hotplug scripts use.
# Like the original, config_load evaluates the package as shell: `config`, `option` and `list`
# lines are calls of the functions below, which store values in CONFIG_<section>_<option>
# variables. UCI's quoting and `#` comments are shell's, so fixture files are read as they are.
# Configuration files are read from $PKGTEST_CONFDIR instead of /etc/config.

_pkgtest_anon=0

config() {
	local name="$2"

	if [ -z "$name" ]; then
		_pkgtest_anon=$((_pkgtest_anon + 1))
		name="cfg$_pkgtest_anon"
	fi
	CONFIG_SECTION="$name"
	eval "CONFIG_${name}_TYPE=\$1"
}

option() {
	eval "CONFIG_${CONFIG_SECTION}_$1=\$2"
}

list() {
	eval "CONFIG_${CONFIG_SECTION}_$1=\"\${CONFIG_${CONFIG_SECTION}_$1:+\${CONFIG_${CONFIG_SECTION}_$1} }\$2\""
}

package() {
	:
}

config_load() {
	local file="$PKGTEST_CONFDIR/$1"

	[ -f "$file" ] || return 1
	# shellcheck disable=SC1090
	. "$file"
}

# config_get <var> <section> <option> [default]
config_get() {
	eval "$1=\${CONFIG_$2_$3:-\$4}"
}

# config_get_bool <var> <section> <option> [default]: 1 or 0, as the original understands them.
config_get_bool() {
	local _val

	config_get _val "$2" "$3" "$4"
	case "$_val" in
		1 | on | true | yes | enabled) _val=1 ;;
		0 | off | false | no | disabled) _val=0 ;;
		*) _val="$4" ;;
	esac
	eval "$1=\$_val"
}
