//! The watch on other processes' nftables transactions: the kernel's
//! notifications (NFNLGRP_NFTABLES) say which table, chain, rule or set
//! each change touched, and a transaction counts only if it touched ours.
//!
//! Owns: [`Monitor`]. What the daemon does about a transaction that
//! counts is `super::Nft::look`'s business.

use std::cell::Cell;
use std::io;

use super::ruleset::DECLARATIONS;
use crate::proto::netlink::nftables::{self, Notice};
use crate::sys::netif::McastSocket;

/// Watches nf_tables netlink notifications for transactions committed by
/// other processes that touch the daemon's table (fw4 reload, `nft -f`),
/// so the daemon can check that its structure survived. Transactions
/// elsewhere (banIP's own table) or on other sets of the same table
/// (dnsmasq's nftset elements in fw4's) are none of its business: they
/// come all day on a busy router and are passed over.
pub struct Monitor {
    sock: McastSocket,
    pid: u32,
    table: String,
    /// A notification of the transaction being read concerned us; kept
    /// across calls, since a wait can be cancelled between two datagrams
    /// of one transaction.
    concerned: Cell<bool>,
    /// The receive buffer, kept from wait to wait (allocated once, never
    /// zero-filled).
    buf: Vec<u8>,
}

impl Monitor {
    pub fn new(table: &str) -> io::Result<Monitor> {
        Ok(Monitor {
            sock: McastSocket::open(
                libc::NETLINK_NETFILTER,
                1 << (nftables::NFNLGRP_NFTABLES - 1),
            )?,
            pid: std::process::id(),
            table: table.to_string(),
            concerned: Cell::new(false),
            buf: Vec::with_capacity(65536),
        })
    }

    /// Waits until some other process commits an nftables transaction
    /// that touches our table's structure or our sets.
    pub async fn foreign_commit(&mut self) -> io::Result<()> {
        let Monitor {
            sock,
            pid,
            table,
            concerned,
            buf,
        } = self;
        loop {
            let mut relevant = false;
            sock.recv_batch(buf, 256, |d| match d {
                // Lost notifications: assume the worst.
                None => relevant = true,
                Some(d) => {
                    for n in nftables::notices(d) {
                        match n {
                            Notice::Gen { pid: p } => {
                                relevant |= concerned.replace(false) && p != *pid;
                            }
                            n => {
                                if concerns(table, n) {
                                    concerned.set(true);
                                }
                            }
                        }
                    }
                }
            })
            .await?;
            if relevant {
                return Ok(());
            }
        }
    }
}

/// Whether one notification is about `table`'s structure or our sets.
fn concerns(table: &str, n: Notice<'_>) -> bool {
    let ours = |family: u8, t: &[u8]| family == nftables::NFPROTO_INET && t == table.as_bytes();
    match n {
        Notice::Gen { .. } => false,
        Notice::Elements { family, table, set } => {
            ours(family, table)
                && DECLARATIONS
                    .iter()
                    .any(|(_, name, _)| name.as_bytes() == set)
        }
        Notice::Object { family, table } => ours(family, table),
        Notice::Unknown => true,
    }
}
