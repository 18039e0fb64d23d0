//! `plan`, `up`, `down` and `status` against LocalStack, checked independently: the
//! assertions read AWS with the SDK directly, never through labctl's own code.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use aws_sdk_ec2::types::Filter;
use labctl_core::desired::TAG_LAB;

use crate::harness::{Sandbox, repo, sdk_config, unique_lab};

pub(crate) const REGION: &str = "eu-north-1";
/// An x86_64 Ubuntu image in LocalStack's catalogue (it has no 24.04).
pub(crate) const AMI: &str = "ami-785db401";

/// The repository's default lab under another name, on an image LocalStack has.
pub(crate) fn default_lab(lab: &str) -> String {
    std::fs::read_to_string(repo().join("topology.yaml"))
        .expect("topology.yaml")
        .replace("name: netlab", &format!("name: {lab}"))
        .replace("image: ubuntu-24.04", &format!("image: {AMI}"))
}

/// A default lab, up, in a sandbox of its own.
pub(crate) fn lab_up(prefix: &str) -> (Sandbox, String) {
    let lab = unique_lab(prefix);
    let sb = Sandbox::with_localstack();
    sb.write("topology.yaml", &default_lab(&lab));
    let up = tokio::task::block_in_place(|| sb.run(&["up", "--yes"]));
    assert_eq!(up.code(), 0, "{}", up.transcript());
    (sb, lab)
}

/// Deletes one record set of a zone, as a person at the console would.
pub(crate) async fn delete_record_set(
    r53: &aws_sdk_route53::Client,
    zone: &str,
    set: aws_sdk_route53::types::ResourceRecordSet,
) {
    r53.change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(
            aws_sdk_route53::types::ChangeBatch::builder()
                .changes(
                    aws_sdk_route53::types::Change::builder()
                        .action(aws_sdk_route53::types::ChangeAction::Delete)
                        .resource_record_set(set)
                        .build()
                        .expect("change"),
                )
                .build()
                .expect("batch"),
        )
        .send()
        .await
        .expect("delete record");
}

pub(crate) fn lab_sandbox(prefix: &str) -> (Sandbox, String) {
    let lab = unique_lab(prefix);
    let sb = Sandbox::with_localstack();
    sb.write("topology.yaml", &default_lab(&lab));
    (sb, lab)
}

pub(crate) fn ok(sb: &Sandbox, args: &[&str]) -> String {
    let run = sb.run(args);
    assert_eq!(run.code(), 0, "labctl {args:?}\n{}", run.transcript());
    run.stdout()
}

/// `plan --detailed-exitcode`: 0 when AWS matches, 2 when changes are pending.
fn plan_code(sb: &Sandbox) -> (i32, String) {
    let run = sb.run(&["plan", "--detailed-exitcode"]);
    assert!(matches!(run.code(), 0 | 2), "{}", run.transcript());
    (run.code(), run.stdout())
}

pub(crate) async fn ec2() -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&sdk_config(REGION).await)
}

pub(crate) fn lab_filter(lab: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{TAG_LAB}"))
        .values(lab)
        .build()
}

/// The id of the lab's VPC.
pub(crate) async fn vpc_id(lab: &str) -> String {
    let out = ec2()
        .await
        .describe_vpcs()
        .filters(lab_filter(lab))
        .send()
        .await
        .expect("describe vpcs");
    out.vpcs()
        .first()
        .and_then(|v| v.vpc_id())
        .expect("the lab has a VPC")
        .to_owned()
}

pub(crate) async fn instances(lab: &str) -> Vec<aws_sdk_ec2::types::Instance> {
    let out = ec2()
        .await
        .describe_instances()
        .filters(lab_filter(lab))
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .build(),
        )
        .send()
        .await
        .expect("describe instances");
    out.reservations()
        .iter()
        .flat_map(|r| r.instances().to_vec())
        .collect()
}

pub(crate) fn tag(tags: &[aws_sdk_ec2::types::Tag], key: &str) -> Option<String> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
        .map(str::to_owned)
}

async fn group_id(lab: &str, role: &str) -> String {
    let out = ec2()
        .await
        .describe_security_groups()
        .filters(lab_filter(lab))
        .filters(
            Filter::builder()
                .name("group-name")
                .values(format!("{lab}-{role}"))
                .build(),
        )
        .send()
        .await
        .expect("describe groups");
    out.security_groups()[0]
        .group_id()
        .expect("group id")
        .to_owned()
}

/// Everything the lab owns in EC2, IAM, S3 and Route 53, counted independently.
pub(crate) async fn owned_count(lab: &str) -> usize {
    let config = sdk_config(REGION).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let f = || lab_filter(lab);
    let vpcs = ec2
        .describe_vpcs()
        .filters(f())
        .send()
        .await
        .expect("vpcs")
        .vpcs()
        .len();
    let subnets = ec2
        .describe_subnets()
        .filters(f())
        .send()
        .await
        .expect("subnets")
        .subnets()
        .len();
    let groups = ec2
        .describe_security_groups()
        .filters(f())
        .send()
        .await
        .expect("sgs")
        .security_groups()
        .len();
    let igws = ec2
        .describe_internet_gateways()
        .filters(f())
        .send()
        .await
        .expect("igws")
        .internet_gateways()
        .len();
    let tables = ec2
        .describe_route_tables()
        .filters(f())
        .send()
        .await
        .expect("rtbs")
        .route_tables()
        .len();
    let running = instances(lab).await.len();
    // LocalStack ignores PathPrefix: compare paths here.
    let iam = aws_sdk_iam::Client::new(&config);
    let path = format!("/labctl/{lab}/{REGION}/");
    let roles = iam
        .list_roles()
        .send()
        .await
        .expect("roles")
        .roles()
        .iter()
        .filter(|r| r.path() == path)
        .count();
    let profiles = iam
        .list_instance_profiles()
        .send()
        .await
        .expect("profiles")
        .instance_profiles()
        .iter()
        .filter(|p| p.path() == path)
        .count();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let buckets = s3
        .list_buckets()
        .send()
        .await
        .expect("buckets")
        .buckets()
        .iter()
        .filter(|b| b.name().is_some_and(|n| n.starts_with(&format!("{lab}-"))))
        .count();
    let r53 = aws_sdk_route53::Client::new(&config);
    let zones = r53
        .list_hosted_zones()
        .send()
        .await
        .expect("zones")
        .hosted_zones()
        .iter()
        .filter(|z| z.caller_reference().starts_with(&format!("labctl:{lab}:")))
        .count();
    vpcs + subnets + groups + igws + tables + running + roles + profiles + buckets + zones
}

#[tokio::test(flavor = "multi_thread")]
async fn up_builds_the_default_lab_as_specified_and_down_removes_it() {
    let (sb, lab) = lab_sandbox("up");
    let sbr = &sb;
    tokio::task::block_in_place(|| {
        ok(sbr, &["up", "--yes"]);
        assert_eq!(plan_code(sbr).0, 0, "a second plan after up is empty");
    });
    let config = sdk_config(REGION).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);

    // Network: CIDRs, DNS attributes, public subnet, default route via the IGW.
    let vpcs = ec2
        .describe_vpcs()
        .filters(lab_filter(&lab))
        .send()
        .await
        .expect("vpcs");
    let vpc = &vpcs.vpcs()[0];
    assert_eq!(vpcs.vpcs().len(), 1);
    assert_eq!(vpc.cidr_block(), Some("10.0.0.0/16"));
    let vpc_id = vpc.vpc_id().expect("vpc id").to_owned();
    for attr in [
        aws_sdk_ec2::types::VpcAttributeName::EnableDnsSupport,
        aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames,
    ] {
        let out = ec2
            .describe_vpc_attribute()
            .vpc_id(&vpc_id)
            .attribute(attr.clone())
            .send()
            .await
            .expect("attr");
        let on = out
            .enable_dns_support()
            .or(out.enable_dns_hostnames())
            .and_then(|v| v.value());
        assert_eq!(on, Some(true), "{attr:?}");
    }
    let subnets = ec2
        .describe_subnets()
        .filters(lab_filter(&lab))
        .send()
        .await
        .expect("subnets");
    let subnet = &subnets.subnets()[0];
    assert_eq!(subnet.cidr_block(), Some("10.0.1.0/24"));
    assert_eq!(subnet.map_public_ip_on_launch(), Some(true));
    let tables = ec2
        .describe_route_tables()
        .filters(lab_filter(&lab))
        .send()
        .await
        .expect("rtbs");
    let table = &tables.route_tables()[0];
    assert!(
        table
            .routes()
            .iter()
            .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0")
                && r.gateway_id().is_some_and(|g| g.starts_with("igw-")))
    );
    assert!(
        table
            .associations()
            .iter()
            .any(|a| a.subnet_id() == subnet.subnet_id())
    );

    // Security groups: role-sourced rules name the other role's group, nothing else.
    let server_sg = group_id(&lab, "server").await;
    let client_sg = group_id(&lab, "client").await;
    let groups = ec2
        .describe_security_groups()
        .group_ids(&server_sg)
        .send()
        .await
        .expect("sg");
    let ingress = groups.security_groups()[0].ip_permissions();
    let mut seen: Vec<(String, i32, i32)> = Vec::new();
    for p in ingress {
        assert!(
            p.ip_ranges().is_empty(),
            "no CIDR sources on the server: {p:?}"
        );
        for pair in p.user_id_group_pairs() {
            assert_eq!(pair.group_id(), Some(client_sg.as_str()), "{p:?}");
            seen.push((
                p.ip_protocol().unwrap_or_default().to_owned(),
                p.from_port().unwrap_or(-1),
                p.to_port().unwrap_or(-1),
            ));
        }
    }
    seen.sort();
    let expected = [
        ("icmp", -1, -1),
        ("tcp", 1234, 1234),
        ("tcp", 8080, 8080),
        ("tcp", 12000, 12001),
        ("udp", 1234, 1234),
    ];
    let expected: Vec<(String, i32, i32)> = expected
        .iter()
        .map(|(p, a, b)| ((*p).to_owned(), *a, *b))
        .collect();
    assert_eq!(seen, expected);

    // IAM: the role on the lab's path, both managed policies, an inline bucket policy.
    let iam = aws_sdk_iam::Client::new(&config);
    let role_name = format!("{lab}-DynamoDBAccessEC2");
    let role = iam
        .get_role()
        .role_name(&role_name)
        .send()
        .await
        .expect("role");
    assert_eq!(
        role.role().map(|r| r.path()),
        Some(format!("/labctl/{lab}/{REGION}/").as_str())
    );
    let attached = iam
        .list_attached_role_policies()
        .role_name(&role_name)
        .send()
        .await
        .expect("attached");
    let mut arns: Vec<&str> = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn())
        .collect();
    arns.sort();
    assert_eq!(
        arns,
        [
            "arn:aws:iam::aws:policy/AmazonDynamoDBFullAccess",
            "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
        ]
    );
    let bucket = format!("{lab}-captures-000000000000-{REGION}");
    let inline = iam
        .get_role_policy()
        .role_name(&role_name)
        .policy_name("labctl-bucket")
        .send()
        .await
        .expect("inline");
    let doc = percent_encoding::percent_decode_str(inline.policy_document())
        .decode_utf8()
        .expect("utf-8")
        .into_owned();
    let doc: serde_json::Value = serde_json::from_str(&doc).expect("policy JSON");
    let grants: Vec<(String, String)> = doc["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .flat_map(|st| {
            assert_eq!(st["Effect"], "Allow", "{st}");
            let action = st["Action"].as_str().expect("one action").to_owned();
            let resources = match &st["Resource"] {
                serde_json::Value::String(r) => vec![r.clone()],
                list => list
                    .as_array()
                    .expect("resources")
                    .iter()
                    .map(|r| r.as_str().expect("resource").to_owned())
                    .collect(),
            };
            resources.into_iter().map(move |r| (action.clone(), r))
        })
        .collect();
    let arn = |key: &str| format!("arn:aws:s3:::{bucket}/{key}");
    assert_eq!(
        grants,
        [
            ("s3:GetObject".into(), arn("artifacts/labnet/*")),
            ("s3:PutObject".into(), arn("reports/${aws:userid}.json")),
            ("s3:PutObject".into(), arn("captures/${aws:userid}/*")),
        ],
        "least privilege: read labnet, write the instance's own report and captures, nothing else"
    );

    // Bucket: private, encrypted, TLS only, tagged.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let block = s3
        .get_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .expect("block");
    let block = block.public_access_block_configuration().expect("config");
    assert_eq!(
        (
            block.block_public_acls(),
            block.ignore_public_acls(),
            block.block_public_policy(),
            block.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    s3.get_bucket_encryption()
        .bucket(&bucket)
        .send()
        .await
        .expect("encryption configured");
    let policy = s3
        .get_bucket_policy()
        .bucket(&bucket)
        .send()
        .await
        .expect("policy");
    assert!(
        policy
            .policy()
            .unwrap_or_default()
            .contains("aws:SecureTransport")
    );
    let versioning = s3
        .get_bucket_versioning()
        .bucket(&bucket)
        .send()
        .await
        .expect("versioning");
    assert_eq!(
        versioning.status(),
        Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled),
        "versioned: no overwrite or delete loses a capture"
    );

    // Instances: type, profile, IMDSv2, user-data, and the records that point at them.
    let found = instances(&lab).await;
    assert_eq!(found.len(), 3);
    let mut ips = std::collections::BTreeMap::new();
    for i in &found {
        let name = tag(i.tags(), "labctl:address").expect("address tag");
        assert_eq!(i.instance_type().map(|t| t.as_str()), Some("t3.micro"));
        assert_eq!(i.image_id(), Some(AMI));
        assert!(
            i.iam_instance_profile()
                .and_then(|p| p.arn())
                .is_some_and(|a| a.ends_with(&format!("/{role_name}")))
        );
        assert_eq!(
            i.metadata_options()
                .and_then(|m| m.http_tokens())
                .map(|t| t.as_str()),
            Some("required")
        );
        let ud = crate::bootstrap::user_data_of(i.instance_id().expect("id")).await;
        let host = name.trim_start_matches("instance/");
        assert!(
            ud.starts_with("#cloud-config") && ud.contains(&format!("hostname: {host}")),
            "{ud}"
        );
        ips.insert(
            format!("{host}.lab.internal."),
            i.private_ip_address().expect("private ip").to_owned(),
        );
        // labctl's record of which id is which name, where instances cannot write.
        let id = i.instance_id().expect("id");
        let record = s3
            .get_object()
            .bucket(&bucket)
            .key(format!("instances/{id}.json"))
            .send()
            .await
            .expect("the instance is recorded");
        let record: serde_json::Value =
            serde_json::from_slice(&record.body.collect().await.expect("body").into_bytes())
                .expect("JSON record");
        assert_eq!(record["name"], host, "{record}");
        assert_eq!(record["instance_id"], id, "{record}");
    }
    let r53 = aws_sdk_route53::Client::new(&config);
    let zones = r53
        .list_hosted_zones_by_vpc()
        .vpc_id(&vpc_id)
        .vpc_region(REGION.into())
        .send()
        .await
        .expect("zones by vpc");
    let zone = zones
        .hosted_zone_summaries()
        .iter()
        .find(|z| z.name() == "lab.internal.")
        .expect("private zone on the VPC");
    let records = r53
        .list_resource_record_sets()
        .hosted_zone_id(zone.hosted_zone_id())
        .send()
        .await
        .expect("records");
    let mut a_records = std::collections::BTreeMap::new();
    for r in records
        .resource_record_sets()
        .iter()
        .filter(|r| r.r#type().as_str() == "A")
    {
        a_records.insert(
            r.name().to_owned(),
            r.resource_records()[0].value().to_owned(),
        );
        assert_eq!(r.ttl(), Some(60));
    }
    assert_eq!(
        a_records, ips,
        "one A record per instance, at its private address"
    );

    tokio::task::block_in_place(|| {
        let status = ok(sbr, &["status", "--json"]);
        let doc: serde_json::Value = serde_json::from_str(&status).expect("json");
        assert_eq!(doc["instances"].as_array().map(Vec::len), Some(3));
        ok(sbr, &["down", "--yes"]);
        ok(sbr, &["down", "--yes"]); // twice is fine
    });
    assert_eq!(
        owned_count(&lab).await,
        0,
        "nothing tagged with the lab remains"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_is_detected_by_plan_and_repaired_by_up() {
    let (sb, lab) = lab_sandbox("drift");
    tokio::task::block_in_place(|| ok(&sb, &["up", "--yes"]));
    let ec2 = ec2().await;
    let server_sg = group_id(&lab, "server").await;
    let client_sg = group_id(&lab, "client").await;
    // Out of band: revoke the server's 8080 rule, open SSH to the world on the client,
    // delete a DNS record, terminate an instance.
    let perm = |from: i32, to: i32| {
        aws_sdk_ec2::types::IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(from)
            .to_port(to)
    };
    ec2.revoke_security_group_ingress()
        .group_id(&server_sg)
        .ip_permissions(
            perm(8080, 8080)
                .user_id_group_pairs(
                    aws_sdk_ec2::types::UserIdGroupPair::builder()
                        .group_id(&client_sg)
                        .description("intro + long message")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("revoke");
    ec2.authorize_security_group_ingress()
        .group_id(&client_sg)
        .ip_permissions(
            perm(22, 22)
                .ip_ranges(
                    aws_sdk_ec2::types::IpRange::builder()
                        .cidr_ip("0.0.0.0/0")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("authorize");
    let victim = instances(&lab)
        .await
        .into_iter()
        .find(|i| tag(i.tags(), "labctl:address").as_deref() == Some("instance/client-2"))
        .expect("client-2");
    ec2.terminate_instances()
        .instance_ids(victim.instance_id().expect("id"))
        .send()
        .await
        .expect("terminate");
    // A stopped instance (the lifetime guard does this) is started again, not replaced.
    let sleeper = instances(&lab)
        .await
        .into_iter()
        .find(|i| tag(i.tags(), "labctl:address").as_deref() == Some("instance/client-1"))
        .expect("client-1");
    let sleeper_id = sleeper.instance_id().expect("id").to_owned();
    ec2.stop_instances()
        .instance_ids(&sleeper_id)
        .send()
        .await
        .expect("stop");
    let config = sdk_config(REGION).await;
    let r53 = aws_sdk_route53::Client::new(&config);
    let vpc = ec2
        .describe_vpcs()
        .filters(lab_filter(&lab))
        .send()
        .await
        .expect("vpc");
    let vpc_id = vpc.vpcs()[0].vpc_id().expect("id").to_owned();
    let zone = r53
        .list_hosted_zones_by_vpc()
        .vpc_id(&vpc_id)
        .vpc_region(REGION.into())
        .send()
        .await
        .expect("zones");
    let zone_id = zone.hosted_zone_summaries()[0].hosted_zone_id().to_owned();
    let records = r53
        .list_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .send()
        .await
        .expect("records");
    let server = records
        .resource_record_sets()
        .iter()
        .find(|r| r.name() == "server.lab.internal.")
        .expect("record")
        .clone();
    delete_record_set(&r53, &zone_id, server).await;

    tokio::task::block_in_place(|| {
        let (code, plan) = plan_code(&sb);
        assert_eq!(code, 2, "{plan}");
        assert!(plan.contains("~ sg-rules/server"), "{plan}");
        assert!(plan.contains("tcp/8080 role:client"), "{plan}");
        assert!(plan.contains("~ sg-rules/client"), "{plan}");
        assert!(plan.contains("tcp/22 0.0.0.0/0"), "{plan}");
        assert!(plan.contains("+ instance/client-2"), "{plan}");
        assert!(plan.contains("+ dns-record/server"), "{plan}");
        assert!(
            plan.contains("~ dns-record/client-2"),
            "the record follows the new instance: {plan}"
        );
        assert!(plan.contains("~ instance/client-1"), "{plan}");
        assert!(plan.contains("running: false -> true"), "{plan}");
        assert!(
            !plan.contains("-/+ instance/client-1"),
            "a stopped instance is not replaced: {plan}"
        );
        ok(&sb, &["up", "--yes"]);
        assert_eq!(plan_code(&sb).0, 0, "up repaired the drift");
    });
    let groups = ec2
        .describe_security_groups()
        .group_ids(&client_sg)
        .send()
        .await
        .expect("sg");
    let world = groups.security_groups()[0]
        .ip_permissions()
        .iter()
        .any(|p| !p.ip_ranges().is_empty());
    assert!(!world, "the out-of-band SSH rule is gone");
    let woken = ec2
        .describe_instances()
        .instance_ids(&sleeper_id)
        .send()
        .await
        .expect("describe");
    let state = woken.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .cloned();
    assert!(
        matches!(
            state,
            Some(
                aws_sdk_ec2::types::InstanceStateName::Running
                    | aws_sdk_ec2::types::InstanceStateName::Pending
            )
        ),
        "the same instance runs again: {state:?}"
    );
    tokio::task::block_in_place(|| ok(&sb, &["down", "--yes"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn editing_the_topology_yields_the_expected_plan_and_result() {
    let (sb, lab) = lab_sandbox("edit");
    tokio::task::block_in_place(|| ok(&sb, &["up", "--yes"]));
    // Three clients instead of two, 8080 becomes 8081, and the server goes away.
    let text = default_lab(&lab)
        .replace("count: 2", "count: 3")
        .replace("ports: 8080,", "ports: 8081,");
    let server_start = text.find("  - name: server").expect("server entry");
    let client_start = text.find("  - name: client").expect("client entry");
    let edited = format!("{}{}", &text[..server_start], &text[client_start..]);
    sb.write("topology.yaml", &edited);
    tokio::task::block_in_place(|| {
        let (code, plan) = plan_code(&sb);
        assert_eq!(code, 2);
        for expected in [
            "+ instance/client-3",
            "+ dns-record/client-3",
            "~ sg-rules/server",
            "tcp/8080 role:client",
            "tcp/8081 role:client",
            "- instance/server",
            "- dns-record/server",
        ] {
            assert!(plan.contains(expected), "missing {expected:?} in\n{plan}");
        }
        assert!(
            plan.contains("Plan: 2 to add, 1 to change, 0 to replace, 2 to destroy"),
            "{plan}"
        );
        // Deleting needs consent: without --yes and without a terminal, nothing happens.
        let refused = sb.run(&["up"]);
        assert_eq!(refused.code(), 1);
        assert!(
            refused.stderr().contains("--yes"),
            "{}",
            refused.transcript()
        );
        assert_eq!(plan_code(&sb).0, 2, "a refused up changed nothing");
        ok(&sb, &["up", "--yes"]);
        assert_eq!(plan_code(&sb).0, 0);
    });
    let names: Vec<String> = instances(&lab)
        .await
        .iter()
        .filter_map(|i| tag(i.tags(), "labctl:address"))
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(
        names,
        [
            "instance/client-1",
            "instance/client-2",
            "instance/client-3"
        ]
    );
    tokio::task::block_in_place(|| ok(&sb, &["down", "--yes"]));
    assert_eq!(owned_count(&lab).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn resources_the_lab_does_not_own_are_never_touched() {
    let (sb, lab) = lab_sandbox("own");
    let config = sdk_config(REGION).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    // Same Name as the lab's VPC, but not the lab's tag.
    let squatter = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Vpc)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("Name")
                        .value(&lab)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("create vpc");
    let squatter = squatter
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("id")
        .to_owned();
    tokio::task::block_in_place(|| {
        ok(&sb, &["up", "--yes"]);
        ok(&sb, &["down", "--yes"]);
    });
    let still = ec2
        .describe_vpcs()
        .vpc_ids(&squatter)
        .send()
        .await
        .expect("squatter survives");
    assert_eq!(still.vpcs().len(), 1);
    ec2.delete_vpc()
        .vpc_id(&squatter)
        .send()
        .await
        .expect("clean up");

    // An IAM role with the lab's role name outside the lab's path: a clash, reported
    // with its ARN before anything is created.
    let iam = aws_sdk_iam::Client::new(&config);
    let role = format!("{lab}-DynamoDBAccessEC2");
    iam.create_role()
        .role_name(&role)
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[]}"#)
        .send()
        .await
        .expect("create role");
    let run = tokio::task::block_in_place(|| sb.run(&["up", "--yes"]));
    assert_eq!(run.code(), 1);
    assert!(
        run.stderr().contains(&format!(
            "IAM role {role} already exists (arn:aws:iam::000000000000:role/{role})"
        )),
        "{}",
        run.transcript()
    );
    assert_eq!(owned_count(&lab).await, 0, "nothing was created");
    iam.get_role()
        .role_name(&role)
        .send()
        .await
        .expect("the foreign role is untouched");
    iam.delete_role()
        .role_name(&role)
        .send()
        .await
        .expect("clean up");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_up_converges_on_the_next_up_and_down_leaves_nothing() {
    let (sb, lab) = lab_sandbox("kill");
    // Kill `up` as soon as it reports its first created resource.
    let mut child = sb
        .labctl(&["up", "--yes"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn labctl up");
    let stderr = child.stderr.take().expect("stderr");
    for line in BufReader::new(stderr).lines() {
        if line.expect("line").contains("✓ create") {
            child.kill().expect("kill labctl");
            break;
        }
    }
    let status = child.wait().expect("wait");
    assert!(!status.success(), "up was interrupted");
    let partial = owned_count(&lab).await;
    assert!(
        partial > 0 && partial < 12,
        "a partial lab exists: {partial}"
    );
    tokio::task::block_in_place(|| {
        assert_eq!(plan_code(&sb).0, 2);
        ok(&sb, &["up", "--yes"]);
        assert_eq!(plan_code(&sb).0, 0, "converged");
        ok(&sb, &["down", "--yes"]);
    });
    assert_eq!(owned_count(&lab).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn down_refuses_to_lose_captures_unless_told() {
    let (sb, lab) = lab_sandbox("cap");
    tokio::task::block_in_place(|| ok(&sb, &["up", "--yes"]));
    let config = sdk_config(REGION).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let bucket = format!("{lab}-captures-000000000000-{REGION}");
    // Two captures, one overwritten and one deleted since: one file is current, and
    // three versions are evidence the bucket still holds.
    for key in [
        "captures/server/a.pcap",
        "captures/client-1/b.pcap",
        "captures/server/a.pcap",
    ] {
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(b"pcap".to_vec().into())
            .send()
            .await
            .expect("put");
    }
    s3.delete_object()
        .bucket(&bucket)
        .key("captures/client-1/b.pcap")
        .send()
        .await
        .expect("delete");
    tokio::task::block_in_place(|| {
        let refused = sb.run(&["down", "--yes"]);
        assert_eq!(refused.code(), 1);
        assert!(
            refused.stderr().contains(
                "still holds 1 capture file(s) under captures/ (3 stored version(s), counting \
                 overwritten and deleted ones)"
            ),
            "{}",
            refused.transcript()
        );
        assert_eq!(plan_code(&sb).0, 0, "nothing was deleted");
        ok(&sb, &["down", "--yes", "--delete-captures"]);
    });
    assert_eq!(owned_count(&lab).await, 0);
    // Every version and delete marker went, so the bucket could go.
    assert!(
        s3.head_bucket().bucket(&bucket).send().await.is_err(),
        "{bucket} is gone"
    );
}

#[test]
fn invalid_topology_makes_no_api_call_and_bad_endpoints_are_one_line() {
    // The endpoint is unreachable: a topology error must come first, alone.
    let sb = Sandbox::new();
    sb.write(
        "topology.yaml",
        &default_lab("bad").replace("count: 2", "count: 0"),
    );
    let run = sb.run(&["up", "--yes", "--api-stats"]);
    assert_eq!(run.code(), 1);
    assert!(
        run.stderr().contains("count must be at least 1"),
        "{}",
        run.transcript()
    );
    assert!(
        run.stderr().contains("labctl: 0 AWS API calls"),
        "{}",
        run.transcript()
    );

    sb.write("topology.yaml", &default_lab("unreach"));
    let run = sb.run(&["plan"]);
    assert_eq!(run.code(), 1);
    assert_eq!(run.stderr().lines().count(), 1, "{}", run.transcript());
    assert!(
        run.stderr()
            .contains("cannot reach STS at http://127.0.0.1:9"),
        "{}",
        run.transcript()
    );
}

/// LocalStack accepts any credentials, so a rejection cannot come from it: this test
/// stands up a loopback endpoint that answers like STS does for a bad key (a stand-in
/// for real AWS, the one double in this file).
#[test]
fn rejected_credentials_are_one_clear_line() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let body = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
                    <Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message>\
                    </Error><RequestId>1</RequestId></ErrorResponse>";
        // The SDK does not retry this error: one request is all it sends.
        if let Ok((mut conn, _)) = listener.accept() {
            let mut buf = [0u8; 8192];
            let _ = conn.read(&mut buf);
            let reply = format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    let sb = Sandbox::new();
    sb.write("topology.yaml", &default_lab("creds"));
    let mut cmd = sb.labctl(&["plan"]);
    cmd.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"));
    let out = cmd.output().expect("run");
    server.join().expect("server thread");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("rejected the credentials (InvalidClientTokenId"),
        "{stderr}"
    );
}
