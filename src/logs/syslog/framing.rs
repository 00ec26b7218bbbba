//! Syslog over a byte stream (TCP, TLS): RFC 6587's two framings, told
//! apart per message. A message starting with digits and a space is octet
//! counted (`LEN SP MSG`, RFC 5425's form too); anything else ends at `\n`.
//! Messages longer than the limit are cut to it and the rest skipped.

/// One message taken off the stream, borrowed from what was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub message: &'a [u8],
    /// The message was longer than the limit and was cut.
    pub truncated: bool,
}

/// What is left to skip of a message cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Skip {
    #[default]
    Nothing,
    /// This many more bytes of an octet-counted message.
    Bytes(usize),
    /// Up to and including the next `\n`.
    Line,
}

/// Takes messages off a growing buffer; keeps what it needs across reads.
#[derive(Debug)]
pub struct Framer {
    max: usize,
    skip: Skip,
}

/// The longest length prefix taken for octet counting (up to 999,999,999).
const MAX_LEN_DIGITS: usize = 9;

impl Framer {
    pub fn new(max_message_bytes: usize) -> Framer {
        Framer {
            max: max_message_bytes,
            skip: Skip::Nothing,
        }
    }

    /// Every whole message at the front of `buf`, and the bytes they (and
    /// any bytes skipped) take: the caller removes those once done with the
    /// frames, leaving an incomplete message for the next read.
    pub fn frames<'a>(&mut self, buf: &'a [u8]) -> (Vec<Frame<'a>>, usize) {
        let mut frames = Vec::new();
        let mut at = 0;
        loop {
            let (used, frame) = self.next(&buf[at..]);
            at += used;
            match frame {
                Some(frame) => frames.push(frame),
                None => break,
            }
        }
        (frames, at)
    }

    /// The next message at the front of `buf`: the bytes used (taken or
    /// skipped) and the message, or `None` when more input is needed.
    fn next<'a>(&mut self, buf: &'a [u8]) -> (usize, Option<Frame<'a>>) {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            match self.skip {
                Skip::Bytes(n) => {
                    let take = n.min(rest.len());
                    at += take;
                    if take < n {
                        self.skip = Skip::Bytes(n - take);
                        return (at, None);
                    }
                    self.skip = Skip::Nothing;
                }
                Skip::Line => match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        at += i + 1;
                        self.skip = Skip::Nothing;
                    }
                    None => return (buf.len(), None),
                },
                Skip::Nothing => {
                    let (used, frame) = self.frame(rest);
                    return (at + used, frame);
                }
            }
        }
    }

    fn frame<'a>(&mut self, buf: &'a [u8]) -> (usize, Option<Frame<'a>>) {
        // Blank lines between messages are framing, not messages.
        let blank = buf
            .iter()
            .take_while(|&&b| b == b'\n' || b == b'\r')
            .count();
        let buf = &buf[blank..];
        let done = |used: usize, message: &'a [u8], truncated: bool| {
            (blank + used, Some(Frame { message, truncated }))
        };
        if buf.is_empty() {
            return (blank, None);
        }
        let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 && digits <= MAX_LEN_DIGITS && buf[0] != b'0' {
            match buf.get(digits) {
                // Cannot tell yet whether this is a length.
                None => return (blank, None),
                Some(b' ') => {
                    let len: usize = std::str::from_utf8(&buf[..digits])
                        .ok()
                        .and_then(|d| d.parse().ok())
                        .unwrap_or(0);
                    let start = digits + 1;
                    let keep = len.min(self.max);
                    if buf.len() < start + keep {
                        return (blank, None);
                    }
                    if len > keep {
                        self.skip = Skip::Bytes(len - keep);
                    }
                    return done(start + keep, &buf[start..start + keep], len > keep);
                }
                Some(_) => {}
            }
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) => {
                let keep = end.min(self.max);
                let message = &buf[..keep];
                let message = message.strip_suffix(b"\r").unwrap_or(message);
                done(end + 1, message, end > keep)
            }
            None if buf.len() > self.max => {
                self.skip = Skip::Line;
                done(buf.len(), &buf[..self.max], true)
            }
            None => (blank, None),
        }
    }

    /// At the end of the stream: what is left in `buf` is a last message
    /// without its `\n`.
    pub fn finish<'a>(&mut self, rest: &'a [u8]) -> Option<Frame<'a>> {
        if self.skip != Skip::Nothing || rest.iter().all(|b| b.is_ascii_whitespace()) {
            return None;
        }
        Some(Frame {
            truncated: rest.len() > self.max,
            message: &rest[..rest.len().min(self.max)],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes and collects the frames.
    fn frames(input: &[u8], step: usize, max: usize) -> Vec<(String, bool)> {
        let mut framer = Framer::new(max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            let (found, used) = framer.frames(&buf);
            for f in found {
                out.push((String::from_utf8_lossy(f.message).into_owned(), f.truncated));
            }
            buf.drain(..used);
        }
        if let Some(f) = framer.finish(&buf) {
            out.push((String::from_utf8_lossy(f.message).into_owned(), f.truncated));
        }
        out
    }

    fn whole(messages: &[&str]) -> Vec<(String, bool)> {
        messages.iter().map(|m| (m.to_string(), false)).collect()
    }

    #[test]
    fn both_framings_mixed_in_one_stream_at_any_read_size() {
        let input = b"<13>one\n10 <13>two\nxx\r\n<13>three\n\n5 <1>ab<13>five\nsix";
        for step in [1, 2, 3, 7, 100] {
            assert_eq!(
                frames(input, step, 1024),
                whole(&[
                    "<13>one",
                    "<13>two\nxx",
                    "<13>three",
                    "<1>ab",
                    "<13>five",
                    "six"
                ]),
                "read {step} bytes at a time"
            );
        }
    }

    #[test]
    fn long_messages_are_cut_and_the_rest_skipped() {
        let input = b"20 <13>abcdefghijklmnop<13>next\n<13>a long line here\n<13>ok\n";
        for step in [1, 4, 100] {
            assert_eq!(
                frames(input, step, 6),
                vec![
                    ("<13>ab".to_string(), true),
                    ("<13>ne".to_string(), true),
                    ("<13>a ".to_string(), true),
                    ("<13>ok".to_string(), false),
                ],
                "read {step} bytes at a time"
            );
        }
    }

    #[test]
    fn a_leading_zero_or_long_number_is_not_a_length() {
        assert_eq!(
            frames(b"0 x\n1234567890 y\n", 100, 100),
            whole(&["0 x", "1234567890 y"])
        );
    }

    #[test]
    fn binary_passes_through() {
        let buf = b"<13>\x00\xff\x01\n";
        let (frames, used) = Framer::new(100).frames(buf);
        assert_eq!(frames[0].message, b"<13>\x00\xff\x01");
        assert_eq!(used, buf.len());
    }
}
