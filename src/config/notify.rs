//! A target's `notify:`: who hears of a build, when, and what the daily
//! summary shows. Read once when the project loads (its settings may use
//! `{{ env_var('NAME') }}`, rendered then), sent by the `notify` stage
//! after a build.
//!
//! ```yaml
//! targets:
//!   prod:
//!     lake: s3://shop-lake/shop
//!     notify:
//!       retries: 3                 # after the first attempt
//!       retry_delay: 2s            # doubled after each attempt
//!       timeout: 10s               # per attempt
//!       link: https://airflow.example.com/dags/shop
//!       summary:                   # figures a summary shows
//!         - title: Revenue of the last day
//!           sql: "select ... from {{ ref('average_order_value') }} ..."
//!       channels:
//!         - webhook: "{{ env_var('SHOP_SLACK_WEBHOOK', '') }}"
//!           format: slack          # or json (the default)
//!           on: [failure, warning, summary]
//!         - email:
//!             to: [data-team@shop.example]
//!             from: etl@shop.example
//!             host: smtp.shop.example
//!             username: "{{ env_var('SMTP_USER') }}"
//!             password: "{{ env_var('SMTP_PASSWORD') }}"
//!           on: [failure, summary]
//! ```
//!
//! A channel whose `webhook` or `host` renders empty is off: that is how
//! one project file notifies in production and not on a laptop.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic, Span};

/// What a target's `notify:` says.
#[derive(Debug, Clone)]
pub struct Notify {
    pub channels: Vec<Channel>,
    /// The figures a summary shows, each a query run after the build.
    pub summary: Vec<Figure>,
    /// Attempts after the first one that failed.
    pub retries: u32,
    /// Before the first retry; doubled after each.
    pub retry_delay: Duration,
    /// Per attempt.
    pub timeout: Duration,
    /// Where to look, besides the project's artifacts (a scheduler's page).
    pub link: Option<String>,
    /// The channels a setting rendered empty turned off, by name.
    pub off: Vec<String>,
}

/// When a channel hears of a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// A node errored, a test failed, or the build could not run.
    Failure,
    /// A test warned or a source is stale.
    Warning,
    /// The first build of each day (UTC), whatever its result.
    Summary,
    /// Every build that did not fail.
    Success,
}

impl Event {
    pub const NAMES: &[&str] = &["failure", "warning", "summary", "success"];

    pub fn parse(text: &str) -> Option<Event> {
        match text {
            "failure" => Some(Event::Failure),
            "warning" => Some(Event::Warning),
            "summary" => Some(Event::Summary),
            "success" => Some(Event::Success),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Event::Failure => "failure",
            Event::Warning => "warning",
            Event::Summary => "summary",
            Event::Success => "success",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Channel {
    /// How messages name it: `name:`, or what it sends to (a webhook's
    /// host, an e-mail's recipients), never a secret.
    pub name: String,
    pub on: BTreeSet<Event>,
    pub kind: ChannelKind,
}

#[derive(Debug, Clone)]
pub enum ChannelKind {
    Webhook(Webhook),
    Email(Email),
}

#[derive(Debug, Clone)]
pub struct Webhook {
    /// Webhook URLs carry their token (Slack's do): a secret.
    pub url: Secret,
    /// Slack's payload (`text` and `blocks`) rather than etl's JSON.
    pub slack: bool,
    pub headers: Vec<(String, Secret)>,
}

#[derive(Debug, Clone)]
pub struct Email {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub credentials: Option<(String, Secret)>,
    pub from: String,
    pub to: Vec<String>,
    /// A CA certificate (PEM) trusted besides the system's: a relay with
    /// an internal CA.
    pub ca_file: Option<PathBuf>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Plain connection upgraded with STARTTLS, which must succeed.
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only to a relay on this machine.
    None,
}

/// A figure of the summary: a titled query, rendered as an inline query
/// is (`ref()`, `source()`, `var()`), its first `max_rows` rows shown.
#[derive(Debug, Clone)]
pub struct Figure {
    pub title: String,
    pub sql: String,
    pub max_rows: usize,
}

/// A value never printed: `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Secret(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifySpec {
    #[serde(default)]
    channels: Vec<ChannelSpec>,
    #[serde(default)]
    summary: Vec<FigureSpec>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    retry_delay: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    link: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelSpec {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    webhook: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    email: Option<EmailSpec>,
    #[serde(default)]
    on: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailSpec {
    to: Vec<String>,
    from: String,
    host: String,
    #[serde(default)]
    port: Option<Value>,
    #[serde(default)]
    tls: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    ca_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FigureSpec {
    title: String,
    sql: String,
    #[serde(default)]
    max_rows: Option<usize>,
}

/// Reads a target's `notify:` (written at `span`), its settings rendered
/// with `render` (`env_var()`, `var()`), relative paths from `root`.
pub fn parse_notify(
    value: &Value,
    span: Option<Span>,
    root: &Path,
    render: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Notify, Diagnostic> {
    let fail = |message: String| {
        Diagnostic::error(Code::Notify, message)
            .with_span(span.clone())
            .with_help("see docs/notify.md for the keys of `notify:`")
    };
    let spec: NotifySpec = serde_json::from_value(value.clone()).map_err(|e| fail(format!("`notify`: {e}")))?;
    let duration = |key: &str, text: &Option<String>, default: Duration| match text {
        None => Ok(default),
        Some(text) => humantime::parse_duration(text.trim())
            .map_err(|e| fail(format!("`notify.{key}: {text}` is not a duration such as `10s`: {e}"))),
    };
    let retry_delay = duration("retry_delay", &spec.retry_delay, Duration::from_secs(2))?;
    let timeout = duration("timeout", &spec.timeout, Duration::from_secs(10))?;
    let rendered = |key: &str, text: &str| render(text).map_err(|e| fail(format!("`{key}`: {e}")));
    let mut channels = Vec::new();
    let mut off = Vec::new();
    for (n, channel) in spec.channels.into_iter().enumerate() {
        let at = format!("notify.channels[{n}]");
        let mut on = BTreeSet::new();
        for event in channel.on.unwrap_or_else(|| vec!["failure".to_owned()]) {
            let parsed = Event::parse(event.trim()).ok_or_else(|| {
                fail(format!(
                    "`{at}.on` lists `{event}`: a channel is told on {}",
                    Event::NAMES.join(", ")
                ))
                .with_suggestion(event.trim(), Event::NAMES.iter().copied())
            })?;
            on.insert(parsed);
        }
        if on.is_empty() {
            return Err(fail(format!("`{at}.on` is empty: the channel would never be told")));
        }
        let kind = match (channel.webhook, channel.email) {
            (Some(_), Some(_)) => {
                return Err(fail(format!(
                    "`{at}` sets both `webhook` and `email`: one channel per list item"
                )));
            }
            (None, None) => return Err(fail(format!("`{at}` sets neither `webhook` nor `email`"))),
            (Some(url), None) => {
                let url = rendered(&format!("{at}.webhook"), &url)?;
                if url.trim().is_empty() {
                    off.push(channel.name.unwrap_or_else(|| format!("{at} (webhook)")));
                    continue;
                }
                let parsed =
                    url::Url::parse(url.trim()).map_err(|e| fail(format!("`{at}.webhook` is not a URL: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(fail(format!(
                        "`{at}.webhook` is a `{}` URL: webhooks are posted over http or https",
                        parsed.scheme()
                    )));
                }
                let slack = match channel.format.as_deref().map(str::trim) {
                    None | Some("json") => false,
                    Some("slack") => true,
                    Some(other) => {
                        return Err(fail(format!(
                            "`{at}.format: {other}`: a webhook is sent as `json` (etl's summary) or `slack`"
                        ))
                        .with_suggestion(other, ["json", "slack"]));
                    }
                };
                let mut headers = Vec::new();
                for (name, value) in channel.headers {
                    headers.push((name.clone(), Secret(rendered(&format!("{at}.headers.{name}"), &value)?)));
                }
                let name = channel
                    .name
                    .unwrap_or_else(|| format!("webhook {}", parsed.host_str().unwrap_or("?")));
                ChannelKind::Webhook(Webhook {
                    url: Secret(url.trim().to_owned()),
                    slack,
                    headers,
                })
                .named(name)
            }
            (None, Some(email)) => {
                if channel.format.is_some() || !channel.headers.is_empty() {
                    return Err(fail(format!(
                        "`{at}`: `format` and `headers` are a webhook's, not an e-mail's"
                    )));
                }
                let host = rendered(&format!("{at}.email.host"), &email.host)?.trim().to_owned();
                if host.is_empty() {
                    off.push(channel.name.unwrap_or_else(|| format!("{at} (e-mail)")));
                    continue;
                }
                let tls = match email.tls.as_deref().map(str::trim) {
                    None | Some("starttls") => Tls::StartTls,
                    Some("tls") => Tls::Tls,
                    Some("none") => Tls::None,
                    Some(other) => {
                        return Err(fail(format!(
                            "`{at}.email.tls: {other}`: SMTP runs over `starttls` (the default), `tls` or `none`"
                        ))
                        .with_suggestion(other, ["starttls", "tls", "none"]));
                    }
                };
                let port = match &email.port {
                    None => match tls {
                        Tls::StartTls => 587,
                        Tls::Tls => 465,
                        Tls::None => 25,
                    },
                    Some(value) => {
                        let text = match value {
                            Value::String(s) => rendered(&format!("{at}.email.port"), s)?,
                            other => other.to_string(),
                        };
                        text.trim()
                            .parse::<u16>()
                            .map_err(|_| fail(format!("`{at}.email.port: {text}` is not a port number")))?
                    }
                };
                let username = email
                    .username
                    .map(|u| rendered(&format!("{at}.email.username"), &u))
                    .transpose()?;
                let password = email
                    .password
                    .map(|p| rendered(&format!("{at}.email.password"), &p))
                    .transpose()?;
                let credentials = match (username, password) {
                    (Some(user), Some(password)) => Some((user, Secret(password))),
                    (None, None) => None,
                    _ => {
                        return Err(fail(format!(
                            "`{at}.email` sets one of `username` and `password`: a login needs both"
                        )));
                    }
                };
                let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
                if tls == Tls::None && credentials.is_some() && !loopback {
                    return Err(fail(format!(
                        "`{at}.email` logs in to `{host}` with `tls: none`: the password would cross the network in clear"
                    ))
                    .with_help("use `tls: starttls` (port 587) or `tls: tls` (port 465)"));
                }
                let from = rendered(&format!("{at}.email.from"), &email.from)?;
                let mut to = Vec::new();
                for address in email.to {
                    to.push(rendered(&format!("{at}.email.to"), &address)?.trim().to_owned());
                }
                for address in std::iter::once(&from).chain(&to) {
                    if address.parse::<lettre::Address>().is_err()
                        && address.parse::<lettre::message::Mailbox>().is_err()
                    {
                        return Err(fail(format!("`{at}.email`: `{address}` is not an e-mail address")));
                    }
                }
                if to.is_empty() {
                    return Err(fail(format!("`{at}.email.to` is empty")));
                }
                let ca_file = match email.ca_file {
                    Some(file) => {
                        let file = rendered(&format!("{at}.email.ca_file"), &file)?;
                        (!file.trim().is_empty()).then(|| root.join(file.trim()))
                    }
                    None => None,
                };
                let name = channel.name.unwrap_or_else(|| format!("e-mail to {}", to.join(", ")));
                ChannelKind::Email(Email {
                    host,
                    port,
                    tls,
                    credentials,
                    from: from.trim().to_owned(),
                    to,
                    ca_file,
                })
                .named(name)
            }
        };
        channels.push(Channel { on, ..kind });
    }
    let mut names = BTreeSet::new();
    for channel in &channels {
        if !names.insert(channel.name.clone()) {
            return Err(fail(format!(
                "two channels are named `{}`: give one a `name:`",
                channel.name
            )));
        }
    }
    let summary = spec
        .summary
        .into_iter()
        .map(|f| Figure {
            title: f.title,
            sql: f.sql,
            max_rows: f.max_rows.unwrap_or(20),
        })
        .collect();
    Ok(Notify {
        channels,
        summary,
        retries: spec.retries.unwrap_or(3),
        retry_delay,
        timeout,
        link: spec.link,
        off,
    })
}

impl ChannelKind {
    fn named(self, name: String) -> Channel {
        Channel {
            name,
            on: BTreeSet::new(),
            kind: self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Notify, Diagnostic> {
        let value: Value = serde_saphyr::from_str(yaml).unwrap();
        parse_notify(&value, None, Path::new("/p"), &|t: &str| Ok(t.replace("{{ env }}", "")))
    }

    #[test]
    fn notify_reads_channels_and_defaults() {
        let notify = parse(
            "channels:\n  - webhook: https://hooks.example.com/T/abc\n    format: slack\n    on: [failure, summary]\n  - email: {to: [a@x.org], from: etl@x.org, host: smtp.x.org, username: u, password: p}\n",
        )
        .unwrap();
        assert_eq!(notify.channels.len(), 2);
        assert_eq!(notify.channels[0].name, "webhook hooks.example.com");
        assert_eq!(notify.channels[0].on, BTreeSet::from([Event::Failure, Event::Summary]));
        let ChannelKind::Email(email) = &notify.channels[1].kind else {
            panic!()
        };
        assert_eq!((email.port, email.tls), (587, Tls::StartTls));
        assert_eq!(notify.channels[1].on, BTreeSet::from([Event::Failure]));
        assert_eq!((notify.retries, notify.timeout), (3, Duration::from_secs(10)));
        assert_eq!(format!("{:?}", email.credentials), "Some((\"u\", ***))");
    }

    #[test]
    fn notify_turns_off_an_empty_channel_and_refuses_mistakes() {
        let notify = parse("channels:\n  - webhook: \"{{ env }}\"\n    name: ops\n").unwrap();
        assert!(notify.channels.is_empty());
        assert_eq!(notify.off, vec!["ops"]);
        let err = parse("channels:\n  - webhook: https://h.example/x\n    on: [failur]\n").unwrap_err();
        assert!(err.message.contains("lists `failur`"), "{}", err.message);
        assert!(err.help.iter().any(|h| h.contains("failure")), "{:?}", err.help);
        let err = parse("channels:\n  - email: {to: [a@x.org], from: e@x.org, host: smtp.x.org, tls: none, username: u, password: p}\n").unwrap_err();
        assert!(err.message.contains("in clear"), "{}", err.message);
        let err = parse("chanels: []\n").unwrap_err();
        assert!(err.message.contains("unknown field `chanels`"), "{}", err.message);
        let err = parse("channels:\n  - webhook: ftp://h.example/x\n").unwrap_err();
        assert!(err.message.contains("http or https"), "{}", err.message);
    }
}
