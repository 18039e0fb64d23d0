//! Each instance's evidence is its own, and nothing an instance wrote is trusted.
//!
//! What a hostile instance could write is put in the lab's bucket directly with the
//! SDK, exactly where an instance's credentials would let it write; labctl then reads
//! it as it reads the real thing. Whether IAM would let it write there at all is
//! checked against the policies AWS holds, by the policy evaluator, because LocalStack
//! enforces no IAM.

use std::collections::BTreeMap;
use std::time::Duration;

use labctl_core::policy::{Decision, Request, evaluate};

use crate::bootstrap::{etag, role_id, s3};
use crate::exec::ids;
use crate::harness::{Sandbox, Teardown, sdk_config};
use crate::reconcile::{REGION, lab_sandbox, ok};

async fn put(bucket: &str, key: &str, body: Vec<u8>, claim: Option<&str>) {
    s3().await
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into())
        .set_metadata(claim.map(|c| [("labctl-instance-id".to_owned(), c.to_owned())].into()))
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

/// Where a lab that is up keeps its evidence.
struct Evidence {
    lab: String,
    bucket: String,
    /// The role's id, which starts every writer of the lab's instances.
    role: String,
    /// Instance ids by name.
    id: BTreeMap<String, String>,
}

/// A default lab, up.
async fn up(prefix: &str) -> (Sandbox, Evidence) {
    let (sb, lab) = lab_sandbox(prefix);
    tokio::task::block_in_place(|| ok(&sb, &["up", "--yes"]));
    let evidence = Evidence {
        bucket: format!("{lab}-captures-000000000000-{REGION}"),
        role: role_id(&lab).await,
        id: ids(&lab).await,
        lab,
    };
    (sb, evidence)
}

fn report(id: &str, ok: bool, error: &str, log_tail: &str) -> Vec<u8> {
    serde_json::json!({
        "lab": "x", "instance": "x", "instance_id": id, "role": "server", "ok": ok,
        "labnet_version": "labnet 0.1.0 (abc1234)", "labnet_sha256": "",
        "services": {}, "ssm_agent": "running", "finished_at": "2026-12-05T00:00:00Z",
        "error": if ok { serde_json::Value::Null } else { error.into() },
        "log_tail": log_tail,
    })
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_reports_fail_only_their_own_instance() {
    let (
        sb,
        Evidence {
            bucket, role, id, ..
        },
    ) = up("hostile").await;
    let _down = Teardown::new(&sb, &["--delete-captures"]);
    let key = |name: &str| format!("reports/{role}:{}.json", id[name]);

    // server: over the cap; client-1: not JSON; client-2: escape sequences.
    let mut huge = report(&id["server"], true, "", "");
    huge.truncate(huge.len() - 1);
    huge.extend(std::iter::repeat_n(b' ', 64 * 1024));
    huge.push(b'}');
    put(&bucket, &key("server"), huge, None).await;
    put(&bucket, &key("client-1"), b"{\"ok\": tru".to_vec(), None).await;
    let hostile = "boom\x1b[2J\x1b]0;owned\x07\u{202e}txt.exe";
    put(
        &bucket,
        &key("client-2"),
        report(&id["client-2"], false, hostile, "line 1\n\x1b[1Aline 2\r"),
        None,
    )
    .await;

    let status = sb.run(&["status"]);
    assert_eq!(status.code(), 0, "{}", status.transcript());
    let out = status.stdout();
    assert!(
        out.contains("UNREADABLE REPORT:") && out.contains("a report is at most 64 KiB"),
        "{out}"
    );
    assert!(out.contains("is not a readiness report"), "{out}");
    // The terminal never gets what the instance wrote as it wrote it. (On a pipe the
    // output stream strips escape sequences anyway; the JSON shows what labctl itself
    // let through, and a bidirectional override survives any stream.)
    assert!(out.contains("FAILED: boom[2J]0;ownedtxt.exe"), "{out}");
    assert!(!status.transcript().contains('\u{202e}'), "{out:?}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&sb, &["status", "--json"])).expect("status JSON");
    let by_name: BTreeMap<String, serde_json::Value> = json["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| (i["name"].as_str().unwrap_or_default().to_owned(), i.clone()))
        .collect();
    assert_eq!(
        by_name["client-2"]["bootstrap"]["error"], "boom[2J]0;ownedtxt.exe",
        "{json}"
    );
    assert_eq!(by_name["server"]["bootstrap"]["ok"], false, "{json}");
    assert_eq!(by_name["client-1"]["bootstrap"]["reported"], true, "{json}");

    // A report under server's own key that claims to be client-1's is refused; the
    // original is kept by versioning, nothing is lost.
    put(
        &bucket,
        &key("server"),
        report(&id["client-1"], true, "", ""),
        None,
    )
    .await;
    let status = ok(&sb, &["status"]);
    assert!(status.contains("claims to come from"), "{status}");
    let versions = s3()
        .await
        .list_object_versions()
        .bucket(&bucket)
        .prefix(key("server"))
        .send()
        .await
        .expect("versions");
    assert_eq!(versions.versions().len(), 2, "both writes are kept");

    // `up --wait` shows every instance, fails the bad ones, and waits on for a
    // good one that is still coming.
    put(&bucket, &key("client-1"), b"not json".to_vec(), None).await;
    s3().await
        .delete_object()
        .bucket(&bucket)
        .key(key("client-2"))
        .send()
        .await
        .expect("delete");
    let late = {
        let (bucket, key) = (bucket.clone(), key("client-2"));
        let id = id["client-2"].clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            put(&bucket, &key, report(&id, true, "", ""), None).await;
        })
    };
    let run = tokio::task::block_in_place(|| sb.run(&["up", "--yes", "--wait", "90s"]));
    late.await.expect("late report");
    assert_eq!(run.code(), 1, "{}", run.transcript());
    let err = run.stderr();
    assert!(err.contains("client-2  ready (labnet 0.1.0)"), "{err}");
    assert!(
        err.contains("unreadable readiness report from client-1, server"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pcap_fetch_takes_each_file_only_from_its_own_instance() {
    let (
        sb,
        Evidence {
            lab,
            bucket,
            role,
            id,
        },
    ) = up("prov").await;
    let _down = Teardown::new(&sb, &["--delete-captures"]);
    let folder = |name: &str| format!("captures/{role}:{}", id[name]);
    let pcap = |tag: &str| {
        let mut b = vec![0xd4, 0xc3, 0xb2, 0xa1];
        b.extend_from_slice(tag.as_bytes());
        b
    };

    put(
        &bucket,
        &format!("{}/rec-1/a.pcap", folder("server")),
        pcap("a"),
        Some(&id["server"]),
    )
    .await;
    // Written by client-1 (its folder), claiming to be server's.
    put(
        &bucket,
        &format!("{}/rec-2/forged.pcap", folder("client-1")),
        pcap("forged"),
        Some(&id["server"]),
    )
    .await;
    put(
        &bucket,
        &format!("{}/rec-3/b.pcap", folder("client-1")),
        pcap("b"),
        Some(&id["client-1"]),
    )
    .await;
    // As the release before wrote them: a name folder, no claim.
    put(&bucket, "captures/server/legacy/c.pcap", pcap("c"), None).await;
    // Nobody of this lab.
    put(&bucket, "captures/nobody/d.pcap", pcap("d"), None).await;
    put(
        &bucket,
        "captures/AROAQAAAAAAAAAAAAAAAA:i-0123456789abcdef0/e.pcap",
        pcap("e"),
        None,
    )
    .await;
    put(&bucket, "captures/client-2/\x1b[2Jf.pcap", pcap("f"), None).await;

    let run = sb.run(&["pcap-fetch", "--out", "got"]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    let err = run.stderr();
    let got = sb.path().join("got");
    assert_eq!(
        std::fs::read(got.join("server/rec-1/a.pcap")).expect("a"),
        pcap("a")
    );
    assert_eq!(
        std::fs::read(got.join("client-1/rec-3/b.pcap")).expect("b"),
        pcap("b")
    );
    assert_eq!(
        std::fs::read(got.join("server/legacy/c.pcap")).expect("c"),
        pcap("c")
    );
    assert!(!got.join("client-1/rec-2/forged.pcap").exists());
    assert!(!got.join("server/rec-2/forged.pcap").exists());
    assert!(
        err.contains("forged.pcap: it claims to come from") && err.contains("skipping"),
        "{err}"
    );
    assert!(
        err.contains("captures/nobody/: no instance of lab"),
        "{err}"
    );
    assert!(
        err.contains("i-0123456789abcdef0 is not an instance of lab"),
        "{err}"
    );
    assert!(
        err.contains("not captures/<instance>/<file> with a safe path"),
        "{err}"
    );
    assert!(!err.contains('\x1b'), "{err:?}");
    assert!(!got.join("nobody").exists() && !got.join("client-2").exists());

    // The server is replaced: its old folder keeps its name, from labctl's record,
    // and where both instances hold the same file each goes under its id.
    let old = id["server"].clone();
    put(
        &bucket,
        &format!("{}/same.pcap", folder("server")),
        pcap("old"),
        Some(&old),
    )
    .await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(REGION).await);
    ec2.terminate_instances()
        .instance_ids(&old)
        .send()
        .await
        .expect("terminate");
    tokio::task::block_in_place(|| ok(&sb, &["up", "--yes"]));
    let new = ids(&lab).await["server"].clone();
    assert_ne!(new, old);
    put(
        &bucket,
        &format!("captures/{role}:{new}/same.pcap"),
        pcap("new"),
        Some(&new),
    )
    .await;
    let run = sb.run(&["pcap-fetch", "server", "--out", "again"]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    let again = sb.path().join("again/server");
    assert_eq!(
        std::fs::read(again.join("rec-1/a.pcap")).expect("a"),
        pcap("a")
    );
    assert_eq!(
        std::fs::read(again.join(&old).join("same.pcap")).expect("old"),
        pcap("old")
    );
    assert_eq!(
        std::fs::read(again.join(&new).join("same.pcap")).expect("new"),
        pcap("new")
    );
}

/// The policies AWS holds for the lab, evaluated for concrete requests: an instance
/// may write its own report and captures and nothing else, and nothing reaches the
/// bucket without TLS. LocalStack stores policies but enforces none, so this is
/// where the denial is checked; docs/REAL-AWS.md has the same check on AWS.
#[tokio::test(flavor = "multi_thread")]
async fn iam_lets_an_instance_write_only_its_own_evidence() {
    let (sb, lab) = lab_sandbox("iamev");
    tokio::task::block_in_place(|| ok(&sb, &["up", "--yes"]));
    let _down = Teardown::new(&sb, &["--delete-captures"]);
    let config = sdk_config(REGION).await;
    let iam = aws_sdk_iam::Client::new(&config);
    let bucket = format!("{lab}-captures-000000000000-{REGION}");
    let role_name = format!("{lab}-DynamoDBAccessEC2");
    let inline = iam
        .get_role_policy()
        .role_name(&role_name)
        .policy_name("labctl-bucket")
        .send()
        .await
        .expect("inline policy");
    let decoded = percent_encoding::percent_decode_str(inline.policy_document())
        .decode_utf8()
        .expect("UTF-8")
        .into_owned();
    let identity: serde_json::Value = serde_json::from_str(&decoded).expect("policy JSON");
    let bucket_policy = s3()
        .await
        .get_bucket_policy()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket policy");
    let resource: serde_json::Value =
        serde_json::from_str(bucket_policy.policy().expect("policy")).expect("policy JSON");
    let role = role_id(&lab).await;
    let (a, b) = ("i-0aaaaaaaaaaaaaaaa", "i-0bbbbbbbbbbbbbbbb");
    let ask = |instance: &str, action: &str, key: &str, tls: bool| {
        let context = [
            ("aws:userid".to_owned(), vec![format!("{role}:{instance}")]),
            ("aws:SecureTransport".to_owned(), vec![tls.to_string()]),
            (
                "ec2:SourceInstanceARN".to_owned(),
                vec![format!(
                    "arn:aws:ec2:{REGION}:000000000000:instance/{instance}"
                )],
            ),
        ]
        .into();
        let request = Request {
            principal: format!("arn:aws:sts::000000000000:assumed-role/{role_name}/{instance}"),
            action: action.to_owned(),
            resource: format!("arn:aws:s3:::{bucket}/{key}"),
            context,
        };
        evaluate(std::slice::from_ref(&identity), Some(&resource), &request)
            .expect("the policies evaluate")
    };
    let own = |i: &str| format!("{role}:{i}");
    let allowed = [
        ("s3:PutObject", format!("captures/{}/rec/x.pcap", own(a))),
        ("s3:PutObject", format!("reports/{}.json", own(a))),
        ("s3:GetObject", "artifacts/labnet/abc".to_owned()),
    ];
    for (action, key) in &allowed {
        assert_eq!(ask(a, action, key, true), Decision::Allow, "{action} {key}");
        assert_eq!(
            ask(a, action, key, false),
            Decision::ExplicitDeny,
            "without TLS: {action} {key}"
        );
    }
    let denied = [
        ("s3:PutObject", format!("captures/{}/rec/x.pcap", own(b))),
        ("s3:PutObject", format!("reports/{}.json", own(b))),
        ("s3:PutObject", "captures/server/x.pcap".to_owned()),
        ("s3:PutObject", "reports/server.json".to_owned()),
        ("s3:PutObject", format!("instances/{a}.json")),
        ("s3:PutObject", format!("captures/{}x/y.pcap", own(a))),
        ("s3:PutObject", "artifacts/labnet/abc".to_owned()),
        ("s3:GetObject", format!("captures/{}/rec/x.pcap", own(b))),
        ("s3:DeleteObject", format!("captures/{}/rec/x.pcap", own(a))),
        (
            "s3:DeleteObjectVersion",
            format!("captures/{}/rec/x.pcap", own(a)),
        ),
    ];
    for (action, key) in &denied {
        assert_ne!(ask(a, action, key, true), Decision::Allow, "{action} {key}");
    }
}

/// `pcap-fetch` writes through no symbolic link below `--out`, where a shared folder
/// could have one planted, and resumes a part only from the object it was started on.
#[tokio::test(flavor = "multi_thread")]
async fn pcap_fetch_follows_no_link_and_resumes_only_the_same_object() {
    let (
        sb,
        Evidence {
            bucket, role, id, ..
        },
    ) = up("links").await;
    let _down = Teardown::new(&sb, &["--delete-captures"]);
    let key = format!("captures/{role}:{}/rec/a.pcap", id["server"]);
    let first: Vec<u8> = [0xd4, 0xc3, 0xb2, 0xa1]
        .into_iter()
        .chain(vec![1; 4000])
        .collect();
    put(&bucket, &key, first.clone(), Some(&id["server"])).await;

    let out = sb.path().join("shared");
    let victim = sb.path().join("victim");
    std::fs::create_dir_all(&out).expect("out");
    std::fs::create_dir_all(&victim).expect("victim");
    let fetch = || sb.run(&["pcap-fetch", "--out", "shared"]);

    // A link for the instance's folder.
    std::os::unix::fs::symlink(&victim, out.join("server")).expect("plant a link");
    let run = fetch();
    assert_eq!(run.code(), 1, "{}", run.transcript());
    assert!(
        run.stderr().contains("is a symbolic link"),
        "{}",
        run.transcript()
    );
    assert_eq!(std::fs::read_dir(&victim).expect("victim").count(), 0);
    std::fs::remove_file(out.join("server")).expect("unlink");

    // A link for the part, and one for the file itself.
    std::fs::create_dir_all(out.join("server/rec")).expect("dirs");
    for name in ["a.pcap.part", "a.pcap"] {
        let link = out.join("server/rec").join(name);
        std::os::unix::fs::symlink(victim.join("target"), &link).expect("plant a link");
        let run = fetch();
        assert_eq!(run.code(), 1, "{}", run.transcript());
        assert!(
            run.stderr().contains("is a symbolic link"),
            "{}",
            run.transcript()
        );
        assert!(
            !victim.join("target").exists(),
            "nothing written through {name}"
        );
        std::fs::remove_file(&link).expect("unlink");
    }

    // A part started on another version of the object is not resumed.
    let part = out.join("server/rec/a.pcap.part");
    std::fs::write(&part, &first[..1000]).expect("part");
    std::fs::write(out.join("server/rec/a.pcap.part.etag"), "\"an-older-etag\"").expect("etag");
    let run = fetch();
    assert_eq!(run.code(), 0, "{}", run.transcript());
    assert!(!run.stdout().contains("resumed"), "{}", run.transcript());
    assert_eq!(
        std::fs::read(out.join("server/rec/a.pcap")).expect("a"),
        first
    );
    assert!(!out.join("server/rec/a.pcap.part.etag").exists());

    // One started on this very object is.
    std::fs::remove_file(out.join("server/rec/a.pcap")).expect("rm");
    std::fs::write(&part, &first[..1000]).expect("part");
    std::fs::write(
        out.join("server/rec/a.pcap.part.etag"),
        etag(&bucket, &key).await,
    )
    .expect("etag");
    let run = fetch();
    assert_eq!(run.code(), 0, "{}", run.transcript());
    assert!(run.stdout().contains("resumed at"), "{}", run.transcript());
    assert_eq!(
        std::fs::read(out.join("server/rec/a.pcap")).expect("a"),
        first
    );
}
