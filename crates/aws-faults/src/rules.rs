//! Which calls fail, and how: rules by service and operation, each with a
//! probability or a count, and the faults as each AWS service reports them.
//!
//! A probabilistic decision is a hash of (seed, operation, resource, attempt), never
//! a shared random stream, so a run is reproducible even when requests arrive
//! concurrently in another order.

use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::call::Call;

/// What happens to a call a rule catches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// The service's own throttling answer (EC2 `RequestLimitExceeded`, S3
    /// `SlowDown`, …); nothing is forwarded.
    Throttle,
    /// The service's documented internal error; nothing is forwarded.
    ServerError,
    /// Route 53's `PriorRequestNotComplete` (400), its other way of saying "slow
    /// down"; throttling for any other service.
    PriorRequestNotComplete,
    /// The connection is dropped before anything is forwarded.
    Reset,
    /// The request is forwarded and takes effect, then the connection is dropped
    /// before the answer: the client cannot know it succeeded.
    Lost,
    /// The answer comes `delay_ms` late.
    Slow,
    /// No answer, ever: only the client's timeout ends the call.
    Stall,
    /// The caller lacks the permission: each service's access-denied answer;
    /// nothing is forwarded.
    Denied,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The service (`ec2`, `iam`, `sts`, `route53`, `s3`, `ssm`); any when absent.
    #[serde(default)]
    pub service: Option<String>,
    /// The operation (`RunInstances`); any when absent.
    #[serde(default)]
    pub operation: Option<String>,
    /// Only calls that change something.
    #[serde(default)]
    pub mutating: bool,
    /// The fault.
    pub fault: Fault,
    /// The share of matching calls it catches, decided per call by hash.
    #[serde(default)]
    pub probability: Option<f64>,
    /// Or: the first `count` matching calls.
    #[serde(default)]
    pub count: Option<u64>,
    /// For `slow`: how late.
    #[serde(default)]
    pub delay_ms: u64,
}

impl Rule {
    /// Whether the rule is about this call at all.
    pub fn matches(&self, call: &Call) -> bool {
        self.service.as_ref().is_none_or(|s| *s == call.service)
            && self.operation.as_ref().is_none_or(|o| *o == call.operation)
            && (!self.mutating || call.mutating)
    }

    /// Parses the flag form `[service[:Operation]]=fault@0.2` or `…=fault#3`, with
    /// `!` before `=` for mutating calls only: `ec2:RunInstances=throttle#2`,
    /// `!=lost@0.05`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (target, action) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}`: expected TARGET=FAULT@P or TARGET=FAULT#N"))?;
        let (target, mutating) = match target.strip_suffix('!').or(target.strip_prefix('!')) {
            Some(t) => (t, true),
            None => (target, false),
        };
        let (service, operation) = match target.split_once(':') {
            Some((s, o)) => (Some(s.to_owned()), Some(o.to_owned())),
            None if target.is_empty() => (None, None),
            None => (Some(target.to_owned()), None),
        };
        let (fault, amount) = action
            .split_once(['@', '#'])
            .ok_or_else(|| format!("`{text}`: say how often, @P (a share) or #N (a count)"))?;
        let fault: Fault = serde_json::from_value(serde_json::Value::String(fault.to_owned()))
            .map_err(|_| format!("`{text}`: unknown fault `{fault}`"))?;
        let mut rule = Rule {
            service,
            operation,
            mutating,
            fault,
            probability: None,
            count: None,
            delay_ms: 2_000,
        };
        if action.contains('@') {
            let p: f64 = amount.parse().map_err(|_| format!("`{text}`: bad share"))?;
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("`{text}`: a share is between 0 and 1"));
            }
            rule.probability = Some(p);
        } else {
            rule.count = Some(amount.parse().map_err(|_| format!("`{text}`: bad count"))?);
        }
        Ok(rule)
    }
}

/// A number in [0, 1) from (seed, rule, operation, resource, attempt), the same on
/// every run of the same build. Each rule draws its own, so rules of 7% each add up.
pub fn draw(seed: u64, rule: usize, call: &Call, attempt: u64) -> f64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        seed,
        rule,
        &call.service,
        &call.operation,
        call.resource,
        attempt,
    )
        .hash(&mut h);
    // The top 53 bits, as a double in [0, 1).
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// An EC2 error document, as its query protocol writes one.
pub fn ec2_error(code: &str, message: &str, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
    )
}

/// The status, content type and body with which `service` refuses a caller without
/// the permission: EC2's `UnauthorizedOperation` (403), the JSON services'
/// `AccessDeniedException` (400), S3's and the query services' `AccessDenied` (403).
pub fn denied_answer(service: &str, request_id: &str) -> (u16, &'static str, String) {
    let message = "User is not authorized to perform this operation";
    match service {
        "ec2" => (
            403,
            "text/xml",
            ec2_error("UnauthorizedOperation", message, request_id),
        ),
        "ssm" | "servicequotas" => (
            400,
            "application/x-amz-json-1.1",
            serde_json::json!({ "__type": "AccessDeniedException", "message": message })
                .to_string(),
        ),
        "s3" => (
            403,
            "application/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>{request_id}</RequestId></Error>"
            ),
        ),
        _ => (
            403,
            "text/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
            ),
        ),
    }
}

/// The HTTP status, content type and body with which `service` reports `fault`
/// (throttling or an internal error), as each service documents it.
pub fn error_answer(service: &str, fault: Fault, request_id: &str) -> (u16, &'static str, String) {
    let throttle = matches!(fault, Fault::Throttle | Fault::PriorRequestNotComplete);
    if fault == Fault::PriorRequestNotComplete && service == "route53" {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>PriorRequestNotComplete</Code><Message>The request was rejected because Route 53 was still processing a prior request.</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        );
        return (400, "text/xml", body);
    }
    match service {
        // EC2's query protocol: <Response><Errors>…; throttling is a 503.
        "ec2" => {
            let (status, code, message) = if throttle {
                (503, "RequestLimitExceeded", "Request limit exceeded.")
            } else {
                (500, "InternalError", "An internal error has occurred.")
            };
            (status, "text/xml", ec2_error(code, message, request_id))
        }
        // S3's REST-XML errors: SlowDown is a 503.
        "s3" => {
            let (status, code, message) = if throttle {
                (503, "SlowDown", "Please reduce your request rate.")
            } else {
                (
                    500,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                )
            };
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
            );
            (status, "application/xml", body)
        }
        // SSM's JSON protocol: the code is `__type`.
        "ssm" => {
            let (status, code, message) = if throttle {
                (400, "ThrottlingException", "Rate exceeded")
            } else {
                (
                    500,
                    "InternalServerError",
                    "An error occurred on the server side.",
                )
            };
            let body = serde_json::json!({ "__type": code, "message": message }).to_string();
            (status, "application/x-amz-json-1.1", body)
        }
        // IAM, STS (query) and Route 53 (REST-XML) share the <ErrorResponse> shape;
        // their throttling is `Throttling`, a 400.
        other => {
            let (status, kind, code, message) = match (other, throttle) {
                (_, true) => (400, "Sender", "Throttling", "Rate exceeded"),
                ("iam", false) => (
                    500,
                    "Receiver",
                    "ServiceFailure",
                    "The request processing has failed because of an unknown error.",
                ),
                ("route53", false) => (
                    500,
                    "Receiver",
                    "InternalFailure",
                    "An internal failure occurred.",
                ),
                (_, false) => (
                    500,
                    "Receiver",
                    "InternalFailure",
                    "An internal failure occurred.",
                ),
            };
            let ns = match other {
                "route53" => " xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"",
                "iam" => " xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"",
                "sts" => " xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"",
                _ => "",
            };
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse{ns}><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
            );
            (status, "text/xml", body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(op: &str, resource: u64) -> Call {
        Call {
            service: "ec2".into(),
            region: "us-east-1".into(),
            operation: op.into(),
            mutating: true,
            resource,
        }
    }

    #[test]
    fn rules_parse_from_flags() {
        let r = Rule::parse("ec2:RunInstances=throttle#2").expect("rule");
        assert_eq!(
            (r.service.as_deref(), r.operation.as_deref()),
            (Some("ec2"), Some("RunInstances"))
        );
        assert_eq!(
            (r.fault, r.count, r.mutating),
            (Fault::Throttle, Some(2), false)
        );
        let r = Rule::parse("!=lost@0.05").expect("rule");
        assert_eq!(
            (r.service, r.fault, r.probability, r.mutating),
            (None, Fault::Lost, Some(0.05), true)
        );
        assert!(
            Rule::parse("ec2=explode@0.1")
                .unwrap_err()
                .contains("unknown fault")
        );
        assert!(
            Rule::parse("ec2=throttle@2")
                .unwrap_err()
                .contains("between 0 and 1")
        );
        assert!(Rule::parse("ec2=throttle").is_err());
    }

    #[test]
    fn draws_are_reproducible_and_spread() {
        let a = draw(7, 0, &call("CreateVpc", 1), 0);
        assert_eq!(
            a,
            draw(7, 0, &call("CreateVpc", 1), 0),
            "same inputs, same draw"
        );
        assert_ne!(
            a,
            draw(7, 0, &call("CreateVpc", 1), 1),
            "a retry draws again"
        );
        assert_ne!(a, draw(8, 0, &call("CreateVpc", 1), 0), "another seed");
        let hits = (0..10_000)
            .filter(|i| draw(1, 0, &call("CreateVpc", *i), 0) < 0.2)
            .count();
        assert!((1_800..2_200).contains(&hits), "about 20%: {hits}");
    }
}
