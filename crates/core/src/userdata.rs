//! The user-data an instance boots with, rendered from the lab's values.
//!
//! Rendering is pure and holds nothing time-varying, so an unchanged lab renders the
//! same bytes; the digest of those bytes, kept as a tag on the instance, is how `plan`
//! notices that an instance would boot differently and must be replaced. This first
//! version names the host and installs the capture tools; the full bootstrap (labnet
//! download and services) renders from `cloud-init/` templates.

use std::fmt::Write;

use sha2::{Digest, Sha256};

/// The values one instance's user-data depends on.
#[derive(Debug, Clone)]
pub struct UserDataInput<'a> {
    /// Lab name.
    pub lab: &'a str,
    /// Instance name (`client-2`).
    pub instance: &'a str,
    /// Security role.
    pub role: &'a str,
    /// Private zone, if any.
    pub zone: Option<&'a str>,
    /// Services to run, sorted.
    pub services: &'a [String],
    /// Minutes until the instance stops itself.
    pub lifetime_minutes: Option<u64>,
}

/// Renders the cloud-config for one instance.
pub fn render(input: &UserDataInput<'_>) -> String {
    let fqdn = match input.zone {
        Some(zone) => format!("{}.{zone}", input.instance),
        None => input.instance.to_owned(),
    };
    let mut out = String::from("#cloud-config\n");
    let _ = writeln!(
        out,
        "# labctl lab `{}`, instance `{}`, role `{}`",
        input.lab, input.instance, input.role
    );
    let _ = writeln!(out, "hostname: {}", input.instance);
    let _ = writeln!(out, "fqdn: {fqdn}");
    out.push_str("package_update: true\npackages:\n  - tcpdump\n  - net-tools\n");
    out.push_str("write_files:\n  - path: /etc/labctl/instance\n    content: |\n");
    let _ = writeln!(
        out,
        "      LAB={}\n      INSTANCE={}\n      ROLE={}",
        input.lab, input.instance, input.role
    );
    let _ = writeln!(out, "      SERVICES=\"{}\"", input.services.join(" "));
    if let Some(minutes) = input.lifetime_minutes {
        // `shutdown` halts; InstanceInitiatedShutdownBehavior=stop makes that a stop.
        let _ = writeln!(
            out,
            "runcmd:\n  - [shutdown, -h, \"+{minutes}\", \"labctl lifetime reached\"]"
        );
    }
    out
}

/// The first 16 hex digits of the SHA-256 of `user_data`: short enough for a tag,
/// long enough that a change is never mistaken for no change.
pub fn digest(user_data: &str) -> String {
    let hash = Sha256::digest(user_data.as_bytes());
    hash.iter().take(8).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(services: &'a [String], lifetime: Option<u64>) -> UserDataInput<'a> {
        UserDataInput {
            lab: "netlab",
            instance: "server",
            role: "server",
            zone: Some("lab.internal"),
            services,
            lifetime_minutes: lifetime,
        }
    }

    #[test]
    fn rendering_is_deterministic_and_sensitive_to_inputs() {
        let svc = vec!["tcp-server".to_owned()];
        let a = render(&input(&svc, Some(240)));
        assert_eq!(a, render(&input(&svc, Some(240))));
        assert!(a.contains("fqdn: server.lab.internal"));
        assert!(a.contains("+240"));
        assert_ne!(digest(&a), digest(&render(&input(&svc, None))));
        assert_ne!(digest(&a), digest(&render(&input(&[], Some(240)))));
        assert_eq!(digest(&a).len(), 16);
    }
}
