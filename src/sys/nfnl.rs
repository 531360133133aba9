//! A synchronous netlink socket: the nf_tables client of the per-mapping
//! hot path (set and map elements), and the one-shot dumps `sys::netif`
//! asks of rtnetlink and sock_diag.
//!
//! Owns: one blocking socket per user, sending a request or a batch and
//! reading its answer before the call returns, with every wait and size
//! bounded. What goes over it is built and parsed in
//! `proto::netlink`; this module only carries bytes and matches replies
//! to requests by sequence number. Knows nothing about mappings (that is
//! `sys::nft`) and imports nothing of the daemon or the core.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::proto::netlink::nftables::{
    self, Batch, Counter, Data, Element, NEWRULE, NEWSETELEM, Rule, parse_elements, parse_rule,
};
use crate::proto::netlink::{
    Msg, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, done_errno, messages, parse_ack,
};

/// Largest batch we send (one sendmsg; the kernel takes it as one skb).
const BATCH_MAX: usize = 64 << 20;
/// Receive buffer: dump replies are at most 32 KiB per datagram, acks
/// are small (NETLINK_CAP_ACK). Allocated once per socket and never
/// zero-filled: the kernel writes what we read.
const RECV_BUF: usize = 64 * 1024;
/// How long one reply may take. The kernel answers a batch before
/// sendmsg returns; this only bounds a wait that should never happen.
const REPLY_TIMEOUT_MS: i32 = 5000;
/// The same for the dump sockets of [`Socket::open_dump`], which the
/// request path uses. The kernel builds a dump inside our own send and
/// receive calls, so its answer is always queued when we read; a wait
/// longer than this means something is wrong, and the loop must not
/// stall for it.
const DUMP_WAIT_MS: i32 = 20;
/// Receive buffer of a dump socket: the kernel sizes a dump's datagrams
/// to the reader's buffer, at most 32 KiB.
const DUMP_BUF: usize = 32 * 1024;
/// Bytes a dump may return before we give up on it.
const DUMP_MAX: usize = 64 << 20;

/// What went wrong talking to the kernel.
#[derive(Debug)]
pub enum Error {
    /// A socket call failed.
    Io { call: &'static str, err: io::Error },
    /// The kernel refused an operation; a batch was then discarded whole.
    Refused {
        op: String,
        /// Negative errno, as the kernel reports it.
        errno: i32,
        /// The kernel's extended-ack message, if any.
        detail: Option<String>,
    },
    /// A reply we cannot use (truncated, missing, too large).
    Reply(&'static str),
    /// A request too large to send.
    TooLarge(usize),
}

impl Error {
    /// The errno the kernel refused with.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Refused { errno, .. } => Some(-errno),
            Error::Io { err, .. } => err.raw_os_error(),
            _ => None,
        }
    }
}

impl std::error::Error for Error {}

/// For the dumps of `sys::netif`, whose callers speak io::Error.
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io { err, .. } => err,
            e => io::Error::other(e),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { call, err } => write!(f, "netlink {call}: {err}"),
            Error::Refused { op, errno, detail } => {
                let err = io::Error::from_raw_os_error(errno.saturating_neg());
                write!(f, "{op}: {err}")?;
                match detail {
                    Some(d) if !d.is_empty() => write!(f, " ({d})"),
                    _ => Ok(()),
                }
            }
            Error::Reply(what) => write!(f, "netlink reply: {what}"),
            Error::TooLarge(n) => write!(f, "nf_tables batch of {n} bytes is too large"),
        }
    }
}

/// Counters, timeout and expiry of one element, as a get returns them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Found {
    pub timeout_ms: Option<u64>,
    pub expiration_ms: Option<u64>,
    pub counter: Option<Counter>,
}

/// A netlink socket used synchronously: every call sends and reads its
/// answer before it returns.
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
    /// Send buffer size we asked for (0 = the system default).
    sndbuf: usize,
    /// The last datagram received (its length is the datagram's).
    buf: Vec<u8>,
    /// Longest wait for a reply (poll timeout, ms).
    wait_ms: i32,
    /// False while replies of an unfinished call may be queued.
    clean: bool,
}

fn sys<T: PartialOrd + Default>(rc: T, call: &'static str) -> Result<T, Error> {
    if rc < T::default() {
        Err(Error::Io {
            call,
            err: io::Error::last_os_error(),
        })
    } else {
        Ok(rc)
    }
}

fn set_int(fd: i32, level: i32, name: i32, v: i32) -> i32 {
    // SAFETY: the option value is a live c_int of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    }
}

/// Receives one datagram into the spare capacity of `buf`, without
/// zero-filling it first; `buf` then holds what was received. Returns the
/// datagram's full length (MSG_TRUNC), which is larger than `buf.len()`
/// when it did not fit.
pub(crate) fn recv_into(fd: RawFd, buf: &mut Vec<u8>, flags: i32) -> io::Result<usize> {
    buf.clear();
    let cap = buf.capacity();
    // SAFETY: the kernel writes at most `cap` bytes into the buffer's
    // allocation, which has room for `cap`.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), cap, flags | libc::MSG_TRUNC) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: the kernel initialised the first min(n, cap) bytes.
    unsafe { buf.set_len(n.min(cap)) };
    Ok(n)
}

impl Socket {
    /// A NETLINK_NETFILTER socket, for nf_tables.
    pub fn open() -> Result<Socket, Error> {
        Socket::open_with(libc::NETLINK_NETFILTER, 0, REPLY_TIMEOUT_MS, RECV_BUF)
    }

    /// A socket of netlink `protocol` (NETLINK_ROUTE, NETLINK_SOCK_DIAG)
    /// for dumps asked on the request path: non-blocking, and a reply
    /// that is not there within [`DUMP_WAIT_MS`] is an error.
    pub fn open_dump(protocol: libc::c_int) -> Result<Socket, Error> {
        Socket::open_with(protocol, libc::SOCK_NONBLOCK, DUMP_WAIT_MS, DUMP_BUF)
    }

    fn open_with(
        protocol: libc::c_int,
        flags: libc::c_int,
        wait_ms: i32,
        buf: usize,
    ) -> Result<Socket, Error> {
        // SAFETY: plain socket call; the fd is owned immediately.
        let fd = unsafe {
            let raw = sys(
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC | flags,
                    protocol,
                ),
                "socket",
            )?;
            OwnedFd::from_raw_fd(raw)
        };
        // SAFETY: a zeroed sockaddr_nl is valid (port chosen by the kernel).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `sa` is a valid sockaddr_nl of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        sys(rc, "bind")?;
        // Small acks (no echo of what we sent), and the kernel's reason
        // for a refusal. Both optional: older kernels lack them.
        let _ = set_int(fd.as_raw_fd(), libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, 1);
        let _ = set_int(fd.as_raw_fd(), libc::SOL_NETLINK, libc::NETLINK_EXT_ACK, 1);
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        Ok(Socket {
            fd,
            seq,
            sndbuf: 0,
            buf: Vec::with_capacity(buf),
            wait_ms,
            clean: true,
        })
    }

    fn seqs(&mut self, n: usize) -> u32 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(n as u32 + 1);
        s
    }

    /// Drops replies left from an earlier call (after a timeout or an
    /// early error), so they cannot be taken for this call's.
    fn drain(&mut self, buf: &mut Vec<u8>) {
        if std::mem::replace(&mut self.clean, false) {
            return;
        }
        for _ in 0..64 {
            match recv_into(self.fd.as_raw_fd(), buf, libc::MSG_DONTWAIT) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(n) if n > 0 => continue,
                _ => return,
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if bytes.len() > BATCH_MAX {
            return Err(Error::TooLarge(bytes.len()));
        }
        // The kernel refuses a datagram larger than the send buffer, and
        // a batch must arrive in one datagram. SO_SNDBUFFORCE needs
        // CAP_NET_ADMIN, which nf_tables needs anyway.
        let want = bytes.len() + 4096;
        if want > self.sndbuf && bytes.len() > 64 * 1024 {
            let v = i32::try_from(want).unwrap_or(i32::MAX);
            let fd = self.fd.as_raw_fd();
            if set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, v) == 0
                || set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, v) == 0
            {
                self.sndbuf = want;
            }
        }
        for _ in 0..8 {
            // SAFETY: sending from a buffer of the given length.
            let n =
                unsafe { libc::send(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::Io { call: "send", err });
            }
            if n as usize != bytes.len() {
                return Err(Error::Reply("short send"));
            }
            return Ok(());
        }
        Err(Error::Reply("send interrupted repeatedly"))
    }

    /// Receives one datagram into `buf`, which then holds exactly it,
    /// waiting at most the socket's bound for it. The kernel has usually
    /// queued it already, so the read comes first and the wait only after
    /// nothing was there.
    fn recv(&self, buf: &mut Vec<u8>) -> Result<(), Error> {
        for _ in 0..8 {
            let n = match recv_into(self.fd.as_raw_fd(), buf, libc::MSG_DONTWAIT) {
                Ok(n) => n,
                Err(err) => match err.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => {
                        self.wait()?;
                        continue;
                    }
                    _ => return Err(Error::Io { call: "recv", err }),
                },
            };
            if n > buf.len() {
                return Err(Error::Reply("datagram larger than the receive buffer"));
            }
            return Ok(());
        }
        Err(Error::Reply("receive interrupted repeatedly"))
    }

    /// Waits until a datagram is queued, at most the socket's bound.
    fn wait(&self) -> Result<(), Error> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, self.wait_ms) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(Error::Io { call: "poll", err });
        }
        if rc == 0 {
            return Err(Error::Reply("no answer from the kernel"));
        }
        Ok(())
    }

    /// Sends a batch and waits for the kernel's verdict on every message.
    /// On error nothing of the batch was applied.
    pub fn commit(&mut self, batch: Batch) -> Result<(), Error> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.buf);
        let r = self.commit_with(batch, &mut buf);
        self.buf = buf;
        // A refused batch may leave acks of its other messages behind.
        self.clean = r.is_ok();
        r
    }

    fn commit_with(&mut self, batch: Batch, buf: &mut Vec<u8>) -> Result<(), Error> {
        self.drain(buf);
        let begin = self.seqs(batch.inner() + 2);
        let built = batch.finish(begin);
        self.send(&built.bytes)?;
        let n = built.inner();
        let end_seq = begin.wrapping_add(n as u32 + 1);
        let mut answered = vec![false; n];
        let mut left = n;
        let mut first: Option<Error> = None;
        // Each datagram answers at least one message.
        for _ in 0..n + 16 {
            if left == 0 {
                break;
            }
            self.recv(buf)?;
            for m in messages(buf) {
                if m.ty != NLMSG_ERROR {
                    continue;
                }
                let Some(ack) = parse_ack(&m) else {
                    continue;
                };
                if m.seq == begin || m.seq == end_seq {
                    // The batch as a whole: a failed commit, or a
                    // malformed batch. Nothing more is coming that matters.
                    if ack.errno != 0 {
                        first.get_or_insert(Error::Refused {
                            op: "commit".into(),
                            errno: ack.errno,
                            detail: ack.msg.map(str::to_string),
                        });
                        left = 0;
                    }
                    continue;
                }
                let Some(i) = built.index(m.seq) else {
                    continue;
                };
                if let Some(a) = answered.get_mut(i) {
                    if !*a {
                        *a = true;
                        left = left.saturating_sub(1);
                    }
                }
                if ack.errno != 0 && first.is_none() {
                    first = Some(Error::Refused {
                        op: built.describe(i, &ack),
                        errno: ack.errno,
                        detail: ack.msg.map(str::to_string),
                    });
                }
            }
        }
        if let Some(e) = first {
            return Err(e);
        }
        if left > 0 {
            return Err(Error::Reply("missing acknowledgements"));
        }
        Ok(())
    }

    /// Sends the request `build` makes for a fresh sequence number, and
    /// hands every data message of the answer to `f` until the
    /// acknowledgement, the end of the dump, or an error.
    pub fn query(
        &mut self,
        build: impl FnOnce(u32) -> Vec<u8>,
        f: &mut dyn FnMut(&Msg<'_>),
    ) -> Result<(), Error> {
        let seq = self.seqs(1);
        self.talk(&build(seq), seq, f)
    }

    /// [`Socket::query`] once the request is built (not generic, so that
    /// the receive loop is compiled once).
    fn talk(&mut self, req: &[u8], seq: u32, f: &mut dyn FnMut(&Msg<'_>)) -> Result<(), Error> {
        let mut buf = std::mem::take(&mut self.buf);
        let r = self.talk_with(req, seq, f, &mut buf);
        self.buf = buf;
        // An answer read to its end leaves nothing behind, refusal or not.
        self.clean = match &r {
            Ok(()) | Err(Error::Refused { .. }) => true,
            Err(_) => false,
        };
        r
    }

    fn talk_with(
        &mut self,
        req: &[u8],
        seq: u32,
        f: &mut dyn FnMut(&Msg<'_>),
        buf: &mut Vec<u8>,
    ) -> Result<(), Error> {
        self.drain(buf);
        self.send(req)?;
        let mut total = 0usize;
        loop {
            self.recv(buf)?;
            total = total.saturating_add(buf.len());
            if total > DUMP_MAX {
                return Err(Error::Reply("dump too large"));
            }
            for m in messages(buf) {
                if m.seq != seq {
                    continue;
                }
                match m.ty {
                    NLMSG_ERROR => {
                        let ack = parse_ack(&m).ok_or(Error::Reply("short error message"))?;
                        if ack.errno == 0 {
                            return Ok(());
                        }
                        return Err(Error::Refused {
                            op: "query".into(),
                            errno: ack.errno,
                            detail: ack.msg.map(str::to_string),
                        });
                    }
                    NLMSG_DONE => {
                        let errno = done_errno(&m);
                        if errno < 0 {
                            return Err(Error::Refused {
                                op: "dump".into(),
                                errno,
                                detail: None,
                            });
                        }
                        return Ok(());
                    }
                    NLMSG_NOOP => {}
                    _ => f(&m),
                }
            }
        }
    }

    /// Calls `f` for every element of a set.
    pub fn elements(
        &mut self,
        table: &str,
        set: &str,
        f: &mut dyn FnMut(&Element<'_>),
    ) -> Result<(), Error> {
        self.query(|seq| nftables::get_elements(seq, table, set), &mut |m| {
            if m.ty == NEWSETELEM {
                parse_elements(m.payload, f);
            }
        })
    }

    /// One element by key (and key end, for interval sets); None when it
    /// is not there.
    pub fn element(
        &mut self,
        table: &str,
        set: &str,
        key: &Data,
        key_end: Option<&Data>,
    ) -> Result<Option<Found>, Error> {
        let mut found = None;
        let r = self.query(
            |seq| nftables::get_element(seq, table, set, key, key_end),
            &mut |m| {
                if m.ty == NEWSETELEM {
                    parse_elements(m.payload, &mut |e| {
                        found.get_or_insert(Found {
                            timeout_ms: e.timeout_ms,
                            expiration_ms: e.expiration_ms,
                            counter: e.counter,
                        });
                    });
                }
            },
        );
        match r {
            Ok(()) => Ok(found),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Calls `f` for every rule of a chain.
    pub fn rules(
        &mut self,
        table: &str,
        chain: &str,
        f: &mut dyn FnMut(&Rule<'_>),
    ) -> Result<(), Error> {
        self.query(|seq| nftables::get_rules(seq, table, chain), &mut |m| {
            if m.ty == NEWRULE {
                let r = parse_rule(m.payload);
                // Old kernels ignore the chain filter of a dump.
                if r.chain == chain.as_bytes() {
                    f(&r);
                }
            }
        })
    }

    /// Whether what `build` asks for exists (an ack, not ENOENT).
    fn exists(&mut self, build: impl FnOnce(u32) -> Vec<u8>) -> Result<bool, Error> {
        match self.query(build, &mut |_| {}) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether `table inet <table>` exists.
    pub fn table_exists(&mut self, table: &str) -> Result<bool, Error> {
        self.exists(|seq| nftables::get_table(seq, table))
    }

    /// Whether a chain exists in `table inet <table>`.
    pub fn chain_exists(&mut self, table: &str, chain: &str) -> Result<bool, Error> {
        self.exists(|seq| nftables::get_chain(seq, table, chain))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::netlink::{NLM_F_REQUEST, NLMSG_NOOP, request, route};

    /// Whether a test meets what qemu-user does not emulate (a netlink
    /// family other than NETLINK_ROUTE, or a message type of it that qemu
    /// does not translate): only under `scripts/cross-test.sh`, which says
    /// so in `RUPNPD_TEST_UNDER_QEMU`, and only for those errors. The test
    /// then says it is skipped.
    pub(crate) fn qemu_lacks(errno: Option<i32>) -> bool {
        let lacks = std::env::var_os("RUPNPD_TEST_UNDER_QEMU").is_some()
            && matches!(errno, Some(libc::EPROTONOSUPPORT | libc::EOPNOTSUPP));
        if lacks {
            eprintln!("skipped: qemu-user does not emulate this netlink request");
        }
        lacks
    }

    /// A dump socket never holds the loop: a request the kernel leaves
    /// unanswered (a NOOP without NLM_F_ACK) fails within the dump bound
    /// (a blocking socket waited 5 s for it), and the socket answers the
    /// next request.
    #[test]
    fn an_unanswered_request_does_not_block() {
        let mut s = Socket::open_dump(libc::NETLINK_ROUTE).unwrap();
        let t = std::time::Instant::now();
        let r = s.query(
            |seq| request(NLMSG_NOOP, NLM_F_REQUEST, seq, |_| {}),
            &mut |_| {},
        );
        if let Err(Error::Io { err, .. }) = &r
            && qemu_lacks(err.raw_os_error())
        {
            return;
        }
        assert!(
            matches!(r, Err(Error::Reply("no answer from the kernel"))),
            "{r:?}"
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        let mut n = 0;
        match s.query(route::get_neighbours, &mut |_| n += 1) {
            Err(Error::Io { err, .. }) if qemu_lacks(err.raw_os_error()) => {}
            r => r.unwrap(),
        }
    }
}
