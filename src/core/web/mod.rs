//! HTTP request handling: one parsed request from a control point in, one
//! response out, and the GENA event messages owed afterwards.
//!
//! Owns: [`Web`], the routing of the description, control and event URLs;
//! the DNS-rebinding defence (the Host header); which IGD version a client
//! is described; SOAP dispatch with the required-argument check and
//! QueryStateVariable; GENA SUBSCRIBE/UNSUBSCRIBE and the detection of
//! changed evented values. Pure: the caller passes the client's addresses,
//! `now` and the kernel [`Facts`]; it sends the bytes, and makes the
//! table's changes final at the end of the loop turn.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::core::Core;
use crate::core::device::{Device, random_uuid};
use crate::core::facts::Facts;
use crate::core::gena::{self, Gena};
use crate::core::igd::{self, Call};
use crate::core::lan::Lans;
use crate::core::table::Millis;
use crate::core::wan::Wan;
use crate::proto::http::{Method, Request, Response, host_matches};
use crate::proto::igd::UpnpError;
use crate::proto::schema::{Service, ServiceKind};
use crate::proto::soap;

/// The services with evented variables, in the order they are checked.
const EVENTED: [ServiceKind; 4] = [
    ServiceKind::WanIpConnection,
    ServiceKind::WanCommonInterfaceConfig,
    ServiceKind::Layer3Forwarding,
    ServiceKind::WanIpv6FirewallControl,
];

/// What a request sees besides the core: the device as configured, the
/// LANs served and the WAN.
#[derive(Clone, Copy)]
pub struct Site<'a> {
    pub device: &'a Device,
    pub lans: &'a Lans,
    pub wan: &'a Wan,
}

/// The two ends of the request's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub peer: SocketAddr,
    /// Our address the client connected to (the Host header must name it).
    pub local: SocketAddr,
}

/// One request as it arrived, and what answering it may read.
pub struct Inbound<'a> {
    pub client: Client,
    pub head: &'a Request,
    pub body: &'a [u8],
    pub now: Millis,
    pub facts: &'a dyn Facts,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Sent if this loop turn's firewall transaction succeeds.
    pub ok: Response,
    /// Sent instead if it fails: the turn is rolled back, so what `ok`
    /// says may describe a table that no longer exists.
    pub on_failure: Response,
    /// Why a request was refused, for the debug log.
    pub note: Option<String>,
}

/// One GENA event message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub to: SocketAddr,
    pub sid: String,
    /// The whole NOTIFY request.
    pub request: Vec<u8>,
}

/// The HTTP side of the device: subscriptions, and the evented values
/// last announced.
#[derive(Debug)]
pub struct Web {
    gena: Gena,
    /// The evented values last announced, per service.
    evented: Vec<(ServiceKind, Vec<(&'static str, String)>)>,
}

fn fault(e: UpnpError) -> Response {
    Response::xml(500, soap::fault(e))
}

impl Web {
    pub fn new(max_subscribers: usize, max_per_client: usize) -> Web {
        Web {
            gena: Gena::new(max_subscribers, max_per_client),
            evented: Vec::new(),
        }
    }

    /// Number of subscriptions.
    pub fn subscribers(&self) -> usize {
        self.gena.len()
    }

    /// Drops every subscription (the service was switched off).
    pub fn clear(&mut self) {
        self.gena.clear();
    }

    /// Answers one request.
    pub fn handle(&mut self, core: &mut Core, site: Site, q: &Inbound) -> Reply {
        let mut note = None;
        let ok = self.respond(core, site, q, &mut note);
        Reply {
            ok,
            on_failure: fault(UpnpError::ActionFailed),
            note,
        }
    }

    fn respond(
        &mut self,
        core: &mut Core,
        site: Site,
        q: &Inbound,
        note: &mut Option<String>,
    ) -> Response {
        let (client, req) = (q.client, q.head);
        let requester = client.peer.ip();
        let Some(lan) = site.lans.of(requester) else {
            return Response::error(403, "not a LAN client");
        };
        // DNS-rebinding defence: the Host header must be our literal address.
        match req.host.as_deref() {
            Some(h) if host_matches(h, client.local.ip(), client.local.port()) => {}
            _ => return Response::error(400, "Host must be the router's address"),
        }
        let path = req.path.split('?').next().unwrap_or("");
        let device = site.device;
        let v = device.version_for(req.user_agent.as_deref());
        match req.method() {
            Method::Get | Method::Head => {
                if path == "/rootDesc.xml" {
                    let desc = device.description(site.lans, lan, Some(client.local.ip()), v);
                    return Response::xml(200, desc);
                }
                match Service::by_scpd_path(path) {
                    Some(s) if device.serves(s, v) => {
                        Response::xml(200, crate::proto::desc::scpd(s, v))
                    }
                    _ => Response::error(404, "no such document"),
                }
            }
            Method::Post => match Service::by_control_path(path) {
                Some(s) if device.serves(s, 2) => {
                    let call = Call {
                        client: match requester {
                            IpAddr::V4(c) => c,
                            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
                        },
                        requester,
                        version: device.version(),
                        now: q.now,
                        device,
                        lans: site.lans,
                        wan: site.wan,
                        facts: q.facts,
                    };
                    soap_action(core, call, s, q, note)
                }
                _ => Response::error(404, "no such control URL"),
            },
            Method::Subscribe | Method::Unsubscribe => match Service::by_event_path(path) {
                // the callback must be the subscriber's own address, of
                // either family
                Some(s) if device.serves(s, 2) => self.subscription(s.kind, q, requester, note),
                _ => Response::error(404, "no such event URL"),
            },
            Method::Other => Response::error(405, "method not allowed"),
        }
    }

    /// SUBSCRIBE (new or renewal) and UNSUBSCRIBE.
    fn subscription(
        &mut self,
        service: ServiceKind,
        q: &Inbound,
        subscriber: IpAddr,
        note: &mut Option<String>,
    ) -> Response {
        let (req, now) = (q.head, q.now);
        let h = gena::Headers {
            sid: req.sid.as_deref(),
            callback: req.callback.as_deref(),
            nt: req.nt.as_deref(),
            timeout: req.timeout.as_deref(),
        };
        let result = if req.method() == Method::Subscribe {
            let new_sid = || format!("uuid:{}", random_uuid(q.facts.random()));
            self.gena
                .subscribe(service, subscriber, h, now, new_sid)
                .map(|(sid, secs)| {
                    Response::new(200)
                        .header("SID", sid)
                        .header("TIMEOUT", format!("Second-{secs}"))
                })
        } else {
            self.gena
                .unsubscribe(service, h, now)
                .map(|_| Response::new(200))
        };
        result.unwrap_or_else(|e| {
            *note = Some(format!(
                "{:?} from {subscriber} refused: {e:?}",
                req.method()
            ));
            Response::error(e.status(), "subscription refused")
        })
    }

    /// After a loop turn: marks the services whose evented values changed,
    /// so their subscribers get a message.
    pub fn track_evented(&mut self, core: &Core, site: Site) {
        if self.gena.is_empty() {
            return;
        }
        let udn = site.device.conn_udn();
        let v = site.device.version();
        for kind in EVENTED {
            if !self.gena.has_subscribers(kind) {
                continue;
            }
            let now = gena::evented(kind, core, site.wan, v, &udn);
            match self.evented.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, last)) if *last == now => {}
                Some((_, last)) => {
                    *last = now;
                    self.gena.changed(kind);
                }
                None => self.evented.push((kind, now)),
            }
        }
    }

    /// The event messages due at `now` (initial events and changes);
    /// expired subscriptions are dropped first.
    pub fn notifications(&mut self, core: &Core, site: Site, now: Millis) -> Vec<Notify> {
        self.gena.expire(now);
        let due = self.gena.due(now);
        if due.is_empty() {
            return Vec::new();
        }
        let udn = site.device.conn_udn();
        let v = site.device.version();
        due.into_iter()
            .map(|d| {
                let vars = gena::evented(d.service, core, site.wan, v, &udn);
                let body = crate::proto::gena::propertyset(&vars);
                Notify {
                    to: d.callback.addr,
                    request: crate::proto::gena::notify_request(&d.callback, &d.sid, d.seq, &body),
                    sid: d.sid,
                }
            })
            .collect()
    }

    /// The outcome of an event message.
    pub fn delivered(&mut self, sid: &str, ok: bool) {
        self.gena.delivered(sid, ok);
    }

    pub fn next_deadline(&self) -> Option<Millis> {
        self.gena.next_deadline()
    }
}

/// A POST to a control URL: one SOAP action of `service`.
fn soap_action(
    core: &mut Core,
    mut call: Call,
    service: &'static Service,
    q: &Inbound,
    note: &mut Option<String>,
) -> Response {
    let (req, body) = (q.head, q.body);
    let Some(action) = req.soapaction.as_deref().and_then(soap::parse_soapaction) else {
        return fault(UpnpError::InvalidAction);
    };
    let parsed = match soap::parse_body(body) {
        Ok(b) => b,
        Err(e) => {
            *note = Some(format!("SOAP body from {} refused: {e:?}", call.requester));
            return Response::error(400, "malformed SOAP body");
        }
    };
    if parsed.action != action.action {
        return fault(UpnpError::InvalidAction);
    }
    // WANIPConnection's semantics follow the version the client names
    // (IGD:1 clients use :1 against an IGD:2 device); the other services
    // are the same in both.
    if service.kind == ServiceKind::WanIpConnection {
        call.version = action.version.clamp(1, 2);
    }
    if action.action == "QueryStateVariable" {
        if service.kind != ServiceKind::WanIpConnection {
            return fault(UpnpError::InvalidAction);
        }
        let Some(var) = parsed.args.get("varName") else {
            return fault(UpnpError::InvalidArgs);
        };
        return match igd::query_state_variable(core, &call, var) {
            Ok(v) => Response::xml(
                200,
                soap::response("QueryStateVariable", soap::CONTROL_NS, &[("return", v)]),
            ),
            Err(e) => fault(e),
        };
    }
    if let Some(a) = service.action(&action.action) {
        // An action the service version asked for does not have (IGD:2's
        // AddAnyPortMapping asked of WANIPConnection:1) does not exist
        // there: 401 Invalid Action (UDA 1.1 §3.2.2).
        if a.since > call.version {
            return fault(UpnpError::InvalidAction);
        }
        // Required in-arguments from the service table: 402 if missing.
        if a.inputs().any(|i| parsed.args.get(i.name).is_none()) {
            return fault(UpnpError::InvalidArgs);
        }
    }
    match igd::handle(core, &call, service.kind, &action.action, &parsed.args) {
        Ok(out) => Response::xml(200, soap::response(&action.action, &action.namespace, &out)),
        Err(e) => {
            *note = Some(format!(
                "{} from {}: {} {}",
                action.action,
                call.requester,
                e.code(),
                e.description()
            ));
            fault(e)
        }
    }
}

#[cfg(test)]
mod tests;
