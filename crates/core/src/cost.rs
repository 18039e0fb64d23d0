//! What a lab's instances cost per hour, shown by `plan` before anything is created.
//!
//! Students and instructors should know what a lab costs before they run `up`: per
//! hour, and per lifetime when the lab sets `lifetime` (each instance stops itself that
//! long after it boots). The estimate covers what the instances bill by the hour:
//! compute, their gp3 root volumes and their public IPv4 addresses. The rest of a lab
//! (VPC, subnets, security groups, IAM) is free; the private hosted zone ($0.50 a month),
//! the capture bucket, data transfer and T-instance surplus CPU credits (t3 and t3a
//! launch as `unlimited`) are not counted.
//!
//! Prices are on-demand list prices embedded in this file with the date they were taken
//! from the AWS price list, so they are estimates: AWS changes prices, and a bill also
//! has taxes, credits and savings plans this file knows nothing of. A type or region
//! missing from the table is reported as such, never guessed.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::desired::{Desired, Spec};
use crate::topology::Lifetime;

/// When the embedded prices were taken from the AWS price list.
pub const PRICES_AS_OF: &str = "2025";

/// Hours in the month AWS uses to turn GB-month prices into hourly ones.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// Public IPv4 address, USD per hour, in every region (charged since February 2024,
/// while the instance runs; a stopped instance gives its auto-assigned address back).
pub const PUBLIC_IPV4_PER_HOUR: f64 = 0.005;

/// Root volume size (GiB) of the images labctl launches when nothing else is known:
/// the Ubuntu 24.04 images' 8 GiB, also the AWS layer's fallback.
pub const DEFAULT_ROOT_GIB: u32 = 8;

/// One region's prices.
struct RegionPrices {
    region: &'static str,
    /// EBS gp3 storage, USD per GB-month.
    gp3_gb_month: f64,
    /// On-demand instance types, USD per hour.
    instances: &'static [(&'static str, f64)],
}

/// The t3, t3a and t2 prices shared by us-east-1, us-east-2 and us-west-2.
const US: &[(&str, f64)] = &[
    ("t3.micro", 0.0104),
    ("t3.small", 0.0208),
    ("t3.medium", 0.0416),
    ("t3a.micro", 0.0094),
    ("t3a.small", 0.0188),
    ("t2.micro", 0.0116),
    ("t2.small", 0.023),
];

/// AWS public price list, on-demand, Linux, shared tenancy, x86_64 types only, as of
/// 2025 ([`PRICES_AS_OF`]): instances in USD per hour, gp3 storage in USD per GB-month.
/// eu-north-1 lists no t2 or t3a prices because AWS does not offer those types there.
const PRICES: &[RegionPrices] = &[
    RegionPrices {
        region: "us-east-1",
        gp3_gb_month: 0.08,
        instances: US,
    },
    RegionPrices {
        region: "us-east-2",
        gp3_gb_month: 0.08,
        instances: US,
    },
    RegionPrices {
        region: "us-west-2",
        gp3_gb_month: 0.08,
        instances: US,
    },
    RegionPrices {
        region: "eu-west-1",
        gp3_gb_month: 0.088,
        instances: &[
            ("t3.micro", 0.0114),
            ("t3.small", 0.0228),
            ("t3.medium", 0.0456),
            ("t3a.micro", 0.0102),
            ("t3a.small", 0.0204),
            ("t2.micro", 0.0126),
            ("t2.small", 0.025),
        ],
    },
    RegionPrices {
        region: "eu-central-1",
        gp3_gb_month: 0.0952,
        instances: &[
            ("t3.micro", 0.012),
            ("t3.small", 0.024),
            ("t3.medium", 0.048),
            ("t3a.micro", 0.0108),
            ("t3a.small", 0.0216),
            ("t2.micro", 0.0134),
            ("t2.small", 0.0268),
        ],
    },
    RegionPrices {
        region: "eu-north-1",
        gp3_gb_month: 0.0836,
        instances: &[
            ("t3.micro", 0.0108),
            ("t3.small", 0.0216),
            ("t3.medium", 0.0432),
        ],
    },
    RegionPrices {
        region: "ap-southeast-1",
        gp3_gb_month: 0.096,
        instances: &[
            ("t3.micro", 0.0132),
            ("t3.small", 0.0264),
            ("t3.medium", 0.0528),
            ("t3a.micro", 0.0118),
            ("t3a.small", 0.0236),
            ("t2.micro", 0.0146),
            ("t2.small", 0.0292),
        ],
    },
    RegionPrices {
        region: "ap-northeast-1",
        gp3_gb_month: 0.096,
        instances: &[
            ("t3.micro", 0.0136),
            ("t3.small", 0.0272),
            ("t3.medium", 0.0544),
            ("t3a.micro", 0.0122),
            ("t3a.small", 0.0245),
            ("t2.micro", 0.0152),
            ("t2.small", 0.0304),
        ],
    },
];

fn region_prices(region: &str) -> Option<&'static RegionPrices> {
    PRICES.iter().find(|p| p.region == region)
}

/// The regions the table has prices for.
pub fn regions() -> impl Iterator<Item = &'static str> {
    PRICES.iter().map(|p| p.region)
}

/// On-demand Linux price of `instance_type` in `region`, USD per hour.
pub fn instance_price(region: &str, instance_type: &str) -> Option<f64> {
    region_prices(region)?
        .instances
        .iter()
        .find(|(t, _)| *t == instance_type)
        .map(|(_, price)| *price)
}

/// EBS gp3 storage price in `region`, USD per GB-month.
pub fn gp3_price(region: &str) -> Option<f64> {
    region_prices(region).map(|p| p.gp3_gb_month)
}

/// One instance, as far as its price goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceCost<'a> {
    /// EC2 instance type (`t3.micro`).
    pub instance_type: &'a str,
    /// Size of its gp3 root volume, GiB.
    pub root_gib: u32,
    /// Launched with a public IPv4 address.
    pub public_ip: bool,
}

/// The instances of a desired state, each with a `root_gib` root volume (the size comes
/// from the image, which only the AWS layer can look up; [`DEFAULT_ROOT_GIB`] otherwise).
pub fn instances(desired: &Desired, root_gib: u32) -> Vec<InstanceCost<'_>> {
    desired
        .resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::Instance {
                instance_type,
                public_ip,
                ..
            } => Some(InstanceCost {
                instance_type,
                root_gib,
                public_ip: *public_ip,
            }),
            _ => None,
        })
        .collect()
}

/// What a part of the estimate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// Instance hours, while the instances run.
    Compute,
    /// Root volumes: billed from creation until `labctl down`, stopped or not.
    Storage,
    /// Public IPv4 addresses, while the instances run.
    PublicIpv4,
}

/// One part of the hourly estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EstimateLine {
    /// What it covers, for people: `3 × t3.micro`, `24 GiB gp3`, `3 public IPv4`.
    pub what: String,
    /// What it is for.
    pub component: Component,
    /// USD per hour.
    pub per_hour: f64,
}

/// The hourly cost of a lab's instances in one region.
///
/// A lab without instances has an estimate of 0 with no lines: nothing it creates costs
/// by the hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// Region the prices are for.
    pub region: String,
    /// Whether the table has prices for the region at all.
    pub region_known: bool,
    /// Total of the lines, USD per hour: a lower bound when `unknown` is not empty.
    pub per_hour: f64,
    /// Compute per instance type (sorted by type), then storage, then public IPv4.
    pub lines: Vec<EstimateLine>,
    /// Instance types the table has no price for in the region, sorted: their compute
    /// is not counted. In a region the table lacks, every type is here and nothing is
    /// counted.
    pub unknown: Vec<String>,
}

/// Estimates what `instances` cost per hour in `region`, grouped by instance type.
pub fn estimate(region: &str, instances: &[InstanceCost<'_>]) -> Estimate {
    let mut by_type = BTreeMap::<&str, u32>::new();
    for i in instances {
        *by_type.entry(i.instance_type).or_default() += 1;
    }
    let Some(prices) = region_prices(region) else {
        return Estimate {
            region: region.to_owned(),
            region_known: false,
            per_hour: 0.0,
            lines: Vec::new(),
            unknown: by_type.into_keys().map(str::to_owned).collect(),
        };
    };

    let mut lines = Vec::new();
    let mut unknown = Vec::new();
    for (instance_type, count) in by_type {
        match instance_price(region, instance_type) {
            Some(price) => lines.push(EstimateLine {
                what: format!("{count} × {instance_type}"),
                component: Component::Compute,
                per_hour: f64::from(count) * price,
            }),
            None => unknown.push(instance_type.to_owned()),
        }
    }
    let gib: u64 = instances.iter().map(|i| u64::from(i.root_gib)).sum();
    if gib > 0 {
        lines.push(EstimateLine {
            what: format!("{gib} GiB gp3"),
            component: Component::Storage,
            per_hour: gib as f64 * prices.gp3_gb_month / HOURS_PER_MONTH,
        });
    }
    let public = instances.iter().filter(|i| i.public_ip).count();
    if public > 0 {
        lines.push(EstimateLine {
            what: format!("{public} public IPv4"),
            component: Component::PublicIpv4,
            per_hour: public as f64 * PUBLIC_IPV4_PER_HOUR,
        });
    }
    Estimate {
        region: region.to_owned(),
        region_known: true,
        per_hour: lines.iter().map(|l| l.per_hour).sum(),
        lines,
        unknown,
    }
}

impl Estimate {
    /// USD per hour of the lines for `component`.
    pub fn component_per_hour(&self, component: Component) -> f64 {
        self.lines
            .iter()
            .filter(|l| l.component == component)
            .map(|l| l.per_hour)
            .sum()
    }

    /// The most one lifetime of `minutes` can cost, in USD rounded up to the cent;
    /// `None` when the estimate misses a price, since a bound would then be wrong.
    pub fn lifetime_most(&self, minutes: u64) -> Option<f64> {
        let complete = self.region_known && self.unknown.is_empty() && !self.lines.is_empty();
        let cents = units(self.per_hour * minutes as f64 / 60.0, 2, Round::Up);
        complete.then_some(cents as f64 / 100.0)
    }

    /// The estimate for `plan`, one or two lines without a trailing newline:
    ///
    /// ```text
    /// estimated cost: $0.0488/h (3 × t3.micro $0.0312, 24 GiB gp3 $0.0026, 3 public IPv4 $0.0150) in us-east-1, on-demand
    /// at most $0.20 per 4h lifetime; stopped, the volumes still cost $0.0026/h until `labctl down`
    /// ```
    ///
    /// The second line comes with a lifetime (minutes), when every type has a price: the
    /// lifetime caps how long the instances run per start, so compute and addresses stop
    /// there, while the volumes bill until the lab is deleted. The figure is rounded up to
    /// the cent; the stop is armed during boot, so each start can add about a minute.
    pub fn render(&self, lifetime_minutes: Option<u64>) -> String {
        if self.lines.is_empty() && self.unknown.is_empty() {
            return "estimated cost: nothing per hour (the lab has no instances)".to_owned();
        }
        if !self.region_known {
            let known: Vec<_> = regions().collect();
            return format!(
                "estimated cost: no price for {} in {} (prices are embedded for {})",
                self.unknown.join(", "),
                self.region,
                known.join(", ")
            );
        }

        let parts: Vec<String> = self
            .lines
            .iter()
            .map(|l| format!("{} {}", l.what, per_hour(l.per_hour)))
            .collect();
        let mut out = format!(
            "estimated cost: {}{}/h ({}) in {}, on-demand",
            if self.unknown.is_empty() {
                ""
            } else {
                "at least "
            },
            per_hour(self.per_hour),
            parts.join(", "),
            self.region
        );
        if !self.unknown.is_empty() {
            out.push_str(&format!(
                "; no price for {} in {}, so {} compute is not counted",
                self.unknown.join(", "),
                self.region,
                if self.unknown.len() == 1 {
                    "its"
                } else {
                    "their"
                }
            ));
            return out;
        }
        if let Some(minutes) = lifetime_minutes
            && let Some(most) = self.lifetime_most(minutes)
        {
            let lifetime = Lifetime(std::time::Duration::from_secs(minutes.saturating_mul(60)));
            out.push_str(&format!(
                "\nat most {} per {lifetime} lifetime",
                usd(most, 2, Round::Nearest)
            ));
            let storage = self.component_per_hour(Component::Storage);
            if storage > 0.0 {
                out.push_str(&format!(
                    "; stopped, the volumes still cost {}/h until `labctl down`",
                    per_hour(storage)
                ));
            }
        }
        out
    }
}

/// How [`usd`] rounds to its last digit.
#[derive(Clone, Copy)]
enum Round {
    Nearest,
    /// For upper bounds.
    Up,
}

/// `$` and `amount` with `decimals` digits, rounded in integer units so that float
/// noise (3 × 0.0104 = 0.031200000000000002) never shows or tips a rounding.
fn usd(amount: f64, decimals: u32, round: Round) -> String {
    let scale = 10u64.pow(decimals);
    let units = units(amount, decimals, round);
    if decimals == 0 {
        return format!("${units}");
    }
    let width = decimals as usize;
    format!("${}.{:0width$}", units / scale, units % scale)
}

/// `amount` in whole units of `decimals` decimal places (cents for 2).
fn units(amount: f64, decimals: u32, round: Round) -> u64 {
    let units = amount.max(0.0) * 10u64.pow(decimals) as f64;
    // A billionth of a unit absorbs binary representation error in either direction.
    (match round {
        Round::Nearest => (units + 1e-9).round(),
        Round::Up => (units - 1e-9).ceil(),
    }) as u64
}

/// An hourly figure: 4 decimals under $1, 2 from $1 on.
fn per_hour(amount: f64) -> String {
    if amount + 0.00005 < 1.0 {
        usd(amount, 4, Round::Nearest)
    } else {
        usd(amount, 2, Round::Nearest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micro(public_ip: bool) -> InstanceCost<'static> {
        InstanceCost {
            instance_type: "t3.micro",
            root_gib: 8,
            public_ip,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// The lab in the README: a server and two clients, all with public addresses.
    fn three_micros() -> Vec<InstanceCost<'static>> {
        vec![micro(true); 3]
    }

    #[test]
    fn table_is_complete_and_sane() {
        let types = [
            "t3.micro",
            "t3.small",
            "t3.medium",
            "t3a.micro",
            "t3a.small",
            "t2.micro",
            "t2.small",
        ];
        for region in regions() {
            let gp3 = gp3_price(region).unwrap();
            assert!(gp3 > 0.05 && gp3 < 0.15, "{region} gp3 {gp3}");
            for t in types {
                let price = instance_price(region, t);
                // AWS offers neither t2 nor t3a in eu-north-1.
                if region == "eu-north-1" && !t.starts_with("t3.") {
                    assert_eq!(price, None, "{region} {t}");
                    continue;
                }
                let price = price.unwrap_or_else(|| panic!("no price for {t} in {region}"));
                assert!(price > 0.0 && price < 0.1, "{region} {t} {price}");
            }
            // Each size up costs twice as much in every family.
            for (small, micro) in [("t3.small", "t3.micro"), ("t3.medium", "t3.small")] {
                let (s, m) = (instance_price(region, small), instance_price(region, micro));
                assert!(close(s.unwrap(), 2.0 * m.unwrap()), "{region} {small}");
            }
        }
        let mut names: Vec<_> = regions().collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PRICES.len(), "a region listed twice");
        // The anchors quoted in the brief.
        assert_eq!(instance_price("us-east-1", "t3.micro"), Some(0.0104));
        assert_eq!(instance_price("eu-north-1", "t3.micro"), Some(0.0108));
        assert_eq!(gp3_price("us-east-1"), Some(0.08));
    }

    #[test]
    fn adds_compute_storage_and_addresses() {
        let e = estimate("eu-central-1", &three_micros());
        let compute = 3.0 * instance_price("eu-central-1", "t3.micro").unwrap();
        let storage = 24.0 * gp3_price("eu-central-1").unwrap() / HOURS_PER_MONTH;
        let ipv4 = 3.0 * PUBLIC_IPV4_PER_HOUR;
        assert!(e.region_known);
        assert!(e.unknown.is_empty());
        let lines: Vec<_> = e
            .lines
            .iter()
            .map(|l| (l.what.as_str(), l.component))
            .collect();
        assert_eq!(
            lines,
            [
                ("3 × t3.micro", Component::Compute),
                ("24 GiB gp3", Component::Storage),
                ("3 public IPv4", Component::PublicIpv4),
            ]
        );
        assert!(close(e.lines[0].per_hour, compute));
        assert!(close(e.lines[1].per_hour, storage));
        assert!(close(e.lines[2].per_hour, ipv4));
        assert!(close(e.per_hour, compute + storage + ipv4));
        assert!(close(e.component_per_hour(Component::Storage), storage));
    }

    #[test]
    fn groups_by_type_sorted_and_counts_only_public_addresses() {
        let instances = [
            InstanceCost {
                instance_type: "t3.small",
                root_gib: 20,
                public_ip: true,
            },
            micro(false),
            micro(false),
            InstanceCost {
                instance_type: "t2.micro",
                root_gib: 8,
                public_ip: false,
            },
        ];
        let e = estimate("us-west-2", &instances);
        let what: Vec<_> = e.lines.iter().map(|l| l.what.as_str()).collect();
        assert_eq!(
            what,
            [
                "1 × t2.micro",
                "2 × t3.micro",
                "1 × t3.small",
                "44 GiB gp3",
                "1 public IPv4"
            ]
        );
        let p = |t| instance_price("us-west-2", t).unwrap();
        assert!(close(e.lines[1].per_hour, 2.0 * p("t3.micro")));
        let expected = p("t2.micro")
            + 2.0 * p("t3.micro")
            + p("t3.small")
            + 44.0 * gp3_price("us-west-2").unwrap() / HOURS_PER_MONTH
            + PUBLIC_IPV4_PER_HOUR;
        assert!(close(e.per_hour, expected));
    }

    #[test]
    fn no_addresses_or_volumes_no_lines_for_them() {
        let e = estimate(
            "us-east-1",
            &[InstanceCost {
                instance_type: "t3.micro",
                root_gib: 0,
                public_ip: false,
            }],
        );
        assert_eq!(e.lines.len(), 1);
        assert_eq!(e.render(Some(240)), {
            "estimated cost: $0.0104/h (1 × t3.micro $0.0104) in us-east-1, on-demand\n\
             at most $0.05 per 4h lifetime"
        });
    }

    #[test]
    fn renders_the_readme_lab() {
        let e = estimate("us-east-1", &three_micros());
        assert_eq!(
            e.render(None),
            "estimated cost: $0.0488/h (3 × t3.micro $0.0312, 24 GiB gp3 $0.0026, \
             3 public IPv4 $0.0150) in us-east-1, on-demand"
        );
        // 4h at $0.048830…/h is $0.1953…, rounded up.
        assert_eq!(
            e.render(Some(240)),
            "estimated cost: $0.0488/h (3 × t3.micro $0.0312, 24 GiB gp3 $0.0026, \
             3 public IPv4 $0.0150) in us-east-1, on-demand\n\
             at most $0.20 per 4h lifetime; stopped, the volumes still cost $0.0026/h \
             until `labctl down`"
        );
        assert_eq!(
            e.render(Some(90)).lines().nth(1).unwrap().split(';').next(),
            Some("at most $0.08 per 1h30m lifetime")
        );
    }

    #[test]
    fn lifetime_total_is_rate_times_hours_rounded_up() {
        let e = estimate("eu-north-1", &[micro(true); 12]);
        for minutes in [30, 60, 240, 480, 2880] {
            let total = e.per_hour * minutes as f64 / 60.0;
            let shown = e.render(Some(minutes));
            let figure = shown
                .split("at most $")
                .nth(1)
                .and_then(|s| s.split(' ').next())
                .unwrap();
            let cents: f64 = figure.parse::<f64>().unwrap() * 100.0;
            assert!(
                cents >= total * 100.0 - 1e-6 && cents < total * 100.0 + 1.0,
                "{minutes}m: {figure} for {total}"
            );
        }
    }

    #[test]
    fn unknown_type_is_named_and_not_guessed() {
        let instances = [
            micro(true),
            InstanceCost {
                instance_type: "t3.nano",
                root_gib: 8,
                public_ip: true,
            },
            InstanceCost {
                instance_type: "t3.nano",
                root_gib: 8,
                public_ip: false,
            },
        ];
        let e = estimate("us-east-1", &instances);
        assert_eq!(e.unknown, ["t3.nano"]);
        // Their volumes and addresses have prices, so they count.
        let expected = instance_price("us-east-1", "t3.micro").unwrap()
            + 24.0 * gp3_price("us-east-1").unwrap() / HOURS_PER_MONTH
            + 2.0 * PUBLIC_IPV4_PER_HOUR;
        assert!(close(e.per_hour, expected));
        let shown = e.render(Some(240));
        assert_eq!(
            shown,
            "estimated cost: at least $0.0230/h (1 × t3.micro $0.0104, 24 GiB gp3 $0.0026, \
             2 public IPv4 $0.0100) in us-east-1, on-demand; no price for t3.nano in \
             us-east-1, so its compute is not counted"
        );
        assert!(!shown.contains("at most"), "no bound without every price");
    }

    #[test]
    fn types_aws_does_not_offer_in_the_region_are_unknown() {
        let t2 = InstanceCost {
            instance_type: "t2.micro",
            root_gib: 8,
            public_ip: false,
        };
        let t3a = InstanceCost {
            instance_type: "t3a.small",
            ..t2
        };
        let e = estimate("eu-north-1", &[t2, t3a]);
        assert_eq!(e.unknown, ["t2.micro", "t3a.small"]);
        assert!(e.render(None).ends_with(
            "no price for t2.micro, t3a.small in eu-north-1, so their compute is not counted"
        ));
    }

    #[test]
    fn unknown_region_prices_nothing() {
        let e = estimate("xx-region-1", &[micro(true), micro(true)]);
        assert!(!e.region_known);
        assert_eq!(e.per_hour, 0.0);
        assert!(e.lines.is_empty());
        assert_eq!(e.unknown, ["t3.micro"]);
        let shown = e.render(Some(240));
        assert!(
            shown.starts_with("estimated cost: no price for t3.micro in xx-region-1 (prices"),
            "{shown}"
        );
        assert!(shown.contains("us-east-1, us-east-2"), "{shown}");
        assert!(!shown.contains('\n'));

        // Nothing to price is nothing to pay, wherever.
        let empty = estimate("xx-region-1", &[]);
        assert_eq!(
            empty.render(None),
            "estimated cost: nothing per hour (the lab has no instances)"
        );
    }

    #[test]
    fn empty_lab_costs_nothing_per_hour() {
        let e = estimate("us-east-1", &[]);
        assert_eq!(e.per_hour, 0.0);
        assert!(e.lines.is_empty() && e.unknown.is_empty());
        let shown = "estimated cost: nothing per hour (the lab has no instances)";
        assert_eq!(e.render(None), shown);
        assert_eq!(e.render(Some(240)), shown);
    }

    #[test]
    fn money_has_no_float_noise() {
        assert_eq!(usd(3.0 * 0.0104, 4, Round::Nearest), "$0.0312");
        assert_eq!(usd(0.1 + 0.2, 2, Round::Nearest), "$0.30");
        assert_eq!(usd(0.1 + 0.2, 2, Round::Up), "$0.30");
        assert_eq!(usd(0.00125, 4, Round::Nearest), "$0.0013");
        assert_eq!(usd(0.0, 4, Round::Nearest), "$0.0000");
        assert_eq!(usd(0.19532, 2, Round::Up), "$0.20");
        assert_eq!(usd(0.19, 2, Round::Up), "$0.19");
        assert_eq!(usd(12.5, 2, Round::Nearest), "$12.50");
        assert_eq!(usd(-1.0, 2, Round::Nearest), "$0.00");
        assert_eq!(usd(f64::NAN, 2, Round::Up), "$0.00");
        assert_eq!(per_hour(0.0468), "$0.0468");
        assert_eq!(per_hour(0.99999), "$1.00");
        assert_eq!(per_hour(1.0416), "$1.04");
        assert_eq!(per_hour(16.0 * 0.0104), "$0.1664");
    }

    #[test]
    fn figures_from_a_dollar_on_have_cents() {
        let medium = InstanceCost {
            instance_type: "t3.medium",
            ..micro(true)
        };
        let e = estimate("us-east-1", &[medium; 25]);
        // 25 × $0.0416 + 200 GiB × $0.08 / 730 + 25 × $0.005 = $1.1869…
        assert_eq!(
            e.render(None),
            "estimated cost: $1.19/h (25 × t3.medium $1.04, 200 GiB gp3 $0.0219, \
             25 public IPv4 $0.1250) in us-east-1, on-demand"
        );
    }

    #[test]
    fn instances_come_from_the_desired_state() {
        use crate::desired::{Address, Kind, Resource};
        let instance = |name: &str, public_ip| Resource {
            address: Address::new(Kind::Instance, name),
            name: name.to_owned(),
            spec: Spec::Instance {
                instance_type: "t3.small".into(),
                image: "ubuntu-24.04".into(),
                role: "client".into(),
                subnet: "lan".into(),
                public_ip,
                profile: "p".into(),
                imdsv2: true,
                running: true,
                services: vec![],
                lifetime_minutes: None,
                user_data: "0".repeat(16),
            },
        };
        let desired = Desired {
            lab: "netlab".into(),
            resources: vec![instance("server", true), instance("client", false)],
            user_data: Default::default(),
        };
        let found = instances(&desired, DEFAULT_ROOT_GIB);
        assert_eq!(
            found,
            [
                InstanceCost {
                    instance_type: "t3.small",
                    root_gib: 8,
                    public_ip: true
                },
                InstanceCost {
                    instance_type: "t3.small",
                    root_gib: 8,
                    public_ip: false
                },
            ]
        );
    }
}
