//! GENA subscriptions: who is subscribed to which service, when they
//! expire, and which of them are owed an event message.
//!
//! Owns: [`Gena`], the CallStranger defence (a callback must be the
//! subscriber's own address, IPv4 or IPv6, CVE-2020-12695), the caps on
//! subscribers (per [`ClientKey`]: an IPv6 subscriber's /64), and the
//! evented variables of each service. Pure: the caller passes `now` and
//! fresh SIDs, sends the messages and reports back.

use std::net::IpAddr;

use crate::core::Core;
use crate::core::igd::default_connection_service;
use crate::core::policy::ClientKey;
use crate::core::table::Millis;
use crate::core::wan::Wan;
use crate::proto::gena::{Callback, parse_callback, parse_timeout};
use crate::proto::schema::ServiceKind;

/// Granted subscription durations (UDA 1.1 §4.1.2 asks for at least
/// 1800 s; a day bounds how long a vanished subscriber is kept).
pub const MIN_TIMEOUT: u32 = 1800;
pub const MAX_TIMEOUT: u32 = 86400;
/// The initial event follows the SUBSCRIBE response after this delay, so
/// the subscriber knows its SID before the first message arrives.
pub const INITIAL_DELAY: Millis = 50;

/// Why a SUBSCRIBE/UNSUBSCRIBE is refused, with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenaError {
    /// 400: SID combined with CALLBACK or NT.
    IncompatibleHeaders,
    /// 412: missing/invalid CALLBACK or NT, unknown or expired SID.
    PreconditionFailed,
    /// 503: too many subscribers.
    Unavailable,
}

impl GenaError {
    pub fn status(self) -> u16 {
        match self {
            GenaError::IncompatibleHeaders => 400,
            GenaError::PreconditionFailed => 412,
            GenaError::Unavailable => 503,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub sid: String,
    pub service: ServiceKind,
    pub callback: Callback,
    pub client: IpAddr,
    pub expires: Millis,
    /// SEQ of the next message.
    pub seq: u32,
    /// The initial event is due at this time.
    initial_due: Option<Millis>,
    /// A change happened since the last message.
    dirty: bool,
    /// A message is on its way; the next waits for it (keeps SEQ order).
    in_flight: bool,
}

/// One event message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub sid: String,
    pub service: ServiceKind,
    pub callback: Callback,
    pub seq: u32,
}

/// The headers of a SUBSCRIBE or UNSUBSCRIBE request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Headers<'a> {
    pub sid: Option<&'a str>,
    pub callback: Option<&'a str>,
    pub nt: Option<&'a str>,
    pub timeout: Option<&'a str>,
}

/// Every subscription.
#[derive(Debug)]
pub struct Gena {
    subs: Vec<Subscriber>,
    max_total: usize,
    max_per_client: usize,
}

fn grant(timeout: Option<&str>) -> u32 {
    parse_timeout(timeout)
        .unwrap_or(MIN_TIMEOUT)
        .clamp(MIN_TIMEOUT, MAX_TIMEOUT)
}

impl Gena {
    pub fn new(max_total: usize, max_per_client: usize) -> Gena {
        Gena {
            subs: Vec::new(),
            max_total,
            max_per_client,
        }
    }

    pub fn len(&self) -> usize {
        self.subs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    pub fn has_subscribers(&self, service: ServiceKind) -> bool {
        self.subs.iter().any(|s| s.service == service)
    }

    /// SUBSCRIBE: a new subscription (CALLBACK + NT) or a renewal (SID).
    /// `new_sid` makes a fresh unguessable `uuid:…` (called for a new
    /// subscription only). Returns the SID and the granted seconds.
    pub fn subscribe(
        &mut self,
        service: ServiceKind,
        client: IpAddr,
        h: Headers,
        now: Millis,
        new_sid: impl FnOnce() -> String,
    ) -> Result<(String, u32), GenaError> {
        if let Some(sid) = h.sid {
            if h.callback.is_some() || h.nt.is_some() {
                return Err(GenaError::IncompatibleHeaders);
            }
            let secs = grant(h.timeout);
            let s = self
                .subs
                .iter_mut()
                .find(|s| s.sid == sid && s.service == service && s.expires > now)
                .ok_or(GenaError::PreconditionFailed)?;
            s.expires = now + u64::from(secs) * 1000;
            return Ok((s.sid.clone(), secs));
        }
        if h.nt != Some("upnp:event") {
            return Err(GenaError::PreconditionFailed);
        }
        // CallStranger: only a callback at the subscriber's own address is
        // accepted (the very address the request came from, not another
        // of its /64); the first such URL is used (UDA: try them in order).
        let callback = parse_callback(h.callback.unwrap_or(""))
            .into_iter()
            .find(|c| c.addr.ip() == client)
            .ok_or(GenaError::PreconditionFailed)?;
        self.expire(now);
        let key = ClientKey::of(client);
        if self.subs.len() >= self.max_total
            || self
                .subs
                .iter()
                .filter(|s| ClientKey::of(s.client) == key)
                .count()
                >= self.max_per_client
        {
            return Err(GenaError::Unavailable);
        }
        let secs = grant(h.timeout);
        let new_sid = new_sid();
        self.subs.push(Subscriber {
            sid: new_sid.clone(),
            service,
            callback,
            client,
            expires: now + u64::from(secs) * 1000,
            seq: 0,
            initial_due: Some(now + INITIAL_DELAY),
            dirty: false,
            in_flight: false,
        });
        Ok((new_sid, secs))
    }

    /// UNSUBSCRIBE.
    pub fn unsubscribe(
        &mut self,
        service: ServiceKind,
        h: Headers,
        now: Millis,
    ) -> Result<(), GenaError> {
        if h.callback.is_some() || h.nt.is_some() {
            return Err(GenaError::IncompatibleHeaders);
        }
        let sid = h.sid.ok_or(GenaError::PreconditionFailed)?;
        let i = self
            .subs
            .iter()
            .position(|s| s.sid == sid && s.service == service && s.expires > now)
            .ok_or(GenaError::PreconditionFailed)?;
        self.subs.remove(i);
        Ok(())
    }

    /// Drops expired subscriptions; returns how many.
    pub fn expire(&mut self, now: Millis) -> usize {
        let before = self.subs.len();
        self.subs.retain(|s| s.expires > now);
        before - self.subs.len()
    }

    /// Drops every subscription (the service was switched off).
    pub fn clear(&mut self) {
        self.subs.clear();
    }

    /// The next time something is due: an initial event or an expiry.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.subs
            .iter()
            .flat_map(|s| [Some(s.expires), s.initial_due.filter(|_| !s.in_flight)])
            .flatten()
            .min()
    }

    /// Something evented in `service` changed: every subscriber is owed a
    /// message with the new values.
    pub fn changed(&mut self, service: ServiceKind) {
        for s in self.subs.iter_mut().filter(|s| s.service == service) {
            s.dirty = true;
        }
    }

    /// Messages to send now. Each subscriber has at most one in flight;
    /// changes made meanwhile are folded into its next message (every
    /// message carries the whole property set).
    pub fn due(&mut self, now: Millis) -> Vec<Delivery> {
        let mut out = Vec::new();
        for s in self.subs.iter_mut() {
            if s.in_flight || s.expires <= now {
                continue;
            }
            let initial = s.initial_due.is_some_and(|t| t <= now);
            // Changes before the initial event are in the initial event.
            if !initial && (s.initial_due.is_some() || !s.dirty) {
                continue;
            }
            s.initial_due = None;
            s.dirty = false;
            s.in_flight = true;
            out.push(Delivery {
                sid: s.sid.clone(),
                service: s.service,
                callback: s.callback.clone(),
                seq: s.seq,
            });
            // UDA §4.3.2: SEQ wraps from 4294967295 to 1, never back to 0.
            s.seq = if s.seq == u32::MAX { 1 } else { s.seq + 1 };
        }
        out
    }

    /// The outcome of a delivery. A subscriber whose callback fails is
    /// dropped (it must subscribe again), as miniupnpd does.
    pub fn delivered(&mut self, sid: &str, ok: bool) {
        if ok {
            if let Some(s) = self.subs.iter_mut().find(|s| s.sid == sid) {
                s.in_flight = false;
            }
        } else {
            self.subs.retain(|s| s.sid != sid);
        }
    }
}

/// The evented variables of a service and their current values.
pub fn evented(
    service: ServiceKind,
    core: &Core,
    wan: &Wan,
    igd_version: u8,
    conn_udn: &str,
) -> Vec<(&'static str, String)> {
    let b = |v: bool| if v { "1" } else { "0" }.to_string();
    match service {
        ServiceKind::WanIpConnection => {
            let mut v = vec![
                ("PossibleConnectionTypes", "IP_Routed".to_string()),
                (
                    "ConnectionStatus",
                    if wan.connected() {
                        "Connected"
                    } else {
                        "Disconnected"
                    }
                    .into(),
                ),
                (
                    "ExternalIPAddress",
                    wan.external_ip().map(|a| a.to_string()).unwrap_or_default(),
                ),
                ("PortMappingNumberOfEntries", core.table().len().to_string()),
            ];
            if igd_version >= 2 {
                v.push(("SystemUpdateID", core.system_update_id().to_string()));
            }
            v
        }
        ServiceKind::WanCommonInterfaceConfig => vec![(
            "PhysicalLinkStatus",
            if wan.connected() { "Up" } else { "Down" }.into(),
        )],
        ServiceKind::Layer3Forwarding => vec![(
            "DefaultConnectionService",
            default_connection_service(conn_udn, igd_version),
        )],
        ServiceKind::WanIpv6FirewallControl => vec![
            ("FirewallEnabled", b(true)),
            ("InboundPinholeAllowed", b(core.pin_policy().allowed)),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 2));
    const SVC: ServiceKind = ServiceKind::WanIpConnection;

    fn sub<'a>(cb: &'a str, timeout: Option<&'a str>) -> Headers<'a> {
        Headers {
            sid: None,
            callback: Some(cb),
            nt: Some("upnp:event"),
            timeout,
        }
    }

    #[test]
    fn subscribe_initial_event_then_changes() {
        let mut g = Gena::new(10, 2);
        let (sid, secs) = g
            .subscribe(
                SVC,
                ME,
                sub("<http://192.168.1.2:4000/cb>", Some("Second-60")),
                0,
                || "uuid:a".into(),
            )
            .unwrap();
        assert_eq!((sid.as_str(), secs), ("uuid:a", MIN_TIMEOUT));
        assert!(g.due(0).is_empty());
        assert_eq!(g.next_deadline(), Some(INITIAL_DELAY));
        let d = g.due(INITIAL_DELAY);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].seq, 0);
        // a change while the initial event is in flight waits for it
        g.changed(SVC);
        assert!(g.due(100).is_empty());
        g.delivered("uuid:a", true);
        let d = g.due(101);
        assert_eq!(d[0].seq, 1);
        g.delivered("uuid:a", true);
        assert!(g.due(102).is_empty());
        // another service's change is not ours
        g.changed(ServiceKind::Layer3Forwarding);
        assert!(g.due(103).is_empty());
    }

    #[test]
    fn callstranger_and_header_rules() {
        let mut g = Gena::new(10, 2);
        let e = |r: Result<(String, u32), GenaError>| r.unwrap_err();
        // a callback at another host (the router, a WAN host, a neighbour)
        assert_eq!(
            e(
                g.subscribe(SVC, ME, sub("<http://192.168.1.1/x>", None), 0, || "u"
                    .into())
            ),
            GenaError::PreconditionFailed
        );
        assert_eq!(
            e(g.subscribe(SVC, ME, sub("<http://8.8.8.8/x>", None), 0, || "u".into())),
            GenaError::PreconditionFailed
        );
        assert_eq!(
            e(
                g.subscribe(SVC, ME, sub("<http://router.lan/x>", None), 0, || "u"
                    .into())
            ),
            GenaError::PreconditionFailed
        );
        // the first valid URL at the subscriber's address is kept
        let (sid, _) = g
            .subscribe(
                SVC,
                ME,
                sub("<http://8.8.8.8/x><http://192.168.1.2:99/ok>", None),
                0,
                || "uuid:b".into(),
            )
            .unwrap();
        assert_eq!(g.subs[0].callback.path, "/ok");
        let bad_nt = Headers {
            nt: Some("upnp:other"),
            ..sub("<http://192.168.1.2/>", None)
        };
        assert_eq!(
            e(g.subscribe(SVC, ME, bad_nt, 0, || "u".into())),
            GenaError::PreconditionFailed
        );
        let mixed = Headers {
            sid: Some(&sid),
            ..sub("<http://192.168.1.2/>", None)
        };
        assert_eq!(
            e(g.subscribe(SVC, ME, mixed, 0, || "u".into())),
            GenaError::IncompatibleHeaders
        );
        let renew = Headers {
            sid: Some(&sid),
            timeout: Some("Second-7200"),
            ..Headers::default()
        };
        assert_eq!(
            g.subscribe(SVC, ME, renew, 10, || "u".into()),
            Ok((sid.clone(), 7200))
        );
        let unknown = Headers {
            sid: Some("uuid:nope"),
            ..Headers::default()
        };
        assert_eq!(
            e(g.subscribe(SVC, ME, unknown, 10, || "u".into())),
            GenaError::PreconditionFailed
        );
        let un = Headers {
            sid: Some(&sid),
            ..Headers::default()
        };
        assert_eq!(g.unsubscribe(SVC, un, 20), Ok(()));
        // UNSUBSCRIBE of the same SID again: 412
        assert_eq!(
            g.unsubscribe(SVC, un, 20),
            Err(GenaError::PreconditionFailed)
        );
    }

    #[test]
    fn caps_and_expiry() {
        let mut g = Gena::new(3, 2);
        let cb = "<http://192.168.1.2/cb>";
        g.subscribe(SVC, ME, sub(cb, None), 0, || "1".into())
            .unwrap();
        g.subscribe(SVC, ME, sub(cb, Some("Second-90000")), 0, || "2".into())
            .unwrap();
        assert_eq!(
            g.subscribe(SVC, ME, sub(cb, None), 0, || "3".into()),
            Err(GenaError::Unavailable)
        );
        let other: IpAddr = "192.168.1.3".parse().unwrap();
        g.subscribe(SVC, other, sub("<http://192.168.1.3/>", None), 0, || {
            "4".into()
        })
        .unwrap();
        let third: IpAddr = "192.168.1.4".parse().unwrap();
        assert_eq!(
            g.subscribe(SVC, third, sub("<http://192.168.1.4/>", None), 0, || "5"
                .into()),
            Err(GenaError::Unavailable)
        );
        // subscription 1 (1800 s) expires; 2 was clamped to a day
        assert_eq!(g.expire(1_800_000), 2);
        assert_eq!(g.len(), 1);
        assert_eq!(g.subs[0].sid, "2");
        assert_eq!(g.expire(86_400_000), 1);
        assert!(g.is_empty());
    }

    /// An IPv6 control point: its callback must be its own address (not
    /// the router's, not another host's of its /64), and its /64 is one
    /// client for the cap.
    #[test]
    fn ipv6_subscribers() {
        let mut g = Gena::new(10, 2);
        let me: IpAddr = "fd77::2".parse().unwrap();
        let e = |r: Result<(String, u32), GenaError>| r.unwrap_err();
        for cb in [
            "<http://[fd77::1]/x>",
            "<http://[fd77::3]:4000/x>",
            "<http://[2001:db8::2]/x>",
            "<http://192.168.1.2/x>",
            "<http://[fe80::2%25eth0]/x>",
        ] {
            assert_eq!(
                e(g.subscribe(SVC, me, sub(cb, None), 0, || "u".into())),
                GenaError::PreconditionFailed,
                "{cb}"
            );
        }
        g.subscribe(SVC, me, sub("<http://[fd77::2]:4000/cb>", None), 0, || {
            "a".into()
        })
        .unwrap();
        assert_eq!(g.subs[0].callback.addr, "[fd77::2]:4000".parse().unwrap());
        let same64: IpAddr = "fd77::77".parse().unwrap();
        g.subscribe(SVC, same64, sub("<http://[fd77::77]/cb>", None), 0, || {
            "b".into()
        })
        .unwrap();
        let again: IpAddr = "fd77::78".parse().unwrap();
        assert_eq!(
            e(
                g.subscribe(SVC, again, sub("<http://[fd77::78]/cb>", None), 0, || "c"
                    .into())
            ),
            GenaError::Unavailable
        );
        let other64: IpAddr = "fd77:0:0:1::2".parse().unwrap();
        assert!(
            g.subscribe(
                SVC,
                other64,
                sub("<http://[fd77:0:0:1::2]/>", None),
                0,
                || "d".into()
            )
            .is_ok()
        );
    }

    #[test]
    fn failed_delivery_drops_the_subscriber_and_seq_wraps() {
        let mut g = Gena::new(3, 3);
        g.subscribe(SVC, ME, sub("<http://192.168.1.2/cb>", None), 0, || {
            "s".into()
        })
        .unwrap();
        g.subs[0].seq = u32::MAX;
        let d = g.due(INITIAL_DELAY);
        assert_eq!(d[0].seq, u32::MAX);
        assert_eq!(g.subs[0].seq, 1);
        g.delivered("s", false);
        assert!(g.is_empty());
    }
}
