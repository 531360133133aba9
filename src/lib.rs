//! rupnpd — a UPnP IGD (v1/v2), NAT-PMP and PCP daemon for OpenWrt routers.
//!
//! # Layering
//!
//! Dependencies point one way: `main → daemon → sys → core → proto`, with
//! [`config`] beside `core` (it depends only on `proto`).
//!
//! * [`proto`] — pure codecs: bytes or text in, typed values out, and back.
//!   No IO, no clock, no tokio.
//! * [`core`] — state and policy: the mapping table, permission rules,
//!   quotas, and the handling of every request (HTTP, SOAP, GENA, SSDP,
//!   NAT-PMP, PCP). No IO; every call that needs the time takes `now` from
//!   the caller, the core says when it next needs a call, and what only the
//!   kernel knows is asked of [`core::facts::Facts`].
//! * [`sys`] — adapters to the outside world: nftables, UCI files, ubus,
//!   sockets, netlink, syslog. tokio is allowed here.
//! * [`daemon`] — the one event loop that carries events from `sys` into
//!   `core` and the core's decisions back out; it decides nothing about a
//!   protocol. `docs/architecture.md` follows two requests through it.
//!
//! Nothing in `proto` or `core` may touch sockets, files, processes, tokio
//! or the clock; the `tests` in those modules run without root and without
//! a network.

pub mod config;
pub mod core;
pub mod daemon;
pub mod proto;
pub mod sys;

/// The version string reported by `--version`, the SSDP `SERVER` header and
/// the ubus `status` method.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
