//! Syslog messages to labels and a line: RFC 5424, RFC 3164 (BSD) in its
//! common variants, and anything else kept whole as a malformed raw line.
//! Pure functions: bytes in, a [`Message`] out; nothing here can fail.

use std::borrow::Cow;

/// What one syslog message carries that obsbox keeps, borrowed from its
/// bytes where it can be (one message arrives per line, at high rates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub format: Format,
    pub facility: Option<u8>,
    pub severity: Option<u8>,
    /// HOSTNAME, when the message has one.
    pub hostname: Option<&'a str>,
    /// APP-NAME (5424) or the TAG (3164).
    pub app: Option<&'a str>,
    /// The line kept: MSG, after the structured data when there is any; the
    /// whole input for a malformed message.
    pub line: Cow<'a, str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Rfc5424,
    Rfc3164,
    /// Not syslog as either RFC has it: kept as it came.
    Malformed,
}

const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

pub fn facility_name(code: u8) -> &'static str {
    FACILITIES.get(code as usize).copied().unwrap_or("unknown")
}

pub fn severity_name(code: u8) -> &'static str {
    SEVERITIES.get(code as usize).copied().unwrap_or("unknown")
}

/// Text from bytes: valid UTF-8 as it is, each invalid byte as `\xNN`, so
/// binary input survives readably instead of being replaced or refused.
pub fn text(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(valid) = std::str::from_utf8(bytes) {
        return Cow::Borrowed(valid);
    }
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    Cow::Owned(out)
}

/// Parses one message (its framing already removed).
pub fn parse(input: &[u8]) -> Message<'_> {
    let input = input.strip_suffix(b"\n").unwrap_or(input);
    let input = input.strip_suffix(b"\r").unwrap_or(input);
    let Some((pri, rest)) = priority(input) else {
        return malformed(input);
    };
    let (facility, severity) = (pri / 8, pri % 8);
    let message = match rest.strip_prefix(b"1 ") {
        Some(header) => rfc5424(header),
        None => Some(rfc3164(rest)),
    };
    match message {
        Some(mut m) => {
            m.facility = Some(facility);
            m.severity = Some(severity);
            m
        }
        None => malformed(input),
    }
}

fn malformed(input: &[u8]) -> Message<'_> {
    Message {
        format: Format::Malformed,
        facility: None,
        severity: None,
        hostname: None,
        app: None,
        line: text(input),
    }
}

/// `<PRI>`: 1-3 digits, 0-191, no leading zero but `<0>`.
fn priority(input: &[u8]) -> Option<(u8, &[u8])> {
    let rest = input.strip_prefix(b"<")?;
    let end = rest.iter().take(4).position(|&b| b == b'>')?;
    let digits = &rest[..end];
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let pri: u16 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (pri <= 191).then_some((pri as u8, &rest[end + 1..]))
}

/// Splits off one space-terminated header field (the rest may be empty
/// when the field ends the input).
fn field(input: &[u8]) -> Option<(&[u8], &[u8])> {
    match input.iter().position(|&b| b == b' ') {
        Some(i) if i > 0 => Some((&input[..i], &input[i + 1..])),
        None if !input.is_empty() => Some((input, &[])),
        _ => None,
    }
}

/// A header field as text: `-` is NILVALUE; printable ASCII only, at most `max`.
fn header_value(value: &[u8], max: usize) -> Option<Option<&str>> {
    if value.len() > max || !value.iter().all(|b| (33..=126).contains(b)) {
        return None;
    }
    // Printable ASCII, so always UTF-8.
    let text = std::str::from_utf8(value).ok()?;
    Some((text != "-").then_some(text))
}

/// `VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]`,
/// after `1 `.
fn rfc5424(input: &[u8]) -> Option<Message<'_>> {
    let (timestamp, rest) = field(input)?;
    if timestamp != b"-" {
        let text = std::str::from_utf8(timestamp).ok()?;
        text.parse::<jiff::Timestamp>().ok()?;
    }
    let (hostname, rest) = field(rest)?;
    let hostname = header_value(hostname, 255)?;
    let (app, rest) = field(rest)?;
    let app = header_value(app, 48)?;
    let (procid, rest) = field(rest)?;
    header_value(procid, 128)?;
    let (msgid, rest) = field(rest)?;
    header_value(msgid, 32)?;
    let sd_len = structured_data(rest)?;
    let (sd, msg) = rest.split_at(sd_len);
    let msg = match msg {
        [] => &[][..],
        [b' ', msg @ ..] => msg,
        _ => return None,
    };
    let msg = msg.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(msg);
    let line = match sd {
        b"-" => text(msg),
        sd if msg.is_empty() => text(sd),
        sd => Cow::Owned(format!("{} {}", text(sd), text(msg))),
    };
    Some(Message {
        format: Format::Rfc5424,
        facility: None,
        severity: None,
        hostname,
        app,
        line,
    })
}

/// The length of STRUCTURED-DATA at the start of `input`: `-`, or one or
/// more `[SD-ID *(SP PARAM="VALUE")]` with `\"`, `\\` and `\]` escaped in values.
fn structured_data(input: &[u8]) -> Option<usize> {
    if input.first() == Some(&b'-') {
        return Some(1);
    }
    let mut i = 0;
    while input.get(i) == Some(&b'[') {
        i += 1;
        let mut quoted = false;
        loop {
            match (*input.get(i)?, quoted) {
                (b'\\', true) => i += 1,
                (b'"', q) => quoted = !q,
                (b']', false) => break,
                (b'=' | b' ', false) => {}
                (b, false) if !(33..=126).contains(&b) => return None,
                _ => {}
            }
            i += 1;
        }
        i += 1;
    }
    (i > 0).then_some(i)
}

/// BSD syslog after `<PRI>`: an optional timestamp (`Mmm dd hh:mm:ss`, the
/// same with a year, or RFC 3339), an optional HOSTNAME, a TAG ending in
/// `:` or `[pid]:`, and the content. Whatever of it is missing is simply
/// not labelled: any text after a valid PRI is a message.
fn rfc3164(input: &[u8]) -> Message<'_> {
    // Without a timestamp there is no HEADER, so no HOSTNAME either.
    let (hostname, rest) = match skip_timestamp(input) {
        None => (None, input),
        Some(rest) => match field(rest) {
            Some((word, after)) if !is_tag(word) && rest.len() > word.len() => {
                match header_value(word, 255) {
                    Some(Some(host)) => (Some(host), after),
                    _ => (None, rest),
                }
            }
            _ => (None, rest),
        },
    };
    let (app, content) = tag(rest);
    Message {
        format: Format::Rfc3164,
        facility: None,
        severity: None,
        hostname,
        app,
        line: text(content),
    }
}

const MONTHS: [&[u8]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `input` after its timestamp and the space that ends it, if it has one.
fn skip_timestamp(input: &[u8]) -> Option<&[u8]> {
    // `Mmm dd hh:mm:ss ` (day space-padded), maybe followed by a year.
    if input.len() >= 16
        && MONTHS.contains(&&input[..3])
        && input[3] == b' '
        && (input[4] == b' ' || input[4].is_ascii_digit())
        && input[5].is_ascii_digit()
        && input[6] == b' '
        && is_clock(&input[7..15])
        && input[15] == b' '
    {
        let rest = &input[16..];
        return match field(rest) {
            Some((year, after))
                if year.len() == 4 && year.iter().all(u8::is_ascii_digit) && !after.is_empty() =>
            {
                Some(after)
            }
            _ => Some(rest),
        };
    }
    // RFC 3339, as rsyslog and syslog-ng send it in "BSD" format when asked.
    if let Some((word, rest)) = field(input) {
        if word.len() >= 19 && word[4] == b'-' && word[10] == b'T' {
            if let Ok(text) = std::str::from_utf8(word) {
                if text.parse::<jiff::Timestamp>().is_ok()
                    || text.parse::<jiff::civil::DateTime>().is_ok()
                {
                    return Some(rest);
                }
            }
        }
    }
    None
}

fn is_clock(s: &[u8]) -> bool {
    s.len() == 8
        && s[2] == b':'
        && s[5] == b':'
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| s[i].is_ascii_digit())
}

/// Whether `word` reads as a TAG (`app:` or `app[pid]:`) rather than a host.
fn is_tag(word: &[u8]) -> bool {
    word.ends_with(b":") || word.contains(&b'[')
}

/// The TAG (up to 48 characters of letters, digits, `-_./`) and the content.
fn tag(input: &[u8]) -> (Option<&str>, &[u8]) {
    let end = input
        .iter()
        .take(49)
        .position(|b| !(b.is_ascii_alphanumeric() || b"-_./".contains(b)));
    let Some(end) = end.filter(|&e| e > 0) else {
        return (None, input);
    };
    // ASCII, so always UTF-8.
    let Ok(name) = std::str::from_utf8(&input[..end]) else {
        return (None, input);
    };
    let after = &input[end..];
    let after = match after.first() {
        Some(b'[') => match after.iter().position(|&b| b == b']') {
            Some(close) => &after[close + 1..],
            None => return (None, input),
        },
        _ => after,
    };
    match after.strip_prefix(b":") {
        Some(content) => (Some(name), content.strip_prefix(b" ").unwrap_or(content)),
        None => (None, input),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        input: &'static [u8],
        format: Format,
        pri: Option<(u8, u8)>,
        host: Option<&'static str>,
        app: Option<&'static str>,
        line: &'static str,
    }

    const fn case(
        input: &'static [u8],
        format: Format,
        pri: Option<(u8, u8)>,
        host: Option<&'static str>,
        app: Option<&'static str>,
        line: &'static str,
    ) -> Case {
        Case {
            input,
            format,
            pri,
            host,
            app,
            line,
        }
    }

    use Format::*;

    const CASES: &[Case] = &[
        // RFC 5424's own examples.
        case(
            b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8",
            Rfc5424, Some((4, 2)), Some("mymachine.example.com"), Some("su"),
            "'su root' failed for lonvick on /dev/pts/8",
        ),
        case(
            b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
            Rfc5424, Some((20, 5)), Some("192.0.2.1"), Some("myproc"),
            "%% It's time to make the do-nuts.",
        ),
        case(
            b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \xEF\xBB\xBFAn application event log entry...",
            Rfc5424, Some((20, 5)), Some("mymachine.example.com"), Some("evntslog"),
            "[exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] An application event log entry...",
        ),
        // Structured data only, two elements, an escaped bracket and quote.
        case(
            b"<165>1 2003-10-11T22:14:15.003Z host app - - [a@1 x=\"q\\]\\\"\"][b@2 y=\"1\"]",
            Rfc5424, Some((20, 5)), Some("host"), Some("app"),
            "[a@1 x=\"q\\]\\\"\"][b@2 y=\"1\"]",
        ),
        // Every header field NILVALUE, no MSG.
        case(b"<0>1 - - - - - -", Rfc5424, Some((0, 0)), None, None, ""),
        // As util-linux `logger --rfc5424` sends it.
        case(
            b"<13>1 2026-12-07T00:10:00.123456+00:00 box1 alice - - [timeQuality tzKnown=\"1\" isSynced=\"0\"] hello",
            Rfc5424, Some((1, 5)), Some("box1"), Some("alice"),
            "[timeQuality tzKnown=\"1\" isSynced=\"0\"] hello",
        ),
        // Broken 5424 headers: kept whole, malformed.
        case(b"<13>1 yesterday host app - - - hi", Malformed, None, None, None, "<13>1 yesterday host app - - - hi"),
        case(b"<13>1 - host app - - [unclosed hi", Malformed, None, None, None, "<13>1 - host app - - [unclosed hi"),
        case(b"<13>1 - host", Malformed, None, None, None, "<13>1 - host"),
        // RFC 3164's examples and common variants.
        case(
            b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
            Rfc3164, Some((4, 2)), Some("mymachine"), Some("su"),
            "'su root' failed for lonvick on /dev/pts/8",
        ),
        case(
            b"<13>Feb  5 17:32:18 10.0.0.99 sshd[4242]: Accepted publickey",
            Rfc3164, Some((1, 5)), Some("10.0.0.99"), Some("sshd"), "Accepted publickey",
        ),
        // With a year after the time (some network gear).
        case(
            b"<13>Feb  5 17:32:18 2026 router1 kernel: link up",
            Rfc3164, Some((1, 5)), Some("router1"), Some("kernel"), "link up",
        ),
        // No hostname (as a local socket message is relayed).
        case(
            b"<30>Feb  5 17:32:18 cron[99]: job done",
            Rfc3164, Some((3, 6)), None, Some("cron"), "job done",
        ),
        // An RFC 3339 timestamp in BSD format.
        case(
            b"<14>2026-12-07T00:10:00.5+01:00 nas smartd: ok",
            Rfc3164, Some((1, 6)), Some("nas"), Some("smartd"), "ok",
        ),
        // No timestamp, no tag: the content is everything after PRI.
        case(b"<13>just some text", Rfc3164, Some((1, 5)), None, None, "just some text"),
        case(b"<191>", Rfc3164, Some((23, 7)), None, None, ""),
        // Invalid PRI: kept whole.
        case(b"<192>Oct 11 22:14:15 h a: x", Malformed, None, None, None, "<192>Oct 11 22:14:15 h a: x"),
        case(b"<013>x", Malformed, None, None, None, "<013>x"),
        case(b"<>x", Malformed, None, None, None, "<>x"),
        case(b"no priority at all", Malformed, None, None, None, "no priority at all"),
        case(b"", Malformed, None, None, None, ""),
        // Binary: invalid UTF-8 shown as \xNN, NUL kept.
        case(b"\xff\x00\xfe<1>", Malformed, None, None, None, "\\xff\u{0}\\xfe<1>"),
        case(b"<13>Feb  5 17:32:18 h a: \xc3\x28", Rfc3164, Some((1, 5)), Some("h"), Some("a"), "\\xc3("),
        // A trailing CR LF is framing, not content.
        case(b"<13>Feb  5 17:32:18 h a: x\r\n", Rfc3164, Some((1, 5)), Some("h"), Some("a"), "x"),
    ];

    #[test]
    fn messages_parse_as_expected() {
        for c in CASES {
            let m = parse(c.input);
            let what = String::from_utf8_lossy(c.input);
            assert_eq!(m.format, c.format, "{what}");
            assert_eq!(
                m.facility.zip(m.severity),
                c.pri,
                "facility, severity of {what}"
            );
            assert_eq!(m.hostname, c.host, "host of {what}");
            assert_eq!(m.app, c.app, "app of {what}");
            assert_eq!(m.line, c.line, "line of {what}");
        }
    }

    #[test]
    fn codes_have_names() {
        assert_eq!(facility_name(4), "auth");
        assert_eq!(facility_name(23), "local7");
        assert_eq!(severity_name(3), "err");
        assert_eq!(severity_name(9), "unknown");
    }

    #[test]
    fn any_bytes_parse_without_panicking() {
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet = b"<>0123456789 1-[]\"\\=:abcTZ.\xff\n";
        for _ in 0..20_000 {
            let len = rng.usize(0..40);
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.usize(0..alphabet.len())])
                .collect();
            parse(&input);
        }
    }
}
