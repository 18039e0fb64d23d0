//! Ownership marks: how a lab's resources are known to be its own, in one place.
//!
//! Every kind is claimed through these and nothing else: the tags on EC2 resources,
//! the hosted zone and the bucket; the IAM path of the role and the profile; the
//! zone's caller reference; the bucket's name rule; and the key prefixes the lab
//! writes under in its bucket.

/// Tag holding the lab name on every resource the lab owns.
pub const TAG_LAB: &str = "labctl:lab";
/// Tag holding the resource's logical address.
pub const TAG_ADDRESS: &str = "labctl:address";

/// Instance tags that record how an instance was launched (what its user-data and
/// launch reference were), so a later plan can compare them.
pub const TAG_USER_DATA: &str = "labctl:user-data";
/// The services in the instance's user-data.
pub const TAG_SERVICES: &str = "labctl:services";
/// The lifetime guard's minutes.
pub const TAG_LIFETIME: &str = "labctl:lifetime-minutes";
/// The image reference the instance was launched from.
pub const TAG_IMAGE: &str = "labctl:image";
/// Whether it was launched with a public IPv4 address.
pub const TAG_PUBLIC_IP: &str = "labctl:public-ip";

/// The name of the role's inline policy that grants the instances their bucket.
pub const INLINE_POLICY: &str = "labctl-bucket";

/// Prefix of the keys labnet binaries are uploaded under.
pub const LABNET_KEY_PREFIX: &str = "artifacts/labnet/";
/// Prefix of the captures instances upload.
pub const CAPTURES_PREFIX: &str = "captures/";
/// Prefix of the readiness reports instances write.
pub const REPORTS_PREFIX: &str = "reports/";

/// The IAM path that marks a lab's roles and instance profiles. IAM is global; the
/// region in the path keeps a same-named lab in another region from adopting them.
pub fn iam_path(lab: &str, region: &str) -> String {
    format!("/labctl/{lab}/{region}/")
}

/// The prefix of the lab's hosted zone caller references.
pub fn caller_reference_prefix(lab: &str) -> String {
    format!("labctl:{lab}:")
}

/// The capture bucket's name when the topology says `auto`: only this account and
/// this lab derive it.
pub fn auto_bucket_name(lab: &str, account: &str, region: &str) -> String {
    format!("{lab}-captures-{account}-{region}")
}

/// Whether `name` is a bucket name the `auto` rule gives this lab in `region`.
pub fn is_auto_bucket_name(name: &str, lab: &str, region: &str) -> bool {
    name.starts_with(&format!("{lab}-captures-")) && name.ends_with(&format!("-{region}"))
}

/// The object key of a labnet binary: named by its content, so an upload never
/// overwrites a binary an instance may still be fetching.
pub fn labnet_key(sha256: &str) -> String {
    format!("{LABNET_KEY_PREFIX}{sha256}")
}
