//! The AWS layer: loading configuration and turning SDK errors into one clear line.
//!
//! Everything here uses the standard AWS configuration chain, so the same code runs
//! against AWS and against LocalStack, selected only by `AWS_ENDPOINT_URL` (or the
//! per-service `AWS_ENDPOINT_URL_<SERVICE>` variables).

use std::error::Error as StdError;

use anyhow::bail;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};

use crate::cli::GlobalArgs;

/// A loaded AWS configuration and the region it settled on.
pub struct Session {
    /// Shared SDK configuration for every client.
    pub config: SdkConfig,
    /// The effective region.
    pub region: String,
}

impl Session {
    /// A service's name for messages, with the endpoint when one is configured
    /// (`STS at http://127.0.0.1:4566`), so a wrong endpoint is obvious.
    pub fn service(&self, name: &str) -> String {
        match self.config.endpoint_url() {
            Some(url) => format!("{name} at {url}"),
            None => name.to_owned(),
        }
    }
}

/// Picks the region: `--region` beats the topology, which beats the profile and the
/// environment. A `--region` that contradicts the topology is a mistake, not a choice.
pub fn choose_region(flag: Option<&str>, topology: Option<&str>) -> anyhow::Result<Option<String>> {
    match (flag, topology) {
        (Some(f), Some(t)) if f != t => {
            bail!("--region {f} contradicts the topology's `region: {t}`; remove one of them")
        }
        (Some(r), _) | (None, Some(r)) => Ok(Some(r.to_owned())),
        (None, None) => Ok(None),
    }
}

/// Loads the SDK configuration for the given options.
pub async fn connect(
    global: &GlobalArgs,
    topology_region: Option<&str>,
) -> anyhow::Result<Session> {
    let region = choose_region(global.region.as_deref(), topology_region)?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(profile) = &global.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    let config = loader.load().await;
    let Some(region) = config.region().map(|r| r.to_string()) else {
        bail!(
            "no AWS region configured: pass --region, add `region:` to the topology, or set AWS_REGION"
        );
    };
    tracing::info!(%region, "AWS configuration loaded");
    Ok(Session { config, region })
}

/// One line that says what went wrong with an AWS call, without SDK debug noise.
pub fn explain<E, R>(service: &str, err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: std::fmt::Debug + 'static,
{
    match err {
        SdkError::ServiceError(e) => {
            let inner = e.err();
            let code = inner.code().unwrap_or("error");
            let message = inner.message().unwrap_or("no message");
            match code {
                "InvalidClientTokenId"
                | "SignatureDoesNotMatch"
                | "AuthFailure"
                | "UnrecognizedClientException"
                | "InvalidAccessKeyId"
                | "ExpiredToken" => format!(
                    "{service} rejected the credentials ({code}: {message}); check AWS_PROFILE or AWS_ACCESS_KEY_ID"
                ),
                _ => format!("{service} answered {code}: {message}"),
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            format!("cannot reach {service}: {}", innermost(err))
        }
        _ => format!("{service} call failed: {}", innermost(err)),
    }
}

/// The deepest cause in an error chain: the part that names the real problem.
fn innermost(err: &(dyn StdError + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
