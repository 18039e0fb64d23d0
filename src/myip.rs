//! Finding the caller's public IPv4 address for `my-ip` rules.
//!
//! `--my-ip` or `LABCTL_MY_IP` supply it (offline use, tests, VPNs); otherwise it is
//! asked of AWS's own checkip service, and only when a rule uses `my-ip`.
//!
//! The answer opens the lab's ports to that address, so whoever can answer in the
//! service's place chooses who gets in. Hence HTTPS with the certificate checked
//! against the system's roots, and an answer taken only if it is one public unicast
//! IPv4 address: a private, reserved or otherwise special address is a mistake or a
//! trick, and a rule for it would be no use to someone on the internet anyway.
//! Whatever else happens, the error says so in one line and names the way out:
//! giving the address.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{anyhow, bail};

/// Where the address is asked.
const SERVICE_URL: &str = "https://checkip.amazonaws.com/";

/// Overrides [`SERVICE_URL`] (an `https://` URL), for a test or a mirror.
pub const ENV_SERVICE_URL: &str = "LABCTL_CHECKIP_URL";

/// Where `--my-ip` is read from when the flag is absent.
const ENV_MY_IP: &str = "LABCTL_MY_IP";

/// The whole lookup, connection to last byte.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The most of an answer read: an address is at most 15 bytes and a newline.
const MAX_BODY: usize = 256;

/// What every failed lookup ends with.
const ADVICE: &str = "pass --my-ip ADDRESS (or set LABCTL_MY_IP)";

/// Checks an address given with `--my-ip` or `LABCTL_MY_IP`.
pub fn given(ip: Ipv4Addr) -> anyhow::Result<Ipv4Addr> {
    match labctl_core::address::not_public(ip) {
        None => Ok(ip),
        Some(why) => bail!(
            "{} {ip} is not a public IPv4 address ({why}); give the address the internet \
             sees you from, or write a CIDR block in the rule instead of `my-ip`",
            given_by(ip)
        ),
    }
}

/// Which of the two gave `ip`: the flag wins when both are there.
fn given_by(ip: Ipv4Addr) -> &'static str {
    let flag = std::env::args().any(|a| a == "--my-ip" || a.starts_with("--my-ip="));
    let env = std::env::var(ENV_MY_IP)
        .ok()
        .and_then(|v| v.trim().parse::<Ipv4Addr>().ok());
    if !flag && env == Some(ip) {
        ENV_MY_IP
    } else {
        "--my-ip"
    }
}

/// Looks the address up, within [`TIMEOUT`].
pub async fn lookup() -> anyhow::Result<Ipv4Addr> {
    let url = service_url()?;
    let service = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => url.to_string(),
    };
    let unreachable = |cause: String| {
        anyhow!(
            "cannot ask {service} for your public IPv4 address (a rule uses `my-ip`): \
             {cause}; {ADVICE}"
        )
    };
    let (status, body) = match tokio::time::timeout(TIMEOUT, fetch(url.clone())).await {
        Err(_) => {
            return Err(unreachable(format!(
                "no answer within {}s",
                TIMEOUT.as_secs()
            )));
        }
        Ok(Err(e)) => return Err(unreachable(cause(&e))),
        Ok(Ok(answer)) => answer,
    };
    if !status.is_success() {
        bail!("{service} answered HTTP {status}, not an address; {ADVICE}");
    }
    parse(&service, &body)
}

/// The service's URL: the default, or an `https://` override.
fn service_url() -> anyhow::Result<reqwest::Url> {
    let Ok(text) = std::env::var(ENV_SERVICE_URL) else {
        return Ok(reqwest::Url::parse(SERVICE_URL)?);
    };
    match reqwest::Url::parse(&text) {
        Ok(url) if url.scheme() == "https" && url.host_str().is_some() => Ok(url),
        Ok(_) => bail!(
            "{ENV_SERVICE_URL} must be an https:// URL, not `{}`",
            shown(text.as_bytes(), 80)
        ),
        Err(e) => bail!(
            "{ENV_SERVICE_URL} is not a URL ({e}): `{}`",
            shown(text.as_bytes(), 80)
        ),
    }
}

/// The status and at most [`MAX_BODY`] + 1 bytes of the answer.
async fn fetch(url: reqwest::Url) -> reqwest::Result<(reqwest::StatusCode, Vec<u8>)> {
    let client = reqwest::Client::builder()
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .user_agent(concat!("labctl/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let mut response = client.get(url).send().await?;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY + 1 - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() > MAX_BODY {
            break;
        }
    }
    Ok((response.status(), body))
}

/// The innermost cause of a failed request ("invalid peer certificate: UnknownIssuer"),
/// which says more than the URL-naming layers above it.
fn cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {}s", TIMEOUT.as_secs());
    }
    let mut inner: &dyn std::error::Error = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    shown(inner.to_string().as_bytes(), 160)
}

/// The answer's address, if it is one public unicast IPv4 address.
fn parse(service: &str, body: &[u8]) -> anyhow::Result<Ipv4Addr> {
    let text = std::str::from_utf8(body).unwrap_or_default().trim();
    let Ok(ip) = text.parse::<Ipv4Addr>() else {
        bail!(
            "{service} answered {}, which is not an IPv4 address; {ADVICE}",
            match shown(body, 40) {
                s if s.is_empty() => "nothing".to_owned(),
                s => format!("`{s}`"),
            }
        );
    };
    match labctl_core::address::not_public(ip) {
        None => Ok(ip),
        Some(why) => {
            bail!("{service} answered {ip}, which is not a public IPv4 address ({why}); {ADVICE}")
        }
    }
}

/// Text from elsewhere, safe to print on one line: trimmed, at most `max`
/// characters, anything but printable ASCII escaped.
fn shown(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| match c {
            ' '..='~' => c.to_string(),
            _ => c.escape_default().to_string(),
        })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("an address")
    }

    #[test]
    fn public_unicast_addresses_pass() {
        for s in [
            "1.1.1.1",
            "52.94.76.7",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.255",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
        ] {
            assert_eq!(labctl_core::address::not_public(ip(s)), None, "{s}");
        }
    }

    #[test]
    fn special_addresses_are_refused_with_a_reason() {
        for (s, why) in [
            ("0.0.0.0", "this network"),
            ("0.255.255.255", "this network"),
            ("10.0.0.7", "RFC 1918"),
            ("10.255.255.255", "RFC 1918"),
            ("172.16.0.0", "RFC 1918"),
            ("172.31.255.255", "RFC 1918"),
            ("192.168.1.1", "RFC 1918"),
            ("100.64.0.0", "carrier-grade NAT"),
            ("100.127.255.255", "carrier-grade NAT"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("169.254.169.254", "link-local"),
            ("192.0.0.9", "IETF"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.255", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.254", "reserved"),
            ("255.255.255.255", "broadcast"),
        ] {
            let reason =
                labctl_core::address::not_public(ip(s)).unwrap_or_else(|| panic!("{s} passed"));
            assert!(reason.contains(why), "{s}: {reason}");
        }
    }

    #[test]
    fn an_answer_is_exactly_one_public_address() {
        assert_eq!(
            parse("svc", b" 52.94.76.7\r\n").expect("public"),
            ip("52.94.76.7")
        );
        for (body, says) in [
            (
                &b"10.0.0.7\n"[..],
                "svc answered 10.0.0.7, which is not a public IPv4 address (private, RFC 1918); pass --my-ip ADDRESS (or set LABCTL_MY_IP)",
            ),
            (
                b"",
                "svc answered nothing, which is not an IPv4 address; pass --my-ip ADDRESS (or set LABCTL_MY_IP)",
            ),
            (
                b"52.94.76.7 52.94.76.8",
                "svc answered `52.94.76.7 52.94.76.8`, which is not an IPv4 address",
            ),
            (b"052.94.76.7", "answered `052.94.76.7`"),
            (b"2001:db8::1", "answered `2001:db8::1`"),
            (b"52.94.76.7/32", "answered `52.94.76.7/32`"),
        ] {
            let err = parse("svc", body).expect_err(says).to_string();
            assert!(err.starts_with(says) || err.contains(says), "{err}");
        }
    }

    #[test]
    fn what_was_answered_is_shown_sanitised_and_short() {
        assert_eq!(
            shown(b"  \x1b[31mred\x1b[0m\r\n", 40),
            "\\u{1b}[31mred\\u{1b}[0m"
        );
        assert_eq!(shown("zoë\u{202e}".as_bytes(), 40), "zo\\u{eb}\\u{202e}");
        let long = shown("<html>".repeat(20).as_bytes(), 40);
        assert_eq!(long, format!("{}…", &"<html>".repeat(7)[..40]));
        assert_eq!(shown(&[0xff, b'a'], 40), "\\u{fffd}a");
    }
}
