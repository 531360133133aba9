//! Adapters to the outside world: nftables, UCI files, ubus, sockets,
//! netlink and syslog. tokio is allowed here; `core` and `proto` are used,
//! never the other way round.

pub mod netifd;
pub mod ubus;
