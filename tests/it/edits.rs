//! Every key of the topology that `up` acts on, edited on a lab that is up: the plan
//! names the action, one `up` applies it, the next plan is empty, and AWS holds the
//! edited value, read with the SDK directly. Then the edit is undone the same way.

use std::collections::BTreeSet;

use crate::harness::{Sandbox, Teardown, sdk_config, unique_lab};
use crate::reconcile::{REGION, default_lab, ec2, instances, lab_filter, tag};

/// A second x86_64 Ubuntu image in LocalStack's catalogue.
const OTHER_AMI: &str = "ami-1e749f67";

/// Brings a default lab up, makes `edits` to its topology, and checks each direction:
/// `plan --detailed-exitcode` is 2 and shows every line of `plan_has` (the edited
/// direction) or `undo_has` (back), one `up` succeeds, the next plan is 0, and
/// `check(lab, edited)` holds.
async fn round_trip(
    prefix: &str,
    edits: &[(&str, &str)],
    plan_has: &[&str],
    undo_has: &[&str],
    check: impl AsyncFn(&str, bool),
) {
    round_trip_from(prefix, &[], edits, plan_has, undo_has, check).await;
}

/// [`round_trip`] from the default lab with `base` applied first.
async fn round_trip_from(
    prefix: &str,
    base: &[(&str, &str)],
    edits: &[(&str, &str)],
    plan_has: &[&str],
    undo_has: &[&str],
    check: impl AsyncFn(&str, bool),
) {
    let lab = unique_lab(prefix);
    let sb = Sandbox::with_localstack();
    let mut original = default_lab(&lab);
    for (from, to) in base {
        assert!(original.contains(from), "the default lab has {from:?}");
        original = original.replacen(from, to, 1);
    }
    let mut edited = original.clone();
    for (from, to) in edits {
        assert!(edited.contains(from), "the default lab has {from:?}");
        edited = edited.replacen(from, &to.replace("{lab}", &lab), 1);
    }
    sb.write("topology.yaml", &original);
    let _down = Teardown::new(&sb, &["--delete-captures"]);
    tokio::task::block_in_place(|| apply(&sb, &[]));
    check(&lab, false).await;
    sb.write("topology.yaml", &edited);
    tokio::task::block_in_place(|| apply(&sb, plan_has));
    check(&lab, true).await;
    sb.write("topology.yaml", &original);
    tokio::task::block_in_place(|| apply(&sb, undo_has));
    check(&lab, false).await;
}

/// Plan (pending changes, showing `plan_has`), up, plan again (nothing left). With
/// no lines to look for, the lab is being brought up from nothing.
fn apply(sb: &Sandbox, plan_has: &[&str]) {
    let plan = sb.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code(), 2, "changes are pending\n{}", plan.transcript());
    for line in plan_has {
        assert!(
            plan.stdout().contains(line),
            "plan lacks {line:?}\n{}",
            plan.stdout()
        );
    }
    let up = sb.run(&["up", "--yes"]);
    assert_eq!(up.code(), 0, "one up applies it\n{}", up.transcript());
    let again = sb.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        again.code(),
        0,
        "nothing left to do\n{}",
        again.transcript()
    );
}

/// One rule of a group as AWS holds it: (protocol, from, to, peer, description), the
/// peer a CIDR or the name of the group it names.
type Rule = (String, i32, i32, String, Option<String>);

/// A role's group's rules, read from EC2.
async fn rules(lab: &str, role: &str, egress: bool) -> BTreeSet<Rule> {
    let ec2 = ec2().await;
    let groups = ec2
        .describe_security_groups()
        .filters(lab_filter(lab))
        .send()
        .await
        .expect("describe groups");
    let name_of = |id: &str| {
        groups
            .security_groups()
            .iter()
            .find(|g| g.group_id() == Some(id))
            .and_then(|g| g.group_name())
            .unwrap_or(id)
            .to_owned()
    };
    let group = groups
        .security_groups()
        .iter()
        .find(|g| g.group_name() == Some(&format!("{lab}-{role}")))
        .expect("the role's group");
    let perms = if egress {
        group.ip_permissions_egress()
    } else {
        group.ip_permissions()
    };
    let mut out = BTreeSet::new();
    for p in perms {
        let proto = p.ip_protocol().unwrap_or_default().to_owned();
        let (from, to) = (p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1));
        for r in p.ip_ranges() {
            let peer = r.cidr_ip().unwrap_or_default().to_owned();
            out.insert((
                proto.clone(),
                from,
                to,
                peer,
                r.description().map(str::to_owned),
            ));
        }
        for g in p.user_id_group_pairs() {
            let peer = name_of(g.group_id().unwrap_or_default());
            out.insert((
                proto.clone(),
                from,
                to,
                peer,
                g.description().map(str::to_owned),
            ));
        }
    }
    out
}

fn rule(proto: &str, from: i32, to: i32, peer: &str, description: Option<&str>) -> Rule {
    (
        proto.to_owned(),
        from,
        to,
        peer.to_owned(),
        description.map(str::to_owned),
    )
}

/// The lab's running instances by name: (type, image, tags).
async fn instance_named(lab: &str, name: &str) -> aws_sdk_ec2::types::Instance {
    instances(lab)
        .await
        .into_iter()
        .find(|i| tag(i.tags(), "labctl:address").as_deref() == Some(&format!("instance/{name}")))
        .unwrap_or_else(|| panic!("instance/{name} runs"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rules_description() {
    let before = rule("tcp", 8080, 8080, "client", Some("intro + long message"));
    let after = rule("tcp", 8080, 8080, "client", Some("the threading lab"));
    round_trip(
        "ed-desc",
        &[(
            "description: intro + long message",
            "description: the threading lab",
        )],
        &[
            "~ sg-rules/server",
            "+tcp/8080 role:client \"the threading lab\"",
        ],
        &[
            "~ sg-rules/server",
            "+tcp/8080 role:client \"intro + long message\"",
        ],
        async |lab, edited| {
            let have = rules(lab, "server", false).await;
            let (want, gone) = if edited {
                (&after, &before)
            } else {
                (&before, &after)
            };
            let want = rule(
                &want.0,
                want.1,
                want.2,
                &format!("{lab}-client"),
                want.4.as_deref(),
            );
            let gone = rule(
                &gone.0,
                gone.1,
                gone.2,
                &format!("{lab}-client"),
                gone.4.as_deref(),
            );
            assert!(have.contains(&want) && !have.contains(&gone), "{have:?}");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rules_ports_protocol_and_source() {
    round_trip(
        "ed-rule",
        &[
            ("ports: 8080,", "ports: 8081,"),
            ("proto: udp,  ports: 1234", "proto: udp,  ports: 1235"),
            (
                "{ proto: tcp,  ports: 12000-12001, from: [role:client]",
                "{ proto: tcp,  ports: 12000-12001, from: [203.0.113.7/32]",
            ),
            (
                "{ proto: icmp, from: [role:server]",
                "{ proto: all, from: [role:server]",
            ),
        ],
        &[
            "~ sg-rules/server",
            "-tcp/8080 role:client",
            "+tcp/8081 role:client",
            "+udp/1235 role:client",
            "+tcp/12000-12001 203.0.113.7/32",
            "~ sg-rules/client",
            "+all role:server",
        ],
        &[
            "~ sg-rules/server",
            "+tcp/8080 role:client",
            "~ sg-rules/client",
        ],
        async |lab, edited| {
            let server = rules(lab, "server", false).await;
            let client = rules(lab, "client", false).await;
            let ports: BTreeSet<(String, i32, String)> = server
                .iter()
                .map(|r| (r.0.clone(), r.1, r.3.clone()))
                .collect();
            let c = format!("{lab}-client");
            let s = format!("{lab}-server");
            let has =
                |p: &str, port: i32, peer: &str| ports.contains(&(p.into(), port, peer.into()));
            if edited {
                assert!(has("tcp", 8081, &c) && !has("tcp", 8080, &c), "{server:?}");
                assert!(has("udp", 1235, &c) && !has("udp", 1234, &c), "{server:?}");
                assert!(
                    has("tcp", 12000, "203.0.113.7/32") && !has("tcp", 12000, &c),
                    "{server:?}"
                );
                assert!(client.iter().any(|r| r.0 == "-1" && r.3 == s), "{client:?}");
            } else {
                assert!(has("tcp", 8080, &c) && !has("tcp", 8081, &c), "{server:?}");
                assert!(has("udp", 1234, &c) && has("tcp", 12000, &c), "{server:?}");
                assert!(client.iter().all(|r| r.0 == "icmp"), "{client:?}");
            }
            assert_eq!(server.len(), 5, "{server:?}");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_added_and_egress() {
    round_trip(
        "ed-add",
        &[(
            "  client:\n    ingress:\n      - { proto: icmp, from: [role:server], description: ping }\n",
            "  client:\n    ingress:\n      - { proto: icmp, from: [role:server], description: ping }\n      - { proto: tcp, ports: 9000, from: [role:server] }\n    egress:\n      - { proto: tcp, ports: 443, to: [0.0.0.0/0], allow_world: true }\n",
        )],
        &["~ sg-rules/client", "+tcp/9000 role:server", "egress: -all 0.0.0.0/0, +tcp/443 0.0.0.0/0"],
        &["~ sg-rules/client", "-tcp/9000 role:server"],
        async |lab, edited| {
            let ingress = rules(lab, "client", false).await;
            let egress = rules(lab, "client", true).await;
            let s = format!("{lab}-server");
            if edited {
                assert!(ingress.contains(&rule("tcp", 9000, 9000, &s, None)), "{ingress:?}");
                assert_eq!(egress, BTreeSet::from([rule("tcp", 443, 443, "0.0.0.0/0", None)]));
            } else {
                assert_eq!(ingress.len(), 1, "{ingress:?}");
                assert_eq!(egress, BTreeSet::from([rule("-1", -1, -1, "0.0.0.0/0", None)]));
            }
        },
    )
    .await;
}

/// The lab's hosted zones: (name, records as (name, ttl, values)).
async fn zones(lab: &str) -> Vec<(String, Vec<(String, i64, Vec<String>)>)> {
    let r53 = aws_sdk_route53::Client::new(&sdk_config(REGION).await);
    let listed = r53.list_hosted_zones().send().await.expect("zones");
    let mut out = Vec::new();
    for z in listed.hosted_zones() {
        if !z.caller_reference().starts_with(&format!("labctl:{lab}:")) {
            continue;
        }
        let sets = r53
            .list_resource_record_sets()
            .hosted_zone_id(z.id())
            .send()
            .await
            .expect("records");
        let records = sets
            .resource_record_sets()
            .iter()
            .filter(|r| r.r#type().as_str() == "A")
            .map(|r| {
                let values = r
                    .resource_records()
                    .iter()
                    .map(|v| v.value().to_owned())
                    .collect();
                (r.name().to_owned(), r.ttl().unwrap_or(0), values)
            })
            .collect();
        out.push((z.name().trim_end_matches('.').to_owned(), records));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_ttl_and_zone() {
    round_trip(
        "ed-dns",
        &[
            ("zone: lab.internal", "zone: lab.test"),
            ("ttl: 60", "ttl: 300"),
        ],
        &["-/+ dns-zone", "-/+ dns-record/server"],
        &["-/+ dns-zone", "-/+ dns-record/client-1"],
        async |lab, edited| {
            let zones = zones(lab).await;
            assert_eq!(zones.len(), 1, "one zone: {zones:?}");
            let (zone, records) = &zones[0];
            let (name, ttl) = if edited {
                ("lab.test", 300)
            } else {
                ("lab.internal", 60)
            };
            assert_eq!(zone, name);
            assert_eq!(records.len(), 3, "{records:?}");
            for (record, t, values) in records {
                assert!(record.trim_end_matches('.').ends_with(name), "{record}");
                assert_eq!(*t, ttl, "{record}");
                assert_eq!(values.len(), 1, "{record}");
            }
            let server = instance_named(lab, "server").await;
            let ip = server.private_ip_address().expect("private ip");
            assert!(
                records
                    .iter()
                    .any(|(r, _, v)| r.starts_with("server.") && v[0] == ip),
                "server's record holds its address: {records:?}"
            );
        },
    )
    .await;
}

/// A managed policy AWS keeps under a path is attached by its real ARN, found from
/// its name; a name that names nothing stops `plan` and `up` before any change.
#[tokio::test(flavor = "multi_thread")]
async fn a_managed_policy_under_a_path() {
    let unknown = std::sync::atomic::AtomicBool::new(false);
    round_trip(
        "ed-pol",
        &[(
            "[AmazonDynamoDBFullAccess, AmazonSSMManagedInstanceCore]",
            "[AmazonEC2RoleforSSM, AmazonSSMManagedInstanceCore]",
        )],
        &["~ iam-role", "arn:aws:iam::aws:policy/service-role/AmazonEC2RoleforSSM"],
        &["~ iam-role"],
        async |lab, edited| {
            let iam = aws_sdk_iam::Client::new(&sdk_config(REGION).await);
            let attached = iam
                .list_attached_role_policies()
                .role_name(format!("{lab}-DynamoDBAccessEC2"))
                .send()
                .await
                .expect("policies");
            let arns: Vec<&str> = attached
                .attached_policies()
                .iter()
                .filter_map(|p| p.policy_arn())
                .collect();
            assert_eq!(
                arns.contains(&"arn:aws:iam::aws:policy/service-role/AmazonEC2RoleforSSM"),
                edited,
                "{arns:?}"
            );
            if !unknown.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let sb = Sandbox::with_localstack();
                sb.write(
                    "topology.yaml",
                    &default_lab(lab).replace("AmazonDynamoDBFullAccess", "AmazonNoSuchPolicy"),
                );
                for command in [&["plan"][..], &["up", "--yes"][..]] {
                    let run = sb.run(command);
                    assert_eq!(run.code(), 1, "{}", run.transcript());
                    assert!(
                        run.stderr().contains(
                            "managed policy `AmazonNoSuchPolicy` does not exist, neither AWS's nor this account's"
                        ),
                        "{}",
                        run.transcript()
                    );
                }
            }
        },
    )
    .await;
}

/// `dynamodb: { tables: [...] }` instead of AmazonDynamoDBFullAccess: the role gets
/// labctl's scoped policy for exactly those tables, in place, and loses it again.
#[tokio::test(flavor = "multi_thread")]
async fn the_roles_dynamodb_tables() {
    round_trip(
        "ed-ddb",
        &[(
            "managed_policies: [AmazonDynamoDBFullAccess, AmazonSSMManagedInstanceCore]",
            "managed_policies: [AmazonSSMManagedInstanceCore]\n    dynamodb: { tables: [Music, lab.events] }",
        )],
        &["~ iam-role", "dynamodb_tables: none -> arn:aws:dynamodb:"],
        &["~ iam-role", "-> none"],
        async |lab, edited| {
            let iam = aws_sdk_iam::Client::new(&sdk_config(REGION).await);
            let role = format!("{lab}-DynamoDBAccessEC2");
            let inline = iam
                .get_role_policy()
                .role_name(&role)
                .policy_name("labctl-dynamodb")
                .send()
                .await;
            let attached = iam
                .list_attached_role_policies()
                .role_name(&role)
                .send()
                .await
                .expect("policies");
            let full = attached
                .attached_policies()
                .iter()
                .any(|p| p.policy_name() == Some("AmazonDynamoDBFullAccess"));
            if !edited {
                assert!(inline.is_err(), "no scoped policy without tables");
                assert!(full, "the managed policy is back");
                return;
            }
            assert!(!full, "the managed policy is gone");
            let doc = inline.expect("the scoped policy");
            let doc = percent_encoding::percent_decode_str(doc.policy_document())
                .decode_utf8()
                .expect("UTF-8")
                .into_owned();
            let doc: serde_json::Value = serde_json::from_str(&doc).expect("JSON");
            let arn = |t: &str| format!("arn:aws:dynamodb:{REGION}:000000000000:table/{t}");
            assert_eq!(
                doc["Statement"][0]["Resource"],
                serde_json::json!([
                    arn("Music"),
                    format!("{}/*", arn("Music")),
                    arn("lab.events"),
                    format!("{}/*", arn("lab.events"))
                ]),
                "{doc}"
            );
            assert_eq!(doc["Statement"][1]["Action"], "dynamodb:ListTables", "{doc}");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_roles_name_and_managed_policies() {
    round_trip(
        "ed-role",
        &[
            ("name: DynamoDBAccessEC2", "name: DynamoDBAccessEC3"),
            (
                "[AmazonDynamoDBFullAccess, AmazonSSMManagedInstanceCore]",
                "[AmazonSSMManagedInstanceCore]",
            ),
        ],
        &[
            "-/+ iam-role",
            "-/+ instance-profile",
            "~ instance/server",
            "profile:",
        ],
        &[
            "-/+ iam-role",
            "-/+ instance-profile",
            "~ instance/client-2",
        ],
        async |lab, edited| {
            let config = sdk_config(REGION).await;
            let iam = aws_sdk_iam::Client::new(&config);
            let (now, old) = if edited {
                ("EC3", "EC2")
            } else {
                ("EC2", "EC3")
            };
            let role = format!("{lab}-DynamoDBAccess{now}");
            let profile = iam
                .get_instance_profile()
                .instance_profile_name(&role)
                .send()
                .await
                .expect("the profile exists");
            let held: Vec<&str> = profile
                .instance_profile()
                .map(|p| p.roles().iter().map(|r| r.role_name()).collect())
                .unwrap_or_default();
            assert_eq!(held, [role.as_str()], "the profile holds the role");
            let attached = iam
                .list_attached_role_policies()
                .role_name(&role)
                .send()
                .await
                .expect("policies");
            let mut names: Vec<&str> = attached
                .attached_policies()
                .iter()
                .filter_map(|p| p.policy_name())
                .collect();
            names.sort();
            let want: &[&str] = if edited {
                &["AmazonSSMManagedInstanceCore"]
            } else {
                &["AmazonDynamoDBFullAccess", "AmazonSSMManagedInstanceCore"]
            };
            assert_eq!(names, want);
            let gone = format!("{lab}-DynamoDBAccess{old}");
            assert!(
                iam.get_role().role_name(&gone).send().await.is_err(),
                "{gone} is deleted"
            );
            assert!(
                iam.get_instance_profile()
                    .instance_profile_name(&gone)
                    .send()
                    .await
                    .is_err(),
                "profile {gone} is deleted"
            );
            // Every instance is associated with the new profile.
            let ec2 = ec2().await;
            let associations = ec2
                .describe_iam_instance_profile_associations()
                .send()
                .await
                .expect("associations");
            for i in instances(lab).await {
                let id = i.instance_id().expect("id");
                let arn = associations
                    .iam_instance_profile_associations()
                    .iter()
                    .find(|a| {
                        a.instance_id() == Some(id)
                            && a.state().is_some_and(|s| s.as_str() == "associated")
                    })
                    .and_then(|a| a.iam_instance_profile())
                    .and_then(|p| p.arn())
                    .unwrap_or_default()
                    .to_owned();
                assert!(arn.ends_with(&format!("/{role}")), "{id} has {arn}");
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_buckets_name_keeps_the_captures() {
    use sha2::Digest;
    let capture = b"\xd4\xc3\xb2\xa1 a capture that must survive the rename";
    let sha = hex(&sha2::Sha256::digest(capture));
    let draft = b"\xd4\xc3\xb2\xa1 the first take";
    let key = "captures/server/rename-1/a.pcap";
    let deleted = "captures/server/rename-1/b.pcap";
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk_config(REGION).await)
            .force_path_style(true)
            .build(),
    );
    let named = |lab: &str| format!("{lab}-renamed");
    let put = std::sync::atomic::AtomicBool::new(false);
    round_trip(
        "ed-bkt",
        &[("bucket: auto", "bucket: {lab}-renamed")],
        &[
            "-/+ bucket/captures",
            "captures/, reports/ and instances/ are copied",
            "~ iam-role",
            "-/+ instance/server",
        ],
        &["-/+ bucket/captures"],
        async |lab, edited| {
            let auto = format!("{lab}-captures-000000000000-{REGION}");
            let (now, old) = if edited {
                (named(lab), auto)
            } else {
                (auto, named(lab))
            };
            if !put.swap(true, std::sync::atomic::Ordering::SeqCst) {
                // The lab has just come up: a student's capture lands in the bucket,
                // is overwritten once, and another is deleted. Versioning keeps all.
                for body in [&draft[..], &capture[..]] {
                    s3.put_object()
                        .bucket(&now)
                        .key(key)
                        .body(body.to_vec().into())
                        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
                        .send()
                        .await
                        .expect("put a capture");
                }
                s3.put_object()
                    .bucket(&now)
                    .key(deleted)
                    .body(draft.to_vec().into())
                    .send()
                    .await
                    .expect("put a capture");
                s3.delete_object()
                    .bucket(&now)
                    .key(deleted)
                    .send()
                    .await
                    .expect("delete a capture");
            }
            // Every version came along, oldest first, and the deleted one stays deleted.
            let versions = s3
                .list_object_versions()
                .bucket(&now)
                .prefix("captures/")
                .send()
                .await
                .expect("versions");
            // S3 lists a key's versions newest first.
            let of = |k: &str| {
                let mut v: Vec<_> = versions
                    .versions()
                    .iter()
                    .filter(|v| v.key() == Some(k))
                    .collect();
                v.reverse();
                v
            };
            assert_eq!(of(key).len(), 2, "both versions of {key}: {versions:?}");
            assert_eq!(of(key)[1].is_latest(), Some(true));
            let older = s3
                .get_object()
                .bucket(&now)
                .key(key)
                .set_version_id(of(key)[0].version_id().map(str::to_owned))
                .send()
                .await
                .expect("the older version moved");
            let older = older.body.collect().await.expect("read").into_bytes();
            assert_eq!(
                &older[..],
                &draft[..],
                "the overwritten version, byte for byte"
            );
            assert_eq!(of(deleted).len(), 1, "{versions:?}");
            assert!(
                versions
                    .delete_markers()
                    .iter()
                    .any(|m| m.key() == Some(deleted) && m.is_latest() == Some(true)),
                "{deleted} is still deleted: {versions:?}"
            );
            assert!(
                s3.head_bucket().bucket(&old).send().await.is_err(),
                "{old} is gone"
            );
            let body = s3
                .get_object()
                .bucket(&now)
                .key(key)
                .send()
                .await
                .expect("the capture moved");
            let bytes = body.body.collect().await.expect("read").into_bytes();
            assert_eq!(hex(&sha2::Sha256::digest(&bytes)), sha, "byte for byte");
            let policy = s3
                .get_bucket_policy()
                .bucket(&now)
                .send()
                .await
                .expect("policy");
            assert!(
                policy
                    .policy()
                    .unwrap_or_default()
                    .contains("aws:SecureTransport")
            );
            let iam = aws_sdk_iam::Client::new(&sdk_config(REGION).await);
            let inline = iam
                .get_role_policy()
                .role_name(format!("{lab}-DynamoDBAccessEC2"))
                .policy_name("labctl-bucket")
                .send()
                .await
                .expect("inline policy");
            let doc = percent_encoding::percent_decode_str(inline.policy_document())
                .decode_utf8_lossy()
                .into_owned();
            assert!(
                doc.contains(&format!("arn:aws:s3:::{now}/")),
                "the role grants {now}: {doc}"
            );
        },
    )
    .await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instances_type_count_services_image_and_lifetime() {
    round_trip(
        "ed-inst",
        &[
            ("type: t3.micro\n    image", "type: t3.small\n    image"),
            (
                "services: [tcp-server, udp-server, alnum-server, echo-server, intro-server]",
                "services: [tcp-server, intro-server]",
            ),
            ("count: 2", "count: 3"),
            ("lifetime: 4h", "lifetime: 2h"),
        ],
        &[
            "+ instance/client-3",
            "-/+ instance/server",
            "services:",
            "lifetime: 4h -> 2h",
        ],
        &["- instance/client-3", "-/+ instance/server"],
        async |lab, edited| {
            let server = instance_named(lab, "server").await;
            let (ty, services, lifetime, clients) = if edited {
                ("t3.small", "intro-server,tcp-server", "120", 3)
            } else {
                (
                    "t3.micro",
                    "alnum-server,echo-server,intro-server,tcp-server,udp-server",
                    "240",
                    2,
                )
            };
            assert_eq!(server.instance_type().map(|t| t.as_str()), Some(ty));
            assert_eq!(
                tag(server.tags(), "labctl:services").as_deref(),
                Some(services)
            );
            assert_eq!(
                tag(server.tags(), "labctl:lifetime-minutes").as_deref(),
                Some(lifetime)
            );
            let all = instances(lab).await;
            assert_eq!(all.len(), 1 + clients, "one server and {clients} clients");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instances_image() {
    let ami = crate::reconcile::AMI;
    round_trip(
        "ed-img",
        &[(
            &format!("image: {ami}\n    services"),
            &format!("image: {OTHER_AMI}\n    services"),
        )],
        &[
            "-/+ instance/server",
            &format!("image: {ami} -> {OTHER_AMI}"),
        ],
        &["-/+ instance/server"],
        async |lab, edited| {
            let server = instance_named(lab, "server").await;
            let want = if edited { OTHER_AMI } else { ami };
            assert_eq!(server.image_id(), Some(want));
            let client = instance_named(lab, "client-1").await;
            assert_eq!(client.image_id(), Some(ami), "clients keep theirs");
        },
    )
    .await;
}

/// The lab's subnet: (id, cidr, public on launch), and the ids its route table serves.
async fn network(lab: &str) -> (String, String, bool, Vec<String>, String) {
    let ec2 = ec2().await;
    let subnets = ec2
        .describe_subnets()
        .filters(lab_filter(lab))
        .send()
        .await
        .expect("subnets");
    assert_eq!(
        subnets.subnets().len(),
        1,
        "one subnet: {:?}",
        subnets.subnets()
    );
    let s = &subnets.subnets()[0];
    let tables = ec2
        .describe_route_tables()
        .filters(lab_filter(lab))
        .send()
        .await
        .expect("tables");
    let associated = tables
        .route_tables()
        .iter()
        .flat_map(|t| t.associations())
        .filter_map(|a| a.subnet_id().map(str::to_owned))
        .collect();
    let vpcs = ec2
        .describe_vpcs()
        .filters(lab_filter(lab))
        .send()
        .await
        .expect("vpcs");
    assert_eq!(vpcs.vpcs().len(), 1, "one VPC");
    (
        s.subnet_id().unwrap_or_default().to_owned(),
        s.cidr_block().unwrap_or_default().to_owned(),
        s.map_public_ip_on_launch().unwrap_or(false),
        associated,
        vpcs.vpcs()[0].cidr_block().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_subnets_cidr() {
    round_trip(
        "ed-sub",
        &[("cidr: 10.0.1.0/24", "cidr: 10.0.2.0/24")],
        &[
            "-/+ subnet/lab",
            "~ route-table/public",
            "-/+ instance/client-1",
        ],
        &["-/+ subnet/lab", "~ route-table/public"],
        async |lab, edited| {
            let (id, cidr, public, associated, _) = network(lab).await;
            assert_eq!(cidr, if edited { "10.0.2.0/24" } else { "10.0.1.0/24" });
            assert!(public);
            assert_eq!(
                associated,
                std::slice::from_ref(&id),
                "the route table serves the new subnet"
            );
            for i in instances(lab).await {
                assert_eq!(i.subnet_id(), Some(id.as_str()));
            }
        },
    )
    .await;
}

/// A subnet with no instances going private (one with instances may not: it would
/// leave them no way out, which validation refuses).
#[tokio::test(flavor = "multi_thread")]
async fn a_spare_subnet_going_private() {
    const SPARE: &str = "dns:\n";
    round_trip_from(
        "ed-priv",
        &[(
            SPARE,
            "    - { name: spare, cidr: 10.0.2.0/24, public: true }\n\ndns:\n",
        )],
        &[(
            "{ name: spare, cidr: 10.0.2.0/24, public: true }",
            "{ name: spare, cidr: 10.0.2.0/24, public: false }",
        )],
        &["~ subnet/spare", "~ route-table/public"],
        &["~ subnet/spare", "~ route-table/public"],
        async |lab, edited| {
            let ec2 = ec2().await;
            let subnets = ec2
                .describe_subnets()
                .filters(lab_filter(lab))
                .send()
                .await
                .expect("subnets");
            let spare = subnets
                .subnets()
                .iter()
                .find(|s| s.cidr_block() == Some("10.0.2.0/24"))
                .expect("the spare subnet");
            let lab_subnet = subnets
                .subnets()
                .iter()
                .find(|s| s.cidr_block() == Some("10.0.1.0/24"))
                .expect("the instances' subnet");
            assert_eq!(spare.map_public_ip_on_launch(), Some(!edited));
            assert_eq!(lab_subnet.map_public_ip_on_launch(), Some(true));
            let tables = ec2
                .describe_route_tables()
                .filters(lab_filter(lab))
                .send()
                .await
                .expect("tables");
            let associated: Vec<&str> = tables
                .route_tables()
                .iter()
                .flat_map(|t| t.associations())
                .filter_map(|a| a.subnet_id())
                .collect();
            assert_eq!(
                associated.contains(&spare.subnet_id().unwrap_or_default()),
                !edited
            );
            assert!(associated.contains(&lab_subnet.subnet_id().unwrap_or_default()));
            for i in instances(lab).await {
                assert!(i.public_ip_address().is_some(), "{:?}", i.instance_id());
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_vpcs_cidr() {
    round_trip(
        "ed-vpc",
        &[
            ("cidr: 10.0.0.0/16", "cidr: 10.1.0.0/16"),
            ("cidr: 10.0.1.0/24", "cidr: 10.1.1.0/24"),
        ],
        &[
            "-/+ vpc",
            "-/+ subnet/lab",
            "-/+ sg/server",
            "-/+ dns-zone",
            "-/+ instance/server",
        ],
        &["-/+ vpc", "-/+ igw"],
        async |lab, edited| {
            let (id, cidr, _, associated, vpc) = network(lab).await;
            let (v, s) = if edited {
                ("10.1.0.0/16", "10.1.1.0/24")
            } else {
                ("10.0.0.0/16", "10.0.1.0/24")
            };
            assert_eq!((vpc.as_str(), cidr.as_str()), (v, s));
            assert_eq!(associated, [id]);
            assert_eq!(zones(lab).await.len(), 1, "one zone");
            assert_eq!(instances(lab).await.len(), 3);
        },
    )
    .await;
}
