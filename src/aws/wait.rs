//! Waiting and retrying without fixed sleeps: poll a condition with exponential
//! backoff until a deadline.
//!
//! The policy is a value ([`Backoff`]) chosen by the caller for what it waits on; the
//! loops here only carry it out.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::AwsError;

/// How patiently to retry or poll.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay.
    pub first: Duration,
    /// Longest delay between attempts.
    pub max: Duration,
    /// Give up after this long.
    pub deadline: Duration,
}

impl Backoff {
    /// AWS's eventual consistency: a fresh IAM profile not yet usable by EC2, a group
    /// not yet visible. Usually seconds, rarely a minute.
    pub const CONSISTENCY: Backoff = Backoff {
        first: Duration::from_millis(250),
        max: Duration::from_secs(5),
        deadline: Duration::from_secs(120),
    };

    /// Deleting what still has dependents detaching (ENIs of terminating instances).
    pub const DEPENDENCIES: Backoff = Backoff {
        first: Duration::from_millis(500),
        max: Duration::from_secs(10),
        deadline: Duration::from_secs(300),
    };

    /// Instance state transitions (pending, stopping, shutting-down).
    pub const INSTANCE_STATE: Backoff = Backoff {
        first: Duration::from_millis(200),
        max: Duration::from_secs(5),
        deadline: Duration::from_secs(600),
    };

    /// Gone wrong for the reasons AWS gives when it is busy or not sure: throttled,
    /// or a call whose outcome is unknown. Tried again after a lookup, where that
    /// matters (see the applier's `create_once`).
    pub const BUSY: Backoff = Backoff {
        first: Duration::from_millis(500),
        max: Duration::from_secs(20),
        deadline: Duration::from_secs(180),
    };

    /// The delays between attempts, scaled by `LABCTL_PATIENCE` like the SDK's own.
    pub(super) fn delays(self) -> impl Iterator<Item = Duration> {
        let scale = super::Patience::from_env().scale();
        let first = self.first.mul_f64(scale);
        let max = self.max.mul_f64(scale);
        std::iter::successors(Some(first), move |d| Some((*d * 2).min(max)))
    }
}

/// Runs `op` until it succeeds, retrying while it fails with one of `codes` and the
/// deadline allows.
pub async fn retry<T, F, Fut>(policy: Backoff, codes: &[&str], op: F) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    retry_if(policy, |e| e.is(codes), op).await
}

/// Like [`retry`], with a predicate for errors that a code alone does not identify.
pub async fn retry_if<T, F, Fut>(
    policy: Backoff,
    retryable: impl Fn(&AwsError) -> bool,
    mut op: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    let start = Instant::now();
    let mut delays = policy.delays();
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if retryable(&e) => {
                let delay = delays.next().unwrap_or(policy.max);
                if start.elapsed() + delay > policy.deadline {
                    return Err(e);
                }
                tracing::debug!(error = %e, ?delay, "retrying");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Polls `check` until it returns true, failing with `what` at the deadline.
pub async fn until<F, Fut>(what: &str, policy: Backoff, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let start = Instant::now();
    let mut delays = policy.delays();
    loop {
        if check().await? {
            return Ok(());
        }
        let delay = delays.next().unwrap_or(policy.max);
        if start.elapsed() + delay > policy.deadline {
            bail!(
                "timed out after {} waiting for {what}",
                labctl_core::duration::format(policy.deadline)
            );
        }
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_millis(350),
            deadline: Duration::from_secs(1),
        };
        let d: Vec<u128> = b.delays().take(4).map(|d| d.as_millis()).collect();
        assert_eq!(d, [100, 200, 350, 350]);
    }

    #[tokio::test]
    async fn retry_stops_on_other_errors_and_at_the_deadline() {
        let fast = Backoff {
            first: Duration::from_millis(1),
            max: Duration::from_millis(2),
            deadline: Duration::from_millis(30),
        };
        let err = |code: &str| AwsError {
            context: "t".into(),
            code: Some(code.into()),
            message: code.into(),
            ambiguous: false,
        };
        let mut n = 0;
        let r: Result<(), _> = retry(fast, &["Busy"], || {
            n += 1;
            let e = err(if n < 3 { "Busy" } else { "Fatal" });
            async move { Err(e) }
        })
        .await;
        assert_eq!(r.unwrap_err().code.as_deref(), Some("Fatal"));
        assert_eq!(n, 3);
        let r: Result<(), _> = retry(fast, &["Busy"], || {
            let e = err("Busy");
            async move { Err(e) }
        })
        .await;
        assert_eq!(r.unwrap_err().code.as_deref(), Some("Busy"));
    }
}
