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
/// The availability zone id a subnet was placed in, as the plan chose it.
pub const TAG_ZONE: &str = "labctl:zone";
/// Whether it was launched with a public IPv4 address.
pub const TAG_PUBLIC_IP: &str = "labctl:public-ip";

/// The name of the role's inline policy that grants the instances their bucket.
pub const INLINE_POLICY: &str = "labctl-bucket";
/// The name of the role's inline policy that grants the lab's DynamoDB tables.
pub const DYNAMODB_POLICY: &str = "labctl-dynamodb";

/// Prefix of the keys labnet binaries are uploaded under.
pub const LABNET_KEY_PREFIX: &str = "artifacts/labnet/";
/// Prefix of the captures instances upload.
pub const CAPTURES_PREFIX: &str = "captures/";
/// Prefix of the readiness reports instances write.
pub const REPORTS_PREFIX: &str = "reports/";
/// Prefix of the record of which instance id had which name, written by labctl
/// alone: instances may not write here, so a name read from it is not an
/// instance's claim.
pub const INSTANCES_PREFIX: &str = "instances/";

/// The IAM policy variable that names the writer of a key. For an instance role's
/// credentials AWS resolves it to `<role id>:<instance id>`, which no process on an
/// instance can choose, so each instance writes only under its own folder.
pub const WRITER_VARIABLE: &str = "${aws:userid}";

/// Where an instance writes its captures: `captures/<writer>/`.
pub fn captures_folder(writer: &str) -> String {
    format!("{CAPTURES_PREFIX}{writer}/")
}

/// Where an instance writes its readiness report: `reports/<writer>.json`.
pub fn report_key(writer: &str) -> String {
    format!("{REPORTS_PREFIX}{writer}.json")
}

/// Where labctl records an instance's name: `instances/<instance id>.json`.
pub fn instance_record_key(instance_id: &str) -> String {
    format!("{INSTANCES_PREFIX}{instance_id}.json")
}

/// A writer, as AWS names an instance role's session: `<role id>:<instance id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writer<'a> {
    /// The role's unique id (`AROA…`).
    pub role_id: &'a str,
    /// The instance's id (`i-…`).
    pub instance_id: &'a str,
}

/// The writer a key's folder names, if it has the exact shape AWS gives an
/// instance role's `aws:userid`. Anything else (a name folder of releases that keyed
/// by name, a stray key) is not a writer.
pub fn writer(segment: &str) -> Option<Writer<'_>> {
    let (role_id, instance_id) = segment.split_once(':')?;
    let role_ok = (16..=128).contains(&role_id.len())
        && role_id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    is_instance_id(instance_id)
        .then_some(())
        .filter(|()| role_ok)
        .map(|()| Writer {
            role_id,
            instance_id,
        })
}

/// `i-` and 8 or 17 lowercase hex digits, as EC2 makes them.
pub fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The IAM path that marks a lab's roles and instance profiles. IAM is global, and
/// so is a lab's name: the region in the path tells where the lab lives.
pub fn iam_path(lab: &str, region: &str) -> String {
    format!("/labctl/{lab}/{region}/")
}

/// The region a lab's IAM path names, for a path of that lab (`None` otherwise).
pub fn iam_path_region<'p>(path: &'p str, lab: &str) -> Option<&'p str> {
    path.strip_prefix("/labctl/")?
        .strip_prefix(lab)?
        .strip_prefix('/')?
        .strip_suffix('/')
        .filter(|r| !r.is_empty() && !r.contains('/'))
}

/// The prefix of the caller references of the lab's hosted zones in `region`.
pub fn caller_reference_prefix(lab: &str, region: &str) -> String {
    format!("labctl:{lab}:{region}:")
}

/// Whether a zone's caller reference marks it as the lab's in `region`. Releases
/// before regions were in the reference wrote `labctl:<lab>:<millis>`; such a zone is
/// the lab's if it is associated with a VPC in `region` (`zone_regions`), since it
/// can never be given the region afterwards.
pub fn zone_is_labs(reference: &str, lab: &str, region: &str, zone_regions: &[&str]) -> bool {
    if reference.starts_with(&caller_reference_prefix(lab, region)) {
        return true;
    }
    let legacy = reference
        .strip_prefix(&format!("labctl:{lab}:"))
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()));
    legacy && zone_regions.contains(&region)
}

/// The capture bucket's name when the topology says `auto`: only this account and
/// this lab derive it.
pub fn auto_bucket_name(lab: &str, account: &str, region: &str) -> String {
    format!("{lab}-captures-{account}-{region}")
}

/// The object key of a labnet binary: named by its content, so an upload never
/// overwrites a binary an instance may still be fetching.
pub fn labnet_key(sha256: &str) -> String {
    format!("{LABNET_KEY_PREFIX}{sha256}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_iam_path_names_its_labs_region() {
        let path = iam_path("walk1", "eu-north-1");
        assert_eq!(iam_path_region(&path, "walk1"), Some("eu-north-1"));
        assert_eq!(iam_path_region(&path, "walk"), None, "another lab's prefix");
        assert_eq!(iam_path_region("/labctl/walk1/", "walk1"), None);
        assert_eq!(iam_path_region("/labctl/walk1/a/b/", "walk1"), None);
        assert_eq!(iam_path_region("/other/walk1/eu-north-1/", "walk1"), None);
    }

    #[test]
    fn writers_are_exactly_what_aws_names_an_instance_roles_session() {
        let w = writer("AROAEXAMPLEID1234567:i-0123456789abcdef0").expect("writer");
        assert_eq!(w.role_id, "AROAEXAMPLEID1234567");
        assert_eq!(w.instance_id, "i-0123456789abcdef0");
        assert!(
            writer("AROAEXAMPLEID1234567:i-01234567").is_some(),
            "short ids"
        );
        for bad in [
            "server",
            "client-1",
            "AROAEXAMPLEID1234567",
            "AROAEXAMPLEID1234567:server",
            "AROAEXAMPLEID1234567:i-0123456789ABCDEF0",
            "AROAEXAMPLEID1234567:i-012345678",
            "aroaexampleid1234567:i-0123456789abcdef0",
            "AROA:i-0123456789abcdef0",
            ":i-0123456789abcdef0",
            "AROAEXAMPLEID1234567:i-0123456789abcdef0:x",
            "../AROAEXAMPLEID1234567:i-0123456789abcdef0",
        ] {
            assert_eq!(writer(bad), None, "{bad}");
        }
        assert_eq!(
            report_key("AROAEXAMPLEID1234567:i-0123456789abcdef0"),
            "reports/AROAEXAMPLEID1234567:i-0123456789abcdef0.json"
        );
    }

    #[test]
    fn zones_of_this_and_earlier_releases_are_recognised_by_region() {
        let here = "eu-north-1";
        let new = format!("{}1733400000000", caller_reference_prefix("walk1", here));
        assert!(zone_is_labs(&new, "walk1", here, &[]));
        assert!(!zone_is_labs(&new, "walk1", "us-east-1", &[here]));
        assert!(!zone_is_labs(&new, "walk", here, &[here]), "another lab");
        // Written by the release before: no region in it, so the VPC's region decides.
        let old = "labctl:walk1:1733400000000";
        assert!(zone_is_labs(old, "walk1", here, &[here]));
        assert!(!zone_is_labs(old, "walk1", here, &["us-east-1"]));
        assert!(!zone_is_labs("labctl:walk1:", "walk1", here, &[here]));
        assert!(!zone_is_labs("labctl:walk10:1", "walk1", here, &[here]));
    }
}
