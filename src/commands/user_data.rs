//! `labctl user-data`: what an instance boots with, so a user can read exactly what
//! will run before it runs. The text is what `up` sends (gzip-compressed; cloud-init
//! inflates it): the account id (part of the bucket's name) comes from one STS call.
//! `--offline` makes no call and shows it as `{account}`.

use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use labctl_core::diag::closest;
use labctl_core::{Context, expand};

use crate::artifact;
use crate::aws::{self, Clients, choose_region, explain};
use crate::cli::{GlobalArgs, UserDataArgs};
use crate::printer::Printer;
use crate::topology_file;

pub async fn run(
    global: &GlobalArgs,
    args: &UserDataArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let topology = topology_file::load(&global.file, printer)?;
    let topology_region = topology.region.as_ref().map(|r| r.value.as_str());
    // A misspelt name is reported before anything is built or asked of AWS.
    let names = expand(&topology, &Context::default()).user_data;
    if !names.contains_key(&args.instance) {
        let names: Vec<&str> = names.keys().map(String::as_str).collect();
        // An entry with `count` has one name per copy: each is as good a guess.
        let copies: Vec<String> = topology
            .instances
            .iter()
            .find(|i| i.name.value == args.instance)
            .map(|i| i.expanded_names())
            .unwrap_or_default();
        let hint = if copies.is_empty() {
            closest(&args.instance, names.iter().copied())
                .map(|n| format!("; did you mean `{n}`?"))
                .unwrap_or_default()
        } else {
            format!(
                "; `{}` has {} copies: name one of `{}`",
                args.instance,
                copies.len(),
                copies.join("`, `")
            )
        };
        bail!(
            "the topology has no instance `{}` (it has {}){hint}",
            args.instance,
            names.join(", ")
        );
    }
    let labnet = artifact::resolve(&topology, &global.file, printer)?;
    let (region, account) = if args.offline {
        (
            choose_region(global.region.as_deref(), topology_region)?,
            None,
        )
    } else {
        let session = aws::connect(global, topology_region).await?;
        let identity = Clients::new(&session)
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "{}; `--offline` renders without it",
                    explain(&session.service("STS"), &e)
                )
            })?;
        (
            Some(session.region.clone()),
            identity.account().map(str::to_owned),
        )
    };
    let ctx = Context {
        region,
        account,
        labnet_sha256: labnet.map(|b| b.sha256),
        ..Context::default()
    };
    let mut desired = expand(&topology, &ctx);
    let text = desired
        .user_data
        .remove(&args.instance)
        .context("the instance vanished from the desired state")?;
    printer.result(text.trim_end());
    if text.contains("{account}") {
        printer.note(
            "note: `{account}` stands for your AWS account id, which `up` fills in \
             (run without --offline to ask AWS for it)",
        );
    }
    Ok(ExitCode::SUCCESS)
}
