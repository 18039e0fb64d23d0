//! The real bootstrap script (`cloud-init/bootstrap.sh`) against LocalStack S3 and an
//! IMDSv2 double, with every path it writes under a temporary root.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use labctl_core::userdata::{Artifact, UserDataInput, render};
use sha2::{Digest, Sha256};

use crate::harness::{localstack_endpoint, repo, sdk_config, unique_lab};

const REGION: &str = "us-east-1";
const TOKEN: &str = "imds-test-token";
const FAKE_LABNET: &str = "#!/bin/sh\n\
    if [ \"$1\" = --version ]; then echo 'labnet 0.1.0 (test)'; exit 0; fi\n\
    echo \"labnet $*\"\n";

/// Stands in for EC2's instance metadata service (169.254.169.254), which cannot run
/// here: IMDSv2 only (a GET without the session token from `PUT /latest/api/token` gets
/// 401), one role, fake keys. Returns its endpoint and the requests it saw.
fn imds_double() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind IMDS double");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                headers.push(line.trim().to_ascii_lowercase());
            }
            let mut parts = request.split_whitespace();
            let method = parts.next().unwrap_or("").to_owned();
            let path = parts.next().unwrap_or("").to_owned();
            log.lock().expect("lock").push(format!("{method} {path}"));
            let has_token =
                headers.contains(&format!("x-aws-ec2-metadata-token: {TOKEN}").to_lowercase());
            let (status, body) = match (method.as_str(), path.as_str()) {
                ("PUT", "/latest/api/token")
                    if headers
                        .iter()
                        .any(|h| h.starts_with("x-aws-ec2-metadata-token-ttl-seconds:")) =>
                {
                    ("200 OK", TOKEN.to_owned())
                }
                ("GET", _) if !has_token => ("401 Unauthorized", String::new()),
                ("GET", "/latest/meta-data/iam/security-credentials/") => {
                    ("200 OK", "labctl-test-role".to_owned())
                }
                ("GET", "/latest/meta-data/iam/security-credentials/labctl-test-role") => (
                    "200 OK",
                    "{\n  \"Code\" : \"Success\",\n  \"Type\" : \"AWS-HMAC\",\n  \
                     \"AccessKeyId\" : \"ASIATESTTESTTEST\",\n  \
                     \"SecretAccessKey\" : \"test/secret+key\",\n  \
                     \"Token\" : \"test-session-token\",\n  \
                     \"Expiration\" : \"2099-01-01T00:00:00Z\"\n}"
                        .to_owned(),
                ),
                _ => ("404 Not Found", String::new()),
            };
            let mut out = &stream;
            let _ = write!(
                out,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (format!("http://{addr}"), seen)
}

/// The files a rendered cloud-config writes (`write_files`), by path: the literal
/// blocks under `content: |`, six spaces deep.
fn write_files(user_data: &str) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut lines = user_data.lines().peekable();
    let mut path = None;
    while let Some(line) = lines.next() {
        if let Some(p) = line.strip_prefix("  - path: ") {
            path = Some(p.to_owned());
        } else if line == "    content: |" {
            let mut content = String::new();
            while let Some(next) = lines.peek() {
                if next.is_empty() {
                    content.push('\n');
                } else if let Some(body) = next.strip_prefix("      ") {
                    content.push_str(body);
                    content.push('\n');
                } else {
                    break;
                }
                lines.next();
            }
            files.insert(path.take().expect("path before content"), content);
        }
    }
    files
}

fn user_data(lab: &str, bucket: &str, artifact: &Artifact) -> String {
    let services = vec!["echo-server".to_owned(), "tcp-server".to_owned()];
    render(&UserDataInput {
        lab,
        instance: "server",
        role: "server",
        zone: Some("lab.internal"),
        region: Some(REGION),
        bucket,
        services: &services,
        lifetime_minutes: Some(240),
        labnet: Some(artifact),
    })
}

/// Writes the rendered instance.env and unit template into `etc`, as cloud-init would.
fn install_user_data(etc: &Path, user_data: &str) {
    let files = write_files(user_data);
    std::fs::create_dir_all(etc).expect("etc dir");
    for (from, to) in [
        ("/etc/labctl/instance.env", "instance.env"),
        ("/etc/labctl/labnet.service.tmpl", "labnet.service.tmpl"),
    ] {
        let text = files
            .get(from)
            .unwrap_or_else(|| panic!("{from} in user-data"));
        std::fs::write(etc.join(to), text).expect("write");
    }
}

fn run_bootstrap(root: &Path, etc: &Path, imds: &str) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("cloud-init/bootstrap.sh"));
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") || key.starts_with("LABCTL_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("LABCTL_ROOT", root)
        .env("LABCTL_INSTANCE_ENV", etc.join("instance.env"))
        .env("LABCTL_NO_SYSTEMD", "1")
        .env("LABCTL_S3_ENDPOINT", localstack_endpoint())
        .env("LABCTL_RETRIES", "3")
        .env("LABCTL_BACKOFF", "1")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
        .output()
        .expect("bash runs")
}

fn transcript(out: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_installs_verified_labnet_and_reports_and_refuses_a_tampered_one() {
    let lab = unique_lab("boot");
    let bucket = format!("{lab}-captures");
    let config = sdk_config(REGION).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    let sha = sha256_hex(FAKE_LABNET.as_bytes());
    let key = format!("artifacts/labnet/{sha}");
    let put = |body: &'static str| {
        s3.put_object()
            .bucket(&bucket)
            .key(&key)
            .body(body.as_bytes().to_vec().into())
            .send()
    };
    put(FAKE_LABNET).await.expect("upload labnet");
    let report = || async {
        let obj = s3
            .get_object()
            .bucket(&bucket)
            .key("reports/server.json")
            .send()
            .await
            .expect("readiness report in the bucket");
        let bytes = obj.body.collect().await.expect("body").into_bytes();
        serde_json::from_slice::<serde_json::Value>(&bytes).expect("report is JSON")
    };

    let (imds, seen) = imds_double();
    let artifact = Artifact::S3 {
        bucket: bucket.clone(),
        key: key.clone(),
        sha256: sha.clone(),
    };
    let ud = user_data(&lab, &bucket, &artifact);
    assert_eq!(ud, user_data(&lab, &bucket, &artifact), "deterministic");
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("root");
    let etc = tmp.path().join("etc-labctl");
    install_user_data(&etc, &ud);

    // First boot: fetched with the role's credentials, verified, installed, reported.
    let out = run_bootstrap(&root, &etc, &imds);
    assert!(out.status.success(), "{}", transcript(&out));
    let bin = root.join("usr/local/bin/labnet");
    assert_eq!(
        std::fs::read(&bin).expect("labnet installed"),
        FAKE_LABNET.as_bytes()
    );
    let mode = std::fs::metadata(&bin).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    for svc in ["echo-server", "tcp-server"] {
        let unit =
            std::fs::read_to_string(root.join(format!("etc/systemd/system/labnet-{svc}.service")))
                .unwrap_or_else(|e| panic!("unit for {svc}: {e}\n{}", transcript(&out)));
        assert!(
            unit.contains(&format!("\nExecStart=/usr/local/bin/labnet {svc}\n")),
            "{unit}"
        );
        assert!(unit.contains("\nRestart=on-failure\n"), "{unit}");
        assert!(unit.contains("\nUser=labnet\n"), "{unit}");
        assert!(unit.contains("\nWantedBy=multi-user.target\n"), "{unit}");
        assert!(!unit.contains("@SERVICE@"), "{unit}");
    }
    let units: Vec<_> = std::fs::read_dir(root.join("etc/systemd/system"))
        .expect("unit dir")
        .collect();
    assert_eq!(units.len(), 2, "one unit per service");
    let r = report().await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["instance"], "server", "{r}");
    assert_eq!(r["labnet_version"], "labnet 0.1.0 (test)", "{r}");
    assert_eq!(r["labnet_sha256"], sha.as_str(), "{r}");
    assert_eq!(r["services"]["tcp-server"], "not-started", "{r}");
    assert_eq!(r["services"]["echo-server"], "not-started", "{r}");
    assert!(r["error"].is_null(), "{r}");
    {
        let seen = seen.lock().expect("lock");
        assert!(
            seen.contains(&"PUT /latest/api/token".to_owned()),
            "{seen:?}"
        );
        assert!(
            seen.contains(
                &"GET /latest/meta-data/iam/security-credentials/labctl-test-role".to_owned()
            ),
            "{seen:?}"
        );
    }

    // The object is tampered with: the same user-data now names a SHA-256 it does not
    // have. The installed binary stays as it was, and the failure is reported.
    put("#!/bin/sh\necho evil\n").await.expect("tamper");
    let out = run_bootstrap(&root, &etc, &imds);
    assert!(!out.status.success(), "{}", transcript(&out));
    assert_eq!(
        std::fs::read(&bin).expect("old labnet still there"),
        FAKE_LABNET.as_bytes()
    );
    let r = report().await;
    assert_eq!(r["ok"], false, "{r}");
    let error = r["error"].as_str().expect("error text");
    assert!(error.contains("SHA-256 mismatch"), "{r}");
    assert!(
        r["log_tail"]
            .as_str()
            .is_some_and(|t| t.contains("mismatch")),
        "{r}"
    );

    // A fresh instance with the tampered object installs nothing at all.
    let fresh = tmp.path().join("fresh");
    let out = run_bootstrap(&fresh, &etc, &imds);
    assert!(!out.status.success(), "{}", transcript(&out));
    let bin_dir = fresh.join("usr/local/bin");
    let left: Vec<_> = std::fs::read_dir(&bin_dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing installed: {left:?}");
    assert_eq!(report().await["ok"], false);
}
