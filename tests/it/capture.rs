//! A capture's whole trip: `labctl capture` starts the instance's capture helper over
//! SSM, tcpdump records labnet traffic on loopback, the helper uploads each finished
//! file with the instance role, and `labctl pcap-fetch` brings it home byte for byte.
//!
//! The lab is LocalStack's. What cannot run here has the stand-ins the bootstrap test
//! uses, and only those: the SSM test double runs Run Command's scripts with bash on
//! this machine (LocalStack runs none), the metadata service is an IMDSv2 double, and S3
//! is LocalStack's behind a proxy that checks every SigV4 signature. The helper, its
//! library and the env file are the ones in the instance's own user-data, read back
//! from EC2. tcpdump (Debian's) captures on `lo` with a filter naming the test's port,
//! so it records nothing else.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bootstrap::{
    bucket_of, etag, imds_double, instance_keys, role_id, s3, signed_s3, user_data_of,
};
use crate::cloudinit::write_files;
use crate::double::Double;
use crate::exec::ids;
use crate::harness::{Run, Sandbox, Teardown, labnet_binary, localstack_endpoint, transcript};
use crate::reconcile::lab_sandbox;

/// The instance's helper files, from its user-data, and where it keeps its captures.
struct Instance {
    dir: tempfile::TempDir,
}

impl Instance {
    fn from_user_data(user_data: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // tcpdump drops to its own user: it must reach the capture directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let wanted = [
            ("/usr/local/bin/lab-capture", "bin/lab-capture"),
            ("/usr/local/lib/labctl/lib.sh", "lib.sh"),
            ("/etc/labctl/instance.env", "instance.env"),
        ];
        for (path, content) in write_files(user_data) {
            if let Some((_, to)) = wanted.iter().find(|(p, _)| *p == path) {
                let to = dir.path().join(to);
                std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
                std::fs::write(&to, content).expect("write");
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
        }
        let me = Self { dir };
        assert!(me.helper().exists(), "the user-data carries lab-capture");
        me
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn helper(&self) -> PathBuf {
        self.path("bin/lab-capture")
    }

    /// The environment the helper runs in, here as on the instance.
    fn env(&self, imds: &str, s3: &str) -> Vec<(String, String)> {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        [
            ("PATH", path),
            ("LABCTL_LIB", self.path("lib.sh").display().to_string()),
            (
                "LABCTL_ENV_FILE",
                self.path("instance.env").display().to_string(),
            ),
            (
                "LABCTL_CAPTURE_DIR",
                self.path("captures").display().to_string(),
            ),
            (
                "LABCTL_CAPTURE_LOG",
                self.path("capture.log").display().to_string(),
            ),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.to_owned()),
            ("LABCTL_S3_ENDPOINT", s3.to_owned()),
            // STS straight to LocalStack: the proxy checks S3's signatures only.
            ("LABCTL_STS_ENDPOINT", localstack_endpoint().to_owned()),
            ("LABCTL_RETRIES", "3".to_owned()),
            ("LABCTL_BACKOFF", "1".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("capture.log")).unwrap_or_default()
    }

    /// Waits until `n` recordings have said they are done.
    fn wait_done(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.log().matches(": done: ").count() < n {
            assert!(
                Instant::now() < deadline,
                "capture not done:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The recorded files whose names start with `label`, sorted.
    fn files(&self, label: &str) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for session in std::fs::read_dir(self.path("captures")).expect("captures dir") {
            let session = session.expect("entry").path();
            for f in std::fs::read_dir(&session).expect("session dir") {
                let f = f.expect("entry").path();
                let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                if name.starts_with(label) && name.contains(".pcap") {
                    found.push(f);
                }
            }
        }
        found.sort();
        found
    }
}

/// A labnet tcp-server on a free loopback port; killed by its PID on drop.
struct Server(Child, u16);

impl Server {
    fn start() -> Self {
        let mut child = Command::new(labnet_binary())
            .args(["tcp-server", "--bind", "127.0.0.1", "--port", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("labnet tcp-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("first line");
        let port = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse::<u16>().ok())
            .next_back()
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Self(child, port)
    }

    /// `count` messages from one client, `pause` seconds apart.
    fn traffic(&self, count: u32, pause: &str) -> Child {
        Command::new(labnet_binary())
            .args(["tcp-client", "--port", &self.1.to_string()])
            .args(["--count", &count.to_string()])
            .args(["--pause-min", pause, "--pause-max", pause])
            .stdout(Stdio::null())
            .spawn()
            .expect("labnet tcp-client")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn with_env(mut cmd: Command, env: &[(String, String)]) -> Command {
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

async fn keys(bucket: &str, prefix: &str) -> Vec<(String, i64)> {
    let out = s3()
        .await
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("list captures");
    out.contents()
        .iter()
        .map(|o| {
            (
                o.key().unwrap_or_default().to_owned(),
                o.size().unwrap_or(0),
            )
        })
        .collect()
}

fn fetch(sb: &Sandbox, args: &[&str]) -> Run {
    sb.run(&[&["pcap-fetch", "--out", "got"], args].concat())
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_capture_travels_from_tcpdump_through_the_bucket_to_pcap_fetch() {
    let (sb, lab) = lab_sandbox("capture");
    let up = sb.run(&["up", "--yes"]);
    assert_eq!(up.code(), 0, "{}", up.transcript());
    let _down = Teardown::new(&sb, &["--delete-captures"]);
    let ids = ids(&lab).await;
    let user_data = user_data_of(&ids["server"]).await;
    let bucket = bucket_of(&user_data);
    let instance = Instance::from_user_data(&user_data);
    let creds = instance_keys(&lab, &ids["server"]).await;
    let (imds, _) = imds_double(&ids["server"], &creds);
    let proxy = signed_s3();
    proxy.trust(creds);
    // The server writes under its writer, `<role id>:<instance id>`, and nowhere else.
    let writer = format!("{}:{}", role_id(&lab).await, ids["server"]);
    let env = instance.env(&imds, &proxy.endpoint);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let double = Double::start_with_env(&[], &env_refs);
    let capture = |args: &[&str]| {
        // Named with -f, which the hint to fetch must repeat.
        let mut cmd = sb.labctl(&[&["-f", "./topology.yaml", "capture"], args].concat());
        cmd.env("AWS_ENDPOINT_URL_SSM", double.endpoint());
        Run(cmd.output().expect("labctl runs"))
    };
    let server = Server::start();
    let filter = format!("tcp port {}", server.1);

    // Mistakes are reported before anything records.
    let bad = capture(&["server", "--interface", "lo", "--filter", "tcp port nope"]);
    assert_eq!(bad.code(), 1, "{}", bad.transcript());
    assert!(
        bad.stderr()
            .contains("server: lab-capture: tcpdump refuses the filter"),
        "{}",
        bad.transcript()
    );
    let bad = capture(&["server", "--interface", "nosuch0", "--filter", &filter]);
    assert_eq!(bad.code(), 1, "{}", bad.transcript());
    assert!(
        bad.stderr().contains("no interface `nosuch0'"),
        "{}",
        bad.transcript()
    );

    // One capture by duration, one rotated every second, both during labnet traffic.
    let started = capture(&[
        "server",
        "--interface",
        "lo",
        "--seconds",
        "9",
        "--filter",
        &filter,
        "--label",
        "e2e",
    ]);
    assert_eq!(started.code(), 0, "{}", started.transcript());
    let stdout = started.stdout();
    assert!(
        stdout.contains(&format!(
            "server: files go to s3://{bucket}/captures/{writer}/e2e-"
        )),
        "{}",
        started.transcript()
    );
    assert!(
        started
            .stderr()
            .contains("`labctl -f ./topology.yaml pcap-fetch server`"),
        "{}",
        started.transcript()
    );
    let rotated = capture(&[
        "server",
        "--interface",
        "lo",
        "--seconds",
        "5",
        "--rotate-seconds",
        "1",
        "--filter",
        &filter,
        "--label",
        "rot",
    ]);
    assert_eq!(rotated.code(), 0, "{}", rotated.transcript());
    // tcpdump is listening once it has written the file header.
    let deadline = Instant::now() + Duration::from_secs(20);
    while instance.files("e2e").is_empty() || instance.files("rot").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no capture file:\n{}",
            instance.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut client = server.traffic(60, "0.1");
    assert!(client.wait().expect("client").success());
    instance.wait_done(2);

    let recorded = instance.files("e2e");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let rotations = instance.files("rot");
    assert!(rotations.len() >= 2, "rotated files: {rotations:?}");
    let uploaded = keys(&bucket, &format!("captures/{writer}/")).await;
    assert_eq!(
        uploaded.len(),
        1 + rotations.len(),
        "every file uploaded: {uploaded:?}\n{}",
        instance.log()
    );
    // Every upload was signed with the role's keys and carried its checksum.
    let verdicts = proxy.verdicts();
    let puts: Vec<_> = verdicts
        .iter()
        .filter(|(r, _)| r.starts_with("PUT "))
        .collect();
    assert_eq!(puts.len(), uploaded.len(), "{verdicts:?}");
    assert!(puts.iter().all(|(_, v)| v.is_ok()), "{verdicts:?}");
    // A rotated file went up while tcpdump was still recording: before the first
    // tcpdump to end (the rotated one, the shorter) printed its statistics.
    let log = instance.log();
    let first_rotation = rotations[0].display().to_string();
    let uploaded_at = log
        .find(&format!("uploaded {first_rotation} "))
        .unwrap_or_else(|| panic!("no upload of {first_rotation}:\n{log}"));
    let ended_at = log.find(" packets captured").expect("tcpdump's statistics");
    assert!(uploaded_at < ended_at, "uploaded only at the end:\n{log}");
    // S3 holds each file's SHA-256, from the upload, which pcap-fetch verifies against.
    let sessions = |f: &PathBuf| {
        let session = f.parent().and_then(Path::file_name).expect("session dir");
        let name = f.file_name().expect("name");
        (session.to_owned(), name.to_owned())
    };
    let (session, name) = sessions(&recorded[0]);
    let key = format!(
        "captures/{writer}/{}/{}",
        session.to_string_lossy(),
        name.to_string_lossy()
    );
    assert!(
        uploaded.iter().any(|(k, _)| *k == key),
        "{key} in {uploaded:?}"
    );
    let head = s3()
        .await
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .expect("head the capture");
    let sha = {
        use sha2::Digest as _;
        aws_smithy_types::base64::encode(sha2::Sha256::digest(read(&recorded[0])))
    };
    assert_eq!(head.checksum_sha256(), Some(sha.as_str()));

    // pcap-fetch brings each file home byte for byte, under <out>/server/.
    let got = fetch(&sb, &["server"]);
    assert_eq!(got.code(), 0, "{}", got.transcript());
    let home_of = |f: &PathBuf| {
        let (session, name) = sessions(f);
        sb.path().join("got/server").join(session).join(name)
    };
    let home = home_of(&recorded[0]);
    assert_eq!(read(&home), read(&recorded[0]), "byte-identical");
    for r in &rotations {
        assert_eq!(read(&home_of(r)), read(r), "{} byte-identical", r.display());
    }
    assert!(
        got.stderr().contains("wireshark got/"),
        "{}",
        got.transcript()
    );

    // And pcap-summary reads it: the client's conversation with the server's port.
    let summary = sb.run(&["pcap-summary", "--json", &home.display().to_string()]);
    assert_eq!(summary.code(), 0, "{}", summary.transcript());
    let json: serde_json::Value = serde_json::from_str(&summary.stdout()).expect("JSON");
    let port = server.1.to_string();
    let conversation = json["files"][0]["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .find(|c| c.to_string().contains(&port))
        .unwrap_or_else(|| panic!("no conversation with port {port}: {json}"))
        .clone();
    assert!(
        conversation["packets"].as_u64().unwrap_or(0) >= 80,
        "40 messages each way and their ACKs: {conversation}"
    );

    // A second run finds everything already there.
    let again = fetch(&sb, &["server"]);
    assert_eq!(again.code(), 0, "{}", again.transcript());
    assert!(
        again.stderr().contains(&format!(
            "{} capture(s): 0 downloaded (0 B), {} already here",
            uploaded.len(),
            uploaded.len()
        )),
        "{}",
        again.transcript()
    );

    // A local file that differs is kept unless --force.
    let mut changed = read(&home);
    changed.extend_from_slice(b"notes");
    std::fs::write(&home, &changed).expect("change the local copy");
    let refused = fetch(&sb, &["server"]);
    assert_eq!(refused.code(), 1, "{}", refused.transcript());
    assert!(
        refused.stderr().contains("differs from s3://"),
        "{}",
        refused.transcript()
    );
    assert_eq!(read(&home), changed, "kept as it was");
    let forced = fetch(&sb, &["server", "--force"]);
    assert_eq!(forced.code(), 0, "{}", forced.transcript());
    assert_eq!(read(&home), read(&recorded[0]));

    // An interrupted download resumes from its part; a part of other bytes starts over.
    let whole = read(&recorded[0]);
    let part = home.with_file_name(format!("{}.part", name.to_string_lossy()));
    std::fs::remove_file(&home).expect("rm");
    std::fs::write(&part, &whole[..whole.len() / 2]).expect("half a download");
    // As an interrupted run leaves it: the part, and the ETag it was started from.
    let etag = etag(&bucket, &key).await;
    std::fs::write(
        part.with_file_name(format!("{}.part.etag", name.to_string_lossy())),
        etag,
    )
    .expect("etag beside the part");
    let resumed = fetch(&sb, &["server"]);
    assert_eq!(resumed.code(), 0, "{}", resumed.transcript());
    assert!(
        resumed.stdout().contains(&format!(
            "resumed at {}",
            indicatif::HumanBytes((whole.len() / 2) as u64)
        )),
        "{}",
        resumed.transcript()
    );
    assert_eq!(read(&home), whole);
    assert!(!part.exists());
    std::fs::remove_file(&home).expect("rm");
    std::fs::write(&part, vec![0xee; whole.len() / 2]).expect("a part of other bytes");
    let restarted = fetch(&sb, &["server"]);
    assert_eq!(restarted.code(), 0, "{}", restarted.transcript());
    assert!(
        !restarted.stdout().contains("resumed"),
        "{}",
        restarted.transcript()
    );
    assert_eq!(read(&home), whole);

    // A capture made by hand goes up with one command; anything else is refused.
    std::thread::sleep(Duration::from_millis(1100));
    let by_hand = instance.path("by-hand.pcap");
    std::fs::copy(&recorded[0], &by_hand).expect("copy");
    let text = sb.write("notes.txt", "not a capture");
    let refused = with_env(Command::new(instance.helper()), &env)
        .args(["upload"])
        .arg(&text)
        .output()
        .expect("lab-capture upload");
    assert_eq!(refused.status.code(), Some(2), "{}", transcript(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not a pcap or pcapng file"),
        "{}",
        transcript(&refused)
    );
    let up = with_env(Command::new(instance.helper()), &env)
        .args(["upload"])
        .arg(&by_hand)
        .output()
        .expect("lab-capture upload");
    assert!(up.status.success(), "{}", transcript(&up));
    assert_eq!(
        String::from_utf8_lossy(&up.stdout).trim(),
        format!("s3://{bucket}/captures/{writer}/by-hand.pcap")
    );
    let latest = fetch(&sb, &["server", "--latest", "--list"]);
    assert_eq!(latest.code(), 0, "{}", latest.transcript());
    let listed: Vec<String> = latest.stdout().lines().map(str::to_owned).collect();
    assert_eq!(listed.len(), 1, "{}", latest.transcript());
    assert!(listed[0].starts_with("server/by-hand.pcap\t"), "{listed:?}");
    let none = fetch(&sb, &["--since", "2099-01-01"]);
    assert_eq!(none.code(), 0, "{}", none.transcript());
    assert!(
        none.stderr().contains("no captures"),
        "{}",
        none.transcript()
    );
    let unknown = fetch(&sb, &["sever"]);
    assert_eq!(unknown.code(), 1, "{}", unknown.transcript());
    assert!(
        unknown.stderr().contains("did you mean `server`?"),
        "{}",
        unknown.transcript()
    );
}

#[test]
fn pcap_fetch_before_up_says_what_to_do() {
    let (sb, _lab) = lab_sandbox("nofetch");
    let run = fetch(&sb, &[]);
    assert_eq!(run.code(), 1, "{}", run.transcript());
    assert!(
        run.stderr().contains("yet; `labctl up` creates it"),
        "{}",
        run.transcript()
    );
    assert!(!sb.path().join("got").exists(), "nothing written");
}
