//! Records someone else put in the lab's zone, checked with the SDK directly: `plan`
//! and `up` leave them alone, `down` names them and changes nothing, `down --force`
//! deletes them with the lab, and a forced `down` killed before the zone goes is
//! finished by the next `down`. Route 53 deletes a zone only when it is empty, so
//! without this a record made by hand strands the lab half-deleted.

use std::time::{Duration, Instant};

use aws_faults::Endpoint;
use aws_sdk_route53::Client as Route53;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};

use crate::harness::{Sandbox, Teardown, sdk_config, transcript};
use crate::reconcile::{REGION, default_lab, instances, lab_up, ok, owned_count, tag, vpc_id};

/// What the default lab owns once up (as `faults.rs` counts it).
const WHOLE_LAB: usize = 13;

/// How `down` names the records `by_hand` makes.
const NAMED: [&str; 3] = [
    "www.lab.internal CNAME server.lab.internal",
    "note.lab.internal TXT \"added by hand\"",
    "extra.lab.internal A 192.0.2.10",
];

/// A CNAME, a TXT, and an A record at a name no instance has.
fn by_hand() -> Vec<ResourceRecordSet> {
    vec![
        record("www.lab.internal", RrType::Cname, "server.lab.internal"),
        record("note.lab.internal", RrType::Txt, "\"added by hand\""),
        record("extra.lab.internal", RrType::A, "192.0.2.10"),
    ]
}

fn record(name: &str, ty: RrType, value: &str) -> ResourceRecordSet {
    ResourceRecordSet::builder()
        .name(name)
        .r#type(ty)
        .ttl(300)
        .resource_records(
            ResourceRecord::builder()
                .value(value)
                .build()
                .expect("value"),
        )
        .build()
        .expect("record set")
}

/// Makes or replaces record sets, as a person at the console would.
async fn upsert(r53: &Route53, zone: &str, sets: Vec<ResourceRecordSet>) {
    let changes = sets
        .into_iter()
        .map(|set| {
            Change::builder()
                .action(ChangeAction::Upsert)
                .resource_record_set(set)
                .build()
                .expect("change")
        })
        .collect();
    r53.change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(
            ChangeBatch::builder()
                .set_changes(Some(changes))
                .build()
                .expect("batch"),
        )
        .send()
        .await
        .expect("change records");
}

/// The id of the lab's zone, found through its VPC.
async fn zone_id(r53: &Route53, lab: &str) -> String {
    let zones = r53
        .list_hosted_zones_by_vpc()
        .vpc_id(vpc_id(lab).await)
        .vpc_region(REGION.into())
        .send()
        .await
        .expect("zones by vpc");
    zones
        .hosted_zone_summaries()
        .iter()
        .find(|z| z.name() == "lab.internal.")
        .expect("the lab's zone")
        .hosted_zone_id()
        .to_owned()
}

/// The zone's record sets, as `name type value…`, sorted.
async fn listed(r53: &Route53, zone: &str) -> Vec<String> {
    let sets = r53
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .send()
        .await
        .expect("records");
    let mut out: Vec<String> = sets
        .resource_record_sets()
        .iter()
        .map(|r| {
            let values: Vec<&str> = r.resource_records().iter().map(|v| v.value()).collect();
            format!(
                "{} {} {}",
                r.name().trim_end_matches('.'),
                r.r#type().as_str(),
                values.join(",")
            )
        })
        .collect();
    out.sort();
    out
}

fn is_by_hand(line: &str) -> bool {
    [
        "www.lab.internal ",
        "note.lab.internal ",
        "extra.lab.internal ",
    ]
    .iter()
    .any(|n| line.starts_with(n))
}

#[tokio::test(flavor = "multi_thread")]
async fn records_made_by_hand_stop_down_until_forced() {
    let (sb, lab) = lab_up("zrec");
    let _down = Teardown::new(&sb, &["--force", "--delete-captures"]);
    let r53 = Route53::new(&sdk_config(REGION).await);
    let zone = zone_id(&r53, &lab).await;

    // An A record at an instance's name is the lab's, whatever it holds now: the plan
    // puts it back.
    upsert(
        &r53,
        &zone,
        vec![record("server.lab.internal", RrType::A, "192.0.2.20")],
    )
    .await;
    tokio::task::block_in_place(|| {
        let plan = sb.run(&["plan", "--detailed-exitcode"]);
        assert_eq!(plan.code(), 2, "{}", plan.transcript());
        assert!(
            plan.stdout().contains("~ dns-record/server"),
            "{}",
            plan.stdout()
        );
        ok(&sb, &["up", "--yes"]);
    });
    let ours = listed(&r53, &zone).await;
    assert!(
        !ours.iter().any(|l| l.contains("192.0.2.20")),
        "up repaired the server's record: {ours:?}"
    );

    upsert(&r53, &zone, by_hand()).await;
    let with = listed(&r53, &zone).await;
    assert_eq!(with.len(), ours.len() + 3, "{with:?}");
    tokio::task::block_in_place(|| {
        // `plan` and `up` leave them alone.
        let plan = sb.run(&["plan", "--detailed-exitcode"]);
        assert_eq!(plan.code(), 0, "{}", plan.transcript());
        ok(&sb, &["up", "--yes"]);

        let refused = sb.run(&["down", "--yes"]);
        assert_eq!(refused.code(), 1, "{}", refused.transcript());
        let err = refused.stderr();
        for named in NAMED {
            assert!(err.contains(named), "{named} is named\n{err}");
        }
        assert!(
            err.contains(
                "zone lab.internal holds 3 record(s) that labctl did not make, and Route 53 \
                 deletes a zone only when it is empty:"
            ),
            "{err}"
        );
        assert!(
            err.contains(
                "delete them yourself, or pass --force, which deletes them too; nothing was \
                 changed"
            ),
            "{err}"
        );
        for own in [
            "lab.internal SOA",
            "lab.internal NS",
            "server.lab.internal A",
        ] {
            assert!(!err.contains(own), "{own} is not named\n{err}");
        }
        let plan = sb.run(&["plan", "--detailed-exitcode"]);
        assert_eq!(plan.code(), 0, "nothing was changed\n{}", plan.transcript());
    });
    assert_eq!(
        listed(&r53, &zone).await,
        with,
        "every record is still there"
    );
    assert_eq!(owned_count(&lab).await, WHOLE_LAB, "and every resource");

    // The record of an instance that is gone is still the lab's: `down` names only
    // the three made by hand.
    let client = instances(&lab)
        .await
        .into_iter()
        .find(|i| tag(i.tags(), "labctl:address").as_deref() == Some("instance/client-2"))
        .expect("client-2");
    crate::reconcile::ec2()
        .await
        .terminate_instances()
        .instance_ids(client.instance_id().expect("id"))
        .send()
        .await
        .expect("terminate");
    let forced = tokio::task::block_in_place(|| {
        let refused = sb.run(&["down", "--yes"]);
        assert_eq!(refused.code(), 1, "{}", refused.transcript());
        assert!(
            refused.stderr().contains("holds 3 record(s)")
                && !refused.stderr().contains("client-2.lab.internal"),
            "{}",
            refused.transcript()
        );
        sb.run(&["down", "--yes", "--force"])
    });
    assert_eq!(forced.code(), 0, "{}", forced.transcript());
    let shown = forced.stderr();
    for deletion in [
        "- dns-record/www CNAME (www.lab.internal)",
        "- dns-record/note TXT (note.lab.internal)",
        "- dns-record/extra (extra.lab.internal)",
        "- dns-record/client-2 (client-2.lab.internal)",
    ] {
        assert!(
            shown.contains(deletion),
            "the plan shows {deletion}\n{shown}"
        );
    }
    assert_eq!(
        shown
            .matches("because labctl did not make it, and --force deletes it with the zone")
            .count(),
        3,
        "{shown}"
    );
    assert!(
        r53.get_hosted_zone().id(&zone).send().await.is_err(),
        "the zone is gone"
    );
    assert_eq!(owned_count(&lab).await, 0, "nothing of the lab is left");
}

/// An endpoint in front of LocalStack at which `DeleteHostedZone` never answers and
/// never arrives.
async fn zone_never_goes() -> Endpoint {
    crate::preflight::endpoint(&["route53:DeleteHostedZone=stall@1"], &[], &[]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forced_down_killed_before_the_zone_goes_is_finished_by_the_next_down() {
    let (sb, lab) = lab_up("zkill");
    let _down = Teardown::new(&sb, &["--force", "--delete-captures"]);
    let r53 = Route53::new(&sdk_config(REGION).await);
    let zone = zone_id(&r53, &lab).await;
    upsert(&r53, &zone, by_hand()).await;

    // The same lab through the endpoint: killed once it is deleting the zone, which
    // comes after every record and never takes effect there.
    let faults = zone_never_goes().await;
    let through = Sandbox::with_endpoint(faults.url());
    through.write("topology.yaml", &default_lab(&lab));
    let log = through.path().join("down.log");
    let mut child = through
        .labctl(&["down", "--yes", "--force"])
        // No fault but the stall: labctl waits as long as it normally would, so a busy
        // LocalStack does not time it out first.
        .env("LABCTL_PATIENCE", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn labctl");
    let start = Instant::now();
    loop {
        let asked = faults
            .stats()
            .operations
            .get("route53:DeleteHostedZone")
            .is_some_and(|o| o.calls > 0);
        if asked {
            child.kill().expect("SIGKILL labctl");
            break;
        }
        if let Some(status) = child.try_wait().expect("poll") {
            let out = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("down ended by itself ({status}) before deleting the zone:\n{out}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "down never came to the zone"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = child.wait().expect("wait");
    assert!(!status.success(), "down was killed");

    let left = listed(&r53, &zone).await;
    assert!(
        !left.iter().any(|l| is_by_hand(l)),
        "the records made by hand went first: {left:?}"
    );
    assert!(
        r53.get_hosted_zone().id(&zone).send().await.is_ok(),
        "the zone is still there"
    );
    let next = tokio::task::block_in_place(|| {
        sb.labctl(&["down", "--yes"]).output().expect("labctl runs")
    });
    assert!(next.status.success(), "{}", transcript(&next));
    assert!(
        r53.get_hosted_zone().id(&zone).send().await.is_err(),
        "the zone is gone"
    );
    assert_eq!(owned_count(&lab).await, 0, "nothing of the lab is left");
}
