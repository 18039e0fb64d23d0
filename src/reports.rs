//! Readiness reports: what each instance's bootstrap wrote to the lab's bucket when it
//! finished, and waiting for them.
//!
//! AWS says an instance is `running` long before it is useful: cloud-init still has to
//! install packages, fetch labnet and start the services. The bootstrap's report is the
//! only signal that the lab is ready, and when it is not, it says why (the error and
//! the tail of the bootstrap's log).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use labctl_core::marks::{self, REPORTS_PREFIX};
use serde::Deserialize;

use crate::aws::{Absent, Clients, Listed, aws};
use crate::printer::Printer;
use crate::untrusted;

/// A report is a few KB; anything larger is refused without being read.
pub const MAX_REPORT_BYTES: u64 = 64 * 1024;

/// One instance's report, as `cloud-init/bootstrap.sh` writes it. Every field was
/// written on the instance, so none is trusted: [`Report::cleaned`] makes them safe to
/// print.
#[derive(Debug, Clone, Deserialize)]
pub struct Report {
    /// The instance that wrote it (a replaced instance's report names the old one).
    #[serde(default)]
    pub instance_id: String,
    /// Whether labnet is installed and every service started.
    pub ok: bool,
    /// `labnet --version`.
    #[serde(default)]
    pub labnet_version: String,
    /// `systemctl is-active` per service.
    #[serde(default)]
    pub services: BTreeMap<String, String>,
    /// When the bootstrap finished (UTC, RFC 3339).
    #[serde(default)]
    pub finished_at: String,
    /// What failed.
    #[serde(default)]
    pub error: Option<String>,
    /// The last lines of the bootstrap's log.
    #[serde(default)]
    pub log_tail: String,
}

impl Report {
    /// The report with every control character gone from what it says.
    fn cleaned(self) -> Self {
        Report {
            instance_id: untrusted::line(&self.instance_id),
            ok: self.ok,
            labnet_version: untrusted::line(&self.labnet_version),
            services: self
                .services
                .iter()
                .map(|(k, v)| (untrusted::line(k), untrusted::line(v)))
                .collect(),
            finished_at: untrusted::line(&self.finished_at),
            error: self.error.as_deref().map(untrusted::line),
            log_tail: untrusted::text(&self.log_tail),
        }
    }
}

/// Where an instance's bootstrap stands.
#[derive(Debug, Clone)]
pub enum Readiness {
    /// No report from this instance yet (it is booting, or it never will: LocalStack
    /// runs no user-data).
    Pending,
    /// It reported.
    Reported(Report),
    /// What it wrote is not a report labctl reads: too large, not JSON, or claiming
    /// another instance. Why, in words safe to print.
    Invalid(String),
}

impl Readiness {
    /// A short line for a table or a progress message.
    pub fn summary(&self) -> String {
        match self {
            Readiness::Pending => "no report yet".to_owned(),
            Readiness::Reported(r) if r.ok => {
                let active = r.services.values().filter(|s| *s == "active").count();
                let version = r
                    .labnet_version
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                match r.services.len() {
                    0 => format!("ready ({version})"),
                    n => format!("ready ({version}, {active}/{n} services active)"),
                }
            }
            Readiness::Reported(r) => format!(
                "FAILED: {}",
                r.error.as_deref().unwrap_or("the bootstrap failed")
            ),
            Readiness::Invalid(why) => format!("UNREADABLE REPORT: {why}"),
        }
    }

    /// True once the instance has reported, well or not.
    pub fn is_final(&self) -> bool {
        matches!(self, Readiness::Reported(_) | Readiness::Invalid(_))
    }
}

/// The reports of `instances` (name, id), in their order. One listing finds them all:
/// each instance's report is under its writer (`reports/<role id>:<instance id>.json`),
/// the newest if a renamed role made two. A report under the instance's name, as
/// releases before wrote them, counts when it names this instance.
pub async fn read_all(
    c: &Clients,
    bucket: &str,
    instances: &[(String, String)],
) -> anyhow::Result<Vec<Readiness>> {
    let listed = crate::aws::listing(c, bucket, REPORTS_PREFIX).await?;
    let reads = instances.iter().map(|(name, id)| {
        let by_writer = listed
            .iter()
            .filter(|l| {
                l.key
                    .strip_prefix(REPORTS_PREFIX)
                    .and_then(|k| k.strip_suffix(".json"))
                    .and_then(marks::writer)
                    .is_some_and(|w| w.instance_id == id)
            })
            .max_by_key(|l| l.modified);
        let legacy = format!("{REPORTS_PREFIX}{name}.json");
        let found = by_writer
            .map(|l| (l, true))
            .or_else(|| listed.iter().find(|l| l.key == legacy).map(|l| (l, false)));
        async move {
            match found {
                None => Ok(Readiness::Pending),
                Some((l, own)) => read(c, bucket, l, id, own).await,
            }
        }
    });
    futures::future::join_all(reads).await.into_iter().collect()
}

/// Reads one report, refusing what is too large, malformed or from elsewhere. `own`:
/// the key is the instance's own writer's, which only it can write.
async fn read(
    c: &Clients,
    bucket: &str,
    listed: &Listed,
    instance_id: &str,
    own: bool,
) -> anyhow::Result<Readiness> {
    let too_large = |size: u64| {
        Readiness::Invalid(format!(
            "s3://{bucket}/{} is {size} bytes; a report is at most {} KiB, so it was not read",
            untrusted::line(&listed.key),
            MAX_REPORT_BYTES / 1024
        ))
    };
    if listed.size > MAX_REPORT_BYTES {
        return Ok(too_large(listed.size));
    }
    let Some(object) =
        c.s3.get_object()
            .bucket(bucket)
            .key(&listed.key)
            .send()
            .await
            .map_err(aws(format!("S3 GetObject {}", listed.key)))
            .absent_if(&["NoSuchKey"])?
    else {
        return Ok(Readiness::Pending);
    };
    // The listing's size is a hint; the bytes read are what count.
    let mut body = object.body;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.try_next().await? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > MAX_REPORT_BYTES {
            return Ok(too_large(bytes.len() as u64));
        }
    }
    let report: Report = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return Ok(Readiness::Invalid(format!(
                "s3://{bucket}/{} is not a readiness report: {}",
                untrusted::line(&listed.key),
                untrusted::line(&e.to_string())
            )));
        }
    };
    let report = report.cleaned();
    if report.instance_id != instance_id {
        // Under a name, a replaced instance's report is simply old; under the
        // instance's own writer, it is a lie.
        return Ok(if own {
            Readiness::Invalid(format!(
                "the report under its own key claims to come from `{}`",
                report.instance_id
            ))
        } else {
            Readiness::Pending
        });
    }
    Ok(Readiness::Reported(report))
}

/// What `up --wait` saw: every instance's last readiness (those that never reported
/// stay [`Readiness::Pending`]), and what went wrong, if anything did.
#[derive(Debug)]
pub struct Waited {
    /// Each instance's readiness, by name.
    pub ready: std::collections::BTreeMap<String, Readiness>,
    /// Instances still without a report when the time ran out.
    pub pending: Vec<String>,
    /// Instances whose bootstrap reported a failure.
    pub failed: Vec<String>,
    /// Instances whose report labctl could not read.
    pub unreadable: Vec<String>,
}

impl Waited {
    /// One line saying what went wrong, or `None` when every instance is ready.
    pub fn problem(&self, timeout: Duration) -> Option<String> {
        let mut parts = Vec::new();
        if !self.failed.is_empty() {
            parts.push(format!(
                "the bootstrap failed on {}",
                self.failed.join(", ")
            ));
        }
        if !self.unreadable.is_empty() {
            parts.push(format!(
                "unreadable readiness report from {}",
                self.unreadable.join(", ")
            ));
        }
        if !self.pending.is_empty() {
            parts.push(format!(
                "no readiness report from {} after {}; an instance reports when its \
                 bootstrap ends (read /var/log/labctl-bootstrap.log and `cloud-init status` \
                 on it), and an emulator that runs no user-data never reports",
                self.pending.join(", "),
                humanize(timeout)
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// Waits until every instance has reported, or `timeout` has passed: the last look is
/// taken at the deadline itself, never earlier. One instance's failure does not stop
/// the wait for the others.
pub async fn wait(
    c: &Clients,
    bucket: &str,
    instances: &[(String, String)],
    timeout: Duration,
    printer: &Printer,
) -> anyhow::Result<Waited> {
    let start = Instant::now();
    let mut waited = Waited {
        ready: instances
            .iter()
            .map(|(name, _)| (name.clone(), Readiness::Pending))
            .collect(),
        pending: Vec::new(),
        failed: Vec::new(),
        unreadable: Vec::new(),
    };
    let width = instances.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut pending: Vec<&(String, String)> = instances.iter().collect();
    let mut delay = Duration::from_secs(1);
    printer.note(&format!(
        "waiting up to {} for {} instance(s) to report ready",
        humanize(timeout),
        instances.len()
    ));
    loop {
        let asked: Vec<(String, String)> = pending.iter().map(|e| (*e).clone()).collect();
        let reads = read_all(c, bucket, &asked).await?;
        let mut still = Vec::new();
        for (entry, readiness) in pending.into_iter().zip(reads) {
            if !readiness.is_final() {
                still.push(entry);
                continue;
            }
            let line = format!(
                "{:<width$}  {} after {}",
                entry.0,
                readiness.summary(),
                humanize(start.elapsed())
            );
            match &readiness {
                Readiness::Reported(r) if !r.ok => {
                    printer.error(&line);
                    let tail: Vec<&str> = r.log_tail.lines().rev().take(8).collect();
                    for l in tail.into_iter().rev() {
                        printer.note(&format!("    {l}"));
                    }
                    waited.failed.push(entry.0.clone());
                }
                // One instance's bad report is its own failure; the others are
                // still waited for.
                Readiness::Invalid(_) => {
                    printer.error(&line);
                    waited.unreadable.push(entry.0.clone());
                }
                _ => printer.success(&line),
            }
            waited.ready.insert(entry.0.clone(), readiness);
        }
        pending = still;
        let elapsed = start.elapsed();
        if pending.is_empty() || elapsed >= timeout {
            break;
        }
        // Sleep no further than the deadline, so the last look happens at it.
        tokio::time::sleep(delay.min(timeout - elapsed)).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    waited.pending = pending.into_iter().map(|(n, _)| n.clone()).collect();
    Ok(waited)
}

/// `2m13s`, `45s`, `1h5m9s`: as every duration is shown ([`labctl_core::duration`]).
pub fn humanize(d: Duration) -> String {
    labctl_core::duration::format(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_they_are_written() {
        assert_eq!(humanize(Duration::from_secs(0)), "0s");
        assert_eq!(humanize(Duration::from_secs(59)), "59s");
        assert_eq!(humanize(Duration::from_secs(133)), "2m13s");
        assert_eq!(humanize(Duration::from_secs(3600 + 5 * 60 + 9)), "1h5m9s");
    }

    #[test]
    fn summaries_say_what_a_student_needs() {
        let report: Report = serde_json::from_str(
            r#"{"instance_id":"i-1","ok":true,"labnet_version":"labnet 0.1.0 (abc1234)",
               "services":{"tcp-server":"active","udp-server":"failed"}}"#,
        )
        .expect("report");
        assert_eq!(
            Readiness::Reported(report).summary(),
            "ready (labnet 0.1.0, 1/2 services active)"
        );
        let failed: Report = serde_json::from_str(
            r#"{"instance_id":"i-1","ok":false,"error":"labnet SHA-256 mismatch"}"#,
        )
        .expect("report");
        assert_eq!(
            Readiness::Reported(failed).summary(),
            "FAILED: labnet SHA-256 mismatch"
        );
        assert_eq!(Readiness::Pending.summary(), "no report yet");
    }
}
