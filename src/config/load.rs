//! The configuration the daemon runs with: the UCI package as read, the
//! command-line flags over it, `external_zone` resolved through the
//! firewall configuration, and the notes worth logging about the result.
//!
//! Owns: [`Overrides`] and [`assemble`]. Pure: the daemon reads the files
//! and hands their parsed packages in.

use std::path::PathBuf;

use super::Config;
use super::uci::Loaded;
use crate::proto::uci::Package;

/// Command-line values that override the UCI ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--lan`, repeated: the LAN interfaces instead of `internal_iface`.
    pub lan: Vec<String>,
    pub wan: Option<String>,
    pub port: Option<u16>,
    pub lease_file: Option<PathBuf>,
    /// `--debug`: debug logging whatever `log_output` says.
    pub debug: bool,
}

impl Overrides {
    fn apply(&self, cfg: &mut Config) {
        if !self.lan.is_empty() {
            cfg.internal_iface = self.lan.clone();
        }
        if let Some(w) = &self.wan {
            cfg.external_iface = Some(w.clone());
        }
        if let Some(p) = self.port {
            cfg.port = p;
        }
        if let Some(l) = &self.lease_file {
            cfg.upnp_lease_file = Some(l.clone());
        }
        if self.debug {
            cfg.log_output = true;
        }
    }
}

/// The first network of firewall zone `zone`: the WAN, when only the
/// zone is configured (miniupnpd's init script asks `fw4 zone`; the
/// zone's networks are in `/etc/config/firewall`).
fn zone_network(firewall: &Package, zone: &str) -> Option<String> {
    firewall
        .of_type("zone")
        .filter(|z| z.option("name") == Some(zone))
        .find_map(|z| {
            z.get("network")
                .and_then(|v| v.words().next().map(String::from))
        })
}

/// The running configuration from `loaded` (the UCI package as read, or
/// the defaults with a note when there is none) and the flags. `firewall`
/// reads `/etc/config/firewall`, asked only when `external_zone` must be
/// resolved.
pub fn assemble(
    loaded: Loaded,
    flags: &Overrides,
    firewall: impl FnOnce() -> Option<Package>,
) -> Loaded {
    let Loaded {
        config: mut cfg,
        mut warnings,
    } = loaded;
    flags.apply(&mut cfg);
    if let (None, Some(zone)) = (&cfg.external_iface, &cfg.external_zone) {
        if let Some(fw) = firewall() {
            match zone_network(&fw, zone) {
                Some(n) => cfg.external_iface = Some(n),
                None => warnings.push(format!(
                    "upnpd.config.external_zone: zone \"{zone}\" has no network in the firewall configuration"
                )),
            }
        }
    }
    // miniupnpd refuses to start with both; the configured address is the
    // owner's word, so it wins and STUN stays off.
    if cfg.use_stun && cfg.external_ip.is_some() {
        warnings.push(
            "upnpd.config.use_stun: external_ip is set and is reported; STUN stays off".into(),
        );
        cfg.use_stun = false;
    }
    if cfg.perm_rules.is_empty() {
        warnings.push(
            "upnpd: no perm_rule sections: every mapping request will be refused \
             (rupnpd denies when no rule matches)"
                .into(),
        );
    }
    Loaded {
        config: cfg,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::uci::from_uci;
    use crate::proto::uci::parse;

    fn loaded(text: &str) -> Loaded {
        from_uci(&parse("upnpd", text).unwrap()).unwrap()
    }

    const RULES: &str = "\nconfig perm_rule\n\toption action allow\n";

    #[test]
    fn flags_override_uci() {
        let l = loaded(&format!(
            "config upnpd 'config'\n\toption port 5000\n\tlist internal_iface lan{RULES}"
        ));
        let flags = Overrides {
            lan: vec!["br-test".into()],
            wan: Some("eth9".into()),
            port: Some(6000),
            lease_file: Some("/tmp/l".into()),
            debug: true,
        };
        let c = assemble(l, &flags, || panic!("no zone to resolve")).config;
        assert_eq!(c.internal_iface, vec!["br-test".to_string()]);
        assert_eq!(c.external_iface.as_deref(), Some("eth9"));
        assert_eq!(c.port, 6000);
        assert_eq!(c.upnp_lease_file, Some("/tmp/l".into()));
        assert!(c.log_output);
    }

    #[test]
    fn external_zone_names_the_wan() {
        let fw = "config zone\n\toption name 'wan'\n\tlist network 'wan6'\n\tlist network 'wwan'\n";
        let l = loaded(&format!(
            "config upnpd 'config'\n\toption external_zone wan{RULES}"
        ));
        let c = assemble(l.clone(), &Overrides::default(), || {
            Some(parse("firewall", fw).unwrap())
        });
        assert_eq!(c.config.external_iface.as_deref(), Some("wan6"));
        let c = assemble(l, &Overrides::default(), || {
            Some(parse("firewall", "config zone\n\toption name 'lan'\n").unwrap())
        });
        assert_eq!(c.config.external_iface, None);
        assert_eq!(
            c.warnings,
            [
                "upnpd.config.external_zone: zone \"wan\" has no network in the firewall configuration"
            ]
        );
    }

    #[test]
    fn no_rules_is_one_warning() {
        let c = assemble(
            loaded("config upnpd 'config'\n"),
            &Overrides::default(),
            || None,
        );
        assert_eq!(
            c.warnings,
            [
                "upnpd: no perm_rule sections: every mapping request will be refused (rupnpd denies when no rule matches)"
            ]
        );
        // the built-in defaults have OpenWrt's rules
        let defaults = Loaded {
            config: Config::default(),
            warnings: vec![],
        };
        assert!(
            assemble(defaults, &Overrides::default(), || None)
                .warnings
                .is_empty()
        );
    }

    #[test]
    fn stun_options() {
        let stun = |opts: &str| {
            assemble(
                loaded(&format!(
                    "config upnpd 'config'\n\toption stun_host stun.example.org\n{opts}{RULES}"
                )),
                &Overrides::default(),
                || None,
            )
        };
        let c = stun("\toption use_stun 1\n");
        assert!(c.config.use_stun && !c.config.stun_allow_filtered);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // miniupnpd's word for it, and rupnpd's own switch
        for opts in [
            "\toption use_stun allow-filtered\n",
            "\toption use_stun 1\n\toption stun_allow_filtered 1\n",
        ] {
            let c = stun(opts).config;
            assert!(c.use_stun && c.stun_allow_filtered, "{opts}");
        }
        // a configured address wins
        let c = stun("\toption use_stun 1\n\toption external_ip 198.51.100.7\n");
        assert!(!c.config.use_stun);
        assert_eq!(
            c.warnings,
            ["upnpd.config.use_stun: external_ip is set and is reported; STUN stays off"]
        );
    }
}
