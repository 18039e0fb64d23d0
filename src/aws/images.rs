//! Turning image references into AMI ids at plan time.
//!
//! `ubuntu-24.04` reads Canonical's public SSM parameter and falls back to the newest
//! matching Canonical image; a parameter path is read the same way; an `ami-…` id is
//! checked to exist. Only instances about to be created need this.

use std::collections::BTreeMap;

use anyhow::{Context as _, anyhow, bail};
use labctl_core::topology::Image;

use super::{Absent, Clients, aws};

/// Canonical's AWS account, owner of the official Ubuntu images.
const CANONICAL: &str = "099720109477";
pub const UBUNTU_2404_PARAMETER: &str =
    "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id";
const UBUNTU_2404_NAME: &str = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*";

/// An AMI ready to launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ami {
    /// `ami-…`.
    pub id: String,
    /// The root device, for the encrypted root volume mapping.
    pub root_device: String,
    /// The root volume's size in GiB (the mapping restates it).
    pub root_size: i32,
}

/// Resolves every reference in `refs` (as written in the topology).
pub async fn resolve(c: &Clients, refs: &[Image]) -> anyhow::Result<BTreeMap<String, Ami>> {
    let mut out = BTreeMap::new();
    for image in refs {
        let key = image.to_string();
        if out.contains_key(&key) {
            continue;
        }
        let id = match image {
            Image::Ami(id) => id.clone(),
            Image::Parameter(path) => parameter(c, path)
                .await?
                .ok_or_else(|| anyhow!("SSM parameter {path} does not exist in {}", c.region))?,
            Image::Ubuntu2404 => match parameter(c, UBUNTU_2404_PARAMETER).await? {
                Some(id) => id,
                None => newest_canonical(c).await?.ok_or_else(|| {
                    anyhow!(
                        "cannot find an Ubuntu 24.04 image in {}: neither Canonical's SSM parameter nor \
                         their images are visible here; name an `ami-…` id or a parameter path in the topology",
                        c.region
                    )
                })?,
            },
        };
        let ami = describe(c, &id).await?.with_context(|| {
            format!(
                "image {key} resolves to {id}, which does not exist in {}",
                c.region
            )
        })?;
        out.insert(key, ami);
    }
    Ok(out)
}

/// An SSM parameter's value; `None` when it does not exist.
pub async fn parameter(c: &Clients, name: &str) -> anyhow::Result<Option<String>> {
    let out = c
        .ssm
        .get_parameter()
        .name(name)
        .send()
        .await
        .map_err(aws(format!("SSM GetParameter {name}")))
        .absent_if(&["ParameterNotFound"])?;
    Ok(out.and_then(|o| o.parameter().and_then(|p| p.value()).map(str::to_owned)))
}

async fn newest_canonical(c: &Clients) -> anyhow::Result<Option<String>> {
    let images = c
        .ec2
        .describe_images()
        .owners(CANONICAL)
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("name")
                .values(UBUNTU_2404_NAME)
                .build(),
        )
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("architecture")
                .values("x86_64")
                .build(),
        )
        .send()
        .await
        .map_err(aws("EC2 DescribeImages"))?;
    Ok(images
        .images()
        .iter()
        .max_by_key(|i| i.creation_date().unwrap_or_default().to_owned())
        .and_then(|i| i.image_id())
        .map(str::to_owned))
}

async fn describe(c: &Clients, id: &str) -> anyhow::Result<Option<Ami>> {
    let Some(out) = c
        .ec2
        .describe_images()
        .image_ids(id)
        .send()
        .await
        .map_err(aws(format!("EC2 DescribeImages {id}")))
        .absent_if(&["InvalidAMIID.NotFound", "InvalidAMIID.Malformed"])?
    else {
        return Ok(None);
    };
    let Some(image) = out.images().first() else {
        return Ok(None);
    };
    if let Some(arch) = image.architecture()
        && arch.as_str() != "x86_64"
    {
        bail!(
            "image {id} is for {}; labnet is built for x86_64",
            arch.as_str()
        );
    }
    let root_device = image.root_device_name().unwrap_or("/dev/sda1").to_owned();
    let root_size = image
        .block_device_mappings()
        .iter()
        .find(|m| m.device_name() == Some(root_device.as_str()))
        .and_then(|m| m.ebs())
        .and_then(|e| e.volume_size())
        .unwrap_or(labctl_core::cost::DEFAULT_ROOT_GIB as i32);
    Ok(Some(Ami {
        id: id.to_owned(),
        root_device,
        root_size,
    }))
}
