//! AWS's eventual consistency, which LocalStack lacks: for a while after it is made,
//! a new instance, instance profile or security group is not yet visible where AWS
//! documents that it may not be.
//!
//! - A new instance id answers `InvalidInstanceID.NotFound` to EC2 calls that name it.
//! - A new instance profile is refused by `RunInstances` and the association calls
//!   with `InvalidParameterValue` ("Invalid IAM Instance Profile name").
//! - A new group answers `InvalidGroup.NotFound` to EC2 calls that name it.

use std::time::{Duration, Instant};

use crate::call::Call;

/// How long each kind of new thing stays invisible (zero: never).
#[derive(Debug, Clone, Copy, Default)]
pub struct Windows {
    /// New instances, to calls naming their id.
    pub instance: Duration,
    /// New instance profiles, to EC2.
    pub profile: Duration,
    /// New security groups, to calls naming their id.
    pub group: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fresh {
    Instance,
    Profile,
    Group,
}

/// What was made recently, and when.
#[derive(Debug, Default)]
pub struct Recent {
    made: Vec<(Fresh, String, Instant)>,
}

impl Recent {
    /// Notes what a successful call made: ids from its answer, or the profile's
    /// name from its request.
    pub fn made(&mut self, call: &Call, request: &[u8], answer: &[u8], now: Instant) {
        let answer = String::from_utf8_lossy(answer);
        match (call.service.as_str(), call.operation.as_str()) {
            ("ec2", "RunInstances") => {
                for id in elements(&answer, "instanceId") {
                    self.made.push((Fresh::Instance, id, now));
                }
            }
            ("ec2", "CreateSecurityGroup") => {
                for id in elements(&answer, "groupId") {
                    self.made.push((Fresh::Group, id, now));
                }
            }
            ("iam", "CreateInstanceProfile") => {
                if let Some((_, name)) =
                    form_urlencoded::parse(request).find(|(k, _)| k == "InstanceProfileName")
                {
                    self.made.push((Fresh::Profile, name.into_owned(), now));
                }
            }
            _ => {}
        }
    }

    /// The error AWS might answer now: (code, message), if the call names something
    /// still too new to be seen.
    pub fn unseen(
        &self,
        windows: &Windows,
        call: &Call,
        request: &[u8],
        now: Instant,
    ) -> Option<(&'static str, String)> {
        if call.service != "ec2" {
            return None;
        }
        let params: Vec<(String, String)> = form_urlencoded::parse(request)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let young = |kind: Fresh, window: Duration, value: &str| {
            !window.is_zero()
                && self
                    .made
                    .iter()
                    .any(|(k, v, at)| *k == kind && v == value && now.duration_since(*at) < window)
        };
        for (key, value) in &params {
            if key.starts_with("InstanceId") && young(Fresh::Instance, windows.instance, value) {
                let message = format!("The instance ID '{value}' does not exist");
                return Some(("InvalidInstanceID.NotFound", message));
            }
            let names_group = key.starts_with("GroupId")
                || key.starts_with("SecurityGroupId")
                || key.ends_with(".GroupId");
            if names_group && young(Fresh::Group, windows.group, value) {
                let message = format!("The security group '{value}' does not exist");
                return Some(("InvalidGroup.NotFound", message));
            }
            if key == "IamInstanceProfile.Name" && young(Fresh::Profile, windows.profile, value) {
                let message = format!(
                    "Value ({value}) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name"
                );
                return Some(("InvalidParameterValue", message));
            }
        }
        None
    }
}

/// The text of every `<name>…</name>` element.
fn elements(xml: &str, name: &str) -> Vec<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(after[..end].to_owned());
        rest = &after[end + close.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec2(op: &str) -> Call {
        Call {
            service: "ec2".into(),
            region: "us-east-1".into(),
            operation: op.into(),
            mutating: true,
            resource: 0,
        }
    }

    #[test]
    fn a_new_instance_is_unseen_for_its_window_only() {
        let windows = Windows {
            instance: Duration::from_millis(500),
            ..Windows::default()
        };
        let t0 = Instant::now();
        let mut recent = Recent::default();
        let answer = b"<RunInstancesResponse><instancesSet><item><instanceId>i-0abc</instanceId></item></instancesSet></RunInstancesResponse>";
        recent.made(&ec2("RunInstances"), b"", answer, t0);
        let describe = b"Action=DescribeInstances&InstanceId.1=i-0abc";
        let early = recent.unseen(&windows, &ec2("DescribeInstances"), describe, t0);
        assert_eq!(early.map(|e| e.0), Some("InvalidInstanceID.NotFound"));
        let late = t0 + Duration::from_millis(600);
        assert!(
            recent
                .unseen(&windows, &ec2("DescribeInstances"), describe, late)
                .is_none()
        );
        let other = b"Action=DescribeInstances&InstanceId.1=i-0other";
        assert!(
            recent
                .unseen(&windows, &ec2("DescribeInstances"), other, t0)
                .is_none()
        );
    }

    #[test]
    fn elements_are_read_in_order() {
        assert_eq!(
            elements(
                "<a><groupId>sg-1</groupId><groupId>sg-2</groupId></a>",
                "groupId"
            ),
            ["sg-1", "sg-2"]
        );
    }
}
