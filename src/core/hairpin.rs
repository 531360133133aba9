//! Whether a LAN host reaches its own mapping through the external
//! address (hairpin from the mapped host itself), from what the kernel
//! says of the LAN devices.
//!
//! Owns: [`self_blocked`] and the sentence the owner reads. Pure: the
//! daemon reads the facts (`sys/netif.rs`).
//!
//! Why it can fail: with br_netfilter, a bridge hands its IPv4 frames to
//! the IP prerouting hook (`net.bridge.bridge-nf-call-iptables`, or the
//! bridge's own `nf_call_iptables` option). When the hairpin DNAT there
//! sends a frame back out of the bridge it came in on, br_netfilter
//! bridges it again to the new destination's MAC instead of routing it,
//! and a bridge never sends a frame out of the port it arrived on (unless
//! that port has `hairpin_mode`): the mapped host's own frame is dropped,
//! while a host behind another port gets through. The rules that still
//! run after that decision (bridge-family prerouting behind
//! br_netfilter's) cannot change the port the frame goes to, so only the
//! owner's settings change it. IPv6 is not translated, so IPv6 has no
//! hairpin and no such case.

/// What the kernel says of the bridges among the LAN devices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeFacts {
    /// `net.bridge.bridge-nf-call-iptables` of the daemon's network
    /// namespace; `None` without br_netfilter (bridged frames then never
    /// meet the IP hooks, whatever the options say).
    pub call_iptables: Option<bool>,
    /// Each LAN device that is a bridge, with its own `nf_call_iptables`
    /// option.
    pub bridges: Vec<(String, bool)>,
}

/// Why a host cannot reach its own mapping through the external address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelfBlocked {
    /// The namespace's `net.bridge.bridge-nf-call-iptables` is 1; these
    /// LAN devices are bridges.
    Sysctl(Vec<String>),
    /// These bridges have their own `nf_call_iptables` option set.
    BridgeOption(Vec<String>),
}

/// The sysctl named in the log and `status`.
pub const CALL_IPTABLES: &str = "net.bridge.bridge-nf-call-iptables";

/// Whether hairpin from the mapped host itself is blocked, and why;
/// `None` when it works or hairpin is off.
pub fn self_blocked(hairpin: bool, facts: &BridgeFacts) -> Option<SelfBlocked> {
    if !hairpin || facts.bridges.is_empty() {
        return None;
    }
    let names = |only_own: bool| -> Vec<String> {
        facts
            .bridges
            .iter()
            .filter(|(_, own)| *own || !only_own)
            .map(|(d, _)| d.clone())
            .collect()
    };
    match facts.call_iptables {
        None => None,
        Some(true) => Some(SelfBlocked::Sysctl(names(false))),
        Some(false) => Some(names(true))
            .filter(|n| !n.is_empty())
            .map(SelfBlocked::BridgeOption),
    }
}

impl SelfBlocked {
    /// One sentence for the log and `status`: the devices, the setting,
    /// and what still works.
    pub fn explain(&self) -> String {
        let (setting, devs) = match self {
            SelfBlocked::Sysctl(d) => (CALL_IPTABLES, d),
            SelfBlocked::BridgeOption(d) => ("the bridge option nf_call_iptables", d),
        };
        format!(
            "A LAN host cannot reach its own mapping through the external address while \
             {setting} is 1 on bridge {} (other LAN hosts can): the kernel bridges the \
             translated frame back to the port it came from, which a bridge never sends to",
            devs.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(call: Option<bool>, bridges: &[(&str, bool)]) -> BridgeFacts {
        BridgeFacts {
            call_iptables: call,
            bridges: bridges.iter().map(|(d, o)| (d.to_string(), *o)).collect(),
        }
    }

    #[test]
    fn blocked_only_with_a_bridge_whose_frames_meet_the_ip_hooks() {
        let br = [("br-lan", false)];
        assert_eq!(
            self_blocked(true, &facts(Some(true), &br)),
            Some(SelfBlocked::Sysctl(vec!["br-lan".into()]))
        );
        // hairpin off, no bridge, no br_netfilter, the sysctl at 0
        assert_eq!(self_blocked(false, &facts(Some(true), &br)), None);
        assert_eq!(self_blocked(true, &facts(Some(true), &[])), None);
        assert_eq!(self_blocked(true, &facts(None, &[("br-lan", true)])), None);
        assert_eq!(self_blocked(true, &facts(Some(false), &br)), None);
        // the bridge's own option, with the sysctl at 0: that bridge only
        assert_eq!(
            self_blocked(
                true,
                &facts(Some(false), &[("br-lan", false), ("br-guest", true)])
            ),
            Some(SelfBlocked::BridgeOption(vec!["br-guest".into()]))
        );
    }

    #[test]
    fn the_sentence_names_the_device_and_the_setting() {
        let s = SelfBlocked::Sysctl(vec!["br-lan".into(), "br-iot".into()]).explain();
        assert!(
            s.contains("net.bridge.bridge-nf-call-iptables is 1 on bridge br-lan, br-iot"),
            "{s}"
        );
        assert!(s.contains("cannot reach its own mapping"), "{s}");
        assert!(s.contains("other LAN hosts can"), "{s}");
        let s = SelfBlocked::BridgeOption(vec!["br-lan".into()]).explain();
        assert!(
            s.contains("the bridge option nf_call_iptables is 1 on bridge br-lan"),
            "{s}"
        );
    }
}
