//! The capture bucket: private, encrypted, TLS only, versioned, tagged as the lab's.
//! Every version is deleted before the bucket is; a renamed bucket's captures, reports
//! and instance records move to the new one first, every version of them.

use anyhow::bail;
use labctl_core::marks::{CAPTURES_PREFIX, INSTANCES_PREFIX, REPORTS_PREFIX, TAG_ADDRESS, TAG_LAB};
use labctl_core::plan::Found;
use labctl_core::{Address, Kind, Spec};
use serde_json::json;

use crate::aws::apply::{Applier, GONE, gone};
use crate::aws::observe::{Expected, found};
use crate::aws::{Absent, Clients, aws};

/// The lab's buckets: exactly the name it wants, and the name its role's policy
/// grants (the old one, after a rename). Each is the lab's only with its tag; an
/// untagged one is adopted only under the exact `auto` name, which only this account
/// and lab derive (a crash between CreateBucket and PutBucketTagging).
pub async fn observe(
    c: &Clients,
    expected: &Expected<'_>,
    granted: &[&str],
) -> anyhow::Result<Vec<Found>> {
    let listed =
        c.s3.list_buckets()
            .send()
            .await
            .map_err(aws("S3 ListBuckets"))?;
    let mut candidates: Vec<String> = listed
        .buckets()
        .iter()
        .filter_map(|b| b.name())
        .filter(|n| Some(*n) == expected.bucket || granted.contains(n))
        .map(str::to_owned)
        .collect();
    candidates.sort();
    candidates.dedup();
    let mut out = Vec::new();
    for name in candidates {
        let tags =
            c.s3.get_bucket_tagging()
                .bucket(&name)
                .send()
                .await
                .map_err(aws(format!("S3 GetBucketTagging {name}")))
                .absent_if(&["NoSuchTagSet", "NoSuchTagSetError"])?
                .map(|t| t.tag_set().to_vec())
                .unwrap_or_default();
        let owned = tags
            .iter()
            .any(|t| t.key() == TAG_LAB && t.value() == expected.lab);
        // Our own deterministic name with no tags at all: a crash between CreateBucket
        // and PutBucketTagging. It is ours (S3 names are global; only this account and
        // this lab derive it), so it is adopted and tagged.
        let crashed =
            tags.is_empty() && expected.bucket_is_auto && Some(name.as_str()) == expected.bucket;
        if !owned && !crashed {
            if Some(name.as_str()) == expected.bucket {
                bail!(
                    "bucket {name} already exists but is not owned by lab `{}`; choose another \
                     `captures.bucket` (labctl never adopts it)",
                    expected.lab
                );
            }
            continue;
        }
        let spec = settings(c, &name, owned).await?;
        out.push(found(
            Address::new(Kind::Bucket, "captures"),
            &name,
            &name,
            spec,
        ));
        out.extend(super::artifact::observe(c, &name, expected.labnet_key).await?);
    }
    Ok(out)
}

async fn settings(c: &Clients, name: &str, tagged: bool) -> anyhow::Result<Spec> {
    let private =
        c.s3.get_public_access_block()
            .bucket(name)
            .send()
            .await
            .map_err(aws(format!("S3 GetPublicAccessBlock {name}")))
            .absent_if(&["NoSuchPublicAccessBlockConfiguration"])?
            .and_then(|out| out.public_access_block_configuration().cloned())
            .is_some_and(|p| {
                p.block_public_acls() == Some(true)
                    && p.ignore_public_acls() == Some(true)
                    && p.block_public_policy() == Some(true)
                    && p.restrict_public_buckets() == Some(true)
            });
    let encrypted =
        c.s3.get_bucket_encryption()
            .bucket(name)
            .send()
            .await
            .map_err(aws(format!("S3 GetBucketEncryption {name}")))
            .absent_if(&["ServerSideEncryptionConfigurationNotFoundError"])?
            .and_then(|out| out.server_side_encryption_configuration().cloned())
            .is_some_and(|c| !c.rules().is_empty());
    let tls_only =
        c.s3.get_bucket_policy()
            .bucket(name)
            .send()
            .await
            .map_err(aws(format!("S3 GetBucketPolicy {name}")))
            .absent_if(&["NoSuchBucketPolicy"])?
            .and_then(|out| out.policy().map(str::to_owned))
            .is_some_and(|p| crate::aws::same_document(&p, &tls_only_policy(name)));
    let versioned =
        c.s3.get_bucket_versioning()
            .bucket(name)
            .send()
            .await
            .map_err(aws(format!("S3 GetBucketVersioning {name}")))?
            .status()
            == Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled);
    Ok(Spec::Bucket {
        tagged,
        private,
        encrypted,
        tls_only,
        versioned,
    })
}

impl Applier<'_> {
    pub(in crate::aws) async fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        let mut req = self.c.s3.create_bucket().bucket(name);
        // us-east-1 takes no location constraint; every other region requires one.
        if self.c.region != "us-east-1" {
            req = req.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                        self.c.region.as_str(),
                    ))
                    .build(),
            );
        }
        match req
            .send()
            .await
            .map_err(aws(format!("S3 CreateBucket {name}")))
        {
            Ok(_) => Ok(()),
            Err(e) if e.is(&["BucketAlreadyOwnedByYou"]) => Ok(()),
            Err(e) if e.is(&["BucketAlreadyExists"]) => bail!(
                "bucket name {name} is taken by another AWS account; set `captures.bucket` to another name"
            ),
            Err(e) => Err(e.into()),
        }
    }

    /// Tags, public access block, default encryption, the TLS-only policy and
    /// versioning.
    pub(in crate::aws) async fn bucket_settings(
        &self,
        a: &Address,
        name: &str,
    ) -> anyhow::Result<()> {
        use aws_sdk_s3::types::{
            PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
            ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag as S3Tag, Tagging,
        };
        let s3 = &self.c.s3;
        let tagging = Tagging::builder()
            .tag_set(
                S3Tag::builder()
                    .key(TAG_LAB)
                    .value(self.inputs.lab)
                    .build()?,
            )
            .tag_set(
                S3Tag::builder()
                    .key(TAG_ADDRESS)
                    .value(a.to_string())
                    .build()?,
            )
            .build()?;
        s3.put_bucket_tagging()
            .bucket(name)
            .tagging(tagging)
            .send()
            .await
            .map_err(aws("S3 PutBucketTagging"))?;
        let block = PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .ignore_public_acls(true)
            .block_public_policy(true)
            .restrict_public_buckets(true)
            .build();
        s3.put_public_access_block()
            .bucket(name)
            .public_access_block_configuration(block)
            .send()
            .await
            .map_err(aws("S3 PutPublicAccessBlock"))?;
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::Aes256)
                    .build()?,
            )
            .bucket_key_enabled(true)
            .build();
        s3.put_bucket_encryption()
            .bucket(name)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(rule)
                    .build()?,
            )
            .send()
            .await
            .map_err(aws("S3 PutBucketEncryption"))?;
        s3.put_bucket_policy()
            .bucket(name)
            .policy(tls_only_policy(name).to_string())
            .send()
            .await
            .map_err(aws("S3 PutBucketPolicy"))?;
        s3.put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .map_err(aws("S3 PutBucketVersioning"))?;
        Ok(())
    }

    /// Copies what the lab keeps in its bucket (captures, reports, instance records)
    /// from `from` to `to`, every version of every key, then proves it arrived: each
    /// version in `from` has a copy in `to` with the same size and the same SHA-256
    /// (S3's stored checksum) or, for an object stored without one, the same MD5 ETag.
    /// Versions are copied oldest first, so the newest stays current, and a key whose
    /// newest version is a delete marker gets one too. A version already in `to` is
    /// not copied again, so a run cut short resumes where it stopped.
    pub(in crate::aws) async fn carry_over(&self, from: &str, to: &str) -> anyhow::Result<()> {
        use aws_sdk_s3::types::ChecksumAlgorithm;
        let s3 = &self.c.s3;
        let mut copied = 0;
        for prefix in CARRIED_PREFIXES {
            let source = by_key(versions(self.c, from, prefix).await?);
            let mut present = by_key(versions(self.c, to, prefix).await?);
            for (key, history) in &source {
                let there = present.remove(key).unwrap_or_default();
                let mut have = Vec::new();
                for v in there.iter().filter(|v| !v.delete_marker) {
                    have.push(self.fingerprint(to, key, v).await?);
                }
                // Oldest first: ListObjectVersions gives the newest first.
                for v in history.iter().rev() {
                    if v.delete_marker {
                        continue;
                    }
                    let print = self.fingerprint(from, key, v).await?;
                    if let Some(i) = have.iter().position(|h| *h == print) {
                        have.swap_remove(i);
                        continue;
                    }
                    s3.copy_object()
                        .bucket(to)
                        .key(key)
                        .copy_source(copy_source(from, key, v.version_id.as_deref()))
                        .checksum_algorithm(ChecksumAlgorithm::Sha256)
                        .send()
                        .await
                        .map_err(aws(format!("S3 CopyObject {from}/{key} to {to}")))?;
                    copied += 1;
                }
                self.verify_carried(from, to, key, history).await?;
            }
        }
        tracing::info!(
            from,
            to,
            copied,
            "carried captures, reports and records over"
        );
        Ok(())
    }

    /// Proves every version of `key` in `from` has its copy in `to`, and that both
    /// agree on whether the key is current or deleted (and, when current, on its
    /// content). Copies the newest once more, or marks the key deleted, when a run
    /// cut short left `to` disagreeing.
    async fn verify_carried(
        &self,
        from: &str,
        to: &str,
        key: &str,
        history: &[Version],
    ) -> anyhow::Result<()> {
        let there: Vec<Version> = versions(self.c, to, key)
            .await?
            .into_iter()
            .filter(|v| v.key == key)
            .collect();
        let mut have = Vec::new();
        for v in there.iter().filter(|v| !v.delete_marker) {
            have.push(self.fingerprint(to, key, v).await?);
        }
        for v in history.iter().filter(|v| !v.delete_marker) {
            let print = self.fingerprint(from, key, v).await?;
            match have.iter().position(|h| *h == print) {
                Some(i) => {
                    have.swap_remove(i);
                }
                None => bail!(
                    "s3://{to}/{key} lacks a copy of version {} of s3://{from}/{key} after the \
                     copy; s3://{from} is kept",
                    v.version_id.as_deref().unwrap_or("null")
                ),
            }
        }
        let (Some(newest), Some(current)) = (history.first(), there.first()) else {
            return Ok(());
        };
        let s3 = &self.c.s3;
        if newest.delete_marker && !current.delete_marker {
            s3.delete_object()
                .bucket(to)
                .key(key)
                .send()
                .await
                .map_err(aws(format!("S3 DeleteObject {to}/{key}")))?;
        } else if !newest.delete_marker
            && (current.delete_marker
                || self.fingerprint(to, key, current).await?
                    != self.fingerprint(from, key, newest).await?)
        {
            s3.copy_object()
                .bucket(to)
                .key(key)
                .copy_source(copy_source(from, key, newest.version_id.as_deref()))
                .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
                .send()
                .await
                .map_err(aws(format!("S3 CopyObject {from}/{key} to {to}")))?;
        }
        Ok(())
    }

    /// What makes two versions the same content: the size and S3's stored SHA-256,
    /// or the MD5 ETag of a version stored without one.
    async fn fingerprint(
        &self,
        bucket: &str,
        key: &str,
        v: &Version,
    ) -> anyhow::Result<Fingerprint> {
        let head = self
            .c
            .s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(v.version_id.clone())
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .map_err(aws(format!("S3 HeadObject {bucket}/{key}")))?;
        let print = Fingerprint {
            size: head.content_length().unwrap_or(v.size),
            sha256: head
                .checksum_sha256()
                .filter(|s| !s.contains('-'))
                .map(str::to_owned),
            md5: head
                .e_tag()
                .filter(|e| !e.contains('-'))
                .map(|e| e.trim_matches('"').to_owned()),
        };
        if print.sha256.is_none() && print.md5.is_none() {
            bail!(
                "s3://{bucket}/{key} has neither a SHA-256 nor a single-part ETag to verify \
                 a copy against; s3://{bucket} is kept"
            );
        }
        Ok(print)
    }

    /// Deletes one version (or delete marker). A failure is success if the version is
    /// gone all the same: a retry after a lost answer asks for what the first attempt
    /// already deleted, and S3 and emulators answer that differently.
    pub(in crate::aws) async fn delete_version(
        &self,
        bucket: &str,
        v: &Version,
    ) -> anyhow::Result<()> {
        let result = self
            .c
            .s3
            .delete_object()
            .bucket(bucket)
            .key(&v.key)
            .set_version_id(v.version_id.clone())
            .send()
            .await
            .map_err(aws(format!("S3 DeleteObject {}", v.key)));
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.is(GONE) || !self.holds(bucket, v).await? => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the bucket still holds this version of the key.
    async fn holds(&self, bucket: &str, v: &Version) -> anyhow::Result<bool> {
        Ok(versions(self.c, bucket, &v.key)
            .await?
            .iter()
            .any(|x| x.key == v.key && x.version_id == v.version_id))
    }

    /// Deletes every version and delete marker, then the bucket.
    pub(in crate::aws) async fn delete_bucket(&self, name: &str) -> anyhow::Result<()> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let s3 = &self.c.s3;
        let all = versions(self.c, name, "").await?;
        // XML 1.0 cannot carry a control character, so a key holding one (an
        // instance may choose any key) goes by itself, its key in the URL.
        let (plain, odd): (Vec<Version>, Vec<Version>) = all
            .into_iter()
            .partition(|v| !v.key.chars().any(char::is_control));
        for v in &odd {
            self.delete_version(name, v).await?;
        }
        // DeleteObjects takes at most 1,000 keys.
        for chunk in plain.chunks(1000) {
            let ids: Vec<ObjectIdentifier> = chunk
                .iter()
                .filter_map(|v| {
                    ObjectIdentifier::builder()
                        .key(&v.key)
                        .set_version_id(v.version_id.clone())
                        .build()
                        .ok()
                })
                .collect();
            let out = s3
                .delete_objects()
                .bucket(name)
                .delete(
                    Delete::builder()
                        .set_objects(Some(ids))
                        .quiet(true)
                        .build()?,
                )
                .send()
                .await
                .map_err(aws("S3 DeleteObjects"))?;
            // A retry after a lost answer finds some already gone, which S3 (or an
            // emulator) may answer with an error: what is gone is done.
            let mut failed = None;
            for e in out.errors() {
                let version = Version {
                    key: e.key().unwrap_or_default().to_owned(),
                    version_id: e.version_id().map(str::to_owned),
                    ..Version::default()
                };
                if self.holds(name, &version).await? {
                    failed = Some(e);
                    break;
                }
            }
            if let Some(e) = failed {
                bail!(
                    "S3 DeleteObjects could not delete s3://{name}/{} (version {}): {}",
                    e.key().unwrap_or_default(),
                    e.version_id().unwrap_or("null"),
                    e.message().or(e.code()).unwrap_or("no reason given")
                );
            }
        }
        gone(
            s3.delete_bucket()
                .bucket(name)
                .send()
                .await
                .map_err(aws("S3 DeleteBucket")),
        )?;
        Ok(())
    }
}

/// What proves two versions hold the same bytes: the size and S3's SHA-256 when
/// both have one, else the MD5 of a single-part ETag. A copy gets a SHA-256 even when
/// its source had none, so the two are compared by what both have.
#[derive(Debug, Clone)]
struct Fingerprint {
    size: i64,
    sha256: Option<String>,
    md5: Option<String>,
}

impl PartialEq for Fingerprint {
    fn eq(&self, other: &Self) -> bool {
        self.size == other.size
            && match (&self.sha256, &other.sha256, &self.md5, &other.md5) {
                (Some(a), Some(b), _, _) => a == b,
                (_, _, Some(a), Some(b)) => a == b,
                _ => false,
            }
    }
}

/// One version of an object, or a delete marker.
#[derive(Debug, Clone, Default)]
pub struct Version {
    pub key: String,
    /// `None` for an object written before versioning was enabled (`null`).
    pub version_id: Option<String>,
    pub delete_marker: bool,
    pub size: i64,
}

/// Every version and delete marker under `prefix`, each key's newest first, as S3
/// lists them; nothing for a bucket that does not exist.
pub async fn versions(c: &Clients, bucket: &str, prefix: &str) -> anyhow::Result<Vec<Version>> {
    let mut out = Vec::new();
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let page =
            c.s3.list_object_versions()
                .bucket(bucket)
                .prefix(prefix)
                .encoding_type(aws_sdk_s3::types::EncodingType::Url)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(aws(format!("S3 ListObjectVersions {bucket}")))
                .absent_if(&["NoSuchBucket"])?;
        // A bucket that is gone holds nothing.
        let Some(page) = page else {
            return Ok(out);
        };
        let id = |v: Option<&str>| v.filter(|v| *v != "null").map(str::to_owned);
        // (latest, modified, listed at, version)
        type Entry = (bool, Option<aws_smithy_types::DateTime>, usize, Version);
        let mut listed: Vec<Entry> = Vec::new();
        for (i, v) in page.versions().iter().enumerate() {
            listed.push((
                v.is_latest() == Some(true),
                v.last_modified().copied(),
                i,
                Version {
                    key: crate::aws::listed_key(v.key().unwrap_or_default()),
                    version_id: id(v.version_id()),
                    delete_marker: false,
                    size: v.size().unwrap_or(0),
                },
            ));
        }
        for (i, m) in page.delete_markers().iter().enumerate() {
            listed.push((
                m.is_latest() == Some(true),
                m.last_modified().copied(),
                i,
                Version {
                    key: crate::aws::listed_key(m.key().unwrap_or_default()),
                    version_id: id(m.version_id()),
                    delete_marker: true,
                    size: 0,
                },
            ));
        }
        // S3 lists versions and markers apart; interleave them by key, newest first:
        // the latest, then by time (which ties within a second), then as listed.
        listed.sort_by(|a, b| {
            a.3.key
                .cmp(&b.3.key)
                .then_with(|| b.0.cmp(&a.0))
                .then_with(|| b.1.map(|t| t.as_nanos()).cmp(&a.1.map(|t| t.as_nanos())))
                .then_with(|| a.2.cmp(&b.2))
        });
        out.extend(listed.into_iter().map(|(_, _, _, v)| v));
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(crate::aws::listed_key);
        version_marker = page.next_version_id_marker().map(str::to_owned);
        if key_marker.is_none() {
            break;
        }
    }
    Ok(out)
}

/// Versions grouped by key, each key's newest first.
fn by_key(all: Vec<Version>) -> std::collections::BTreeMap<String, Vec<Version>> {
    let mut out: std::collections::BTreeMap<String, Vec<Version>> = Default::default();
    for v in all {
        out.entry(v.key.clone()).or_default().push(v);
    }
    out
}

/// The bucket's policy, and all of it: nothing reaches the bucket without TLS. It is
/// compared as a document, so any other statement is drift that `up` removes.
fn tls_only_policy(name: &str) -> serde_json::Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [format!("arn:aws:s3:::{name}"), format!("arn:aws:s3:::{name}/*")],
            "Condition": { "Bool": { "aws:SecureTransport": "false" } }
        }]
    })
}

/// What a renamed bucket keeps: what the instances wrote, and labctl's record of
/// which instance was which.
const CARRIED_PREFIXES: [&str; 3] = [CAPTURES_PREFIX, REPORTS_PREFIX, INSTANCES_PREFIX];

/// `x-amz-copy-source`: the bucket and the key, URL-encoded but for its slashes, and
/// the version when there is one.
fn copy_source(bucket: &str, key: &str, version: Option<&str>) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let key = percent_encoding::utf8_percent_encode(key, KEEP);
    match version {
        Some(v) => format!("{bucket}/{key}?versionId={v}"),
        None => format!("{bucket}/{key}"),
    }
}
