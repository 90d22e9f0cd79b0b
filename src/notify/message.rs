//! A [`Report`] written for people: plain text (e-mail), Slack's
//! `mrkdwn` blocks; webhooks in JSON get the report itself.

use std::fmt::Write;

use serde_json::{Value, json};

use super::{FigureResult, Report};

/// The body of an e-mail, or of a Slack message (`slack`: code blocks
/// around tables, bold titles).
pub fn text(report: &Report, slack: bool) -> String {
    sections(report, slack)
        .into_iter()
        .map(|(title, body)| match title {
            Some(title) if slack => format!("*{title}*\n{body}"),
            Some(title) => format!("{title}\n{}\n{body}", "-".repeat(title.chars().count())),
            None => body,
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Slack's incoming-webhook payload: the headline as `text` (what
/// notifications show) and one section block per part.
pub fn slack(report: &Report) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": clip(&headline(report), 150)},
    })];
    for (title, body) in sections(report, true).into_iter().skip(1) {
        let text = match title {
            Some(title) => format!("*{title}*\n{body}"),
            None => body,
        };
        // A section's text is at most 3000 characters.
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&text, 2900)}}));
    }
    json!({"text": headline(report), "blocks": blocks})
}

/// The headline, said to be late when the message is.
pub fn headline(report: &Report) -> String {
    if report.late {
        format!(
            "[sent late, from {} UTC] {}",
            report.finished_at.format("%Y-%m-%d %H:%M"),
            report.headline
        )
    } else {
        report.headline.clone()
    }
}

/// The parts of the message, each with its title, the headline first.
fn sections(report: &Report, slack: bool) -> Vec<(Option<&'static str>, String)> {
    let mut out = Vec::new();
    let mut head = headline(report);
    let _ = write!(
        head,
        "\n{} at {} UTC, {:.1} s, lake {}",
        report.command,
        report.finished_at.format("%Y-%m-%d %H:%M:%S"),
        report.elapsed_seconds,
        report.lake
    );
    if !report.counts.is_empty() {
        let counts: Vec<String> = report.counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
        let _ = write!(head, "\n{}", counts.join(", "));
    }
    out.push((None, head));
    if !report.errors.is_empty() {
        out.push((Some("Could not run"), bullets(report.errors.iter().cloned())));
    }
    let item = |i: &super::Item| {
        format!(
            "{} {} ({}): {}",
            i.status.to_uppercase(),
            i.name,
            i.resource_type,
            i.message
        )
    };
    if !report.failed.is_empty() {
        out.push((Some("Failed"), bullets(report.failed.iter().map(item))));
    }
    if !report.warned.is_empty() {
        out.push((Some("Warned"), bullets(report.warned.iter().map(item))));
    }
    let stale: Vec<String> = report
        .freshness
        .iter()
        .filter(|f| f.status != "pass")
        .map(|f| format!("{} {}: {}", f.status.to_uppercase(), f.source, f.message))
        .collect();
    if !stale.is_empty() {
        out.push((Some("Stale sources"), bullets(stale.into_iter())));
    } else if !report.freshness.is_empty() {
        let n = report.freshness.len();
        out.push((
            None,
            format!("{n} source{} fresh", if n == 1 { " is" } else { "s are all" }),
        ));
    }
    if !report.rates.is_empty() {
        let rows: Vec<Vec<Value>> = report
            .rates
            .iter()
            .map(|r| {
                vec![
                    json!(r.entity),
                    json!(format!("{:.2}%", r.percent)),
                    json!(r.failures),
                    json!(r.rows),
                    json!(r.warn_if),
                    json!(r.error_if),
                    json!(r.status),
                ]
            })
            .collect();
        let columns = ["entity", "rate", "rejected", "rows", "warn if", "error if", "status"].map(str::to_owned);
        out.push((Some("Rates against their thresholds"), table(&columns, &rows, slack)));
    }
    if !report.rejected.is_empty() {
        out.push((
            Some("Rejected rows"),
            bullets(report.rejected.iter().map(|r| {
                let reasons: Vec<String> = r.reasons.iter().map(|(why, n)| format!("{why} {n}")).collect();
                format!("{}: {} ({})", r.model, r.rows, reasons.join(", "))
            })),
        ));
    }
    for figure in &report.figures {
        out.push((None, figure_text(figure, slack)));
    }
    out.push((Some("Where to look"), bullets(report.where_to_look.iter().cloned())));
    out
}

fn figure_text(figure: &FigureResult, slack: bool) -> String {
    let title = if slack {
        format!("*{}*", figure.title)
    } else {
        format!("{}\n{}", figure.title, "-".repeat(figure.title.chars().count()))
    };
    let body = match &figure.error {
        Some(error) => format!("could not be computed: {error}"),
        None if figure.rows.is_empty() => "no rows".to_owned(),
        None => {
            let mut body = table(&figure.columns, &figure.rows, slack);
            if figure.truncated {
                body.push_str(&format!("\n(the first {} rows)", figure.rows.len()));
            }
            body
        }
    };
    format!("{title}\n{body}")
}

fn bullets(items: impl Iterator<Item = String>) -> String {
    items.map(|i| format!("- {i}")).collect::<Vec<_>>().join("\n")
}

/// A table in monospace: a code block in Slack.
fn table(columns: &[String], rows: &[Vec<Value>], slack: bool) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::ASCII_MARKDOWN);
    t.set_header(columns);
    for row in rows {
        t.add_row(row.iter().map(|v| match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }));
    }
    if slack { format!("```\n{t}\n```") } else { t.to_string() }
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}
