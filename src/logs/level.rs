//! The severity a log line states about itself, in the styles the box's
//! children and common programs write: logfmt (`level=warn`, log15's
//! `lvl=eror`), JSON (`"level":"error"`), klog (`E1206 12:00:00 ...`), and a
//! bare or bracketed word near the start (`[ERROR]`, tracing's `  WARN`).

/// The five levels every style is normalised to (the `level` label's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

impl Level {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Critical => "critical",
        }
    }
}

/// Keys that carry the level in logfmt and JSON lines.
const KEYS: &[&str] = &["level", "lvl", "severity", "loglevel"];
/// How many leading words may hold a bare level word (`2026-... INFO target: msg`).
const LEADING_WORDS: usize = 4;

/// The level `line` states, if it states one.
pub(crate) fn detect(line: &str) -> Option<Level> {
    keyed(line)
        .or_else(|| klog(line))
        .or_else(|| leading_word(line))
}

/// A level name or abbreviation, in any case.
fn normalise(word: &str) -> Option<Level> {
    let level = match word.to_ascii_lowercase().as_str() {
        "trace" | "trce" | "debug" | "dbug" | "dbg" => Level::Debug,
        "info" | "inf" | "information" | "informational" | "notice" => Level::Info,
        "warn" | "warning" | "wrn" => Level::Warn,
        "error" | "eror" | "err" => Level::Error,
        "crit" | "critical" | "fatal" | "panic" | "dpanic" | "alert" | "emerg" | "emergency" => {
            Level::Critical
        }
        _ => return None,
    };
    Some(level)
}

/// `level=warn`, `level="warn"`, `"level":"warn"`, `"level": "warn"`.
fn keyed(line: &str) -> Option<Level> {
    for key in KEYS {
        let mut from = 0;
        while let Some(found) = line[from..].find(key) {
            let start = from + found;
            from = start + key.len();
            let before = line[..start].chars().next_back();
            let quoted_key = before == Some('"');
            // The key must be a whole word: `xlevel=` and `level_x=` are other keys.
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let mut rest = &line[from..];
            if quoted_key {
                let after_colon = rest
                    .strip_prefix('"')
                    .and_then(|r| r.trim_start().strip_prefix(':'));
                let Some(r) = after_colon else {
                    continue;
                };
                rest = r.trim_start();
            } else if let Some(r) = rest.strip_prefix('=') {
                rest = r;
            } else {
                continue;
            }
            let value = rest
                .trim_start_matches('"')
                .split(|c: char| !c.is_ascii_alphabetic())
                .next()
                .unwrap_or("");
            if let Some(level) = normalise(value) {
                return Some(level);
            }
        }
    }
    None
}

/// Kubernetes' klog header: a level letter, then `MMDD hh:mm:ss`.
fn klog(line: &str) -> Option<Level> {
    let b = line.as_bytes();
    let header = b.len() >= 6
        && b[1..5].iter().all(u8::is_ascii_digit)
        && b[5] == b' '
        && b.get(6).is_some_and(u8::is_ascii_digit);
    if !header {
        return None;
    }
    match b[0] {
        b'I' => Some(Level::Info),
        b'W' => Some(Level::Warn),
        b'E' => Some(Level::Error),
        b'F' => Some(Level::Critical),
        _ => None,
    }
}

/// An upper-case level word among the first words, bare or in brackets.
/// Lower-case words are left alone: "error" in a sentence states nothing.
fn leading_word(line: &str) -> Option<Level> {
    line.split_whitespace()
        .take(LEADING_WORDS)
        .map(|w| w.trim_matches(|c: char| matches!(c, '[' | ']' | '<' | '>' | ':' | '(' | ')')))
        .filter(|w| w.len() >= 3 && w.chars().all(|c| c.is_ascii_uppercase()))
        .find_map(normalise)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_style_is_normalised() {
        let cases: &[(&str, Option<Level>)] = &[
            // go-kit logfmt (Prometheus, Loki, Alertmanager)
            (
                r#"level=warn ts=2026-12-06T10:00:00Z caller=main.go:1 msg="x""#,
                Some(Level::Warn),
            ),
            (
                r#"ts=2026-12-06T10:00:00Z caller=x.go:1 level=error msg=boom"#,
                Some(Level::Error),
            ),
            (r#"level="debug" msg=x"#, Some(Level::Debug)),
            // Grafana's log15 logfmt
            (
                r#"logger=server t=2026-12-06T10:00:00Z lvl=eror msg="failed""#,
                Some(Level::Error),
            ),
            (r#"t=2026 lvl=crit msg=x"#, Some(Level::Critical)),
            (r#"t=2026 lvl=dbug msg=x"#, Some(Level::Debug)),
            (r#"t=2026 lvl=info msg=x"#, Some(Level::Info)),
            // JSON
            (r#"{"level":"error","msg":"x"}"#, Some(Level::Error)),
            (
                r#"{"ts":1, "level": "WARNING", "msg":"x"}"#,
                Some(Level::Warn),
            ),
            (r#"{"severity":"fatal"}"#, Some(Level::Critical)),
            (r#"{"lvl":"info"}"#, Some(Level::Info)),
            // klog
            (
                "E1206 12:00:00.000000    1 main.go:10] boom",
                Some(Level::Error),
            ),
            ("W1206 12:00:00.000000 x", Some(Level::Warn)),
            ("I0101 00:00:00.1 x", Some(Level::Info)),
            ("F1206 12:00:00 x", Some(Level::Critical)),
            // bracketed and bare words (tracing, Java, Python)
            ("[ERROR] cannot open file", Some(Level::Error)),
            (
                "2026-12-06T10:00:00.123Z  WARN obsbox::app: slow",
                Some(Level::Warn),
            ),
            (
                "2026-12-06 10:00:00,123 INFO main: started",
                Some(Level::Info),
            ),
            ("2026/12/06 10:00:00 [CRIT] disk", Some(Level::Critical)),
            ("<NOTICE> hello", Some(Level::Info)),
            ("PANIC: out of memory", Some(Level::Critical)),
            // nothing stated
            ("", None),
            ("0 errors found", None),
            ("an error happened in the error handler", None),
            ("the log level is configurable", None),
            ("xlevel=error msg=x", None),
            ("level_name=error", None),
            ("level=verbose", None),
            ("E12 not klog", None),
            ("one two three four ERROR five", None),
        ];
        for (line, expected) in cases {
            assert_eq!(detect(line), *expected, "{line:?}");
        }
    }

    #[test]
    fn a_later_key_is_found_after_a_false_start() {
        assert_eq!(
            detect(r#"msg="level unknown" level=info"#),
            Some(Level::Info)
        );
        assert_eq!(Level::Critical.as_str(), "critical");
    }
}
