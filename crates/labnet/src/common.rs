//! What every lab program shares: listening sockets with the labs' options, clean
//! shutdown on SIGTERM, and one readable log line per event.

use std::fmt::Display;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Args;
use socket2::{Domain, Protocol, Socket, Type};

/// Where and how a server listens.
#[derive(Debug, Clone, Args)]
pub struct Listen {
    /// Address to bind.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub bind: IpAddr,
    /// Set SO_REUSEADDR (the Python servers do).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub reuse_addr: bool,
    /// Set SO_REUSEPORT, so several servers can share the port.
    #[arg(long)]
    pub reuse_port: bool,
    /// Listen backlog. The Python originals use 5, which makes the lab's 1000-client
    /// run mostly a test of SYN retries; 1024 holds that run (the kernel caps it at
    /// net.core.somaxconn). `--backlog 5` reproduces the original.
    #[arg(long, default_value_t = 1024)]
    pub backlog: i32,
}

impl Listen {
    /// The address to bind for `port`; its `Display` brackets an IPv6 address.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.bind, port)
    }

    /// A TCP listener on `port` with these options.
    pub fn tcp(&self, port: u16) -> std::io::Result<tokio::net::TcpListener> {
        let addr = self.addr(port);
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(self.reuse_addr)?;
        #[cfg(unix)]
        socket.set_reuse_port(self.reuse_port)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(self.backlog)?;
        tokio::net::TcpListener::from_std(socket.into())
    }

    /// A UDP socket on `port` with these options.
    pub fn udp(&self, port: u16) -> std::io::Result<tokio::net::UdpSocket> {
        let addr = self.addr(port);
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(self.reuse_addr)?;
        #[cfg(unix)]
        socket.set_reuse_port(self.reuse_port)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        tokio::net::UdpSocket::from_std(socket.into())
    }
}

/// `--host` as the resolver wants it: `[::1]` is accepted as well as `::1`.
pub fn host_name(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// `host:port` for messages, with an IPv6 address in brackets (`[::1]:8080`) so the port
/// cannot be read as part of the address.
pub fn host_port(host: &str, port: u16) -> String {
    let host = host_name(host);
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A positive number of seconds, fractions allowed (`5`, `0.5`): how every labnet
/// program takes a time.
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds (examples: 5, 0.5)"))?;
    if secs > 0.0 && Duration::try_from_secs_f64(secs).is_ok() {
        Ok(secs)
    } else {
        Err("expected a positive number of seconds".into())
    }
}

/// Resolves on SIGTERM (systemd stopping the service) or Ctrl-C.
///
/// The handlers are installed when this is called, not when the future is first
/// polled: a server calls it before announcing its address, so a signal sent the moment
/// `listening on` appears still stops it cleanly instead of killing it.
#[cfg(unix)]
pub fn shutdown() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (term, interrupt) {
            (Ok(mut term), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            (Ok(mut only), Err(_)) | (Err(_), Ok(mut only)) => {
                only.recv().await;
            }
            (Err(_), Err(_)) => std::future::pending().await,
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// After a failed accept (usually out of file descriptors): log it and pause briefly
/// instead of spinning, while finishing connections free descriptors.
pub async fn accept_failed(error: std::io::Error) {
    log(format_args!("accept failed: {error}"));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

/// One log line on stdout, flushed at once so `journalctl -u` and tests see it live.
pub fn log(line: impl Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Raises the open-file soft limit to the hard limit: a load test holds one socket per
/// client, and the usual soft limit of 1024 is below the lab's series.
pub fn raise_fd_limit() {
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(host_port("::1", 8080), "[::1]:8080");
        assert_eq!(host_port("[::1]", 8080), "[::1]:8080");
        assert_eq!(host_port("fe80::1%eth0", 1), "[fe80::1%eth0]:1");
        assert_eq!(host_port("127.0.0.1", 8080), "127.0.0.1:8080");
        assert_eq!(
            host_port("server.lab.internal", 80),
            "server.lab.internal:80"
        );
        assert_eq!(host_name("[::1]"), "::1");
    }

    #[test]
    fn seconds_must_be_positive() {
        assert_eq!(parse_seconds("0.5"), Ok(0.5));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("inf").is_err());
        assert!(parse_seconds("x").is_err());
    }
}
