//! The SSM test double (`crates/ssm-double`) as a child of one test: started on a free
//! port, killed by its PID when the test ends. Its stdin is a pipe held here, so it
//! also exits if the test process dies without dropping it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

/// A running double.
pub struct Double {
    child: Child,
    /// Held open: the double exits when it closes.
    _stdin: ChildStdin,
    endpoint: String,
}

impl Double {
    /// Starts the double with extra `args` (`--offline-instance i-…`), and waits for
    /// its endpoint line.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// Starts the double with `env` added to its environment, which the commands it
    /// runs for Run Command inherit.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(binary())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ssm-double");
        let stdin = child.stdin.take().expect("double stdin");
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("double stdout")).read_line(&mut line);
        let endpoint = match (read, line.trim().strip_prefix("endpoint ")) {
            (Ok(_), Some(url)) => url.to_owned(),
            (read, _) => {
                let _ = child.kill();
                panic!("ssm-double printed {line:?} ({read:?}) instead of its endpoint");
            }
        };
        Self {
            child,
            _stdin: stdin,
            endpoint,
        }
    }

    /// `http://127.0.0.1:PORT`: the value for `AWS_ENDPOINT_URL_SSM`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// An SSM client talking to the double, for reading back what labctl sent.
    pub async fn ssm(&self) -> aws_sdk_ssm::Client {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("eu-north-1"))
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                "test", "test", None, None, "static",
            ))
            .load()
            .await;
        aws_sdk_ssm::Client::new(&config)
    }
}

impl Drop for Double {
    fn drop(&mut self) {
        // Child::kill signals this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The double's binary: `LABCTL_SSM_DOUBLE` when the test script built it, else the
/// build beside this test binary.
pub fn binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| crate::harness::workspace_binary("ssm-double", "LABCTL_SSM_DOUBLE"))
        .clone()
}
