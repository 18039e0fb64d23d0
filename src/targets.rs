//! Which instances a command acts on: `server`, `client-2`, a role such as `client`,
//! or `all`.
//!
//! Commands that reach into instances (`exec`, `ssm-shell`, `forward`) share this so a
//! name means the same everywhere. Instances are found by the lab's own tags, never by
//! their `Name` tag alone, and terminated or shutting-down instances are ignored. An
//! instance that is not running, or whose SSM agent is not online, is an error that
//! says what to do, rather than a command that hangs until a timeout.

use std::collections::BTreeMap;

use anyhow::bail;
use aws_sdk_ssm::types::{InstanceInformationStringFilter, PingStatus};
use labctl_core::desired::{TAG_ADDRESS, TAG_LAB};
use labctl_core::diag::closest;
use labctl_core::{Address, Kind};

use crate::aws::observe::{lab_filter, live_filter, tag};
use crate::aws::{Clients, aws};
use crate::invocation;
use crate::lab::Lab;

/// The word that selects every instance of the lab.
pub const ALL: &str = "all";

/// One instance a command acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Instance name, as in `labctl status` (`client-2`).
    pub name: String,
    /// EC2 instance id.
    pub id: String,
    /// Its role in the topology (empty for an instance the topology no longer has).
    pub role: String,
    /// EC2 state name (`running`, `stopped`...).
    pub state: String,
}

/// The instances `target` names, in name order (`client-2` before `client-10`).
///
/// `target` is an instance name, a role (every instance of it) or `all`; a word that is
/// both an instance and a role means the instance. Every instance must be running.
pub async fn resolve(lab: &Lab, target: &str) -> anyhow::Result<Vec<Target>> {
    // name → role, as the topology has them.
    let planned: BTreeMap<String, String> = lab
        .topology
        .instances
        .iter()
        .flat_map(|i| {
            i.expanded_names()
                .into_iter()
                .map(|n| (n, i.role.value.clone()))
        })
        .collect();
    let roles: Vec<&str> = lab
        .topology
        .roles
        .iter()
        .map(|r| r.name.value.as_str())
        .collect();
    let mut live = live_instances(&lab.clients, &lab.desired.lab, &planned).await?;
    live.sort_by(|a, b| {
        name_order(&a.name)
            .cmp(&name_order(&b.name))
            .then(a.id.cmp(&b.id))
    });
    let chosen: Vec<Target> = if target == ALL {
        if live.is_empty() {
            bail!(
                "lab `{}` has no instances; run `{}` to create them",
                lab.desired.lab,
                invocation::command("up")
            );
        }
        live
    } else if live.iter().any(|t| t.name == target) {
        live.into_iter().filter(|t| t.name == target).collect()
    } else if planned.contains_key(target) {
        bail!(
            "instance `{target}` is in the topology but has no instance yet; run `{}` to \
             create it",
            invocation::command("up")
        );
    } else if roles.contains(&target) {
        let members: Vec<Target> = live.into_iter().filter(|t| t.role == target).collect();
        if members.is_empty() {
            if planned.values().any(|r| r == target) {
                bail!(
                    "role `{target}` has no instances yet; run `{}` to create them",
                    invocation::command("up")
                );
            }
            bail!("role `{target}` has no instances in the topology");
        }
        members
    } else {
        let mut names: Vec<&str> = planned.keys().map(String::as_str).collect();
        names.extend(live.iter().map(|t| t.name.as_str()));
        names.sort_by_key(|n| name_order(n));
        names.dedup();
        let hint = closest(target, names.iter().copied().chain(roles.iter().copied()))
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_default();
        bail!(
            "no instance or role named `{target}`{hint} (instances: {}; roles: {}; or `{ALL}`)",
            list(&names),
            list(&roles),
        );
    };
    require_running(&chosen)?;
    for t in &chosen {
        tracing::info!(name = %t.name, id = %t.id, role = %t.role, state = %t.state, "target");
    }
    Ok(chosen)
}

/// The one instance of `targets`, for commands that act on exactly one.
pub fn require_single(mut targets: Vec<Target>) -> anyhow::Result<Target> {
    if targets.len() > 1 {
        let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        bail!(
            "this command acts on one instance, and the target selects {} ({}); name one \
             of them",
            targets.len(),
            names.join(", ")
        );
    }
    targets
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no instance selected"))
}

/// Checks that every target's SSM agent is online, with a line per instance that is
/// not: not registered yet, or its connection lost.
///
/// An endpoint that does not implement `DescribeInstanceInformation` (HTTP 501, as some
/// emulators answer) cannot tell; that is logged as a warning and the check passes.
pub async fn require_online(clients: &Clients, targets: &[Target]) -> anyhow::Result<()> {
    const OPERATION: &str = "SSM DescribeInstanceInformation";
    let mut seen: BTreeMap<String, (PingStatus, Option<String>)> = BTreeMap::new();
    // The filter takes at most 50 ids.
    for chunk in targets.chunks(50) {
        let filter = InstanceInformationStringFilter::builder()
            .key("InstanceIds")
            .set_values(Some(chunk.iter().map(|t| t.id.clone()).collect()))
            .build()
            .map_err(|e| anyhow::anyhow!("{OPERATION}: {e}"))?;
        let mut pages = clients
            .ssm
            .describe_instance_information()
            .filters(filter)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 501) => {
                    tracing::warn!(
                        "{OPERATION} is not implemented by this SSM endpoint (HTTP 501); \
                         cannot check that the agents are online, going on without"
                    );
                    return Ok(());
                }
                Err(e) => return Err(aws(OPERATION)(e).into()),
            };
            for info in page.instance_information_list() {
                let (Some(id), Some(ping)) = (info.instance_id(), info.ping_status()) else {
                    continue;
                };
                let last = info.last_ping_date_time().map(|t| t.to_string());
                seen.insert(id.to_owned(), (ping.clone(), last));
            }
        }
    }
    let problems: Vec<String> = targets
        .iter()
        .filter_map(|t| {
            let who = format!("{} ({})", t.name, t.id);
            match seen.get(&t.id) {
                Some((PingStatus::Online, _)) => None,
                None => Some(format!(
                    "{who}: its SSM agent has not registered with Systems Manager. A new \
                     instance takes a few minutes; the instance role needs \
                     AmazonSSMManagedInstanceCore; `labctl status` shows the bootstrap report"
                )),
                Some((PingStatus::ConnectionLost, last)) => Some(format!(
                    "{who}: its SSM agent lost its connection (PingStatus ConnectionLost{}); \
                     the instance may be overloaded, rebooting, or cut off from the SSM \
                     endpoints; `labctl status` shows its state",
                    last.as_ref()
                        .map(|l| format!(", last ping {l}"))
                        .unwrap_or_default()
                )),
                Some((other, _)) => Some(format!(
                    "{who}: its SSM agent is not online (PingStatus {})",
                    other.as_str()
                )),
            }
        })
        .collect();
    match problems.as_slice() {
        [] => Ok(()),
        [one] => bail!("cannot reach {one}"),
        many => bail!(
            "cannot reach {} of the {} instances through SSM:\n  {}",
            many.len(),
            targets.len(),
            many.join("\n  ")
        ),
    }
}

/// Fails with a line per target that is not running, saying what to do.
fn require_running(targets: &[Target]) -> anyhow::Result<()> {
    let problems: Vec<String> = targets
        .iter()
        .filter(|t| t.state != "running")
        .map(|t| {
            let advice = match t.state.as_str() {
                "stopped" => format!("`{}` starts stopped instances", invocation::command("up")),
                "stopping" => format!(
                    "wait until it has stopped, then `{}` starts it again",
                    invocation::command("up")
                ),
                "pending" => format!(
                    "it is starting; try again in a minute (`{}` waits for it)",
                    invocation::command("up --wait")
                ),
                _ => format!(
                    "`{}` shows the lab's instances",
                    invocation::command("status")
                ),
            };
            format!("instance {} ({}) is {}: {advice}", t.name, t.id, t.state)
        })
        .collect();
    match problems.as_slice() {
        [] => Ok(()),
        [one] => bail!("{one}"),
        many => bail!(
            "{} instances are not running:\n  {}",
            many.len(),
            many.join("\n  ")
        ),
    }
}

/// The lab's instances that are not terminated or shutting down, named by their
/// address tag.
async fn live_instances(
    clients: &Clients,
    lab: &str,
    planned: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<Target>> {
    let reservations = clients
        .ec2
        .describe_instances()
        .filters(lab_filter(lab))
        .filters(live_filter())
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(aws("EC2 DescribeInstances"))?;
    let mut out = Vec::new();
    for i in reservations.iter().flat_map(|r| r.instances()) {
        // The filter narrows the listing; ownership is still checked on every item.
        if tag(i.tags(), TAG_LAB) != Some(lab) {
            continue;
        }
        let Some(address) = tag(i.tags(), TAG_ADDRESS).and_then(Address::parse) else {
            continue;
        };
        let (Kind::Instance, Some(id)) = (address.kind, i.instance_id()) else {
            continue;
        };
        let state = i
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        if matches!(state.as_str(), "terminated" | "shutting-down") {
            continue;
        }
        out.push(Target {
            role: planned.get(&address.name).cloned().unwrap_or_default(),
            name: address.name,
            id: id.to_owned(),
            state,
        });
    }
    Ok(out)
}

/// Sorts `client-2` before `client-10`.
fn name_order(name: &str) -> (&str, u64, &str) {
    match name.rsplit_once('-') {
        Some((stem, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (stem, n.parse().unwrap_or(u64::MAX), name)
        }
        _ => (name, 0, name),
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, state: &str) -> Target {
        Target {
            name: name.into(),
            id: format!("i-{name}"),
            role: "client".into(),
            state: state.into(),
        }
    }

    #[test]
    fn numbered_names_sort_by_number() {
        let mut names = vec!["client-10", "server", "client-2", "client-1"];
        names.sort_by_key(|n| name_order(n));
        assert_eq!(names, ["client-1", "client-2", "client-10", "server"]);
    }

    #[test]
    fn stopped_instances_are_named_with_what_to_do() {
        let err = require_running(&[t("client-1", "running"), t("client-2", "stopped")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("client-2 (i-client-2) is stopped"), "{err}");
        assert!(
            err.contains("`labctl up` starts stopped instances"),
            "{err}"
        );
        assert!(!err.contains("client-1"), "{err}");
        assert!(require_running(&[t("server", "running")]).is_ok());
    }

    #[test]
    fn single_refuses_several() {
        let one = require_single(vec![t("server", "running")]).unwrap();
        assert_eq!(one.name, "server");
        let err = require_single(vec![t("client-1", "running"), t("client-2", "running")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("selects 2"), "{err}");
    }
}
