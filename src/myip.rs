//! Finding the caller's public IPv4 address for `my-ip` rules.
//!
//! `--my-ip` or `LABCTL_MY_IP` supply it (offline use, tests, VPNs); otherwise it is
//! asked of AWS's own checkip service, and only when a rule uses `my-ip`.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVICE: &str = "checkip.amazonaws.com";

/// Overrides where the address is asked (`host:port`), for a proxy or a test.
pub const ENV_SERVICE: &str = "LABCTL_CHECKIP_ADDRESS";

/// Looks the address up, within a few seconds.
pub async fn lookup() -> anyhow::Result<Ipv4Addr> {
    let address = std::env::var(ENV_SERVICE).unwrap_or_else(|_| format!("{SERVICE}:80"));
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(address.as_str()).await?;
        let request = format!("GET / HTTP/1.0\r\nHost: {SERVICE}\r\nUser-Agent: labctl\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.take(4096).read_to_string(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .map_err(|_| anyhow!("timed out"))
        .and_then(|r| r)
        .with_context(|| format!("cannot look up your public IPv4 address at {address} (a rule uses `my-ip`); pass --my-ip or set LABCTL_MY_IP"))?;
    parse(&response)
}

fn parse(response: &str) -> anyhow::Result<Ipv4Addr> {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
    body.parse()
        .with_context(|| format!("{SERVICE} answered `{body}`, not an IPv4 address; pass --my-ip"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_body_of_an_http_answer() {
        let r = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n198.51.100.7\n";
        assert_eq!(parse(r).unwrap(), Ipv4Addr::new(198, 51, 100, 7));
        assert!(parse("HTTP/1.1 500 Oops\r\n\r\n<html>").is_err());
    }
}
