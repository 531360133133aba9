//! `rupnpd`: parses the command line, sets up logging and hands over to
//! the daemon's loop.

use std::path::PathBuf;
use std::process::ExitCode;

use rupnpd::daemon::{self, Options};

const USAGE: &str = "usage: rupnpd [--config-dir DIR] [--lan IFACE]... [--wan IFACE] [--port N]
              [--lease-file PATH] [--ubus-socket PATH] [--check-config]
              [--debug] [--stderr | --syslog SOCKET] [--version] [--help]";

enum Mode {
    Run,
    CheckConfig,
    /// Prints the nftables structure and rules the daemon installs (for
    /// the packaging checks: they must load on top of fw4's ruleset).
    PrintFirewall,
}

/// Where log lines go: the syslog daemon's socket, or stderr (`None`).
type LogTarget = Option<PathBuf>;

fn parse(args: impl Iterator<Item = String>) -> Result<(Options, Mode, LogTarget), String> {
    let mut o = Options::default();
    let mut mode = Mode::Run;
    let mut syslog = Some(PathBuf::from(rupnpd::sys::syslog::DEV_LOG));
    let mut it = args.peekable();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--config-dir" => o.config_dir = Some(PathBuf::from(value("--config-dir")?)),
            "--lan" => o.flags.lan.push(value("--lan")?),
            "--wan" => o.flags.wan = Some(value("--wan")?),
            "--port" => {
                let v = value("--port")?;
                o.flags.port = Some(
                    rupnpd::proto::parse_u16(&v)
                        .ok_or_else(|| format!("--port: \"{v}\" is not a port number 0-65535"))?,
                );
            }
            "--lease-file" => o.flags.lease_file = Some(PathBuf::from(value("--lease-file")?)),
            "--ubus-socket" => o.ubus_socket = Some(PathBuf::from(value("--ubus-socket")?)),
            "--check-config" => mode = Mode::CheckConfig,
            "--print-firewall" => mode = Mode::PrintFirewall,
            "--debug" | "-d" => o.flags.debug = true,
            "--stderr" => o.stderr = true,
            // The syslog socket, for tests and chroots (default /dev/log);
            // --stderr wins.
            "--syslog" => syslog = Some(PathBuf::from(value("--syslog")?)),
            "--version" | "-V" => {
                println!("rupnpd {}", rupnpd::VERSION);
                std::process::exit(0);
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument \"{other}\"\n{USAGE}")),
        }
    }
    let syslog = syslog.filter(|_| !o.stderr);
    Ok((o, mode, syslog))
}

fn main() -> ExitCode {
    let (opts, mode, log_target) = match parse(std::env::args().skip(1)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("rupnpd: {e}");
            return ExitCode::from(2);
        }
    };
    match mode {
        Mode::CheckConfig => match daemon::load_config(&opts) {
            Ok((cfg, warnings)) => {
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                print!("{cfg}");
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in errors {
                    eprintln!("error: {e}");
                }
                ExitCode::FAILURE
            }
        },
        Mode::PrintFirewall => match daemon::load_config(&opts) {
            Ok((cfg, _)) => {
                let setup = rupnpd::sys::nft::Setup {
                    wan_dev: cfg.external_iface.clone(),
                    lan_devs: cfg.internal_iface.clone(),
                    hairpin: cfg.hairpin,
                    log_packets: cfg.log_packets,
                    log_connections: cfg.log_connections,
                    ..Default::default()
                };
                print!("{}", rupnpd::sys::nft::structure(&cfg.nft, &setup, false));
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in errors {
                    eprintln!("error: {e}");
                }
                ExitCode::FAILURE
            }
        },
        Mode::Run => {
            rupnpd::sys::syslog::init(opts.flags.debug, log_target);
            match daemon::run(opts) {
                0 => ExitCode::SUCCESS,
                _ => ExitCode::FAILURE,
            }
        }
    }
}
