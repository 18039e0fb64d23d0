//! The pipeline every lab command shares: topology → AWS session → desired state →
//! observed state → plan.
//!
//! Commands differ only in what they do with the plan; this module makes sure they all
//! build it the same way, and that nothing touches AWS before the topology is valid.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use anyhow::{Context as _, anyhow};
use labctl_core::plan::{self, Action, Observed, Plan};
use labctl_core::topology::{BucketName, Image, Peer};
use labctl_core::{Context, Desired, Kind, Spec, Topology, cost, expand};

use crate::artifact::{self, LocalBinary};
use crate::aws::images::{self, Ami};
use crate::aws::observe::{self, Expected};
use crate::aws::{self, Clients, explain};
use crate::cli::GlobalArgs;
use crate::printer::Printer;
use crate::{myip, topology_file};

/// A lab ready to be planned or applied.
pub struct Lab {
    pub topology: Topology,
    pub clients: Clients,
    /// The SDK configuration (credentials, region, endpoints) the clients came from.
    pub sdk: aws_config::SdkConfig,
    pub desired: Desired,
    /// The labnet binary `up` uploads (`None`: not needed, or fetched from a URL).
    pub labnet: Option<LocalBinary>,
}

/// What a command pays for before it can start. Only planning (`plan`, `up`) needs
/// the labnet binary (its digest is in the user-data) and the caller's public address
/// (`my-ip` rules); taking a lab down, reading its status or reaching its instances
/// builds nothing and looks nothing up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// The whole desired state: the labnet build and the `my-ip` lookup.
    Plan,
    /// Only what the lab is called and what it owns.
    Read,
}

impl Lab {
    /// Loads and validates the topology, connects, and computes the desired state.
    pub async fn prepare(
        global: &GlobalArgs,
        printer: &Printer,
        needs: Needs,
    ) -> anyhow::Result<Self> {
        let topology = topology_file::load(&global.file, printer)?;
        let labnet = match needs {
            Needs::Plan => artifact::resolve(&topology, &global.file, printer)?,
            Needs::Read => None,
        };
        let region = topology.region.as_ref().map(|r| r.value.as_str());
        let session = aws::connect(global, region).await?;
        let sts_name = session.service("STS");
        let clients = Clients::new(&session);
        // A region from the flag, the environment or the profile, refused before any
        // call as the topology's own would be.
        labctl_core::validate::supported_region(&clients.region).map_err(|why| anyhow!(why))?;
        let identity = clients
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| anyhow!(explain(&sts_name, &e)))?;
        let account = identity.account().map(str::to_owned);
        let my_ip = match needs {
            Needs::Plan => my_ip(&topology, global.my_ip).await?,
            Needs::Read => None,
        };
        let policy_arns = match needs {
            Needs::Plan => {
                let names: Vec<String> = topology
                    .iam
                    .instance_role
                    .managed_policies
                    .iter()
                    .map(|p| p.value.clone())
                    .collect();
                aws::kinds::iam_role::resolve_policies(&clients, &names).await?
            }
            Needs::Read => Default::default(),
        };
        let zones = match needs {
            Needs::Plan => aws::zones::choose(&clients, &topology).await?,
            Needs::Read => Default::default(),
        };
        let ctx = Context {
            zones,
            policy_arns,
            account,
            region: Some(clients.region.clone()),
            my_ip,
            labnet_sha256: labnet.as_ref().map(|b| b.sha256.clone()),
        };
        let desired = expand(&topology, &ctx);
        Ok(Self {
            topology,
            clients,
            sdk: session.config,
            desired,
            labnet,
        })
    }

    /// What the lab owns now.
    pub async fn observe(&self) -> anyhow::Result<Observed> {
        // The names the lab claims, as the desired state spells them.
        let name_of = |kind| {
            self.desired
                .resources
                .iter()
                .find(|r| r.address.kind == kind)
                .map(|r| r.name.as_str())
        };
        observe::observe(
            &self.clients,
            &Expected {
                lab: &self.desired.lab,
                iam_role: name_of(Kind::IamRole),
                bucket: name_of(Kind::Bucket),
                bucket_is_auto: self.topology.captures.bucket.value == BucketName::Auto,
                labnet_key: name_of(Kind::Artifact),
            },
        )
        .await
        .context("cannot read the lab's state from AWS")
    }

    /// The plan that makes AWS match the topology.
    pub async fn plan(&self) -> anyhow::Result<(Observed, Plan)> {
        let observed = self.observe().await?;
        let plan = plan::diff(&self.desired, &observed);
        Ok((observed, plan))
    }

    /// The plan that deletes everything the lab owns.
    pub async fn teardown(&self) -> anyhow::Result<(Observed, Plan, Desired)> {
        let observed = self.observe().await?;
        let nothing = Desired {
            lab: self.desired.lab.clone(),
            resources: Vec::new(),
            user_data: BTreeMap::new(),
        };
        let plan = plan::diff(&nothing, &observed);
        Ok((observed, plan, nothing))
    }

    /// What the lab's instances cost per hour while they run (and per lifetime).
    pub fn cost(&self) -> String {
        let (estimate, lifetime) = self.estimate();
        estimate.render(lifetime)
    }

    /// The hourly estimate, and the lifetime in minutes when the topology sets one.
    pub fn estimate(&self) -> (cost::Estimate, Option<u64>) {
        let instances = cost::instances(&self.desired, cost::DEFAULT_ROOT_GIB);
        let lifetime = self
            .topology
            .lifetime
            .as_ref()
            .map(|l| l.value.0.as_secs() / 60);
        (cost::estimate(&self.clients.region, &instances), lifetime)
    }

    /// The account's quotas against what the plan adds, before anything changes (see
    /// [`aws::preflight`]); what could not be checked is a warning.
    pub async fn preflight(&self, plan: &Plan, printer: &Printer) -> anyhow::Result<()> {
        let adds = plan.changes.iter().any(|c| {
            matches!(
                c.address.kind,
                Kind::Instance | Kind::Vpc | Kind::InternetGateway
            ) && matches!(c.action, Action::Create | Action::Replace)
        });
        if adds {
            let cleared = aws::preflight::check(&self.clients, plan, &self.desired).await?;
            for warning in cleared.warnings {
                printer.warn(&warning);
            }
        }
        Ok(())
    }

    /// AMIs for the instances the plan launches (none resolved otherwise).
    pub async fn images_for(&self, plan: &Plan) -> anyhow::Result<BTreeMap<String, Ami>> {
        let launching: Vec<&str> = plan
            .changes
            .iter()
            .filter(|c| {
                c.address.kind == Kind::Instance
                    && matches!(c.action, Action::Create | Action::Replace)
            })
            .filter_map(|c| match &c.desired {
                Some(Spec::Instance { image, .. }) => Some(image.as_str()),
                _ => None,
            })
            .collect();
        let refs: Vec<Image> = self
            .topology
            .instances
            .iter()
            .map(|i| i.image.value.clone())
            .filter(|i| launching.contains(&i.to_string().as_str()))
            .collect();
        images::resolve(&self.clients, &refs).await
    }
}

async fn my_ip(topology: &Topology, given: Option<Ipv4Addr>) -> anyhow::Result<Option<Ipv4Addr>> {
    let used = topology.roles.iter().any(|r| {
        r.ingress
            .iter()
            .chain(r.egress.iter().flatten())
            .any(|rule| rule.peers.iter().any(|p| p.value == Peer::MyIp))
    });
    match (used, given) {
        (false, _) => Ok(None),
        (true, Some(ip)) => myip::given(ip).map(Some),
        (true, None) => myip::lookup().await.map(Some),
    }
}
