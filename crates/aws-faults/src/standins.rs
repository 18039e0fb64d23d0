//! Answers for what LocalStack's community edition lacks, in AWS's own formats, with
//! values a test sets: Service Quotas (`GetServiceQuota`, `ListServiceQuotas`) and
//! EC2's `DescribeInstanceTypeOfferings` (forwarded when no offering is set).

use serde::Deserialize;
use serde_json::json;

use crate::call::Call;

/// A quota's value, as a test sets it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Quota {
    /// `ec2`, `vpc`, …
    pub service: String,
    /// `L-1216C47A`, …
    pub code: String,
    /// Its value.
    pub value: f64,
}

impl Quota {
    /// Parses `service/CODE=VALUE`, such as `ec2/L-1216C47A=32`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}`: expected SERVICE/CODE=VALUE"))?;
        let (service, code) = name
            .split_once('/')
            .ok_or_else(|| format!("`{text}`: expected SERVICE/CODE=VALUE"))?;
        let value = value.parse().map_err(|_| format!("`{text}`: bad value"))?;
        Ok(Quota {
            service: service.to_owned(),
            code: code.to_owned(),
            value,
        })
    }
}

/// An instance type offered in an availability zone, as a test sets it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Offering {
    /// The zone, such as `us-east-1a`.
    pub zone: String,
    /// The type, such as `t3.micro`.
    pub instance_type: String,
}

impl Offering {
    /// Parses `ZONE=TYPE[,TYPE…]`, such as `us-east-1a=t3.micro,t3.small`.
    pub fn parse(text: &str) -> Result<Vec<Self>, String> {
        let (zone, types) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}`: expected ZONE=TYPE[,TYPE...]"))?;
        Ok(types
            .split(',')
            .filter(|t| !t.is_empty())
            .map(|t| Offering {
                zone: zone.to_owned(),
                instance_type: t.to_owned(),
            })
            .collect())
    }
}

/// The names AWS gives the quotas a lab meets.
fn quota_name(code: &str) -> &'static str {
    match code {
        "L-1216C47A" => "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
        "L-F678F1CE" => "VPCs per Region",
        "L-A4707A72" => "Internet gateways per Region",
        _ => "Quota",
    }
}

fn quota_json(q: &Quota, region: &str) -> serde_json::Value {
    json!({
        "ServiceCode": q.service,
        "ServiceName": q.service,
        "QuotaArn": format!("arn:aws:servicequotas:{region}:000000000000:{}/{}", q.service, q.code),
        "QuotaCode": q.code,
        "QuotaName": quota_name(&q.code),
        "Value": q.value,
        "Unit": "None",
        "Adjustable": true,
        "GlobalQuota": false
    })
}

/// Service Quotas' answer to `call`, or `None` to forward it: (status, body).
pub fn service_quotas(quotas: &[Quota], call: &Call, body: &[u8]) -> Option<(u16, String)> {
    let region = call.region.as_str();
    if call.service != "servicequotas" || quotas.is_empty() {
        return None;
    }
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let service = request["ServiceCode"].as_str().unwrap_or_default();
    let answer = match call.operation.as_str() {
        "GetServiceQuota" => {
            let code = request["QuotaCode"].as_str().unwrap_or_default();
            match quotas
                .iter()
                .find(|q| q.service == service && q.code == code)
            {
                Some(q) => (200, json!({ "Quota": quota_json(q, region) })),
                None => (
                    400,
                    json!({
                        "__type": "NoSuchResourceException",
                        "message": format!("The request failed because the specified quota {code} of service {service} does not exist.")
                    }),
                ),
            }
        }
        "ListServiceQuotas" => {
            let listed: Vec<serde_json::Value> = quotas
                .iter()
                .filter(|q| q.service == service)
                .map(|q| quota_json(q, region))
                .collect();
            (200, json!({ "Quotas": listed }))
        }
        _ => return None,
    };
    Some((answer.0, answer.1.to_string()))
}

/// EC2's `DescribeInstanceTypeOfferings` over the set offerings, honouring the
/// `location` and `instance-type` filters; `None` when none is set (forward it).
pub fn instance_type_offerings(
    offerings: &[Offering],
    call: &Call,
    body: &[u8],
    request_id: &str,
) -> Option<String> {
    if call.service != "ec2"
        || call.operation != "DescribeInstanceTypeOfferings"
        || offerings.is_empty()
    {
        return None;
    }
    let params: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    // Filter.N.Name and Filter.N.Value.M, by N.
    let mut filters: std::collections::BTreeMap<String, (String, Vec<String>)> = Default::default();
    for (k, v) in &params {
        let Some(rest) = k.strip_prefix("Filter.") else {
            continue;
        };
        let (n, field) = rest.split_once('.').unwrap_or((rest, ""));
        let entry = filters.entry(n.to_owned()).or_default();
        if field == "Name" {
            entry.0 = v.clone();
        } else if field.starts_with("Value") {
            entry.1.push(v.clone());
        }
    }
    let keep = |o: &&Offering| {
        filters.values().all(|(name, values)| match name.as_str() {
            "location" => values.contains(&o.zone),
            "instance-type" => values.contains(&o.instance_type),
            _ => true,
        })
    };
    let items: String = offerings
        .iter()
        .filter(keep)
        .map(|o| {
            format!(
                "<item><instanceType>{}</instanceType><locationType>availability-zone</locationType><location>{}</location></item>",
                o.instance_type, o.zone
            )
        })
        .collect();
    Some(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstanceTypeOfferingsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>{request_id}</requestId><instanceTypeOfferingSet>{items}</instanceTypeOfferingSet></DescribeInstanceTypeOfferingsResponse>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_and_offerings_parse_from_flags() {
        assert_eq!(
            Quota::parse("ec2/L-1216C47A=32").expect("quota"),
            Quota {
                service: "ec2".into(),
                code: "L-1216C47A".into(),
                value: 32.0
            }
        );
        assert!(Quota::parse("ec2=32").is_err());
        let o = Offering::parse("us-east-1a=t3.micro,t3.small").expect("offerings");
        assert_eq!(o.len(), 2);
        assert_eq!(o[1].instance_type, "t3.small");
    }
}
