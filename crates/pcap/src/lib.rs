//! Reading packet captures and summarising their conversations.
//!
//! Students capture traffic with tcpdump on lab instances and need to see, per
//! conversation, how much was exchanged and which TCP problems occurred
//! (retransmissions, zero windows, resets, ...), using the same definitions as
//! Wireshark's expert info so the numbers agree with what they see there.
//!
//! The crate has three layers, and a view over time:
//! - [`reader`] turns a pcap or pcapng byte stream into [`Packet`]s;
//! - [`packet`] decodes link, IP and TCP/UDP headers of one packet;
//! - [`analysis`] groups packets into conversations and flags TCP problems;
//! - [`iograph`] counts packets and flagged packets per time interval, the
//!   numbers of Wireshark's I/O graph.
//!
//! ```no_run
//! let file = std::fs::File::open("capture.pcap")?;
//! let summary = labctl_pcap::summarize_reader(std::io::BufReader::new(file))?;
//! print!("{}", summary.render_text());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod analysis;
pub mod iograph;
pub mod packet;
pub mod reader;

pub use analysis::{Analyzer, Conversation, Endpoint, Occurrence, Problem, Summary, TcpProblems};
pub use iograph::{IoGraph, IoGraphBuilder, IoGraphError};
pub use reader::{Error, ErrorKind, Packet, Reader};

/// Reads a whole capture from `r` and summarises it.
///
/// Stops at the first malformed or truncated record and returns its error;
/// use [`Reader`] and [`Analyzer`] directly to keep what was read before it.
pub fn summarize_reader(r: impl std::io::Read) -> Result<Summary, Error> {
    let mut analyzer = Analyzer::new();
    for packet in Reader::new(r)? {
        analyzer.push(&packet?);
    }
    Ok(analyzer.finish())
}
