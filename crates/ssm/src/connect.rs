//! Opening a data channel websocket as a client: the SigV4-signed upgrade current
//! official plugins send, then the opening JSON with the session's token.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use futures::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::channel::Socket;
use crate::message::{CLIENT_VERSION, Opening};

/// What signs the upgrade request.
#[derive(Debug, Clone)]
pub struct Signing {
    /// The caller's credentials.
    pub credentials: Credentials,
    /// The session's region.
    pub region: String,
}

/// Connects to `stream_url` and sends the opening frame with `token`.
///
/// The upgrade is signed (service `ssmmessages`) unless the URL is already presigned
/// (it carries `X-Amz-` query parameters) or no signing is given.
pub async fn open(
    stream_url: &str,
    token: &str,
    client_id: &str,
    signing: Option<&Signing>,
) -> Result<Socket, String> {
    let mut request = stream_url
        .into_client_request()
        .map_err(|e| format!("bad stream URL {stream_url}: {e}"))?;
    if let Some(signing) = signing
        && !stream_url.contains("X-Amz-")
    {
        let host = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| format!("stream URL {stream_url} has no host"))?;
        let identity = Identity::from(signing.credentials.clone());
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&signing.region)
            .name("ssmmessages")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| format!("cannot sign the websocket upgrade: {e}"))?
            .into();
        let signable = SignableRequest::new(
            "GET",
            stream_url,
            [("host", host.as_str())].into_iter(),
            SignableBody::Bytes(&[]),
        )
        .map_err(|e| format!("cannot sign the websocket upgrade: {e}"))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| format!("cannot sign the websocket upgrade: {e}"))?
            .into_parts();
        let headers: Vec<(String, String)> = instructions
            .headers()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        for (name, value) in headers {
            let value = HeaderValue::from_str(&value).map_err(|e| e.to_string())?;
            let name =
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| e.to_string())?;
            request.headers_mut().insert(name, value);
        }
    }
    // Keystrokes are tiny messages: Nagle's algorithm would hold each one back for the
    // previous one's acknowledgement.
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .map_err(|e| format!("cannot open the data channel at {stream_url}: {e}"))?;
    let opening = Opening {
        message_schema_version: "1.0".into(),
        request_id: uuid::Uuid::new_v4().to_string(),
        token_value: token.to_owned(),
        client_id: client_id.to_owned(),
        client_version: CLIENT_VERSION.into(),
    };
    let text = serde_json::to_string(&opening).map_err(|e| e.to_string())?;
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|e| format!("cannot open the data channel: {e}"))?;
    Ok(Box::pin(socket))
}
