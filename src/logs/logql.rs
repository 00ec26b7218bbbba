//! Just enough LogQL for obsbox itself: checking a stream selector before it
//! goes into Loki's config, finding the terms a query's line filters look
//! for (so results can mark them), and wrapping a log query into the metric
//! query of the histogram. Everything else about a query is Loki's to judge.

use regex::Regex;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogqlError {
    #[error("a stream selector looks like {{name=\"value\", ...}}: {0}")]
    Selector(String),
    #[error("the string at character {0} is not closed")]
    Unclosed(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A string literal, unquoted.
    Str(String),
    /// Anything else: an operator, a bracket, a name.
    Other(String),
}

/// Splits a query into string literals (Go `"..."` with escapes, or raw
/// `` `...` ``) and the other tokens between them.
fn tokens(query: &str) -> Result<Vec<Token>, LogqlError> {
    let mut out = Vec::new();
    let mut chars = query.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' | '`' => {
                let mut text = String::new();
                loop {
                    match chars.next() {
                        None => return Err(LogqlError::Unclosed(at + 1)),
                        Some((_, q)) if q == c => break,
                        Some((_, '\\')) if c == '"' => match chars.next() {
                            Some((_, 'n')) => text.push('\n'),
                            Some((_, 't')) => text.push('\t'),
                            Some((_, e)) => text.push(e),
                            None => return Err(LogqlError::Unclosed(at + 1)),
                        },
                        Some((_, ch)) => text.push(ch),
                    }
                }
                out.push(Token::Str(text));
            }
            c if c.is_whitespace() => {}
            c if c.is_alphanumeric() || c == '_' => {
                let mut word = c.to_string();
                while let Some((_, n)) = chars.next_if(|(_, n)| n.is_alphanumeric() || *n == '_') {
                    word.push(n);
                }
                out.push(Token::Other(word));
            }
            c => {
                let mut op = c.to_string();
                if let Some((_, n)) = chars.next_if(|(_, n)| matches!(n, '=' | '~')) {
                    op.push(n);
                }
                out.push(Token::Other(op));
            }
        }
    }
    Ok(out)
}

/// Checks `{name op "value", ...}` with op one of `=`, `!=`, `=~`, `!~`,
/// and that it has a matcher that cannot match the empty value (Loki refuses
/// selectors that would match every stream).
pub fn parse_selector(selector: &str) -> Result<(), LogqlError> {
    let bad = |why: &str| Err(LogqlError::Selector(why.into()));
    let toks = tokens(selector)?;
    let other = |i: usize| match toks.get(i) {
        Some(Token::Other(s)) => Some(s.as_str()),
        _ => None,
    };
    if other(0) != Some("{") || toks.last() != Some(&Token::Other("}".into())) {
        return bad("it must start with { and end with }");
    }
    let mut i = 1;
    let mut selective = false;
    while i < toks.len() - 1 {
        let name = other(i).filter(|n| crate::settings::is_label_name(n));
        let op = other(i + 1).filter(|o| matches!(*o, "=" | "!=" | "=~" | "!~"));
        let (Some(_), Some(op), Some(Token::Str(value))) = (name, op, toks.get(i + 2)) else {
            return bad("each matcher is a label name, =, !=, =~ or !~, and a quoted value");
        };
        if op.ends_with('~') && Regex::new(value).is_err() {
            return bad(&format!("'{value}' is not a regular expression"));
        }
        selective |= match op {
            "=" => !value.is_empty(),
            "=~" => Regex::new(&format!("^(?:{value})$")).is_ok_and(|r| !r.is_match("")),
            _ => false,
        };
        i += 3;
        match other(i) {
            Some(",") => i += 1,
            Some("}") if i == toks.len() - 1 => {}
            _ => return bad("matchers are separated by commas"),
        }
    }
    if !selective {
        return bad("it needs a matcher that does not match an empty value, like app=\"web\"");
    }
    Ok(())
}

/// What a query's positive line filters look for, to mark in its results.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "text", rename_all = "lowercase")]
pub enum Term {
    /// `|= "text"`: the text itself.
    Contains(String),
    /// `|~ "re"`: a regular expression (RE2 syntax, as Loki's).
    Regex(String),
}

/// The terms of every `|=` and `|~` filter in `query`, in order. Strings
/// inside the selector or after other operators are not terms.
pub fn terms(query: &str) -> Vec<Term> {
    let Ok(toks) = tokens(query) else {
        return Vec::new();
    };
    toks.windows(2)
        .filter_map(|pair| match pair {
            [Token::Other(op), Token::Str(s)] if op == "|=" && !s.is_empty() => {
                Some(Term::Contains(s.clone()))
            }
            [Token::Other(op), Token::Str(s)] if op == "|~" && Regex::new(s).is_ok() => {
                Some(Term::Regex(s.clone()))
            }
            _ => None,
        })
        .collect()
}

/// A run of a line, marked when a term matched it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Part {
    pub text: String,
    pub mark: bool,
}

/// Splits `line` into marked and unmarked runs: where any term matches.
pub fn mark(line: &str, terms: &[Term]) -> Vec<Part> {
    let mut hit = vec![false; line.len()];
    for term in terms {
        let spans: Vec<(usize, usize)> = match term {
            Term::Contains(text) => line
                .match_indices(text.as_str())
                .map(|(at, m)| (at, at + m.len()))
                .collect(),
            Term::Regex(re) => Regex::new(re)
                .map(|r| r.find_iter(line).map(|m| (m.start(), m.end())).collect())
                .unwrap_or_default(),
        };
        for (from, to) in spans {
            hit[from..to].iter_mut().for_each(|h| *h = true);
        }
    }
    let mut parts: Vec<Part> = Vec::new();
    for (at, c) in line.char_indices() {
        let mark = hit[at];
        match parts.last_mut() {
            Some(last) if last.mark == mark => last.text.push(c),
            _ => parts.push(Part {
                text: c.to_string(),
                mark,
            }),
        }
    }
    parts
}

/// The histogram's query: matching lines counted per `step`, summed over
/// all streams. Works for any log query, pipeline stages included.
pub fn histogram(log_query: &str, step_seconds: u64) -> String {
    format!(
        "sum(count_over_time({} [{step_seconds}s]))",
        log_query.trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_checked() {
        for ok in [
            r#"{app="web"}"#,
            r#"{ app = "web" , env!="dev" }"#,
            r#"{host=~"nas.+"}"#,
            r#"{app="a", level!~"debug|trace"}"#,
        ] {
            assert_eq!(parse_selector(ok), Ok(()), "{ok}");
        }
        for bad in [
            r#"app="web""#,
            r#"{app="web""#,
            r#"{app=web}"#,
            r#"{app="web" env="x"}"#,
            r#"{app=~"("}"#,
            r#"{app=~".*"}"#,
            r#"{app!="x"}"#,
            r#"{}"#,
            r#"{1app="x"}"#,
            r#"{app="web"} |= "x""#,
            r#"{app="we"#,
        ] {
            assert!(parse_selector(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn terms_are_the_positive_line_filters_only() {
        let q = r#"{app="error"} |= "timeout" != "debug" |~ `code=5\d\d` |= "say \"hi\"" |~ "(" "#;
        assert_eq!(
            terms(q),
            vec![
                Term::Contains("timeout".into()),
                Term::Regex(r"code=5\d\d".into()),
                Term::Contains("say \"hi\"".into()),
            ]
        );
        assert_eq!(terms(r#"{app="x""#), vec![]);
    }

    #[test]
    fn marking_merges_overlapping_matches() {
        let terms = vec![Term::Contains("err".into()), Term::Regex("or\\b".into())];
        let parts = mark("an error, é err", &terms);
        let shown: Vec<(&str, bool)> = parts.iter().map(|p| (p.text.as_str(), p.mark)).collect();
        assert_eq!(
            shown,
            vec![
                ("an ", false),
                ("error", true),
                (", é ", false),
                ("err", true)
            ]
        );
        assert_eq!(mark("", &terms), vec![]);
        assert_eq!(
            mark("plain", &[]),
            vec![Part {
                text: "plain".into(),
                mark: false
            }]
        );
    }

    #[test]
    fn the_histogram_wraps_the_log_query() {
        assert_eq!(
            histogram(r#" {app="web"} |= "x" "#, 60),
            r#"sum(count_over_time({app="web"} |= "x" [60s]))"#
        );
    }
}
