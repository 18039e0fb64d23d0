//! What a lab claims as its own, checked with the SDK directly: its name is
//! account-wide, strangers of its names are never adopted, marks written by the
//! release before are still found, text from AWS is never sliced as bytes, and only
//! the commands that plan pay for a `my-ip` lookup.

use crate::harness::{Sandbox, Teardown, sdk_config, unique_lab};
use crate::myip::{Checkip, PUBLIC};
use crate::reconcile::{
    REGION, default_lab, delete_record_set, lab_filter, lab_up, owned_count, vpc_id,
};

#[test]
fn only_plan_and_up_look_up_my_ip() {
    let lab = unique_lab("myip");
    let sb = Sandbox::with_localstack();
    let text = default_lab(&lab).replace(
        "      - { proto: icmp,                     from: [role:client], description: ping }\n",
        "      - { proto: icmp,                     from: [role:client], description: ping }\n      - { proto: tcp, ports: 22, from: [my-ip] }\n",
    );
    assert!(text.contains("my-ip"));
    sb.write("topology.yaml", &text);
    let checkip = Checkip::answering(PUBLIC);
    let run = |args: &[&str]| {
        let out = checkip
            .point(&mut sb.labctl(args))
            .output()
            .expect("labctl runs");
        crate::harness::Run(out)
    };
    for args in [
        &["status"][..],
        &["down", "--yes"],
        &["pcap-fetch", "--list"],
        &["exec", "all", "--", "true"],
    ] {
        let out = run(args);
        assert_eq!(
            checkip.asked(),
            0,
            "{args:?} looked up my-ip\n{}",
            out.transcript()
        );
    }
    let plan = run(&["plan"]);
    assert_eq!(plan.code(), 0, "{}", plan.transcript());
    assert!(
        plan.stdout().contains(&format!("tcp/22 {PUBLIC}/32")),
        "{}",
        plan.stdout()
    );
    assert_eq!(checkip.asked(), 1, "plan asked once");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_labs_name_is_account_wide() {
    let lab = unique_lab("region");
    let sb = Sandbox::with_localstack();
    let text = default_lab(&lab).replace(&format!("region: {REGION}\n"), "");
    assert!(!text.contains("region:"), "the lab names no region");
    sb.write("topology.yaml", &text);
    let _down = Teardown::new(&sb, &["--region", REGION]);
    tokio::task::block_in_place(|| {
        let up = sb.run(&["--region", REGION, "up", "--yes"]);
        assert_eq!(up.code(), 0, "{}", up.transcript());
        for args in [
            &["--region", "us-east-1", "plan"][..],
            &["--region", "us-east-1", "status"],
            &["--region", "us-east-1", "up", "--yes"],
            &["--region", "us-east-1", "down", "--yes"],
        ] {
            let run = sb.run(args);
            assert_eq!(run.code(), 1, "{args:?}\n{}", run.transcript());
            // The role's or the profile's ARN, whichever is read first.
            let role = format!("/labctl/{lab}/{REGION}/{lab}-DynamoDBAccessEC2)");
            for part in [
                format!("lab `{lab}` exists in {REGION}"),
                role,
                format!("--region {REGION}"),
            ] {
                assert!(
                    run.stderr().contains(&part),
                    "{args:?}: no {part:?}\n{}",
                    run.transcript()
                );
            }
        }
    });
    // Nothing was made in the other region, and the lab is whole where it lives.
    let there = aws_sdk_ec2::Client::new(&sdk_config("us-east-1").await);
    let vpcs = there
        .describe_vpcs()
        .filters(lab_filter(&lab))
        .send()
        .await
        .expect("vpcs");
    assert!(vpcs.vpcs().is_empty(), "{:?}", vpcs.vpcs());
    let here = tokio::task::block_in_place(|| {
        sb.run(&["--region", REGION, "plan", "--detailed-exitcode"])
    });
    assert_eq!(here.code(), 0, "{}", here.transcript());
    // The zone's caller reference carries its region.
    let r53 = aws_sdk_route53::Client::new(&sdk_config(REGION).await);
    let zones = r53.list_hosted_zones().send().await.expect("zones");
    let refs: Vec<&str> = zones
        .hosted_zones()
        .iter()
        .map(|z| z.caller_reference())
        .filter(|r| r.starts_with(&format!("labctl:{lab}:")))
        .collect();
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert!(
        refs[0].starts_with(&format!("labctl:{lab}:{REGION}:")),
        "{refs:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_profile_of_the_labs_name_is_never_adopted() {
    let lab = unique_lab("prof");
    let sb = Sandbox::with_localstack();
    sb.write("topology.yaml", &default_lab(&lab));
    let config = sdk_config(REGION).await;
    let iam = aws_sdk_iam::Client::new(&config);
    let name = format!("{lab}-DynamoDBAccessEC2");
    let made = iam
        .create_instance_profile()
        .instance_profile_name(&name)
        .send()
        .await
        .expect("a stranger's profile");
    let arn = made
        .instance_profile()
        .map(|p| p.arn().to_owned())
        .expect("arn");
    let run = tokio::task::block_in_place(|| sb.run(&["up", "--yes"]));
    assert_eq!(run.code(), 1, "{}", run.transcript());
    assert!(
        run.stderr()
            .contains(&format!("instance profile {name} already exists ({arn})")),
        "{}",
        run.transcript()
    );
    assert_eq!(owned_count(&lab).await, 0, "nothing was created");
    let still = iam
        .get_instance_profile()
        .instance_profile_name(&name)
        .send()
        .await
        .expect("the stranger's profile is untouched");
    assert!(
        still
            .instance_profile()
            .is_some_and(|p| p.roles().is_empty())
    );
    iam.delete_instance_profile()
        .instance_profile_name(&name)
        .send()
        .await
        .expect("clean up");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_exact_bucket_name_is_adopted() {
    let lab = unique_lab("bkt");
    let sb = Sandbox::with_localstack();
    sb.write("topology.yaml", &default_lab(&lab));
    let s3 = crate::bootstrap::s3().await;
    // The `auto` pattern, but another account's number: not this lab's name.
    let stranger = format!("{lab}-captures-999999999999-{REGION}");
    s3.create_bucket()
        .bucket(&stranger)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(REGION))
                .build(),
        )
        .send()
        .await
        .expect("a stranger's bucket");
    tokio::task::block_in_place(|| {
        for args in [
            &["up", "--yes"][..],
            &["down", "--yes", "--delete-captures"],
        ] {
            let run = sb.run(args);
            assert_eq!(run.code(), 0, "{args:?}\n{}", run.transcript());
            assert!(
                !run.stdout().contains(&stranger),
                "{args:?} claimed it\n{}",
                run.stdout()
            );
        }
    });
    let tags = s3.get_bucket_tagging().bucket(&stranger).send().await;
    assert!(
        tags.map(|t| t.tag_set().is_empty()).unwrap_or(true),
        "the stranger's bucket was not tagged"
    );
    assert!(
        s3.get_bucket_policy()
            .bucket(&stranger)
            .send()
            .await
            .is_err(),
        "nor given a policy"
    );
    s3.delete_bucket()
        .bucket(&stranger)
        .send()
        .await
        .expect("it survived; clean up");
}

/// A lab made by the release before this one: its zone's caller reference has no
/// region, and can never get one. It is still the lab's, and `up` and `down` treat it
/// as such.
#[tokio::test(flavor = "multi_thread")]
async fn a_zone_marked_by_the_release_before_is_still_the_labs() {
    let (sb, lab) = lab_up("old");
    let _down = Teardown::new(&sb, &["--delete-captures"]);
    let config = sdk_config(REGION).await;
    let r53 = aws_sdk_route53::Client::new(&config);
    // Replace the zone with one marked as the release before marked it.
    let zones = r53.list_hosted_zones().send().await.expect("zones");
    let zone = zones
        .hosted_zones()
        .iter()
        .find(|z| z.caller_reference().starts_with(&format!("labctl:{lab}:")))
        .expect("the lab's zone")
        .clone();
    let sets = r53
        .list_resource_record_sets()
        .hosted_zone_id(zone.id())
        .send()
        .await
        .expect("records");
    for set in sets
        .resource_record_sets()
        .iter()
        .filter(|r| r.r#type().as_str() == "A")
    {
        delete_record_set(&r53, zone.id(), set.clone()).await;
    }
    r53.delete_hosted_zone()
        .id(zone.id())
        .send()
        .await
        .expect("delete zone");
    let vpc = vpc_id(&lab).await;
    let legacy = r53
        .create_hosted_zone()
        .name("lab.internal")
        .caller_reference(format!("labctl:{lab}:1733400000000"))
        .vpc(
            aws_sdk_route53::types::Vpc::builder()
                .vpc_id(&vpc)
                .vpc_region(aws_sdk_route53::types::VpcRegion::from(REGION))
                .build(),
        )
        .hosted_zone_config(
            aws_sdk_route53::types::HostedZoneConfig::builder()
                .comment("made as the release before made it")
                .private_zone(true)
                .build(),
        )
        .send()
        .await
        .expect("legacy zone");
    let legacy_id = legacy
        .hosted_zone()
        .map(|z| z.id().trim_start_matches("/hostedzone/").to_owned())
        .expect("id");
    tokio::task::block_in_place(|| {
        let plan = sb.run(&["plan", "--detailed-exitcode"]);
        assert_eq!(plan.code(), 2, "{}", plan.transcript());
        assert!(
            !plan.stdout().contains("+ dns-zone"),
            "the zone is found\n{}",
            plan.stdout()
        );
        assert!(
            plan.stdout().contains("+ dns-record/server"),
            "{}",
            plan.stdout()
        );
        let up = sb.run(&["up", "--yes"]);
        assert_eq!(up.code(), 0, "{}", up.transcript());
        let down = sb.run(&["down", "--yes", "--delete-captures"]);
        assert_eq!(down.code(), 0, "{}", down.transcript());
    });
    assert!(
        r53.get_hosted_zone().id(&legacy_id).send().await.is_err(),
        "down deleted the zone marked by the release before"
    );
    assert_eq!(owned_count(&lab).await, 0);
}

/// Keys, tags and names from AWS are text: a key that is not ASCII where labctl
/// expects a digest, and tags that are not ASCII, break no command.
#[tokio::test(flavor = "multi_thread")]
async fn text_from_aws_that_is_not_ascii_breaks_no_command() {
    let (sb, lab) = lab_up("utf8");
    let _down = Teardown::new(&sb, &["--delete-captures"]);
    let config = sdk_config(REGION).await;
    let bucket = format!("{lab}-captures-000000000000-{REGION}");
    crate::bootstrap::s3()
        .await
        .put_object()
        .bucket(&bucket)
        .key("artifacts/labnet/ab二进制文件-ünïcødé")
        .body(b"not a binary".to_vec().into())
        .send()
        .await
        .expect("a key that is not a digest");
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let vpc = vpc_id(&lab).await;
    ec2.create_tags()
        .resources(&vpc)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("Owner")
                .value("Zoë 实验室 🧪")
                .build(),
        )
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("Name")
                .value("ℓab ✓")
                .build(),
        )
        .send()
        .await
        .expect("tags");
    tokio::task::block_in_place(|| {
        let plan = sb.run(&["plan", "--detailed-exitcode"]);
        assert_eq!(plan.code(), 2, "{}", plan.transcript());
        // Byte 12 of that key falls inside a character.
        assert!(
            plan.stdout()
                .contains("- artifact/labnet-ab二进制文件-ünïc "),
            "{}",
            plan.stdout()
        );
        for args in [
            &["status"][..],
            &["status", "--json"],
            &["pcap-fetch", "--list"],
            &["up", "--yes"],
        ] {
            let run = sb.run(args);
            assert_eq!(run.code(), 0, "{args:?}\n{}", run.transcript());
            assert!(!run.stderr().contains("panicked"), "{}", run.transcript());
        }
        let again = sb.run(&["plan", "--detailed-exitcode"]);
        assert_eq!(again.code(), 0, "{}", again.transcript());
    });
}
