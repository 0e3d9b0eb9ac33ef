//! [`Framer`]: cuts a P1 byte stream into telegrams with a bounded buffer.
//!
//! Bytes before a `/` are skipped (and counted); a telegram runs from `/` through `!` and the
//! four CRC digits. A `/` before the `!` means the telegram being read was cut off (reported as
//! [`P1Error::Truncated`], and the new one starts); a telegram over
//! [`MAX_TELEGRAM_LEN`] is reported and dropped; neither ever grows the buffer past the limit.

use super::error::P1Error;
use super::telegram::{parse_telegram, Telegram, MAX_TELEGRAM_LEN};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for `/`.
    Hunting,
    /// Inside a telegram, before `!`.
    Body,
    /// After `!`: this many CRC characters seen.
    Crc(u8),
    /// An over-long telegram: skip until the next `/`.
    Discard,
}

/// Streaming telegram framer (see the module doc).
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    state: State,
    skipped: u64,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new()
    }
}

impl Framer {
    /// An empty framer.
    #[must_use]
    pub fn new() -> Self {
        Self { buf: Vec::with_capacity(2048), state: State::Hunting, skipped: 0 }
    }

    /// Bytes skipped outside telegrams so far (garbage between telegrams, discarded tails).
    #[must_use]
    pub const fn skipped_bytes(&self) -> u64 {
        self.skipped
    }

    /// Forget a partial telegram (after the link was lost: its tail will never come).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.state = State::Hunting;
    }

    /// Feed bytes; `out` receives every complete telegram (parsed) or framing error, in order.
    pub fn feed(&mut self, bytes: &[u8], mut out: impl FnMut(Result<Telegram, P1Error>)) {
        for &b in bytes {
            if let Some(r) = self.byte(b) {
                out(r);
            }
        }
    }

    fn byte(&mut self, b: u8) -> Option<Result<Telegram, P1Error>> {
        match (self.state, b) {
            (State::Hunting | State::Discard, b'/') => {
                self.start();
                None
            }
            // Line ends after a CRC are part of the frame, not garbage.
            (State::Hunting, b'\r' | b'\n') => None,
            (State::Hunting | State::Discard, _) => {
                self.skipped = self.skipped.saturating_add(1);
                None
            }
            (State::Body, b'/') => {
                let len = self.buf.len();
                self.start();
                Some(Err(P1Error::Truncated { len }))
            }
            (State::Body, _) => {
                self.buf.push(b);
                if b == b'!' {
                    self.state = State::Crc(0);
                }
                self.check_len()
            }
            (State::Crc(n), _) if b.is_ascii_hexdigit() && n < 4 => {
                self.buf.push(b);
                if n == 3 {
                    return Some(self.finish());
                }
                self.state = State::Crc(n + 1);
                None
            }
            // A non-hex byte after `!`: no (or a short) CRC; let the parser name the problem.
            (State::Crc(_), _) => {
                let r = self.finish();
                if b == b'/' {
                    self.start();
                } else if b != b'\r' && b != b'\n' {
                    self.skipped = self.skipped.saturating_add(1);
                }
                Some(r)
            }
        }
    }

    fn start(&mut self) {
        self.buf.clear();
        self.buf.push(b'/');
        self.state = State::Body;
    }

    fn check_len(&mut self) -> Option<Result<Telegram, P1Error>> {
        if self.buf.len() >= MAX_TELEGRAM_LEN {
            let len = self.buf.len();
            self.skipped = self.skipped.saturating_add(u64::try_from(len).unwrap_or(u64::MAX));
            self.buf.clear();
            self.state = State::Discard;
            return Some(Err(P1Error::TooLong { len, max: MAX_TELEGRAM_LEN }));
        }
        None
    }

    fn finish(&mut self) -> Result<Telegram, P1Error> {
        let r = parse_telegram(&self.buf);
        self.buf.clear();
        self.state = State::Hunting;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p1::crc::crc16_arc;

    fn sealed(body: &str) -> String {
        format!("{body}{:04X}\r\n", crc16_arc(body.as_bytes()))
    }

    fn run(f: &mut Framer, s: &[u8]) -> Vec<Result<Telegram, P1Error>> {
        let mut v = Vec::new();
        f.feed(s, |r| v.push(r));
        v
    }

    #[test]
    fn garbage_truncation_and_byte_by_byte() {
        let good = sealed("/XMX5TEST\r\n\r\n1-0:1.7.0(00.100*kW)\r\n1-0:2.7.0(00.000*kW)\r\n!");
        let stream = format!("noise\r\n{good}/XMX5CUT\r\n1-0:1.7\r\n{good}");
        let mut f = Framer::new();
        let mut all = Vec::new();
        for b in stream.as_bytes() {
            all.extend(run(&mut f, &[*b]));
        }
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all[0].is_ok());
        assert!(matches!(all[1], Err(P1Error::Truncated { .. })));
        assert!(all[2].is_ok());
        assert_eq!(f.skipped_bytes(), 5, "\"noise\" (line ends are not counted)");
    }

    #[test]
    fn an_endless_telegram_is_bounded() {
        let mut f = Framer::new();
        let mut big = vec![b'/'];
        big.extend(std::iter::repeat_n(b'A', 3 * MAX_TELEGRAM_LEN));
        let r = run(&mut f, &big);
        assert_eq!(r.len(), 1);
        assert!(matches!(r[0], Err(P1Error::TooLong { .. })));
        assert!(f.buf.capacity() <= MAX_TELEGRAM_LEN * 2);
        let good = sealed("/XMX5TEST\r\n\r\n1-0:1.7.0(00.100*kW)\r\n1-0:2.7.0(00.000*kW)\r\n!");
        let r = run(&mut f, good.as_bytes());
        assert!(matches!(r.as_slice(), [Ok(_)]), "{r:?}");
    }
}
