//! Drift that only a full read can see, made with the SDK behind labctl's back: the
//! plan shows it, one `up` removes it, the next plan is empty, and the SDK shows AWS
//! holding only what the topology says.

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, Ipv6Range, PrefixListId};

use crate::harness::{Sandbox, Teardown, sdk_config};
use crate::reconcile::{REGION, lab_filter, lab_up};

fn repair(sb: &Sandbox, plan_has: &[&str]) {
    tokio::task::block_in_place(|| {
        let plan = sb.run(&["plan", "--detailed-exitcode"]);
        assert_eq!(plan.code(), 2, "the drift is seen\n{}", plan.transcript());
        for line in plan_has {
            assert!(
                plan.stdout().contains(line),
                "plan lacks {line:?}\n{}",
                plan.stdout()
            );
        }
        let up = sb.run(&["up", "--yes"]);
        assert_eq!(up.code(), 0, "{}", up.transcript());
        let again = sb.run(&["plan", "--detailed-exitcode"]);
        assert_eq!(again.code(), 0, "{}", again.transcript());
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_ranges_prefix_lists_and_other_protocols_in_a_rule() {
    let (sb, lab) = lab_up("drift-rules");
    let _down = Teardown::new(&sb, &["--delete-captures"]);
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(REGION).await);
    let groups = ec2
        .describe_security_groups()
        .filters(lab_filter(&lab))
        .filters(
            Filter::builder()
                .name("group-name")
                .values(format!("{lab}-server"))
                .build(),
        )
        .send()
        .await
        .expect("groups");
    let group = groups.security_groups()[0]
        .group_id()
        .expect("id")
        .to_owned();
    let list = ec2
        .create_managed_prefix_list()
        .prefix_list_name(format!("{lab}-stranger"))
        .address_family("IPv4")
        .max_entries(2)
        .send()
        .await
        .expect("prefix list");
    let list = list
        .prefix_list()
        .and_then(|p| p.prefix_list_id())
        .expect("id")
        .to_owned();
    // One call each: LocalStack takes them as duplicates of each other in one call.
    for permission in [
        IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(22)
            .to_port(22)
            .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
            .build(),
        IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(443)
            .to_port(443)
            .prefix_list_ids(PrefixListId::builder().prefix_list_id(&list).build())
            .build(),
        IpPermission::builder()
            .ip_protocol("47")
            .from_port(-1)
            .to_port(-1)
            .ip_ranges(IpRange::builder().cidr_ip("198.51.100.0/24").build())
            .build(),
    ] {
        ec2.authorize_security_group_ingress()
            .group_id(&group)
            .ip_permissions(permission.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("drift {permission:?}: {e:?}"));
    }
    repair(
        &sb,
        &[
            "~ sg-rules/server",
            "-tcp/22 ::/0",
            &format!("-tcp/443 prefix-list:{list}"),
            "-protocol-47 198.51.100.0/24",
        ],
    );
    let after = ec2
        .describe_security_groups()
        .group_ids(&group)
        .send()
        .await
        .expect("group");
    let perms = after.security_groups()[0].ip_permissions();
    assert_eq!(
        perms
            .iter()
            .map(|p| p.user_id_group_pairs().len())
            .sum::<usize>(),
        5,
        "{perms:?}"
    );
    for p in perms {
        assert!(p.ipv6_ranges().is_empty(), "{p:?}");
        assert!(p.prefix_list_ids().is_empty(), "{p:?}");
        assert!(p.ip_ranges().is_empty(), "{p:?}");
        assert_ne!(p.ip_protocol(), Some("47"), "{p:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_roles_trust_inline_policies_and_boundary() {
    let (sb, lab) = lab_up("drift-role");
    let _down = Teardown::new(&sb, &["--delete-captures"]);
    let iam = aws_sdk_iam::Client::new(&sdk_config(REGION).await);
    let role = format!("{lab}-DynamoDBAccessEC2");
    let widened = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"},{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole"}]}"#;
    iam.update_assume_role_policy()
        .role_name(&role)
        .policy_document(widened)
        .send()
        .await
        .expect("trust");
    iam.put_role_policy()
        .role_name(&role)
        .policy_name("sneaky")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
        .send()
        .await
        .expect("inline");
    let boundary = "arn:aws:iam::aws:policy/PowerUserAccess";
    iam.put_role_permissions_boundary()
        .role_name(&role)
        .permissions_boundary(boundary)
        .send()
        .await
        .expect("boundary");
    repair(
        &sb,
        &[
            "~ iam-role",
            "trust_ec2_only: false -> true",
            "other_inline_policies: sneaky -> none",
            &format!("permissions_boundary: {boundary} -> none"),
        ],
    );
    let got = iam.get_role().role_name(&role).send().await.expect("role");
    let got = got.role().expect("role");
    let trust =
        percent_encoding::percent_decode_str(got.assume_role_policy_document().unwrap_or_default())
            .decode_utf8_lossy()
            .into_owned();
    assert!(!trust.contains("111122223333"), "{trust}");
    assert!(
        got.permissions_boundary().is_none(),
        "{:?}",
        got.permissions_boundary()
    );
    let names = iam
        .list_role_policies()
        .role_name(&role)
        .send()
        .await
        .expect("inline");
    assert_eq!(names.policy_names(), ["labctl-bucket"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bucket_policy_compared_as_a_document() {
    let (sb, lab) = lab_up("drift-bkt");
    let _down = Teardown::new(&sb, &["--delete-captures"]);
    let s3 = crate::bootstrap::s3().await;
    let bucket = format!("{lab}-captures-000000000000-{REGION}");
    let ours = s3
        .get_bucket_policy()
        .bucket(&bucket)
        .send()
        .await
        .expect("policy");
    let ours: serde_json::Value =
        serde_json::from_str(ours.policy().unwrap_or_default()).expect("json");
    // Still mentions aws:SecureTransport, so a substring check would call it fine.
    let mut widened = ours.clone();
    widened["Statement"]
        .as_array_mut()
        .expect("statements")
        .push(serde_json::json!({
            "Sid": "Everyone",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": format!("arn:aws:s3:::{bucket}/*")
        }));
    s3.put_bucket_policy()
        .bucket(&bucket)
        .policy(widened.to_string())
        .send()
        .await
        .expect("drift");
    repair(&sb, &["~ bucket/captures", "tls_only: false -> true"]);
    let now = s3
        .get_bucket_policy()
        .bucket(&bucket)
        .send()
        .await
        .expect("policy");
    let now: serde_json::Value =
        serde_json::from_str(now.policy().unwrap_or_default()).expect("json");
    assert_eq!(now["Statement"].as_array().map(Vec::len), Some(1), "{now}");
    assert!(!now.to_string().contains("Everyone"), "{now}");
}
