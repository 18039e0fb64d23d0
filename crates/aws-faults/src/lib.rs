//! An AWS endpoint that forwards every request to LocalStack, and fails some of them
//! as AWS fails: throttling, internal errors, connections reset, responses lost after
//! the call took effect, slow and stalled answers.
//!
//! LocalStack never fails on its own, so without this nothing could show how a
//! client behaves on a bad day. Clients reach it as they reach any endpoint, through
//! `AWS_ENDPOINT_URL`. Rules ([`rules::Rule`]) pick calls by service and operation,
//! with a share or a count; decisions are reproducible ([`rules::draw`]).
//! `GET /_faults/stats` tells what happened, so a test can prove that the faults it
//! asked for really occurred.

pub mod buckets;
pub mod call;
pub mod consistency;
pub mod rules;
pub mod standins;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;

use crate::call::{Call, recognise};
use crate::rules::{Fault, Rule, draw, error_answer};

/// How the endpoint behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where requests go, such as `http://127.0.0.1:4566`.
    pub upstream: String,
    /// The seed of every probabilistic decision.
    pub seed: u64,
    /// Rules, tried in order; the first that fires decides.
    pub rules: Vec<Rule>,
    /// Throttle EC2 as its per-action token buckets do ([`buckets`]).
    pub ec2_buckets: bool,
    /// How long new things stay invisible ([`consistency`]).
    pub consistency: consistency::Windows,
    /// Service Quotas' values ([`standins`]).
    pub quotas: Vec<standins::Quota>,
    /// Instance types offered per zone; EC2 answers when any is set.
    pub offerings: Vec<standins::Offering>,
}

impl Config {
    /// An endpoint in front of `upstream` that injects nothing (seed 1): the start
    /// from which a test or caller sets what it needs.
    pub fn new(upstream: impl Into<String>) -> Self {
        Self {
            upstream: upstream.into(),
            seed: 1,
            rules: Vec::new(),
            ec2_buckets: false,
            consistency: consistency::Windows::default(),
            quotas: Vec::new(),
            offerings: Vec::new(),
        }
    }
}

/// What happened to one operation's calls.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OperationStats {
    /// Calls seen.
    pub calls: u64,
    /// Calls forwarded to the upstream (lost ones included).
    pub forwarded: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
}

/// Everything the endpoint did, by `service:Operation`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Per operation.
    pub operations: BTreeMap<String, OperationStats>,
    /// Faults injected, by kind, over all operations.
    pub faults: BTreeMap<String, u64>,
}

struct State {
    config: Config,
    client: Client<HttpConnector, Full<Bytes>>,
    /// How often each (operation, resource) was seen: a retry is the next attempt.
    attempts: Mutex<HashMap<(String, u64), u64>>,
    /// Calls each count rule has caught so far.
    caught: Vec<AtomicU64>,
    stats: Mutex<Stats>,
    requests: AtomicU64,
    /// EC2's token buckets by action, and when the endpoint started.
    buckets: Mutex<HashMap<String, buckets::Bucket>>,
    started: std::time::Instant,
    /// What AWS remembers to make a retried create idempotent: EC2 answers by
    /// (action, ClientToken), Route 53 zones by CallerReference.
    tokens: Mutex<HashMap<(String, String), Remembered>>,
    recent: Mutex<consistency::Recent>,
}

/// The first answer to an idempotent create, and what it asked for.
#[derive(Debug, Clone)]
struct Remembered {
    /// The request without its token: the same token with other parameters is a
    /// mismatch.
    request: u64,
    /// The answer, replayed to a retry (a Route 53 zone gets an error instead).
    answer: Option<(u16, String, Bytes)>,
}

/// A running endpoint.
pub struct Endpoint {
    /// Where it listens.
    pub address: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Endpoint {
    /// Its URL, for `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// What it has done so far.
    pub fn stats(&self) -> Stats {
        self.state.stats.lock().expect("stats lock").clone()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts an endpoint on `listen` (port 0 picks a free one).
pub async fn serve(listen: SocketAddr, config: Config) -> anyhow::Result<Endpoint> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    let caught = config.rules.iter().map(|_| AtomicU64::new(0)).collect();
    let state = Arc::new(State {
        config,
        client: Client::builder(TokioExecutor::new()).build_http(),
        attempts: Mutex::new(HashMap::new()),
        caught,
        stats: Mutex::new(Stats::default()),
        requests: AtomicU64::new(0),
        buckets: Mutex::new(HashMap::new()),
        started: std::time::Instant::now(),
        tokens: Mutex::new(HashMap::new()),
        recent: Mutex::new(consistency::Recent::default()),
    });
    let shared = state.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                // An injected reset ends the connection with an error; that is the point.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Endpoint {
        address,
        state,
        task,
    })
}

/// Why a connection is dropped on purpose.
#[derive(Debug)]
struct Dropped(&'static str);

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connection dropped on purpose: {}", self.0)
    }
}

impl std::error::Error for Dropped {}

type Answer = Result<Response<Full<Bytes>>, Dropped>;

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Answer {
    let (parts, body) = req.into_parts();
    if parts.uri.path() == "/_faults/stats" {
        let stats = state.stats.lock().expect("stats lock").clone();
        let body = serde_json::to_vec(&stats).unwrap_or_default();
        return Ok(plain(200, "application/json", Bytes::from(body)));
    }
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(Dropped("the request body could not be read")),
    };
    let query = parts.uri.query().unwrap_or_default();
    let call = recognise(
        &parts.method,
        parts.uri.path(),
        query,
        &parts.headers,
        &body,
    );
    let fault = decide(&state, &call);
    record(&state, &call, fault, false);
    let request_id = format!(
        "faults-{:08x}",
        state.requests.fetch_add(1, Ordering::Relaxed)
    );
    match fault {
        Some(f @ (Fault::Throttle | Fault::ServerError | Fault::PriorRequestNotComplete)) => {
            let (status, content_type, text) = error_answer(&call.service, f, &request_id);
            return Ok(plain(status, content_type, Bytes::from(text)));
        }
        Some(Fault::Denied) => {
            let (status, content_type, text) = rules::denied_answer(&call.service, &request_id);
            return Ok(plain(status, content_type, Bytes::from(text)));
        }
        Some(Fault::Reset) => return Err(Dropped("reset before forwarding")),
        Some(Fault::Stall) => std::future::pending::<()>().await,
        Some(Fault::Slow | Fault::Lost) | None => {}
    }
    if let (Some(Fault::Slow), Some(rule)) = (fault, firing_rule(&state, &call)) {
        tokio::time::sleep(Duration::from_millis(rule.delay_ms)).await;
    }
    if let Some((status, text)) = standins::service_quotas(&state.config.quotas, &call, &body) {
        return Ok(plain(
            status,
            "application/x-amz-json-1.1",
            Bytes::from(text),
        ));
    }
    if let Some(text) =
        standins::instance_type_offerings(&state.config.offerings, &call, &body, &request_id)
    {
        return Ok(plain(200, "text/xml", Bytes::from(text)));
    }
    let token = idempotency_token(&call, &body);
    if let Some(key) = &token
        && let Some(replay) = replay(&state, &call, key, &body, &request_id)
    {
        return Ok(replay);
    }
    let unseen = state.recent.lock().expect("recent lock").unseen(
        &state.config.consistency,
        &call,
        &body,
        std::time::Instant::now(),
    );
    if let Some((code, message)) = unseen {
        let mut stats = state.stats.lock().expect("stats lock");
        *stats.faults.entry("not-yet-visible".into()).or_default() += 1;
        let text = rules::ec2_error(code, &message, &request_id);
        return Ok(plain(400, "text/xml", Bytes::from(text)));
    }
    let answer = forward(&state, parts, body.clone()).await;
    record(&state, &call, None, true);
    if let Ok(response) = &answer
        && response.status().is_success()
    {
        let text = response
            .body()
            .clone()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        state.recent.lock().expect("recent lock").made(
            &call,
            &body,
            &text,
            std::time::Instant::now(),
        );
    }
    if let (Some(key), Ok(response)) = (token, &answer)
        && response.status().is_success()
    {
        remember(&state, &call, key, &body, response).await;
    }
    if fault == Some(Fault::Lost) {
        // It took effect upstream; the client never hears so.
        return Err(Dropped("response lost after the call took effect"));
    }
    answer
}

/// The token that makes a create idempotent, if the call carries one: EC2's
/// `ClientToken`, Route 53's `CallerReference` of `CreateHostedZone`.
fn idempotency_token(call: &Call, body: &[u8]) -> Option<(String, String)> {
    match (call.service.as_str(), call.operation.as_str()) {
        ("ec2", _) => form_urlencoded::parse(body)
            .find(|(k, _)| k == "ClientToken")
            .map(|(_, v)| (call.name(), v.into_owned())),
        ("route53", "CreateHostedZone") => {
            let text = std::str::from_utf8(body).ok()?;
            let start = text.find("<CallerReference>")? + "<CallerReference>".len();
            let end = start + text[start..].find("</CallerReference>")?;
            Some((call.name(), text[start..end].to_owned()))
        }
        _ => None,
    }
}

/// A hash of the request with its token taken out.
fn without_token(body: &[u8], token: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let text = String::from_utf8_lossy(body).replace(token, "");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// What AWS answers a create whose token it has seen: the first answer again (EC2,
/// for as long as it keeps tokens; this endpoint keeps them for its lifetime),
/// `IdempotentParameterMismatch` when the parameters differ, and for Route 53
/// `HostedZoneAlreadyExists`.
fn replay(
    state: &State,
    call: &Call,
    key: &(String, String),
    body: &[u8],
    request_id: &str,
) -> Option<Response<Full<Bytes>>> {
    let seen = state
        .tokens
        .lock()
        .expect("tokens lock")
        .get(key)
        .cloned()?;
    let kind = if call.service == "route53" {
        let text = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>HostedZoneAlreadyExists</Code><Message>A hosted zone has already been created with the specified caller reference.</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        );
        Some(plain(409, "text/xml", Bytes::from(text)))
    } else if seen.request != without_token(body, &key.1) {
        let text = rules::ec2_error(
            "IdempotentParameterMismatch",
            "The client token you have provided is associated with a resource that is already deleted or has different parameters.",
            request_id,
        );
        Some(plain(400, "text/xml", Bytes::from(text)))
    } else {
        seen.answer
            .map(|(status, content_type, text)| plain(status, &content_type, text))
    };
    if kind.is_some() {
        let mut stats = state.stats.lock().expect("stats lock");
        *stats.faults.entry("idempotent-replay".into()).or_default() += 1;
    }
    kind
}

async fn remember(
    state: &State,
    call: &Call,
    key: (String, String),
    body: &[u8],
    response: &Response<Full<Bytes>>,
) {
    let content_type = response
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/xml")
        .to_owned();
    let text = response
        .body()
        .clone()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let remembered = Remembered {
        request: without_token(body, &key.1),
        answer: (call.service != "route53")
            .then(|| (response.status().as_u16(), content_type, text)),
    };
    state
        .tokens
        .lock()
        .expect("tokens lock")
        .entry(key)
        .or_insert(remembered);
}

/// The first rule that fires for this call, counting the call against it.
fn decide(state: &State, call: &Call) -> Option<Fault> {
    let attempt = {
        let mut attempts = state.attempts.lock().expect("attempts lock");
        let n = attempts.entry((call.name(), call.resource)).or_insert(0);
        *n += 1;
        *n - 1
    };
    if state.config.ec2_buckets && call.service == "ec2" {
        let now = state.started.elapsed();
        let mut buckets = state.buckets.lock().expect("buckets lock");
        let bucket = buckets
            .entry(call.operation.clone())
            .or_insert_with(|| buckets::Bucket::new(buckets::Category::of(&call.operation), now));
        if !bucket.take(now) {
            return Some(Fault::Throttle);
        }
    }
    for (index, (rule, caught)) in state.config.rules.iter().zip(&state.caught).enumerate() {
        if !rule.matches(call) {
            continue;
        }
        let fires = match (rule.count, rule.probability) {
            (Some(n), _) => caught.fetch_add(1, Ordering::SeqCst) < n,
            (None, Some(p)) => draw(state.config.seed, index, call, attempt) < p,
            (None, None) => true,
        };
        if fires {
            return Some(rule.fault);
        }
    }
    None
}

/// The first rule about this call with a fault that needs its parameters.
fn firing_rule<'s>(state: &'s State, call: &Call) -> Option<&'s Rule> {
    state
        .config
        .rules
        .iter()
        .find(|r| r.matches(call) && r.fault == Fault::Slow)
}

fn record(state: &State, call: &Call, fault: Option<Fault>, forwarded: bool) {
    let mut stats = state.stats.lock().expect("stats lock");
    let op = stats.operations.entry(call.name()).or_default();
    if forwarded {
        op.forwarded += 1;
        return;
    }
    op.calls += 1;
    if let Some(f) = fault {
        let kind = serde_json::to_value(f)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *op.faults.entry(kind.clone()).or_default() += 1;
        *stats.faults.entry(kind).or_default() += 1;
    }
}

async fn forward(state: &State, parts: hyper::http::request::Parts, body: Bytes) -> Answer {
    let uri = format!(
        "{}{}",
        state.config.upstream.trim_end_matches('/'),
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut upstream = Request::builder().method(parts.method).uri(uri);
    for (name, value) in &parts.headers {
        upstream = upstream.header(name, value);
    }
    let Ok(upstream) = upstream.body(Full::new(body)) else {
        return Err(Dropped("the request could not be forwarded"));
    };
    let response = match state.client.request(upstream).await {
        Ok(r) => r,
        Err(e) => {
            let text = format!("upstream unreachable: {e}");
            return Ok(plain(502, "text/plain", Bytes::from(text)));
        }
    };
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|_| Dropped("the upstream answer could not be read"))?;
    Ok(Response::from_parts(parts, Full::new(body)))
}

fn plain(status: u16, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}
