//! The `my-ip` lookup against a stand-in checkip service on loopback (the real one
//! is on the internet, which tests do not reach): HTTPS with a certificate made here
//! and trusted through `SSL_CERT_FILE`, fixed answers, and one clear error for every
//! answer or failure that must not become a rule.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::harness::{Run, Sandbox, unique_lab};
use crate::reconcile::{default_lab, owned_count};

/// A public address, as a good service answers.
pub(crate) const PUBLIC: &str = "52.94.76.7";

const ADVICE: &str = "pass --my-ip ADDRESS (or set LABCTL_MY_IP)";

/// A checkip service on 127.0.0.1 that answers every request alike and counts the
/// connections made to it.
pub(crate) struct Checkip {
    /// Where its certificates live, for as long as it does.
    _dir: tempfile::TempDir,
    /// The certificate file labctl trusts.
    trusted: PathBuf,
    url: String,
    asked: Arc<AtomicUsize>,
    /// A listener nobody accepts on, kept open for as long as the service lives.
    _silent: Option<std::net::TcpListener>,
}

impl Checkip {
    /// Answers `body` with a certificate labctl trusts.
    pub(crate) fn answering(body: &str) -> Self {
        Self::start(body, true)
    }

    /// Answers `body`, but with a certificate labctl does not trust.
    fn untrusted(body: &str) -> Self {
        Self::start(body, false)
    }

    /// Takes connections and never says a word.
    fn silent() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (trusted, _) = certificate(dir.path(), "trusted");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("https://{}/", listener.local_addr().expect("address"));
        Self {
            _dir: dir,
            trusted,
            url,
            asked: Arc::new(AtomicUsize::new(0)),
            _silent: Some(listener),
        }
    }

    fn start(body: &str, trust: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = certificate(dir.path(), "server");
        let trusted = if trust {
            cert.clone()
        } else {
            certificate(dir.path(), "other").0
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("https://{}/", listener.local_addr().expect("address"));
        let asked = Arc::new(AtomicUsize::new(0));
        serve(
            listener,
            acceptor(&cert, &key),
            body.as_bytes(),
            asked.clone(),
        );
        Self {
            _dir: dir,
            trusted,
            url,
            asked,
            _silent: None,
        }
    }

    /// How many connections it has had.
    pub(crate) fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }

    /// `host:port`, as errors name it.
    fn authority(&self) -> &str {
        self.url
            .trim_start_matches("https://")
            .trim_end_matches('/')
    }

    /// Points `cmd` at this service, trusting only its certificate file, with no proxy
    /// in between.
    pub(crate) fn point<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        for proxy in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
            cmd.env_remove(proxy);
        }
        cmd.env("LABCTL_CHECKIP_URL", &self.url)
            .env("SSL_CERT_FILE", &self.trusted)
            .env_remove("SSL_CERT_DIR")
    }
}

/// A self-signed server certificate for 127.0.0.1 and its key, made with the
/// `openssl` command.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let config = dir.join(format!("{name}.cnf"));
    // Its own name: a trusted certificate of the same name would make a wrong
    // signature, not an unknown issuer.
    std::fs::write(
        &config,
        format!(
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = labctl test {name}\n\
             [leaf]\nbasicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n\
             subjectAltName = IP:127.0.0.1\n"
        ),
    )
    .expect("write openssl config");
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-config"])
        .arg(&config)
        .args(["-extensions", "leaf", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command runs");
    assert!(
        out.status.success(),
        "openssl req failed:\n{}",
        crate::harness::transcript(&out)
    );
    (cert, key)
}

fn acceptor(cert: &Path, key: &Path) -> TlsAcceptor {
    let certs = CertificateDer::pem_file_iter(cert)
        .expect("read certificate")
        .collect::<Result<Vec<_>, _>>()
        .expect("parse certificate");
    let key = PrivateKeyDer::from_pem_file(key).expect("read key");
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    TlsAcceptor::from(Arc::new(config))
}

/// Answers every request on `listener` with `body`, on a thread of its own.
fn serve(listener: std::net::TcpListener, tls: TlsAcceptor, body: &[u8], asked: Arc<AtomicUsize>) {
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    let response = Arc::new(response);
    listener.set_nonblocking(true).expect("non-blocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            while let Ok((tcp, _)) = listener.accept().await {
                asked.fetch_add(1, Ordering::SeqCst);
                let (tls, response) = (tls.clone(), response.clone());
                tokio::spawn(async move {
                    let Ok(mut stream) = tls.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = stream.write_all(&response).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
    });
}

/// A sandbox on LocalStack with the default lab and one rule from `my-ip`.
fn sandbox() -> (Sandbox, String) {
    let lab = unique_lab("myip");
    let sb = Sandbox::with_localstack();
    let text = default_lab(&lab).replace(
        "      - { proto: icmp,                     from: [role:client], description: ping }\n",
        "      - { proto: icmp,                     from: [role:client], description: ping }\n      - { proto: tcp, ports: 22, from: [my-ip] }\n",
    );
    assert!(text.contains("my-ip"), "the rule went in");
    sb.write("topology.yaml", &text);
    (sb, lab)
}

fn run(sb: &Sandbox, checkip: &Checkip, args: &[&str]) -> Run {
    let mut cmd = sb.labctl(args);
    Run(checkip.point(&mut cmd).output().expect("labctl runs"))
}

/// Exit 1 and one error, saying `says` on one line.
fn refused(run: &Run, says: &str) {
    assert_eq!(run.code(), 1, "{}", run.transcript());
    let stderr = run.stderr();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{}", run.transcript());
    assert!(
        errors[0].contains(says),
        "no {says:?}\n{}",
        run.transcript()
    );
    assert!(!stderr.contains('\x1b'), "{}", run.transcript());
}

#[test]
fn a_public_answer_becomes_the_rules_address() {
    let (sb, _) = sandbox();
    let checkip = Checkip::answering(&format!("{PUBLIC}\n"));
    let plan = run(&sb, &checkip, &["plan"]);
    assert_eq!(plan.code(), 0, "{}", plan.transcript());
    assert!(
        plan.stdout().contains(&format!("tcp/22 {PUBLIC}/32")),
        "{}",
        plan.stdout()
    );
    assert_eq!(checkip.asked(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_answer_is_refused_and_nothing_is_made() {
    let (sb, lab) = sandbox();
    let checkip = Checkip::answering("10.0.0.7\n");
    let says = format!(
        "{} answered 10.0.0.7, which is not a public IPv4 address (private, RFC 1918); {ADVICE}",
        checkip.authority()
    );
    tokio::task::block_in_place(|| {
        refused(&run(&sb, &checkip, &["plan"]), &says);
        refused(&run(&sb, &checkip, &["up", "--yes"]), &says);
    });
    assert_eq!(owned_count(&lab).await, 0, "nothing was created");
}

#[test]
fn an_answer_that_is_not_an_address_is_refused_sanitised_and_short() {
    let (sb, _) = sandbox();
    let checkip =
        Checkip::answering("<html><body>\x1b[2J Service Unavailable, try later</body></html>\n");
    refused(
        &run(&sb, &checkip, &["plan"]),
        &format!(
            "{} answered `<html><body>\\u{{1b}}[2J Service Unavailable, tr…`, \
             which is not an IPv4 address; {ADVICE}",
            checkip.authority()
        ),
    );
    let nothing = Checkip::answering("");
    refused(
        &run(&sb, &nothing, &["plan"]),
        &format!(
            "{} answered nothing, which is not an IPv4 address; {ADVICE}",
            nothing.authority()
        ),
    );
    let two = Checkip::answering(&format!("{PUBLIC}\n{PUBLIC}\n"));
    refused(
        &run(&sb, &two, &["plan"]),
        "which is not an IPv4 address; pass --my-ip",
    );
    // Far more than an address: only the start is read, and only some of that shown.
    let long = Checkip::answering(&"9".repeat(100_000));
    refused(
        &run(&sb, &long, &["plan"]),
        &format!(
            "answered `{}…`, which is not an IPv4 address",
            "9".repeat(40)
        ),
    );
}

#[test]
fn a_plain_http_url_is_refused() {
    let (sb, _) = sandbox();
    let mut cmd = sb.labctl(&["plan"]);
    cmd.env("LABCTL_CHECKIP_URL", "http://127.0.0.1:9/");
    refused(
        &Run(cmd.output().expect("labctl runs")),
        "LABCTL_CHECKIP_URL must be an https:// URL, not `http://127.0.0.1:9/`",
    );
}

#[test]
fn a_certificate_not_trusted_is_refused() {
    let (sb, _) = sandbox();
    let checkip = Checkip::untrusted(&format!("{PUBLIC}\n"));
    let plan = run(&sb, &checkip, &["plan"]);
    refused(
        &plan,
        &format!(
            "cannot ask {} for your public IPv4 address (a rule uses `my-ip`): \
             invalid peer certificate: UnknownIssuer; {ADVICE}",
            checkip.authority()
        ),
    );
    assert_eq!(checkip.asked(), 1, "it did connect");
}

#[test]
fn a_service_that_never_answers_times_out() {
    let (sb, _) = sandbox();
    let checkip = Checkip::silent();
    let started = std::time::Instant::now();
    refused(
        &run(&sb, &checkip, &["plan"]),
        &format!(
            "cannot ask {} for your public IPv4 address (a rule uses `my-ip`): \
             no answer within 5s; {ADVICE}",
            checkip.authority()
        ),
    );
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
}

#[test]
fn a_given_address_is_checked_too_and_not_looked_up() {
    let (sb, _) = sandbox();
    let checkip = Checkip::answering("10.0.0.7\n");
    refused(
        &run(&sb, &checkip, &["--my-ip", "10.0.0.7", "plan"]),
        "--my-ip 10.0.0.7 is not a public IPv4 address (private, RFC 1918)",
    );
    let mut cmd = sb.labctl(&["plan"]);
    checkip.point(&mut cmd).env("LABCTL_MY_IP", "100.64.1.2");
    refused(
        &Run(cmd.output().expect("labctl runs")),
        "LABCTL_MY_IP 100.64.1.2 is not a public IPv4 address (carrier-grade NAT, 100.64.0.0/10)",
    );
    let plan = run(&sb, &checkip, &["--my-ip", PUBLIC, "plan"]);
    assert_eq!(plan.code(), 0, "{}", plan.transcript());
    assert!(plan.stdout().contains(&format!("tcp/22 {PUBLIC}/32")));
    assert_eq!(checkip.asked(), 0, "a given address is not looked up");
}
