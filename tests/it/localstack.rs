//! The AWS SDK for Rust reaches LocalStack through `AWS_ENDPOINT_URL` alone.

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use labctl_core::desired::TAG_LAB;

use crate::harness::{Sandbox, sdk_config, unique_lab};

const REGION: &str = "eu-north-1";

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reaches_sts_and_ec2_and_finds_the_labs_vpc() {
    let lab = unique_lab("doc");
    let config = sdk_config(REGION).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    // Made independently of labctl, tagged as the lab's, so doctor must find exactly it.
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.99.0.0/16")
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Vpc)
                .tags(Tag::builder().key(TAG_LAB).value(&lab).build())
                .build(),
        )
        .send()
        .await
        .expect("create VPC in LocalStack");
    let vpc_id = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_owned();

    let sb = Sandbox::with_localstack();
    sb.write(
        "topology.yaml",
        &format!(
            "name: {lab}\nregion: {REGION}\nnetwork:\n  cidr: 10.0.0.0/16\n  subnets: [{{ name: lab, cidr: 10.0.1.0/24, public: true }}]\n\
             roles:\n  server: {{}}\ninstances:\n  - {{ name: server, role: server, type: t3.micro, image: ami-0123456789abcdef0 }}\n"
        ),
    );
    let run = tokio::task::spawn_blocking(move || sb.run(&["doctor", "--json"]))
        .await
        .expect("join");
    ec2.delete_vpc()
        .vpc_id(&vpc_id)
        .send()
        .await
        .expect("delete VPC");

    assert_eq!(run.code(), 0, "{}", run.transcript());
    let doc: serde_json::Value = serde_json::from_str(&run.stdout()).expect("JSON");
    assert_eq!(doc["region"], REGION);
    assert_eq!(
        doc["account"], "000000000000",
        "LocalStack's default account"
    );
    assert_eq!(doc["lab"], lab.as_str());
    assert_eq!(doc["lab_vpcs"], 1);
    assert!(doc["vpcs_visible"].as_u64().expect("count") >= 1);
}

#[test]
fn unreachable_endpoint_is_one_clear_line() {
    let sb = Sandbox::new(); // endpoint: loopback port 9, nothing listening
    let run = sb.run(&["doctor", "--region", "eu-north-1", "-f", "absent.yaml"]);
    assert_eq!(run.code(), 1);
    let stderr = run.stderr();
    assert_eq!(stderr.lines().count(), 1, "{}", run.transcript());
    assert!(
        stderr.starts_with("error: cannot reach STS at http://127.0.0.1:9: "),
        "{}",
        run.transcript()
    );
}
