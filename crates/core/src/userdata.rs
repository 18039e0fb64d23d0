//! The user-data an instance boots with, rendered from the lab's values.
//!
//! Rendering is pure and holds nothing time-varying, so an unchanged lab renders the
//! same bytes; the digest of those bytes, kept as a tag on the instance, is how `plan`
//! notices that an instance would boot differently and must be replaced. The text comes
//! from the templates in `cloud-init/` (see its README): a cloud-config that installs the
//! tools and writes the instance's values, the unit template and the bootstrap script,
//! which fetches labnet with the instance role, verifies it and starts the services.
//! User-data never holds credentials or presigned URLs: anything on the instance can
//! read it.

use std::fmt::Write;

use sha2::{Digest, Sha256};

const CLOUD_CONFIG: &str = include_str!("../../../cloud-init/cloud-config.yaml.tmpl");
const BOOTSTRAP: &str = include_str!("../../../cloud-init/bootstrap.sh");
const LIB: &str = include_str!("../../../cloud-init/labctl-lib.sh");
const CAPTURE: &str = include_str!("../../../cloud-init/lab-capture.sh");
const UNIT_TEMPLATE: &str = include_str!("../../../cloud-init/labnet.service.tmpl");
const LIFETIME_TIMER: &str = include_str!("../../../cloud-init/labctl-lifetime.timer.tmpl");
const LIFETIME_SERVICE: &str = include_str!("../../../cloud-init/labctl-lifetime.service");

/// Minutes of warning logged-in users get before the lifetime guard halts the instance.
pub const LIFETIME_WARNING_MINUTES: u64 = 5;

/// EC2's limit on user-data, in bytes (before base64), which [`encode`]'s output meets.
pub const MAX_USER_DATA: usize = 16 * 1024;

/// Where an instance gets the labnet binary, and the SHA-256 it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Artifact {
    /// An object the instance reads with its own role (SigV4-signed, no presigned URL).
    S3 {
        /// Bucket holding the object.
        bucket: String,
        /// Object key (content-addressed).
        key: String,
        /// Lowercase hex SHA-256 of the binary.
        sha256: String,
    },
    /// A URL anyone may read (a release download).
    Url {
        /// The URL.
        url: String,
        /// Lowercase hex SHA-256 of the binary.
        sha256: String,
    },
}

/// The values one instance's user-data depends on.
#[derive(Debug, Clone)]
pub struct UserDataInput<'a> {
    /// Lab name.
    pub lab: &'a str,
    /// Instance name (`client-2`).
    pub instance: &'a str,
    /// Security role.
    pub role: &'a str,
    /// Private zone, if any.
    pub zone: Option<&'a str>,
    /// Region (`None`: the instance asks its metadata service).
    pub region: Option<&'a str>,
    /// The lab's bucket: readiness reports go to `reports/<instance>.json` in it.
    pub bucket: &'a str,
    /// Services to run, sorted.
    pub services: &'a [String],
    /// Minutes until the instance stops itself.
    pub lifetime_minutes: Option<u64>,
    /// Where labnet comes from (`None`: nowhere yet; the instance reports the failure).
    pub labnet: Option<&'a Artifact>,
}

/// Renders the cloud-config for one instance.
pub fn render(input: &UserDataInput<'_>) -> String {
    let instance = clean(input.instance);
    let fqdn = match input.zone {
        Some(zone) => format!("{instance}.{}", clean(zone)),
        None => instance.clone(),
    };
    let (labnet_bucket, key, url, sha256) = match input.labnet {
        Some(Artifact::S3 {
            bucket,
            key,
            sha256,
        }) => (bucket.as_str(), key.as_str(), "", sha256.as_str()),
        Some(Artifact::Url { url, sha256 }) => ("", "", url.as_str(), sha256.as_str()),
        None => ("", "", "", ""),
    };
    let mut env = String::new();
    for (name, value) in [
        ("LAB", input.lab),
        ("INSTANCE", input.instance),
        ("ROLE", input.role),
        ("FQDN", &fqdn),
        ("ZONE", input.zone.unwrap_or("")),
        ("REGION", input.region.unwrap_or("")),
        ("BUCKET", input.bucket),
        ("SERVICES", &input.services.join(" ")),
        (
            "LIFETIME_MINUTES",
            &input
                .lifetime_minutes
                .map(|m| m.to_string())
                .unwrap_or_default(),
        ),
        ("LABNET_BUCKET", labnet_bucket),
        ("LABNET_KEY", key),
        ("LABNET_URL", url),
        ("LABNET_SHA256", sha256),
    ] {
        let _ = writeln!(env, "{name}=\"{}\"", clean(value));
    }
    // A timer counting from each boot, so a restarted instance gets its lifetime again;
    // `shutdown` halts, and InstanceInitiatedShutdownBehavior=stop makes that a stop.
    // It is armed before the bootstrap runs, so a failing bootstrap still stops in time.
    let (lifetime_files, lifetime) = match input.lifetime_minutes {
        Some(minutes) => {
            let warn = if minutes > 2 * LIFETIME_WARNING_MINUTES {
                LIFETIME_WARNING_MINUTES
            } else {
                0
            };
            let timer = LIFETIME_TIMER
                .replace("@MINUTES@", &minutes.to_string())
                .replace("@WARN_AT@", &(minutes - warn).to_string());
            let service = LIFETIME_SERVICE.replace("@WARN@", &warn.to_string());
            let file = |path: &str, text: &str| {
                format!(
                    "  - path: {path}\n    owner: root:root\n    permissions: '0644'\n    \
                     content: |\n{}\n",
                    block(text)
                )
            };
            (
                file("/etc/systemd/system/labctl-lifetime.timer", &timer)
                    + &file("/etc/systemd/system/labctl-lifetime.service", &service),
                "  - [systemctl, daemon-reload]\n  \
                 - [systemctl, enable, --now, labctl-lifetime.timer]\n"
                    .to_owned(),
            )
        }
        None => (String::new(), String::new()),
    };
    let lab = clean(input.lab);
    let role = clean(input.role);
    fill(CLOUD_CONFIG, |name| match name {
        "lab" => Some(lab.clone()),
        "instance" => Some(instance.clone()),
        "role" => Some(role.clone()),
        "fqdn" => Some(fqdn.clone()),
        "instance_env" => Some(block(&env)),
        "unit_template" => Some(block(UNIT_TEMPLATE)),
        "bootstrap" => Some(block(BOOTSTRAP)),
        "lib" => Some(block(LIB)),
        "capture" => Some(block(CAPTURE)),
        "lifetime" => Some(lifetime.clone()),
        "lifetime_files" => Some(lifetime_files.clone()),
        _ => None,
    })
}

/// The bytes `up` hands EC2 for `text`: gzip-compressed. cloud-init inflates gzip
/// user-data before it reads it, and compression keeps the scripts well inside EC2's
/// 16 KiB. The output is deterministic (no time or file name in the gzip header).
pub fn encode(text: &str) -> Vec<u8> {
    use std::io::Write as _;
    let mut gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::best());
    gz.write_all(text.as_bytes())
        .and_then(|()| gz.finish())
        .expect("writing to memory cannot fail")
}

/// Replaces each `{{name}}` in `template` in one pass: substituted text is not scanned
/// again, so a script holding `{{` stays as written. Unknown names stay as they are.
fn fill(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after
            .find("}}")
            .and_then(|end| Some((end, value(&after[..end])?)))
        {
            Some((end, text)) => {
                out.push_str(&text);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `text` as the body of a YAML literal block under `content: |` (six spaces deep),
/// without its final newline (the template supplies it). Empty lines stay empty.
fn block(text: &str) -> String {
    text.strip_suffix('\n')
        .unwrap_or(text)
        .lines()
        .map(|line| {
            if line.is_empty() {
                String::new()
            } else {
                format!("      {line}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A value safe on one line of YAML and of the env file: no control characters, no
/// quotes (validated names never have them; this only keeps a bad one from breaking out).
fn clean(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '`')
        .collect()
}

/// The first 16 hex digits of the SHA-256 of `user_data`: short enough for a tag,
/// long enough that a change is never mistaken for no change.
pub fn digest(user_data: &str) -> String {
    let hash = Sha256::digest(user_data.as_bytes());
    hash.iter().take(8).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3_artifact() -> Artifact {
        Artifact::S3 {
            bucket: "netlab-captures-123456789012-eu-north-1".into(),
            key: "artifacts/labnet/0123456789abcdef".into(),
            sha256: "ab".repeat(32),
        }
    }

    fn input<'a>(
        services: &'a [String],
        lifetime: Option<u64>,
        labnet: Option<&'a Artifact>,
    ) -> UserDataInput<'a> {
        UserDataInput {
            lab: "netlab",
            instance: "server",
            role: "server",
            zone: Some("lab.internal"),
            region: Some("eu-north-1"),
            bucket: "netlab-captures-123456789012-eu-north-1",
            services,
            lifetime_minutes: lifetime,
            labnet,
        }
    }

    fn server_services() -> Vec<String> {
        [
            "alnum-server",
            "echo-server",
            "intro-server",
            "tcp-server",
            "udp-server",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn rendering_is_deterministic_and_sensitive_to_inputs() {
        let svc = vec!["tcp-server".to_owned()];
        let art = s3_artifact();
        let a = render(&input(&svc, Some(240), Some(&art)));
        assert_eq!(a, render(&input(&svc, Some(240), Some(&art))));
        assert!(a.starts_with("#cloud-config\n"));
        assert!(a.contains("fqdn: server.lab.internal\n"));
        assert!(a.contains("OnBootSec=235min"));
        assert!(a.contains("SERVICES=\"tcp-server\"\n"));
        assert!(!a.contains("{{"), "every placeholder filled:\n{a}");
        let base = digest(&a);
        assert_eq!(base.len(), 16);
        assert_ne!(base, digest(&render(&input(&svc, None, Some(&art)))));
        assert_ne!(base, digest(&render(&input(&[], Some(240), Some(&art)))));
        assert_ne!(base, digest(&render(&input(&svc, Some(240), None))));
        let other_sha = Artifact::S3 {
            bucket: "netlab-captures-123456789012-eu-north-1".into(),
            key: "artifacts/labnet/0123456789abcdef".into(),
            sha256: "cd".repeat(32),
        };
        assert_ne!(
            base,
            digest(&render(&input(&svc, Some(240), Some(&other_sha))))
        );
        let url = Artifact::Url {
            url: "https://example.com/labnet".into(),
            sha256: "ab".repeat(32),
        };
        assert_ne!(base, digest(&render(&input(&svc, Some(240), Some(&url)))));
        let mut moved = input(&svc, Some(240), Some(&art));
        moved.region = Some("eu-west-1");
        assert_ne!(base, digest(&render(&moved)));
        let mut renamed = input(&svc, Some(240), Some(&art));
        renamed.bucket = "other-bucket";
        assert_ne!(base, digest(&render(&renamed)));
    }

    #[test]
    fn the_yaml_carries_the_scripts_verbatim() {
        let services = server_services();
        let art = s3_artifact();
        let text = render(&input(&services, Some(240), Some(&art)));
        let doc: serde_json::Value = serde_saphyr::from_str(&text).expect("valid YAML");
        assert_eq!(doc["hostname"], "server");
        assert_eq!(doc["fqdn"], "server.lab.internal");
        assert_eq!(
            doc["packages"],
            serde_json::json!(["tcpdump", "net-tools", "curl"])
        );
        let files = doc["write_files"].as_array().expect("write_files");
        let content = |path: &str| {
            files
                .iter()
                .find(|f| f["path"] == path)
                .and_then(|f| f["content"].as_str())
                .unwrap_or_else(|| panic!("{path} in write_files"))
                .to_owned()
        };
        assert_eq!(content("/usr/local/sbin/labctl-bootstrap"), BOOTSTRAP);
        assert_eq!(content("/usr/local/lib/labctl/lib.sh"), LIB);
        assert_eq!(content("/usr/local/bin/lab-capture"), CAPTURE);
        assert_eq!(content("/etc/labctl/labnet.service.tmpl"), UNIT_TEMPLATE);
        let env = content("/etc/labctl/instance.env");
        assert!(env.contains("BUCKET=\"netlab-captures-123456789012-eu-north-1\"\n"));
        assert!(env.contains("LABNET_KEY=\"artifacts/labnet/0123456789abcdef\"\n"));
        assert!(env.contains(&format!("LABNET_SHA256=\"{}\"\n", "ab".repeat(32))));
        assert!(env.contains("REGION=\"eu-north-1\"\n"));
        let runcmd = doc["runcmd"].as_array().expect("runcmd");
        assert_eq!(runcmd.len(), 3, "lifetime guard, then bootstrap");
        assert_eq!(
            runcmd[1],
            serde_json::json!(["systemctl", "enable", "--now", "labctl-lifetime.timer"])
        );
        let timer = content("/etc/systemd/system/labctl-lifetime.timer");
        assert!(timer.contains("\nOnBootSec=235min\n"), "{timer}");
        let service = content("/etc/systemd/system/labctl-lifetime.service");
        assert!(
            service.contains("ExecStart=/usr/sbin/shutdown -h +5 "),
            "{service}"
        );
        assert_eq!(
            runcmd[2],
            serde_json::json!(["bash", "/usr/local/sbin/labctl-bootstrap"])
        );
    }

    #[test]
    fn no_credentials_or_time_in_user_data_and_it_fits_ec2s_limit() {
        let services = server_services();
        let art = s3_artifact();
        let mut long = input(&services, Some(240), Some(&art));
        let name = "n".repeat(63);
        long.lab = &name;
        long.instance = &name;
        long.role = &name;
        let text = render(&long);
        let sent = encode(&text);
        assert!(sent.len() < MAX_USER_DATA, "{} bytes", sent.len());
        assert_eq!(sent, encode(&text), "deterministic");
        let mut inflated = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&sent[..]), &mut inflated)
            .expect("gzip");
        assert_eq!(inflated, text);
        for secret in ["X-Amz-Signature", "X-Amz-Credential", "AKIA", "ASIA"] {
            assert!(!text.contains(secret), "{secret} in user-data");
        }
    }

    #[test]
    fn a_value_cannot_break_out_of_its_line() {
        let svc = vec!["tcp-server".to_owned()];
        let mut bad = input(&svc, None, None);
        bad.instance = "x\"\nLABNET_URL=\"http://evil\"";
        let text = render(&bad);
        let doc: serde_json::Value = serde_saphyr::from_str(&text).expect("valid YAML");
        assert_eq!(doc["hostname"], "xLABNET_URL=http://evil");
        assert!(text.contains("      INSTANCE=\"xLABNET_URL=http://evil\"\n"));
        assert!(text.contains("      LABNET_URL=\"\"\n"));
    }

    #[test]
    fn lifetime_guard_warns_only_when_there_is_time_to() {
        let svc = vec![];
        let short = render(&input(&svc, Some(10), None));
        assert!(short.contains("OnBootSec=10min"), "{short}");
        assert!(short.contains("shutdown -h +0 "), "{short}");
        let long = render(&input(&svc, Some(11), None));
        assert!(long.contains("OnBootSec=6min"), "{long}");
        let none = render(&input(&svc, None, None));
        assert!(!none.contains("labctl-lifetime"), "{none}");
        let doc: serde_json::Value = serde_saphyr::from_str(&none).expect("valid YAML");
        assert_eq!(doc["runcmd"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn fill_is_one_pass() {
        let out = fill("a {{x}} b {{y}} {{", |n| {
            (n == "x").then(|| "{{y}}".to_owned())
        });
        assert_eq!(out, "a {{y}} b {{y}} {{");
    }

    #[test]
    fn snapshot_server_and_client() {
        let services = server_services();
        let art = s3_artifact();
        insta::assert_snapshot!("server", render(&input(&services, Some(240), Some(&art))));
        let mut client = input(&[], Some(240), Some(&art));
        client.instance = "client-1";
        client.role = "client";
        insta::assert_snapshot!("client", render(&client));
    }
}
