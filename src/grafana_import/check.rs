//! Asks the running Prometheus and Loki every query of an imported
//! dashboard, the way Grafana would over the last few minutes, and keeps
//! their own error messages. Grafana's macros and the dashboard's variables
//! are given plausible values first (`prepare`, pure), so a query fails only
//! for what its author wrote.

use super::normalize::{Language, Query};
use crate::logs::query::{Loki, QueryError as LokiError};
use crate::prometheus_query::{InstantParams, Prometheus, Question};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Grafana's interval macros, longest first so `$__interval_ms` is not read
/// as `$__interval`, with values for a dashboard over the last hour.
const MACROS: [(&str, &str); 12] = [
    ("$__rate_interval_ms", "300000"),
    ("${__rate_interval}", "5m"),
    ("$__rate_interval", "5m"),
    ("$__interval_ms", "60000"),
    ("${__interval}", "1m"),
    ("$__interval", "1m"),
    ("$__range_ms", "3600000"),
    ("$__range_s", "3600"),
    ("${__range}", "1h"),
    ("$__range", "1h"),
    ("$__auto", "1m"),
    ("$__name", "x"),
];

/// What a variable stands for while its query is checked: its current value
/// when the export kept one, else a value that fits where variables go in
/// PromQL (a range for `interval` variables, a regex matching anything for
/// the others, which usually sit in `=~` matchers).
pub fn variable_values(dashboard: &Value) -> BTreeMap<String, String> {
    let list = dashboard["templating"]["list"].as_array();
    let mut values = BTreeMap::new();
    for variable in list.into_iter().flatten() {
        let Some(name) = variable["name"].as_str() else {
            continue;
        };
        let current = match &variable["current"]["value"] {
            Value::String(s) => Some(s.clone()),
            Value::Array(items) => items.first().and_then(Value::as_str).map(String::from),
            _ => None,
        }
        .filter(|v| !v.is_empty() && !v.starts_with('$'));
        let fallback = match variable["type"].as_str() {
            Some("interval") => "5m".to_string(),
            Some("constant") => variable["query"].as_str().unwrap_or_default().to_string(),
            _ => ".*".to_string(),
        };
        values.insert(name.to_string(), current.unwrap_or(fallback));
    }
    values
}

/// `expr` with the macros and the variables `values` names replaced, in
/// every form Grafana reads (`$x`, `${x}`, `${x:format}`, `[[x]]`).
pub fn prepare(expr: &str, values: &BTreeMap<String, String>) -> String {
    let mut text = expr.to_string();
    for (mac, value) in MACROS {
        text = text.replace(mac, value);
    }
    // Longest names first, so `$node` is not read inside `$node_name`.
    let mut names: Vec<&String> = values.keys().collect();
    names.sort_by_key(|name| std::cmp::Reverse(name.len()));
    for name in names {
        let value = &values[name];
        text = text
            .replace(&format!("[[{name}]]"), value)
            .replace(&format!("${{{name}}}"), value);
        let formatted = format!("${{{name}:");
        while let Some(at) = text.find(&formatted) {
            let Some(end) = text[at..].find('}') else {
                break;
            };
            text.replace_range(at..at + end + 1, value);
        }
        text = replace_bare(&text, name, value);
    }
    text
}

/// Replaces `$name` where no letter, digit or `_` follows it.
fn replace_bare(text: &str, name: &str, value: &str) -> String {
    let needle = format!("${name}");
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(&needle) {
        let after = &rest[at + needle.len()..];
        let continues = after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        out.push_str(&rest[..at]);
        out.push_str(if continues { &needle } else { value });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// How one query fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The data source ran it.
    Ok,
    /// The data source refused it; its own message.
    Failed(String),
    /// It could not be asked (the data source is off or not answering).
    NotChecked(String),
}

/// The data sources to ask; `None` when one is turned off.
pub struct Sources {
    pub prometheus: Option<Prometheus>,
    pub loki: Option<Loki>,
}

impl Sources {
    pub fn from_settings(settings: &crate::settings::Settings) -> Sources {
        Sources {
            prometheus: Prometheus::from_settings(settings).ok(),
            loki: Loki::from_settings(settings).ok(),
        }
    }

    /// Asks the query's data source to run `query` (prepared) now.
    pub async fn check(&self, query: &Query, prepared: &str, now: f64) -> Outcome {
        match query.language {
            Language::Prometheus => {
                let Some(prometheus) = &self.prometheus else {
                    return Outcome::NotChecked("Prometheus is turned off".into());
                };
                let params = InstantParams {
                    query: prepared.to_string(),
                    time: Some(now),
                };
                let question = match Question::instant(&params, now) {
                    Ok(question) => question,
                    Err(e) => return Outcome::Failed(e.to_string()),
                };
                match prometheus.ask(&question).await {
                    Ok(_) => Outcome::Ok,
                    Err(crate::prometheus_query::QueryError::Refused { message, .. }) => {
                        Outcome::Failed(message)
                    }
                    Err(e) => Outcome::NotChecked(e.to_string()),
                }
            }
            Language::Loki => {
                let Some(loki) = &self.loki else {
                    return Outcome::NotChecked("Loki is turned off".into());
                };
                match loki.check(prepared, (now * 1e9) as i64).await {
                    Ok(()) => Outcome::Ok,
                    Err(LokiError::Refused { message, .. }) => Outcome::Failed(message),
                    Err(e) => Outcome::NotChecked(e.to_string()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn macros_and_variables_get_values_in_every_form() {
        let dashboard = json!({"templating": {"list": [
            {"name": "node", "type": "query", "current": {"value": "$__all"}},
            {"name": "node_name", "type": "query", "current": {"value": "pve1"}},
            {"name": "step", "type": "interval"},
            {"name": "prefix", "type": "constant", "query": "pve"},
        ]}});
        let values = variable_values(&dashboard);
        assert_eq!(values["node"], ".*");
        assert_eq!(values["node_name"], "pve1");
        assert_eq!(values["step"], "5m");
        let expr = r#"rate(${prefix}_up{instance=~"$node",name="$node_name",x="[[node]]",y=~"${node:regex}"}[$step]) / $__rate_interval_ms + $__interval"#;
        assert_eq!(
            prepare(expr, &values),
            r#"rate(pve_up{instance=~".*",name="pve1",x=".*",y=~".*"}[5m]) / 300000 + 1m"#
        );
    }

    #[test]
    fn a_dollar_that_is_no_variable_stays() {
        let values = BTreeMap::from([("a".to_string(), "1".to_string())]);
        assert_eq!(prepare("x{l=\"$ab\"} + $a", &values), "x{l=\"$ab\"} + 1");
    }
}
