//! `etl docs generate`: target/manifest.json (with each model's column
//! lineage), target/catalog.json (each built relation's columns and
//! types, read from the lake), as dbt's docs generate writes them, and the
//! docs site in target/docs/. `etl docs serve`: that site over HTTP.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use etl::artifacts;
use etl::diagnostic::{Code, Diagnostic};

use super::{Global, Output, invocation_id};

#[derive(Subcommand, Debug)]
pub enum DocsCommand {
    /// Write target/manifest.json, target/catalog.json and the site in
    /// target/docs/ (open target/docs/index.html, or `etl docs serve`).
    Generate,
    /// Serve target/docs/ on localhost.
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The port to listen on.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The address to listen on: loopback unless said otherwise.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
}

pub async fn run(global: &Global, command: &DocsCommand, out: &Output) -> u8 {
    match command {
        DocsCommand::Generate => generate(global, out).await,
        DocsCommand::Serve(args) => serve(global, args, out),
    }
}

async fn generate(global: &Global, out: &Output) -> u8 {
    let invocation = invocation_id();
    let prepared = match global.prepare(out, &invocation) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let root = prepared.project.root.clone();
    // Only a session that cannot start fails it (bad storage options).
    let docs = match etl::docs(&prepared, global.memory_limit.as_deref()).await {
        Ok(d) => d,
        Err(diag) => {
            out.fatal(&[diag], Some(&root));
            return 2;
        }
    };
    let site = artifacts::target_dir(&prepared.project).join("docs");
    let written = artifacts::write_json(&prepared.project, "manifest.json", &docs.manifest)
        .and_then(|_| artifacts::write_json(&prepared.project, "catalog.json", &docs.catalog))
        .map_err(|e| format!("cannot write target/: {e}"))
        .and_then(|_| artifacts::site::write_site(&site, &docs.site));
    if let Err(e) = written {
        out.fatal(&[Diagnostic::error(Code::Io, e)], Some(&root));
        return 2;
    }
    // A model that does not plan has no lineage: said, not fatal.
    let warnings: Vec<Diagnostic> = docs
        .not_planned
        .into_iter()
        .map(|d| Diagnostic {
            severity: etl::diagnostic::Severity::Warning,
            ..d
        })
        .collect();
    out.diagnostics(&warnings, Some(&root));
    let count = |key: &str| docs.catalog[key].as_object().map_or(0, |m| m.len());
    out.line(&format!(
        "Catalog of {} relations and {} sources written to target/catalog.json",
        count("nodes"),
        count("sources")
    ));
    if let Some(errors) = docs.catalog["errors"].as_array() {
        for e in errors {
            out.line(&format!("warning: {}", e.as_str().unwrap_or_default()));
        }
    }
    for skipped in &docs.skipped {
        out.line(&format!("  lineage not known: {skipped}"));
    }
    let runs = docs.site["runs"].as_array().map_or(0, Vec::len);
    out.line(&format!(
        "Docs site written to target/docs/ (the last {runs} run{} in its quality report): open \
         target/docs/index.html, or run `etl docs serve`",
        if runs == 1 { "" } else { "s" }
    ));
    0
}

fn serve(global: &Global, args: &ServeArgs, out: &Output) -> u8 {
    let invocation = invocation_id();
    let prepared = match global.prepare(out, &invocation) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let root = prepared.project.root.clone();
    let dir = artifacts::target_dir(&prepared.project).join("docs");
    if !dir.join("index.html").is_file() {
        let diag = Diagnostic::error(Code::Io, format!("no docs site in {}", dir.display()))
            .with_help("run `etl docs generate` first");
        out.fatal(&[diag], Some(&root));
        return 2;
    }
    let address = format!("{}:{}", args.bind, args.port);
    let server = match tiny_http::Server::http(&address) {
        Ok(s) => s,
        Err(e) => {
            out.fatal(
                &[Diagnostic::error(Code::Io, format!("cannot listen on {address}: {e}"))],
                Some(&root),
            );
            return 2;
        }
    };
    out.line(&format!("Serving target/docs/ at http://{address}/ (Ctrl-C stops)"));
    for request in server.incoming_requests() {
        let response = respond(&dir, request.url());
        let _ = request.respond(response);
    }
    0
}

/// The file `url` names in `dir`, never outside it.
fn respond(dir: &Path, url: &str) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let path = url.split(['?', '#']).next().unwrap_or("/");
    let name = path.trim_start_matches('/');
    let name = if name.is_empty() { "index.html" } else { name };
    let outside = name.contains(['\\', ':']) || name.split('/').any(|part| part == ".." || part.starts_with('.'));
    let file: Option<PathBuf> = (!outside).then(|| dir.join(name)).filter(|p| p.is_file());
    let Some(bytes) = file.and_then(|p| std::fs::read(p).ok()) else {
        return tiny_http::Response::from_string("not found").with_status_code(404);
    };
    let kind = match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    let header = tiny_http::Header::from_bytes("Content-Type", kind).expect("a valid header");
    tiny_http::Response::from_data(bytes).with_header(header)
}
