//! The awsJson1.1 side of the double: reads `X-Amz-Target: AmazonSSM.<Operation>` and
//! the JSON body, dispatches on the operation name, and answers as SSM does.
//!
//! A new operation is one arm in [`dispatch`]; errors are [`ApiError`]s, which become
//! HTTP 400 with `{"__type", "message"}`, the shape the AWS SDKs read error codes from.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::{Body, State, run_command};

/// The JSON protocol's content type.
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// The target prefix of every SSM operation.
const TARGET_PREFIX: &str = "AmazonSSM.";
/// What the double says its agents run.
const AGENT_VERSION: &str = "3.3.1142.0";

/// An SSM error: the code SDKs match on, and its message.
#[derive(Debug)]
pub struct ApiError {
    /// `__type`, such as `InvocationDoesNotExist`.
    pub code: &'static str,
    /// `message`.
    pub message: String,
}

impl ApiError {
    /// An error with `code`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A request that does not have the shape SSM requires.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }
}

/// The result of one operation: its JSON answer, or an error.
pub type Answer = Result<Value, ApiError>;

/// Answers one `POST /`.
pub async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let answer = match req.into_body().collect().await {
        Err(e) => Err(ApiError::new(
            "SerializationException",
            format!("cannot read the request body: {e}"),
        )),
        Ok(body) => match target.strip_prefix(TARGET_PREFIX) {
            None => Err(ApiError::new(
                "UnknownOperationException",
                format!("X-Amz-Target `{target}` is not `{TARGET_PREFIX}<Operation>`"),
            )),
            Some(op) => match parse(&body.to_bytes()) {
                Ok(input) => {
                    tracing::info!(op, "request");
                    dispatch(state, op, &input).await
                }
                Err(e) => Err(e),
            },
        },
    };
    respond(answer)
}

/// One arm per operation the double implements.
async fn dispatch(state: &State, op: &str, input: &Value) -> Answer {
    match op {
        "DescribeInstanceInformation" => describe_instance_information(state, input),
        "SendCommand" => run_command::send_command(state, input),
        "GetCommandInvocation" => run_command::get_command_invocation(state, input),
        "ListCommands" => run_command::list_commands(state, input),
        "ListCommandInvocations" => run_command::list_command_invocations(state, input),
        "StartSession" => state.sessions.start(input),
        "ResumeSession" => state.sessions.resume(input),
        "TerminateSession" => state.sessions.terminate(input),
        other => Err(ApiError::new(
            "UnsupportedOperation",
            format!("the SSM test double does not implement {other}"),
        )),
    }
}

fn parse(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new("SerializationException", format!("invalid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::new(
            "SerializationException",
            "the request body is not a JSON object",
        ));
    }
    Ok(value)
}

fn respond(answer: Answer) -> Response<Body> {
    let (status, body) = match answer {
        Ok(value) => (StatusCode::OK, value),
        Err(e) => {
            tracing::info!(code = e.code, message = %e.message, "error answer");
            (
                StatusCode::BAD_REQUEST,
                json!({ "__type": e.code, "message": e.message }),
            )
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(CONTENT_TYPE),
    );
    if let Ok(id) = uuid::Uuid::new_v4().to_string().parse() {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

/// The strings in `input[key]` (an array of strings), empty when absent.
pub fn strings(input: &Value, key: &str) -> Vec<String> {
    input
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Seconds since the epoch, as the JSON protocol sends timestamps.
pub fn epoch_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Agent status for the instances asked for, in either filter form:
/// `InstanceInformationFilterList` (`key`/`valueSet`) or `Filters` (`Key`/`Values`).
fn describe_instance_information(state: &State, input: &Value) -> Answer {
    let mut ids: Vec<String> = Vec::new();
    let lists = [
        ("InstanceInformationFilterList", "key", "valueSet"),
        ("Filters", "Key", "Values"),
    ];
    for (list, key, values) in lists {
        for filter in input
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match filter.get(key).and_then(Value::as_str) {
                Some("InstanceIds") => ids.extend(strings(filter, values)),
                Some(other) => {
                    return Err(ApiError::new(
                        "InvalidFilterKey",
                        format!("the SSM test double filters only by InstanceIds, not {other}"),
                    ));
                }
                None => return Err(ApiError::validation(format!("a {list} entry has no {key}"))),
            }
        }
    }
    ids.sort();
    ids.dedup();
    let now = epoch_seconds(SystemTime::now());
    let list: Vec<Value> = ids
        .iter()
        .filter(|id| !state.config.unregistered.contains(*id))
        .map(|id| {
            let offline = state.config.offline.contains(id);
            json!({
                "InstanceId": id,
                "PingStatus": if offline { "ConnectionLost" } else { "Online" },
                // A lost agent last pinged a while ago.
                "LastPingDateTime": if offline { now - 600.0 } else { now },
                "AgentVersion": AGENT_VERSION,
                "IsLatestVersion": true,
                "PlatformType": "Linux",
                "PlatformName": "Ubuntu",
                "PlatformVersion": "24.04",
                "ResourceType": "EC2Instance",
                "ComputerName": format!("{id}.lab.internal"),
            })
        })
        .collect();
    Ok(json!({ "InstanceInformationList": list }))
}
