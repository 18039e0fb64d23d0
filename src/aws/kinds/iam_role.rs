//! The instances' IAM role: assumed by EC2 only, the managed policies the topology
//! names, and an inline policy for exactly what instances do with the lab's bucket.
//! It lives on the lab's IAM path, which marks it as the lab's.

use anyhow::bail;
use labctl_core::desired::{TAG_ADDRESS, TAG_LAB};
use labctl_core::marks::{self, DYNAMODB_POLICY, INLINE_POLICY, LABNET_KEY_PREFIX, iam_path};
use labctl_core::plan::{Change, Found};
use labctl_core::{Address, Kind, Spec};
use serde_json::json;

use crate::aws::apply::{Applier, gone, iam_tag};
use crate::aws::observe::{Expected, found};
use crate::aws::{Absent, Clients, aws};

/// The lab's roles (on its path) with their policies; a role of the wanted name
/// elsewhere is a clash, reported with its ARN.
pub async fn observe(c: &Clients, expected: &Expected<'_>) -> anyhow::Result<Vec<Found>> {
    let lab = expected.lab;
    let roles = c
        .iam
        .list_roles()
        .path_prefix(format!("/labctl/{lab}/"))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(aws("IAM ListRoles"))?;
    // Ownership is checked here, not left to the server's filter: some endpoints
    // ignore PathPrefix and list everything.
    for r in &roles {
        refuse_elsewhere(lab, &c.region, r.path(), "role", r.arn())?;
    }
    let path = iam_path(lab, &c.region);
    let roles: Vec<_> = roles.into_iter().filter(|r| r.path() == path).collect();
    let mut out = Vec::new();
    for role in &roles {
        let name = role.role_name();
        // One of labctl's inline policies, absent when the role has none by that name.
        let inline_policy = |policy: &'static str| async move {
            c.iam
                .get_role_policy()
                .role_name(name)
                .policy_name(policy)
                .send()
                .await
                .map_err(aws(format!("IAM GetRolePolicy {name}")))
                .absent_if(&["NoSuchEntity"])
        };
        // Everything the plan claims about the role, read at once.
        let (managed, inline, tables, names, detail) = tokio::try_join!(
            async {
                c.iam
                    .list_attached_role_policies()
                    .role_name(name)
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>()
                    .await
                    .map_err(aws(format!("IAM ListAttachedRolePolicies {name}")))
            },
            inline_policy(INLINE_POLICY),
            inline_policy(DYNAMODB_POLICY),
            async {
                c.iam
                    .list_role_policies()
                    .role_name(name)
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>()
                    .await
                    .map_err(aws(format!("IAM ListRolePolicies {name}")))
            },
            async {
                c.iam
                    .get_role()
                    .role_name(name)
                    .send()
                    .await
                    .map_err(aws(format!("IAM GetRole {name}")))
            },
        )?;
        let mut managed: Vec<String> = managed
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_owned))
            .collect();
        managed.sort();
        // labctl's DynamoDB policy is its own only when it is exactly what labctl
        // writes; otherwise it is drift, removed and written again.
        let tables = tables.and_then(|p| tables_of_policy(p.policy_document()));
        let mut other_inline: Vec<String> = names
            .into_iter()
            .filter(|n| n != INLINE_POLICY && (n != DYNAMODB_POLICY || tables.is_none()))
            .collect();
        other_inline.sort();
        let detail = detail.role();
        let spec = Spec::IamRole {
            managed_policies: managed,
            inline_policy_bucket: inline.and_then(|p| bucket_of_policy(p.policy_document())),
            trust_ec2_only: detail
                .and_then(|r| r.assume_role_policy_document())
                .is_some_and(|doc| crate::aws::same_document(doc, &trust_policy())),
            other_inline_policies: other_inline,
            permissions_boundary: detail
                .and_then(|r| r.permissions_boundary())
                .and_then(|b| b.permissions_boundary_arn())
                .map(str::to_owned),
            dynamodb_tables: tables.unwrap_or_default(),
        };
        out.push(found(Address::single(Kind::IamRole), name, name, spec));
    }
    // A role of the expected name outside the lab's path belongs to someone else.
    if let Some(name) = expected.iam_role
        && !roles.iter().any(|r| r.role_name() == name)
    {
        let found = c
            .iam
            .get_role()
            .role_name(name)
            .send()
            .await
            .map_err(aws(format!("IAM GetRole {name}")))
            .absent_if(&["NoSuchEntity"])?;
        if let Some(found) = found {
            let arn = found.role().map(|r| r.arn()).unwrap_or(name);
            bail!(
                "IAM role {name} already exists ({arn}) but is not owned by lab `{}`; \
                 rename the lab or the role in the topology (labctl never adopts it)",
                expected.lab
            );
        }
    }
    Ok(out)
}

/// A lab's name is account-wide, as IAM's names are: the lab's IAM path in another
/// region means the lab lives there, and nothing is done here.
pub fn refuse_elsewhere(
    lab: &str,
    region: &str,
    path: &str,
    what: &str,
    arn: &str,
) -> anyhow::Result<()> {
    match labctl_core::marks::iam_path_region(path, lab) {
        Some(there) if there != region => bail!(
            "lab `{lab}` exists in {there} ({what} {arn}); a lab's name is account-wide: \
             choose another name, or --region {there}"
        ),
        Some(_) | None => Ok(()),
    }
}

impl Applier<'_> {
    pub(in crate::aws) async fn create_role(
        &self,
        a: &Address,
        name: &str,
        managed: &[String],
        bucket: Option<&str>,
        tables: &[String],
    ) -> anyhow::Result<()> {
        let trust = trust_policy();
        let path = iam_path(self.inputs.lab, &self.c.region);
        let created = self
            .c
            .iam
            .create_role()
            .role_name(name)
            .path(&path)
            .assume_role_policy_document(trust.to_string())
            .description(format!("Instances of labctl lab {}", self.inputs.lab))
            .tags(iam_tag(TAG_LAB, self.inputs.lab))
            .tags(iam_tag(TAG_ADDRESS, &a.to_string()))
            .send()
            .await
            .map_err(aws("IAM CreateRole"));
        match created {
            Ok(_) => {}
            // A retried or interrupted run made it; adopted only on the lab's path.
            Err(e) if e.is(&["EntityAlreadyExists"]) => {
                let existing = self
                    .c
                    .iam
                    .get_role()
                    .role_name(name)
                    .send()
                    .await
                    .map_err(aws(format!("IAM GetRole {name}")))?;
                if let Some(role) = existing.role().filter(|r| r.path() != path) {
                    bail!(
                        "IAM role {name} already exists ({}) but is not owned by lab `{}`; \
                         rename the lab or the role in the topology (labctl never adopts it)",
                        role.arn(),
                        self.inputs.lab
                    );
                }
            }
            Err(e) => return Err(e.into()),
        }
        self.role_policies(name, &[], managed, None, bucket).await?;
        self.role_tables(name, &[], tables).await
    }

    pub(in crate::aws) async fn role_policies(
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

    /// labctl's DynamoDB policy: written when the tables differ, deleted when none
    /// are wanted.
    pub(in crate::aws) async fn role_tables(
        &self,
        role: &str,
        have: &[String],
        want: &[String],
    ) -> anyhow::Result<()> {
        if have == want {
            return Ok(());
        }
        let iam = &self.c.iam;
        if want.is_empty() {
            gone(
                iam.delete_role_policy()
                    .role_name(role)
                    .policy_name(DYNAMODB_POLICY)
                    .send()
                    .await
                    .map_err(aws("IAM DeleteRolePolicy")),
            )?;
        } else {
            iam.put_role_policy()
                .role_name(role)
                .policy_name(DYNAMODB_POLICY)
                .policy_document(dynamodb_policy(want).to_string())
                .send()
                .await
                .map_err(aws("IAM PutRolePolicy"))?;
        }
        Ok(())
    }

    /// Puts back what was changed behind labctl's back: the trust policy, inline
    /// policies it did not write, a permissions boundary; then the policies it wants.
    pub(in crate::aws) async fn update_role(
        &self,
        id: &str,
        want: &Spec,
        have: &Spec,
    ) -> anyhow::Result<()> {
        let (
            Spec::IamRole {
                managed_policies,
                inline_policy_bucket,
                dynamodb_tables,
                ..
            },
            Spec::IamRole {
                managed_policies: hm,
                inline_policy_bucket: hb,
                trust_ec2_only,
                other_inline_policies,
                permissions_boundary,
                dynamodb_tables: ht,
            },
        ) = (want, have)
        else {
            bail!("{id}: not a role");
        };
        let iam = &self.c.iam;
        if !trust_ec2_only {
            iam.update_assume_role_policy()
                .role_name(id)
                .policy_document(trust_policy().to_string())
                .send()
                .await
                .map_err(aws("IAM UpdateAssumeRolePolicy"))?;
        }
        for policy in other_inline_policies {
            gone(
                iam.delete_role_policy()
                    .role_name(id)
                    .policy_name(policy)
                    .send()
                    .await
                    .map_err(aws(format!("IAM DeleteRolePolicy {policy}"))),
            )?;
        }
        if permissions_boundary.is_some() {
            gone(
                iam.delete_role_permissions_boundary()
                    .role_name(id)
                    .send()
                    .await
                    .map_err(aws("IAM DeleteRolePermissionsBoundary")),
            )?;
        }
        self.role_policies(
            id,
            hm,
            managed_policies,
            hb.as_deref(),
            inline_policy_bucket.as_deref(),
        )
        .await?;
        self.role_tables(id, ht, dynamodb_tables).await
    }

    /// Its policies first (managed, then every inline one), then the role.
    pub(in crate::aws) async fn delete_role(
        &self,
        id: &str,
        change: &Change,
    ) -> anyhow::Result<()> {
        let iam = &self.c.iam;
        if let Some(Spec::IamRole {
            managed_policies, ..
        }) = &change.observed
        {
            for arn in managed_policies {
                gone(
                    iam.detach_role_policy()
                        .role_name(id)
                        .policy_arn(arn)
                        .send()
                        .await
                        .map_err(aws("IAM DetachRolePolicy")),
                )?;
            }
        }
        let inline = iam
            .list_role_policies()
            .role_name(id)
            .send()
            .await
            .map_err(aws("IAM ListRolePolicies"));
        if let Ok(inline) = inline {
            for policy in inline.policy_names() {
                gone(
                    iam.delete_role_policy()
                        .role_name(id)
                        .policy_name(policy)
                        .send()
                        .await
                        .map_err(aws("IAM DeleteRolePolicy")),
                )?;
            }
        }
        gone(
            iam.delete_role()
                .role_name(id)
                .send()
                .await
                .map_err(aws("IAM DeleteRole")),
        )?;
        Ok(())
    }
}

/// The real ARN of each managed policy the topology names, path included: AWS keeps
/// some under a path (`service-role/AmazonEC2RoleforSSM`), so a name is not always
/// `arn:aws:iam::aws:policy/<name>`. A name is looked up at AWS's root first, then
/// among every policy AWS and the account have; an ARN is checked as given. One that
/// does not exist is an error naming it, before anything changes.
pub async fn resolve_policies(
    c: &Clients,
    names: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    let mut unresolved = Vec::new();
    for name in names {
        let arn = labctl_core::desired::managed_policy_arn(name);
        let found = c
            .iam
            .get_policy()
            .policy_arn(&arn)
            .send()
            .await
            .map_err(aws(format!("IAM GetPolicy {arn}")))
            .absent_if(&["NoSuchEntity"])?;
        match found {
            Some(_) => {
                out.insert(name.clone(), arn);
            }
            None if name.starts_with("arn:") => {
                bail!("managed policy {name} does not exist; nothing was changed")
            }
            None => unresolved.push(name.clone()),
        }
    }
    if unresolved.is_empty() {
        return Ok(out);
    }
    let listed = c
        .iam
        .list_policies()
        .scope(aws_sdk_iam::types::PolicyScopeType::All)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(aws("IAM ListPolicies"))?;
    for name in unresolved {
        // AWS's own first, then the account's, each in ARN order: the same answer on
        // every run.
        let mut matches: Vec<&str> = listed
            .iter()
            .filter(|p| p.policy_name() == Some(name.as_str()))
            .filter_map(|p| p.arn())
            .collect();
        matches.sort_by_key(|arn| (!arn.starts_with("arn:aws:iam::aws:"), *arn));
        match matches.first() {
            Some(arn) => {
                out.insert(name, (*arn).to_owned());
            }
            None => bail!(
                "managed policy `{name}` does not exist, neither AWS's nor this account's; \
                 check its name (IAM console, Policies); nothing was changed"
            ),
        }
    }
    Ok(out)
}

/// Who may assume the role: EC2, and nobody else.
fn trust_policy() -> serde_json::Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": "ec2.amazonaws.com" },
            "Action": "sts:AssumeRole"
        }]
    })
}

/// The inline policy: exactly what the bootstrap and the capture helper do with the
/// lab's bucket. Read the labnet binaries; write the instance's own readiness report
/// and captures. `${aws:userid}` is `<role id>:<instance id>` for an instance role's
/// credentials, set by EC2, so an instance writes only under its own folder (see
/// SECURITY.md). Nothing else: no listing, no reading, no deleting, nothing under
/// `instances/`, where labctl records which instance had which name.
pub fn bucket_policy(bucket: &str) -> serde_json::Value {
    let arn = |key: &str| format!("arn:aws:s3:::{bucket}/{key}");
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadLabnet",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": arn(&format!("{LABNET_KEY_PREFIX}*"))
            },
            {
                "Sid": "WriteOwnReportAndCaptures",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": [
                    arn(&marks::report_key(marks::WRITER_VARIABLE)),
                    arn(&format!("{}*", marks::captures_folder(marks::WRITER_VARIABLE)))
                ]
            }
        ]
    })
}

/// The scoped DynamoDB policy: everything on the lab's tables (their indexes and
/// streams too), and listing tables, which names no resource. Nothing else of
/// DynamoDB, where `AmazonDynamoDBFullAccess` would grant every table there is.
pub fn dynamodb_policy(tables: &[String]) -> serde_json::Value {
    let resources: Vec<String> = tables
        .iter()
        .flat_map(|t| [t.clone(), format!("{t}/*")])
        .collect();
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "LabTables",
                "Effect": "Allow",
                "Action": "dynamodb:*",
                "Resource": resources
            },
            {
                "Sid": "ListTables",
                "Effect": "Allow",
                "Action": "dynamodb:ListTables",
                "Resource": "*"
            }
        ]
    })
}

/// The tables a DynamoDB policy document grants, if it is exactly labctl's policy.
pub fn tables_of_policy(document: &str) -> Option<Vec<String>> {
    let decoded = percent_encoding::percent_decode_str(document)
        .decode_utf8()
        .ok()?;
    let doc: serde_json::Value = serde_json::from_str(&decoded).ok()?;
    let tables: Vec<String> = doc["Statement"][0]["Resource"]
        .as_array()?
        .iter()
        .filter_map(|r| r.as_str())
        .filter(|r| !r.ends_with("/*"))
        .map(str::to_owned)
        .collect();
    (doc == dynamodb_policy(&tables)).then_some(tables)
}

/// The bucket an inline policy document grants, if it is exactly labctl's policy.
/// IAM returns documents URL-encoded.
pub fn bucket_of_policy(document: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(document)
        .decode_utf8()
        .ok()?;
    let doc: serde_json::Value = serde_json::from_str(&decoded).ok()?;
    let resource = doc["Statement"][0]["Resource"].as_str()?;
    let bucket = resource
        .strip_prefix("arn:aws:s3:::")?
        .strip_suffix(&format!("/{LABNET_KEY_PREFIX}*"))?;
    (doc == bucket_policy(bucket)).then(|| bucket.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_policy_round_trips_through_iams_encoding() {
        let doc = bucket_policy("netlab-captures-1-eu-north-1").to_string();
        let encoded =
            percent_encoding::utf8_percent_encode(&doc, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert_eq!(
            bucket_of_policy(&encoded).as_deref(),
            Some("netlab-captures-1-eu-north-1")
        );
        assert_eq!(
            bucket_of_policy(&doc).as_deref(),
            Some("netlab-captures-1-eu-north-1")
        );
        let widened = doc.replace("s3:PutObject", "s3:*");
        assert_eq!(
            bucket_of_policy(&widened),
            None,
            "a changed policy is not ours"
        );
    }
}
