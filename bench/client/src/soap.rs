//! A minimal UPnP SOAP client over HTTP/1.1: requests shaped like
//! libminiupnpc's (the client upnpc uses), one connection per request or
//! one keep-alive connection for many, responses read by Content-Length
//! (or to EOF when the server closes).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Longest response head line and body accepted (a full IGD:2 listing of
/// 1000 entries is about 400 KiB).
const MAX_LINE: usize = 8 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

pub const IPCONN_PATH: &str = "/ctl/IPConn";
pub const IPCONN_URN: &str = "urn:schemas-upnp-org:service:WANIPConnection:2";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// One persistent HTTP/1.1 connection for every request (reopened only
    /// if the server closes it).
    KeepAlive,
    /// A new TCP connection per request with `Connection: Close`, as
    /// libminiupnpc does and as miniupnpd requires.
    Close,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "keepalive" | "keep-alive" => Some(Mode::KeepAlive),
            "close" => Some(Mode::Close),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::KeepAlive => "keepalive",
            Mode::Close => "close",
        }
    }
}

pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    /// The UPnP errorCode of a fault, if the body carries one.
    pub fn fault_code(&self) -> Option<u16> {
        let s = self.body.split("<errorCode>").nth(1)?;
        s.split('<').next()?.trim().parse().ok()
    }
}

/// One client session against one control URL.
pub struct Session {
    addr: SocketAddr,
    host: String,
    path: String,
    urn: String,
    mode: Mode,
    conn: Option<BufReader<TcpStream>>,
    /// Connections opened (1 for a keep-alive session that never broke).
    pub connects: u64,
    req: Vec<u8>,
    body: String,
}

/// Appends `<name>value</name>`; values here are digits, addresses and
/// plain words, so no escaping is needed.
fn arg(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(value);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

impl Session {
    pub fn new(addr: SocketAddr, path: &str, urn: &str, mode: Mode) -> Session {
        Session {
            addr,
            host: addr.to_string(),
            path: path.to_string(),
            urn: urn.to_string(),
            mode,
            conn: None,
            connects: 0,
            req: Vec::with_capacity(2048),
            body: String::with_capacity(1024),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn connect(&mut self) -> io::Result<()> {
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))?;
        // libminiupnpc leaves Nagle on: it sends each request in one
        // send(), so only the keep-alive session needs TCP_NODELAY.
        if self.mode == Mode::KeepAlive {
            s.set_nodelay(true)?;
        }
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        self.connects += 1;
        self.conn = Some(BufReader::with_capacity(64 * 1024, s));
        Ok(())
    }

    /// Builds the request the way libminiupnpc 2.2.4 (Debian 12's, the
    /// one upnpc uses) does: the headers in its order with `Connection:
    /// Close`, the quoted SOAPAction, the envelope on one line after the
    /// XML declaration, the argument elements without a namespace prefix,
    /// headers and body in one send. Newer libminiupnpc (2.3) differs
    /// only in `Content-Type: text/xml; charset="utf-8"` and a lowercase
    /// `close`. The `upnpc_bytes` test holds the bytes upnpc sent.
    fn build(&mut self, action: &str, args: &[(&str, &str)]) {
        self.body.clear();
        self.body.push_str(
            "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:",
        );
        self.body.push_str(action);
        self.body.push_str(" xmlns:u=\"");
        self.body.push_str(&self.urn);
        self.body.push_str("\">");
        for (k, v) in args {
            arg(&mut self.body, k, v);
        }
        self.body.push_str("</u:");
        self.body.push_str(action);
        self.body.push_str("></s:Body></s:Envelope>\r\n");
        self.req.clear();
        let close = if self.mode == Mode::Close {
            "Connection: Close\r\n"
        } else {
            ""
        };
        let _ = write!(
            self.req,
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: bench-client, UPnP/1.1, MiniUPnPc/2.2.4\r\n\
Content-Length: {}\r\nContent-Type: text/xml\r\nSOAPAction: \"{}#{}\"\r\n{close}\
Cache-Control: no-cache\r\nPragma: no-cache\r\n\r\n",
            self.path,
            self.host,
            self.body.len(),
            self.urn,
            action
        );
        self.req.extend_from_slice(self.body.as_bytes());
    }

    /// Sends one action and reads the whole reply. In keep-alive mode a
    /// connection the server closed while idle is reopened once.
    pub fn call(&mut self, action: &str, args: &[(&str, &str)]) -> io::Result<Reply> {
        self.build(action, args);
        let reused = self.conn.is_some();
        match self.exchange() {
            Ok(r) => Ok(r),
            Err(e) if reused && self.mode == Mode::KeepAlive => {
                // The server may have closed an idle connection: one retry
                // on a fresh connection, counted in `connects`.
                let _ = e;
                self.conn = None;
                self.exchange()
            }
            Err(e) => Err(e),
        }
    }

    fn exchange(&mut self) -> io::Result<Reply> {
        if self.conn.is_none() || self.mode == Mode::Close {
            self.connect()?;
        }
        let res = self.exchange_on_conn();
        let keep = matches!(&res, Ok((_, true))) && self.mode == Mode::KeepAlive;
        if !keep {
            self.conn = None;
        }
        res.map(|(r, _)| r)
    }

    /// Returns the reply and whether the connection may be reused.
    fn exchange_on_conn(&mut self) -> io::Result<(Reply, bool)> {
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| io::Error::other("no connection"))?;
        conn.get_mut().write_all(&self.req)?;
        let mut line = String::new();
        read_line(conn, &mut line)?;
        if line.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the status line",
            ));
        }
        let status: u16 = line
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
        let mut len: Option<usize> = None;
        let mut close = line.starts_with("HTTP/1.0");
        loop {
            line.clear();
            read_line(conn, &mut line)?;
            if line == "\r\n" || line == "\n" || line.is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().ok();
            } else if let Some(v) = lower.strip_prefix("connection:") {
                close = v.trim() == "close";
            } else if lower.starts_with("transfer-encoding:") {
                // Neither daemon sends chunked replies; reading one as
                // plain bytes would time a wrong answer as a right one.
                return Err(io::Error::other(format!("unsupported {}", line.trim())));
            }
        }
        let mut body = Vec::new();
        match len {
            Some(n) if n <= MAX_BODY => {
                body.resize(n, 0);
                conn.read_exact(&mut body)?;
            }
            Some(n) => return Err(io::Error::other(format!("body of {n} bytes"))),
            None => {
                conn.take(MAX_BODY as u64).read_to_end(&mut body)?;
                close = true;
            }
        }
        Ok((
            Reply {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            },
            !close,
        ))
    }
}

fn read_line(r: &mut BufReader<TcpStream>, line: &mut String) -> io::Result<()> {
    let n = r.take(MAX_LINE as u64).read_line(line)?;
    if n == MAX_LINE && !line.ends_with('\n') {
        return Err(io::Error::other("header line too long"));
    }
    Ok(())
}

/// External ports of the entries in an IGD:2 `NewPortListing`, whether the
/// listing came escaped (`&lt;p:NewExternalPort&gt;`) or in CDATA.
pub fn listing_ports(body: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for open in ["<p:NewExternalPort>", "&lt;p:NewExternalPort&gt;"] {
        for part in body.split(open).skip(1) {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(p) = digits.parse() {
                out.push(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_both_spellings() {
        let cdata = "<NewPortListing><![CDATA[<p:PortMappingEntry><p:NewExternalPort>20000</p:NewExternalPort></p:PortMappingEntry>\
<p:PortMappingEntry><p:NewExternalPort>20001</p:NewExternalPort></p:PortMappingEntry>]]></NewPortListing>";
        assert_eq!(listing_ports(cdata), vec![20000, 20001]);
        let esc = "&lt;p:NewExternalPort&gt;7&lt;/p:NewExternalPort&gt;";
        assert_eq!(listing_ports(esc), vec![7]);
    }

    /// What upnpc 2.2.4 (Debian 12) sent for `upnpc -u … -e bench -a
    /// 192.168.77.2 40000 40000 TCP 3600`, recorded with `strace -e
    /// sendto -s 4096`; only its User-Agent differs from ours.
    const UPNPC_ADD: &str = "POST /ctl/IPConn HTTP/1.1\r\nHost: 192.168.77.1:5000\r\n\
User-Agent: Debian/bookworm/sid, UPnP/1.1, MiniUPnPc/2.2.4\r\nContent-Length: 592\r\n\
Content-Type: text/xml\r\n\
SOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:2#AddPortMapping\"\r\n\
Connection: Close\r\nCache-Control: no-cache\r\nPragma: no-cache\r\n\r\n\
<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>\
<u:AddPortMapping xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:2\">\
<NewRemoteHost></NewRemoteHost><NewExternalPort>40000</NewExternalPort><NewProtocol>TCP</NewProtocol>\
<NewInternalPort>40000</NewInternalPort><NewInternalClient>192.168.77.2</NewInternalClient>\
<NewEnabled>1</NewEnabled><NewPortMappingDescription>bench</NewPortMappingDescription>\
<NewLeaseDuration>3600</NewLeaseDuration></u:AddPortMapping></s:Body></s:Envelope>\r\n";

    #[test]
    fn upnpc_bytes() {
        let mut s = Session::new(
            "192.168.77.1:5000".parse().unwrap(),
            IPCONN_PATH,
            IPCONN_URN,
            Mode::Close,
        );
        s.build(
            "AddPortMapping",
            &[
                ("NewRemoteHost", ""),
                ("NewExternalPort", "40000"),
                ("NewProtocol", "TCP"),
                ("NewInternalPort", "40000"),
                ("NewInternalClient", "192.168.77.2"),
                ("NewEnabled", "1"),
                ("NewPortMappingDescription", "bench"),
                ("NewLeaseDuration", "3600"),
            ],
        );
        let ours = String::from_utf8(s.req.clone()).unwrap();
        let theirs = UPNPC_ADD.replace("Debian/bookworm/sid", "bench-client");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn request_shape() {
        let mut s = Session::new(
            "127.0.0.1:5000".parse().unwrap(),
            IPCONN_PATH,
            IPCONN_URN,
            Mode::Close,
        );
        s.build("DeletePortMapping", &[("NewExternalPort", "1")]);
        let t = String::from_utf8(s.req.clone()).unwrap();
        assert!(t.starts_with("POST /ctl/IPConn HTTP/1.1\r\nHost: 127.0.0.1:5000\r\n"));
        assert!(t.contains("Connection: Close\r\n"));
        assert!(t.contains(
            "SOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:2#DeletePortMapping\""
        ));
        let (head, body) = t.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(body.contains("<NewExternalPort>1</NewExternalPort></u:DeletePortMapping>"));
    }
}
