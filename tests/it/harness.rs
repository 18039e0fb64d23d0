//! Running `labctl` in a scratch directory, and reaching the shared LocalStack.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory with helpers to run `labctl` inside it.
pub struct Sandbox {
    dir: tempfile::TempDir,
    endpoint: Option<String>,
    /// `LABCTL_PATIENCE` for its commands.
    patience: Option<&'static str>,
}

impl Sandbox {
    /// A sandbox with no AWS endpoint: any AWS call in it fails to connect.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // Empty AWS config files: the host's own profiles never leak into a test.
        for name in ["aws-config", "aws-credentials"] {
            std::fs::write(dir.path().join(name), "").expect("write empty AWS config");
        }
        Self {
            dir,
            endpoint: None,
            patience: None,
        }
    }

    /// A sandbox whose commands talk to the shared LocalStack.
    pub fn with_localstack() -> Self {
        Self {
            endpoint: Some(localstack_endpoint().to_owned()),
            ..Self::new()
        }
    }

    /// A sandbox whose commands talk to `url` (the fault-injecting endpoint in front
    /// of LocalStack), waiting and retrying as quickly as the tests allow.
    pub fn with_endpoint(url: String) -> Self {
        Self {
            endpoint: Some(url),
            patience: Some("0.05"),
            ..Self::new()
        }
    }

    /// The sandbox's directory (where `labctl` runs).
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes `bytes` to `name` inside the sandbox.
    pub fn write_bytes(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).expect("write file");
        path
    }

    /// Writes `name` inside the sandbox.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    /// `labctl <args>` in the sandbox, with a clean AWS environment: static test
    /// credentials, and the LocalStack endpoint (or an unreachable one).
    pub fn labctl(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_labctl"));
        cmd.args(args).current_dir(self.dir.path());
        for (key, _) in std::env::vars() {
            if key.starts_with("AWS_") || key.starts_with("LABCTL_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_CONFIG_FILE", self.dir.path().join("aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.path().join("aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("LABCTL_LABNET_BINARY", labnet_binary())
            .env("NO_COLOR", "1");
        // Port 9 (discard) on loopback: nothing listens, so calls fail fast and locally.
        let endpoint = self.endpoint.as_deref().unwrap_or("http://127.0.0.1:9");
        cmd.env("AWS_ENDPOINT_URL", endpoint);
        if let Some(p) = self.patience {
            cmd.env("LABCTL_PATIENCE", p);
        }
        cmd
    }

    /// Runs `labctl <args>` and returns its output.
    pub fn run(&self, args: &[&str]) -> Run {
        Run(self.labctl(args).output().expect("labctl runs"))
    }
}

/// Takes the lab down when the test ends, passed or not (`labctl down --yes` and
/// `extra` arguments).
pub struct Teardown<'a>(&'a Sandbox, &'a [&'a str]);

impl<'a> Teardown<'a> {
    pub fn new(sb: &'a Sandbox, extra: &'a [&'a str]) -> Self {
        Self(sb, extra)
    }
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        let run = self.0.run(&[&["down", "--yes"], self.1].concat());
        if run.code() != 0 && !std::thread::panicking() {
            panic!("down failed:\n{}", run.transcript());
        }
    }
}

/// The output of one run, with accessors that make assertions read well.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().expect("exited normally")
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Everything, for assertion messages and snapshots.
    pub fn transcript(&self) -> String {
        format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            self.code(),
            self.stdout(),
            self.stderr()
        )
    }
}

/// A finished command's exit status and output, for assertion messages.
pub fn transcript(out: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The labnet binary `up` uploads in tests: `LABCTL_LABNET_BINARY` when the test
/// script built a release one, else the build beside this test binary.
pub fn labnet_binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| workspace_binary("labnet", "LABCTL_LABNET_BINARY"))
        .clone()
}

/// A binary of another workspace package: `$env` when the test script built it, else
/// the build beside this test binary (the workspace build makes it). Tests never run
/// cargo themselves: its build lock would deadlock under `cargo test`.
pub fn workspace_binary(name: &str, env: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // target/<profile>/deps/it-<hash> → target/<profile>/<name>
            let exe = std::env::current_exe().expect("test binary path");
            exe.parent()
                .and_then(|deps| deps.parent())
                .expect("target/<profile>")
                .join(name)
        });
    assert!(
        path.is_file(),
        "no {name} binary at {}: build the workspace (`cargo build --workspace`) or set {env}",
        path.display()
    );
    path
}

/// A lab name no other test (in this or a concurrent process, or an earlier run) uses.
pub fn unique_lab(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    format!(
        "{prefix}{}-{:x}{}",
        std::process::id(),
        nanos & 0xfff,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The shared LocalStack's endpoint, starting it if needed. Never skips: a test that
/// needs AWS and cannot get LocalStack fails, with the script's explanation.
pub fn localstack_endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join("scripts/localstack.sh"))
            .arg("start")
            .output()
            .expect("run scripts/localstack.sh");
        assert!(
            out.status.success(),
            "scripts/localstack.sh start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let endpoint = String::from_utf8(out.stdout).expect("utf-8 endpoint");
        endpoint.trim().to_owned()
    })
}

/// An SDK configuration pointing at LocalStack, for checks made independently of labctl.
pub async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(localstack_endpoint())
        .region(aws_config::Region::new(region.to_owned()))
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .load()
        .await
}
