//! NAT-PMP (RFC 6886) and PCP (RFC 6887) request handling: one datagram
//! received on UDP 5351 from a LAN host in, at most one reply out.
//!
//! Owns: version dispatch (0 → NAT-PMP, 2 → PCP, anything else →
//! UNSUPP_VERSION), the request semantics (create, renew, delete, PEER,
//! ANNOUNCE, options), the mapping of policy refusals to result codes, and
//! the announcement packets. Every mapping goes through [`Core::map`], so
//! NAT-PMP, PCP and UPnP share one table, one policy and one port search.
//! Must not import `sys`, `daemon` or tokio, and never reads a clock: the
//! caller passes `now` and the epoch.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::config::Config;
use crate::core::policy::{Environment, Refusal, Renewal, Want};
use crate::core::table::{Key, Mapping, Millis, Origin, RemoteFilter};
use crate::core::{Core, EventKind, Lease, MapRequest};
use crate::proto::pcp::{self, Body, ResultCode};
use crate::proto::{Proto, natpmp};

/// The NAT-PMP/PCP part of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmpConfig {
    pub natpmp: bool,
    pub pcp: bool,
    /// Granted lifetimes are clamped to `min_lifetime..=max_lifetime`
    /// seconds for both protocols (RFC 6887 §15; miniupnpd does not clamp
    /// NAT-PMP, we do).
    pub min_lifetime: u32,
    pub max_lifetime: u32,
    /// Accept the PCP THIRD_PARTY option (RFC 6887 §13.1).
    pub allow_third_party: bool,
}

impl PmpConfig {
    pub fn from_config(cfg: &Config) -> PmpConfig {
        PmpConfig {
            natpmp: cfg.enable_natpmp,
            pcp: cfg.enable_pcp,
            min_lifetime: cfg.min_lifetime,
            max_lifetime: cfg.max_lifetime,
            allow_third_party: cfg.pcp_allow_thirdparty,
        }
    }

    /// A requested lifetime brought within the configured bounds (a
    /// maximum below the minimum is read as the minimum).
    pub fn clamp(&self, secs: u32) -> u32 {
        secs.max(self.min_lifetime)
            .min(self.max_lifetime.max(self.min_lifetime))
    }
}

/// What the handler needs to know besides the core.
pub struct Ctx<'a> {
    pub cfg: &'a PmpConfig,
    /// The external IPv4 address; `None` while there is none (no lease,
    /// link down): new mappings then get NAT-PMP 3 / PCP NETWORK_FAILURE.
    pub external: Option<Ipv4Addr>,
    /// Seconds since the start of the epoch (RFC 6886 §3.6, RFC 6887
    /// §8.5), computed by the caller; it restarts at 0 when mapping state
    /// is lost or the external address changes.
    pub epoch: u32,
    pub now: Millis,
    pub env: &'a dyn Environment,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Sent if this loop turn's firewall transaction succeeds (or if the
    /// request changed nothing).
    pub ok: Vec<u8>,
    /// Sent instead if the transaction fails; the daemon then rolls the
    /// table back. `Some` exactly when the request changed the table.
    pub on_failure: Option<Vec<u8>>,
}

impl Reply {
    fn plain(ok: Vec<u8>) -> Reply {
        Reply {
            ok,
            on_failure: None,
        }
    }
}

/// When each of the 10 announcements after an address change or state
/// loss goes out, in ms after the event: 250 ms apart at first, the gap
/// doubling each time (RFC 6886 §3.2.1; RFC 6887 §14.1.3 for PCP).
pub const ANNOUNCE_SCHEDULE: [Millis; 10] = [
    0, 250, 750, 1_750, 3_750, 7_750, 15_750, 31_750, 63_750, 127_750,
];

/// The gratuitous NAT-PMP public address response, for 224.0.0.1:5350
/// (RFC 6886 §3.2.1).
pub fn natpmp_announcement(epoch: u32, external: Ipv4Addr) -> Vec<u8> {
    natpmp::PublicAddressResponse {
        result: natpmp::ResultCode::Success,
        epoch,
        external,
    }
    .emit()
    .to_vec()
}

/// The unsolicited PCP ANNOUNCE response (RFC 6887 §14.1.3). The daemon
/// serves NAT-PMP and PCP over IPv4 only, so it goes to 224.0.0.1:5350;
/// RFC 6887 also names [ff02::1]:5350 for servers reachable over IPv6.
pub fn pcp_announcement(epoch: u32) -> Vec<u8> {
    pcp::announcement(epoch)
}

/// Handles one datagram from `src` (a LAN host) received on port 5351.
/// `None` means: send nothing.
pub fn handle(core: &mut Core, ctx: &Ctx, src: SocketAddrV4, pkt: &[u8]) -> Option<Reply> {
    if !ctx.cfg.natpmp && !ctx.cfg.pcp {
        // RFC 6886 §3.8: with both off the port should be closed; if a
        // packet still arrives, stay silent
        return None;
    }
    let src = *src.ip();
    match *pkt.first()? {
        natpmp::VERSION => handle_natpmp(core, ctx, src, pkt),
        _ => handle_pcp(core, ctx, src, pkt),
    }
}

// ---------------------------------------------------------------- NAT-PMP

fn handle_natpmp(core: &mut Core, ctx: &Ctx, src: Ipv4Addr, pkt: &[u8]) -> Option<Reply> {
    let req = match natpmp::parse(pkt) {
        Ok(r) => r,
        Err(natpmp::ParseError::Drop) => return None,
        Err(natpmp::ParseError::UnsupportedVersion { op }) => {
            let r = natpmp::unsupported_version(op, ctx.epoch);
            return Some(Reply::plain(r.to_vec()));
        }
        Err(natpmp::ParseError::UnsupportedOpcode) => {
            return Some(Reply::plain(natpmp::unsupported_opcode(pkt, ctx.epoch)));
        }
    };
    match req {
        natpmp::Request::PublicAddress => {
            let (result, external) = match ctx.external {
                _ if !ctx.cfg.natpmp => (natpmp::ResultCode::NotAuthorized, Ipv4Addr::UNSPECIFIED),
                Some(a) => (natpmp::ResultCode::Success, a),
                None => (natpmp::ResultCode::NetworkFailure, Ipv4Addr::UNSPECIFIED),
            };
            let r = natpmp::PublicAddressResponse {
                result,
                epoch: ctx.epoch,
                external,
            };
            Some(Reply::plain(r.emit().to_vec()))
        }
        natpmp::Request::Map(m) => Some(natpmp_map(core, ctx, src, m)),
    }
}

fn natpmp_response(
    ctx: &Ctx,
    m: &natpmp::MapRequest,
    result: natpmp::ResultCode,
    eport: u16,
    lifetime: u32,
) -> Vec<u8> {
    natpmp::MapResponse {
        proto: m.proto,
        result,
        epoch: ctx.epoch,
        internal_port: m.internal_port,
        external_port: eport,
        lifetime,
    }
    .emit()
    .to_vec()
}

/// RFC 6886 §3.5 result codes for policy refusals.
fn natpmp_result(r: &Refusal) -> natpmp::ResultCode {
    use natpmp::ResultCode::*;
    match r {
        Refusal::NotAllowed | Refusal::SecureMode | Refusal::NotOwner => NotAuthorized,
        Refusal::Conflict
        | Refusal::OtherMechanism(_)
        | Refusal::ClientQuota
        | Refusal::TableFull
        | Refusal::NoFreePort => OutOfResources,
        Refusal::Firewall(_) => NetworkFailure,
    }
}

fn natpmp_map(core: &mut Core, ctx: &Ctx, src: Ipv4Addr, m: natpmp::MapRequest) -> Reply {
    use natpmp::ResultCode::*;
    let fail = |code| Reply::plain(natpmp_response(ctx, &m, code, 0, 0));
    if !ctx.cfg.natpmp {
        // RFC 6886 §3.5: disabled by the administrator
        return fail(NotAuthorized);
    }
    if m.lifetime == 0 {
        return natpmp_delete(core, ctx, src, &m);
    }
    if m.internal_port == 0 {
        // internal port 0 only makes sense in a deletion (RFC 6886 §3.4)
        return fail(NotAuthorized);
    }
    if ctx.external.is_none() {
        return fail(NetworkFailure);
    }
    let lifetime = ctx.cfg.clamp(m.lifetime);
    // RFC 6886 §3.3: one mapping per internal endpoint; a repeated request
    // renews it and keeps its external port
    let (eport, search) = match core.table.by_internal(src, m.proto, m.internal_port) {
        Some(e) if e.origin == Origin::NatPmp => (e.key.eport, false),
        // a PCP mapping of this endpoint belongs to its nonce holder
        Some(_) => return fail(NotAuthorized),
        None if m.suggested_external_port == 0 => (m.internal_port, true),
        None => (m.suggested_external_port, true),
    };
    let mut req = MapRequest {
        want: Want {
            client: src,
            proto: m.proto,
            eport,
            iaddr: src,
            iport: m.internal_port,
            search,
            // RFC 6886 §3.3: the same port of the other protocol is
            // reserved for this host too
            companion: true,
        },
        remote: None,
        desc: String::new(),
        origin: Origin::NatPmp,
        lease: Lease::Secs(lifetime),
        nonce: None,
        peer_port: None,
    };
    // Choose first so the description can name the external port; the
    // table is unchanged in between, so `map` finds the same key.
    let key = match core
        .policy
        .choose_with(&core.table, ctx.env, &req.want, Renewal::SameEndpoint)
    {
        Ok((k, _)) => k,
        Err(r) => {
            core.refused(&req, &r, ctx.now);
            return fail(natpmp_result(&r));
        }
    };
    req.want.eport = key.eport;
    req.want.search = false;
    req.desc = format!("NAT-PMP {} {}", key.eport, m.proto.as_lower());
    let sp = core.table.savepoint();
    match core.map(&req, ctx.now, ctx.env) {
        Ok(g) => Reply {
            ok: natpmp_response(ctx, &m, Success, g.key.eport, lifetime),
            on_failure: changed(core, sp).then(|| natpmp_response(ctx, &m, NetworkFailure, 0, 0)),
        },
        Err(r) => fail(natpmp_result(&r)),
    }
}

/// RFC 6886 §3.4. Internal port 0 deletes all of the sender's NAT-PMP
/// mappings of the request's protocol only, as the RFC ties the bulk
/// deletion to the opcode (miniupnpd deletes both protocols). Mappings
/// made by PCP or UPnP are not NAT-PMP's to delete: naming one answers 2.
fn natpmp_delete(core: &mut Core, ctx: &Ctx, src: Ipv4Addr, m: &natpmp::MapRequest) -> Reply {
    use natpmp::ResultCode::*;
    let victims: Vec<Key> = if m.internal_port == 0 {
        core.table
            .iter()
            .filter(|x| x.origin == Origin::NatPmp && x.iaddr == src && x.key.proto == m.proto)
            .map(|x| x.key)
            .collect()
    } else {
        match core.table.by_internal(src, m.proto, m.internal_port) {
            None => Vec::new(),
            Some(x) if x.origin == Origin::NatPmp && core.may_manage(src, x) => vec![x.key],
            Some(_) => return Reply::plain(natpmp_response(ctx, m, NotAuthorized, 0, 0)),
        }
    };
    let sp = core.table.savepoint();
    for k in &victims {
        core.remove(k, EventKind::Delete, "deleted by its NAT-PMP client");
    }
    // A mapping that does not exist is deleted successfully, so a
    // retransmitted request gets the same answer (RFC 6886 §3.4).
    Reply {
        ok: natpmp_response(ctx, m, Success, 0, 0),
        on_failure: changed(core, sp).then(|| natpmp_response(ctx, m, NetworkFailure, 0, 0)),
    }
}

// -------------------------------------------------------------------- PCP

fn handle_pcp(core: &mut Core, ctx: &Ctx, src: Ipv4Addr, pkt: &[u8]) -> Option<Reply> {
    if !ctx.cfg.pcp {
        // RFC 6887 §9: a NAT-PMP-only server answers NAT-PMP's
        // "unsupported version", and the PCP client falls back.
        let op = *pkt.get(1)?;
        if op & pcp::R_BIT != 0 {
            return None;
        }
        return Some(Reply::plain(
            natpmp::unsupported_version(op, ctx.epoch).to_vec(),
        ));
    }
    let req = match pcp::parse(pkt) {
        Ok(r) => r,
        Err(pcp::ParseError::Drop) => return None,
        Err(pcp::ParseError::Unparsed(code)) => return Some(pcp_error(ctx, pkt, code, false)),
        Err(pcp::ParseError::Invalid(code)) => return Some(pcp_error(ctx, pkt, code, true)),
    };
    // RFC 6887 §8.3: a client address that is not the source means a NAT
    // we do not control sits in between (checked for every opcode)
    if req.client_addr != pcp::mapped(src) {
        return Some(pcp_error(ctx, pkt, ResultCode::AddressMismatch, true));
    }
    let p = Pcp {
        ctx,
        src,
        pkt,
        req: &req,
    };
    let r = match req.body {
        // RFC 6887 §14.1: SUCCESS with the epoch, lifetime 0
        Body::Announce => Ok(Reply::plain(p.success(Body::Announce, 0))),
        Body::Map(m) => p.map(core, &m),
        Body::Peer(x) => p.peer(core, &x),
    };
    Some(r.unwrap_or_else(|code| pcp_error(ctx, pkt, code, true)))
}

fn pcp_error(ctx: &Ctx, pkt: &[u8], code: ResultCode, parsed: bool) -> Reply {
    Reply::plain(pcp::error_response(
        pkt,
        code,
        code.error_lifetime(),
        ctx.epoch,
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
        Refusal::TableFull | Refusal::Firewall(_) => ResultCode::NoResources,
    }
}

fn changed(core: &Core, sp: usize) -> bool {
    core.table.savepoint() != sp
}

/// One parsed PCP request being served.
struct Pcp<'a> {
    ctx: &'a Ctx<'a>,
    src: Ipv4Addr,
    pkt: &'a [u8],
    req: &'a pcp::Request,
}

impl Pcp<'_> {
    /// A success response echoing the request's (understood) options.
    fn success(&self, body: Body, lifetime: u32) -> Vec<u8> {
        pcp::Response {
            result: ResultCode::Success,
            lifetime,
            epoch: self.ctx.epoch,
            body,
            options: self.req.options.clone(),
        }
        .emit()
    }

    /// A reply for a request that changed the table since `sp`.
    fn reply(&self, core: &Core, sp: usize, ok: Vec<u8>) -> Reply {
        Reply {
            ok,
            on_failure: changed(core, sp).then(|| {
                let c = ResultCode::NoResources;
                pcp::error_response(self.pkt, c, c.error_lifetime(), self.ctx.epoch, true)
            }),
        }
    }

    fn external(&self) -> Result<Ipv4Addr, ResultCode> {
        self.ctx.external.ok_or(ResultCode::NetworkFailure)
    }

    /// The internal address: the source, or THIRD_PARTY's (RFC 6887 §13.1).
    fn internal_addr(&self) -> Result<Ipv4Addr, ResultCode> {
        let Some(a) = self.req.third_party() else {
            return Ok(self.src);
        };
        if !self.ctx.cfg.allow_third_party {
            return Err(ResultCode::UnsuppOption);
        }
        if a == pcp::mapped(self.src) {
            return Err(ResultCode::MalformedRequest);
        }
        match pcp::unmapped(&a) {
            Some(v4) if v4.is_unspecified() => Err(ResultCode::MalformedOption),
            Some(v4) => Ok(v4),
            // an IPv6 host behind our IPv4 NAT: no such family here
            None => Err(ResultCode::NotAuthorized),
        }
    }

    /// Records a refusal for the logs and returns its code.
    fn refuse(&self, core: &mut Core, req: &MapRequest, r: Refusal) -> ResultCode {
        core.refused(req, &r, self.ctx.now);
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
            // listed, logged and sent in events.
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
        req.lease = Lease::Secs(self.ctx.cfg.clamp(self.req.lifetime));
        match core.table.by_internal(iaddr, proto, m.internal_port) {
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
        let sp = core.table.savepoint();
        let g = core
            .map(&req, self.ctx.now, self.ctx.env)
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
                match core.table.by_internal(iaddr, p, m.internal_port) {
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
                        return pcp_error(self.ctx, self.pkt, code, true);
                    }
                }
            }
            _ => core
                .table
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
        let sp = core.table.savepoint();
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
        let requested = self.ctx.cfg.clamp(self.req.lifetime);
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
        let now = self.ctx.now;
        let lifetime = match core.table.by_internal(iaddr, proto, p.internal_port) {
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
                let life = e.remaining_secs(now).unwrap_or(self.ctx.cfg.max_lifetime);
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
        let sp = core.table.savepoint();
        let g = core
            .map(&req, now, self.ctx.env)
            .map_err(|r| pcp_result(&r, !req.want.search))?;
        Ok(self.reply(core, sp, respond(g.key.eport, lifetime)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::policy::{NoListeners, Policy};
    use crate::proto::pcp::{Filter, PcpOption};
    use std::net::Ipv6Addr;

    const EXT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    const EPOCH: u32 = 1000;
    const CFG: PmpConfig = PmpConfig {
        natpmp: true,
        pcp: true,
        min_lifetime: 120,
        max_lifetime: 86400,
        allow_third_party: false,
    };

    fn host(d: u8) -> Ipv4Addr {
        Ipv4Addr::new(192, 168, 1, d)
    }

    fn core() -> Core {
        let cfg = Config {
            max_mappings_per_client: 8,
            max_mappings: 64,
            ..Config::default()
        };
        Core::new(Policy::from_config(&cfg, vec![]))
    }

    fn ctx(cfg: &PmpConfig) -> Ctx<'_> {
        Ctx {
            cfg,
            external: Some(EXT),
            epoch: EPOCH,
            now: 10_000,
            env: &NoListeners,
        }
    }

    fn send(core: &mut Core, ctx: &Ctx, from: u8, pkt: &[u8]) -> Option<Reply> {
        handle(core, ctx, SocketAddrV4::new(host(from), 40000), pkt)
    }

    /// The reply that goes out when the firewall succeeds.
    fn ask(core: &mut Core, from: u8, pkt: &[u8]) -> Vec<u8> {
        send(core, &ctx(&CFG), from, pkt).expect("a reply").ok
    }

    // ------------------------------------------------------------ NAT-PMP

    fn pmp_map(proto: Proto, iport: u16, eport: u16, lifetime: u32) -> Vec<u8> {
        natpmp::Request::Map(natpmp::MapRequest {
            proto,
            internal_port: iport,
            suggested_external_port: eport,
            lifetime,
        })
        .emit()
    }

    fn pmp_resp(
        proto: Proto,
        result: natpmp::ResultCode,
        iport: u16,
        eport: u16,
        life: u32,
    ) -> Vec<u8> {
        natpmp::MapResponse {
            proto,
            result,
            epoch: EPOCH,
            internal_port: iport,
            external_port: eport,
            lifetime: life,
        }
        .emit()
        .to_vec()
    }

    use natpmp::ResultCode as N;

    #[test]
    fn natpmp_public_address() {
        let mut c = core();
        assert_eq!(
            ask(&mut c, 2, &[0, 0]),
            vec![0, 128, 0, 0, 0, 0, 3, 0xe8, 203, 0, 113, 1]
        );
        let mut x = ctx(&CFG);
        x.external = None;
        let r = send(&mut c, &x, 2, &[0, 0]).unwrap();
        assert_eq!(r.ok, vec![0, 128, 0, 3, 0, 0, 3, 0xe8, 0, 0, 0, 0]);
        let off = PmpConfig {
            natpmp: false,
            ..CFG
        };
        let r = send(&mut c, &ctx(&off), 2, &[0, 0]).unwrap();
        assert_eq!(r.ok, vec![0, 128, 0, 2, 0, 0, 3, 0xe8, 0, 0, 0, 0]);
    }

    #[test]
    fn natpmp_map_renew_delete() {
        let mut c = core();
        // natpmpc -a 7000 27000 tcp 600
        let r = send(
            &mut c,
            &ctx(&CFG),
            2,
            &pmp_map(Proto::Tcp, 27000, 7000, 600),
        )
        .unwrap();
        assert_eq!(r.ok, pmp_resp(Proto::Tcp, N::Success, 27000, 7000, 600));
        assert_eq!(
            r.on_failure,
            Some(pmp_resp(Proto::Tcp, N::NetworkFailure, 27000, 0, 0))
        );
        let m = c.table.get(&Key::new(Proto::Tcp, 7000)).unwrap().clone();
        assert_eq!((m.iaddr, m.iport, m.client), (host(2), 27000, host(2)));
        assert_eq!(m.desc, "NAT-PMP 7000 tcp");
        assert_eq!(m.origin, Origin::NatPmp);
        assert_eq!(m.expires, Some(10_000 + 600_000));
        // a renewal keeps the port whatever it suggests, and the new lifetime
        assert_eq!(
            ask(&mut c, 2, &pmp_map(Proto::Tcp, 27000, 9999, 7200)),
            pmp_resp(Proto::Tcp, N::Success, 27000, 7000, 7200)
        );
        assert_eq!(c.table.len(), 1);
        // delete, then delete again: the same success both times
        let del = pmp_map(Proto::Tcp, 27000, 0, 0);
        let r = send(&mut c, &ctx(&CFG), 2, &del).unwrap();
        assert_eq!(r.ok, pmp_resp(Proto::Tcp, N::Success, 27000, 0, 0));
        assert!(r.on_failure.is_some());
        assert!(c.table.is_empty());
        let r = send(&mut c, &ctx(&CFG), 2, &del).unwrap();
        assert_eq!(r.ok, pmp_resp(Proto::Tcp, N::Success, 27000, 0, 0));
        assert_eq!(r.on_failure, None);
        let kinds: Vec<_> = c.take_events().iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![EventKind::Add, EventKind::Renew, EventKind::Delete]
        );
    }

    #[test]
    fn natpmp_ports_and_lifetimes() {
        let mut c = core();
        // no suggestion: the internal port
        assert_eq!(
            ask(&mut c, 2, &pmp_map(Proto::Udp, 5000, 0, 30)),
            pmp_resp(Proto::Udp, N::Success, 5000, 5000, 120)
        );
        assert_eq!(
            ask(&mut c, 2, &pmp_map(Proto::Udp, 5001, 0, u32::MAX)),
            pmp_resp(Proto::Udp, N::Success, 5001, 5001, 86400)
        );
        // internal port 0 is only for deletion
        assert_eq!(
            ask(&mut c, 2, &pmp_map(Proto::Udp, 0, 0, 60)),
            pmp_resp(Proto::Udp, N::NotAuthorized, 0, 0, 0)
        );
        // the permission rules deny low internal ports: no search at all
        assert_eq!(
            ask(&mut c, 2, &pmp_map(Proto::Tcp, 80, 80, 60)),
            pmp_resp(Proto::Tcp, N::NotAuthorized, 80, 0, 0)
        );
        // a denied external port is searched around
        assert_eq!(
            ask(&mut c, 2, &pmp_map(Proto::Tcp, 8080, 80, 60)),
            pmp_resp(Proto::Tcp, N::Success, 8080, 1024, 120)
        );
        // no external address
        let mut x = ctx(&CFG);
        x.external = None;
        let r = send(&mut c, &x, 2, &pmp_map(Proto::Tcp, 9000, 0, 60)).unwrap();
        assert_eq!(r.ok, pmp_resp(Proto::Tcp, N::NetworkFailure, 9000, 0, 0));
        // disabled
        let off = PmpConfig {
            natpmp: false,
            ..CFG
        };
        let r = send(&mut c, &ctx(&off), 2, &pmp_map(Proto::Tcp, 9000, 0, 60)).unwrap();
        assert_eq!(r.ok, pmp_resp(Proto::Tcp, N::NotAuthorized, 9000, 0, 0));
    }

    #[test]
    fn natpmp_collisions_and_companion() {
        let mut c = core();
        ask(&mut c, 2, &pmp_map(Proto::Tcp, 7000, 7000, 600));
        // another host: the next free port
        assert_eq!(
            ask(&mut c, 3, &pmp_map(Proto::Tcp, 7000, 7000, 600)),
            pmp_resp(Proto::Tcp, N::Success, 7000, 7001, 600)
        );
        // UDP 7000 is host 2's companion port; 7001's companion is host 3's own
        assert_eq!(
            ask(&mut c, 3, &pmp_map(Proto::Udp, 7000, 7000, 600)),
            pmp_resp(Proto::Udp, N::Success, 7000, 7001, 600)
        );
        // host 2 itself may have its companion
        assert_eq!(
            ask(&mut c, 2, &pmp_map(Proto::Udp, 7000, 7000, 600)),
            pmp_resp(Proto::Udp, N::Success, 7000, 7000, 600)
        );
        // another internal port of host 2 does not take over 7000
        assert_eq!(
            ask(&mut c, 2, &pmp_map(Proto::Tcp, 7005, 7000, 600)),
            pmp_resp(Proto::Tcp, N::Success, 7005, 7002, 600)
        );
    }

    #[test]
    fn natpmp_quota_is_out_of_resources() {
        let mut c = core();
        for p in 0..8 {
            ask(&mut c, 2, &pmp_map(Proto::Udp, 6000 + p, 0, 600));
        }
        assert_eq!(
            ask(&mut c, 2, &pmp_map(Proto::Udp, 6100, 0, 600)),
            pmp_resp(Proto::Udp, N::OutOfResources, 6100, 0, 0)
        );
        // renewing is still possible
        assert_eq!(
            ask(&mut c, 2, &pmp_map(Proto::Udp, 6000, 0, 600)),
            pmp_resp(Proto::Udp, N::Success, 6000, 6000, 600)
        );
    }

    #[test]
    fn natpmp_delete_all_of_one_protocol() {
        let mut c = core();
        for p in [5000, 5001] {
            ask(&mut c, 2, &pmp_map(Proto::Udp, p, 0, 600));
            ask(&mut c, 2, &pmp_map(Proto::Tcp, p, 0, 600));
        }
        ask(&mut c, 3, &pmp_map(Proto::Udp, 6000, 0, 600));
        let r = ask(&mut c, 2, &pmp_map(Proto::Udp, 0, 0, 0));
        assert_eq!(r, pmp_resp(Proto::Udp, N::Success, 0, 0, 0));
        let left: Vec<_> = c.table.iter().map(|m| (m.key.proto, m.key.eport)).collect();
        assert_eq!(
            left,
            vec![(Proto::Tcp, 5000), (Proto::Tcp, 5001), (Proto::Udp, 6000)]
        );
    }

    #[test]
    fn natpmp_errors_and_silence() {
        let mut c = core();
        // unsupported opcode: the request echoed, OP | 128, result 5, SSSoE
        assert_eq!(ask(&mut c, 2, &[0, 3]), vec![0, 131, 0, 5, 0, 0, 3, 0xe8]);
        assert_eq!(
            ask(&mut c, 2, &[0, 9, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
            vec![0, 137, 0, 5, 0, 0, 3, 0xe8, 1, 2, 3, 4]
        );
        // responses, short packets: nothing
        for pkt in [
            &[][..],
            &[0],
            &[0, 128],
            &[0, 130, 0, 0],
            &[0, 1, 0, 0, 1, 1],
        ] {
            assert_eq!(send(&mut c, &ctx(&CFG), 2, pkt), None, "{pkt:?}");
        }
    }

    // ---------------------------------------------------------------- PCP

    use pcp::ResultCode as P;

    fn nonce(n: u8) -> [u8; 12] {
        [n; 12]
    }

    fn map_body(n: u8, proto: u8, iport: u16, eport: u16) -> Body {
        Body::Map(pcp::Map {
            nonce: nonce(n),
            protocol: proto,
            internal_port: iport,
            external_port: eport,
            external_addr: pcp::mapped(Ipv4Addr::UNSPECIFIED),
        })
    }

    fn pcp_req(from: u8, lifetime: u32, body: Body, options: Vec<PcpOption>) -> Vec<u8> {
        pcp::Request {
            lifetime,
            client_addr: pcp::mapped(host(from)),
            body,
            options,
        }
        .emit()
    }

    fn pcp_map(
        from: u8,
        n: u8,
        iport: u16,
        eport: u16,
        life: u32,
        opts: Vec<PcpOption>,
    ) -> Vec<u8> {
        pcp_req(from, life, map_body(n, 6, iport, eport), opts)
    }

    fn parsed(b: &[u8]) -> pcp::Response {
        pcp::Response::parse(b).expect("a PCP response")
    }

    /// (result, lifetime, assigned external port)
    fn outcome(b: &[u8]) -> (ResultCode, u32, u16) {
        let r = parsed(b);
        let port = match r.body {
            Body::Map(m) => m.external_port,
            Body::Peer(p) => p.external_port,
            Body::Announce => 0,
        };
        (r.result, r.lifetime, port)
    }

    #[test]
    fn pcp_map_create_exact_bytes() {
        let mut c = core();
        let req = pcp_map(2, 7, 7200, 27200, 3600, vec![]);
        let r = send(&mut c, &ctx(&CFG), 2, &req).unwrap();
        let mut want = Vec::new();
        want.extend([2, 0x81, 0, 0, 0, 0, 0x0e, 0x10, 0, 0, 0x03, 0xe8]);
        want.extend([0; 12]);
        want.extend([7; 12]);
        want.extend([6, 0, 0, 0, 0x1c, 0x20, 0x6a, 0x40]);
        want.extend(pcp::mapped(EXT).octets());
        assert_eq!(r.ok, want);
        // a failed firewall transaction answers NO_RESOURCES (short)
        let fail = r.on_failure.unwrap();
        assert_eq!(&fail[..12], &[2, 0x81, 0, 8, 0, 0, 0, 30, 0, 0, 0x03, 0xe8]);
        assert_eq!(fail.len(), req.len());
        let m = c.table.get(&Key::new(Proto::Tcp, 27200)).unwrap();
        // the nonce is secret (it authorises renewals): the description,
        // which is listed, logged and sent in events, does not hold it
        assert_eq!(m.desc, "PCP MAP");
        assert_eq!(m.nonce, Some(nonce(7)));
        assert_eq!((m.origin, m.iport, m.remote), (Origin::Pcp, 7200, None));
    }

    #[test]
    fn pcp_map_renew_delete_and_nonces() {
        let mut c = core();
        assert_eq!(
            outcome(&ask(&mut c, 2, &pcp_map(2, 7, 7200, 0, 30, vec![]))),
            (P::Success, 120, 7200)
        );
        // renewal: same nonce, any suggestion, the same port
        assert_eq!(
            outcome(&ask(&mut c, 2, &pcp_map(2, 7, 7200, 9000, 999_999, vec![]))),
            (P::Success, 86400, 7200)
        );
        // another nonce can neither renew nor delete it
        for life in [600, 0] {
            let req = pcp_map(2, 8, 7200, 0, life, vec![]);
            let r = ask(&mut c, 2, &req);
            let mut want = req.clone();
            want[1] = 0x81;
            want[3] = P::NotAuthorized as u8;
            want[4..8].copy_from_slice(&1800u32.to_be_bytes());
            want[8..12].copy_from_slice(&EPOCH.to_be_bytes());
            want[12..24].fill(0);
            assert_eq!(r, want);
        }
        assert_eq!(c.table.len(), 1);
        // delete, twice: SUCCESS with lifetime 0, the same bytes
        let del = pcp_map(2, 7, 7200, 0, 0, vec![]);
        let first = send(&mut c, &ctx(&CFG), 2, &del).unwrap();
        assert_eq!(outcome(&first.ok), (P::Success, 0, 0));
        assert!(first.on_failure.is_some());
        assert!(c.table.is_empty());
        let second = send(&mut c, &ctx(&CFG), 2, &del).unwrap();
        assert_eq!(second.ok, first.ok);
        assert_eq!(second.on_failure, None);
    }

    #[test]
    fn pcp_delete_wildcards() {
        let mut c = core();
        ask(&mut c, 2, &pcp_map(2, 7, 7200, 0, 600, vec![]));
        ask(&mut c, 2, &pcp_map(2, 7, 7201, 0, 600, vec![]));
        ask(
            &mut c,
            2,
            &pcp_req(2, 600, map_body(7, 17, 7200, 0), vec![]),
        );
        ask(&mut c, 2, &pcp_map(2, 8, 7202, 0, 600, vec![]));
        // internal port 0: this nonce's TCP mappings
        assert_eq!(
            outcome(&ask(&mut c, 2, &pcp_map(2, 7, 0, 0, 0, vec![]))).0,
            P::Success
        );
        let left: Vec<_> = c.table.iter().map(|m| (m.key.proto, m.key.eport)).collect();
        assert_eq!(left, vec![(Proto::Tcp, 7202), (Proto::Udp, 7200)]);
        // protocol 0: every protocol, internal port ignored
        ask(&mut c, 2, &pcp_map(2, 7, 7200, 0, 600, vec![]));
        assert_eq!(
            outcome(&ask(
                &mut c,
                2,
                &pcp_req(2, 0, map_body(7, 0, 1234, 0), vec![])
            ))
            .0,
            P::Success
        );
        let left: Vec<_> = c.table.iter().map(|m| (m.key.proto, m.key.eport)).collect();
        assert_eq!(left, vec![(Proto::Tcp, 7202)]);
    }

    fn pcp_code(b: &[u8]) -> ResultCode {
        ResultCode::from_u8(b[3]).unwrap()
    }

    #[test]
    fn pcp_map_refusals() {
        let mut c = core();
        let code = |c: &mut Core, pkt: &[u8]| pcp_code(&ask(c, 2, pkt));
        // protocol 0 and SCTP cannot be mapped
        assert_eq!(
            code(&mut c, &pcp_req(2, 600, map_body(1, 0, 0, 0), vec![])),
            P::UnsuppProtocol
        );
        assert_eq!(
            code(&mut c, &pcp_req(2, 600, map_body(1, 132, 5000, 0), vec![])),
            P::UnsuppProtocol
        );
        assert_eq!(
            code(&mut c, &pcp_req(2, 0, map_body(1, 132, 5000, 0), vec![])),
            P::UnsuppProtocol
        );
        // all ports of a host
        assert_eq!(
            code(&mut c, &pcp_map(2, 1, 0, 0, 600, vec![])),
            P::NotAuthorized
        );
        // denied internal port
        assert_eq!(
            code(&mut c, &pcp_map(2, 1, 80, 80, 600, vec![])),
            P::NotAuthorized
        );
        // no external address: short NETWORK_FAILURE
        let mut x = ctx(&CFG);
        x.external = None;
        let r = send(&mut c, &x, 2, &pcp_map(2, 1, 5000, 0, 600, vec![]))
            .unwrap()
            .ok;
        assert_eq!(pcp_code(&r), P::NetworkFailure);
        assert_eq!(&r[4..8], &30u32.to_be_bytes());
        // client address ≠ source
        assert_eq!(
            pcp_code(&ask(&mut c, 3, &pcp_map(2, 1, 5000, 0, 600, vec![]))),
            P::AddressMismatch
        );
        let mut v6 = pcp_map(2, 1, 5000, 0, 600, vec![]);
        v6[8..24].copy_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(pcp_code(&ask(&mut c, 2, &v6)), P::AddressMismatch);
        // quota: USER_EX_QUOTA (short)
        for p in 0..8 {
            ask(&mut c, 2, &pcp_map(2, 1, 6000 + p, 0, 600, vec![]));
        }
        let r = ask(&mut c, 2, &pcp_map(2, 1, 6100, 0, 600, vec![]));
        assert_eq!(
            (pcp_code(&r), &r[4..8]),
            (P::UserExQuota, &30u32.to_be_bytes()[..])
        );
        assert!(c.table.len() == 8);
    }

    #[test]
    fn pcp_prefer_failure() {
        let mut c = core();
        ask(&mut c, 3, &pcp_map(3, 1, 5000, 5000, 600, vec![]));
        let pf = vec![PcpOption::PreferFailure];
        // taken by another host: no other port
        let r = ask(&mut c, 2, &pcp_map(2, 2, 5000, 5000, 600, pf.clone()));
        assert_eq!(pcp_code(&r), P::CannotProvideExternal);
        // without the option: another port
        assert_eq!(
            outcome(&ask(&mut c, 2, &pcp_map(2, 2, 5000, 5000, 600, vec![]))).2,
            5001
        );
        // free: granted, option echoed
        let r = parsed(&ask(&mut c, 2, &pcp_map(2, 2, 5002, 6000, 600, pf.clone())));
        assert_eq!(r.options, pf);
        assert!(matches!(r.body, Body::Map(m) if m.external_port == 6000));
        // a suggested external address we do not have
        let mut b = map_body(2, 6, 5003, 6003);
        if let Body::Map(m) = &mut b {
            m.external_addr = pcp::mapped(Ipv4Addr::new(198, 51, 100, 1));
        }
        assert_eq!(
            pcp_code(&ask(&mut c, 2, &pcp_req(2, 600, b, pf.clone()))),
            P::CannotProvideExternal
        );
        // …which is only a hint without PREFER_FAILURE
        assert_eq!(
            outcome(&ask(&mut c, 2, &pcp_req(2, 600, b, vec![]))).0,
            P::Success
        );
    }

    fn filter(prefix: u8, port: u16, a: Ipv4Addr) -> PcpOption {
        PcpOption::Filter(Filter {
            prefix_len: prefix,
            remote_peer_port: port,
            remote_peer_addr: pcp::mapped(a),
        })
    }

    #[test]
    fn pcp_filters() {
        let mut c = core();
        let net = Ipv4Addr::new(198, 51, 100, 77);
        let r = parsed(&ask(
            &mut c,
            2,
            &pcp_map(2, 1, 5000, 0, 600, vec![filter(120, 0, net)]),
        ));
        assert_eq!(r.result, P::Success);
        assert_eq!(r.options, vec![filter(120, 0, net)]);
        let key = Key::new(Proto::Tcp, 5000);
        let want = RemoteFilter {
            addr: Ipv4Addr::new(198, 51, 100, 0),
            prefix: 24,
        };
        assert_eq!(c.table.get(&key).unwrap().remote, Some(want));
        // a renewal without FILTER keeps it; the same filter twice is one
        ask(&mut c, 2, &pcp_map(2, 1, 5000, 0, 600, vec![]));
        assert_eq!(c.table.get(&key).unwrap().remote, Some(want));
        let two = vec![
            filter(120, 0, net),
            filter(120, 0, Ipv4Addr::new(198, 51, 100, 1)),
        ];
        ask(&mut c, 2, &pcp_map(2, 1, 5000, 0, 600, two));
        assert_eq!(c.table.get(&key).unwrap().remote, Some(want));
        // prefix length 0 removes it
        ask(
            &mut c,
            2,
            &pcp_map(
                2,
                1,
                5000,
                0,
                600,
                vec![filter(0, 0, Ipv4Addr::UNSPECIFIED)],
            ),
        );
        assert_eq!(c.table.get(&key).unwrap().remote, None);
        // a /32 and all IPv4 peers (prefix 96)
        ask(
            &mut c,
            2,
            &pcp_map(2, 1, 5000, 0, 600, vec![filter(128, 0, net)]),
        );
        assert_eq!(
            c.table.get(&key).unwrap().remote,
            Some(RemoteFilter::host(net))
        );
        ask(
            &mut c,
            2,
            &pcp_map(2, 1, 5000, 0, 600, vec![filter(96, 0, net)]),
        );
        assert_eq!(c.table.get(&key).unwrap().remote, None);
        // what one mapping cannot hold
        let distinct = vec![
            filter(128, 0, net),
            filter(128, 0, Ipv4Addr::new(192, 0, 2, 1)),
        ];
        let code = |c: &mut Core, o| pcp_code(&ask(c, 2, &pcp_map(2, 1, 5000, 0, 600, o)));
        assert_eq!(code(&mut c, distinct), P::ExcessiveRemotePeers);
        assert_eq!(
            code(&mut c, vec![filter(128, 443, net)]),
            P::ExcessiveRemotePeers
        );
        let v6 = PcpOption::Filter(Filter {
            prefix_len: 64,
            remote_peer_port: 0,
            remote_peer_addr: "2001:db8::".parse().unwrap(),
        });
        assert_eq!(code(&mut c, vec![v6]), P::MalformedOption);
        // prefix 0 first clears what came before it
        let cleared = vec![
            filter(128, 0, Ipv4Addr::new(192, 0, 2, 1)),
            filter(0, 0, net),
            filter(128, 0, net),
        ];
        assert_eq!(code(&mut c, cleared), P::Success);
        assert_eq!(
            c.table.get(&key).unwrap().remote,
            Some(RemoteFilter::host(net))
        );
    }

    #[test]
    fn pcp_third_party() {
        let tp = |d: u8| vec![PcpOption::ThirdParty(pcp::mapped(host(d)))];
        let mut c = core();
        // not allowed: UNSUPP_OPTION
        assert_eq!(
            pcp_code(&ask(&mut c, 2, &pcp_map(2, 1, 5000, 0, 600, tp(9)))),
            P::UnsuppOption
        );
        let allow = PmpConfig {
            allow_third_party: true,
            ..CFG
        };
        let x = ctx(&allow);
        let code = |c: &mut Core, pkt: &[u8]| pcp_code(&send(c, &x, 2, pkt).unwrap().ok);
        // the sender itself
        assert_eq!(
            code(&mut c, &pcp_map(2, 1, 5000, 0, 600, tp(2))),
            P::MalformedRequest
        );
        // secure mode refuses mappings for other hosts
        assert_eq!(
            code(&mut c, &pcp_map(2, 1, 5000, 0, 600, tp(9))),
            P::NotAuthorized
        );
        // an IPv6 host
        let v6 = vec![PcpOption::ThirdParty("2001:db8::9".parse().unwrap())];
        assert_eq!(
            code(&mut c, &pcp_map(2, 1, 5000, 0, 600, v6)),
            P::NotAuthorized
        );
        c.policy.secure_mode = false;
        let r = parsed(
            &send(&mut c, &x, 2, &pcp_map(2, 1, 5000, 0, 600, tp(9)))
                .unwrap()
                .ok,
        );
        assert_eq!((r.result, r.options.clone()), (P::Success, tp(9)));
        let m = c.table.get(&Key::new(Proto::Tcp, 5000)).unwrap();
        assert_eq!((m.iaddr, m.client), (host(9), host(2)));
        // deleted by the same third-party request with lifetime 0
        assert_eq!(code(&mut c, &pcp_map(2, 1, 5000, 0, 0, tp(9))), P::Success);
        assert!(c.table.is_empty());
    }

    fn peer_body(n: u8, iport: u16, eport: u16, peer: Ipv4Addr, pport: u16) -> Body {
        Body::Peer(pcp::Peer {
            nonce: nonce(n),
            protocol: 17,
            internal_port: iport,
            external_port: eport,
            external_addr: Ipv6Addr::UNSPECIFIED,
            remote_peer_port: pport,
            remote_peer_addr: pcp::mapped(peer),
        })
    }

    #[test]
    fn pcp_peer() {
        let mut c = core();
        let peer = Ipv4Addr::new(198, 51, 100, 9);
        let r = parsed(&ask(
            &mut c,
            2,
            &pcp_req(2, 600, peer_body(4, 5000, 0, peer, 3478), vec![]),
        ));
        assert_eq!(r.result, P::Success);
        assert_eq!(r.lifetime, 600);
        let Body::Peer(p) = r.body else { panic!() };
        assert_eq!((p.external_port, p.external_addr), (5000, pcp::mapped(EXT)));
        assert_eq!(
            (p.remote_peer_port, p.remote_peer_addr),
            (3478, pcp::mapped(peer))
        );
        let m = c.table.get(&Key::new(Proto::Udp, 5000)).unwrap();
        assert_eq!(m.remote, Some(RemoteFilter::host(peer)));
        assert_eq!(m.peer_port, Some(3478));
        assert_eq!(m.desc, "PCP PEER");
        // a shorter lifetime does not shorten it
        assert_eq!(
            outcome(&ask(
                &mut c,
                2,
                &pcp_req(2, 0, peer_body(4, 5000, 0, peer, 3478), vec![])
            )),
            (P::Success, 600, 5000)
        );
        // another nonce
        assert_eq!(
            pcp_code(&ask(
                &mut c,
                2,
                &pcp_req(2, 600, peer_body(5, 5000, 0, peer, 3478), vec![])
            )),
            P::NotAuthorized
        );
        // a second remote peer of the same endpoint
        assert_eq!(
            pcp_code(&ask(
                &mut c,
                2,
                &pcp_req(2, 600, peer_body(4, 5000, 0, peer, 3479), vec![])
            )),
            P::NoResources
        );
        // PREFER_FAILURE is not allowed in PEER
        let mut pkt = pcp_req(2, 600, peer_body(4, 5000, 0, peer, 3478), vec![]);
        pkt.extend([2, 0, 0, 0]);
        assert_eq!(pcp_code(&ask(&mut c, 2, &pkt)), P::MalformedRequest);
        // zero fields
        for b in [
            peer_body(4, 0, 0, peer, 1),
            peer_body(4, 1, 0, peer, 0),
            peer_body(4, 6001, 0, Ipv4Addr::UNSPECIFIED, 1),
        ] {
            assert_eq!(
                pcp_code(&ask(&mut c, 2, &pcp_req(2, 600, b, vec![]))),
                P::MalformedRequest
            );
        }
        // a suggested port held by someone else
        ask(
            &mut c,
            3,
            &pcp_req(3, 600, map_body(1, 17, 6000, 6000), vec![]),
        );
        assert_eq!(
            pcp_code(&ask(
                &mut c,
                2,
                &pcp_req(2, 600, peer_body(4, 6000, 6000, peer, 1), vec![])
            )),
            P::CannotProvideExternal
        );
        // an endpoint with a MAP mapping reports it, unchanged
        ask(
            &mut c,
            2,
            &pcp_req(2, 1000, map_body(1, 17, 7000, 7100), vec![]),
        );
        assert_eq!(
            outcome(&ask(
                &mut c,
                2,
                &pcp_req(2, 600, peer_body(4, 7000, 0, peer, 1), vec![])
            )),
            (P::Success, 1000, 7100)
        );
        // the same nonce turns a PEER mapping into a MAP one
        ask(
            &mut c,
            2,
            &pcp_req(2, 600, map_body(4, 17, 5000, 0), vec![]),
        );
        let m = c.table.get(&Key::new(Proto::Udp, 5000)).unwrap();
        assert_eq!((m.remote, m.peer_port), (None, None));
    }

    #[test]
    fn pcp_announce_versions_and_silence() {
        let mut c = core();
        let ann = pcp_req(2, 0, Body::Announce, vec![]);
        let mut want = vec![2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0xe8];
        want.extend([0; 12]);
        assert_eq!(ask(&mut c, 2, &ann), want);
        assert_eq!(pcp_announcement(EPOCH), want);
        // unknown versions: UNSUPP_VERSION naming version 2, Reserved
        // holding the low 96 bits of the client address field
        for v in [1u8, 3, 0xff] {
            let mut pkt = pcp_map(2, 1, 5000, 0, 600, vec![]);
            pkt[0] = v;
            let r = ask(&mut c, 2, &pkt);
            assert_eq!(&r[..4], &[2, 0x81, 0, P::UnsuppVersion as u8]);
            assert_eq!(&r[12..24], &pcp::mapped(host(2)).octets()[4..]);
        }
        // unknown opcode
        let mut pkt = pcp_map(2, 1, 5000, 0, 600, vec![]);
        pkt[1] = 5;
        assert_eq!(
            &ask(&mut c, 2, &pkt)[..4],
            &[2, 0x85, 0, P::UnsuppOpcode as u8]
        );
        // R bit and one-byte packets: nothing
        for pkt in [vec![2u8], vec![2, 0x81, 0, 0], vec![3]] {
            assert_eq!(send(&mut c, &ctx(&CFG), 2, &pkt), None);
        }
        // PCP disabled: NAT-PMP's "unsupported version" so the client falls back
        let natpmp_only = PmpConfig { pcp: false, ..CFG };
        let r = send(
            &mut c,
            &ctx(&natpmp_only),
            2,
            &pcp_map(2, 1, 5000, 0, 600, vec![]),
        )
        .unwrap();
        assert_eq!(r.ok, vec![0, 0x81, 0, 1, 0, 0, 3, 0xe8]);
        let off = PmpConfig {
            pcp: false,
            natpmp: false,
            ..CFG
        };
        assert_eq!(send(&mut c, &ctx(&off), 2, &ann), None);
        assert_eq!(send(&mut c, &ctx(&off), 2, &[0, 0]), None);
        assert!(c.table.is_empty());
    }

    #[test]
    fn announcements() {
        assert_eq!(
            natpmp_announcement(5, EXT),
            vec![0, 128, 0, 0, 0, 0, 0, 5, 203, 0, 113, 1]
        );
        assert_eq!(ANNOUNCE_SCHEDULE.len(), 10);
        for w in ANNOUNCE_SCHEDULE.windows(3) {
            assert_eq!(w[2] - w[1], 2 * (w[1] - w[0]));
        }
        assert_eq!(ANNOUNCE_SCHEDULE[1], 250);
    }

    // -------------------------------------------------------- cross-protocol

    fn upnp(c: &mut Core, from: u8, port: u16) -> Result<crate::core::Granted, Refusal> {
        let req = MapRequest {
            want: Want {
                client: host(from),
                proto: Proto::Tcp,
                eport: port,
                iaddr: host(from),
                iport: port,
                search: false,
                companion: false,
            },
            remote: None,
            desc: "upnp".into(),
            origin: Origin::UpnpV2,
            lease: Lease::Secs(3600),
            nonce: None,
            peer_port: None,
        };
        c.map(&req, 10_000, &NoListeners)
    }

    #[test]
    fn one_table_for_every_protocol() {
        let mut c = core();
        upnp(&mut c, 5, 7000).unwrap();
        // UPnP's port is refused to NAT-PMP and PCP of other hosts
        assert_eq!(
            ask(&mut c, 2, &pmp_map(Proto::Tcp, 7000, 7000, 600)),
            pmp_resp(Proto::Tcp, N::Success, 7000, 7001, 600)
        );
        let pf = vec![PcpOption::PreferFailure];
        assert_eq!(
            pcp_code(&ask(&mut c, 3, &pcp_map(3, 1, 7000, 7000, 600, pf.clone()))),
            P::CannotProvideExternal
        );
        // and theirs to UPnP
        assert_eq!(upnp(&mut c, 5, 7001), Err(Refusal::Conflict));
        ask(&mut c, 3, &pcp_map(3, 1, 8000, 8000, 600, vec![]));
        assert_eq!(upnp(&mut c, 5, 8000), Err(Refusal::Conflict));
        // NAT-PMP against PCP
        assert_eq!(
            pcp_code(&ask(&mut c, 4, &pcp_map(4, 1, 7001, 7001, 600, pf))),
            P::CannotProvideExternal
        );
        assert_eq!(
            ask(&mut c, 4, &pmp_map(Proto::Tcp, 8000, 8000, 600)),
            pmp_resp(Proto::Tcp, N::Success, 8000, 8001, 600)
        );
        // the same host: NAT-PMP does not take over its PCP mapping…
        assert_eq!(
            ask(&mut c, 3, &pmp_map(Proto::Tcp, 8000, 0, 600)),
            pmp_resp(Proto::Tcp, N::NotAuthorized, 8000, 0, 0)
        );
        assert_eq!(
            ask(&mut c, 3, &pmp_map(Proto::Tcp, 8000, 0, 0)),
            pmp_resp(Proto::Tcp, N::NotAuthorized, 8000, 0, 0)
        );
        // …nor PCP its NAT-PMP one
        assert_eq!(
            pcp_code(&ask(&mut c, 4, &pcp_map(4, 1, 8000, 0, 600, vec![]))),
            P::NotAuthorized
        );
        assert_eq!(
            pcp_code(&ask(&mut c, 4, &pcp_map(4, 1, 8000, 0, 0, vec![]))),
            P::NotAuthorized
        );
        // …nor UPnP's mapping of the same host and port
        assert_eq!(
            outcome(&ask(&mut c, 5, &pcp_map(5, 1, 7000, 7000, 600, vec![]))).2,
            7002
        );
        assert_eq!(
            c.table.get(&Key::new(Proto::Tcp, 7000)).unwrap().origin,
            Origin::UpnpV2
        );
    }

    #[test]
    fn rollback_after_firewall_failure() {
        let mut c = core();
        ask(&mut c, 2, &pmp_map(Proto::Udp, 5000, 0, 600));
        c.table.commit();
        let sp = c.table.savepoint();
        let mark = c.event_mark();
        let r = send(&mut c, &ctx(&CFG), 3, &pcp_map(3, 1, 6000, 0, 600, vec![])).unwrap();
        assert!(r.on_failure.is_some());
        let r2 = send(&mut c, &ctx(&CFG), 2, &pmp_map(Proto::Udp, 5000, 0, 0)).unwrap();
        assert!(r2.on_failure.is_some());
        c.rollback(sp, mark);
        let left: Vec<_> = c.table.iter().map(|m| (m.key.eport, m.origin)).collect();
        assert_eq!(left, vec![(5000, Origin::NatPmp)]);
    }

    // ------------------------------------------------------------- fuzzing

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn check_reply(pkt: &[u8], out: &[u8]) {
        match out.first() {
            Some(2) => {
                assert!(
                    out.len() >= 24 && out.len() <= 1100 && out.len() % 4 == 0,
                    "{pkt:?} → {out:?}"
                );
                assert!(out[1] & 0x80 != 0);
            }
            Some(0) => {
                let ok = matches!(out.len(), 8 | 12 | 16)
                    || (out.len() <= pkt.len().max(8) && out.len() <= 1100);
                assert!(ok, "{pkt:?} → {out:?}");
                assert!(out[1] & 0x80 != 0);
            }
            _ => panic!("{pkt:?} → {out:?}"),
        }
    }

    #[test]
    fn random_and_mutated_packets_never_panic() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let peer = Ipv4Addr::new(198, 51, 100, 9);
        let seeds: Vec<Vec<u8>> = vec![
            vec![0, 0],
            pmp_map(Proto::Udp, 5000, 5000, 600),
            pmp_map(Proto::Tcp, 5001, 0, 0),
            pcp_req(2, 0, Body::Announce, vec![]),
            pcp_map(2, 1, 5000, 0, 600, vec![]),
            pcp_map(
                2,
                1,
                5000,
                6000,
                0,
                vec![PcpOption::PreferFailure, filter(120, 0, peer)],
            ),
            pcp_map(
                2,
                1,
                5000,
                6000,
                600,
                vec![PcpOption::ThirdParty(pcp::mapped(host(9)))],
            ),
            pcp_req(2, 600, peer_body(3, 5000, 0, peer, 3478), vec![]),
            pcp_req(2, 600, map_body(3, 0, 0, 0), vec![]),
        ];
        let cfgs = [
            CFG,
            PmpConfig {
                allow_third_party: true,
                ..CFG
            },
            PmpConfig { pcp: false, ..CFG },
            PmpConfig {
                natpmp: false,
                min_lifetime: 0,
                max_lifetime: 0,
                ..CFG
            },
        ];
        let mut c = core();
        for i in 0..20_000u32 {
            let mut pkt = seeds[rng.below(seeds.len())].clone();
            match rng.below(6) {
                0 => {
                    let n = rng.below(1200);
                    pkt = (0..n).map(|_| rng.next() as u8).collect();
                    if let Some(b) = pkt.first_mut() {
                        *b = [0, 1, 2, 3][rng.below(4)];
                    }
                }
                1 => pkt.truncate(rng.below(pkt.len() + 1)),
                2 => {
                    let n = rng.below(1200);
                    pkt.extend((0..n).map(|_| rng.next() as u8));
                }
                3 => {
                    // grow by whole options of random code and length
                    for _ in 0..rng.below(8) {
                        let len = rng.below(40) as u16;
                        pkt.extend([rng.next() as u8, 0]);
                        pkt.extend(len.to_be_bytes());
                        pkt.extend((0..len.div_ceil(4) * 4).map(|_| rng.next() as u8));
                    }
                }
                _ => {
                    // flip bytes after the client address field most of the time
                    for _ in 0..1 + rng.below(4) {
                        if pkt.is_empty() {
                            break;
                        }
                        let at = if pkt.len() > 24 && rng.below(4) != 0 {
                            24 + rng.below(pkt.len() - 24)
                        } else {
                            rng.below(pkt.len())
                        };
                        pkt[at] = rng.next() as u8;
                    }
                }
            }
            let cfg = &cfgs[rng.below(cfgs.len())];
            let mut x = ctx(cfg);
            x.now = 10_000 + u64::from(i) * 100;
            if rng.below(10) == 0 {
                x.external = None;
            }
            let from = 2 + rng.below(3) as u8;
            if let Some(r) = send(&mut c, &x, from, &pkt) {
                check_reply(&pkt, &r.ok);
                if let Some(f) = &r.on_failure {
                    check_reply(&pkt, f);
                }
                if pkt.first() == Some(&2) && cfg.pcp && r.ok.first() == Some(&2) && r.ok[3] == 0 {
                    // a success never grows past the request
                    assert!(r.ok.len() <= pkt.len().max(24), "{pkt:?}");
                }
            }
            c.expire(x.now);
            assert!(c.table.len() <= 64);
        }
        c.take_events();
    }
}
