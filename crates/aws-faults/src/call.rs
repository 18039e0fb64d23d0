//! Which AWS call a request is: its service, its operation, whether it changes
//! anything, and a fingerprint of what it acts on.
//!
//! The service comes from the SigV4 credential scope every SDK request carries. The
//! operation comes from how each service's protocol names it: the `Action` form field
//! (EC2, IAM, STS query protocols), the method and path (Route 53 and S3 REST), or
//! `X-Amz-Target` (SSM's JSON protocol).

use std::hash::{Hash, Hasher};

use hyper::{HeaderMap, Method};

/// One recognised call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `ec2`, `iam`, `sts`, `route53`, `s3`, `ssm`, or what the scope says.
    pub service: String,
    /// The region the request was signed for.
    pub region: String,
    /// The API operation (`RunInstances`, `CreateHostedZone`, `PutObject`, …).
    pub operation: String,
    /// Whether it changes anything (reads are `Describe*`, `List*`, `Get*`, `Head*`).
    pub mutating: bool,
    /// What the call acts on, as a fingerprint of the request's path, query and
    /// body: a retry of the same request has the same one.
    pub resource: u64,
}

impl Call {
    /// `service:Operation`, as rules and statistics name it.
    pub fn name(&self) -> String {
        format!("{}:{}", self.service, self.operation)
    }
}

/// Recognises a request.
pub fn recognise(
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Call {
    let scope = scope(headers);
    let service = scope
        .get(3)
        .cloned()
        .unwrap_or_else(|| "unknown".to_owned());
    let region = scope.get(2).cloned().unwrap_or_default();
    let operation = match service.as_str() {
        "s3" => s3_operation(method, path, query, headers),
        "route53" => route53_operation(method, path),
        _ => target_operation(headers)
            .or_else(|| form_action(body))
            .unwrap_or_else(|| format!("{method} {path}")),
    };
    let mutating = match service.as_str() {
        "s3" | "route53" => !matches!(*method, Method::GET | Method::HEAD),
        _ => !["Describe", "List", "Get"]
            .iter()
            .any(|p| operation.starts_with(p)),
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (path, query, body).hash(&mut h);
    Call {
        service,
        region,
        operation,
        mutating,
        resource: h.finish(),
    }
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=AKID/date/REGION/SERVICE/aws4_request`.
fn scope(headers: &HeaderMap) -> Vec<String> {
    let credential = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|c| c.split([',', ' ']).next());
    credential
        .map(|c| c.split('/').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// SSM's JSON protocol: `X-Amz-Target: AmazonSSM.SendCommand`.
fn target_operation(headers: &HeaderMap) -> Option<String> {
    let target = headers.get("x-amz-target")?.to_str().ok()?;
    target.rsplit('.').next().map(str::to_owned)
}

/// The query protocols: `Action=RunInstances&...` in a form body.
fn form_action(body: &[u8]) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
}

fn route53_operation(method: &Method, path: &str) -> String {
    let parts: Vec<&str> = path
        .trim_start_matches("/2013-04-01/")
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let op = match (method.as_str(), parts.as_slice()) {
        ("POST", ["hostedzone"]) => "CreateHostedZone",
        ("GET", ["hostedzone"]) => "ListHostedZones",
        ("GET", ["hostedzone", _]) => "GetHostedZone",
        ("DELETE", ["hostedzone", _]) => "DeleteHostedZone",
        ("POST", ["hostedzone", _, "rrset"]) => "ChangeResourceRecordSets",
        ("GET", ["hostedzone", _, "rrset"]) => "ListResourceRecordSets",
        ("POST", ["hostedzone", _, "associatevpc"]) => "AssociateVPCWithHostedZone",
        ("POST", ["hostedzone", _, "disassociatevpc"]) => "DisassociateVPCFromHostedZone",
        ("POST", ["tags", "hostedzone", _]) => "ChangeTagsForResource",
        ("GET", ["tags", "hostedzone", _]) => "ListTagsForResource",
        ("GET", ["change", _]) => "GetChange",
        _ => return format!("{method} {path}"),
    };
    op.to_owned()
}

fn s3_operation(method: &Method, path: &str, query: &str, headers: &HeaderMap) -> String {
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(2, '/').collect();
    let has = |key: &str| form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == key);
    let object = segments.len() == 2 && !segments[1].is_empty();
    let bucket = !segments[0].is_empty();
    let sub = [
        "tagging",
        "policy",
        "encryption",
        "publicAccessBlock",
        "versioning",
        "delete",
    ]
    .into_iter()
    .find(|k| has(k));
    let op = match (method.as_str(), bucket, object, sub) {
        ("GET", false, _, _) => "ListBuckets",
        ("PUT", true, false, None) => "CreateBucket",
        ("DELETE", true, false, None) => "DeleteBucket",
        ("HEAD", true, false, None) => "HeadBucket",
        ("GET", true, false, None) => "ListObjectsV2",
        ("POST", true, false, Some("delete")) => "DeleteObjects",
        ("PUT", true, false, Some("tagging")) => "PutBucketTagging",
        ("GET", true, false, Some("tagging")) => "GetBucketTagging",
        ("PUT", true, false, Some("policy")) => "PutBucketPolicy",
        ("GET", true, false, Some("policy")) => "GetBucketPolicy",
        ("PUT", true, false, Some("encryption")) => "PutBucketEncryption",
        ("GET", true, false, Some("encryption")) => "GetBucketEncryption",
        ("PUT", true, false, Some("publicAccessBlock")) => "PutPublicAccessBlock",
        ("GET", true, false, Some("publicAccessBlock")) => "GetPublicAccessBlock",
        ("PUT", true, false, Some("versioning")) => "PutBucketVersioning",
        ("GET", true, false, Some("versioning")) => "GetBucketVersioning",
        ("PUT", true, true, _) if headers.contains_key("x-amz-copy-source") => "CopyObject",
        ("PUT", true, true, _) => "PutObject",
        ("GET", true, true, _) => "GetObject",
        ("HEAD", true, true, _) => "HeadObject",
        ("DELETE", true, true, _) => "DeleteObject",
        _ => return format!("{method} {path}"),
    };
    op.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(service: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=test/20261205/eu-north-1/{service}/aws4_request, SignedHeaders=host, Signature=00"
        );
        h.insert(hyper::header::AUTHORIZATION, auth.parse().expect("header"));
        h
    }

    #[test]
    fn each_protocol_names_its_operation() {
        let ec2 = recognise(
            &Method::POST,
            "/",
            "",
            &signed("ec2"),
            b"Action=RunInstances&Version=2016-11-15",
        );
        assert_eq!(
            (ec2.name(), ec2.mutating),
            ("ec2:RunInstances".into(), true)
        );
        let iam = recognise(&Method::POST, "/", "", &signed("iam"), b"Action=ListRoles");
        assert_eq!((iam.name(), iam.mutating), ("iam:ListRoles".into(), false));
        let zone = recognise(
            &Method::POST,
            "/2013-04-01/hostedzone",
            "",
            &signed("route53"),
            b"<x/>",
        );
        assert_eq!(zone.name(), "route53:CreateHostedZone");
        let rrset = recognise(
            &Method::POST,
            "/2013-04-01/hostedzone/Z1/rrset",
            "",
            &signed("route53"),
            b"",
        );
        assert_eq!(rrset.name(), "route53:ChangeResourceRecordSets");
        let put = recognise(
            &Method::PUT,
            "/b/captures/a.pcap",
            "x-id=PutObject",
            &signed("s3"),
            b"",
        );
        assert_eq!((put.name(), put.mutating), ("s3:PutObject".into(), true));
        let policy = recognise(&Method::GET, "/b", "policy=", &signed("s3"), b"");
        assert_eq!(
            (policy.name(), policy.mutating),
            ("s3:GetBucketPolicy".into(), false)
        );
        let mut ssm = signed("ssm");
        ssm.insert(
            "x-amz-target",
            "AmazonSSM.SendCommand".parse().expect("header"),
        );
        assert_eq!(
            recognise(&Method::POST, "/", "", &ssm, b"{}").name(),
            "ssm:SendCommand"
        );
    }

    #[test]
    fn the_same_request_is_the_same_resource() {
        let h = signed("ec2");
        let a = recognise(
            &Method::POST,
            "/",
            "",
            &h,
            b"Action=CreateVpc&CidrBlock=10.0.0.0/16",
        );
        let b = recognise(
            &Method::POST,
            "/",
            "",
            &h,
            b"Action=CreateVpc&CidrBlock=10.0.0.0/16",
        );
        let c = recognise(
            &Method::POST,
            "/",
            "",
            &h,
            b"Action=CreateVpc&CidrBlock=10.1.0.0/16",
        );
        assert_eq!(a.resource, b.resource);
        assert_ne!(a.resource, c.resource);
    }
}
