//! The labnet binary in the lab's bucket, under a key named by its SHA-256, which
//! instances fetch with their role.

use anyhow::{Context as _, bail};
use aws_sdk_s3::primitives::ByteStream;
use labctl_core::desired::LABNET_ARTIFACT;
use labctl_core::marks::LABNET_KEY_PREFIX;
use labctl_core::plan::Found;
use labctl_core::{Address, Kind, Spec};

use crate::aws::apply::Applier;
use crate::aws::observe::found;
use crate::aws::{Clients, aws};

/// The labnet binaries uploaded to the bucket. The one the topology wants now is
/// `artifact/labnet`; older ones get an address of their own, so the plan deletes them.
/// Without a wanted key (`down`, which builds nothing), the newest upload is
/// `artifact/labnet`, so `up` and `down` name the same binary alike.
pub async fn observe(
    c: &Clients,
    bucket: &str,
    wanted: Option<&str>,
) -> anyhow::Result<Vec<Found>> {
    let mut uploads = Vec::new();
    let mut pages =
        c.s3.list_objects_v2()
            .bucket(bucket)
            .prefix(LABNET_KEY_PREFIX)
            .into_paginator()
            .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws(format!("S3 ListObjectsV2 {bucket}")))?;
        for o in page.contents() {
            if let Some(key) = o.key()
                && key.strip_prefix(LABNET_KEY_PREFIX).is_some()
            {
                uploads.push((key.to_owned(), o.last_modified().copied()));
            }
        }
    }
    let current = match wanted {
        Some(key) => Some(key.to_owned()),
        None => uploads
            .iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
            .map(|(key, _)| key.clone()),
    };
    Ok(uploads
        .iter()
        .map(|(key, _)| {
            let sha256 = &key[LABNET_KEY_PREFIX.len()..];
            let name = if current.as_deref() == Some(key.as_str()) {
                LABNET_ARTIFACT.to_owned()
            } else {
                let short: String = sha256.chars().take(12).collect();
                format!("{LABNET_ARTIFACT}-{short}")
            };
            let spec = Spec::Artifact {
                bucket: bucket.to_owned(),
                sha256: sha256.to_owned(),
            };
            found(Address::new(Kind::Artifact, name), key, key, spec)
        })
        .collect())
}

impl Applier<'_> {
    /// Uploads the local labnet binary under its content-addressed key. S3 checks the
    /// SHA-256 it is sent, so a file that changed since the plan is refused.
    pub(in crate::aws) async fn upload_artifact(
        &self,
        a: &Address,
        bucket: &str,
        key: &str,
        sha256: &str,
    ) -> anyhow::Result<()> {
        let Some(path) = self.inputs.labnet else {
            bail!("{a}: no local labnet binary to upload");
        };
        let digest = hex_bytes(sha256).with_context(|| format!("{a}: bad SHA-256 {sha256}"))?;
        let body = ByteStream::from_path(path)
            .await
            .with_context(|| format!("cannot read {}", path.display()))?;
        self.c
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body)
            .content_type("application/octet-stream")
            .checksum_sha256(aws_smithy_types::base64::encode(digest))
            .send()
            .await
            .map_err(aws(format!("S3 PutObject {key}")))?;
        Ok(())
    }

    /// Deletes every version of the binary: the bucket is versioned, and a plain
    /// delete would only hide it behind a marker and keep paying for it.
    pub(in crate::aws) async fn delete_artifact(
        &self,
        bucket: &str,
        key: &str,
    ) -> anyhow::Result<()> {
        let versions = super::bucket::versions(self.c, bucket, key).await?;
        for v in versions.iter().filter(|v| v.key == key) {
            self.delete_version(bucket, v).await?;
        }
        Ok(())
    }
}

/// Lowercase or uppercase hex as bytes; `None` for anything else.
pub(crate) fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}
