//! Sending: a webhook POST (reqwest) or an e-mail over SMTP (lettre),
//! each attempt bounded by `timeout`, failed attempts tried again after
//! `retry_delay`, doubled each time. An answer that says the message will
//! never be taken (a 4xx other than 408 and 429, a permanent SMTP error)
//! is not tried again.

use std::time::Duration;

use lettre::AsyncTransport;
use serde::Serialize;

use super::{Report, message};
use crate::config::{Channel, ChannelKind, Email, Notify, Tls, Webhook};

/// What became of one channel's message.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub channel: String,
    /// The event told: failure, warning, summary, success.
    pub event: String,
    pub attempts: u32,
    /// Messages of earlier builds it missed, sent before this one.
    pub late: usize,
    /// Why it did not arrive, after its last attempt.
    pub error: Option<String>,
    /// Where a message that did not arrive was kept, to send at the next
    /// build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<std::path::PathBuf>,
}

/// An attempt that failed, and whether another could succeed.
struct Failed {
    message: String,
    again: bool,
}

/// One attempt at sending `report` to `channel`.
pub(super) async fn attempt(notify: &Notify, channel: &Channel, report: &Report) -> Result<(), String> {
    send_once(notify, channel, report).await.map_err(|f| f.message)
}

async fn send_once(notify: &Notify, channel: &Channel, report: &Report) -> Result<(), Failed> {
    match &channel.kind {
        ChannelKind::Webhook(hook) => post(hook, report, notify.timeout).await,
        ChannelKind::Email(email) => mail(email, report, notify.timeout).await,
    }
}

pub(super) async fn deliver(notify: &Notify, channel: &Channel, report: &Report) -> Delivery {
    let mut delay = notify.retry_delay;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let attempt = send_once(notify, channel, report).await;
        let error = match attempt {
            Ok(()) => None,
            Err(failed) if failed.again && attempts <= notify.retries => {
                tracing::debug!(channel = %channel.name, attempts, error = %failed.message, "notification failed, trying again");
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
                continue;
            }
            Err(failed) => Some(failed.message),
        };
        return Delivery {
            channel: channel.name.clone(),
            event: report.event.clone(),
            attempts,
            late: 0,
            error,
            kept: None,
        };
    }
}

async fn post(hook: &Webhook, report: &Report, timeout: Duration) -> Result<(), Failed> {
    let body = if hook.slack {
        message::slack(report)
    } else {
        serde_json::to_value(report).unwrap_or_default()
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| Failed {
            message: format!("cannot start an HTTP client: {e}"),
            again: false,
        })?;
    let mut request = client
        .post(hook.url.expose())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::USER_AGENT, concat!("etl/", env!("CARGO_PKG_VERSION")))
        .body(serde_json::to_vec(&body).unwrap_or_default());
    for (name, value) in &hook.headers {
        request = request.header(name.as_str(), value.expose());
    }
    // reqwest's errors carry the URL, and a webhook's URL its token.
    let response = request.send().await.map_err(|e| Failed {
        message: describe(&e.without_url()),
        again: true,
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    Err(Failed {
        message: format!(
            "the endpoint answered {status}: {}",
            text.trim().chars().take(200).collect::<String>()
        ),
        again: status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429,
    })
}

/// An error with its causes, on one line.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their cause's words in their own, or the
        // other way round.
        if cause_text.contains(text.as_str()) {
            text = cause_text;
        } else if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

async fn mail(email: &Email, report: &Report, timeout: Duration) -> Result<(), Failed> {
    let never = |message: String| Failed { message, again: false };
    let mut builder = lettre::Message::builder()
        .from(
            email
                .from
                .parse()
                .map_err(|e| never(format!("`from: {}`: {e}", email.from)))?,
        )
        .subject(message::headline(report))
        .header(lettre::message::header::ContentType::TEXT_PLAIN);
    for to in &email.to {
        builder = builder.to(to.parse().map_err(|e| never(format!("`to: {to}`: {e}")))?);
    }
    let message = builder
        .body(message::text(report, false))
        .map_err(|e| never(format!("cannot write the e-mail: {e}")))?;
    let mut transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(email.host.as_str())
        .port(email.port)
        .timeout(Some(timeout));
    let parameters = || -> Result<lettre::transport::smtp::client::TlsParameters, Failed> {
        let mut tls = lettre::transport::smtp::client::TlsParameters::builder(email.host.clone());
        if let Some(file) = &email.ca_file {
            let pem =
                std::fs::read(file).map_err(|e| never(format!("cannot read `ca_file` {}: {e}", file.display())))?;
            let certificate = lettre::transport::smtp::client::Certificate::from_pem(&pem)
                .map_err(|e| never(format!("`ca_file` {} is not a PEM certificate: {e}", file.display())))?;
            tls = tls.add_root_certificate(certificate);
        }
        tls.build_rustls().map_err(|e| never(format!("cannot set up TLS: {e}")))
    };
    transport = match email.tls {
        Tls::StartTls => transport.tls(lettre::transport::smtp::client::Tls::Required(parameters()?)),
        Tls::Tls => transport.tls(lettre::transport::smtp::client::Tls::Wrapper(parameters()?)),
        Tls::None => transport.tls(lettre::transport::smtp::client::Tls::None),
    };
    if let Some((user, password)) = &email.credentials {
        transport = transport.credentials(lettre::transport::smtp::authentication::Credentials::new(
            user.clone(),
            password.expose().to_owned(),
        ));
    }
    transport.build().send(message).await.map(|_| ()).map_err(|e| Failed {
        again: !e.is_permanent(),
        message: format!("SMTP {}:{}: {}", email.host, email.port, describe(&e)),
    })
}
