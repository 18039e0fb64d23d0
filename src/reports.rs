//! Readiness reports: what each instance's bootstrap wrote to the lab's bucket when it
//! finished, and waiting for them.
//!
//! AWS says an instance is `running` long before it is useful: cloud-init still has to
//! install packages, fetch labnet and start the services. The bootstrap's report is the
//! only signal that the lab is ready, and when it is not, it says why (the error and
//! the tail of the bootstrap's log).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Deserialize;

use crate::aws::{Absent, Clients, aws};
use crate::printer::Printer;

/// The key an instance's report is written under.
pub fn key(instance: &str) -> String {
    format!("{}{instance}.json", labctl_core::marks::REPORTS_PREFIX)
}

/// One instance's report, as `cloud-init/bootstrap.sh` writes it.
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

/// Where an instance's bootstrap stands.
#[derive(Debug, Clone)]
pub enum Readiness {
    /// No report from this instance yet (it is booting, or it never will: LocalStack
    /// runs no user-data).
    Pending,
    /// It reported.
    Reported(Report),
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
        }
    }

    /// True once the instance has reported, well or not.
    pub fn is_final(&self) -> bool {
        matches!(self, Readiness::Reported(_))
    }
}

/// Reads the report of `instance`, counting only one written by `instance_id`.
pub async fn read(
    c: &Clients,
    bucket: &str,
    instance: &str,
    instance_id: &str,
) -> anyhow::Result<Readiness> {
    let key = key(instance);
    let Some(object) =
        c.s3.get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .map_err(aws(format!("S3 GetObject {key}")))
            .absent_if(&["NoSuchKey"])?
    else {
        return Ok(Readiness::Pending);
    };
    let bytes = object.body.collect().await?.into_bytes();
    let report: Report = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("s3://{bucket}/{key} is not a readiness report: {e}"))?;
    if report.instance_id != instance_id {
        return Ok(Readiness::Pending);
    }
    Ok(Readiness::Reported(report))
}

/// Waits until every instance (name, id) has reported or `timeout` passes, printing a
/// line per instance as its report arrives, and returns the reports. Errors when any
/// failed or stayed silent.
pub async fn wait(
    c: &Clients,
    bucket: &str,
    instances: &[(String, String)],
    timeout: Duration,
    printer: &Printer,
) -> anyhow::Result<std::collections::BTreeMap<String, Readiness>> {
    let start = Instant::now();
    let mut reported = std::collections::BTreeMap::new();
    let width = instances.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut pending: Vec<&(String, String)> = instances.iter().collect();
    let mut failed = Vec::new();
    let mut delay = Duration::from_secs(1);
    printer.note(&format!(
        "waiting up to {} for {} instance(s) to report ready",
        humanize(timeout),
        instances.len()
    ));
    loop {
        let reads =
            futures::future::join_all(pending.iter().map(|(name, id)| read(c, bucket, name, id)))
                .await;
        let mut still = Vec::new();
        for (entry, readiness) in pending.into_iter().zip(reads) {
            let readiness = readiness?;
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
                    failed.push(entry.0.clone());
                }
                _ => printer.success(&line),
            }
            reported.insert(entry.0.clone(), readiness);
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if start.elapsed() + delay > timeout {
            let names: Vec<&str> = pending.iter().map(|(n, _)| n.as_str()).collect();
            bail!(
                "no readiness report from {} after {}; an instance reports when its \
                 bootstrap ends (read /var/log/labctl-bootstrap.log and `cloud-init status` \
                 on it), and an emulator that runs no user-data never reports",
                names.join(", "),
                humanize(timeout)
            );
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    if !failed.is_empty() {
        bail!("the bootstrap failed on {}", failed.join(", "));
    }
    Ok(reported)
}

/// `2m13s`, `45s`, `1h05m`.
pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(humanize(Duration::from_secs(0)), "0s");
        assert_eq!(humanize(Duration::from_secs(59)), "59s");
        assert_eq!(humanize(Duration::from_secs(133)), "2m13s");
        assert_eq!(humanize(Duration::from_secs(3600 + 5 * 60 + 9)), "1h05m");
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
