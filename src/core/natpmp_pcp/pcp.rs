//! PCP (RFC 6887): ANNOUNCE, MAP (create, renew, delete, with
//! PREFER_FAILURE, FILTER and THIRD_PARTY) and PEER, for IPv4 mappings;
//! requests from IPv6 hosts go on to `pcp6.rs`, which makes pinholes.
//!
//! Owns: the PCP semantics, nonce ownership, and the result codes of
//! policy refusals.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Reply, Server};
use crate::core::policy::{Refusal, Want};
use crate::core::table::{Key, Mapping, Origin, RemoteFilter};
use crate::core::{Core, EventKind, Lease, MapRequest, Savepoint};
use crate::proto::pcp::{self, Body, ResultCode};
use crate::proto::{Proto, natpmp};

pub(super) fn handle(core: &mut Core, srv: &Server, src: IpAddr, pkt: &[u8]) -> Option<Reply> {
    if !srv.settings.pcp {
        // NAT-PMP exists only over IPv4 (RFC 6886 §1): nothing to fall
        // back to
        if src.is_ipv6() {
            return None;
        }
        // RFC 6887 §9: a NAT-PMP-only server answers NAT-PMP's
        // "unsupported version", and the PCP client falls back.
        let op = *pkt.get(1)?;
        if op & pcp::R_BIT != 0 {
            return None;
        }
        return Some(Reply::plain(
            natpmp::unsupported_version(op, srv.epoch).to_vec(),
        ));
    }
    let req = match pcp::parse(pkt) {
        Ok(r) => r,
        Err(pcp::ParseError::Drop) => return None,
        Err(pcp::ParseError::Unparsed(code)) => return Some(pcp_error(srv, pkt, code, false)),
        Err(pcp::ParseError::Invalid(code)) => return Some(pcp_error(srv, pkt, code, true)),
    };
    // RFC 6887 §8.3: a client address that is not the source means a NAT
    // we do not control sits in between (checked for every opcode)
    let sent_from = match src {
        IpAddr::V4(a) => pcp::mapped(a),
        IpAddr::V6(a) => a,
    };
    if req.client_addr != sent_from {
        return Some(pcp_error(srv, pkt, ResultCode::AddressMismatch, true));
    }
    let r = match (req.body, src) {
        // RFC 6887 §14.1: SUCCESS with the epoch, lifetime 0
        (Body::Announce, _) => Ok(Reply::plain(success(srv, &req, Body::Announce, 0))),
        (Body::Map(m), IpAddr::V4(src)) => Exchange::new(srv, src, pkt, &req).map(core, &m),
        (Body::Peer(x), IpAddr::V4(src)) => Exchange::new(srv, src, pkt, &req).peer(core, &x),
        // an IPv6 host: a pinhole (pcp6.rs)
        (Body::Map(m), IpAddr::V6(src)) => Exchange::new(srv, src, pkt, &req).map6(core, &m),
        (Body::Peer(x), IpAddr::V6(src)) => Exchange::new(srv, src, pkt, &req).peer6(core, &x),
    };
    Some(r.unwrap_or_else(|code| pcp_error(srv, pkt, code, true)))
}

/// A success response echoing the request's (understood) options.
fn success(srv: &Server, req: &pcp::Request, body: Body, lifetime: u32) -> Vec<u8> {
    pcp::Response {
        result: ResultCode::Success,
        lifetime,
        epoch: srv.epoch,
        body,
        options: req.options.clone(),
    }
    .emit()
}

pub(super) fn pcp_error(srv: &Server, pkt: &[u8], code: ResultCode, parsed: bool) -> Reply {
    Reply::plain(pcp::error_response(
        pkt,
        code,
        code.error_lifetime(),
        srv.epoch,
        parsed,
    ))
}

/// RFC 6887 §7.4 result codes for policy refusals. `exact`: the request
/// allowed no other external port (PREFER_FAILURE, or PEER with a
/// suggested port).
fn pcp_result(r: &Refusal, exact: bool) -> ResultCode {
    match r {
        Refusal::NotAllowed | Refusal::SecureMode | Refusal::NotOwner => ResultCode::NotAuthorized,
        Refusal::Conflict | Refusal::OtherMechanism(_) | Refusal::NoFreePort if exact => {
            ResultCode::CannotProvideExternal
        }
        Refusal::Conflict | Refusal::OtherMechanism(_) | Refusal::NoFreePort => {
            ResultCode::NoResources
        }
        Refusal::ClientQuota => ResultCode::UserExQuota,
        Refusal::TableFull => ResultCode::NoResources,
        // RFC 6887 §7.4: NETWORK_FAILURE, a short lifetime error
        Refusal::FirewallDown => ResultCode::NetworkFailure,
        // RFC 6887 §7.4: NETWORK_FAILURE "the PCP server or the device it
        // controls is experiencing a network failure of some sort (e.g.,
        // has not yet obtained an external IP address)", a short lifetime
        // error: the path is tested again, and NAT-PMP's 3 says the same.
        // Not NOT_AUTHORIZED, which blames the client for 30 minutes.
        Refusal::Unreachable(_) => ResultCode::NetworkFailure,
    }
}

/// One parsed PCP request from a host of address family `A` being served.
pub(super) struct Exchange<'a, A> {
    pub(super) srv: &'a Server<'a>,
    pub(super) src: A,
    pub(super) pkt: &'a [u8],
    pub(super) req: &'a pcp::Request,
}

impl<'a, A> Exchange<'a, A> {
    fn new(srv: &'a Server<'a>, src: A, pkt: &'a [u8], req: &'a pcp::Request) -> Self {
        Exchange { srv, src, pkt, req }
    }

    /// A success response echoing the request's (understood) options.
    pub(super) fn success(&self, body: Body, lifetime: u32) -> Vec<u8> {
        success(self.srv, self.req, body, lifetime)
    }

    /// A reply for a request that may have changed the core since `sp`.
    pub(super) fn reply(&self, core: &Core, sp: Savepoint, ok: Vec<u8>) -> Reply {
        Reply::after(core, sp, ok, || {
            let c = ResultCode::NoResources;
            pcp::error_response(self.pkt, c, c.error_lifetime(), self.srv.epoch, true)
        })
    }

    /// The THIRD_PARTY address (RFC 6887 §13.1), if the request has one
    /// and it may be used: only when configured, and never the sender's
    /// own address (`own`) or the unspecified one.
    pub(super) fn third_party(&self, own: Ipv6Addr) -> Result<Option<Ipv6Addr>, ResultCode> {
        let Some(a) = self.req.third_party() else {
            return Ok(None);
        };
        if !self.srv.settings.allow_third_party {
            return Err(ResultCode::UnsuppOption);
        }
        if a == own {
            return Err(ResultCode::MalformedRequest);
        }
        if pcp::is_no_preference(&a) {
            return Err(ResultCode::MalformedOption);
        }
        Ok(Some(a))
    }
}

impl Exchange<'_, Ipv4Addr> {
    fn external(&self) -> Result<Ipv4Addr, ResultCode> {
        self.srv.external.ok_or(ResultCode::NetworkFailure)
    }

    /// The internal address: the source, or THIRD_PARTY's (RFC 6887 §13.1).
    fn internal_addr(&self) -> Result<Ipv4Addr, ResultCode> {
        let Some(a) = self.third_party(pcp::mapped(self.src))? else {
            return Ok(self.src);
        };
        // an IPv6 host behind our IPv4 NAT: no such family here
        pcp::unmapped(&a).ok_or(ResultCode::NotAuthorized)
    }

    /// Records a refusal for the logs and returns its code.
    fn refuse(&self, core: &mut Core, req: &MapRequest, r: Refusal) -> ResultCode {
        core.refused(req, &r, self.srv.now);
        pcp_result(&r, !req.want.search)
    }

    fn map_request(
        &self,
        proto: Proto,
        iaddr: Ipv4Addr,
        iport: u16,
        nonce: [u8; 12],
    ) -> MapRequest {
        MapRequest {
            want: Want {
                client: self.src,
                proto,
                eport: 0,
                iaddr,
                iport,
                search: false,
                companion: false,
            },
            remote: None,
            // The nonce is secret (RFC 6887 §11.1: it authorises renewals
            // and deletions), so it is not in the description, which is
            // logged and sent in events.
            desc: "PCP MAP".into(),
            origin: Origin::Pcp,
            lease: Lease::Secs(0),
            nonce: Some(nonce),
            peer_port: None,
        }
    }

    /// MAP (RFC 6887 §11.3).
    fn map(&self, core: &mut Core, m: &pcp::Map) -> Result<Reply, ResultCode> {
        let iaddr = self.internal_addr()?;
        // RFC 6887 §11.1: protocol 0 means all protocols; we map only TCP
        // and UDP, so it is accepted for deletion alone
        let proto = match m.protocol {
            0 => None,
            n => Some(Proto::from_iana(n).ok_or(ResultCode::UnsuppProtocol)?),
        };
        if self.req.lifetime == 0 {
            return Ok(self.delete(core, m, iaddr, proto));
        }
        let proto = proto.ok_or(ResultCode::UnsuppProtocol)?;
        if m.internal_port == 0 {
            // an "all ports" mapping would expose the whole host
            return Err(ResultCode::NotAuthorized);
        }
        let ext = self.external()?;
        let prefer_failure = self.req.prefer_failure();
        // RFC 6887 §13.2: PREFER_FAILURE covers the suggested address too
        if prefer_failure
            && !pcp::is_no_preference(&m.external_addr)
            && m.external_addr != pcp::mapped(ext)
        {
            return Err(ResultCode::CannotProvideExternal);
        }
        let filter = self.filter()?;
        let mut req = self.map_request(proto, iaddr, m.internal_port, m.nonce);
        req.lease = Lease::Secs(self.srv.settings.clamp(self.req.lifetime));
        match core.table().by_internal(iaddr, proto, m.internal_port) {
            Some(e) if e.origin == Origin::Pcp => {
                // RFC 6887 §11.3: a renewal must carry the mapping's nonce
                if e.nonce != Some(m.nonce) || !core.may_manage(self.src, e) {
                    let e = e.clone();
                    return Err(self.refuse_owner(core, &e));
                }
                // … and keeps its external port; FILTER options replace
                // the filter, their absence keeps it. A PEER mapping of the
                // same nonce becomes a plain MAP.
                req.want.eport = e.key.eport;
                req.remote = match filter {
                    Some(f) => f,
                    None if e.peer_port.is_none() => e.remote,
                    None => None,
                };
            }
            // NAT-PMP's mapping of this endpoint is not ours to take over
            Some(_) => return Err(ResultCode::NotAuthorized),
            None => {
                req.want.eport = m.external_port;
                // RFC 6887 §13.2: with PREFER_FAILURE, only the suggested
                // port will do (unless none was suggested)
                req.want.search = !prefer_failure || m.external_port == 0;
                req.remote = filter.flatten();
            }
        }
        let sp = core.savepoint();
        let g = core
            .map(&req, self.srv.now, self.srv.facts)
            .map_err(|r| pcp_result(&r, !req.want.search))?;
        let body = Body::Map(pcp::Map {
            external_port: g.key.eport,
            external_addr: pcp::mapped(ext),
            ..*m
        });
        let lifetime = match req.lease {
            Lease::Secs(s) => s,
            Lease::Permanent => 0,
        };
        Ok(self.reply(core, sp, self.success(body, lifetime)))
    }

    fn refuse_owner(&self, core: &mut Core, e: &Mapping) -> ResultCode {
        let req = MapRequest {
            want: Want {
                client: self.src,
                proto: e.key.proto,
                eport: e.key.eport,
                iaddr: e.iaddr,
                iport: e.iport,
                search: false,
                companion: false,
            },
            remote: e.remote,
            desc: e.desc.clone(),
            origin: Origin::Pcp,
            lease: Lease::Secs(0),
            nonce: e.nonce,
            peer_port: e.peer_port,
        };
        self.refuse(core, &req, Refusal::NotOwner)
    }

    /// The FILTER options reduced to the one filter a mapping can hold
    /// (RFC 6887 §13.3). `None`: no FILTER option; `Some(None)`: accept
    /// every peer (prefix length 0 removes filters). Our mappings hold
    /// one remote-peer prefix without a port, so several distinct filters
    /// or a filter on a remote port are EXCESSIVE_REMOTE_PEERS.
    fn filter(&self) -> Result<Option<Option<RemoteFilter>>, ResultCode> {
        let mut any = false;
        let mut all_peers = false;
        let mut one: Option<RemoteFilter> = None;
        for f in self.req.filters() {
            any = true;
            if f.prefix_len == 0 {
                all_peers = false;
                one = None;
                continue;
            }
            // an IPv6 peer cannot reach an IPv4 mapping
            let a = pcp::unmapped(&f.remote_peer_addr).ok_or(ResultCode::MalformedOption)?;
            if f.remote_peer_port != 0 {
                return Err(ResultCode::ExcessiveRemotePeers);
            }
            // the parser has checked 96..=128 for IPv4-mapped addresses
            let n = f.prefix_len.saturating_sub(96).min(32);
            if n == 0 {
                all_peers = true;
                continue;
            }
            let mask = u32::MAX << (32 - u32::from(n));
            let rf = RemoteFilter {
                addr: Ipv4Addr::from(u32::from(a) & mask),
                prefix: n,
            };
            match one {
                Some(x) if x != rf => return Err(ResultCode::ExcessiveRemotePeers),
                _ => one = Some(rf),
            }
        }
        Ok(any.then_some(if all_peers { None } else { one }))
    }

    /// MAP with lifetime 0 (RFC 6887 §15). Internal port 0 (or protocol
    /// 0, whose internal port is ignored, §11.1) deletes all of this
    /// internal host's PCP mappings with the request's nonce; mappings of
    /// other nonces are left alone. A single named mapping with another
    /// nonce, or made by NAT-PMP, is NOT_AUTHORIZED. Deleting what does
    /// not exist succeeds. The answer echoes the request's suggested port
    /// and address, so a retransmission gets the same answer.
    fn delete(
        &self,
        core: &mut Core,
        m: &pcp::Map,
        iaddr: Ipv4Addr,
        proto: Option<Proto>,
    ) -> Reply {
        let victims: Vec<Key> = match proto {
            Some(p) if m.internal_port != 0 => {
                match core.table().by_internal(iaddr, p, m.internal_port) {
                    None => Vec::new(),
                    Some(e)
                        if e.origin == Origin::Pcp
                            && e.nonce == Some(m.nonce)
                            && core.may_manage(self.src, e) =>
                    {
                        vec![e.key]
                    }
                    Some(e) => {
                        let e = e.clone();
                        let code = if e.origin == Origin::Pcp {
                            self.refuse_owner(core, &e)
                        } else {
                            ResultCode::NotAuthorized
                        };
                        return pcp_error(self.srv, self.pkt, code, true);
                    }
                }
            }
            _ => core
                .table()
                .iter()
                .filter(|e| {
                    e.origin == Origin::Pcp
                        && e.iaddr == iaddr
                        && proto.is_none_or(|p| p == e.key.proto)
                        && e.nonce == Some(m.nonce)
                        && core.may_manage(self.src, e)
                })
                .map(|e| e.key)
                .collect(),
        };
        let sp = core.savepoint();
        for k in &victims {
            core.remove(k, EventKind::Delete, "deleted by its PCP client");
        }
        self.reply(core, sp, self.success(Body::Map(*m), 0))
    }

    /// PEER (RFC 6887 §12.3).
    fn peer(&self, core: &mut Core, p: &pcp::Peer) -> Result<Reply, ResultCode> {
        let iaddr = self.internal_addr()?;
        // RFC 6887 §12.1: none of these may be 0
        if p.protocol == 0 || p.internal_port == 0 || p.remote_peer_port == 0 {
            return Err(ResultCode::MalformedRequest);
        }
        let proto = Proto::from_iana(p.protocol).ok_or(ResultCode::UnsuppProtocol)?;
        let peer = match pcp::unmapped(&p.remote_peer_addr) {
            Some(a) if a.is_unspecified() => return Err(ResultCode::MalformedRequest),
            Some(a) => a,
            // an IPv6 peer through our IPv4 NAT: no such family here
            None => return Err(ResultCode::NotAuthorized),
        };
        let ext = self.external()?;
        // RFC 6887 §12.3: a suggested address we cannot give fails
        if !pcp::is_no_preference(&p.external_addr) && p.external_addr != pcp::mapped(ext) {
            return Err(ResultCode::CannotProvideExternal);
        }
        let requested = self.srv.settings.clamp(self.req.lifetime);
        let mut req = self.map_request(proto, iaddr, p.internal_port, p.nonce);
        req.desc = "PCP PEER".into();
        req.remote = Some(RemoteFilter::host(peer));
        req.peer_port = Some(p.remote_peer_port);
        let respond = |eport: u16, lifetime: u32| {
            let body = Body::Peer(pcp::Peer {
                external_port: eport,
                external_addr: pcp::mapped(ext),
                ..*p
            });
            self.success(body, lifetime)
        };
        let now = self.srv.now;
        let lifetime = match core.table().by_internal(iaddr, proto, p.internal_port) {
            Some(e) if e.origin == Origin::Pcp && e.peer_port.is_some() => {
                if e.remote != req.remote || e.peer_port != req.peer_port {
                    // one remote peer per internal endpoint: the table
                    // has no room for a second flow of the same endpoint
                    return Err(ResultCode::NoResources);
                }
                if e.nonce != Some(p.nonce) || !core.may_manage(self.src, e) {
                    let e = e.clone();
                    return Err(self.refuse_owner(core, &e));
                }
                req.want.eport = e.key.eport;
                // RFC 6887 §12.3: PEER never shortens a mapping
                requested.max(e.remaining_secs(now).unwrap_or(0))
            }
            Some(e) => {
                // A MAP or NAT-PMP mapping of this endpoint already carries
                // its flows (mappings are bidirectional, RFC 6886 §3.3):
                // report it, unchanged.
                let life = e
                    .remaining_secs(now)
                    .unwrap_or(self.srv.settings.max_lifetime);
                return Ok(Reply::plain(respond(e.key.eport, life)));
            }
            None => {
                req.want.eport = p.external_port;
                // a suggested port that cannot be had fails (§12.3)
                req.want.search = p.external_port == 0;
                requested
            }
        };
        req.lease = Lease::Secs(lifetime);
        let sp = core.savepoint();
        let g = core
            .map(&req, now, self.srv.facts)
            .map_err(|r| pcp_result(&r, !req.want.search))?;
        Ok(self.reply(core, sp, respond(g.key.eport, lifetime)))
    }
}
