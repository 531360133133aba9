# shellcheck shell=sh
# Test stand-in for OpenWrt's /lib/functions/procd.sh: every call that would build or send a procd
# message appends one line "<function> <arguments>" to $PKGTEST_LOG instead.
# procd_running answers from $PKGTEST_RUNNING (1 = the service has a running instance).

pkgtest_record() {
	printf '%s\n' "$*" >>"$PKGTEST_LOG"
}

procd_open_service() { pkgtest_record procd_open_service "$1"; }
procd_open_instance() { pkgtest_record procd_open_instance "$@"; }
procd_set_param() { pkgtest_record procd_set_param "$@"; }
procd_append_param() { pkgtest_record procd_append_param "$@"; }
procd_close_instance() { pkgtest_record procd_close_instance; }
procd_add_reload_trigger() { pkgtest_record procd_add_reload_trigger "$@"; }
procd_add_reload_interface_trigger() { pkgtest_record procd_add_reload_interface_trigger "$@"; }
procd_add_interface_trigger() { pkgtest_record procd_add_interface_trigger "$@"; }
procd_add_raw_trigger() { pkgtest_record procd_add_raw_trigger "$@"; }
procd_add_validation() { pkgtest_record procd_add_validation "$@"; }
procd_send_signal() { pkgtest_record procd_send_signal "$@"; }
procd_kill() { pkgtest_record procd_kill "$@"; }
procd_running() { [ "${PKGTEST_RUNNING:-0}" = 1 ]; }

# As the original: closing the service registers its triggers, which service_triggers declares.
procd_close_service() {
	service_triggers
	pkgtest_record procd_close_service
}
