//! The instance role and its profile: least privilege, on the lab's IAM path.

use labctl_core::Address;
use labctl_core::desired::{TAG_ADDRESS, TAG_LAB};
use serde_json::json;

use super::{Applier, bucket_policy, gone, gone_or_exists, iam_tag};
use crate::aws::aws;
use crate::aws::observe::{INLINE_POLICY, iam_path};

impl Applier<'_> {
    pub(super) async fn create_role(
        &self,
        a: &Address,
        name: &str,
        managed: &[String],
        bucket: Option<&str>,
    ) -> anyhow::Result<()> {
        let trust = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": { "Service": "ec2.amazonaws.com" },
                "Action": "sts:AssumeRole"
            }]
        });
        gone_or_exists(
            self.c
                .iam
                .create_role()
                .role_name(name)
                .path(iam_path(self.inputs.lab, &self.c.region))
                .assume_role_policy_document(trust.to_string())
                .description(format!("Instances of labctl lab {}", self.inputs.lab))
                .tags(iam_tag(TAG_LAB, self.inputs.lab))
                .tags(iam_tag(TAG_ADDRESS, &a.to_string()))
                .send()
                .await
                .map_err(aws("IAM CreateRole")),
        )?;
        self.role_policies(name, &[], managed, None, bucket).await
    }

    pub(super) async fn role_policies(
        &self,
        role: &str,
        have: &[String],
        want: &[String],
        have_bucket: Option<&str>,
        want_bucket: Option<&str>,
    ) -> anyhow::Result<()> {
        let iam = &self.c.iam;
        for arn in want.iter().filter(|p| !have.contains(p)) {
            iam.attach_role_policy()
                .role_name(role)
                .policy_arn(arn)
                .send()
                .await
                .map_err(aws(format!("IAM AttachRolePolicy {arn}")))?;
        }
        for arn in have.iter().filter(|p| !want.contains(p)) {
            gone(
                iam.detach_role_policy()
                    .role_name(role)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map_err(aws(format!("IAM DetachRolePolicy {arn}"))),
            )?;
        }
        if have_bucket != want_bucket {
            match want_bucket {
                Some(bucket) => {
                    iam.put_role_policy()
                        .role_name(role)
                        .policy_name(INLINE_POLICY)
                        .policy_document(bucket_policy(bucket).to_string())
                        .send()
                        .await
                        .map_err(aws("IAM PutRolePolicy"))?;
                }
                None => {
                    gone(
                        iam.delete_role_policy()
                            .role_name(role)
                            .policy_name(INLINE_POLICY)
                            .send()
                            .await
                            .map_err(aws("IAM DeleteRolePolicy")),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Makes `role` the profile's only role.
    pub(super) async fn profile_role(
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
}
