//! PCP (RFC 6887) for IPv6 hosts: the router does not translate IPv6, so a
//! MAP or PEER for an IPv6 internal address is a firewall pinhole, and the
//! assigned external address and port are the internal ones (RFC 6887
//! §11.3, a firewall's answer). The pinholes live in the same table as
//! WANIPv6FirewallControl's, under the same policy.
//!
//! Owns: MAP (create, renew with its nonce, delete, FILTER, PREFER_FAILURE,
//! THIRD_PARTY) and PEER for IPv6, and the PCP result codes of pinhole
//! refusals.

use std::net::{IpAddr, Ipv6Addr};

use super::pcp::{Exchange, pcp_error};
use crate::core::pinhole::{PinRefusal, PinRequest, Pinhole};
use crate::core::table::Origin;
use crate::core::{Core, EventKind};
use crate::proto::pcp::{self, Body, ResultCode};

use super::Reply;

/// RFC 6887 §7.4 codes for pinhole refusals: a policy or another
/// protocol's (or nonce's) pinhole is NOT_AUTHORIZED, this client's /64
/// over its quota USER_EX_QUOTA, a full table NO_RESOURCES, a firewall
/// that is down NETWORK_FAILURE (as for IPv4 mappings).
fn pin_result(r: PinRefusal) -> ResultCode {
    match r {
        PinRefusal::NotAllowed
        | PinRefusal::NotAuthorized
        | PinRefusal::Collision
        | PinRefusal::NotOwner => ResultCode::NotAuthorized,
        PinRefusal::ClientQuota => ResultCode::UserExQuota,
        PinRefusal::SpaceExhausted | PinRefusal::NoSuchEntry => ResultCode::NoResources,
        PinRefusal::FirewallDown => ResultCode::NetworkFailure,
    }
}

/// The protocols a pinhole can hold: TCP, UDP, UDP-Lite.
fn pin_proto(n: u8) -> Result<u8, ResultCode> {
    match n {
        6 | 17 | 136 => Ok(n),
        _ => Err(ResultCode::UnsuppProtocol),
    }
}

/// Whether the assigned external port and address of a pinhole (the
/// internal ones) honour a suggestion: 0 and the all-zeros address of
/// either family mean "no preference".
fn honours(port: u16, addr: &Ipv6Addr, iport: u16, iaddr: Ipv6Addr) -> bool {
    (port == 0 || port == iport) && (pcp::is_no_preference(addr) || *addr == iaddr)
}

/// A remote filter of a pinhole: one host and a port (0 = any); `None`
/// admits every peer.
type Filter6 = Option<(Ipv6Addr, u16)>;

impl Exchange<'_, Ipv6Addr> {
    /// The internal address: the source, or THIRD_PARTY's, which must be
    /// an IPv6 host of a served LAN prefix.
    fn internal_addr6(&self) -> Result<Ipv6Addr, ResultCode> {
        let Some(a) = self.third_party(self.src)? else {
            return Ok(self.src);
        };
        if pcp::unmapped(&a).is_some() || a.is_multicast() || !self.srv.lans.holds6(a) {
            return Err(ResultCode::NotAuthorized);
        }
        Ok(a)
    }

    /// The FILTER options reduced to the one filter a pinhole can hold
    /// (RFC 6887 §13.3). `None`: no FILTER option; `Some(None)`: every
    /// peer (prefix length 0 removes the filters). The firewall's pinhole
    /// sets hold a single remote host (with or without a port), so a
    /// shorter prefix, or several distinct filters, are
    /// EXCESSIVE_REMOTE_PEERS.
    fn filter6(&self) -> Result<Option<Filter6>, ResultCode> {
        let mut any = false;
        let mut one: Filter6 = None;
        for f in self.req.filters() {
            any = true;
            if f.prefix_len == 0 {
                one = None;
                continue;
            }
            // an IPv4 peer cannot reach an IPv6 pinhole
            if pcp::unmapped(&f.remote_peer_addr).is_some() {
                return Err(ResultCode::MalformedOption);
            }
            if f.prefix_len != 128 {
                return Err(ResultCode::ExcessiveRemotePeers);
            }
            let host = (f.remote_peer_addr, f.remote_peer_port);
            match one {
                Some(x) if x != host => return Err(ResultCode::ExcessiveRemotePeers),
                _ => one = Some(host),
            }
        }
        Ok(any.then_some(one))
    }

    fn request(&self, iaddr: Ipv6Addr, iport: u16, proto: u8, nonce: [u8; 12]) -> PinRequest {
        PinRequest {
            iport,
            proto,
            origin: Origin::Pcp,
            nonce: Some(nonce),
            ..PinRequest::upnp(IpAddr::V6(self.src), None, 0, iaddr)
        }
    }

    /// Refuses a request on `p` from a client that does not own it (a
    /// nonce of another mapping, RFC 6887 §11.3, or secure mode),
    /// recording the refusal.
    fn refuse_owner(&self, core: &mut Core, p: &Pinhole) -> ResultCode {
        let mut req = self.request(p.iaddr, p.iport, p.proto, p.nonce.unwrap_or_default());
        req.remote = p.remote;
        req.rport = p.rport;
        req.peer = p.peer;
        core.refuse_pinhole(&req, PinRefusal::NotOwner, self.srv.now);
        ResultCode::NotAuthorized
    }

    /// This host's PCP MAP pinhole of an internal endpoint.
    fn map_pinhole(core: &Core, iaddr: Ipv6Addr, proto: u8, iport: u16) -> Option<Pinhole> {
        core.pinholes()
            .iter()
            .find(|p| {
                p.origin == Origin::Pcp
                    && !p.peer
                    && p.iaddr == iaddr
                    && p.proto == proto
                    && p.iport == iport
            })
            .cloned()
    }

    fn owns(&self, core: &Core, p: &Pinhole, nonce: [u8; 12]) -> bool {
        p.nonce == Some(nonce) && core.may_manage_pinhole(IpAddr::V6(self.src), p, self.srv.facts)
    }

    /// MAP (RFC 6887 §11.3) for an IPv6 internal address.
    pub(super) fn map6(&self, core: &mut Core, m: &pcp::Map) -> Result<Reply, ResultCode> {
        let iaddr = self.internal_addr6()?;
        // RFC 6887 §11.1: protocol 0 means all protocols; accepted for
        // deletion alone, as for IPv4
        let proto = match m.protocol {
            0 => None,
            n => Some(pin_proto(n)?),
        };
        if self.req.lifetime == 0 {
            return Ok(self.delete6(core, m, iaddr, proto));
        }
        let proto = proto.ok_or(ResultCode::UnsuppProtocol)?;
        if m.internal_port == 0 {
            // an "all ports" pinhole would expose the whole host
            return Err(ResultCode::NotAuthorized);
        }
        // RFC 6887 §13.2: with PREFER_FAILURE a suggestion that cannot be
        // had fails; without it, it is ignored (§11.3)
        if self.req.prefer_failure()
            && !honours(m.external_port, &m.external_addr, m.internal_port, iaddr)
        {
            return Err(ResultCode::CannotProvideExternal);
        }
        let filter = self.filter6()?;
        let mut req = self.request(iaddr, m.internal_port, proto, m.nonce);
        req.lease = self.srv.settings.clamp(self.req.lifetime);
        let keep = match Self::map_pinhole(core, iaddr, proto, m.internal_port) {
            Some(p) => {
                // RFC 6887 §11.3: a renewal must carry the mapping's nonce
                if !self.owns(core, &p, m.nonce) {
                    return Err(self.refuse_owner(core, &p));
                }
                req.replaces = Some(p.id);
                // FILTER options replace the filter; their absence keeps it
                Some((p.remote, p.rport))
            }
            None => None,
        };
        (req.remote, req.rport) = match (filter, keep) {
            (Some(f), _) => f.map_or((None, 0), |(a, port)| (Some(a), port)),
            (None, Some(kept)) => kept,
            (None, None) => (None, 0),
        };
        let sp = core.savepoint();
        let now = self.srv.now;
        let id = core
            .add_pinhole(&req, now, self.srv.facts)
            .map_err(pin_result)?;
        let lifetime = core.pinholes().get(id).map_or(0, |p| p.remaining_secs(now));
        let body = Body::Map(pcp::Map {
            external_port: m.internal_port,
            external_addr: iaddr,
            ..*m
        });
        Ok(self.reply(core, sp, self.success(body, lifetime)))
    }

    /// MAP with lifetime 0 (RFC 6887 §15), as for IPv4: internal port 0
    /// (or protocol 0) deletes all of this internal host's PCP pinholes
    /// with the request's nonce; one named pinhole of another nonce is
    /// NOT_AUTHORIZED; deleting what does not exist succeeds.
    fn delete6(&self, core: &mut Core, m: &pcp::Map, iaddr: Ipv6Addr, proto: Option<u8>) -> Reply {
        let victims: Vec<u16> = match proto.filter(|_| m.internal_port != 0) {
            Some(p) => match Self::map_pinhole(core, iaddr, p, m.internal_port) {
                None => Vec::new(),
                Some(e) if self.owns(core, &e, m.nonce) => vec![e.id],
                Some(e) => {
                    let code = self.refuse_owner(core, &e);
                    return pcp_error(self.srv, self.pkt, code, true);
                }
            },
            None => core
                .pinholes()
                .iter()
                .filter(|e| {
                    e.origin == Origin::Pcp
                        && e.iaddr == iaddr
                        && proto.is_none_or(|p| p == e.proto)
                        && self.owns(core, e, m.nonce)
                })
                .map(|e| e.id)
                .collect(),
        };
        let sp = core.savepoint();
        for id in victims {
            core.remove_pinhole(id, EventKind::Delete, "deleted by its PCP client");
        }
        self.reply(core, sp, self.success(Body::Map(*m), 0))
    }

    /// PEER (RFC 6887 §12.3) for an IPv6 internal address: a pinhole for
    /// the remote peer's address and port.
    pub(super) fn peer6(&self, core: &mut Core, p: &pcp::Peer) -> Result<Reply, ResultCode> {
        let iaddr = self.internal_addr6()?;
        // RFC 6887 §12.1: none of these may be 0
        if p.protocol == 0 || p.internal_port == 0 || p.remote_peer_port == 0 {
            return Err(ResultCode::MalformedRequest);
        }
        let proto = pin_proto(p.protocol)?;
        let peer = p.remote_peer_addr;
        if peer.is_unspecified() || pcp::is_no_preference(&peer) {
            return Err(ResultCode::MalformedRequest);
        }
        if pcp::unmapped(&peer).is_some() || peer.is_multicast() {
            // an IPv4 peer of an IPv6 host: no such family here
            return Err(ResultCode::NotAuthorized);
        }
        // RFC 6887 §12.3: a suggested port or address we cannot give fails
        if !honours(p.external_port, &p.external_addr, p.internal_port, iaddr) {
            return Err(ResultCode::CannotProvideExternal);
        }
        let mut req = self.request(iaddr, p.internal_port, proto, p.nonce);
        req.remote = Some(peer);
        req.rport = p.remote_peer_port;
        req.peer = true;
        req.lease = self.srv.settings.clamp(self.req.lifetime);
        let now = self.srv.now;
        let tuple = (req.remote, req.rport, iaddr, req.iport, proto);
        if let Some(e) = core.pinholes().by_tuple(&tuple).cloned() {
            if e.origin == Origin::Pcp && e.peer {
                if !self.owns(core, &e, p.nonce) {
                    return Err(self.refuse_owner(core, &e));
                }
                // RFC 6887 §12.3: PEER never shortens a mapping
                req.lease = req.lease.max(e.remaining_secs(now));
            }
        }
        let sp = core.savepoint();
        let id = core
            .add_pinhole(&req, now, self.srv.facts)
            .map_err(pin_result)?;
        let lifetime = core.pinholes().get(id).map_or(0, |x| x.remaining_secs(now));
        let body = Body::Peer(pcp::Peer {
            external_port: p.internal_port,
            external_addr: iaddr,
            ..*p
        });
        Ok(self.reply(core, sp, self.success(body, lifetime)))
    }
}
