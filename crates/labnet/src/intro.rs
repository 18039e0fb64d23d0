//! The threading/asyncio lab: an intro line, then one length-prefixed long message.
//!
//! Wire format, byte for byte as the lab's Python programs speak it:
//! 1. on accept the server sends one intro line ending in `\n`;
//! 2. the client sends the message length in bytes as exactly 8 hex digits (lowercase
//!    from our client), then the message (UTF-8);
//! 3. the server reads the message in small chunks, logs it and closes the connection.
//!    The lab's threaded server closes only implicitly (Python closes a socket when its
//!    last reference goes), so its last connection may stay open until the next accept;
//!    the lab's client does not wait for the close, and `load` only waits a grace period.
//!
//! `intro-server` is the server (one task per connection, like the lab's thread per
//! connection); `load` is the lab's load test: N clients at once, with the counts and
//! latencies the lab otherwise digs out of a packet capture.

mod load;
mod server;

pub use load::{LoadArgs, run_load};
pub use server::{IntroServerArgs, run_intro_server};

/// The lab's port.
const DEFAULT_PORT: u16 = 8080;

/// The length prefix is always this many hex digits.
const LEN_DIGITS: usize = 8;

/// The length prefix for a message of `len` bytes: 8 lowercase hex digits, or `None` if
/// the length does not fit (more than 4 GiB).
fn encode_len(len: usize) -> Option<[u8; LEN_DIGITS]> {
    let len = u32::try_from(len).ok()?;
    let mut out = [0u8; LEN_DIGITS];
    out.copy_from_slice(format!("{len:08x}").as_bytes());
    Some(out)
}

/// Parses a received length prefix. Our client sends lowercase, but uppercase digits are
/// accepted too, because the Python server's `int(digits, 16)` accepts them and a lab
/// client written that way must keep working. Anything else (signs, spaces, `0x`, `_`,
/// which `int()` would also tolerate) is refused: the lab format is exactly 8 digits.
fn parse_len(digits: &[u8; LEN_DIGITS]) -> Result<u32, String> {
    let invalid = || {
        format!(
            "invalid length prefix \"{}\" (want 8 hex digits)",
            digits.escape_ascii()
        )
    };
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(invalid());
    }
    let text = std::str::from_utf8(digits).map_err(|_| invalid())?;
    u32::from_str_radix(text, 16).map_err(|_| invalid())
}

/// The message client `i` sends in the lab:
/// `"This is a very long message" * 100 + " AND I AM CLIENT <i as 8 digits>"`.
fn lab_message(i: usize) -> String {
    let mut msg = "This is a very long message".repeat(100);
    msg.push_str(&format!(" AND I AM CLIENT {i:08}"));
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefix_is_eight_lowercase_hex_digits() {
        assert_eq!(&encode_len(0).unwrap(), b"00000000");
        assert_eq!(&encode_len(2724).unwrap(), b"00000aa4");
        assert_eq!(&encode_len(u32::MAX as usize).unwrap(), b"ffffffff");
        assert_eq!(encode_len(u32::MAX as usize + 1), None);
    }

    #[test]
    fn parse_accepts_hex_digits_of_either_case_only() {
        assert_eq!(parse_len(b"00000aa4"), Ok(2724));
        assert_eq!(parse_len(b"00000AA4"), Ok(2724));
        assert_eq!(parse_len(b"ffffffff"), Ok(u32::MAX));
        for bad in [
            b"0000 aa4",
            b"+0000aa4",
            b"0x000aa4",
            b"0000_aa4",
            b"0000zzzz",
        ] {
            let err = parse_len(bad).unwrap_err();
            assert!(err.contains("invalid length prefix"), "{err}");
        }
    }

    #[test]
    fn lab_message_matches_the_python_expression() {
        let msg = lab_message(7);
        assert_eq!(msg.len(), 27 * 100 + " AND I AM CLIENT 00000007".len());
        assert!(msg.starts_with("This is a very long messageThis is"));
        assert!(msg.ends_with("message AND I AM CLIENT 00000007"));
    }
}
