//! The verdict of a finished run and the sentence a router owner reads.
//!
//! Owns: [`Filtering`] and [`FilterKind`], what the tests of a run found
//! ([`Tested`]), and [`verdict`], which turns them, the mappings and the
//! WAN address into the answer to "can the Internet reach this router?".

use std::net::SocketAddrV4;

use super::Run;

/// How the NAT in front of the router treats traffic nobody asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKind {
    /// RFC 4787 §5: only from addresses the router has sent to.
    AddressDependent,
    /// Only from the exact address and port the router has sent to.
    AddressAndPortDependent,
    /// Not filtering as such: the NAT changes port numbers, so what the
    /// router opens on port N is not port N on the public address.
    PortTranslated,
}

/// The verdict: can unsolicited traffic reach the router through the NAT?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtering {
    /// Yes: no NAT in front, or endpoint-independent filtering that keeps
    /// port numbers.
    EndpointIndependent,
    Filtered(FilterKind),
    /// Not known (yet): no answer, or a server that cannot test.
    Unknown,
}

impl Filtering {
    pub fn as_str(self) -> &'static str {
        match self {
            Filtering::EndpointIndependent => "endpoint-independent",
            Filtering::Filtered(FilterKind::AddressDependent) => "address-dependent",
            Filtering::Filtered(FilterKind::AddressAndPortDependent) => {
                "address-and-port-dependent"
            }
            Filtering::Filtered(FilterKind::PortTranslated) => "port-translated",
            Filtering::Unknown => "unknown",
        }
    }
}

/// What the filtering tests found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tested {
    Filtering(Filtering),
    /// The server cannot test; the words say why.
    Cannot(&'static str),
}

/// The verdict and its sentence from a finished run.
pub(super) fn verdict(run: &Run, first: SocketAddrV4, behind_nat: bool) -> (Filtering, String) {
    let wan = run.wan;
    // miniupnpd's check: a NAT that keeps port numbers on every socket.
    let moved = [(Some(first), wan.ports[0]), (run.second, wan.ports[1])]
        .into_iter()
        .find_map(|(m, local)| m.filter(|m| m.port() != local).map(|m| (local, m.port())));
    let why = match run.tested {
        Some(Tested::Cannot(why)) => why,
        _ => "no test ran",
    };
    let translated = |local: u16, public: u16| {
        (
            Filtering::Filtered(FilterKind::PortTranslated),
            format!(
                "The carrier's NAT changes port numbers (router port {local} appeared as public \
                 port {public}): a port opened on this router is not open under the same number \
                 on the public address {}.",
                first.ip()
            ),
        )
    };
    match run.tested {
        Some(Tested::Filtering(Filtering::EndpointIndependent)) => match moved {
            Some((l, p)) if behind_nat => translated(l, p),
            _ if behind_nat => (
                Filtering::EndpointIndependent,
                format!(
                    "The carrier's NAT lets unsolicited traffic through to this router \
                     (endpoint-independent filtering, public address {}): port mappings can be \
                     reached where the carrier forwards their ports.",
                    first.ip()
                ),
            ),
            _ => (
                Filtering::EndpointIndependent,
                format!(
                    "No NAT in front of this router ({} is its own address) and nothing filters \
                     unsolicited traffic: port mappings can be reached from the Internet.",
                    first.ip()
                ),
            ),
        },
        Some(Tested::Filtering(f)) => {
            let what = match f {
                Filtering::Filtered(FilterKind::AddressDependent) => {
                    "only lets in traffic from addresses this router has sent to \
                     (address-dependent filtering)"
                }
                _ => {
                    "only lets in replies from the exact address and port this router has sent \
                     to (address-and-port-dependent filtering)"
                }
            };
            let who = if behind_nat {
                "The carrier's NAT"
            } else {
                "A firewall in front of this router"
            };
            (
                f,
                format!("{who} {what}: port mappings cannot be reached from the Internet."),
            )
        }
        _ if !behind_nat => (
            Filtering::EndpointIndependent,
            format!(
                "No NAT in front of this router ({} is its own address): port mappings can \
                     be reached from the Internet. (The STUN server cannot test for a firewall \
                     further out: {why}.)",
                first.ip()
            ),
        ),
        _ => match moved {
            Some((l, p)) => translated(l, p),
            None => (
                Filtering::Unknown,
                format!(
                    "This router is behind a NAT (public address {}, WAN address {}) and the \
                         STUN server cannot tell whether it filters unsolicited traffic: {why}. A \
                         server with RFC 5780 support can.",
                    first.ip(),
                    wan.addr
                ),
            ),
        },
    }
}
