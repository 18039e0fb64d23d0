//! Which IPv4 addresses are the public internet.
//!
//! Two decisions rest on it: whether a rule's sources open a port to the world (a
//! handful of wide blocks can do that as surely as `0.0.0.0/0`), and whether an
//! answer about the caller's own address is believable. Both use IANA's
//! special-purpose registry: what it marks as not globally reachable is not public.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Blocks that are not public unicast space, with what they are (IANA IPv4
/// special-purpose registry, plus multicast and the reserved 240/4, which holds the
/// broadcast address).
pub const NOT_PUBLIC: [(Ipv4Addr, u8, &str); 14] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8, "this network, 0.0.0.0/8"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private, RFC 1918"),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        "carrier-grade NAT, 100.64.0.0/10",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link-local"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private, RFC 1918"),
    (
        Ipv4Addr::new(192, 0, 0, 0),
        24,
        "IETF protocol assignments, 192.0.0.0/24",
    ),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "documentation, RFC 5737"),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private, RFC 1918"),
    (
        Ipv4Addr::new(198, 18, 0, 0),
        15,
        "benchmarking, 198.18.0.0/15",
    ),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        "documentation, RFC 5737",
    ),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "documentation, RFC 5737"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved, 240.0.0.0/4"),
];

fn not_public_blocks() -> impl Iterator<Item = (Ipv4Net, &'static str)> {
    NOT_PUBLIC
        .iter()
        .filter_map(|(ip, len, what)| Ipv4Net::new(*ip, *len).ok().map(|n| (n, *what)))
}

/// Why `ip` is not a public unicast address, or `None` when it is.
pub fn not_public(ip: Ipv4Addr) -> Option<&'static str> {
    if ip == Ipv4Addr::BROADCAST {
        return Some("broadcast");
    }
    not_public_blocks()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, what)| what)
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: Ipv4Addr) -> bool {
    not_public(ip).is_none()
}

/// How many public addresses the blocks cover together (overlaps counted once).
pub fn public_addresses(nets: &[Ipv4Net]) -> u64 {
    Ipv4Net::aggregate(&nets.to_vec())
        .iter()
        .map(|net| {
            let size = 1u64 << (32 - net.prefix_len());
            let hidden: u64 = not_public_blocks()
                .map(|(np, _)| {
                    if net.contains(&np) {
                        1u64 << (32 - np.prefix_len())
                    } else if np.contains(net) {
                        size
                    } else {
                        0
                    }
                })
                .sum();
            size.saturating_sub(hidden)
        })
        .sum()
}

/// Every public address there is.
pub fn all_public() -> u64 {
    public_addresses(&[Ipv4Net::default()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<Ipv4Net> {
        list.iter().map(|s| s.parse().expect("CIDR")).collect()
    }

    #[test]
    fn public_space_is_what_the_registry_leaves() {
        assert!(is_public(Ipv4Addr::new(8, 8, 8, 8)));
        for private in [
            "10.1.2.3",
            "172.31.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "127.0.0.1",
        ] {
            assert!(!is_public(private.parse().expect("ip")), "{private}");
        }
        for odd in [
            "0.0.0.0",
            "169.254.169.254",
            "224.0.0.1",
            "255.255.255.255",
            "203.0.113.9",
        ] {
            assert!(!is_public(odd.parse().expect("ip")), "{odd}");
        }
        // 2^32 less the fourteen blocks, which do not overlap.
        assert_eq!(all_public(), 3_702_258_688);
    }

    #[test]
    fn coverage_counts_each_public_address_once() {
        assert_eq!(
            public_addresses(&nets(&["0.0.0.0/1", "128.0.0.0/1"])),
            all_public()
        );
        assert_eq!(
            public_addresses(&nets(&["0.0.0.0/0", "8.8.8.8/32"])),
            all_public()
        );
        assert_eq!(public_addresses(&nets(&["10.0.0.0/8"])), 0);
        assert_eq!(public_addresses(&nets(&["8.0.0.0/8"])), 1 << 24);
        assert_eq!(
            public_addresses(&nets(&["8.0.0.0/8", "8.8.0.0/16"])),
            1 << 24
        );
        // 172.0.0.0/8 holds the private 172.16/12.
        assert_eq!(
            public_addresses(&nets(&["172.0.0.0/8"])),
            (1 << 24) - (1 << 20)
        );
        assert_eq!(public_addresses(&nets(&["10.1.2.0/24"])), 0);
    }
}
