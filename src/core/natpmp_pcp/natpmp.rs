//! NAT-PMP (RFC 6886): public address requests, and mapping requests
//! that create, renew or delete a mapping of the sender.
//!
//! Owns: the NAT-PMP semantics and the result codes of policy refusals.

use std::net::Ipv4Addr;

use super::{Reply, Server};
use crate::core::policy::{Refusal, Want};
use crate::core::table::{Key, Origin};
use crate::core::{Core, EventKind, Lease, MapRequest};
use crate::proto::natpmp;

/// The gratuitous public address response, for 224.0.0.1:5350 (RFC 6886
/// §3.2.1).
pub(super) fn announcement(epoch: u32, external: Ipv4Addr) -> Vec<u8> {
    natpmp::PublicAddressResponse {
        result: natpmp::ResultCode::Success,
        epoch,
        external,
    }
    .emit()
    .to_vec()
}

pub(super) fn handle(core: &mut Core, srv: &Server, src: Ipv4Addr, pkt: &[u8]) -> Option<Reply> {
    let req = match natpmp::parse(pkt) {
        Ok(r) => r,
        Err(natpmp::ParseError::Drop) => return None,
        Err(natpmp::ParseError::UnsupportedVersion { op }) => {
            let r = natpmp::unsupported_version(op, srv.epoch);
            return Some(Reply::plain(r.to_vec()));
        }
        Err(natpmp::ParseError::UnsupportedOpcode) => {
            return Some(Reply::plain(natpmp::unsupported_opcode(pkt, srv.epoch)));
        }
    };
    match req {
        natpmp::Request::PublicAddress => {
            let (result, external) = match srv.external {
                _ if !srv.settings.natpmp => {
                    (natpmp::ResultCode::NotAuthorized, Ipv4Addr::UNSPECIFIED)
                }
                Some(a) => (natpmp::ResultCode::Success, a),
                None => (natpmp::ResultCode::NetworkFailure, Ipv4Addr::UNSPECIFIED),
            };
            let r = natpmp::PublicAddressResponse {
                result,
                epoch: srv.epoch,
                external,
            };
            Some(Reply::plain(r.emit().to_vec()))
        }
        natpmp::Request::Map(m) => Some(map(core, srv, src, m)),
    }
}

fn response(
    srv: &Server,
    m: &natpmp::MapRequest,
    result: natpmp::ResultCode,
    eport: u16,
    lifetime: u32,
) -> Vec<u8> {
    natpmp::MapResponse {
        proto: m.proto,
        result,
        epoch: srv.epoch,
        internal_port: m.internal_port,
        external_port: eport,
        lifetime,
    }
    .emit()
    .to_vec()
}

/// RFC 6886 §3.5 result codes for policy refusals.
fn result(r: &Refusal) -> natpmp::ResultCode {
    use natpmp::ResultCode::*;
    match r {
        Refusal::NotAllowed | Refusal::SecureMode | Refusal::NotOwner => NotAuthorized,
        // RFC 6886 §3.5: 3, Network Failure, the box cannot map for now
        Refusal::FirewallDown => NetworkFailure,
        Refusal::Conflict
        | Refusal::OtherMechanism(_)
        | Refusal::ClientQuota
        | Refusal::TableFull
        | Refusal::NoFreePort => OutOfResources,
        // RFC 6886 §3.5: 3 "Network Failure (e.g., NAT box itself has not
        // obtained a DHCP lease)": the router has no external address the
        // Internet can use (miniupnpd answers 3 too).
        Refusal::Unreachable(_) => NetworkFailure,
    }
}

fn map(core: &mut Core, srv: &Server, src: Ipv4Addr, m: natpmp::MapRequest) -> Reply {
    use natpmp::ResultCode::*;
    let fail = |code| Reply::plain(response(srv, &m, code, 0, 0));
    if !srv.settings.natpmp {
        // RFC 6886 §3.5: disabled by the administrator
        return fail(NotAuthorized);
    }
    if m.lifetime == 0 {
        return delete(core, srv, src, &m);
    }
    if m.internal_port == 0 {
        // internal port 0 only makes sense in a deletion (RFC 6886 §3.4)
        return fail(NotAuthorized);
    }
    if srv.external.is_none() {
        return fail(NetworkFailure);
    }
    let lifetime = srv.settings.clamp(m.lifetime);
    // RFC 6886 §3.3: one mapping per internal endpoint; a repeated request
    // renews it and keeps its external port
    let (eport, search) = match core.table().by_internal(src, m.proto, m.internal_port) {
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
    let key = match core.choose(&req, srv.facts) {
        Ok(k) => k,
        Err(r) => {
            core.refused(&req, &r, srv.now);
            return fail(result(&r));
        }
    };
    req.want.eport = key.eport;
    req.want.search = false;
    req.desc = format!("NAT-PMP {} {}", key.eport, m.proto.as_lower());
    let sp = core.savepoint();
    match core.map(&req, srv.now, srv.facts) {
        Ok(g) => Reply::after(
            core,
            sp,
            response(srv, &m, Success, g.key.eport, lifetime),
            || response(srv, &m, NetworkFailure, 0, 0),
        ),
        Err(r) => fail(result(&r)),
    }
}

/// RFC 6886 §3.4. Internal port 0 deletes all of the sender's NAT-PMP
/// mappings of the request's protocol only, as the RFC ties the bulk
/// deletion to the opcode (miniupnpd deletes both protocols). Mappings
/// made by PCP or UPnP are not NAT-PMP's to delete: naming one answers 2.
fn delete(core: &mut Core, srv: &Server, src: Ipv4Addr, m: &natpmp::MapRequest) -> Reply {
    use natpmp::ResultCode::*;
    let victims: Vec<Key> = if m.internal_port == 0 {
        core.table()
            .iter()
            .filter(|x| x.origin == Origin::NatPmp && x.iaddr == src && x.key.proto == m.proto)
            .map(|x| x.key)
            .collect()
    } else {
        match core.table().by_internal(src, m.proto, m.internal_port) {
            None => Vec::new(),
            Some(x) if x.origin == Origin::NatPmp && core.may_manage(src, x) => vec![x.key],
            Some(_) => return Reply::plain(response(srv, m, NotAuthorized, 0, 0)),
        }
    };
    let sp = core.savepoint();
    for k in &victims {
        core.remove(k, EventKind::Delete, "deleted by its NAT-PMP client");
    }
    // A mapping that does not exist is deleted successfully, so a
    // retransmitted request gets the same answer (RFC 6886 §3.4).
    Reply::after(core, sp, response(srv, m, Success, 0, 0), || {
        response(srv, m, NetworkFailure, 0, 0)
    })
}
