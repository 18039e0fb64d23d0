//! Rendered user-data against the cloud-init the instances run (Debian 12's, 22.4), and
//! every shell script through shellcheck.
//!
//! The tools come from `scripts/test-deps.sh`: shellcheck and Python modules from Debian,
//! and cloud-init extracted (never installed) to `$LABCTL_CACHE/cloud-init/root`. A
//! missing tool fails the test, with a pointer to that script; nothing here skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use labctl_core::userdata::{Artifact, UserDataInput, render};

use crate::harness::{repo, transcript};

/// Debian's interpreter: `python3` on PATH may be another one (a pyenv shim) without
/// Debian's modules.
const PYTHON: &str = "/usr/bin/python3";

/// The cloud-init series Debian 12 ships.
const SERIES: &str = "22.4.";

/// Top-level keys cloud-init honours that 22.4's schema does not list.
const OUTSIDE_SCHEMA_KEYS: &[&str] = &["merge_how", "merge_type"];

const HOW_TO_INSTALL: &str = "run `bash scripts/test-deps.sh` (as root) to install it";

/// The top-level keys of a cloud-config (argv[2]) that no module of 22.4's schema
/// (argv[1]) declares, one a line. cloud-init 22.4 ignores unknown keys (a typo'd key is
/// silently dropped at boot), so this check is ours. Importing jsonschema also proves
/// it is present: without it, 22.4 skips validation and calls anything valid.
const UNKNOWN_KEYS_PY: &str = r#"
import json, sys
import jsonschema, yaml
schema = json.load(open(sys.argv[1]))
known = set(sys.argv[3:])
for ref in schema["allOf"]:
    known |= set(schema["$defs"][ref["$ref"].split("/")[-1]].get("properties", {}))
doc = yaml.safe_load(open(sys.argv[2], "rb"))
if isinstance(doc, dict):
    print("\n".join(sorted(str(k) for k in doc if k not in known)))
"#;

/// The extracted cloud-init tree, where `scripts/test-deps.sh` puts it.
fn cloud_init_root() -> PathBuf {
    let cache = match std::env::var_os("LABCTL_CACHE").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/labctl")
        }
    };
    cache.join("cloud-init/root")
}

/// Debian's cloud-init from the extracted tree, run by Debian's Python with nothing from
/// the caller's Python environment.
struct CloudInit {
    root: PathBuf,
}

impl CloudInit {
    /// The extracted cloud-init, checked to be there and to be 22.4.
    fn get() -> Self {
        let root = cloud_init_root();
        assert!(
            Path::new(PYTHON).is_file(),
            "{PYTHON} (Debian's python3) is missing: {HOW_TO_INSTALL}"
        );
        assert!(
            root.join("usr/bin/cloud-init").is_file(),
            "cloud-init is not extracted under {}: {HOW_TO_INSTALL}",
            root.display()
        );
        let me = Self { root };
        let out = me.python().arg(me.entry()).arg("--version").output();
        let out = out.expect("run cloud-init --version");
        let version = String::from_utf8_lossy(&out.stdout);
        let version = version.split_whitespace().last().unwrap_or_default();
        assert!(
            out.status.success() && version.starts_with(SERIES),
            "cloud-init --version: want {SERIES}x (Debian 12's): {HOW_TO_INSTALL}\n{}",
            transcript(&out)
        );
        me
    }

    fn entry(&self) -> PathBuf {
        self.root.join("usr/bin/cloud-init")
    }

    fn python(&self) -> Command {
        let mut cmd = Command::new(PYTHON);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PYTHON") {
                cmd.env_remove(key);
            }
        }
        cmd.env(
            "PYTHONPATH",
            self.root.join("usr/lib/python3/dist-packages"),
        )
        .env("PYTHONNOUSERSITE", "1");
        cmd
    }

    /// `cloud-init schema --config-file <path>`, strictly: it must exit 0 and say only
    /// `Valid cloud-config: <path>` (22.4 prints deprecations and still exits 0), and
    /// every top-level key must belong to 22.4's schema. The error holds the whole
    /// transcript.
    fn validate(&self, path: &Path) -> Result<(), String> {
        let out = self
            .python()
            .arg(self.entry())
            .args(["schema", "--config-file"])
            .arg(path)
            .output()
            .expect("run cloud-init schema");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let valid = format!("Valid cloud-config: {}\n", path.display());
        if !out.status.success() || stdout != valid || !out.stderr.is_empty() {
            return Err(format!(
                "cloud-init schema --config-file {}: want exactly `{}` and no stderr\n{}",
                path.display(),
                valid.trim_end(),
                transcript(&out)
            ));
        }
        let schema = self
            .root
            .join("usr/lib/python3/dist-packages/cloudinit/config/schemas")
            .join("schema-cloud-config-v1.json");
        let out = self
            .python()
            .args(["-c", UNKNOWN_KEYS_PY])
            .arg(schema)
            .arg(path)
            .args(OUTSIDE_SCHEMA_KEYS)
            .output()
            .expect("run the top-level key check");
        assert!(
            out.status.success(),
            "the top-level key check failed (jsonschema or yaml missing? {HOW_TO_INSTALL})\n{}",
            transcript(&out)
        );
        let unknown = String::from_utf8_lossy(&out.stdout);
        let unknown: Vec<&str> = unknown.split_whitespace().collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{}: top-level keys unknown to cloud-init {SERIES}x, which would ignore \
                 them: {unknown:?} (a real key outside the schema goes in \
                 OUTSIDE_SCHEMA_KEYS)",
                path.display()
            ))
        }
    }
}

/// The user-data of the lab's two kinds of instance: a server (every service, a
/// lifetime, labnet from S3) and a client (no service, no lifetime, labnet from a URL).
fn rendered() -> Vec<(&'static str, String)> {
    let services: Vec<String> = [
        "alnum-server",
        "echo-server",
        "intro-server",
        "tcp-server",
        "udp-server",
    ]
    .map(String::from)
    .to_vec();
    let s3 = Artifact::S3 {
        bucket: "netlab-captures-123456789012-eu-north-1".into(),
        key: "artifacts/labnet/0123456789abcdef".into(),
        sha256: "ab".repeat(32),
    };
    let url = Artifact::Url {
        url: "https://github.com/example/labnet/releases/download/v0.1.0/labnet".into(),
        sha256: "cd".repeat(32),
    };
    let server = render(&UserDataInput {
        lab: "netlab",
        instance: "server",
        role: "server",
        zone: Some("lab.internal"),
        region: Some("eu-north-1"),
        bucket: "netlab-captures-123456789012-eu-north-1",
        services: &services,
        lifetime_minutes: Some(240),
        labnet: Some(&s3),
    });
    let client = render(&UserDataInput {
        lab: "netlab",
        instance: "client-1",
        role: "client",
        zone: Some("lab.internal"),
        region: None,
        bucket: "netlab-captures-123456789012-eu-north-1",
        services: &[],
        lifetime_minutes: None,
        labnet: Some(&url),
    });
    vec![("server", server), ("client", client)]
}

#[test]
fn rendered_user_data_is_valid_for_debian_12s_cloud_init() {
    let cloud_init = CloudInit::get();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    for (name, text) in rendered() {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, &text).expect("write user-data");
        if let Err(e) = cloud_init.validate(&path) {
            failures.push(format!("{name}:\n{e}\n--- user-data\n{text}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The check above can fail: each way a cloud-config goes wrong is caught.
#[test]
fn validation_rejects_broken_cloud_config() {
    let cloud_init = CloudInit::get();
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, server) = rendered().swap_remove(0);
    // (name, cloud-config, a fragment of the error it must get)
    let cases = [
        // A schema error in the real document (a later key of the same name wins).
        (
            "rendered-plus-bad-key",
            format!("{}\npackages: 5\n", server.trim_end()),
            "packages: 5 is not of type 'array'",
        ),
        (
            "wrong-type",
            "#cloud-config\npackages: 5\n".to_owned(),
            "packages: 5 is not of type 'array'",
        ),
        (
            "octal-permissions",
            "#cloud-config\nwrite_files:\n  - path: /x\n    permissions: 0644\n    content: x\n"
                .to_owned(),
            "write_files.0.permissions: 420 is not of type 'string'",
        ),
        // 22.4 exits 0 on a deprecation; the strict check does not.
        (
            "deprecated",
            "#cloud-config\napt_update: true\n".to_owned(),
            "apt_update: DEPRECATED",
        ),
        // 22.4 ignores unknown keys; the key check does not.
        (
            "typo",
            "#cloud-config\npackges: [curl]\n".to_owned(),
            "[\"packges\"]",
        ),
        (
            "no-header",
            "packages: [curl]\n".to_owned(),
            "needs to begin with \"#cloud-config\"",
        ),
        (
            "not-yaml",
            "#cloud-config\npackages: [curl\n".to_owned(),
            "is not valid yaml",
        ),
    ];
    for (name, text, want) in cases {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, &text).expect("write cloud-config");
        match cloud_init.validate(&path) {
            Ok(()) => panic!("{name}: accepted as valid:\n{text}"),
            Err(e) => assert!(
                e.contains(want),
                "{name}: want an error with {want:?}, got:\n{e}"
            ),
        }
    }
}

/// The files a cloud-config writes, as (path, content), in order; entries without
/// content write nothing and are left out.
pub(crate) fn write_files(user_data: &str) -> Vec<(String, String)> {
    let doc: serde_json::Value = serde_saphyr::from_str(user_data).expect("YAML user-data");
    doc["write_files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some((
                f["path"].as_str()?.to_owned(),
                f["content"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Whether `text` starts with a `#!` line naming a shell shellcheck knows.
fn is_shell_script(text: &str) -> bool {
    let Some(shebang) = text.lines().next().and_then(|l| l.strip_prefix("#!")) else {
        return false;
    };
    let mut words = shebang.split_whitespace();
    let mut program = words.next().unwrap_or_default();
    if program.ends_with("/env") {
        program = words.find(|w| !w.starts_with('-')).unwrap_or_default();
    }
    let name = program.rsplit('/').next().unwrap_or_default();
    matches!(name, "sh" | "bash" | "dash" | "ksh")
}

#[test]
fn write_files_reads_literal_blocks() {
    let yaml = "#cloud-config\nwrite_files:\n  - path: /a\n    content: |\n      #!/bin/sh\n\n        echo a\n\n  - content: |-\n        x\n    path: '/b'\n  - {path: /c}\nruncmd:\n  - [true]\n";
    assert_eq!(
        write_files(yaml),
        [
            ("/a".to_owned(), "#!/bin/sh\n\n  echo a\n".to_owned()),
            ("/b".to_owned(), "x".to_owned()),
        ]
    );
    assert!(is_shell_script("#!/usr/bin/env bash\n"));
    assert!(is_shell_script("#!/bin/sh -e\n"));
    assert!(!is_shell_script("#!/usr/bin/env python3\n"));
    assert!(!is_shell_script("LAB=\"x\"\n"));
}

#[test]
fn shell_scripts_pass_shellcheck() {
    let repo = repo();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut scripts: Vec<PathBuf> = ["cloud-init", "scripts"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(repo.join(dir)).expect("read script dir"))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.sort();
    assert!(
        scripts.len() >= 6,
        "bootstrap, library, capture helper and scripts/: {scripts:?}"
    );
    // The scripts cloud-init writes on an instance, as rendered, under <name>/<path>.
    let bootstrap =
        std::fs::read_to_string(repo.join("cloud-init/bootstrap.sh")).expect("read bootstrap.sh");
    for (name, text) in rendered() {
        let files = write_files(&text);
        assert!(
            files.iter().any(|(_, content)| *content == bootstrap),
            "{name}: no write_files entry holds cloud-init/bootstrap.sh verbatim (parser out \
             of step with the template?): found {:?}",
            files.iter().map(|(p, _)| p).collect::<Vec<_>>()
        );
        for (path, content) in files.into_iter().filter(|(_, c)| is_shell_script(c)) {
            let file = dir.path().join(name).join(path.trim_start_matches('/'));
            std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            std::fs::write(&file, content).expect("write script");
            scripts.push(file);
        }
    }
    let out = Command::new("shellcheck")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("shellcheck: {e}: {HOW_TO_INSTALL}"));
    assert!(
        out.status.success(),
        "shellcheck --version\n{}",
        transcript(&out)
    );
    let out = Command::new("shellcheck")
        .args(&scripts)
        .output()
        .expect("run shellcheck");
    assert!(
        out.status.success(),
        "shellcheck {}\n{}",
        scripts
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        transcript(&out)
    );
}
