//! The subset of LogQL the stand-in evaluates, written from Loki's LogQL
//! documentation: stream selectors (`=`, `!=`, `=~`, `!~`), line filters
//! (`|=`, `!=`, `|~`, `!~`), the range aggregations `count_over_time`,
//! `rate` and `bytes_over_time`, optionally wrapped in `sum`/`count`/`max`/
//! `min` with `by (...)` or `without (...)`. Anything else is a parse error
//! worded like Loki's (`parse error at line 1, col N: ...`).

use regex::Regex;
use std::collections::BTreeMap;

/// A label matcher of a stream selector.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// Anchored regex for `=~` / `!~` (Prometheus anchors matchers).
    regex: Option<Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Neq,
    Re,
    Nre,
}

impl Matcher {
    /// Whether a stream's labels pass this matcher (a missing label is "").
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Neq => v != self.value,
            MatchOp::Re => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::Nre => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    /// Whether the empty value passes: Loki refuses selectors made only of those.
    fn matches_empty(&self) -> bool {
        self.matches(&BTreeMap::new())
    }
}

/// A line filter.
#[derive(Debug, Clone)]
pub enum LineFilter {
    Contains(String),
    NotContains(String),
    Matches(Regex),
    NotMatches(Regex),
}

impl LineFilter {
    pub fn keeps(&self, line: &str) -> bool {
        match self {
            LineFilter::Contains(s) => line.contains(s.as_str()),
            LineFilter::NotContains(s) => !line.contains(s.as_str()),
            LineFilter::Matches(r) => r.is_match(line),
            LineFilter::NotMatches(r) => !r.is_match(line),
        }
    }
}

/// `{selector} |= "..." ...`
#[derive(Debug, Clone)]
pub struct LogQuery {
    pub matchers: Vec<Matcher>,
    pub filters: Vec<LineFilter>,
}

impl LogQuery {
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }

    pub fn keeps(&self, line: &str) -> bool {
        self.filters.iter().all(|f| f.keeps(line))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeFn {
    CountOverTime,
    Rate,
    BytesOverTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Count,
    Max,
    Min,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

/// `agg by (...) (fn({...} [range]))`, the aggregation being optional.
#[derive(Debug, Clone)]
pub struct MetricQuery {
    pub agg: Option<(AggOp, Grouping)>,
    pub func: RangeFn,
    pub log: LogQuery,
    pub range_ns: i128,
}

#[derive(Debug, Clone)]
pub enum Query {
    Log(LogQuery),
    Metric(MetricQuery),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Duration(String),
    Sym(&'static str),
}

struct Lexer<'a> {
    src: &'a str,
    toks: Vec<(Tok, usize)>,
}

const SYMBOLS: &[&str] = &[
    "|=", "!=", "|~", "!~", "=~", "=", "{", "}", "(", ")", "[", "]", ",",
];

fn err_at(src: &str, pos: usize, msg: &str) -> String {
    let col = src[..pos.min(src.len())].chars().count() + 1;
    format!("parse error at line 1, col {col}: {msg}")
}

impl<'a> Lexer<'a> {
    fn lex(src: &'a str) -> Result<Self, String> {
        let mut toks = Vec::new();
        let b = src.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c.is_ascii_whitespace() {
                i += 1;
                continue;
            }
            if c == b'"' || c == b'`' {
                let (s, next) = lex_string(src, i)?;
                toks.push((Tok::Str(s), i));
                i = next;
                continue;
            }
            if c.is_ascii_digit() {
                let start = i;
                while i < b.len() && b[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                toks.push((Tok::Duration(src[start..i].to_string()), start));
                continue;
            }
            if c.is_ascii_alphabetic() || c == b'_' {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                toks.push((Tok::Ident(src[start..i].to_string()), start));
                continue;
            }
            match SYMBOLS.iter().find(|s| src[i..].starts_with(**s)) {
                Some(s) => {
                    toks.push((Tok::Sym(s), i));
                    i += s.len();
                }
                None => {
                    let ch = src[i..].chars().next().unwrap_or('?');
                    return Err(err_at(
                        src,
                        i,
                        &format!("syntax error: unexpected character {ch:?}"),
                    ));
                }
            }
        }
        Ok(Lexer { src, toks })
    }
}

/// A Go-style double-quoted (with escapes) or back-quoted (raw) string.
fn lex_string(src: &str, start: usize) -> Result<(String, usize), String> {
    let quote = src.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        if c == quote {
            return Ok((out, start + 1 + off + 1));
        }
        if c == '\\' && quote == '"' {
            match chars.next().map(|(_, e)| e) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some(other) => {
                    return Err(err_at(
                        src,
                        start,
                        &format!("invalid char escape \\{other}"),
                    ))
                }
                None => break,
            }
        } else {
            out.push(c);
        }
    }
    Err(err_at(src, start, "literal not terminated"))
}

struct Parser<'a> {
    lx: Lexer<'a>,
    pos: usize,
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "syntax error: unexpected $end".into(),
        Some(Tok::Ident(_)) => "syntax error: unexpected IDENTIFIER".into(),
        Some(Tok::Str(s)) => format!("syntax error: unexpected STRING, expecting {{ or ( ({s:?})"),
        Some(Tok::Duration(_)) => "syntax error: unexpected NUMBER".into(),
        Some(Tok::Sym(s)) => format!("syntax error: unexpected {s}"),
    }
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Tok> {
        self.lx.toks.get(self.pos).map(|(t, _)| t)
    }

    fn here(&self) -> usize {
        self.lx
            .toks
            .get(self.pos)
            .map(|(_, p)| *p)
            .unwrap_or(self.lx.src.len())
    }

    fn fail<T>(&self) -> Result<T, String> {
        Err(err_at(self.lx.src, self.here(), &describe(self.peek())))
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.lx.toks.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        t
    }

    fn expect(&mut self, sym: &str) -> Result<(), String> {
        match self.peek() {
            Some(Tok::Sym(s)) if *s == sym => {
                self.pos += 1;
                Ok(())
            }
            _ => self.fail(),
        }
    }

    fn is_sym(&self, sym: &str) -> bool {
        matches!(self.peek(), Some(Tok::Sym(s)) if *s == sym)
    }

    fn string(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Tok::Str(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => self.fail(),
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => self.fail(),
        }
    }

    fn selector(&mut self) -> Result<Vec<Matcher>, String> {
        let start = self.here();
        self.expect("{")?;
        let mut matchers = Vec::new();
        while !self.is_sym("}") {
            let name = self.ident()?;
            let op = match self.next() {
                Some(Tok::Sym("=")) => MatchOp::Eq,
                Some(Tok::Sym("!=")) => MatchOp::Neq,
                Some(Tok::Sym("=~")) => MatchOp::Re,
                Some(Tok::Sym("!~")) => MatchOp::Nre,
                _ => {
                    self.pos -= 1;
                    return self.fail();
                }
            };
            let at = self.here();
            let value = self.string()?;
            let regex = match op {
                MatchOp::Re | MatchOp::Nre => {
                    Some(Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                        err_at(self.lx.src, at, &format!("error parsing regexp: {e}"))
                    })?)
                }
                _ => None,
            };
            matchers.push(Matcher {
                name,
                op,
                value,
                regex,
            });
            if !self.is_sym("}") {
                self.expect(",")?;
            }
        }
        self.expect("}")?;
        if matchers.iter().all(Matcher::matches_empty) {
            let _ = start;
            return Err("parse error : queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will".into());
        }
        Ok(matchers)
    }

    fn log_query(&mut self) -> Result<LogQuery, String> {
        let matchers = self.selector()?;
        let mut filters = Vec::new();
        while let Some(Tok::Sym(op @ ("|=" | "!=" | "|~" | "!~"))) = self.peek() {
            let op = *op;
            self.pos += 1;
            let at = self.here();
            let text = self.string()?;
            let re = || {
                Regex::new(&text)
                    .map_err(|e| err_at(self.lx.src, at, &format!("error parsing regexp: {e}")))
            };
            filters.push(match op {
                "|=" => LineFilter::Contains(text.clone()),
                "!=" => LineFilter::NotContains(text.clone()),
                "|~" => LineFilter::Matches(re()?),
                _ => LineFilter::NotMatches(re()?),
            });
        }
        Ok(LogQuery { matchers, filters })
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, String> {
        let kind = match self.peek() {
            Some(Tok::Ident(s)) if s == "by" || s == "without" => s.clone(),
            _ => return Ok(None),
        };
        self.pos += 1;
        self.expect("(")?;
        let mut labels = Vec::new();
        while !self.is_sym(")") {
            labels.push(self.ident()?);
            if !self.is_sym(")") {
                self.expect(",")?;
            }
        }
        self.expect(")")?;
        Ok(Some(if kind == "by" {
            Grouping::By(labels)
        } else {
            Grouping::Without(labels)
        }))
    }

    fn range_fn(&mut self, func: RangeFn) -> Result<MetricQuery, String> {
        self.expect("(")?;
        let log = self.log_query()?;
        self.expect("[")?;
        let at = self.here();
        let range = match self.next() {
            Some(Tok::Duration(d)) => d,
            _ => {
                self.pos -= 1;
                return self.fail();
            }
        };
        let range_ns = obsbox_stand_ins::parse_prom_duration(&range)
            .map_err(|e| err_at(self.lx.src, at, &e))? as i128
            * 1_000_000;
        self.expect("]")?;
        self.expect(")")?;
        Ok(MetricQuery {
            agg: None,
            func,
            log,
            range_ns,
        })
    }

    fn expr(&mut self) -> Result<Query, String> {
        if self.is_sym("{") {
            return Ok(Query::Log(self.log_query()?));
        }
        let name = self.ident().or_else(|_| self.fail())?;
        if let Some(func) = range_fn_named(&name) {
            return Ok(Query::Metric(self.range_fn(func)?));
        }
        let Some(op) = agg_named(&name) else {
            self.pos -= 1;
            return self.fail();
        };
        let before = self.grouping()?;
        self.expect("(")?;
        let inner_name = self.ident()?;
        let Some(func) = range_fn_named(&inner_name) else {
            self.pos -= 1;
            return self.fail();
        };
        let mut q = self.range_fn(func)?;
        self.expect(")")?;
        let after = self.grouping()?;
        let grouping = match (before, after) {
            (Some(_), Some(_)) => return self.fail(),
            (g, None) | (None, g) => g.unwrap_or(Grouping::By(Vec::new())),
        };
        q.agg = Some((op, grouping));
        Ok(Query::Metric(q))
    }
}

fn range_fn_named(name: &str) -> Option<RangeFn> {
    match name {
        "count_over_time" => Some(RangeFn::CountOverTime),
        "rate" => Some(RangeFn::Rate),
        "bytes_over_time" => Some(RangeFn::BytesOverTime),
        _ => None,
    }
}

fn agg_named(name: &str) -> Option<AggOp> {
    match name {
        "sum" => Some(AggOp::Sum),
        "count" => Some(AggOp::Count),
        "max" => Some(AggOp::Max),
        "min" => Some(AggOp::Min),
        _ => None,
    }
}

/// Parses a query; the error is Loki's message.
pub fn parse(src: &str) -> Result<Query, String> {
    let mut p = Parser {
        lx: Lexer::lex(src)?,
        pos: 0,
    };
    let q = p.expr()?;
    if p.peek().is_some() {
        return p.fail();
    }
    Ok(q)
}

/// Parses a query that must be a log query (tail, label values' `query`).
pub fn parse_log(src: &str) -> Result<LogQuery, String> {
    match parse(src)? {
        Query::Log(q) => Ok(q),
        Query::Metric(_) => Err("parse error : only log queries are supported".into()),
    }
}

/// Labels of a series produced by aggregating `labels` with `grouping`.
pub fn group_labels(
    labels: &BTreeMap<String, String>,
    grouping: &Grouping,
) -> BTreeMap<String, String> {
    match grouping {
        Grouping::By(keep) => labels
            .iter()
            .filter(|(k, _)| keep.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Grouping::Without(drop) => labels
            .iter()
            .filter(|(k, _)| !drop.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_match_with_all_four_operators() {
        let q = parse_log(r#"{app="web", env!="dev", host=~"a.*", level!~"debug|trace"}"#).unwrap();
        assert!(q.selects(&labels(&[
            ("app", "web"),
            ("host", "alpha"),
            ("level", "info")
        ])));
        assert!(!q.selects(&labels(&[("app", "web"), ("host", "beta")])));
        assert!(!q.selects(&labels(&[("app", "web"), ("host", "a"), ("env", "dev")])));
        assert!(!q.selects(&labels(&[
            ("app", "web"),
            ("host", "a"),
            ("level", "debug")
        ])));
        // Regex matchers are anchored: "a.*" does not match "ba".
        assert!(!q.selects(&labels(&[("app", "web"), ("host", "ba")])));
    }

    #[test]
    fn line_filters_apply_in_order() {
        let q =
            parse_log(r#"{app="web"} |= "error" != "timeout" |~ "code=[45]\\d\\d" !~ `^DEBUG`"#)
                .unwrap();
        assert_eq!(q.filters.len(), 4);
        assert!(q.keeps("error code=503 upstream"));
        assert!(!q.keeps("error timeout code=503"));
        assert!(!q.keeps("error code=200"));
        assert!(!q.keeps("DEBUG error code=500"));
        assert!(!q.keeps("warning code=500"));
    }

    #[test]
    fn metric_queries_with_grouping_before_or_after() {
        for src in [
            r#"sum by (app) (count_over_time({app=~".+"} |= "x" [1m]))"#,
            r#"sum(count_over_time({app=~".+"} |= "x" [1m])) by (app)"#,
        ] {
            let Query::Metric(m) = parse(src).unwrap() else {
                panic!("{src} is a metric query")
            };
            assert_eq!(m.func, RangeFn::CountOverTime);
            assert_eq!(m.range_ns, 60_000_000_000);
            assert_eq!(m.agg, Some((AggOp::Sum, Grouping::By(vec!["app".into()]))));
            assert_eq!(m.log.filters.len(), 1);
        }
        let Query::Metric(m) = parse(r#"rate({app="a"}[5s])"#).unwrap() else {
            panic!()
        };
        assert_eq!(
            (m.func, m.agg, m.range_ns),
            (RangeFn::Rate, None, 5_000_000_000)
        );
        let Query::Metric(m) = parse(r#"sum(rate({app="a"}[5s]))"#).unwrap() else {
            panic!()
        };
        assert_eq!(m.agg, Some((AggOp::Sum, Grouping::By(vec![]))));
    }

    #[test]
    fn errors_are_worded_like_lokis() {
        assert_eq!(
            parse("foo").unwrap_err(),
            "parse error at line 1, col 1: syntax error: unexpected IDENTIFIER"
        );
        assert_eq!(
            parse(r#"{app="a""#).unwrap_err(),
            "parse error at line 1, col 9: syntax error: unexpected $end"
        );
        assert!(parse(r#"{app=~".*"}"#)
            .unwrap_err()
            .starts_with("parse error : queries require at least one regexp or equality matcher"));
        assert!(parse(r#"{app="a"} |~ "(""#)
            .unwrap_err()
            .contains("error parsing regexp"));
        assert!(parse(r#"{app="a"} |= "x"#)
            .unwrap_err()
            .contains("literal not terminated"));
        assert!(parse(r#"count_over_time({app="a"})"#).is_err());
        assert!(parse(r#"{app="a"} extra"#).is_err());
    }

    #[test]
    fn grouping_keeps_or_drops_labels() {
        let l = labels(&[("app", "a"), ("host", "h")]);
        assert_eq!(
            group_labels(&l, &Grouping::By(vec!["app".into()])),
            labels(&[("app", "a")])
        );
        assert_eq!(
            group_labels(&l, &Grouping::Without(vec!["app".into()])),
            labels(&[("host", "h")])
        );
    }
}
