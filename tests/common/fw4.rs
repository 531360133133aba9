//! firewall4 as a router runs it. The rulesets are `fw4 print` output
//! recorded from the real firewall4 (tests/fixtures/fw4/, provenance in
//! its README), loaded with rupnpd's include files where fw4 places them.
//! The bed's router has the captured device names (`br-lan`, `eth1`), so
//! only the addresses are adapted to the bed; a bed with other device
//! names (a LAN on a plain port, a PPPoE WAN) gets them substituted, as
//! fw4 would have printed them for that router.
//!
//! What fw4 does to `table inet fw4` is emulated by [`super::Bed`]:
//! reload and start load the printed ruleset (it begins with
//! `table inet fw4` and `flush table inet fw4`: re-declare plus flush),
//! stop deletes the table, restart is a stop then a start.

use super::{CLIENT_IP, LAN_IP, WAN_IP, root};

/// `fw4 print` of firewall4's default configuration, no include files.
pub const PRINT_DEFAULT: &str = include_str!("../fixtures/fw4/fw4-print-default.nft");
/// The same with rupnpd's four include files installed and one user port
/// forward (WAN 8022 → 192.168.1.10:22).
pub const PRINT_WITH_REDIRECT: &str =
    include_str!("../fixtures/fw4/fw4-print-with-includes-and-a-redirect.nft");
/// `nft list ruleset` two seconds after `fw4 stop`, rupnpd 0.1.0 running.
pub const AFTER_STOP: &str = include_str!("../fixtures/fw4/ruleset-2s-after-fw4-stop.nft");

/// The router's LAN and WAN devices in the captures.
pub const CAPTURED_LAN_DEV: &str = "br-lan";
pub const CAPTURED_WAN_DEV: &str = "eth1";

/// Where fw4 looks for the include files packages install.
const PKG_INCLUDES: &str = "/usr/share/nftables.d/";
/// The user's own include files; the bed's router has none.
const USER_INCLUDES: &str = "/etc/nftables.d/*.nft";

/// Which recorded `fw4 print` the router runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Print {
    /// The default configuration with rupnpd installed.
    Default,
    /// The same plus the user's port forward WAN 8022 → LAN host :22.
    WithRedirect,
}

/// The ruleset fw4 loads on the bed's router: the recorded print, our
/// include files in it, devices and addresses those of the bed.
pub fn ruleset(print: Print, lan_dev: &str, wan_dev: &str) -> String {
    let recorded = match print {
        Print::Default => PRINT_DEFAULT,
        Print::WithRedirect => PRINT_WITH_REDIRECT,
    };
    to_bed(&expand_includes(&with_includes(recorded)), lan_dev, wan_dev)
}

/// A recorded print with every include file of the package in it: those
/// the recording names stay where fw4 put them, those added since it was
/// made are placed as fw4 places them.
pub fn with_includes(print: &str) -> String {
    let missing: Vec<String> = package_includes()
        .into_iter()
        .filter(|i| !print.contains(&format!("\"{PKG_INCLUDES}{i}\"")))
        .collect();
    place_includes(print, &missing)
}

/// The include files rupnpd's package installs under
/// `/usr/share/nftables.d/`, as paths below it, in the order fw4 reads
/// them (sorted).
pub fn package_includes() -> Vec<String> {
    fn walk(dir: &std::path::Path, rel: &str, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), &rel, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(&nftables_d(), "", &mut out);
    out.sort();
    out
}

fn nftables_d() -> std::path::PathBuf {
    root().join("openwrt-pkg/rupnpd/files/nftables.d")
}

/// Puts an `include` line for each of `includes` (paths below
/// `/usr/share/nftables.d/`) into a `fw4 print` output at the place fw4's
/// ruleset template gives it: `table-post/…` last in the table,
/// `chain-pre/<chain>/…` before the chain's first rule, `chain-post/<chain>/…`
/// after its last rule but before the `jump handle_reject` that closes a
/// chain with a reject policy. The recorded print with includes shows
/// these places; tests/fw4.rs checks that this function reproduces it.
pub fn place_includes(print: &str, includes: &[String]) -> String {
    let mut lines: Vec<String> = print.lines().map(str::to_owned).collect();
    for inc in includes {
        let parts: Vec<&str> = inc.split('/').collect();
        match parts.as_slice() {
            ["table-post", _] => {
                let end = lines
                    .iter()
                    .rposition(|l| l == "}")
                    .expect("the print ends its table with `}`");
                let line = format!("\tinclude \"{PKG_INCLUDES}{inc}\"");
                lines.splice(end..end, [String::new(), line]);
            }
            [kind @ ("chain-pre" | "chain-post"), chain, _] => {
                let open = format!("\tchain {chain} {{");
                let start = lines
                    .iter()
                    .position(|l| *l == open)
                    .unwrap_or_else(|| panic!("fw4's print has no chain {chain} for {inc}"));
                let end = start
                    + lines[start..]
                        .iter()
                        .position(|l| l == "\t}")
                        .expect("chain closed");
                let is_rule = |l: &String| {
                    let t = l.trim();
                    !t.is_empty() && !t.starts_with("type ")
                };
                let at = if *kind == "chain-pre" {
                    (start + 1..end)
                        .find(|&i| is_rule(&lines[i]))
                        .unwrap_or(end)
                } else {
                    let last = (start + 1..end).rev().find(|&i| is_rule(&lines[i]));
                    match last {
                        Some(i) if lines[i].trim() == "jump handle_reject" => i,
                        Some(i) => i + 1,
                        None => end,
                    }
                };
                lines.insert(at, format!("\t\tinclude \"{PKG_INCLUDES}{inc}\""));
            }
            _ => panic!("where fw4 places {inc} is not known here"),
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Replaces each `include` line by what nft would read there: the
/// package's file for `/usr/share/nftables.d/…`, nothing for the user's
/// `/etc/nftables.d/*.nft` (the bed's router has no user include files).
/// So a change to our include files is what the tests load.
pub fn expand_includes(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim();
        let Some(path) = t
            .strip_prefix("include \"")
            .and_then(|p| p.strip_suffix('"'))
        else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        if path == USER_INCLUDES {
            continue;
        }
        let rel = path
            .strip_prefix(PKG_INCLUDES)
            .unwrap_or_else(|| panic!("fw4's print includes {path}, which nothing here provides"));
        let file = nftables_d().join(rel);
        let body = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("fw4 includes {path}, the package lacks it: {e}"));
        out.push_str(&body);
        if !body.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// The captured router's addresses, and the bed's in their place. The
/// LAN host 192.168.1.10 of the capture's port forward is the bed's LAN
/// host.
const ADDRESSES: [(&str, &str); 5] = [
    ("192.168.1.0/24", "192.168.77.0/24"),
    ("192.168.1.10", CLIENT_IP),
    ("192.168.1.1", LAN_IP),
    ("192.0.4.0/24", "192.0.3.0/24"),
    ("192.0.4.1", WAN_IP),
];

/// A captured ruleset as fw4 would have printed it on the bed's router:
/// its addresses, and its devices where they differ from the capture's.
pub fn to_bed(text: &str, lan_dev: &str, wan_dev: &str) -> String {
    let mut out = text.to_string();
    for (from, to) in ADDRESSES {
        out = replace_addr(&out, from, to);
    }
    for (from, to) in [(CAPTURED_LAN_DEV, lan_dev), (CAPTURED_WAN_DEV, wan_dev)] {
        if from != to {
            out = out.replace(&format!("\"{from}\""), &format!("\"{to}\""));
        }
    }
    out
}

/// Replaces `from` where it is a whole address (not a prefix of a longer
/// one such as 192.168.1.1 in 192.168.1.10).
fn replace_addr(text: &str, from: &str, to: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(from) {
        let after = rest[i + from.len()..].chars().next();
        let before = rest[..i].chars().next_back();
        let whole = !after.is_some_and(|c| c.is_ascii_digit())
            && !before.is_some_and(|c| c.is_ascii_digit() || c == '.');
        out.push_str(&rest[..i]);
        out.push_str(if whole { to } else { from });
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    out
}
