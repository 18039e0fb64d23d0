//! The instance profile that carries the role to EC2: named after the role, holding
//! exactly that role, on the lab's IAM path.

use labctl_core::desired::{TAG_ADDRESS, TAG_LAB};
use labctl_core::marks::iam_path;
use labctl_core::plan::Found;
use labctl_core::{Address, Kind, Spec};

use crate::aws::apply::{Applier, gone, gone_or_exists, iam_tag};
use crate::aws::observe::found;
use crate::aws::wait::{self, Backoff};
use crate::aws::{Clients, aws};

/// The lab's profiles (on its path), each with the role it holds.
pub async fn observe(c: &Clients, lab: &str) -> anyhow::Result<Vec<Found>> {
    let path = iam_path(lab, &c.region);
    let profiles = c
        .iam
        .list_instance_profiles()
        .path_prefix(&path)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(aws("IAM ListInstanceProfiles"))?;
    Ok(profiles
        .iter()
        // Checked here too: some endpoints ignore PathPrefix.
        .filter(|p| p.path() == path)
        .map(|p| {
            let name = p.instance_profile_name();
            let role = p
                .roles()
                .first()
                .map(|r| r.role_name().to_owned())
                .unwrap_or_default();
            let spec = Spec::InstanceProfile { role };
            found(Address::single(Kind::InstanceProfile), name, name, spec)
        })
        .collect())
}

impl Applier<'_> {
    pub(in crate::aws) async fn create_profile(
        &self,
        a: &Address,
        name: &str,
        role: &str,
    ) -> anyhow::Result<String> {
        let iam = &self.c.iam;
        wait::retry(Backoff::CONSISTENCY, &["EntityAlreadyExists"], || async {
            gone_or_exists(
                iam.create_instance_profile()
                    .instance_profile_name(name)
                    .path(iam_path(self.inputs.lab, &self.c.region))
                    .tags(iam_tag(TAG_LAB, self.inputs.lab))
                    .tags(iam_tag(TAG_ADDRESS, &a.to_string()))
                    .send()
                    .await
                    .map_err(aws("IAM CreateInstanceProfile")),
            )
        })
        .await?;
        self.profile_role(name, None, role).await?;
        Ok(name.to_owned())
    }

    /// Makes `role` the profile's only role.
    pub(in crate::aws) async fn profile_role(
        &self,
        profile: &str,
        have: Option<&str>,
        want: &str,
    ) -> anyhow::Result<()> {
        let iam = &self.c.iam;
        if let Some(old) = have.filter(|h| !h.is_empty() && *h != want) {
            gone(
                iam.remove_role_from_instance_profile()
                    .instance_profile_name(profile)
                    .role_name(old)
                    .send()
                    .await
                    .map_err(aws("IAM RemoveRoleFromInstanceProfile")),
            )?;
        }
        if have != Some(want) {
            let added = iam
                .add_role_to_instance_profile()
                .instance_profile_name(profile)
                .role_name(want)
                .send()
                .await
                .map_err(aws("IAM AddRoleToInstanceProfile"));
            match added {
                Err(e) if e.is(&["LimitExceeded", "EntityAlreadyExists"]) => {}
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }

    /// Its role out first (as found), then the profile.
    pub(in crate::aws) async fn delete_profile(&self, id: &str, role: &str) -> anyhow::Result<()> {
        let iam = &self.c.iam;
        if !role.is_empty() {
            gone(
                iam.remove_role_from_instance_profile()
                    .instance_profile_name(id)
                    .role_name(role)
                    .send()
                    .await
                    .map_err(aws("IAM RemoveRoleFromInstanceProfile")),
            )?;
        }
        gone(
            iam.delete_instance_profile()
                .instance_profile_name(id)
                .send()
                .await
                .map_err(aws("IAM DeleteInstanceProfile")),
        )?;
        Ok(())
    }
}
