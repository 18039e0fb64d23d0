//! Packets, bytes and TCP problems per time interval: the numbers behind an I/O graph.
//!
//! The summary says *what* went wrong in a capture; students also need to see
//! *when* (a burst of retransmissions after a route change, resets at the end),
//! which is what Wireshark's Statistics → I/O Graph shows with its default
//! "All packets" and "TCP errors" graphs. This module only does the bucketing,
//! with no drawing, so the counts can be tested exactly and every front end
//! draws the same numbers.
//!
//! Time is measured from the capture's first packet, as in the summary and in
//! Wireshark, so a time on the graph matches a "first at" time in the text.

use serde::Serialize;

/// The smallest interval chosen automatically: 1 ms.
pub const MIN_AUTO_INTERVAL_NS: u64 = 1_000_000;
/// The automatic interval is the smallest one giving at most this many intervals.
pub const TARGET_INTERVALS: u64 = 200;
/// More intervals than this are refused: nobody reads them, and they cost memory.
pub const MAX_INTERVALS: u64 = 100_000;

/// Traffic in one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// Packets whose time falls in the interval.
    pub packets: u64,
    /// Their frame bytes (on the wire).
    pub bytes: u64,
    /// Those of them the analysis flagged with at least one TCP problem.
    pub problem_packets: u64,
}

/// A capture cut into equal intervals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IoGraph {
    /// Length of one interval in nanoseconds.
    pub interval_ns: u64,
    /// Time of the first packet (the start of bucket 0), nanoseconds since the
    /// Unix epoch; `None` for an empty capture.
    pub start_ns: Option<u64>,
    /// One bucket per interval, from the first packet to the last; bucket `i`
    /// covers `[i * interval, (i + 1) * interval)` after the start. Empty for an
    /// empty capture.
    pub buckets: Vec<Bucket>,
}

impl IoGraph {
    /// Length of one interval in seconds.
    pub fn interval_s(&self) -> f64 {
        self.interval_ns as f64 / 1e9
    }
}

/// Why an [`IoGraph`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IoGraphError {
    /// An interval of zero length.
    #[error("the interval must be longer than zero")]
    ZeroInterval,
    /// The interval is so short that the capture needs too many of them.
    #[error(
        "an interval of {interval_s} s cuts this capture's {span_s} s into {intervals} \
         intervals, more than the {max} allowed; choose a longer interval",
        interval_s = *interval_ns as f64 / 1e9,
        span_s = *span_ns as f64 / 1e9,
        max = MAX_INTERVALS
    )]
    TooManyIntervals {
        /// The interval asked for, in nanoseconds.
        interval_ns: u64,
        /// Time from the first packet to the last, in nanoseconds.
        span_ns: u64,
        /// How many intervals that makes.
        intervals: u64,
    },
}

/// One packet as the graph sees it; kept small since a capture has millions.
#[derive(Debug, Clone, Copy)]
struct Sample {
    time_ns: u64,
    bytes: u32,
    flagged: bool,
}

/// Collects packets in capture order, then cuts them into intervals.
///
/// The packets are kept until [`build`](Self::build) because the automatic
/// interval depends on the whole capture's length.
#[derive(Debug, Clone, Default)]
pub struct IoGraphBuilder {
    samples: Vec<Sample>,
    first_ns: Option<u64>,
    last_ns: u64,
}

impl IoGraphBuilder {
    /// A builder that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accounts for one packet: its time, its frame bytes, and whether the
    /// analysis flagged it (the value [`crate::Analyzer::push`] returns).
    pub fn push(&mut self, time_ns: u64, bytes: u64, flagged: bool) {
        self.first_ns.get_or_insert(time_ns);
        self.last_ns = self.last_ns.max(time_ns);
        self.samples.push(Sample {
            time_ns,
            bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
            flagged,
        });
    }

    /// Nanoseconds from the first packet to the latest one (0 when empty).
    pub fn span_ns(&self) -> u64 {
        self.first_ns
            .map_or(0, |first| self.last_ns.saturating_sub(first))
    }

    /// The graph with `interval_ns`, or with [`auto_interval_ns`] for `None`.
    ///
    /// A packet exactly on a boundary belongs to the interval it starts. Packets
    /// stamped before the first one (the clock stepped back) count in the first
    /// interval.
    pub fn build(&self, interval_ns: Option<u64>) -> Result<IoGraph, IoGraphError> {
        let span_ns = self.span_ns();
        let interval_ns = interval_ns.unwrap_or_else(|| auto_interval_ns(span_ns));
        if interval_ns == 0 {
            return Err(IoGraphError::ZeroInterval);
        }
        let Some(start_ns) = self.first_ns else {
            return Ok(IoGraph {
                interval_ns,
                start_ns: None,
                buckets: Vec::new(),
            });
        };
        let intervals = span_ns / interval_ns + 1;
        if intervals > MAX_INTERVALS {
            return Err(IoGraphError::TooManyIntervals {
                interval_ns,
                span_ns,
                intervals,
            });
        }
        // At most MAX_INTERVALS, so the index casts below cannot truncate.
        let mut buckets = vec![Bucket::default(); intervals as usize];
        for s in &self.samples {
            let b = &mut buckets[(s.time_ns.saturating_sub(start_ns) / interval_ns) as usize];
            b.packets += 1;
            b.bytes += u64::from(s.bytes);
            b.problem_packets += u64::from(s.flagged);
        }
        Ok(IoGraph {
            interval_ns,
            start_ns: Some(start_ns),
            buckets,
        })
    }
}

/// The interval for a capture lasting `span_ns`: the smallest of 1, 2 and 5
/// times a power of ten, at least [`MIN_AUTO_INTERVAL_NS`], that cuts the span
/// into at most [`TARGET_INTERVALS`] intervals (so usually 80 to 200 of them).
pub fn auto_interval_ns(span_ns: u64) -> u64 {
    let mut decade = MIN_AUTO_INTERVAL_NS;
    loop {
        for step in [decade, decade * 2, decade * 5] {
            if span_ns / step < TARGET_INTERVALS {
                return step;
            }
        }
        match decade.checked_mul(10) {
            // `decade * 5` still fits: the loop above never overflows.
            Some(next) if next.checked_mul(5).is_some() => decade = next,
            _ => return decade * 5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::LINKTYPE_RAW;
    use crate::{Analyzer, Packet};

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    fn counts(g: &IoGraph) -> Vec<(u64, u64)> {
        g.buckets
            .iter()
            .map(|b| (b.packets, b.problem_packets))
            .collect()
    }

    #[test]
    fn auto_interval_gives_at_most_200_intervals_in_1_2_5_steps() {
        assert_eq!(auto_interval_ns(0), MS);
        assert_eq!(auto_interval_ns(150 * MS), MS);
        // 200 ms at 1 ms would be 201 intervals.
        assert_eq!(auto_interval_ns(199 * MS), MS);
        assert_eq!(auto_interval_ns(200 * MS), 2 * MS);
        assert_eq!(auto_interval_ns(S), 10 * MS);
        assert_eq!(auto_interval_ns(30 * S), 200 * MS);
        assert_eq!(auto_interval_ns(60 * S), 500 * MS);
        assert_eq!(auto_interval_ns(3600 * S), 20 * S);
        for span in [0, 1, MS, 7 * MS, S, 123 * S, 86_400 * S, u64::MAX] {
            let i = auto_interval_ns(span);
            assert!(span / i < TARGET_INTERVALS, "{span} ns: {i}");
            let mantissa = i / 10u64.pow(i.ilog10());
            assert!([1, 2, 5].contains(&mantissa), "{i}");
        }
        for span in [S, 59 * S, 3600 * S] {
            let n = span / auto_interval_ns(span) + 1;
            assert!((80..=200).contains(&n), "{span} ns: {n} intervals");
        }
    }

    #[test]
    fn empty_capture_has_no_buckets() {
        let g = IoGraphBuilder::new().build(None).expect("empty graph");
        assert_eq!(g.start_ns, None);
        assert_eq!(g.interval_ns, MIN_AUTO_INTERVAL_NS);
        assert!(g.buckets.is_empty());
    }

    #[test]
    fn single_packet_is_one_bucket() {
        let mut b = IoGraphBuilder::new();
        b.push(5 * S, 60, false);
        let g = b.build(None).expect("graph");
        assert_eq!(g.start_ns, Some(5 * S));
        assert_eq!(
            g.buckets,
            vec![Bucket {
                packets: 1,
                bytes: 60,
                problem_packets: 0
            }]
        );
    }

    #[test]
    fn packets_on_a_boundary_start_the_next_interval() {
        let mut b = IoGraphBuilder::new();
        for t in [0, 10 * MS - 1, 10 * MS, 20 * MS, 30 * MS, 30 * MS] {
            b.push(S + t, 100, false);
        }
        let g = b.build(Some(10 * MS)).expect("graph");
        assert_eq!(counts(&g), [(2, 0), (1, 0), (1, 0), (2, 0)]);
        assert_eq!(g.buckets[3].bytes, 200);
        assert!((g.interval_s() - 0.01).abs() < 1e-12);
    }

    #[test]
    fn flagged_packets_count_as_problems_in_their_interval() {
        let mut b = IoGraphBuilder::new();
        b.push(0, 60, false);
        b.push(S / 2, 60, true);
        b.push(S / 2 + 1, 60, true);
        b.push(2 * S, 60, false);
        b.push(3 * S, 60, true);
        let g = b.build(Some(S)).expect("graph");
        assert_eq!(counts(&g), [(3, 2), (0, 0), (1, 0), (1, 1)]);
    }

    #[test]
    fn earlier_stamped_packets_count_in_the_first_interval() {
        let mut b = IoGraphBuilder::new();
        b.push(10 * S, 60, false);
        b.push(9 * S, 60, true);
        b.push(12 * S, 60, false);
        assert_eq!(b.span_ns(), 2 * S);
        let g = b.build(Some(S)).expect("graph");
        assert_eq!(counts(&g), [(2, 1), (0, 0), (1, 0)]);
    }

    #[test]
    fn zero_and_too_short_intervals_are_refused() {
        let mut b = IoGraphBuilder::new();
        b.push(0, 60, false);
        b.push(3600 * S, 60, false);
        assert_eq!(b.build(Some(0)), Err(IoGraphError::ZeroInterval));
        let err = b.build(Some(1000)).expect_err("3.6e9 intervals");
        assert_eq!(
            err,
            IoGraphError::TooManyIntervals {
                interval_ns: 1000,
                span_ns: 3600 * S,
                intervals: 3_600_000_001
            }
        );
        assert!(
            err.to_string().contains("choose a longer interval"),
            "{err}"
        );
        // The largest allowed count still builds.
        let g = b
            .build(Some(3600 * S / (MAX_INTERVALS - 1)))
            .expect("graph");
        assert_eq!(g.buckets.len() as u64, MAX_INTERVALS);
    }

    /// A raw IPv4 TCP segment with no payload.
    fn segment(number: u64, time_ns: u64, from_client: bool, seq: u32, flags: u8) -> Packet {
        let (src, dst, sport, dport) = if from_client {
            ([10, 0, 0, 1], [10, 0, 0, 2], 40000u16, 80u16)
        } else {
            ([10, 0, 0, 2], [10, 0, 0, 1], 80, 40000)
        };
        let mut data = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0];
        data.extend(src);
        data.extend(dst);
        data.extend(sport.to_be_bytes());
        data.extend(dport.to_be_bytes());
        data.extend(seq.to_be_bytes());
        data.extend(0u32.to_be_bytes());
        data.extend([0x50, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
        Packet {
            number,
            offset: 0,
            timestamp_ns: time_ns,
            orig_len: data.len() as u32,
            link_type: LINKTYPE_RAW,
            data,
        }
    }

    #[test]
    fn analyzer_flags_feed_the_problem_counts() {
        // Two SYNs, the second a retransmission, then a reset a second later.
        let packets = [
            segment(1, 0, true, 1000, 0x02),
            segment(2, S / 10, true, 1000, 0x02),
            segment(3, S, false, 0, 0x04),
        ];
        let mut analyzer = Analyzer::new();
        let mut b = IoGraphBuilder::new();
        let mut flagged = Vec::new();
        for p in &packets {
            let f = analyzer.push(p);
            flagged.push(f);
            b.push(p.timestamp_ns, p.wire_len(), f);
        }
        assert_eq!(flagged, [false, true, true]);
        let summary = analyzer.finish();
        assert_eq!(summary.tcp_totals.retransmissions.count, 1);
        assert_eq!(summary.tcp_totals.resets.count, 1);
        let g = b.build(Some(S / 2)).expect("graph");
        assert_eq!(counts(&g), [(2, 1), (0, 0), (1, 1)]);
    }
}
