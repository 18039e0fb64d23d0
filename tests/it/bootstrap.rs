//! An instance's first boot, for real but for the machine: `labctl up` launches the
//! default lab on LocalStack (which runs no user-data), then each instance's own
//! user-data, read back from EC2, is carried out here as cloud-init would: its
//! `write_files` written and its `runcmd` run, the real bootstrap script among them.
//!
//! Everything runs inside a mount namespace (`unshare -m`) with overlays on /etc,
//! /usr/local and /var/log, so the host's real directories are never written; the test
//! reads what the instance wrote from the overlays' upper layers. What cannot run here
//! has stand-ins, and only those: the metadata service (an IMDSv2 double on loopback
//! serving the instance's id and role credentials), and `systemctl`, `snap` and
//! `apt-get` (scripts on PATH that record their calls: the namespace has no systemd of
//! its own, and installing packages would change the host). S3 is LocalStack's, behind a
//! proxy that checks each request's SigV4 signature as real S3 would (LocalStack checks
//! none), so labnet is fetched with the role's credentials and the readiness report
//! lands where `labctl status` and `up --wait` read it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use labctl_core::desired::labnet_key;

use crate::cloudinit::write_files;
use crate::exec::ids;
use crate::harness::{Teardown, labnet_binary, localstack_endpoint, sdk_config, transcript};
use crate::reconcile::{REGION, lab_sandbox, ok};
use crate::sigv4::{Keys, VerifyingProxy};

const TOKEN: &str = "imds-test-token";
const ROLE: &str = "labctl-test-role";

/// LocalStack's S3 behind a proxy that refuses what real S3 would refuse for its
/// signature. It knows no credentials until [`VerifyingProxy::trust`] names them.
pub(crate) fn signed_s3() -> VerifyingProxy {
    VerifyingProxy::start(localstack_endpoint(), Vec::new(), REGION)
}

/// The credentials EC2 would give `instance_id` for the lab's role: LocalStack's own
/// `AssumeRole` of that role, with the instance id as the session's name, which is
/// what EC2 does. So STS answers `GetCallerIdentity` with `<role id>:<instance id>`,
/// the writer the instance's keys must use, as on AWS.
pub(crate) async fn instance_keys(lab: &str, instance_id: &str) -> Keys {
    let config = sdk_config(REGION).await;
    let roles = aws_sdk_iam::Client::new(&config)
        .list_roles()
        .path_prefix(format!("/labctl/{lab}/"))
        .send()
        .await
        .expect("list the lab's roles");
    let role = roles.roles().first().expect("the lab has its role");
    let out = aws_sdk_sts::Client::new(&config)
        .assume_role()
        .role_arn(role.arn())
        .role_session_name(instance_id)
        .send()
        .await
        .expect("assume the lab's role");
    let creds = out.credentials().expect("credentials");
    Keys {
        access_key: creds.access_key_id().to_owned(),
        secret_key: creds.secret_access_key().to_owned(),
        session_token: Some(creds.session_token().to_owned()),
    }
}

/// The role's id, which starts every writer of the lab's instances.
pub(crate) async fn role_id(lab: &str) -> String {
    let config = sdk_config(REGION).await;
    let roles = aws_sdk_iam::Client::new(&config)
        .list_roles()
        .path_prefix(format!("/labctl/{lab}/"))
        .send()
        .await
        .expect("list the lab's roles");
    roles
        .roles()
        .first()
        .expect("the lab has its role")
        .role_id()
        .to_owned()
}

/// What the IMDS double saw: method and path, and whether the session token came along.
pub(crate) type Seen = Arc<Mutex<Vec<(String, bool)>>>;

/// Stands in for EC2's instance metadata service (169.254.169.254), which cannot run
/// here: IMDSv2 only (a GET without the token from `PUT /latest/api/token` gets 401),
/// the instance's id, and its role's credentials `keys` (see [`instance_keys`]).
pub(crate) fn imds_double(instance_id: &str, keys: &Keys) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind IMDS double");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let instance_id = instance_id.to_owned();
    let keys = keys.clone();
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
            let has_token = headers.contains(&format!("x-aws-ec2-metadata-token: {TOKEN}"));
            log.lock()
                .expect("lock")
                .push((format!("{method} {path}"), has_token));
            let creds = format!("/latest/meta-data/iam/security-credentials/{ROLE}");
            let (status, body) = match (method.as_str(), path.as_str()) {
                ("PUT", "/latest/api/token")
                    if headers
                        .iter()
                        .any(|h| h.starts_with("x-aws-ec2-metadata-token-ttl-seconds:")) =>
                {
                    ("200 OK", TOKEN.to_owned())
                }
                ("GET", _) if !has_token => ("401 Unauthorized", String::new()),
                ("GET", "/latest/meta-data/instance-id") => ("200 OK", instance_id.clone()),
                ("GET", "/latest/meta-data/iam/security-credentials/") => {
                    ("200 OK", ROLE.to_owned())
                }
                ("GET", p) if p == creds => (
                    "200 OK",
                    format!(
                        "{{\n  \"Code\" : \"Success\",\n  \"Type\" : \"AWS-HMAC\",\n  \
                         \"AccessKeyId\" : \"{}\",\n  \
                         \"SecretAccessKey\" : \"{}\",\n  \
                         \"Token\" : \"{}\",\n  \
                         \"Expiration\" : \"2099-01-01T00:00:00Z\"\n}}",
                        keys.access_key,
                        keys.secret_key,
                        keys.session_token.as_deref().unwrap_or_default()
                    ),
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

/// Stand-ins on PATH. `systemctl is-active` answers `active`; every call is recorded.
const SYSTEMCTL: &str = "#!/bin/sh\n\
    echo \"systemctl $*\" >>\"$STANDIN_CALLS\"\n\
    [ \"$1\" = is-active ] && echo active\n\
    exit 0\n";
const SNAP: &str = "#!/bin/sh\necho \"snap $*\" >>\"$STANDIN_CALLS\"\nexit 0\n";
/// cloud-init's `packages` module runs apt-get; here it records what would be installed.
const APT_GET: &str = "#!/bin/sh\necho \"apt-get $*\" >>\"$STANDIN_CALLS\"\nexit 0\n";

/// Mounts the overlays, writes the files, runs the commands: cloud-init's part.
const DRIVER: &str = r#"set -u
T=$1
for d in etc usr/local var/log; do
  mkdir -p "$T/upper/$d" "$T/work/$d"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$T/upper/$d,workdir=$T/work/$d" "/$d" || exit 90
done
cp -a "$T/files/." / || exit 91
export PATH="$T/standins:$PATH" STANDIN_CALLS="$T/calls.log"
sh "$T/runcmd.sh"
rc=$?
# Units as they stand on the instance, checked by systemd itself.
units=$(ls /etc/systemd/system/labnet-*.service /etc/systemd/system/labctl-lifetime.* 2>/dev/null)
if [ -n "$units" ]; then
  # shellcheck disable=SC2086
  systemd-analyze verify $units >"$T/verify.log" 2>&1
  echo $? >"$T/verify.rc"
fi
exit "$rc"
"#;

/// One instance's disk as the test sees it: the upper layers of its overlays.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let standins = dir.path().join("standins");
        std::fs::create_dir_all(&standins).expect("standins dir");
        for (name, text) in [
            ("systemctl", SYSTEMCTL),
            ("snap", SNAP),
            ("apt-get", APT_GET),
        ] {
            let path = standins.join(name);
            std::fs::write(&path, text).expect("write stand-in");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        std::fs::write(dir.path().join("driver.sh"), DRIVER).expect("write driver");
        Self { dir }
    }

    /// A path on the instance, as written during its boots.
    fn file(&self, path: &str) -> PathBuf {
        self.dir
            .path()
            .join("upper")
            .join(path.trim_start_matches('/'))
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("calls.log")).unwrap_or_default()
    }

    /// Boots from `user_data` with the metadata service at `imds`.
    fn boot(&self, user_data: &str, imds: &str, s3: &VerifyingProxy) -> Output {
        let t = self.dir.path();
        let files = t.join("files");
        for (path, content) in write_files(user_data) {
            let target = files.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
            std::fs::write(&target, content).expect("write file");
        }
        let doc: serde_json::Value = serde_saphyr::from_str(user_data).expect("YAML user-data");
        // cloud-init's order: write_files, then packages (update first when asked), then
        // runcmd.
        let mut script = Vec::new();
        if doc["package_update"] == true {
            script.push("apt-get update".to_owned());
        }
        if let Some(packages) = doc["packages"].as_array() {
            let names: Vec<&str> = packages.iter().filter_map(|p| p.as_str()).collect();
            script.push(format!("apt-get install -y {}", names.join(" ")));
        }
        let runcmd: Vec<String> = doc["runcmd"]
            .as_array()
            .expect("runcmd list")
            .iter()
            .map(|cmd| {
                cmd.as_array()
                    .expect("runcmd entries are lists")
                    .iter()
                    .map(|a| shell_quote(a.as_str().expect("string argument")))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        script.extend(runcmd);
        std::fs::write(t.join("runcmd.sh"), script.join("\n") + "\n").expect("runcmd.sh");
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "bash"])
            .arg(t.join("driver.sh"))
            .arg(t);
        for (key, _) in std::env::vars() {
            if key.starts_with("AWS_") || key.starts_with("LABCTL_") {
                cmd.env_remove(key);
            }
        }
        // STS goes straight to LocalStack: the proxy checks S3's signatures only.
        cmd.env("LABCTL_S3_ENDPOINT", &s3.endpoint)
            .env("LABCTL_STS_ENDPOINT", localstack_endpoint())
            .env("LABCTL_RETRIES", "3")
            .env("LABCTL_BACKOFF", "1")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
            .output()
            .expect("unshare runs")
    }

    fn verify(&self) -> (Option<i32>, String) {
        let t = self.dir.path();
        let rc = std::fs::read_to_string(t.join("verify.rc"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let log = std::fs::read_to_string(t.join("verify.log")).unwrap_or_default();
        (rc, log)
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// An S3 client on LocalStack, for reading back what was stored.
pub(crate) async fn s3() -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk_config(REGION).await)
            .force_path_style(true)
            .build(),
    )
}

/// An object's ETag, as S3 holds it now.
pub(crate) async fn etag(bucket: &str, key: &str) -> String {
    s3().await
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("head")
        .e_tag()
        .expect("etag")
        .to_owned()
}

/// The lab's bucket, as the instance's env file in `user_data` names it.
pub(crate) fn bucket_of(user_data: &str) -> String {
    user_data
        .lines()
        .find_map(|l| l.trim().strip_prefix("BUCKET=\""))
        .and_then(|b| b.strip_suffix('"'))
        .expect("BUCKET in user-data")
        .to_owned()
}

/// The user-data EC2 holds for an instance, decoded and inflated as cloud-init does.
pub(crate) async fn user_data_of(instance_id: &str) -> String {
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(REGION).await);
    let out = ec2
        .describe_instance_attribute()
        .instance_id(instance_id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .expect("describe user-data");
    let encoded = out
        .user_data()
        .and_then(|v| v.value())
        .expect("instance has user-data");
    let bytes = aws_smithy_types::base64::decode(encoded).expect("base64 user-data");
    assert_eq!(&bytes[..2], [0x1f, 0x8b], "user-data is gzip-compressed");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
        .expect("gzip user-data inflates to UTF-8");
    text
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_boot_from_their_user_data_and_report_to_status_and_up_wait() {
    let (sb, lab) = lab_sandbox("boot");
    let up = sb.run(&["up", "--yes"]);
    assert_eq!(up.code(), 0, "{}", up.transcript());
    let _down = Teardown::new(&sb, &[]);
    assert!(
        up.stderr().contains("estimated cost: $"),
        "{}",
        up.transcript()
    );

    // The binary `up` uploaded is the one it was given, under its digest.
    let labnet = std::fs::read(labnet_binary()).expect("labnet binary");
    let sha = sha256_hex(&labnet);
    let by_name = ids(&lab).await;
    assert_eq!(
        by_name.keys().collect::<Vec<_>>(),
        ["client-1", "client-2", "server"]
    );
    let server_ud = user_data_of(&by_name["server"]).await;
    let bucket = bucket_of(&server_ud);
    assert!(
        server_ud.contains(&format!("LABNET_SHA256=\"{sha}\"")),
        "{server_ud}"
    );
    let object = s3()
        .await
        .get_object()
        .bucket(&bucket)
        .key(labnet_key(&sha))
        .send()
        .await
        .expect("labnet uploaded under its digest");
    let uploaded = object.body.collect().await.expect("body").into_bytes();
    assert!(uploaded == labnet.as_slice(), "uploaded bytes differ");

    // `labctl user-data` prints exactly what EC2 was given.
    let printed = ok(&sb, &["user-data", "server"]);
    assert_eq!(printed.trim_end(), server_ud.trim_end());

    // Launched, not booted: nothing has reported, and a short wait says so.
    let run = sb.run(&["up", "--yes", "--wait", "2s"]);
    assert_eq!(run.code(), 1, "{}", run.transcript());
    assert!(
        run.stderr()
            .contains("no readiness report from client-1, client-2, server after 2s"),
        "{}",
        run.transcript()
    );
    assert!(ok(&sb, &["status"]).contains("no report yet"));

    // Each instance boots from its own user-data.
    let mut machines = std::collections::BTreeMap::new();
    let s3_signed = signed_s3();
    let mut keys = std::collections::BTreeMap::new();
    for (name, id) in &by_name {
        let ud = user_data_of(id).await;
        let creds = instance_keys(&lab, id).await;
        s3_signed.trust(creds.clone());
        keys.insert(name.clone(), creds.clone());
        let (imds, seen) = imds_double(id, &creds);
        let m = Machine::new();
        let out = m.boot(&ud, &imds, &s3_signed);
        assert!(out.status.success(), "{name}: {}", transcript(&out));
        assert_eq!(
            std::fs::read(m.file("/usr/local/bin/labnet")).expect("labnet installed"),
            labnet
        );
        let mode = std::fs::metadata(m.file("/usr/local/bin/labnet"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        let seen = seen.lock().expect("lock").clone();
        assert!(
            seen.contains(&("PUT /latest/api/token".into(), false)),
            "{seen:?}"
        );
        assert!(
            seen.iter()
                .filter(|(r, _)| r.starts_with("GET"))
                .all(|(_, token)| *token),
            "every metadata read carries the IMDSv2 token: {seen:?}"
        );
        let calls = m.calls();
        assert!(
            calls.starts_with("apt-get update\napt-get install -y tcpdump net-tools curl\n"),
            "packages first: {calls}"
        );
        assert!(
            calls.contains("snap start --enable amazon-ssm-agent"),
            "{calls}"
        );
        assert!(
            calls.contains("systemctl enable --now labctl-lifetime.timer"),
            "the lifetime guard is armed: {calls}"
        );
        let (verify_rc, verify_log) = m.verify();
        assert_eq!(verify_rc, Some(0), "systemd-analyze verify:\n{verify_log}");
        machines.insert(name.clone(), m);
    }
    // Every S3 request was signed as real S3 demands: the labnet download and the
    // report upload of each instance, under its own writer (`<role id>:<instance id>`,
    // the `:` percent-encoded as S3 signs it).
    let verdicts = s3_signed.verdicts();
    for (request, verdict) in &verdicts {
        assert_eq!(verdict, &Ok(()), "{request}");
    }
    let role = role_id(&lab).await;
    for id in by_name.values() {
        let get = format!("GET /{bucket}/{}", labnet_key(&sha));
        let put = format!("PUT /{bucket}/reports/{role}%3A{id}.json");
        assert!(
            verdicts.iter().any(|(r, _)| *r == put),
            "{put} in {verdicts:?}"
        );
        assert!(
            verdicts.iter().any(|(r, _)| *r == get),
            "{get} in {verdicts:?}"
        );
    }
    let server = &machines["server"];
    let services = [
        "alnum-server",
        "echo-server",
        "intro-server",
        "tcp-server",
        "udp-server",
    ];
    let calls = server.calls();
    let units: Vec<String> = services
        .iter()
        .map(|s| format!("labnet-{s}.service"))
        .collect();
    assert!(
        calls.contains(&format!("systemctl enable --now {}", units.join(" "))),
        "{calls}"
    );
    for svc in services {
        let unit = std::fs::read_to_string(
            server.file(&format!("/etc/systemd/system/labnet-{svc}.service")),
        )
        .expect("unit written");
        assert!(
            unit.contains(&format!("\nExecStart=/usr/local/bin/labnet {svc}\n")),
            "{unit}"
        );
        assert!(unit.contains("\nRestart=on-failure\n"), "{unit}");
        assert!(unit.contains("\nDynamicUser=yes\n"), "{unit}");
    }
    let timer = std::fs::read_to_string(server.file("/etc/systemd/system/labctl-lifetime.timer"))
        .expect("timer written");
    assert!(timer.contains("\nOnBootSec=235min\n"), "{timer}");
    for name in ["client-1", "client-2"] {
        let dir = machines[name].file("/etc/systemd/system");
        let labnet_units: Vec<_> = std::fs::read_dir(&dir)
            .expect("unit dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("labnet-"))
            .collect();
        assert!(labnet_units.is_empty(), "{name} runs no services");
    }

    // Now everyone has reported: `up --wait` returns, and status shows it.
    let run = sb.run(&["up", "--yes", "--wait", "60s"]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    let version = String::from_utf8(
        Command::new(labnet_binary())
            .arg("--version")
            .output()
            .expect("labnet --version")
            .stdout,
    )
    .expect("utf-8");
    let version: Vec<&str> = version.split_whitespace().take(2).collect();
    let ready = format!("ready ({}, 5/5 services active)", version.join(" "));
    assert!(run.stderr().contains(&ready), "{}", run.transcript());
    assert!(run.stdout().contains(&ready), "{}", run.transcript());
    let status: serde_json::Value =
        serde_json::from_str(&ok(&sb, &["status", "--json"])).expect("status JSON");
    for i in status["instances"].as_array().expect("instances") {
        assert_eq!(i["bootstrap"]["ok"], true, "{i}");
        let left = i["lifetime_left_seconds"].as_u64().expect("lifetime left");
        assert!((4 * 3600 - 600..=4 * 3600).contains(&left), "{i}");
    }

    // The object is tampered with: the same user-data names a digest it no longer has.
    // A second run on the server keeps what it had; a fresh instance installs nothing;
    // both report the refusal, and `status` and `up --wait` show it.
    s3().await
        .put_object()
        .bucket(&bucket)
        .key(labnet_key(&sha))
        .body(b"#!/bin/sh\necho evil\n".to_vec().into())
        .send()
        .await
        .expect("tamper");
    let (imds, _) = imds_double(&by_name["server"], &keys["server"]);
    let out = server.boot(&server_ud, &imds, &s3_signed);
    assert!(!out.status.success(), "{}", transcript(&out));
    assert_eq!(
        std::fs::read(server.file("/usr/local/bin/labnet")).expect("still there"),
        labnet
    );
    let fresh = Machine::new();
    let out = fresh.boot(&server_ud, &imds, &s3_signed);
    assert!(!out.status.success(), "{}", transcript(&out));
    assert!(!fresh.file("/usr/local/bin/labnet").exists());
    let status = ok(&sb, &["status"]);
    assert!(
        status.contains("FAILED: labnet SHA-256 mismatch"),
        "{status}"
    );
    let run = sb.run(&["up", "--yes", "--wait", "30s"]);
    assert_eq!(run.code(), 1, "{}", run.transcript());
    assert!(
        run.stderr().contains("the bootstrap failed on server"),
        "{}",
        run.transcript()
    );
    assert!(
        run.stderr().contains("mismatch"),
        "log tail shown: {}",
        run.transcript()
    );
}

/// Only x86_64 ELF files are uploaded; anything else is refused before any AWS call
/// changes something, naming where the file came from.
#[test]
fn a_binary_the_instances_cannot_run_is_refused() {
    let (sb, _lab) = lab_sandbox("badbin");
    let script = sb.write("labnet.sh", "#!/bin/sh\necho hello\n");
    let run = {
        let mut cmd = sb.labctl(&["plan"]);
        cmd.env("LABCTL_LABNET_BINARY", &script);
        crate::harness::Run(cmd.output().expect("labctl runs"))
    };
    assert_eq!(run.code(), 1, "{}", run.transcript());
    let err = run.stderr();
    assert!(err.contains("LABCTL_LABNET_BINARY="), "{err}");
    assert!(err.contains("not an ELF executable"), "{err}");
}
