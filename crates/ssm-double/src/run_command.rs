//! Run Command as the double imitates it: `SendCommand` really runs the
//! `AWS-RunShellScript` lines with `bash` on this host, once per instance, and the
//! other operations read back what was sent and what came of it.
//!
//! Imitated: the parameters SSM checks (`commands`, `executionTimeout`,
//! `workingDirectory`; `TimeoutSeconds` 30 s to 30 days), `AWS_SSM_INSTANCE_ID` in the
//! script's environment, statuses (Pending, InProgress, Success, Failed with the exit
//! code, TimedOut after `executionTimeout`, or after `TimeoutSeconds` for an offline
//! agent that never picks the command up), and the output limits. Not imitated:
//! `Targets`, S3 or CloudWatch output, cancellation, pagination (every answer is one
//! page).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value, json};
use tokio::io::AsyncReadExt as _;

use crate::State;
use crate::api::{Answer, ApiError, epoch_seconds, strings};

/// The only document the double runs.
const DOCUMENT: &str = "AWS-RunShellScript";
/// Its one plugin.
const PLUGIN: &str = "aws:runShellScript";
/// What GetCommandInvocation keeps of each stream.
const STDOUT_LIMIT: usize = 24_000;
const STDERR_LIMIT: usize = 8_000;
/// What ListCommandInvocations' plugin `Output` keeps.
const PLUGIN_OUTPUT_LIMIT: usize = 2_500;

/// Every command sent, oldest first.
#[derive(Debug, Default)]
pub struct Store {
    commands: Mutex<Vec<Command>>,
}

#[derive(Debug)]
struct Command {
    id: String,
    comment: String,
    parameters: Map<String, Value>,
    instance_ids: Vec<String>,
    timeout_seconds: u64,
    max_concurrency: String,
    max_errors: String,
    requested: SystemTime,
    /// Until then, its invocations are unknown.
    visible_at: Instant,
    invocations: Vec<Arc<Mutex<Invocation>>>,
}

#[derive(Debug, Clone)]
struct Invocation {
    instance_id: String,
    status: &'static str,
    details: &'static str,
    code: i32,
    stdout: String,
    stderr: String,
    started: Option<SystemTime>,
    ended: Option<SystemTime>,
}

impl Invocation {
    fn is_final(&self) -> bool {
        matches!(self.status, "Success" | "Failed" | "TimedOut" | "Cancelled")
    }
}

/// `SendCommand`: checks the request as SSM does, answers at once, and runs the script
/// for each instance in the background.
pub fn send_command(state: &State, input: &Value) -> Answer {
    let document = input
        .get("DocumentName")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation("DocumentName is required"))?;
    if document != DOCUMENT {
        return Err(ApiError::new(
            "InvalidDocument",
            format!("the SSM test double runs only {DOCUMENT}, not {document}"),
        ));
    }
    if input.get("Targets").is_some_and(|t| t != &json!([])) {
        return Err(ApiError::validation(
            "the SSM test double takes InstanceIds, not Targets",
        ));
    }
    let instance_ids = strings(input, "InstanceIds");
    if instance_ids.is_empty() || instance_ids.len() > 50 {
        return Err(ApiError::validation(
            "InstanceIds must name 1 to 50 instances",
        ));
    }
    if let Some(bad) = instance_ids
        .iter()
        .find(|id| !is_instance_id(id) || state.config.unregistered.contains(*id))
    {
        return Err(ApiError::new(
            "InvalidInstanceId",
            format!("{bad} is not a managed instance id"),
        ));
    }
    let parameters = input
        .get("Parameters")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(other) = parameters.keys().find(|k| {
        !matches!(
            k.as_str(),
            "commands" | "executionTimeout" | "workingDirectory"
        )
    }) {
        return Err(ApiError::new(
            "InvalidParameters",
            format!("{DOCUMENT} has no parameter {other}"),
        ));
    }
    let lines = strings(&Value::Object(parameters.clone()), "commands");
    if lines.is_empty() {
        return Err(ApiError::new(
            "InvalidParameters",
            "the parameter commands is required",
        ));
    }
    let execution = match strings(&Value::Object(parameters.clone()), "executionTimeout").first() {
        None => 3600,
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=172_800).contains(s))
            .ok_or_else(|| {
                ApiError::new(
                    "InvalidParameters",
                    format!("executionTimeout `{text}` is not 1 to 172800 seconds"),
                )
            })?,
    };
    let directory = strings(&Value::Object(parameters.clone()), "workingDirectory")
        .into_iter()
        .next()
        .filter(|d| !d.is_empty());
    let timeout_seconds = match input.get("TimeoutSeconds") {
        None => 3600,
        Some(v) => v
            .as_u64()
            .filter(|s| (30..=2_592_000).contains(s))
            .ok_or_else(|| ApiError::validation("TimeoutSeconds must be 30 to 2592000"))?,
    };
    let text = |key: &str, default: &str| {
        input
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    let command = Command {
        id: uuid::Uuid::new_v4().to_string(),
        comment: text("Comment", ""),
        parameters,
        timeout_seconds,
        max_concurrency: text("MaxConcurrency", "50"),
        max_errors: text("MaxErrors", "0"),
        requested: SystemTime::now(),
        visible_at: Instant::now() + state.config.invocation_delay,
        invocations: instance_ids
            .iter()
            .map(|id| {
                Arc::new(Mutex::new(Invocation {
                    instance_id: id.clone(),
                    status: "Pending",
                    details: "Pending",
                    code: -1,
                    stdout: String::new(),
                    stderr: String::new(),
                    started: None,
                    ended: None,
                }))
            })
            .collect(),
        instance_ids,
    };
    let script = lines.join("\n");
    for invocation in &command.invocations {
        let id = lock(invocation).instance_id.clone();
        let invocation = invocation.clone();
        if state.config.offline.contains(&id) {
            // A lost agent never picks the command up.
            let wait = Duration::from_secs(timeout_seconds);
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let mut inv = lock(&invocation);
                inv.status = "TimedOut";
                inv.details = "DeliveryTimedOut";
            });
            continue;
        }
        let script = script.clone();
        let directory = directory.clone();
        tokio::spawn(async move {
            let limit = Duration::from_secs(execution);
            run(&invocation, &id, &script, directory.as_deref(), limit).await;
        });
    }
    let answer = command_json(&command);
    tracing::info!(id = %command.id, instances = ?command.instance_ids, "command sent");
    state
        .commands
        .commands
        .lock()
        .expect("store lock")
        .push(command);
    Ok(json!({ "Command": answer }))
}

/// `GetCommandInvocation`: one instance's status and output.
pub fn get_command_invocation(state: &State, input: &Value) -> Answer {
    let field = |key: &str| {
        input
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::validation(format!("{key} is required")))
    };
    let (command_id, instance_id) = (field("CommandId")?, field("InstanceId")?);
    if let Some(plugin) = input.get("PluginName").and_then(Value::as_str)
        && plugin != PLUGIN
    {
        return Err(ApiError::new(
            "InvalidPluginName",
            format!("{DOCUMENT} has no plugin {plugin}"),
        ));
    }
    let commands = state.commands.commands.lock().expect("store lock");
    let found = commands
        .iter()
        .filter(|c| c.id == command_id && Instant::now() >= c.visible_at)
        .flat_map(|c| c.invocations.iter().map(move |i| (c, lock(i).clone())))
        .find(|(_, i)| i.instance_id == instance_id);
    let Some((command, inv)) = found else {
        return Err(ApiError::new(
            "InvocationDoesNotExist",
            format!("no invocation of command {command_id} on {instance_id}"),
        ));
    };
    let elapsed = match (inv.started, inv.ended) {
        (Some(s), Some(e)) => e.duration_since(s).unwrap_or_default(),
        (Some(s), None) => s.elapsed().unwrap_or_default(),
        _ => Duration::ZERO,
    };
    // Output is shown once the invocation has ended, as SSM shows it.
    let (stdout, stderr) = if inv.is_final() {
        (inv.stdout.as_str(), inv.stderr.as_str())
    } else {
        ("", "")
    };
    Ok(json!({
        "CommandId": command.id,
        "InstanceId": inv.instance_id,
        "Comment": command.comment,
        "DocumentName": DOCUMENT,
        "DocumentVersion": "$DEFAULT",
        "PluginName": PLUGIN,
        "ResponseCode": inv.code,
        "ExecutionStartDateTime": inv.started.map(iso).unwrap_or_default(),
        "ExecutionElapsedTime": format!("PT{:.3}S", elapsed.as_secs_f64()),
        "ExecutionEndDateTime": inv.ended.map(iso).unwrap_or_default(),
        "Status": inv.status,
        "StatusDetails": inv.details,
        "StandardOutputContent": stdout,
        "StandardOutputUrl": "",
        "StandardErrorContent": stderr,
        "StandardErrorUrl": "",
        "CloudWatchOutputConfig": { "CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": false },
    }))
}

/// `ListCommands`: every command (newest first), or those of `CommandId` or
/// `InstanceId`.
pub fn list_commands(state: &State, input: &Value) -> Answer {
    let commands = state.commands.commands.lock().expect("store lock");
    let by_id = input.get("CommandId").and_then(Value::as_str);
    let by_instance = input.get("InstanceId").and_then(Value::as_str);
    if let Some(id) = by_id
        && !commands.iter().any(|c| c.id == id)
    {
        return Err(ApiError::new(
            "InvalidCommandId",
            format!("no command {id}"),
        ));
    }
    let list: Vec<Value> = commands
        .iter()
        .rev()
        .filter(|c| by_id.is_none_or(|id| c.id == id))
        .filter(|c| by_instance.is_none_or(|i| c.instance_ids.iter().any(|x| x == i)))
        .map(command_json)
        .collect();
    Ok(json!({ "Commands": list }))
}

/// `ListCommandInvocations`: one entry per instance of each command, with the plugin's
/// output when `Details` is true.
pub fn list_command_invocations(state: &State, input: &Value) -> Answer {
    let commands = state.commands.commands.lock().expect("store lock");
    let by_id = input.get("CommandId").and_then(Value::as_str);
    let by_instance = input.get("InstanceId").and_then(Value::as_str);
    let details = input
        .get("Details")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let Some(id) = by_id
        && !commands.iter().any(|c| c.id == id)
    {
        return Err(ApiError::new(
            "InvalidCommandId",
            format!("no command {id}"),
        ));
    }
    let mut list = Vec::new();
    for c in commands.iter().rev() {
        if by_id.is_some_and(|id| c.id != id) || Instant::now() < c.visible_at {
            continue;
        }
        for inv in c.invocations.iter().map(|i| lock(i).clone()) {
            if by_instance.is_some_and(|i| inv.instance_id != i) {
                continue;
            }
            let mut entry = json!({
                "CommandId": c.id,
                "InstanceId": inv.instance_id,
                "InstanceName": "",
                "Comment": c.comment,
                "DocumentName": DOCUMENT,
                "DocumentVersion": "$DEFAULT",
                "RequestedDateTime": epoch_seconds(c.requested),
                "Status": inv.status,
                "StatusDetails": inv.details,
                "TraceOutput": "",
                "StandardOutputUrl": "",
                "StandardErrorUrl": "",
                "CommandPlugins": [],
            });
            if details {
                let mut output = inv.stdout.clone();
                if !inv.stderr.is_empty() {
                    output.push_str("\n----------ERROR-------\n");
                    output.push_str(&inv.stderr);
                }
                entry["CommandPlugins"] = json!([{
                    "Name": PLUGIN,
                    "Status": inv.status,
                    "StatusDetails": inv.details,
                    "ResponseCode": inv.code,
                    "ResponseStartDateTime": inv.started.map(epoch_seconds),
                    "ResponseFinishDateTime": inv.ended.map(epoch_seconds),
                    "Output": first(&output, PLUGIN_OUTPUT_LIMIT),
                    "StandardOutputUrl": "",
                    "StandardErrorUrl": "",
                    "OutputS3Region": "",
                    "OutputS3BucketName": "",
                    "OutputS3KeyPrefix": "",
                }]);
            }
            list.push(entry);
        }
    }
    Ok(json!({ "CommandInvocations": list }))
}

/// A command as SSM describes it, with a status summed up from its invocations.
fn command_json(c: &Command) -> Value {
    let invocations: Vec<Invocation> = c.invocations.iter().map(|i| lock(i).clone()).collect();
    let count = |status: &str| invocations.iter().filter(|i| i.status == status).count();
    let done = invocations.iter().filter(|i| i.is_final()).count();
    let status = if invocations.iter().all(|i| i.status == "Pending") {
        "Pending"
    } else if done < invocations.len() {
        "InProgress"
    } else if count("Success") == invocations.len() {
        "Success"
    } else if count("Failed") > 0 {
        "Failed"
    } else if count("TimedOut") > 0 {
        "TimedOut"
    } else {
        "Cancelled"
    };
    let delivery_timed_out = invocations
        .iter()
        .filter(|i| i.details == "DeliveryTimedOut")
        .count();
    json!({
        "CommandId": c.id,
        "DocumentName": DOCUMENT,
        "DocumentVersion": "$DEFAULT",
        "Comment": c.comment,
        "ExpiresAfter": epoch_seconds(c.requested) + c.timeout_seconds as f64,
        "Parameters": c.parameters,
        "InstanceIds": c.instance_ids,
        "Targets": [],
        "RequestedDateTime": epoch_seconds(c.requested),
        "Status": status,
        "StatusDetails": status,
        "OutputS3Region": "",
        "OutputS3BucketName": "",
        "OutputS3KeyPrefix": "",
        "MaxConcurrency": c.max_concurrency,
        "MaxErrors": c.max_errors,
        "TargetCount": invocations.len(),
        "CompletedCount": done,
        "ErrorCount": count("Failed") + count("TimedOut") - delivery_timed_out,
        "DeliveryTimedOutCount": delivery_timed_out,
        "ServiceRole": "",
        "TimeoutSeconds": c.timeout_seconds,
    })
}

/// Runs the script for one instance and records how it ended.
async fn run(
    invocation: &Mutex<Invocation>,
    instance_id: &str,
    script: &str,
    directory: Option<&str>,
    limit: Duration,
) {
    {
        let mut inv = lock(invocation);
        inv.status = "InProgress";
        inv.details = "InProgress";
        inv.started = Some(SystemTime::now());
    }
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .env("AWS_SSM_INSTANCE_ID", instance_id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout ends everything it started.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = directory {
        cmd.current_dir(dir);
    }
    let (status, details, code, stdout, stderr) = match cmd.spawn() {
        Err(e) => (
            "Failed",
            "Failed",
            -1,
            String::new(),
            format!("cannot run bash: {e}"),
        ),
        Ok(mut child) => {
            let out = child.stdout.take().map(|s| tokio::spawn(read_all(s)));
            let err = child.stderr.take().map(|s| tokio::spawn(read_all(s)));
            let waited = tokio::time::timeout(limit, child.wait()).await;
            if waited.is_err() {
                if let Some(pid) = child.id() {
                    kill_group(pid).await;
                }
                let _ = child.kill().await;
            }
            // Output still held open by a process outside the group is not waited for.
            let collect = |task: Option<tokio::task::JoinHandle<String>>| async move {
                match task {
                    Some(t) => tokio::time::timeout(Duration::from_secs(2), t)
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or_default(),
                    None => String::new(),
                }
            };
            let (stdout, stderr) = (collect(out).await, collect(err).await);
            match waited {
                Err(_) => ("TimedOut", "ExecutionTimedOut", -1, stdout, stderr),
                Ok(Err(e)) => ("Failed", "Failed", -1, stdout, format!("{stderr}{e}")),
                Ok(Ok(exit)) => match exit.code() {
                    Some(0) => ("Success", "Success", 0, stdout, stderr),
                    Some(code) => ("Failed", "Failed", code, stdout, stderr),
                    // Killed by a signal: no exit code.
                    None => ("Failed", "Failed", -1, stdout, stderr),
                },
            }
        }
    };
    tracing::info!(instance_id, status, code, "invocation ended");
    let mut inv = lock(invocation);
    inv.status = status;
    inv.details = details;
    inv.code = code;
    inv.stdout = first(&stdout, STDOUT_LIMIT);
    inv.stderr = first(&stderr, STDERR_LIMIT);
    inv.ended = Some(SystemTime::now());
}

async fn read_all(mut stream: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes).await;
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Kills a process group by the `kill` program (no signal API without `unsafe` here).
async fn kill_group(pid: u32) {
    let _ = tokio::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status()
        .await;
}

fn lock(i: &Mutex<Invocation>) -> std::sync::MutexGuard<'_, Invocation> {
    i.lock().expect("invocation lock")
}

fn is_instance_id(id: &str) -> bool {
    id.strip_prefix("i-")
        .or_else(|| id.strip_prefix("mi-"))
        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The first `n` characters of `text`.
fn first(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
}

/// ISO 8601 with milliseconds, as GetCommandInvocation writes its dates.
fn iso(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_are_civil_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_496_860_612_385);
        assert_eq!(iso(t), "2017-06-07T18:36:52.385Z");
        assert_eq!(iso(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(iso(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn instance_ids_are_checked_like_ssm() {
        assert!(is_instance_id("i-0123456789abcdef0"));
        assert!(!is_instance_id("server"));
        assert!(!is_instance_id("i-"));
    }
}
