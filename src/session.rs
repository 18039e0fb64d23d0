//! Session Manager sessions with the lab's instances, spoken natively: `ssm:StartSession`,
//! then the data channel (`labctl_ssm`), with `ssm:ResumeSession` whenever the
//! websocket drops, so neither the plugin nor SSH keys nor open ports are needed.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use aws_credential_types::provider::ProvideCredentials;
use bytes::Bytes;
use futures::future::BoxFuture;
use labctl_ssm::channel::{self, Channel, Config, Connector, Event, Role, Socket};
use labctl_ssm::connect::{self, Signing};
use labctl_ssm::message::{
    CLIENT_VERSION, HandshakeComplete, HandshakeRequest, HandshakeResponse, PayloadType,
    ProcessedAction,
};

use crate::aws::{Clients, aws};
use crate::lab::Lab;

/// A started session.
pub struct Started {
    /// The session's id.
    pub id: String,
    /// Its data channel.
    pub channel: Channel,
}

/// What `StartSession` answered, for a hand-over to the official plugin.
pub struct Answer {
    /// SessionId.
    pub id: String,
    /// TokenValue.
    pub token: String,
    /// StreamUrl.
    pub url: String,
}

/// `ssm:StartSession` for `target` with `document` (None: a shell).
pub async fn start_api(
    clients: &Clients,
    target: &str,
    document: Option<&str>,
    parameters: &HashMap<String, Vec<String>>,
) -> anyhow::Result<Answer> {
    let mut req = clients.ssm.start_session().target(target);
    if let Some(doc) = document {
        req = req.document_name(doc);
    }
    for (k, v) in parameters {
        req = req.parameters(k, v.clone());
    }
    let out = req
        .send()
        .await
        .map_err(aws(format!("SSM StartSession {target}")))?;
    Ok(Answer {
        id: out.session_id().unwrap_or_default().to_owned(),
        token: out
            .token_value()
            .context("StartSession returned no token")?
            .to_owned(),
        url: out
            .stream_url()
            .context("StartSession returned no stream URL")?
            .to_owned(),
    })
}

/// Starts a session and opens its data channel.
pub async fn start(
    clients: &Clients,
    sdk: &aws_config::SdkConfig,
    target: &str,
    document: Option<&str>,
    parameters: &HashMap<String, Vec<String>>,
) -> anyhow::Result<Started> {
    let answer = start_api(clients, target, document, parameters).await?;
    let connector = Resuming {
        ssm: clients.ssm.clone(),
        sdk: sdk.clone(),
        region: clients.region.clone(),
        session_id: answer.id.clone(),
        client_id: uuid::Uuid::new_v4().to_string(),
        first: Some((answer.url, answer.token)),
    };
    let channel = channel::spawn(connector, Config::new(Role::Client));
    Ok(Started {
        id: answer.id,
        channel,
    })
}

/// `ssm:TerminateSession`, best effort: the session ends on the agent's side anyway.
pub async fn terminate(clients: &Clients, id: &str) {
    if let Err(e) = clients.ssm.terminate_session().session_id(id).send().await {
        tracing::debug!("TerminateSession {id}: {e}");
    }
}

/// Connects the data channel: the first time with StartSession's token, later with a
/// fresh one from ResumeSession.
struct Resuming {
    ssm: aws_sdk_ssm::Client,
    sdk: aws_config::SdkConfig,
    region: String,
    session_id: String,
    client_id: String,
    first: Option<(String, String)>,
}

impl Resuming {
    async fn signing(&self) -> Option<Signing> {
        let provider = self.sdk.credentials_provider()?;
        let credentials = provider.provide_credentials().await.ok()?;
        Some(Signing {
            credentials,
            region: self.region.clone(),
        })
    }

    async fn open(&mut self, resume: bool) -> Result<Socket, String> {
        let (url, token) = match self.first.take() {
            Some(first) if !resume => first,
            _ => {
                let out = self
                    .ssm
                    .resume_session()
                    .session_id(&self.session_id)
                    .send()
                    .await
                    .map_err(|e| {
                        format!(
                            "ResumeSession: {}",
                            aws_sdk_ssm::error::DisplayErrorContext(e)
                        )
                    })?;
                (
                    out.stream_url().unwrap_or_default().to_owned(),
                    out.token_value().unwrap_or_default().to_owned(),
                )
            }
        };
        let signing = self.signing().await;
        connect::open(&url, &token, &self.client_id, signing.as_ref()).await
    }
}

impl Connector for Resuming {
    fn connect(&mut self, resume: bool) -> BoxFuture<'_, Result<Socket, String>> {
        Box::pin(self.open(resume))
    }
}

/// Answers the agent's handshake (port sessions always do one; shells only with KMS).
/// KMS-encrypted sessions are refused with a clear message.
pub async fn answer_handshake(channel: &Channel, request: &[u8]) -> anyhow::Result<()> {
    let request: HandshakeRequest =
        serde_json::from_slice(request).context("the agent's handshake request is not JSON")?;
    let mut processed = Vec::new();
    for action in &request.requested_client_actions {
        if action.action_type == "KMSEncryption" {
            bail!(
                "this session is KMS-encrypted (the account's Session Manager preferences ask \
                 for it), which labctl does not support yet; use `--plugin` with AWS's \
                 session-manager-plugin, or turn KMS encryption off for the lab's account"
            );
        }
        processed.push(ProcessedAction {
            action_type: action.action_type.clone(),
            action_status: 1,
            action_result: serde_json::Value::Null,
            error: String::new(),
        });
    }
    let response = HandshakeResponse {
        client_version: CLIENT_VERSION.into(),
        processed_client_actions: processed,
        errors: vec![],
    };
    channel
        .sender
        .send(
            PayloadType::HandshakeResponse,
            Bytes::from(serde_json::to_vec(&response)?),
        )
        .await
        .map_err(|e| anyhow!(e))
}

/// Waits through the handshake of a port session until it is complete.
pub async fn handshake(channel: &mut Channel) -> anyhow::Result<()> {
    loop {
        match channel.events.recv().await {
            Some(Event::Data(PayloadType::HandshakeRequest, body)) => {
                answer_handshake(channel, &body).await?;
            }
            Some(Event::Data(PayloadType::HandshakeComplete, body)) => {
                if let Ok(done) = serde_json::from_slice::<HandshakeComplete>(&body)
                    && !done.customer_message.is_empty()
                {
                    eprintln!("{}", done.customer_message);
                }
                return Ok(());
            }
            Some(Event::Data(..)) => {}
            Some(Event::Closed(text)) => bail!("the session closed during its handshake: {text}"),
            Some(Event::Failed(e)) => bail!("{e}"),
            None => bail!("the session ended during its handshake"),
        }
    }
}

/// A flag message's payload (`TerminateSession`: 2).
pub fn flag(value: u32) -> Bytes {
    Bytes::copy_from_slice(&value.to_be_bytes())
}

/// Hands the session over to AWS's `session-manager-plugin`, as the AWS CLI does.
pub async fn hand_over(
    lab: &Lab,
    target: &str,
    document: Option<&str>,
    parameters: &HashMap<String, Vec<String>>,
) -> anyhow::Result<ExitCode> {
    let plugin = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("session-manager-plugin"))
                .find(|p| p.is_file())
        })
        .context(
            "--plugin needs AWS's session-manager-plugin on PATH; without --plugin labctl speaks \
             the protocol itself",
        )?;
    let answer = start_api(&lab.clients, target, document, parameters).await?;
    let response = serde_json::json!({
        "SessionId": answer.id,
        "TokenValue": answer.token,
        "StreamUrl": answer.url,
    });
    let mut request = serde_json::json!({ "Target": target });
    if let Some(doc) = document {
        request["DocumentName"] = doc.into();
        request["Parameters"] = serde_json::to_value(parameters)?;
    }
    // The endpoint labctl's own SSM client uses: the service's variable, the global one,
    // or AWS's.
    let endpoint = std::env::var("AWS_ENDPOINT_URL_SSM")
        .ok()
        .filter(|e| !e.is_empty())
        .or_else(|| lab.sdk.endpoint_url().map(str::to_owned))
        .unwrap_or_else(|| format!("https://ssm.{}.amazonaws.com", lab.clients.region));
    let profile = std::env::var("AWS_PROFILE").unwrap_or_default();
    let status = tokio::process::Command::new(&plugin)
        .arg(response.to_string())
        .arg(&lab.clients.region)
        .arg("StartSession")
        .arg(profile)
        .arg(request.to_string())
        .arg(endpoint)
        .status()
        .await
        .with_context(|| format!("cannot run {}", plugin.display()))?;
    match status.code() {
        Some(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        None => bail!("{} was killed by a signal", plugin.display()),
    }
}
