//! The instance profile that carries the role to EC2: named after the role, holding
//! exactly that role, on the lab's IAM path.

use labctl_core::desired::{TAG_ADDRESS, TAG_LAB};
use labctl_core::marks::iam_path;
use labctl_core::plan::Found;
use labctl_core::{Address, Kind, Spec};

use anyhow::bail;

use super::iam_role::refuse_elsewhere;
use crate::aws::apply::{Applier, gone, iam_tag};
use crate::aws::observe::found;
use crate::aws::{Absent, Clients, aws};

/// The lab's profiles (on its path), each with the role it holds. Like a role, a
/// profile of the wanted name elsewhere is a clash, reported with its ARN.
pub async fn observe(c: &Clients, lab: &str, wanted: Option<&str>) -> anyhow::Result<Vec<Found>> {
    let profiles = c
        .iam
        .list_instance_profiles()
        .path_prefix(format!("/labctl/{lab}/"))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(aws("IAM ListInstanceProfiles"))?;
    for p in &profiles {
        refuse_elsewhere(lab, &c.region, p.path(), "instance profile", p.arn())?;
    }
    // Checked here too: some endpoints ignore PathPrefix.
    let path = iam_path(lab, &c.region);
    let ours: Vec<_> = profiles.iter().filter(|p| p.path() == path).collect();
    if let Some(name) = wanted
        && !ours.iter().any(|p| p.instance_profile_name() == name)
    {
        stranger(c, lab, name).await?;
    }
    Ok(ours
        .into_iter()
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

/// Fails if a profile named `name` exists outside the lab's path: it belongs to
/// someone else, and an instance launched with it would get their role.
async fn stranger(c: &Clients, lab: &str, name: &str) -> anyhow::Result<()> {
    let found = c
        .iam
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
        .map_err(aws(format!("IAM GetInstanceProfile {name}")))
        .absent_if(&["NoSuchEntity"])?;
    if let Some(p) = found.as_ref().and_then(|f| f.instance_profile()) {
        if p.path() == iam_path(lab, &c.region) {
            return Ok(());
        }
        bail!(
            "instance profile {name} already exists ({}) but is not owned by lab `{lab}`; \
             rename the lab or the role in the topology (labctl never adopts it)",
            p.arn()
        );
    }
    Ok(())
}

impl Applier<'_> {
    pub(in crate::aws) async fn create_profile(
        &self,
        a: &Address,
        name: &str,
        role: &str,
    ) -> anyhow::Result<String> {
        let created = self
            .c
            .iam
            .create_instance_profile()
            .instance_profile_name(name)
            .path(iam_path(self.inputs.lab, &self.c.region))
            .tags(iam_tag(TAG_LAB, self.inputs.lab))
            .tags(iam_tag(TAG_ADDRESS, &a.to_string()))
            .send()
            .await
            .map_err(aws("IAM CreateInstanceProfile"));
        match created {
            Ok(_) => {}
            // A retried or interrupted run made it; adopted only with the lab's mark.
            Err(e) if e.is(&["EntityAlreadyExists"]) => {
                stranger(self.c, self.inputs.lab, name).await?;
            }
            Err(e) => return Err(e.into()),
        }
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
            let removed = gone(
                iam.remove_role_from_instance_profile()
                    .instance_profile_name(id)
                    .role_name(role)
                    .send()
                    .await
                    .map_err(aws("IAM RemoveRoleFromInstanceProfile")),
            );
            // A retry whose first attempt took effect can fail in ways of its own
            // (the emulator the tests use answers a 500): what counts is whether the
            // profile still holds the role.
            if let Err(e) = removed {
                let now = iam
                    .get_instance_profile()
                    .instance_profile_name(id)
                    .send()
                    .await
                    .map_err(aws(format!("IAM GetInstanceProfile {id}")))
                    .absent_if(&["NoSuchEntity"])?;
                let holds = now
                    .as_ref()
                    .and_then(|p| p.instance_profile())
                    .is_some_and(|p| p.roles().iter().any(|r| r.role_name() == role));
                if holds {
                    return Err(e.into());
                }
            }
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
