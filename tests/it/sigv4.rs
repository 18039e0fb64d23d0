//! A SigV4 check in front of LocalStack's S3, which accepts any signature.
//!
//! The bootstrap signs its S3 requests with `curl --aws-sigv4`; real S3 refuses a wrong
//! signature, LocalStack does not. So the bootstrap tests send S3 traffic through
//! [`VerifyingProxy`]: it recomputes each request's signature from the role credentials
//! the IMDS double handed out (the algorithm as AWS documents it, checked below against
//! AWS's own worked example), answers a mismatch with S3's `SignatureDoesNotMatch`, and
//! passes a match through to LocalStack byte for byte.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// Credentials a request must be signed with.
#[derive(Clone)]
pub struct Keys {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

/// One request as the proxy judged it: `GET /bucket/key` and the verdict.
pub type Verdict = (String, Result<(), String>);

/// Forwards signed requests to `upstream`, refusing badly signed ones.
pub struct VerifyingProxy {
    pub endpoint: String,
    pub seen: Arc<Mutex<Vec<Verdict>>>,
    /// The credentials it knows, one set per instance; a request names its own by
    /// access key.
    keys: Arc<Mutex<Vec<Keys>>>,
}

impl VerifyingProxy {
    pub fn start(upstream: &str, keys: Vec<Keys>, region: &str) -> Self {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind SigV4 proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let seen: Arc<Mutex<Vec<Verdict>>> = Arc::default();
        let log = Arc::clone(&seen);
        let region = region.to_owned();
        let keys = Arc::new(Mutex::new(keys));
        let known = Arc::clone(&keys);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let keys = known.lock().expect("lock").clone();
                let (keys, region, upstream, log) =
                    (keys, region.clone(), upstream.clone(), Arc::clone(&log));
                std::thread::spawn(move || serve(client, &upstream, &keys, &region, &log));
            }
        });
        Self {
            endpoint,
            seen,
            keys,
        }
    }

    /// Accepts requests signed with `keys` too.
    pub fn trust(&self, keys: Keys) {
        self.keys.lock().expect("lock").push(keys);
    }

    pub fn verdicts(&self) -> Vec<Verdict> {
        self.seen.lock().expect("lock").clone()
    }
}

fn serve(
    client: TcpStream,
    upstream: &str,
    keys: &[Keys],
    region: &str,
    log: &Mutex<Vec<Verdict>>,
) {
    let mut reader = BufReader::new(client.try_clone().expect("clone"));
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
            return;
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let request = Request::parse(&text);
    let verdict = request.as_ref().map_err(Clone::clone).and_then(|r| {
        let access_key = r.access_key().unwrap_or_default();
        let keys = keys
            .iter()
            .find(|k| k.access_key == access_key)
            .ok_or_else(|| format!("unknown access key `{access_key}`"))?;
        r.verify(keys, region)
    });
    let label = request
        .as_ref()
        .map_or_else(|_| "?".to_owned(), |r| format!("{} {}", r.method, r.path));
    log.lock().expect("lock").push((label, verdict.clone()));
    let mut client_w = client;
    if let Err(why) = verdict {
        let body =
            format!("<Error><Code>SignatureDoesNotMatch</Code><Message>{why}</Message></Error>");
        let _ = write!(
            client_w,
            "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return;
    };
    if up.write_all(&head).is_err() {
        return;
    }
    // Whatever the client buffered past the head, then both directions until EOF.
    let buffered = reader.buffer().to_vec();
    let _ = up.write_all(&buffered);
    let mut client_r = reader.into_inner();
    let mut up_r = up.try_clone().expect("clone");
    let to_client = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut client_w);
        let _ = client_w.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut client_r, &mut up);
    let _ = up.shutdown(Shutdown::Write);
    let _ = to_client.join();
}

/// The parts of a request its signature covers.
struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn parse(head: &str) -> Result<Self, String> {
        let mut lines = head.lines();
        let first = lines.next().ok_or("empty request")?;
        let mut parts = first.split_whitespace();
        let method = parts.next().ok_or("no method")?.to_owned();
        let target = parts.next().ok_or("no target")?;
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Ok(Self {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            headers,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The access key the Authorization header names.
    fn access_key(&self) -> Option<&str> {
        let auth = self.header("authorization")?;
        let credential = auth.split("Credential=").nth(1)?;
        credential.split('/').next()
    }

    fn verify(&self, keys: &Keys, region: &str) -> Result<(), String> {
        let auth = self
            .header("authorization")
            .ok_or("no Authorization header")?;
        let fields = auth
            .strip_prefix("AWS4-HMAC-SHA256 ")
            .ok_or_else(|| format!("not SigV4: {auth}"))?;
        let field = |name: &str| {
            fields
                .split(',')
                .map(str::trim)
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .ok_or_else(|| format!("Authorization lacks {name}"))
        };
        let (credential, signed, signature) = (
            field("Credential")?,
            field("SignedHeaders")?,
            field("Signature")?,
        );
        let date = self.header("x-amz-date").ok_or("no x-amz-date")?;
        let scope = format!("{}/{region}/s3/aws4_request", &date[..8.min(date.len())]);
        if credential != format!("{}/{scope}", keys.access_key) {
            return Err(format!(
                "credential {credential}, want {}/{scope}",
                keys.access_key
            ));
        }
        let names: Vec<&str> = signed.split(';').collect();
        for needed in ["host", "x-amz-date", "x-amz-content-sha256"] {
            if !names.contains(&needed) {
                return Err(format!("{needed} is not signed ({signed})"));
            }
        }
        if let Some(token) = &keys.session_token {
            if self.header("x-amz-security-token") != Some(token) {
                return Err("the session token is missing or wrong".into());
            }
            if !names.contains(&"x-amz-security-token") {
                return Err(format!("the session token is not signed ({signed})"));
            }
        }
        let mut canonical = format!(
            "{}\n{}\n{}\n",
            self.method,
            canonical_path(&self.path),
            canonical_query(&self.query)
        );
        for name in &names {
            let value = self
                .header(name)
                .ok_or_else(|| format!("signed header {name} absent"))?;
            canonical.push_str(&format!(
                "{name}:{}\n",
                value.split_whitespace().collect::<Vec<_>>().join(" ")
            ));
        }
        let payload = self
            .header("x-amz-content-sha256")
            .unwrap_or("UNSIGNED-PAYLOAD");
        canonical.push_str(&format!("\n{signed}\n{payload}"));
        let want = signature_of(&canonical, date, &scope, &keys.secret_key);
        if signature == want {
            Ok(())
        } else {
            Err(format!(
                "signature {signature}, want {want}; canonical request:\n{canonical}"
            ))
        }
    }
}

/// S3's canonical URI: the key as S3 decodes it from the request, URI-encoded once
/// (every byte but `A-Za-z0-9-._~` and `/`). A key sent with a raw `:` is therefore
/// signed wrong by a client that signs the path as it sends it.
fn canonical_path(path: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(path).collect::<Vec<u8>>();
    decoded
        .iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn signature_of(canonical: &str, date: &str, scope: &str, secret: &str) -> String {
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in scope.split('/') {
        key = hmac(&key, part.as_bytes());
    }
    hex(&hmac(&key, to_sign.as_bytes()))
}

/// HMAC-SHA256 (RFC 2104).
fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// AWS's worked example of a signed S3 GET (the "GET Object" example of the S3
/// SigV4 header-signing documentation): if this verifier disagreed with AWS, it could
/// not vouch for curl.
#[test]
fn the_verifier_agrees_with_awss_worked_example() {
    let head = "GET /test.txt HTTP/1.1\r\n\
        Host: examplebucket.s3.amazonaws.com\r\n\
        Range: bytes=0-9\r\n\
        x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\r\n\
        x-amz-date: 20130524T000000Z\r\n\
        Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
        SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
        Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41\r\n\r\n";
    let keys = Keys {
        access_key: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        session_token: None,
    };
    let request = Request::parse(head).expect("parse");
    assert_eq!(request.verify(&keys, "us-east-1"), Ok(()));
    // One byte of the signed range changed: refused.
    let tampered = Request::parse(&head.replace("bytes=0-9", "bytes=0-8")).expect("parse");
    let err = tampered.verify(&keys, "us-east-1").expect_err("tampered");
    assert!(err.contains("want"), "{err}");
    // Another secret: refused.
    let wrong = Keys {
        secret_key: "not-the-key".into(),
        ..keys
    };
    assert!(request.verify(&wrong, "us-east-1").is_err());
}
