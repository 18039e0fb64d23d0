//! `labctl pcap-fetch [instance...]`: brings the lab's captures home, into
//! `<out>/<instance>/<file>`, so they open in Wireshark or `labctl pcap-summary`.
//!
//! Each instance writes only under its own writer, `captures/<role id>:<instance id>/`
//! (IAM enforces it); the folder's instance id, not anything the files say, is where
//! they come from. The name comes from labctl's own record of the lab's instances
//! (`instances/`, which no instance can write), so captures of replaced or deleted
//! instances keep their names. Folders named after an instance, as releases before
//! wrote them, are still read. Anything else is skipped with a warning: a folder of
//! no instance of this lab, an unsafe path, or a file that claims (in the metadata
//! the capture helper sets) to come from another instance than its folder's.
//!
//! A capture is evidence a student hands in, so every download is checked against what
//! the bucket holds: the size, and the SHA-256 the capture helper uploaded with (S3
//! checked it on arrival), or the MD5 of the ETag for a file uploaded without one.
//! Downloads go to `<file>.part` and are renamed only once they check out: an
//! interrupted run leaves the part, and the next run resumes it with a range request.
//! Every request is pinned to the ETag the checks came from, so an object replaced
//! meanwhile is read again from the start. A local file that differs is never replaced
//! without `--force`, and even then only by a verified one.
//!
//! A recording's files sit in a folder of their own (`<label>-<time>/`), kept as is.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use aws_sdk_s3::types::ChecksumMode;
use futures::StreamExt as _;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use labctl_core::diag::closest;
use labctl_core::{Address, Kind};
use sha2::Digest as _;
use tokio::io::AsyncWriteExt as _;

use crate::aws::apply::hex_bytes;
use crate::aws::{AwsError, Clients, aws};
use crate::cli::{GlobalArgs, PcapFetchArgs};
use crate::lab::{Lab, Needs};
use crate::printer::Printer;
use crate::untrusted;

/// Where the capture helper puts files: `captures/<writer>/<file>`.
const PREFIX: &str = labctl_core::marks::CAPTURES_PREFIX;
/// The metadata in which the capture helper names the instance a file comes from
/// (`x-amz-meta-labctl-instance-id`).
const CLAIM_METADATA: &str = "labctl-instance-id";

/// One capture in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Remote {
    key: String,
    /// The key's first folder: a writer (`<role id>:<instance id>`) or a name.
    folder: String,
    /// The instance's name, once the folder is resolved (the folder until then).
    instance: String,
    /// The instance id the folder belongs to, for a writer's folder.
    origin: Option<String>,
    /// The path below the instance's prefix (checked: no `..`, nothing absolute, no
    /// control characters).
    file: PathBuf,
    /// Where it goes, below `--out`.
    local: PathBuf,
    size: u64,
    modified: SystemTime,
}

/// What fetching one capture came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fetched {
    Downloaded,
    /// Completed from a part an earlier run left, from this offset.
    Resumed(u64),
    /// The local file is already identical.
    Present,
    /// The local file differs and `--force` was not given: kept as it is.
    Conflict,
    /// Not taken: it claims another origin than its folder's. Why.
    Disowned(String),
}

/// What the downloaded bytes must match.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    size: u64,
    etag: Option<String>,
    sha256: Option<Vec<u8>>,
    md5: Option<Vec<u8>>,
    /// The instance id the uploader wrote into the object's metadata, if any.
    claim: Option<String>,
}

pub async fn run(
    global: &GlobalArgs,
    args: &PcapFetchArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let lab = Lab::prepare(global, printer, Needs::Read).await?;
    let known: Vec<&str> = lab.desired.user_data.keys().map(String::as_str).collect();
    let instances: Vec<String> = args
        .instances
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .cloned()
        .collect();
    for name in &instances {
        if !known.contains(&name.as_str()) {
            let hint = closest(name, known.iter().copied())
                .map(|n| format!("; did you mean `{n}`?"))
                .unwrap_or_default();
            bail!(
                "the topology has no instance `{name}` (it has {}){hint}",
                known.join(", ")
            );
        }
    }
    let bucket = lab
        .desired
        .get(&Address::new(Kind::Bucket, "captures"))
        .map(|r| r.name.clone())
        .context("the topology has no capture bucket")?;
    let records = crate::registry::load(&lab.clients, &bucket).await?;
    let listed = list(&lab.clients, &bucket, printer).await?;
    let listed = resolve(&lab, &bucket, listed, &records, printer).await?;
    let listed: Vec<Remote> = listed
        .into_iter()
        .filter(|r| instances.is_empty() || instances.contains(&r.instance))
        .collect();
    let chosen = place(choose(listed, args.since, args.latest));
    if chosen.is_empty() {
        let whose = if instances.is_empty() {
            String::new()
        } else {
            format!(" from {}", instances.join(", "))
        };
        printer.note(&format!(
            "no captures{whose} in s3://{bucket}/{PREFIX}{}; `{}` records one",
            if args.since.is_some() || args.latest {
                " that match --since/--latest"
            } else {
                ""
            },
            crate::invocation::command("capture <instance>")
        ));
        return Ok(ExitCode::SUCCESS);
    }
    if args.list {
        for r in &chosen {
            printer.result(&format!(
                "{}\t{}\t{}",
                r.local.display(),
                HumanBytes(r.size),
                aws_smithy_types::DateTime::from(r.modified)
                    .fmt(aws_smithy_types::date_time::Format::DateTime)
                    .unwrap_or_default()
            ));
        }
        return Ok(ExitCode::SUCCESS);
    }

    let total: u64 = chosen.iter().map(|r| r.size).sum();
    let bar = progress(total, printer);
    let jobs = usize::from(args.jobs);
    let results: Vec<(Remote, anyhow::Result<Fetched>)> = futures::stream::iter(chosen)
        .map(|r| {
            let (clients, bucket, bar, records) = (&lab.clients, bucket.as_str(), &bar, &records);
            let out = args.out.as_path();
            async move {
                let result = fetch(clients, bucket, &r, records, out, args.force, bar).await;
                (r, result)
            }
        })
        .buffer_unordered(jobs)
        .collect()
        .await;
    bar.finish_and_clear();

    let mut results = results;
    results.sort_by(|a, b| a.0.key.cmp(&b.0.key));
    let (mut fetched, mut bytes, mut present, mut problems, mut disowned) = (0, 0, 0, 0, 0);
    for (r, result) in &results {
        let local = args.out.join(&r.local);
        let url = format!("s3://{bucket}/{}", untrusted::line(&r.key));
        match result {
            Ok(Fetched::Downloaded) => {
                fetched += 1;
                bytes += r.size;
                printer.result(&format!("{}\t{}", local.display(), HumanBytes(r.size)));
            }
            Ok(Fetched::Resumed(from)) => {
                fetched += 1;
                bytes += r.size.saturating_sub(*from);
                printer.result(&format!(
                    "{}\t{}\tresumed at {}",
                    local.display(),
                    HumanBytes(r.size),
                    HumanBytes(*from)
                ));
            }
            Ok(Fetched::Present) => {
                present += 1;
                printer.result(&format!(
                    "{}\t{}\talready here",
                    local.display(),
                    HumanBytes(r.size)
                ));
            }
            Ok(Fetched::Conflict) => {
                problems += 1;
                printer.error(&format!(
                    "{} differs from {url}; kept as it is (--force replaces it)",
                    local.display()
                ));
            }
            Ok(Fetched::Disowned(why)) => {
                disowned += 1;
                printer.warn(&format!("skipping {url}: {why}"));
            }
            Err(e) => {
                problems += 1;
                printer.error(&format!("{url}: {}", untrusted::line(&format!("{e:#}"))));
            }
        }
    }
    printer.note(&format!(
        "{} capture(s): {fetched} downloaded ({}), {present} already here{}{}",
        results.len() - disowned,
        HumanBytes(bytes),
        if disowned > 0 {
            format!(", {disowned} skipped for their origin")
        } else {
            String::new()
        },
        if problems > 0 {
            format!(", {problems} not fetched")
        } else {
            String::new()
        }
    ));
    if fetched + present > 0 {
        printer.note(&format!(
            "open them in Wireshark (`wireshark {}/<instance>/<recording>/<file>`), or summarise \
             a recording: `labctl pcap-summary {}/<instance>/<recording>/*.pcap`",
            args.out.display(),
            args.out.display()
        ));
    }
    Ok(if problems > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A byte-counting bar on a terminal; nothing elsewhere, or with `--quiet`.
fn progress(total: u64, printer: &Printer) -> ProgressBar {
    if printer.is_quiet() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta} left",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Every object under `captures/` whose key is a safe path; the rest are skipped
/// with a warning.
async fn list(clients: &Clients, bucket: &str, printer: &Printer) -> anyhow::Result<Vec<Remote>> {
    let mut found = Vec::new();
    let mut pages = clients
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(PREFIX)
        .encoding_type(aws_sdk_s3::types::EncodingType::Url)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws(format!("S3 ListObjectsV2 {bucket}")));
        let page = match page {
            Err(e) if e.is(&["NoSuchBucket"]) => {
                bail!("the lab has no bucket {bucket} yet; `labctl up` creates it")
            }
            other => other?,
        };
        for o in page.contents() {
            let Some(key) = o.key().map(crate::aws::listed_key) else {
                continue;
            };
            let key = key.as_str();
            match remote(key, o.size(), o.last_modified()) {
                Some(r) => found.push(r),
                None => printer.warn(&format!(
                    "skipping s3://{bucket}/{}: not captures/<instance>/<file> with a safe path",
                    untrusted::line(key)
                )),
            }
        }
    }
    Ok(found)
}

/// A listed object as a capture, if its key has the layout and a safe path.
fn remote(
    key: &str,
    size: Option<i64>,
    modified: Option<&aws_smithy_types::DateTime>,
) -> Option<Remote> {
    let (folder, file) = key.strip_prefix(PREFIX)?.split_once('/')?;
    let file = PathBuf::from(file);
    let plain = |s: &str| untrusted::line(s) == s;
    let safe = !folder.is_empty()
        && !folder.starts_with('.')
        && plain(folder)
        && plain(&file.to_string_lossy())
        && file.components().count() > 0
        && file.components().all(|c| matches!(c, Component::Normal(_)));
    safe.then(|| Remote {
        key: key.to_owned(),
        folder: folder.to_owned(),
        instance: folder.to_owned(),
        origin: None,
        local: PathBuf::from(folder).join(&file),
        file,
        size: size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
        modified: modified
            .and_then(|m| SystemTime::try_from(*m).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH),
    })
}

/// Names each capture's instance, keeping only those of this lab's instances: a
/// writer's folder by labctl's record (or, for an instance not recorded yet, its
/// tags in EC2); a name folder of releases before only under a name the lab has had.
async fn resolve(
    lab: &Lab,
    bucket: &str,
    listed: Vec<Remote>,
    records: &BTreeMap<String, crate::registry::Record>,
    printer: &Printer,
) -> anyhow::Result<Vec<Remote>> {
    let unrecorded: std::collections::BTreeSet<&str> = listed
        .iter()
        .filter_map(|r| labctl_core::marks::writer(&r.folder))
        .map(|w| w.instance_id)
        .filter(|id| !records.contains_key(*id))
        .collect();
    let tagged = names_in_ec2(lab, &unrecorded).await?;
    let mut names: std::collections::BTreeSet<&str> =
        lab.desired.user_data.keys().map(String::as_str).collect();
    names.extend(records.values().map(|r| r.name.as_str()));
    let mut out = Vec::new();
    let mut strangers = std::collections::BTreeSet::new();
    for mut r in listed {
        match labctl_core::marks::writer(&r.folder) {
            Some(w) => {
                let name = records
                    .get(w.instance_id)
                    .map(|rec| rec.name.clone())
                    .or_else(|| tagged.get(w.instance_id).cloned());
                let Some(name) = name else {
                    if strangers.insert(r.folder.clone()) {
                        printer.warn(&format!(
                            "skipping s3://{bucket}/{PREFIX}{}/: {} is not an instance of lab `{}`",
                            r.folder, w.instance_id, lab.desired.lab
                        ));
                    }
                    continue;
                };
                r.origin = Some(w.instance_id.to_owned());
                r.instance = name;
            }
            None if names.contains(r.folder.as_str()) => {}
            None => {
                if strangers.insert(r.folder.clone()) {
                    printer.warn(&format!(
                        "skipping s3://{bucket}/{PREFIX}{}/: no instance of lab `{}` has that \
                         name or writes there",
                        r.folder, lab.desired.lab
                    ));
                }
                continue;
            }
        }
        r.local = PathBuf::from(&r.instance).join(&r.file);
        out.push(r);
    }
    Ok(out)
}

/// Names of the lab's instances among `ids`, from their tags in EC2 (which keeps a
/// terminated instance for about an hour): for an instance `up` has not recorded yet.
async fn names_in_ec2(
    lab: &Lab,
    ids: &std::collections::BTreeSet<&str>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let filter = aws_sdk_ec2::types::Filter::builder()
        .name("instance-id")
        .set_values(Some(ids.iter().map(|s| (*s).to_owned()).collect()))
        .build();
    let mut pages = lab
        .clients
        .ec2
        .describe_instances()
        .filters(filter)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("EC2 DescribeInstances"))?;
        for i in page.reservations().iter().flat_map(|r| r.instances()) {
            let tag = |k: &str| {
                i.tags()
                    .iter()
                    .find(|t| t.key() == Some(k))
                    .and_then(|t| t.value())
            };
            let (Some(id), Some(lab_tag), Some(address)) = (
                i.instance_id(),
                tag(labctl_core::marks::TAG_LAB),
                tag(labctl_core::marks::TAG_ADDRESS),
            ) else {
                continue;
            };
            if lab_tag == lab.desired.lab
                && let Some(name) = address.strip_prefix("instance/")
            {
                out.insert(id.to_owned(), name.to_owned());
            }
        }
    }
    Ok(out)
}

/// Where each capture goes below `--out`: `<instance>/<file>`, or, where two
/// instances of one name hold the same file, `<instance>/<instance id>/<file>`.
fn place(mut chosen: Vec<Remote>) -> Vec<Remote> {
    let mut count: BTreeMap<PathBuf, usize> = BTreeMap::new();
    for r in &chosen {
        *count.entry(r.local.clone()).or_default() += 1;
    }
    for r in &mut chosen {
        if count[&r.local] > 1
            && let Some(id) = &r.origin
        {
            r.local = PathBuf::from(&r.instance).join(id).join(&r.file);
        }
    }
    chosen
}

/// `--since` and `--latest` applied, in key order. The latest capture of an instance
/// is its newest recording (all of that folder's files) or file uploaded by hand.
fn choose(mut listed: Vec<Remote>, since: Option<SystemTime>, latest: bool) -> Vec<Remote> {
    if let Some(since) = since {
        listed.retain(|r| r.modified >= since);
    }
    if latest {
        // A file's capture: its recording's folder, or the file itself.
        let capture = |r: &Remote| match r.file.components().count() {
            1 => r.file.clone(),
            _ => r.file.components().take(1).collect(),
        };
        let mut newest: BTreeMap<&str, (SystemTime, PathBuf)> = BTreeMap::new();
        for r in &listed {
            let candidate = (r.modified, capture(r));
            let entry = newest
                .entry(&r.instance)
                .or_insert_with(|| candidate.clone());
            if candidate > *entry {
                *entry = candidate;
            }
        }
        let newest: BTreeMap<String, PathBuf> = newest
            .into_iter()
            .map(|(i, (_, c))| (i.to_owned(), c))
            .collect();
        listed.retain(|r| newest.get(&r.instance) == Some(&capture(r)));
    }
    listed.sort_by(|a, b| a.key.cmp(&b.key));
    listed
}

/// Fetches one capture to `local`, verified.
async fn fetch(
    clients: &Clients,
    bucket: &str,
    r: &Remote,
    records: &BTreeMap<String, crate::registry::Record>,
    out: &Path,
    force: bool,
    bar: &ProgressBar,
) -> anyhow::Result<Fetched> {
    let local = out.join(&r.local);
    let local = local.as_path();
    let mut expected = expected(clients, bucket, &r.key).await?;
    if let Some(why) = disowned(r, expected.claim.as_deref(), records) {
        bar.inc(expected.size);
        return Ok(Fetched::Disowned(why));
    }
    // Everything below --out is made or checked here, and none of it may be a link:
    // in a shared folder, a link planted there would redirect the writes.
    if let Some(dir) = r.local.parent() {
        real_dirs(out, dir).await?;
    }
    let part = part_of(local);
    for path in [local, part.as_path(), etag_of(&part).as_path()] {
        match tokio::fs::symlink_metadata(path).await {
            Ok(meta) if meta.file_type().is_symlink() => bail!(
                "{} is a symbolic link; pcap-fetch writes through none (remove it)",
                path.display()
            ),
            Ok(meta) if !meta.is_file() => {
                bail!("{} is in the way: it is not a file", path.display())
            }
            _ => {}
        }
    }
    if tokio::fs::symlink_metadata(local).await.is_ok() {
        if matches(local, &expected).await? {
            bar.inc(expected.size);
            return Ok(Fetched::Present);
        }
        if !force {
            bar.inc(expected.size);
            return Ok(Fetched::Conflict);
        }
    }
    // A part resumes only if it came from the object as it is now: the ETag it was
    // started from is kept beside it.
    let started_from = tokio::fs::read_to_string(etag_of(&part)).await.ok();
    let mut from = match tokio::fs::symlink_metadata(&part).await {
        Ok(m) if m.len() < expected.size && started_from.as_deref() == expected.etag.as_deref() => {
            m.len()
        }
        _ => 0,
    };
    let resumed_at = from;
    // Each round either succeeds or learns something (the part was not these bytes, or
    // the object changed), so a few are enough.
    for round in 1.. {
        bar.inc(from);
        if from == 0 {
            write_nofollow(&etag_of(&part), expected.etag.as_deref().unwrap_or("")).await?;
        }
        let written = download(clients, bucket, &r.key, &expected, &part, from, bar).await?;
        if written.is_some() && matches(&part, &expected).await? {
            break;
        }
        let counted = from + written.unwrap_or(0);
        bar.set_position(bar.position().saturating_sub(counted));
        if round >= 3 {
            let _ = tokio::fs::remove_file(&part).await;
            let _ = tokio::fs::remove_file(etag_of(&part)).await;
            bail!("the download does not match the bucket's size and checksum");
        }
        if written.is_none() {
            // Replaced since it was checked: check it again, and start over.
            expected = self::expected(clients, bucket, &r.key).await?;
        }
        from = 0;
    }
    // rename(2) replaces the name itself, never what a link there points at.
    tokio::fs::rename(&part, local)
        .await
        .with_context(|| format!("cannot move {} to {}", part.display(), local.display()))?;
    let _ = tokio::fs::remove_file(etag_of(&part)).await;
    Ok(if resumed_at > 0 && from == resumed_at {
        Fetched::Resumed(resumed_at)
    } else {
        Fetched::Downloaded
    })
}

/// Makes `out/rel` one folder at a time, each a real folder: a symbolic link on the
/// way is refused, not followed. `out` itself is the user's choice and is taken as
/// given.
async fn real_dirs(out: &Path, rel: &Path) -> anyhow::Result<()> {
    let mut path = out.to_path_buf();
    if tokio::fs::metadata(&path).await.is_err() {
        tokio::fs::create_dir_all(&path)
            .await
            .with_context(|| format!("cannot create {}", path.display()))?;
    }
    for part in rel.components() {
        path.push(part);
        match tokio::fs::symlink_metadata(&path).await {
            Ok(meta) if meta.file_type().is_symlink() => bail!(
                "{} is a symbolic link; pcap-fetch writes through none (remove it)",
                path.display()
            ),
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => bail!("{} is in the way: it is not a folder", path.display()),
            Err(_) => match tokio::fs::create_dir(&path).await {
                Ok(()) => {}
                // Made meanwhile by a parallel download: checked again below.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let meta = tokio::fs::symlink_metadata(&path).await?;
                    if !meta.is_dir() {
                        bail!("{} is in the way: it is not a folder", path.display());
                    }
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", path.display()));
                }
            },
        }
    }
    Ok(())
}

/// Opens for writing without following a symbolic link at `path` (`O_NOFOLLOW`).
fn nofollow() -> tokio::fs::OpenOptions {
    let mut options = tokio::fs::OpenOptions::new();
    options
        .write(true)
        .create(true)
        .custom_flags(libc::O_NOFOLLOW);
    options
}

async fn write_nofollow(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = nofollow()
        .truncate(true)
        .open(path)
        .await
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes()).await?;
    file.sync_all().await?;
    Ok(())
}

/// `<file>.part.etag`: the ETag a part was started from.
fn etag_of(part: &Path) -> PathBuf {
    let mut name = part.file_name().unwrap_or_default().to_owned();
    name.push(".etag");
    part.with_file_name(name)
}

/// Why a capture is not taken from its folder, if it claims another origin: a
/// writer's folder holds only its own instance's files, and a name folder only
/// files of instances that had that name.
fn disowned(
    r: &Remote,
    claim: Option<&str>,
    records: &BTreeMap<String, crate::registry::Record>,
) -> Option<String> {
    let claim = claim?;
    let fits = match &r.origin {
        Some(origin) => claim == origin,
        None => records.get(claim).is_some_and(|rec| rec.name == r.instance),
    };
    (!fits).then(|| {
        format!(
            "it claims to come from `{}`, but lies in the folder of {}",
            untrusted::line(claim),
            match &r.origin {
                Some(origin) => format!("{} ({origin})", r.instance),
                None => r.instance.clone(),
            }
        )
    })
}

/// `<file>.part`, beside the file.
fn part_of(local: &Path) -> PathBuf {
    let mut name = local.file_name().unwrap_or_default().to_owned();
    name.push(".part");
    local.with_file_name(name)
}

/// The object's size, ETag and checksums.
async fn expected(clients: &Clients, bucket: &str, key: &str) -> anyhow::Result<Expected> {
    let head = clients
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .map_err(aws(format!("S3 HeadObject {key}")))?;
    let etag = head.e_tag().map(str::to_owned);
    // A single-part upload's ETag is its MD5; a multipart one's (with `-N`) is not.
    let md5 = etag
        .as_deref()
        .map(|e| e.trim_matches('"'))
        .filter(|e| e.len() == 32 && !e.contains('-'))
        .and_then(hex_bytes);
    let sha256 = head
        .checksum_sha256()
        .and_then(|s| aws_smithy_types::base64::decode(s).ok())
        .filter(|s| s.len() == 32);
    let claim = head
        .metadata()
        .and_then(|m| m.get(CLAIM_METADATA))
        .map(|c| c.to_owned());
    Ok(Expected {
        claim,
        size: head
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
        etag,
        sha256,
        md5,
    })
}

/// Whether the file at `path` has the expected size and checksum.
async fn matches(path: &Path, expected: &Expected) -> anyhow::Result<bool> {
    let path = path.to_owned();
    let expected = expected.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
        let len = std::fs::metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        if len != expected.size {
            return Ok(false);
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        // The digest the bucket has, and only that one: files run to a GB.
        let (mut digest, want): (Box<dyn sha2::digest::DynDigest>, &[u8]) =
            match (&expected.sha256, &expected.md5) {
                (Some(want), _) => (Box::new(sha2::Sha256::new()), want),
                (None, Some(want)) => (Box::new(md5::Md5::new()), want),
                // Nothing to check against but the size.
                (None, None) => return Ok(true),
            };
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if n == 0 {
                break;
            }
            digest.update(&buf[..n]);
        }
        Ok(*digest.finalize() == *want)
    })
    .await?
}

/// Downloads the object into `part` from byte `from` on (appending to what is there),
/// and says how many bytes came. `None` when S3 refused because the object changed
/// since `expected` was read (its ETag no longer matches).
async fn download(
    clients: &Clients,
    bucket: &str,
    key: &str,
    expected: &Expected,
    part: &Path,
    from: u64,
    bar: &ProgressBar,
) -> anyhow::Result<Option<u64>> {
    let mut get = clients
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_if_match(expected.etag.clone());
    if from > 0 {
        get = get.range(format!("bytes={from}-"));
    }
    let out = match get.send().await.map_err(aws(format!("S3 GetObject {key}"))) {
        Ok(out) => out,
        Err(e) if is_stale(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut file = nofollow()
        .truncate(from == 0)
        .append(from > 0)
        .open(part)
        .await
        .with_context(|| format!("cannot write {}", part.display()))?;
    let mut body = out.body;
    let mut written = 0;
    while let Some(chunk) = body
        .try_next()
        .await
        .with_context(|| format!("reading s3://{bucket}/{key}"))?
    {
        file.write_all(&chunk)
            .await
            .with_context(|| format!("cannot write {}", part.display()))?;
        bar.inc(chunk.len() as u64);
        written += chunk.len() as u64;
    }
    file.flush().await?;
    file.sync_all().await?;
    Ok(Some(written))
}

/// A range request refused because the object changed (412) or the part is past its
/// end (416).
fn is_stale(e: &AwsError) -> bool {
    e.is(&["PreconditionFailed", "InvalidRange"])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> aws_smithy_types::DateTime {
        aws_smithy_types::DateTime::from_secs(i64::try_from(secs).expect("small"))
    }

    #[test]
    fn keys_map_to_instance_and_a_safe_relative_path() {
        let r = remote("captures/server/capture-1.pcap", Some(10), Some(&at(5))).expect("ok");
        assert_eq!(r.instance, "server");
        assert_eq!(r.file, PathBuf::from("capture-1.pcap"));
        assert_eq!(r.size, 10);
        let nested = remote("captures/client-1/run/a.pcap", Some(1), None).expect("ok");
        assert_eq!(nested.file, PathBuf::from("run/a.pcap"));
        for bad in [
            "captures/a.pcap",
            "captures/server/",
            "captures/server/../../etc/passwd",
            "captures/../x/y.pcap",
            "captures/server//x.pcap/..",
            "reports/server.json",
            "captures//x.pcap",
        ] {
            assert_eq!(remote(bad, Some(1), None), None, "{bad}");
        }
    }

    #[test]
    fn since_and_latest_choose_per_instance() {
        let r = |key: &str, t: u64| remote(key, Some(1), Some(&at(t))).expect("valid key");
        let all = vec![
            r("captures/server/a.pcap", 100),
            r("captures/server/b.pcap", 300),
            r("captures/client-1/c.pcap", 200),
            r("captures/client-1/d.pcap", 50),
        ];
        let keys = |v: Vec<Remote>| v.into_iter().map(|r| r.key).collect::<Vec<_>>();
        assert_eq!(
            keys(choose(all.clone(), None, true)),
            ["captures/client-1/c.pcap", "captures/server/b.pcap"]
        );
        let since = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(150);
        assert_eq!(
            keys(choose(all.clone(), Some(since), false)),
            ["captures/client-1/c.pcap", "captures/server/b.pcap"]
        );
        let late = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(250);
        assert_eq!(
            keys(choose(all, Some(late), true)),
            ["captures/server/b.pcap"]
        );
        // The latest recording comes whole, even when a file of it is older than
        // another capture.
        let recordings = vec![
            r("captures/server/rot-1/rot-a.pcap", 100),
            r("captures/server/rot-1/rot-b.pcap", 110),
            r("captures/server/by-hand.pcap", 105),
            r("captures/server/rot-0/rot-z.pcap", 90),
        ];
        assert_eq!(
            keys(choose(recordings, None, true)),
            [
                "captures/server/rot-1/rot-a.pcap",
                "captures/server/rot-1/rot-b.pcap"
            ]
        );
    }

    #[test]
    fn etags_give_an_md5_only_for_single_part_uploads() {
        assert_eq!(hex_bytes("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(hex_bytes("0g"), None);
        assert_eq!(
            part_of(Path::new("out/server/a.pcap")),
            PathBuf::from("out/server/a.pcap.part")
        );
    }
}
