//! Adapters to the outside world: nftables, UCI files, ubus, sockets,
//! netlink and syslog. tokio is allowed here; `core` and `proto` are used,
//! never the other way round.

pub mod facts;
pub mod http;
pub mod leasefile;
pub mod mem;
pub mod netif;
pub mod netifd;
pub mod nfnl;
pub mod nft;
pub mod notify;
pub mod stun;
pub mod syslog;
pub mod task;
pub mod ubus;
pub mod uci;
pub mod udp;
