//! `etl serve`: the lake's tables over the PostgreSQL wire protocol.

use clap::Args;
use etl::diagnostic::{Code, Diagnostic};

use super::{Global, Output, invocation_id};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The port to listen on (0: any free one, printed).
    #[arg(long, default_value_t = 5433)]
    port: u16,
    /// The address to listen on: loopback unless said otherwise (another
    /// address needs ETL_SERVE_PASSWORD).
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// TLS: the certificate chain, PEM (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// TLS: the certificate's private key, PEM (with --tls-cert).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

/// The password of user `etl`.
const PASSWORD_VAR: &str = "ETL_SERVE_PASSWORD";

pub async fn run(global: &Global, args: &ServeArgs, out: &Output) -> u8 {
    let prepared = match global.prepare(out, &invocation_id()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let root = prepared.project.root.clone();
    let fail = |diag: Diagnostic| {
        out.fatal(&[diag], Some(&root));
        2
    };
    let bind = match args.bind.parse::<std::net::IpAddr>() {
        Ok(ip) => ip,
        Err(e) => {
            return fail(Diagnostic::error(
                Code::InvalidArgument,
                format!("`--bind {}`: {e}", args.bind),
            ));
        }
    };
    let memory_limit = match global.memory_limit.as_deref().map(etl::config::parse_size).transpose() {
        Ok(limit) => limit,
        Err(e) => {
            return fail(Diagnostic::error(
                Code::InvalidArgument,
                format!("`--memory-limit`: {e}"),
            ));
        }
    };
    let password = std::env::var(PASSWORD_VAR).ok().filter(|p| !p.is_empty());
    // Per connection, `--memory-limit` is the connection's own.
    let ctx = match etl::session(&prepared.project, None) {
        Ok(ctx) => ctx,
        Err(diag) => return fail(diag),
    };
    let options = etl::serve::Options {
        bind,
        port: args.port,
        password: password.clone(),
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
        memory_limit,
    };
    let tls = options.tls.is_some();
    let served = etl::serve::serve(&prepared.project, ctx, options, |address| {
        if out.json() {
            out.event(serde_json::json!({
                "event": "serving", "address": address.to_string(), "port": address.port(),
                "user": etl::serve::USER, "password": password.is_some(), "tls": tls,
            }));
        } else {
            out.line(&format!(
                "Serving the lake's tables over PostgreSQL on {address} (user `{}`, {}{}); \
                 e.g. psql -h {} -p {} -U {} -c 'select * from gold.kpis_produit'",
                etl::serve::USER,
                if password.is_some() {
                    "password from ETL_SERVE_PASSWORD"
                } else {
                    "no password: loopback only"
                },
                if tls { ", TLS" } else { "" },
                address.ip(),
                address.port(),
                etl::serve::USER,
            ));
        }
    })
    .await;
    match served {
        Ok(()) => 0,
        Err(diag) => fail(diag),
    }
}
