//! Evaluation of AWS IAM JSON policies for one concrete request.
//!
//! labctl gives each instance an inline policy that scopes its writes to S3 keys under
//! its own `${aws:userid}` folder, and puts a policy on the bucket that denies requests
//! made without TLS. The emulator the tests run against does not enforce IAM, so the
//! tests evaluate the rendered documents here instead: instance A writing B's key must
//! be denied, A writing its own key allowed.
//!
//! The rules follow the IAM User Guide ("Policy evaluation logic", "Condition
//! operators", "Variables and tags", "NotAction", "NotResource", "Principal"), and
//! `tests/policy_eval.rs` checks them against the guide's own examples.
//!
//! Scope: one request within one account, against identity-based policies and at most
//! one resource-based policy. Permissions boundaries, SCPs, session policies,
//! cross-account rules and the root user's implicit full access are not modelled.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

// ---------------------------------------------------------------------------------
// The request and the decision

/// One request to authorize: who asks to do what to which resource, with which
/// condition keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The caller's ARN, e.g. `arn:aws:sts::123456789012:assumed-role/R/i-0abc`, or a
    /// service principal such as `ec2.amazonaws.com`.
    pub principal: String,
    /// The action, e.g. `s3:PutObject`; matched case-insensitively.
    pub action: String,
    /// The resource's ARN, or `*` for actions that name no resource (such as
    /// `s3:ListAllMyBuckets`).
    pub resource: String,
    /// Condition keys and their values (`aws:userid`, `aws:SecureTransport`, ...).
    /// Keys are matched case-insensitively; a key with no values counts as absent.
    pub context: BTreeMap<String, Vec<String>>,
}

impl Request {
    /// A request with an empty context.
    pub fn new(
        principal: impl Into<String>,
        action: impl Into<String>,
        resource: impl Into<String>,
    ) -> Self {
        Self {
            principal: principal.into(),
            action: action.into(),
            resource: resource.into(),
            context: BTreeMap::new(),
        }
    }

    /// The request with `key` set to the single value `value`.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.context.insert(key.into(), vec![value.into()]);
        self
    }

    /// The request with `key` set to `values` (a multivalued key such as
    /// `aws:TagKeys`).
    pub fn with_values<I, S>(mut self, key: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.context
            .insert(key.into(), values.into_iter().map(Into::into).collect());
        self
    }
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A statement allows the request and none denies it.
    Allow,
    /// A `Deny` statement applies; nothing can override it.
    ExplicitDeny,
    /// No statement applies: denied by default.
    ImplicitDeny,
}

impl Decision {
    /// Whether the request is allowed.
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

// ---------------------------------------------------------------------------------
// Errors

/// Which document a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    /// The identity-based policy at this index of `identity_policies`.
    Identity(usize),
    /// The resource-based policy.
    Resource,
}

/// Where a problem is: the document, and the statement (index and Sid) when it is in
/// one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The document.
    pub source: PolicySource,
    /// The statement's index in `Statement`, if the problem is in a statement.
    pub statement: Option<usize>,
    /// The statement's `Sid`, if it has one.
    pub sid: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            PolicySource::Identity(i) => write!(f, "identity policy {i}")?,
            PolicySource::Resource => f.write_str("resource policy")?,
        }
        if let Some(i) = self.statement {
            write!(f, ", statement {i}")?;
        }
        if let Some(sid) = &self.sid {
            write!(f, " (Sid {sid:?})")?;
        }
        Ok(())
    }
}

/// A policy document this evaluator cannot take as written. The message names the
/// problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A document or a statement that is not a JSON object.
    #[error("{at}: {what} is not a JSON object")]
    NotAnObject {
        /// Where.
        at: Location,
        /// What should have been an object.
        what: &'static str,
    },
    /// An element the policy language does not have.
    #[error("{at}: unknown element {element:?}")]
    UnknownElement {
        /// Where.
        at: Location,
        /// The element's name.
        element: String,
    },
    /// A required element is missing.
    #[error("{at}: {element} is missing")]
    Missing {
        /// Where.
        at: Location,
        /// What is missing (`Effect`, `Action or NotAction`, ...).
        element: &'static str,
    },
    /// Two elements that exclude each other, such as `Action` and `NotAction`.
    #[error("{at}: has both {first} and {second}")]
    Conflicting {
        /// Where.
        at: Location,
        /// One element.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
    /// An element this kind of policy may not have (`Principal` in an identity
    /// policy).
    #[error("{at}: {element} is not allowed in {kind}")]
    NotAllowed {
        /// Where.
        at: Location,
        /// The element.
        element: &'static str,
        /// The kind of policy.
        kind: &'static str,
    },
    /// An `Effect` other than `Allow` or `Deny`.
    #[error("{at}: Effect {effect} is neither \"Allow\" nor \"Deny\"")]
    UnknownEffect {
        /// Where.
        at: Location,
        /// The value as JSON.
        effect: String,
    },
    /// A `Version` other than `2012-10-17` or `2008-10-17`.
    #[error("{at}: unknown Version {version} (the language has \"2012-10-17\" and \"2008-10-17\")")]
    UnknownVersion {
        /// Where.
        at: Location,
        /// The value as JSON.
        version: String,
    },
    /// A condition operator IAM does not have.
    #[error("{at}: unknown condition operator {operator:?}")]
    UnknownConditionOperator {
        /// Where.
        at: Location,
        /// The operator as written.
        operator: String,
    },
    /// An IAM condition operator this evaluator does not implement (the `Date` and
    /// `Binary` families).
    #[error("{at}: condition operator {operator:?} is not supported by this evaluator")]
    UnsupportedConditionOperator {
        /// Where.
        at: Location,
        /// The operator as written.
        operator: String,
    },
    /// A value of the wrong type or shape.
    #[error("{at}: {element}: {reason}")]
    Invalid {
        /// Where.
        at: Location,
        /// The element (`Resource`, `Condition StringLike aws:userid`, ...).
        element: String,
        /// What is wrong with it.
        reason: String,
    },
}

// ---------------------------------------------------------------------------------
// Evaluation

/// Decides `request` against the caller's identity-based policies and the resource's
/// policy, for a request within one account, as the IAM User Guide's "Policy
/// evaluation logic" describes it:
///
/// - a `Deny` statement that applies, in any of the policies, gives
///   [`Decision::ExplicitDeny`];
/// - otherwise an `Allow` statement that applies, in an identity policy or in the
///   resource policy (whose `Principal` must name the caller), gives
///   [`Decision::Allow`];
/// - otherwise [`Decision::ImplicitDeny`].
///
/// Every document is checked in full before anything is decided, so a malformed one is
/// an error even when another statement would have decided the request.
///
/// A `Principal` names the caller when it names the caller's ARN, the role of a role
/// session (by account and role name: session ARNs carry no role path), or the
/// caller's account (by id or `:root` ARN), or is `*`. A `NotPrincipal` spares a caller
/// only when it names all of these, as "NotPrincipal with Deny" warns.
///
/// Not modelled: permissions boundaries, SCPs, session policies, cross-account
/// requests, and the root user's implicit full access. A resource policy statement
/// without `Resource` or `NotResource` (as in role trust policies) covers whatever
/// resource the request names.
///
/// Policy variables (`${aws:userid}`, `${key, 'default'}`, `${*}`, `${?}`, `${$}`) are
/// replaced in `Resource`/`NotResource` and in the values of string, ARN and `Bool`
/// conditions, when the policy's `Version` is `2012-10-17` (earlier versions take them
/// literally, as the guide says). A variable whose key is absent, or has several
/// values, and has no default resolves to nothing: the resource or condition value
/// holding it matches no request ("Policy variables with no value"). Substituted text
/// is literal: a `*` in a key's value is not a wildcard.
pub fn evaluate(
    identity_policies: &[Value],
    resource_policy: Option<&Value>,
    request: &Request,
) -> Result<Decision, PolicyError> {
    let mut policies = identity_policies
        .iter()
        .enumerate()
        .map(|(i, doc)| parse_policy(doc, PolicySource::Identity(i)))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(doc) = resource_policy {
        policies.push(parse_policy(doc, PolicySource::Resource)?);
    }

    let context = Context::new(request);
    let callers = caller_ids(&request.principal);
    let action = request.action.to_lowercase();
    let mut allowed = false;
    for statement in policies.iter().flat_map(|p| &p.statements) {
        if statement.applies(request, &action, &context, &callers) {
            match statement.effect {
                Effect::Deny => return Ok(Decision::ExplicitDeny),
                Effect::Allow => allowed = true,
            }
        }
    }
    Ok(if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    })
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters
/// (including none) and `?` for exactly one; everything else matches itself,
/// case-sensitively. This is `StringLike`'s matching; it runs in O(pattern × text)
/// time at worst, whatever the pattern.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<Tok> = pattern.chars().map(Tok::wild).collect();
    wild_match(&pattern, text)
}

/// The condition keys of a request, looked up case-insensitively.
struct Context<'r> {
    keys: BTreeMap<String, &'r [String]>,
}

impl<'r> Context<'r> {
    fn new(request: &'r Request) -> Self {
        let mut keys = BTreeMap::new();
        for (key, values) in &request.context {
            keys.entry(key.to_lowercase())
                .or_insert_with(|| values.as_slice());
        }
        Self { keys }
    }

    /// The key's values; `None` when it is absent or has none.
    fn values(&self, lower_key: &str) -> Option<&'r [String]> {
        self.keys
            .get(lower_key)
            .copied()
            .filter(|values| !values.is_empty())
    }

    /// The key's value when it has exactly one: only those can fill a variable.
    fn single(&self, lower_key: &str) -> Option<&'r str> {
        match self.values(lower_key) {
            Some([one]) => Some(one),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------
// Wildcards

/// One pattern element: a literal character, `*` or `?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Star,
    One,
}

impl Tok {
    /// `c` read as a pattern character.
    fn wild(c: char) -> Tok {
        match c {
            '*' => Tok::Star,
            '?' => Tok::One,
            c => Tok::Lit(c),
        }
    }
}

/// Greedy matching that, on a mismatch, only ever returns to the last `*`: earlier
/// stars never need revisiting, so a hostile pattern cannot make it backtrack
/// exponentially.
fn wild_match(pattern: &[Tok], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // The pattern position after the last star, and the text position it was tried at.
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(Tok::Star) => {
                resume = Some((p + 1, t));
                p += 1;
            }
            Some(Tok::One) => {
                p += 1;
                t += 1;
            }
            Some(Tok::Lit(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match resume {
                Some((after_star, from)) => {
                    resume = Some((after_star, from + 1));
                    p = after_star;
                    t = from + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|tok| *tok == Tok::Star)
}

/// ARN matching: the first five colons split both into six segments (`arn`,
/// partition, service, region, account, resource), each matched on its own, so a
/// wildcard never reaches into the next segment; within the resource segment it
/// crosses `/` and `:` alike. `*` alone matches anything; otherwise a value with
/// fewer than six segments matches nothing.
fn arn_match(pattern: &[Tok], value: &str) -> bool {
    if pattern == [Tok::Star] {
        return true;
    }
    let segments: Vec<&[Tok]> = pattern.splitn(6, |t| *t == Tok::Lit(':')).collect();
    let values: Vec<&str> = value.splitn(6, ':').collect();
    segments.len() == 6
        && values.len() == 6
        && segments
            .iter()
            .zip(&values)
            .all(|(segment, value)| wild_match(segment, value))
}

// ---------------------------------------------------------------------------------
// Policy variables

/// A string that may hold policy variables.
#[derive(Debug, Clone)]
struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone)]
enum Piece {
    /// Text as written: `*` and `?` in it are wildcards where the operator has them.
    Text(String),
    /// `${*}`, `${?}` or `${$}`: always the character itself.
    Literal(char),
    /// `${key}` or `${key, 'default'}`; the key in lower case.
    Var {
        key: String,
        default: Option<String>,
    },
}

impl Template {
    /// `raw` with its variables, or all literal text when the policy's version has no
    /// variables.
    fn parse(raw: &str, variables: bool) -> Result<Template, String> {
        if !variables {
            return Ok(Template {
                pieces: vec![Piece::Text(raw.to_owned())],
            });
        }
        let mut pieces = Vec::new();
        let mut rest = raw;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_owned()));
            }
            let (piece, tail) = parse_variable(&rest[start + 2..])
                .map_err(|reason| format!("{raw:?}: {reason}"))?;
            pieces.push(piece);
            rest = tail;
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Template { pieces })
    }

    fn has_variables(&self) -> bool {
        self.pieces.iter().any(|p| !matches!(p, Piece::Text(_)))
    }

    /// The pattern, `*` and `?` in written text being wildcards; `None` when a
    /// variable does not resolve.
    fn pattern(&self, context: &Context<'_>) -> Option<Vec<Tok>> {
        let mut out = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.extend(text.chars().map(Tok::wild)),
                Piece::Literal(c) => out.push(Tok::Lit(*c)),
                Piece::Var { key, default } => {
                    let value = context.single(key).or(default.as_deref())?;
                    out.extend(value.chars().map(Tok::Lit));
                }
            }
        }
        Some(out)
    }

    /// The text with its variables replaced; `None` when one does not resolve.
    fn text(&self, context: &Context<'_>) -> Option<String> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Literal(c) => out.push(*c),
                Piece::Var { key, default } => {
                    out.push_str(context.single(key).or(default.as_deref())?);
                }
            }
        }
        Some(out)
    }
}

/// What follows a `${`: the variable and the text after its `}`.
fn parse_variable(s: &str) -> Result<(Piece, &str), String> {
    for (name, c) in [("*}", '*'), ("?}", '?'), ("$}", '$')] {
        if let Some(tail) = s.strip_prefix(name) {
            return Ok((Piece::Literal(c), tail));
        }
    }
    let end = s
        .find(['}', ','])
        .ok_or("a policy variable has no closing \"}\"")?;
    let key = s[..end].trim();
    if key.is_empty() {
        return Err("a policy variable names no key".into());
    }
    let key = key.to_lowercase();
    if let Some(tail) = s[end..].strip_prefix('}') {
        return Ok((Piece::Var { key, default: None }, tail));
    }
    // `${key, 'default'}`: the default in single quotes, taken as written.
    let quoted = s[end + 1..]
        .trim_start()
        .strip_prefix('\'')
        .ok_or("a policy variable's default value must be in single quotes")?;
    let close = quoted
        .find('\'')
        .ok_or("a policy variable's default value has no closing quote")?;
    let tail = quoted[close + 1..]
        .trim_start()
        .strip_prefix('}')
        .ok_or("a policy variable has no closing \"}\" after its default value")?;
    let default = Some(quoted[..close].to_owned());
    Ok((Piece::Var { key, default }, tail))
}

// ---------------------------------------------------------------------------------
// Parsed policies

struct Policy {
    statements: Vec<Statement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

/// An element and its `Not` form: with `not`, it covers what `items` does not name.
struct Listed<T> {
    not: bool,
    items: Vec<T>,
}

struct Statement {
    effect: Effect,
    /// `Principal` or `NotPrincipal`: resource policies only.
    principal: Option<Listed<PrincipalValue>>,
    /// Lower-case action patterns.
    action: Listed<Vec<Tok>>,
    /// `None` in a resource policy statement that names no resource.
    resource: Option<Listed<ResourcePattern>>,
    conditions: Vec<Condition>,
}

impl Statement {
    fn applies(
        &self,
        request: &Request,
        lower_action: &str,
        context: &Context<'_>,
        callers: &[PrincipalId],
    ) -> bool {
        if let Some(principal) = &self.principal {
            let named = |id: &PrincipalId| principal.items.iter().any(|v| v.names(id));
            let admitted = if principal.not {
                // NotPrincipal exempts a caller only when every identity it acts as
                // (session, role, account) is listed.
                callers.iter().any(|id| !named(id))
            } else {
                callers.iter().any(named)
            };
            if !admitted {
                return false;
            }
        }
        let named = self
            .action
            .items
            .iter()
            .any(|pattern| wild_match(pattern, lower_action));
        if named == self.action.not {
            return false;
        }
        if let Some(resource) = &self.resource {
            let named = resource
                .items
                .iter()
                .any(|pattern| pattern.matches(&request.resource, context));
            if named == resource.not {
                return false;
            }
        }
        self.conditions.iter().all(|c| c.holds(context))
    }
}

enum ResourcePattern {
    /// `*`: every resource, ARN or not.
    Any,
    /// An ARN pattern; variables only after its fifth colon.
    Arn(Template),
}

impl ResourcePattern {
    fn parse(raw: &str, variables: bool) -> Result<ResourcePattern, String> {
        if raw == "*" {
            return Ok(ResourcePattern::Any);
        }
        let Some((fifth_colon, _)) = raw.match_indices(':').nth(4) else {
            return Err(format!("{raw:?} is neither \"*\" nor an ARN"));
        };
        if variables && raw[..fifth_colon].contains("${") {
            return Err(format!(
                "{raw:?}: a policy variable may stand only in the resource part of an ARN, \
                 after the fifth colon"
            ));
        }
        Ok(ResourcePattern::Arn(Template::parse(raw, variables)?))
    }

    fn matches(&self, resource: &str, context: &Context<'_>) -> bool {
        match self {
            ResourcePattern::Any => true,
            ResourcePattern::Arn(template) => template
                .pattern(context)
                .is_some_and(|pattern| arn_match(&pattern, resource)),
        }
    }
}

// ---------------------------------------------------------------------------------
// Principals

/// An identity a caller acts as, or that a principal element names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PrincipalId {
    /// Any principal of this account (`123456789012`, `arn:aws:iam::123456789012:root`).
    Account(String),
    /// A role and every session of it. Session ARNs carry no role path, so a role is
    /// known by its account and its name.
    Role { account: String, name: String },
    /// Anything else, compared as written: a user, a session, a service.
    Exact(String),
}

#[derive(Debug, Clone)]
enum PrincipalValue {
    All,
    Id(PrincipalId),
}

impl PrincipalValue {
    fn names(&self, id: &PrincipalId) -> bool {
        match self {
            PrincipalValue::All => true,
            PrincipalValue::Id(named) => named == id,
        }
    }

    /// A value under `"AWS"`.
    fn aws(id: &str) -> Result<PrincipalValue, String> {
        if id == "*" {
            return Ok(PrincipalValue::All);
        }
        if id.contains('*') {
            return Err(format!(
                "{id:?}: a wildcard can only stand alone, for all principals"
            ));
        }
        if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(PrincipalValue::Id(PrincipalId::Account(id.to_owned())));
        }
        let named = match arn_parts(id) {
            Some(("iam", account, "root")) => PrincipalId::Account(account.to_owned()),
            Some(("iam", account, resource)) if resource.starts_with("role/") => {
                PrincipalId::Role {
                    account: account.to_owned(),
                    name: last_path_part(resource).to_owned(),
                }
            }
            _ => PrincipalId::Exact(id.to_owned()),
        };
        Ok(PrincipalValue::Id(named))
    }
}

/// Service, account and resource of an ARN.
fn arn_parts(arn: &str) -> Option<(&str, &str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (prefix, _partition, service, _region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (prefix == "arn").then_some((service, account, resource))
}

fn last_path_part(resource: &str) -> &str {
    resource.rsplit('/').next().unwrap_or(resource)
}

/// The identities a caller acts as: itself, the role of a role session, and its
/// account. A principal element names the caller if it names any of them.
fn caller_ids(principal: &str) -> Vec<PrincipalId> {
    let Some((service, account, resource)) = arn_parts(principal) else {
        return vec![PrincipalId::Exact(principal.to_owned())];
    };
    let account_id = PrincipalId::Account(account.to_owned());
    if service == "iam" && resource == "root" {
        return vec![account_id];
    }
    let mut ids = vec![PrincipalId::Exact(principal.to_owned())];
    let role = match service {
        "sts" => resource
            .strip_prefix("assumed-role/")
            .and_then(|rest| rest.split_once('/'))
            .map(|(role, _session)| role),
        "iam" => resource.strip_prefix("role/").map(last_path_part),
        _ => None,
    };
    if let Some(name) = role {
        ids.push(PrincipalId::Role {
            account: account.to_owned(),
            name: name.to_owned(),
        });
    }
    if !account.is_empty() {
        ids.push(account_id);
    }
    ids
}

// ---------------------------------------------------------------------------------
// Conditions

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qualifier {
    ForAllValues,
    ForAnyValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    Numeric(NumericCmp),
    Bool,
    IpAddress,
    Arn,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumericCmp {
    Equals,
    LessThan,
    LessThanEquals,
    GreaterThan,
    GreaterThanEquals,
}

impl NumericCmp {
    /// `request OP policy`.
    fn holds(self, request: f64, policy: f64) -> bool {
        match self {
            NumericCmp::Equals => request == policy,
            NumericCmp::LessThan => request < policy,
            NumericCmp::LessThanEquals => request <= policy,
            NumericCmp::GreaterThan => request > policy,
            NumericCmp::GreaterThanEquals => request >= policy,
        }
    }
}

enum Values {
    /// String, ARN and `Bool` values, which may hold variables.
    Text(Vec<Template>),
    Numbers(Vec<f64>),
    Networks(Vec<IpNet>),
    /// `Null`: `true` asks for the key to be absent.
    Null(Vec<bool>),
}

/// One key under one operator.
struct Condition {
    kind: Kind,
    negated: bool,
    qualifier: Option<Qualifier>,
    if_exists: bool,
    /// In lower case.
    key: String,
    values: Values,
}

impl Condition {
    /// The condition's truth, following "Condition operators" and "Set operators for
    /// multivalued context keys": a policy's values are ORed (NORed when negated); a
    /// key absent from the request makes a plain operator false and a negated one
    /// true, `...IfExists` true, `ForAllValues` true and `ForAnyValue` false.
    fn holds(&self, context: &Context<'_>) -> bool {
        let present = context.values(&self.key);
        if let Values::Null(expected) = &self.values {
            let absent = present.is_none();
            return expected.contains(&absent);
        }
        // For the set operators, empty strings are a null data set.
        let values: Vec<&str> = present
            .unwrap_or_default()
            .iter()
            .map(String::as_str)
            .filter(|v| self.qualifier.is_none() || !v.is_empty())
            .collect();
        if values.is_empty() {
            return self.if_exists
                || match self.qualifier {
                    Some(Qualifier::ForAllValues) => true,
                    Some(Qualifier::ForAnyValue) => false,
                    None => self.negated,
                };
        }
        let holds_for = |value: &str| self.matches_any(value, context) != self.negated;
        match self.qualifier {
            // Unqualified with several request values: any one matching counts.
            None => values.iter().any(|v| self.matches_any(v, context)) != self.negated,
            Some(Qualifier::ForAnyValue) => values.iter().any(|v| holds_for(v)),
            Some(Qualifier::ForAllValues) => values.iter().all(|v| holds_for(v)),
        }
    }

    /// Whether one request value matches any of the policy's values (before
    /// negation).
    fn matches_any(&self, value: &str, context: &Context<'_>) -> bool {
        match &self.values {
            Values::Text(templates) => templates.iter().any(|t| self.text_match(t, value, context)),
            Values::Numbers(numbers) => value.trim().parse::<f64>().is_ok_and(|x| {
                let Kind::Numeric(cmp) = self.kind else {
                    return false;
                };
                numbers.iter().any(|n| cmp.holds(x, *n))
            }),
            Values::Networks(networks) => value
                .trim()
                .parse::<IpAddr>()
                .is_ok_and(|addr| networks.iter().any(|net| net.contains(&addr))),
            Values::Null(_) => false,
        }
    }

    fn text_match(&self, template: &Template, value: &str, context: &Context<'_>) -> bool {
        match self.kind {
            Kind::StringEquals => template.text(context).is_some_and(|t| t == value),
            Kind::StringEqualsIgnoreCase => template
                .text(context)
                .is_some_and(|t| t.to_lowercase() == value.to_lowercase()),
            Kind::Bool => template
                .text(context)
                .is_some_and(|t| t.eq_ignore_ascii_case(value)),
            Kind::StringLike => template
                .pattern(context)
                .is_some_and(|p| wild_match(&p, value)),
            Kind::Arn => template
                .pattern(context)
                .is_some_and(|p| arn_match(&p, value)),
            Kind::Numeric(_) | Kind::IpAddress | Kind::Null => false,
        }
    }
}

/// Splits an operator name into its kind, negation, set qualifier and `IfExists`.
enum ParsedOperator {
    Known {
        kind: Kind,
        negated: bool,
        qualifier: Option<Qualifier>,
        if_exists: bool,
    },
    Unsupported,
    Unknown,
}

fn parse_operator(operator: &str) -> ParsedOperator {
    let (qualifier, rest) = if let Some(rest) = operator.strip_prefix("ForAllValues:") {
        (Some(Qualifier::ForAllValues), rest)
    } else if let Some(rest) = operator.strip_prefix("ForAnyValue:") {
        (Some(Qualifier::ForAnyValue), rest)
    } else {
        (None, operator)
    };
    let (if_exists, base) = match rest.strip_suffix("IfExists") {
        Some(base) => (true, base),
        None => (false, rest),
    };
    let (kind, negated) = match base {
        "StringEquals" => (Kind::StringEquals, false),
        "StringNotEquals" => (Kind::StringEquals, true),
        "StringEqualsIgnoreCase" => (Kind::StringEqualsIgnoreCase, false),
        "StringNotEqualsIgnoreCase" => (Kind::StringEqualsIgnoreCase, true),
        "StringLike" => (Kind::StringLike, false),
        "StringNotLike" => (Kind::StringLike, true),
        "NumericEquals" => (Kind::Numeric(NumericCmp::Equals), false),
        "NumericNotEquals" => (Kind::Numeric(NumericCmp::Equals), true),
        "NumericLessThan" => (Kind::Numeric(NumericCmp::LessThan), false),
        "NumericLessThanEquals" => (Kind::Numeric(NumericCmp::LessThanEquals), false),
        "NumericGreaterThan" => (Kind::Numeric(NumericCmp::GreaterThan), false),
        "NumericGreaterThanEquals" => (Kind::Numeric(NumericCmp::GreaterThanEquals), false),
        "Bool" => (Kind::Bool, false),
        "IpAddress" => (Kind::IpAddress, false),
        "NotIpAddress" => (Kind::IpAddress, true),
        "ArnEquals" | "ArnLike" => (Kind::Arn, false),
        "ArnNotEquals" | "ArnNotLike" => (Kind::Arn, true),
        "Null" => (Kind::Null, false),
        "DateEquals"
        | "DateNotEquals"
        | "DateLessThan"
        | "DateLessThanEquals"
        | "DateGreaterThan"
        | "DateGreaterThanEquals"
        | "BinaryEquals" => return ParsedOperator::Unsupported,
        _ => return ParsedOperator::Unknown,
    };
    ParsedOperator::Known {
        kind,
        negated,
        qualifier,
        if_exists,
    }
}

// ---------------------------------------------------------------------------------
// Parsing

const POLICY_ELEMENTS: [&str; 3] = ["Version", "Id", "Statement"];
const STATEMENT_ELEMENTS: [&str; 9] = [
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

fn parse_policy(doc: &Value, source: PolicySource) -> Result<Policy, PolicyError> {
    let at = Location {
        source,
        statement: None,
        sid: None,
    };
    let Some(obj) = doc.as_object() else {
        return Err(PolicyError::NotAnObject {
            at,
            what: "the policy document",
        });
    };
    if let Some(element) = obj.keys().find(|k| !POLICY_ELEMENTS.contains(&k.as_str())) {
        return Err(PolicyError::UnknownElement {
            at,
            element: element.clone(),
        });
    }
    let variables = match obj.get("Version") {
        None => false,
        Some(Value::String(v)) if v == "2012-10-17" => true,
        Some(Value::String(v)) if v == "2008-10-17" => false,
        Some(other) => {
            return Err(PolicyError::UnknownVersion {
                at,
                version: other.to_string(),
            });
        }
    };
    let statements: Vec<&Value> = match obj.get("Statement") {
        None => {
            return Err(PolicyError::Missing {
                at,
                element: "Statement",
            });
        }
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
    };
    let statements = statements
        .into_iter()
        .enumerate()
        .map(|(index, statement)| parse_statement(statement, source, index, variables))
        .collect::<Result<_, _>>()?;
    Ok(Policy { statements })
}

/// What parsing one statement needs to know.
struct Parse {
    at: Location,
    variables: bool,
}

impl Parse {
    fn invalid(&self, element: impl Into<String>, reason: impl Into<String>) -> PolicyError {
        PolicyError::Invalid {
            at: self.at.clone(),
            element: element.into(),
            reason: reason.into(),
        }
    }

    /// A string or an array of strings.
    fn strings<'v>(&self, value: &'v Value, element: &str) -> Result<Vec<&'v str>, PolicyError> {
        let not_string = || self.invalid(element, "must be a string or an array of strings");
        match value {
            Value::String(s) => Ok(vec![s.as_str()]),
            Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().ok_or_else(not_string))
                .collect(),
            _ => Err(not_string()),
        }
    }

    /// Which of an element and its `Not` form the statement has, if any.
    fn one_of<'v>(
        &self,
        obj: &'v Map<String, Value>,
        element: &'static str,
        not_element: &'static str,
    ) -> Result<Option<(bool, &'v Value)>, PolicyError> {
        match (obj.get(element), obj.get(not_element)) {
            (Some(_), Some(_)) => Err(PolicyError::Conflicting {
                at: self.at.clone(),
                first: element,
                second: not_element,
            }),
            (Some(value), None) => Ok(Some((false, value))),
            (None, Some(value)) => Ok(Some((true, value))),
            (None, None) => Ok(None),
        }
    }

    fn principal(&self, value: &Value, element: &str) -> Result<Vec<PrincipalValue>, PolicyError> {
        match value {
            Value::String(s) if s == "*" => Ok(vec![PrincipalValue::All]),
            Value::Object(map) => {
                let mut out = Vec::new();
                for (kind, ids) in map {
                    let ids = self.strings(ids, &format!("{element} {kind}"))?;
                    match kind.as_str() {
                        "AWS" => {
                            for id in ids {
                                out.push(
                                    PrincipalValue::aws(id)
                                        .map_err(|reason| self.invalid(element, reason))?,
                                );
                            }
                        }
                        "Service" | "Federated" | "CanonicalUser" => out.extend(
                            ids.into_iter()
                                .map(|id| PrincipalValue::Id(PrincipalId::Exact(id.to_owned()))),
                        ),
                        other => {
                            return Err(
                                self.invalid(element, format!("unknown principal type {other:?}"))
                            );
                        }
                    }
                }
                Ok(out)
            }
            _ => Err(self.invalid(element, "must be \"*\" or an object such as {\"AWS\": ...}")),
        }
    }

    fn condition(
        &self,
        operator: &str,
        key: &str,
        value: &Value,
    ) -> Result<Condition, PolicyError> {
        let (kind, negated, qualifier, if_exists) = match parse_operator(operator) {
            ParsedOperator::Known {
                kind,
                negated,
                qualifier,
                if_exists,
            } => (kind, negated, qualifier, if_exists),
            ParsedOperator::Unsupported => {
                return Err(PolicyError::UnsupportedConditionOperator {
                    at: self.at.clone(),
                    operator: operator.to_owned(),
                });
            }
            ParsedOperator::Unknown => {
                return Err(PolicyError::UnknownConditionOperator {
                    at: self.at.clone(),
                    operator: operator.to_owned(),
                });
            }
        };
        let element = format!("Condition {operator} {key}");
        if kind == Kind::Null && (if_exists || qualifier.is_some()) {
            return Err(self.invalid(element, "Null takes neither IfExists nor a set qualifier"));
        }
        let raw = condition_values(value)
            .ok_or_else(|| self.invalid(&element, "values must be strings, numbers or booleans"))?;
        let values = match kind {
            Kind::StringEquals
            | Kind::StringEqualsIgnoreCase
            | Kind::StringLike
            | Kind::Arn
            | Kind::Bool => {
                let mut templates = Vec::new();
                for text in &raw {
                    let template = Template::parse(text, self.variables)
                        .map_err(|reason| self.invalid(&element, reason))?;
                    let boolean =
                        text.eq_ignore_ascii_case("true") || text.eq_ignore_ascii_case("false");
                    if kind == Kind::Bool && !template.has_variables() && !boolean {
                        return Err(
                            self.invalid(&element, format!("{text:?} is not true or false"))
                        );
                    }
                    templates.push(template);
                }
                Values::Text(templates)
            }
            Kind::Numeric(_) => Values::Numbers(
                raw.iter()
                    .map(|text| {
                        text.trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|n| n.is_finite())
                            .ok_or_else(|| {
                                self.invalid(&element, format!("{text:?} is not a number"))
                            })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Kind::IpAddress => Values::Networks(
                raw.iter()
                    .map(|text| {
                        parse_network(text).ok_or_else(|| {
                            self.invalid(&element, format!("{text:?} is not an IP address or CIDR"))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Kind::Null => Values::Null(
                raw.iter()
                    .map(|text| match text.to_ascii_lowercase().as_str() {
                        "true" => Ok(true),
                        "false" => Ok(false),
                        _ => Err(self.invalid(&element, format!("{text:?} is not true or false"))),
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(Condition {
            kind,
            negated,
            qualifier,
            if_exists,
            key: key.to_lowercase(),
            values,
        })
    }
}

/// A condition's values as text: a string, number or boolean, or an array of them.
fn condition_values(value: &Value) -> Option<Vec<String>> {
    let one = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match value {
        Value::Array(items) => items.iter().map(one).collect(),
        other => one(other).map(|v| vec![v]),
    }
}

/// A CIDR, or a bare address standing for itself (`/32` or `/128`).
fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

fn parse_statement(
    value: &Value,
    source: PolicySource,
    index: usize,
    variables: bool,
) -> Result<Statement, PolicyError> {
    let mut at = Location {
        source,
        statement: Some(index),
        sid: None,
    };
    let Some(obj) = value.as_object() else {
        return Err(PolicyError::NotAnObject {
            at,
            what: "the statement",
        });
    };
    let sid = obj.get("Sid");
    if let Some(Value::String(sid)) = sid {
        at.sid = Some(sid.clone());
    }
    let p = Parse { at, variables };
    if sid.is_some_and(|sid| !sid.is_string()) {
        return Err(p.invalid("Sid", "must be a string"));
    }
    if let Some(element) = obj
        .keys()
        .find(|k| !STATEMENT_ELEMENTS.contains(&k.as_str()))
    {
        return Err(PolicyError::UnknownElement {
            at: p.at.clone(),
            element: element.clone(),
        });
    }

    let effect = match obj.get("Effect") {
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(other) => {
            return Err(PolicyError::UnknownEffect {
                at: p.at.clone(),
                effect: other.to_string(),
            });
        }
        None => {
            return Err(PolicyError::Missing {
                at: p.at.clone(),
                element: "Effect",
            });
        }
    };

    let principal = match (source, p.one_of(obj, "Principal", "NotPrincipal")?) {
        (PolicySource::Identity(_), Some((not, _))) => {
            return Err(PolicyError::NotAllowed {
                at: p.at.clone(),
                element: if not { "NotPrincipal" } else { "Principal" },
                kind: "an identity-based policy",
            });
        }
        (PolicySource::Identity(_), None) => None,
        (PolicySource::Resource, None) => {
            return Err(PolicyError::Missing {
                at: p.at.clone(),
                element: "Principal or NotPrincipal",
            });
        }
        (PolicySource::Resource, Some((not, value))) => {
            let element = if not { "NotPrincipal" } else { "Principal" };
            Some(Listed {
                not,
                items: p.principal(value, element)?,
            })
        }
    };

    let Some((not, value)) = p.one_of(obj, "Action", "NotAction")? else {
        return Err(PolicyError::Missing {
            at: p.at.clone(),
            element: "Action or NotAction",
        });
    };
    let element = if not { "NotAction" } else { "Action" };
    let mut actions = Vec::new();
    for action in p.strings(value, element)? {
        if action != "*" && !action.contains(':') {
            return Err(p.invalid(
                element,
                format!("{action:?} is neither \"*\" nor service:action"),
            ));
        }
        actions.push(action.to_lowercase().chars().map(Tok::wild).collect());
    }
    let action = Listed {
        not,
        items: actions,
    };

    let resource = match (source, p.one_of(obj, "Resource", "NotResource")?) {
        (PolicySource::Identity(_), None) => {
            return Err(PolicyError::Missing {
                at: p.at.clone(),
                element: "Resource or NotResource",
            });
        }
        (PolicySource::Resource, None) => None,
        (_, Some((not, value))) => {
            let element = if not { "NotResource" } else { "Resource" };
            let items = p
                .strings(value, element)?
                .into_iter()
                .map(|raw| {
                    ResourcePattern::parse(raw, variables)
                        .map_err(|reason| p.invalid(element, reason))
                })
                .collect::<Result<_, _>>()?;
            Some(Listed { not, items })
        }
    };

    let mut conditions = Vec::new();
    match obj.get("Condition") {
        None => {}
        Some(Value::Object(operators)) => {
            for (operator, keys) in operators {
                let Some(keys) = keys.as_object() else {
                    return Err(p.invalid(
                        format!("Condition {operator}"),
                        "must map condition keys to values",
                    ));
                };
                for (key, value) in keys {
                    conditions.push(p.condition(operator, key, value)?);
                }
            }
        }
        Some(_) => {
            return Err(p.invalid("Condition", "must map operators to their keys"));
        }
    }

    Ok(Statement {
        effect,
        principal,
        action,
        resource,
        conditions,
    })
}
