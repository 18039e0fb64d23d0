//! Damaged captures give packets or a typed error with an offset, never a panic.

mod common;

use labctl_pcap::{Error, summarize_reader};

/// Reads and analyses `bytes` all the way through.
fn run(bytes: &[u8]) -> Result<u64, Error> {
    let s = summarize_reader(bytes)?;
    let _ = s.render_text();
    let _ = s.to_json();
    Ok(s.packets)
}

fn check(bytes: &[u8], what: &str) {
    let outcome = std::panic::catch_unwind(|| run(bytes));
    match outcome {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            assert!(
                e.offset <= bytes.len() as u64,
                "{what}: offset {} beyond input of {}",
                e.offset,
                bytes.len()
            );
            assert!(e.to_string().starts_with("at offset "), "{what}: {e}");
        }
        Err(_) => panic!("{what}: panicked"),
    }
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, frames) in common::scenarios() {
        out.push((
            format!("{name}.pcap"),
            common::pcap(&frames, false, false, 1),
        ));
        out.push((
            format!("{name}.be-ns.pcap"),
            common::pcap(&frames, true, true, 1),
        ));
        out.push((
            format!("{name}.pcapng"),
            common::pcapng(&frames, false, 6, 1),
        ));
        out.push((
            format!("{name}.be.pcapng"),
            common::pcapng(&frames, true, 0x80 | 20, 1),
        ));
    }
    out
}

#[test]
fn truncation_at_every_offset() {
    for (name, bytes) in corpus() {
        let whole = run(&bytes).expect("intact file reads");
        for cut in 0..bytes.len() {
            let outcome = std::panic::catch_unwind(|| run(&bytes[..cut]));
            match outcome {
                Ok(Ok(n)) => assert!(n < whole, "{name} cut at {cut}: read {n} of {whole}"),
                Ok(Err(e)) => assert!(e.offset <= cut as u64, "{name} cut at {cut}: {e}"),
                Err(_) => panic!("{name} cut at {cut}: panicked"),
            }
        }
    }
}

#[test]
fn truncated_records_are_errors_but_record_boundaries_are_not() {
    let frames = common::clean();
    let bytes = common::pcap(&frames, false, false, 1);
    let first_end = 24 + 16 + frames[0].1.len();
    assert_eq!(run(&bytes[..first_end]).expect("boundary"), 1);
    let e = run(&bytes[..first_end + 10]).expect_err("mid header");
    assert_eq!(e.offset, first_end as u64);
    let e = run(&bytes[..first_end + 20]).expect_err("mid data");
    assert_eq!(e.offset, first_end as u64);
}

#[test]
fn flipped_header_bytes() {
    for (name, bytes) in corpus() {
        // File header, first records and the blocks around them.
        for at in 0..bytes.len().min(200) {
            for mask in [0xff, 0x80, 0x01, 0x10] {
                let mut b = bytes.clone();
                b[at] ^= mask;
                check(&b, &format!("{name} byte {at} ^ {mask:#x}"));
            }
        }
    }
}

#[test]
fn absurd_lengths_in_headers() {
    // One file per container variant; the first 160 bytes hold the file
    // header, section and interface blocks and the first records.
    for (name, bytes) in corpus()
        .into_iter()
        .filter(|(n, _)| n.starts_with("retransmissions"))
    {
        for at in (0..bytes.len().min(160) - 4).step_by(2) {
            for value in [
                0u32,
                1,
                5,
                11,
                12,
                0x7fff_ffff,
                0xffff_fffc,
                0xffff_ffff,
                0x1000_0000,
                0x0fff_fffc,
            ] {
                let mut b = bytes.clone();
                b[at..at + 4].copy_from_slice(&value.to_le_bytes());
                check(&b, &format!("{name} u32 at {at} = {value:#x} (le)"));
                b[at..at + 4].copy_from_slice(&value.to_be_bytes());
                check(&b, &format!("{name} u32 at {at} = {value:#x} (be)"));
            }
        }
    }
}

/// xorshift64*: deterministic, so a failure names a reproducible iteration.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn twenty_thousand_random_mutations() {
    let corpus = corpus();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for i in 0..20_000 {
        let (name, base) = &corpus[rng.below(corpus.len())];
        let mut b = base.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(b.len());
            match rng.below(6) {
                0 => b[at] = rng.next() as u8,
                1 => b[at] ^= 1 << rng.below(8),
                2 => b.truncate(at),
                3 => {
                    let n = rng.below(16);
                    let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                    b.splice(at..at, bytes);
                }
                4 => {
                    let end = (at + rng.below(64)).min(b.len());
                    let copy = b[at..end].to_vec();
                    b.splice(at..at, copy);
                }
                _ => {
                    if at + 4 <= b.len() {
                        b[at..at + 4].copy_from_slice(&(rng.next() as u32).to_le_bytes());
                    }
                }
            }
            if b.is_empty() {
                break;
            }
        }
        check(&b, &format!("mutation {i} of {name}"));
    }
}
