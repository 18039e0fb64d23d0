//! The capture bucket: private, encrypted, TLS only, tagged as the lab's. Emptied
//! before it is deleted; a renamed bucket's captures and reports move to the new one
//! first.

use anyhow::bail;
use labctl_core::marks::{CAPTURES_PREFIX, REPORTS_PREFIX, TAG_ADDRESS, TAG_LAB};
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
    Ok(Spec::Bucket {
        tagged,
        private,
        encrypted,
        tls_only,
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

    /// Tags, public access block, default encryption and the TLS-only policy.
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
        Ok(())
    }

    /// Copies what instances wrote (`captures/`, `reports/`) from the bucket `from`
    /// to `to`, then proves it arrived: every key is there, with the same size and
    /// the same SHA-256 (S3's stored checksum) or, for an object stored without one,
    /// the same MD5 ETag. A key `to` already holds is newer and is kept.
    pub(in crate::aws) async fn carry_over(&self, from: &str, to: &str) -> anyhow::Result<()> {
        use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
        let s3 = &self.c.s3;
        let mut copied = 0;
        for prefix in CARRIED_PREFIXES {
            let source = self.objects(from, prefix).await?;
            let present = self.objects(to, prefix).await?;
            for key in source.keys() {
                if present.contains_key(key) {
                    continue;
                }
                s3.copy_object()
                    .bucket(to)
                    .key(key)
                    .copy_source(copy_source(from, key))
                    .checksum_algorithm(ChecksumAlgorithm::Sha256)
                    .send()
                    .await
                    .map_err(aws(format!("S3 CopyObject {from}/{key} to {to}")))?;
                copied += 1;
            }
            let arrived = self.objects(to, prefix).await?;
            for (key, size) in source.iter().filter(|(k, _)| !present.contains_key(*k)) {
                if arrived.get(key) != Some(size) {
                    bail!(
                        "s3://{to}/{key} is missing or differs in size after the copy; s3://{from} is kept"
                    );
                }
                let head = |bucket: &str| {
                    s3.head_object()
                        .bucket(bucket)
                        .key(key)
                        .checksum_mode(ChecksumMode::Enabled)
                        .send()
                };
                let (a, b) = tokio::try_join!(
                    async {
                        head(from)
                            .await
                            .map_err(aws(format!("S3 HeadObject {from}/{key}")))
                    },
                    async {
                        head(to)
                            .await
                            .map_err(aws(format!("S3 HeadObject {to}/{key}")))
                    },
                )?;
                let same = match (a.checksum_sha256(), b.checksum_sha256()) {
                    (Some(x), Some(y)) if !x.contains('-') => x == y,
                    _ => a.e_tag().is_some_and(|e| !e.contains('-')) && a.e_tag() == b.e_tag(),
                };
                if !same {
                    bail!(
                        "s3://{to}/{key} does not match s3://{from}/{key} after the copy; s3://{from} is kept"
                    );
                }
            }
        }
        tracing::info!(from, to, copied, "carried captures and reports over");
        Ok(())
    }

    /// Key → size of every object under `prefix`.
    async fn objects(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> anyhow::Result<std::collections::BTreeMap<String, i64>> {
        let mut out = std::collections::BTreeMap::new();
        let mut pages = self
            .c
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(aws(format!("S3 ListObjectsV2 {bucket}")))?;
            for o in page.contents() {
                if let Some(key) = o.key() {
                    out.insert(key.to_owned(), o.size().unwrap_or(0));
                }
            }
        }
        Ok(out)
    }

    pub(in crate::aws) async fn delete_bucket(&self, name: &str) -> anyhow::Result<()> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let s3 = &self.c.s3;
        let mut objects = s3.list_objects_v2().bucket(name).into_paginator().send();
        while let Some(page) = objects.next().await {
            let page = match page.map_err(aws(format!("S3 ListObjectsV2 {name}"))) {
                Ok(p) => p,
                Err(e) if e.is(GONE) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let keys: Vec<ObjectIdentifier> = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .filter_map(|k| ObjectIdentifier::builder().key(k).build().ok())
                .collect();
            if !keys.is_empty() {
                s3.delete_objects()
                    .bucket(name)
                    .delete(
                        Delete::builder()
                            .set_objects(Some(keys))
                            .quiet(true)
                            .build()?,
                    )
                    .send()
                    .await
                    .map_err(aws("S3 DeleteObjects"))?;
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

/// What the lab's instances write to its bucket, which a renamed bucket keeps.
const CARRIED_PREFIXES: [&str; 2] = [CAPTURES_PREFIX, REPORTS_PREFIX];

/// `x-amz-copy-source`: the bucket and the key, URL-encoded but for its slashes.
fn copy_source(bucket: &str, key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    format!(
        "{bucket}/{}",
        percent_encoding::utf8_percent_encode(key, KEEP)
    )
}
