//! Read-only questions to the local Prometheus for the admin UI's charts:
//! an instant query (`/api/v1/query`) or a range query
//! (`/api/v1/query_range`), nothing else. Every question is checked before it
//! is asked: only the parameters named here, a query of bounded length, a
//! range of at most [`MAX_RANGE_SECONDS`] and at most [`MAX_POINTS`] points
//! per series, so no page can make Prometheus or obsbox do unbounded work.

use crate::http_client::HttpError;
use crate::settings::Settings;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// The longest PromQL expression accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;
/// The longest range a chart may span: 31 days.
pub const MAX_RANGE_SECONDS: f64 = 31.0 * 86_400.0;
/// The most points a range query may give each series (Prometheus itself
/// allows 11,000; a chart has no use for more pixels than this).
pub const MAX_POINTS: f64 = 1_000.0;
/// The range when none is given: the last hour.
const DEFAULT_RANGE_SECONDS: f64 = 3_600.0;
/// How many points a range query gets when no step is given.
const DEFAULT_POINTS: f64 = 250.0;
/// How long Prometheus may work on one query (its `timeout` parameter);
/// obsbox waits a little longer for the answer.
const QUERY_TIMEOUT_SECONDS: u64 = 20;
const ANSWER_TIMEOUT: Duration = Duration::from_secs(QUERY_TIMEOUT_SECONDS + 5);

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The question itself is wrong (a parameter, the range, the step).
    #[error("{0}")]
    Invalid(String),
    /// Prometheus refused the query; its message says why (a PromQL error).
    #[error("Prometheus refused the query: {message}")]
    Refused { status: u16, message: String },
    #[error("Prometheus is not reachable: {0}")]
    Unreachable(#[from] HttpError),
    #[error("Prometheus answered something that is not its API's JSON: {0}")]
    Garbled(String),
    #[error("Prometheus is turned off in the services settings")]
    Disabled,
}

/// The parameters of an instant query; any other is refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstantParams {
    /// A PromQL expression.
    pub query: String,
    /// Evaluation time, Unix seconds; default: now.
    pub time: Option<f64>,
}

/// The parameters of a range query; any other is refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeParams {
    /// A PromQL expression.
    pub query: String,
    /// Unix seconds; default: an hour before `end`.
    pub start: Option<f64>,
    /// Unix seconds; default: now.
    pub end: Option<f64>,
    /// Seconds between points; default: the range in 250 points, at least 1 s.
    pub step: Option<f64>,
}

/// A question checked and ready to ask.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Question {
    Instant {
        query: String,
        time: f64,
    },
    Range {
        query: String,
        start: f64,
        end: f64,
        step: f64,
    },
}

fn checked_query(query: &str) -> Result<String, QueryError> {
    let query = query.trim();
    if query.is_empty() {
        return Err(QueryError::Invalid(
            "a query is needed, e.g. up{job=\"node\"}".into(),
        ));
    }
    if query.len() > MAX_QUERY_BYTES {
        return Err(QueryError::Invalid(format!(
            "the query is longer than {MAX_QUERY_BYTES} bytes"
        )));
    }
    Ok(query.to_string())
}

fn checked_time(name: &str, value: f64) -> Result<f64, QueryError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(QueryError::Invalid(format!(
            "{name} must be a time in Unix seconds"
        )))
    }
}

impl Question {
    /// An instant query at `params.time`, or at `now` (Unix seconds).
    pub fn instant(params: &InstantParams, now: f64) -> Result<Question, QueryError> {
        Ok(Question::Instant {
            query: checked_query(&params.query)?,
            time: checked_time("time", params.time.unwrap_or(now))?,
        })
    }

    /// A range query, bounded in length and in points per series.
    pub fn range(params: &RangeParams, now: f64) -> Result<Question, QueryError> {
        let query = checked_query(&params.query)?;
        let end = checked_time("end", params.end.unwrap_or(now))?;
        let start = match params.start {
            Some(start) => checked_time("start", start)?,
            None => (end - DEFAULT_RANGE_SECONDS).max(0.0),
        };
        let span = end - start;
        if span <= 0.0 {
            return Err(QueryError::Invalid(
                "the start must be before the end".into(),
            ));
        }
        if span > MAX_RANGE_SECONDS {
            return Err(QueryError::Invalid(format!(
                "the range may span at most {} days",
                MAX_RANGE_SECONDS / 86_400.0
            )));
        }
        let (start, step) = match params.step {
            Some(step) => (start, step),
            None => {
                // Prometheus evaluates at start, start + step, ... up to the
                // end: starting up to a step earlier puts the last point on
                // the end, so a chart shows the newest data.
                let step = (span / DEFAULT_POINTS).ceil().max(1.0);
                (end - step * (span / step).ceil(), step)
            }
        };
        if !step.is_finite() || step < 1.0 {
            return Err(QueryError::Invalid("the step must be at least 1 s".into()));
        }
        if span / step > MAX_POINTS {
            return Err(QueryError::Invalid(format!(
                "a step of {step} s gives more than {MAX_POINTS} points over this range; \
                 take a step of at least {} s",
                (span / MAX_POINTS).ceil()
            )));
        }
        Ok(Question::Range {
            query,
            start,
            end,
            step,
        })
    }

    /// The path and query string Prometheus is asked with.
    fn path(&self) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        let endpoint = match self {
            Question::Instant { query, time } => {
                form.append_pair("query", query)
                    .append_pair("time", &time.to_string());
                "query"
            }
            Question::Range {
                query,
                start,
                end,
                step,
            } => {
                form.append_pair("query", query)
                    .append_pair("start", &start.to_string())
                    .append_pair("end", &end.to_string())
                    .append_pair("step", &step.to_string());
                "query_range"
            }
        };
        form.append_pair("timeout", &format!("{QUERY_TIMEOUT_SECONDS}s"));
        format!("/api/v1/{endpoint}?{}", form.finish())
    }
}

/// The local Prometheus, on loopback.
#[derive(Debug, Clone, Copy)]
pub struct Prometheus {
    port: u16,
}

impl Prometheus {
    pub fn from_settings(settings: &Settings) -> Result<Prometheus, QueryError> {
        let prometheus = &settings.services.prometheus;
        if !prometheus.enabled {
            return Err(QueryError::Disabled);
        }
        Ok(Prometheus {
            port: prometheus.port,
        })
    }

    /// Asks `question` and gives Prometheus' `data` (`resultType`, `result`)
    /// with its `warnings`, if any.
    pub async fn ask(&self, question: &Question) -> Result<Value, QueryError> {
        let response =
            crate::http_client::request("GET", self.port, &question.path(), ANSWER_TIMEOUT).await?;
        answer(response.status, &response.body)
    }
}

/// Prometheus' answer to a query, as the charts get it.
fn answer(status: u16, body: &[u8]) -> Result<Value, QueryError> {
    let json: Value = serde_json::from_slice(body).map_err(|_| {
        QueryError::Garbled(format!(
            "HTTP {status}, and the body is not JSON (or larger than 1 MiB)"
        ))
    })?;
    if json["status"] == "success" {
        let mut data = json["data"].clone();
        if !data.is_object() {
            return Err(QueryError::Garbled("no data in a successful answer".into()));
        }
        if let Some(warnings) = json.get("warnings") {
            data["warnings"] = warnings.clone();
        }
        return Ok(data);
    }
    match json["error"].as_str() {
        Some(message) => Err(QueryError::Refused {
            status,
            message: message.to_string(),
        }),
        None => Err(QueryError::Garbled(format!(
            "HTTP {status} without an error"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: f64 = 1_800_000_000.0;

    fn range(start: Option<f64>, end: Option<f64>, step: Option<f64>) -> RangeParams {
        RangeParams {
            query: "up".into(),
            start,
            end,
            step,
        }
    }

    fn refusal(result: Result<Question, QueryError>) -> String {
        match result {
            Err(QueryError::Invalid(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn only_the_named_parameters_are_taken() {
        let ok: RangeParams =
            serde_json::from_value(json!({"query": "up", "start": 1.0, "end": 2.0, "step": 1.0}))
                .unwrap();
        assert_eq!(ok.query, "up");
        for extra in ["match[]", "timeout", "limit", "stats", "dedup"] {
            let mut params = json!({"query": "up"});
            params[extra] = json!("1");
            assert!(
                serde_json::from_value::<RangeParams>(params.clone()).is_err(),
                "{extra} taken by a range query"
            );
            assert!(
                serde_json::from_value::<InstantParams>(params).is_err(),
                "{extra} taken by an instant query"
            );
        }
        assert!(serde_json::from_value::<InstantParams>(json!({"time": 1.0})).is_err());
    }

    #[test]
    fn a_range_defaults_to_the_last_hour_in_250_points() {
        let q = Question::range(&range(None, None, None), NOW).unwrap();
        assert_eq!(
            q,
            Question::Range {
                query: "up".into(),
                start: NOW - 3600.0,
                end: NOW,
                step: 15.0,
            }
        );
        // A short range still steps a whole second at least.
        let q = Question::range(&range(Some(NOW - 10.0), None, None), NOW).unwrap();
        assert!(matches!(q, Question::Range { step, .. } if step == 1.0));
    }

    #[test]
    fn the_points_of_a_default_step_end_at_the_end() {
        // Prometheus evaluates at start, start + step, ... up to the end: a
        // day in steps of 346 s would stop 246 s before it, and a week in
        // steps of 2420 s 37 minutes before it, leaving the newest data out.
        for (span, step) in [(86_400.0, 346.0), (604_800.0, 2420.0), (10.0, 1.0)] {
            let q = Question::range(&range(Some(NOW - span), None, None), NOW).unwrap();
            let Question::Range {
                start,
                end,
                step: s,
                ..
            } = q
            else {
                panic!("{q:?}")
            };
            assert_eq!((s, end), (step, NOW), "{span}");
            let points = (end - start) / step;
            assert_eq!(points, points.round(), "{span}: the last point is the end");
            assert!(
                start <= NOW - span && start > NOW - span - step,
                "{span}: {start}"
            );
        }
        // A step asked for is kept, with the range as asked.
        let q = Question::range(&range(Some(NOW - 100.0), None, Some(7.0)), NOW).unwrap();
        assert!(
            matches!(q, Question::Range { start, step, .. } if start == NOW - 100.0 && step == 7.0)
        );
    }

    #[test]
    fn range_and_step_are_bounded() {
        let day = 86_400.0;
        assert!(Question::range(&range(Some(NOW - 31.0 * day), None, None), NOW).is_ok());
        assert!(refusal(Question::range(
            &range(Some(NOW - 32.0 * day), None, None),
            NOW
        ))
        .contains("at most 31 days"));
        assert!(
            refusal(Question::range(&range(Some(NOW), Some(NOW), None), NOW))
                .contains("before the end")
        );
        assert!(refusal(Question::range(
            &range(Some(NOW), Some(NOW - 1.0), None),
            NOW
        ))
        .contains("before the end"));
        for step in [0.0, 0.5, -1.0, f64::NAN, f64::INFINITY] {
            assert!(
                refusal(Question::range(&range(None, None, Some(step)), NOW))
                    .contains("at least 1 s"),
                "step {step}"
            );
        }
        // An hour in 1 s steps is 3600 points: too many; 4 s is 900: fine.
        assert!(refusal(Question::range(&range(None, None, Some(1.0)), NOW))
            .contains("a step of at least 4 s"));
        assert!(Question::range(&range(None, None, Some(4.0)), NOW).is_ok());
        for bad in [f64::NAN, -5.0, f64::INFINITY] {
            assert!(refusal(Question::range(&range(None, Some(bad), None), NOW)).contains("end"));
            assert!(refusal(Question::range(&range(Some(bad), None, None), NOW)).contains("start"));
        }
    }

    #[test]
    fn a_query_must_be_there_and_not_too_long() {
        let params = |query: &str| InstantParams {
            query: query.into(),
            time: None,
        };
        assert!(refusal(Question::instant(&params("  "), NOW)).contains("a query is needed"));
        let long = "x".repeat(MAX_QUERY_BYTES + 1);
        assert!(refusal(Question::instant(&params(&long), NOW)).contains("longer than"));
        let q = Question::instant(&params(" up "), NOW).unwrap();
        assert_eq!(
            q,
            Question::Instant {
                query: "up".into(),
                time: NOW
            }
        );
        let at = InstantParams {
            query: "up".into(),
            time: Some(f64::NAN),
        };
        assert!(refusal(Question::instant(&at, NOW)).contains("time"));
    }

    #[test]
    fn prometheus_is_asked_only_its_two_query_endpoints_with_a_timeout() {
        let q = Question::range(
            &RangeParams {
                query: "rate(x{a=\"b c\"}[5m])".into(),
                start: Some(100.0),
                end: Some(700.0),
                step: Some(60.0),
            },
            NOW,
        )
        .unwrap();
        assert_eq!(
            q.path(),
            "/api/v1/query_range?query=rate%28x%7Ba%3D%22b+c%22%7D%5B5m%5D%29&start=100&end=700&step=60&timeout=20s"
        );
        let q = Question::instant(
            &InstantParams {
                query: "up".into(),
                time: Some(1.5),
            },
            NOW,
        )
        .unwrap();
        assert_eq!(q.path(), "/api/v1/query?query=up&time=1.5&timeout=20s");
    }

    #[test]
    fn answers_give_the_data_or_prometheus_reason() {
        let ok =
            br#"{"status":"success","data":{"resultType":"matrix","result":[]},"warnings":["w"]}"#;
        assert_eq!(
            answer(200, ok).unwrap(),
            json!({"resultType": "matrix", "result": [], "warnings": ["w"]})
        );
        let bad = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        match answer(400, bad) {
            Err(QueryError::Refused { status, message }) => {
                assert_eq!((status, message.as_str()), (400, "parse error at char 3"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            answer(200, b"{\"status\":"),
            Err(QueryError::Garbled(_))
        ));
        assert!(matches!(answer(500, b"{}"), Err(QueryError::Garbled(_))));
    }
}
