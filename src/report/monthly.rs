//! The monthly reliability report, made on request and mailed: on the 1st of each month, a few hours
//! after midnight in the box's zone, last month's report goes to the email
//! receiver named in `alerting.report_receiver`, through that receiver's
//! SMTP server. A box that was off then sends it when it is back; a failed
//! send is tried again every hour until it goes. Each attempt is kept.

use super::gather::{self, Sources};
use super::Month;
use crate::services::render::alertmanager::receiver_secret;
use crate::settings::{ReceiverKind, Settings};
use crate::store::{now_millis, Store, StoreError};
use lettre::message::{header::ContentType, Mailbox, Mailboxes, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A month's report is sent this long after the month ends: after the
/// night's backups, verifications and drills are in it.
const SEND_AFTER_MS: i64 = 6 * 3600 * 1000;
/// A failed send is tried again after this long.
const RETRY_AFTER_MS: i64 = 3600 * 1000;
/// How often the schedule is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(600);
/// An SMTP server that does not answer within this is given up on.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("no monthly report receiver is set (alerting.report_receiver)")]
    NoReceiver,
    #[error("receiver '{0}' is not an email receiver")]
    NotEmail(String),
    #[error("receiver '{0}' needs its SMTP password (its secret is not set)")]
    NoPassword(String),
    #[error("{0}")]
    Month(#[from] gather::MonthError),
    #[error("the mail cannot be made: {0}")]
    Message(String),
    #[error("the SMTP server {server} did not take the mail: {reason}")]
    Smtp { server: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One attempt to mail a month's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    /// `YYYY-MM`.
    pub month: String,
    /// Unix ms.
    pub at: i64,
    pub receiver: String,
    /// `schedule` or the user who asked.
    pub actor: String,
    /// Why it failed; `None` when the server took it.
    pub error: Option<String>,
}

/// The last attempt as the schedule weighs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LastAttempt {
    pub month: Month,
    pub at: i64,
    pub ok: bool,
}

/// The month whose report is due to be mailed at `now`, if any: last
/// month, once it has been over for [`SEND_AFTER_MS`], if it ended after
/// mailing was set up (`since`, Unix ms), was not mailed yet, and was not
/// tried within the last hour.
pub fn due(now: &jiff::Zoned, since: i64, last: Option<LastAttempt>) -> Option<Month> {
    let month = Month::before(now);
    let (_, end) = month.bounds(now.time_zone())?;
    let now_ms = now.timestamp().as_millisecond();
    if end <= since || now_ms < end + SEND_AFTER_MS {
        return None;
    }
    match last {
        Some(a) if a.ok && a.month >= month => None,
        Some(a) if !a.ok && a.month == month && now_ms - a.at < RETRY_AFTER_MS => None,
        _ => Some(month),
    }
}

/// Makes monthly reports, and mails them: on schedule, and when asked.
pub struct Reports {
    sources: Sources,
    /// One send at a time: the schedule and a user must not send twice.
    sending: tokio::sync::Mutex<()>,
}

impl Reports {
    /// The reports and the mailing schedule, until `stop`.
    pub fn start(
        sources: Sources,
        stop: CancellationToken,
    ) -> (Arc<Reports>, tokio::task::JoinHandle<()>) {
        let mailer = Arc::new(Reports {
            sources,
            sending: tokio::sync::Mutex::new(()),
        });
        let task = tokio::spawn(keep_mailing(mailer.clone(), stop));
        (mailer, task)
    }

    /// `month`'s report as Markdown, made now.
    pub async fn markdown(&self, month: Month) -> Result<String, MailError> {
        Ok(super::report(&gather::inputs(&self.sources, month).await?))
    }

    /// Mails `month`'s report now to the report receiver; the attempt is
    /// kept whatever happens. Answers the receiver's name.
    pub async fn send(&self, month: Month, actor: &str) -> Result<String, MailError> {
        let _one = self.sending.lock().await;
        let settings = self.sources.services.with_current(Clone::clone);
        let receiver = settings
            .alerting
            .report_receiver
            .clone()
            .ok_or(MailError::NoReceiver)?;
        let result = self.deliver(&settings, &receiver, month).await;
        record(
            &self.sources.store,
            &Attempt {
                month: month.label(),
                at: now_millis(),
                receiver: receiver.clone(),
                actor: actor.to_string(),
                error: result.as_ref().err().map(ToString::to_string),
            },
        )?;
        self.sources.store.audit(
            actor,
            "report.mail",
            &format!("{}: {receiver}", month.label()),
        )?;
        result.map(|()| receiver)
    }

    /// The newest attempts, newest first.
    pub fn attempts(&self, limit: u32) -> Result<Vec<Attempt>, MailError> {
        Ok(attempts(&self.sources.store, limit)?)
    }

    async fn deliver(
        &self,
        settings: &Settings,
        receiver: &str,
        month: Month,
    ) -> Result<(), MailError> {
        let markdown = self.markdown(month).await?;
        let subject = format!(
            "{}: reliability report for {}",
            settings.general.hostname,
            month.label()
        );
        let password = || {
            std::fs::read_to_string(
                self.sources
                    .store
                    .secret_path(&receiver_secret(receiver, "password")),
            )
            .ok()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
        };
        let smtp = smtp_of(settings, receiver, password)?;
        let message = message(&smtp, &subject, &markdown)?;
        let transport = smtp.transport(&settings.general.hostname)?;
        transport
            .send(message)
            .await
            .map(drop)
            .map_err(|e| MailError::Smtp {
                server: smtp.server.clone(),
                reason: error_chain(&e),
            })
    }
}

/// An email receiver's SMTP settings, as Alertmanager reads them.
struct Smtp {
    server: String,
    host: String,
    port: u16,
    from: String,
    to: String,
    require_tls: bool,
    credentials: Option<Credentials>,
}

fn smtp_of(
    settings: &Settings,
    name: &str,
    password: impl FnOnce() -> Option<String>,
) -> Result<Smtp, MailError> {
    let receiver = settings
        .alerting
        .receivers
        .iter()
        .find(|r| r.name == name)
        .ok_or(MailError::NoReceiver)?;
    let ReceiverKind::Email {
        to,
        from,
        smarthost,
        username,
        require_tls,
    } = &receiver.kind
    else {
        return Err(MailError::NotEmail(name.to_string()));
    };
    let (host, port) = match smarthost.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().unwrap_or(25)),
        None => (smarthost.as_str(), 25),
    };
    let credentials = match username {
        Some(user) => Some(Credentials::new(
            user.clone(),
            password().ok_or_else(|| MailError::NoPassword(name.to_string()))?,
        )),
        None => None,
    };
    Ok(Smtp {
        server: smarthost.clone(),
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        from: from.clone(),
        to: to.clone(),
        require_tls: *require_tls,
        credentials,
    })
}

impl Smtp {
    /// Port 465 speaks TLS from the start; elsewhere STARTTLS, required or
    /// used when offered (as Alertmanager does).
    fn transport(&self, hello: &str) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
        let tls = TlsParameters::new(self.host.clone())
            .map_err(|e| MailError::Message(format!("TLS for {}: {e}", self.host)))?;
        let tls = match (self.port, self.require_tls) {
            (465, _) => Tls::Wrapper(tls),
            (_, true) => Tls::Required(tls),
            (_, false) => Tls::Opportunistic(tls),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .hello_name(ClientId::Domain(hello.to_string()))
            .timeout(Some(SMTP_TIMEOUT));
        if let Some(credentials) = &self.credentials {
            builder = builder.credentials(credentials.clone());
        }
        Ok(builder.build())
    }
}

/// The report as a mail: the Markdown as plain text, and as HTML.
fn message(smtp: &Smtp, subject: &str, markdown: &str) -> Result<Message, MailError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| MailError::Message(format!("{what}: {e}"));
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|e| bad(&format!("from address '{}'", smtp.from), &e))?;
    let to: Mailboxes = smtp
        .to
        .parse()
        .map_err(|e| bad(&format!("to address '{}'", smtp.to), &e))?;
    let mut builder = Message::builder().from(from).subject(subject);
    for mailbox in to {
        builder = builder.to(mailbox);
    }
    let body = MultiPart::alternative()
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(markdown.to_string()),
        )
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(html_page(subject, markdown)),
        );
    builder.multipart(body).map_err(|e| bad("the mail", &e))
}

/// A whole HTML document, readable in a mail client without styles from
/// the box.
fn html_page(title: &str, markdown: &str) -> String {
    let mut options = pulldown_cmark::Options::empty();
    options.insert(pulldown_cmark::Options::ENABLE_TABLES);
    let mut body = String::new();
    pulldown_cmark::html::push_html(
        &mut body,
        pulldown_cmark::Parser::new_ext(markdown, options),
    );
    let mut escaped = String::new();
    pulldown_cmark::html::push_html(
        &mut escaped,
        std::iter::once(pulldown_cmark::Event::Text(title.into())),
    );
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{escaped}</title>\
         <style>table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px}}</style>\
         </head><body>{body}</body></html>"
    )
}

/// An error and its causes on one line (lettre's say little on their own).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

fn record(store: &Store, a: &Attempt) -> Result<(), StoreError> {
    store.with_conn(|conn| {
        conn.execute(
            "INSERT INTO report_mails (month, at, receiver, actor, error)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![a.month, a.at, a.receiver, a.actor, a.error],
        )?;
        Ok(())
    })
}

fn attempts(store: &Store, limit: u32) -> Result<Vec<Attempt>, StoreError> {
    store.with_conn(|conn| {
        let mut statement = conn.prepare(
            "SELECT month, at, receiver, actor, error FROM report_mails
             ORDER BY at DESC, id DESC LIMIT ?1",
        )?;
        let rows = statement.query_map([limit], |row| {
            Ok(Attempt {
                month: row.get(0)?,
                at: row.get(1)?,
                receiver: row.get(2)?,
                actor: row.get(3)?,
                error: row.get(4)?,
            })
        })?;
        rows.collect()
    })
}

/// When mailing was first seen set up (Unix ms); set now if it was not,
/// and forgotten when it is turned off, so that turning it on never mails
/// a month from before.
fn mailing_since(store: &Store, on: bool) -> Result<Option<i64>, StoreError> {
    store.with_conn(|conn| {
        if !on {
            conn.execute("DELETE FROM report_mail_since", [])?;
            return Ok(None);
        }
        conn.execute(
            "INSERT OR IGNORE INTO report_mail_since (id, at) VALUES (1, ?1)",
            [now_millis()],
        )?;
        Ok(Some(conn.query_row(
            "SELECT at FROM report_mail_since WHERE id = 1",
            [],
            |row| row.get(0),
        )?))
    })
}

/// Sends the reports the schedule says are due, until `stop`.
async fn keep_mailing(mailer: Arc<Reports>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let on = mailer
            .sources
            .services
            .with_current(|s| s.alerting.report_receiver.is_some());
        let due = mailing_since(&mailer.sources.store, on).and_then(|since| {
            let Some(since) = since else { return Ok(None) };
            let last = attempts(&mailer.sources.store, 1)?
                .into_iter()
                .next()
                .and_then(|a| {
                    Some(LastAttempt {
                        month: Month::parse(&a.month)?,
                        at: a.at,
                        ok: a.error.is_none(),
                    })
                });
            Ok(due(&jiff::Zoned::now(), since, last))
        });
        match due {
            Ok(Some(month)) => match mailer.send(month, "schedule").await {
                Ok(to) => tracing::info!(month = month.label(), to, "monthly report mailed"),
                Err(e) => {
                    tracing::warn!(month = month.label(), error = %e, "monthly report not mailed")
                }
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the monthly report's mail schedule"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> jiff::Zoned {
        format!("{text}[Europe/Berlin]").parse().unwrap()
    }

    fn ms(text: &str) -> i64 {
        at(text).timestamp().as_millisecond()
    }

    const NOVEMBER: Month = Month {
        year: 2026,
        month: 11,
    };

    #[test]
    fn last_month_goes_on_the_first_after_six() {
        let since = ms("2026-10-15T12:00:00");
        assert_eq!(due(&at("2026-12-01T05:59:00"), since, None), None);
        assert_eq!(due(&at("2026-12-01T06:00:00"), since, None), Some(NOVEMBER));
        // A box that was off on the 1st sends it when it is back.
        assert_eq!(due(&at("2026-12-09T10:00:00"), since, None), Some(NOVEMBER));
    }

    #[test]
    fn a_month_that_ended_before_mailing_was_set_up_is_not_sent() {
        let since = ms("2026-12-03T12:00:00");
        assert_eq!(due(&at("2026-12-04T10:00:00"), since, None), None);
        assert_eq!(
            due(&at("2027-01-01T07:00:00"), since, None),
            Some(Month {
                year: 2026,
                month: 12
            })
        );
    }

    #[test]
    fn a_sent_month_is_not_sent_again_and_a_failed_one_is_retried_hourly() {
        let since = ms("2026-01-01T00:00:00");
        let sent = LastAttempt {
            month: NOVEMBER,
            at: ms("2026-12-01T06:05:00"),
            ok: true,
        };
        assert_eq!(due(&at("2026-12-20T10:00:00"), since, Some(sent)), None);
        let failed = LastAttempt { ok: false, ..sent };
        assert_eq!(due(&at("2026-12-01T06:30:00"), since, Some(failed)), None);
        assert_eq!(
            due(&at("2026-12-01T07:05:00"), since, Some(failed)),
            Some(NOVEMBER)
        );
        // A manual send of an older month does not stand for last month.
        let older = LastAttempt {
            month: Month {
                year: 2026,
                month: 10,
            },
            ..sent
        };
        assert_eq!(
            due(&at("2026-12-02T10:00:00"), since, Some(older)),
            Some(NOVEMBER)
        );
    }

    #[test]
    fn the_smtp_settings_come_from_an_email_receiver_only() {
        let mut settings = Settings::default();
        settings.alerting.receivers = serde_json::from_value(serde_json::json!([
            {"name": "mail", "kind": "email", "to": "ops@example.org",
             "from": "box@example.org", "smarthost": "smtp.example.org:587", "username": "box"},
            {"name": "hook", "kind": "webhook", "url": "http://127.0.0.1:9/"}
        ]))
        .unwrap();
        let smtp = smtp_of(&settings, "mail", || Some("pw".into())).unwrap();
        assert_eq!((smtp.host.as_str(), smtp.port), ("smtp.example.org", 587));
        assert!(smtp.require_tls);
        let mail = message(
            &smtp,
            "report",
            "# Report\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
        )
        .unwrap();
        let text = String::from_utf8(mail.formatted()).unwrap();
        assert!(text.contains("To: ops@example.org"), "{text}");
        assert!(text.contains("<table>"), "{text}");
        assert!(matches!(
            smtp_of(&settings, "mail", || None),
            Err(MailError::NoPassword(_))
        ));
        assert!(matches!(
            smtp_of(&settings, "hook", || None),
            Err(MailError::NotEmail(_))
        ));
    }
}
