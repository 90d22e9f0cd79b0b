//! Command-line interface: clap definitions and the glue from arguments to
//! library calls. Printing happens here and in [`output`] only.

mod build;
mod clean;
mod compile;
mod debug;
mod deps;
mod docs;
mod init;
mod lineage;
mod live;
mod ls;
mod notify;
mod operation;
mod output;
mod retry;
mod serve;
mod show;
mod source;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use etl::diagnostic::{Code, Diagnostic};
use etl::project::LoadOptions;
use etl::render::RenderOptions;
pub use output::Output;

#[derive(Parser, Debug)]
#[command(
    name = "etl",
    version,
    about = "A SQL-first transformation engine: dbt-style models built with DataFusion into Delta Lake tables"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: Global,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The project directory (holding project.yaml or dbt_project.yml).
    #[arg(long, global = true, default_value = ".", env = "ETL_PROJECT_DIR")]
    project_dir: PathBuf,
    /// The target to build against (default: the project's, else `dev`).
    #[arg(long, global = true, env = "ETL_TARGET")]
    target: Option<String>,
    /// The folder of a dbt project's profiles.yml (default: the project's,
    /// else ~/.dbt).
    #[arg(long, global = true, env = "DBT_PROFILES_DIR")]
    profiles_dir: Option<PathBuf>,
    /// Vars as a YAML mapping, overriding the project's: `--vars '{day: 2024-01-31}'`.
    #[arg(long, global = true)]
    vars: Option<String>,
    /// Nodes built at once (default: the number of cores).
    #[arg(long, global = true, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    threads: Option<usize>,
    /// Memory the build may use before operators spill to disk (`2GiB`).
    #[arg(long, global = true)]
    memory_limit: Option<String>,
    /// Nodes to select: names, `+name` (with parents), `name+` (with children).
    #[arg(short = 's', long = "select", global = true, num_args = 1..)]
    select: Vec<String>,
    /// Nodes to leave out, same syntax as `--select`.
    #[arg(long, global = true, num_args = 1..)]
    exclude: Vec<String>,
    /// A named selection from selectors.yml.
    #[arg(long, global = true)]
    selector: Option<String>,
    /// The target/ folder of an earlier run, for `state:` and `result:` selectors.
    #[arg(long, global = true)]
    state: Option<PathBuf>,
    /// Build with every ref and source read as empty: checks the SQL and
    /// the schemas of a change without reading data (dbt's `--empty`).
    /// Tables are written with no rows; exports, file bookkeeping and
    /// snapshots' history are left alone.
    #[arg(long, global = true)]
    empty: bool,
    /// Read the nodes this run does not build from where the `--state`
    /// run wrote them, when this lake has none of its own (dbt's defer).
    #[arg(long, global = true)]
    defer: bool,
    /// With `--defer`: read the state's relations even when this lake has
    /// its own.
    #[arg(long, global = true)]
    favor_state: bool,
    /// How tests follow the nodes they test: eager, cautious, buildable, empty.
    #[arg(long, global = true, default_value = "eager", value_parser = ["eager", "cautious", "buildable", "empty"])]
    indirect_selection: String,
    /// Rebuild incremental models from scratch (and every node, up to date or not).
    #[arg(long, global = true)]
    full_refresh: bool,
    /// Build every selected node, even those whose SQL, config and inputs
    /// are unchanged since their last build.
    #[arg(long, global = true)]
    force: bool,
    /// Microbatch models process the batches from this time (UTC, such as
    /// 2024-01-31 or 2024-01-31T06:00:00) instead of their own range.
    #[arg(long, global = true, value_parser = parse_event_time)]
    event_time_start: Option<chrono::NaiveDateTime>,
    /// Microbatch models process the batches before this time.
    #[arg(long, global = true, value_parser = parse_event_time)]
    event_time_end: Option<chrono::NaiveDateTime>,
    /// After a build, print where the time went: per phase (load, render,
    /// plan, execute, commit) and for the slowest nodes; after `compile`,
    /// per stage.
    #[arg(long, global = true)]
    timings: bool,
    /// `text` for people, `json` for machines (one object per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

fn parse_event_time(text: &str) -> Result<chrono::NaiveDateTime, String> {
    etl::config::parse_time(text)
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
struct BuildArgs {
    /// Keep running: list the files of the sources the selection reads
    /// every `--interval`, and build again when they change; SIGTERM or
    /// Ctrl-C stops once the running build has committed (exit 0).
    #[arg(long)]
    watch: bool,
    /// With `--watch`: how often the sources are listed (`60s`, `5m`).
    #[arg(long, requires = "watch", default_value = "60s", value_parser = humantime::parse_duration)]
    interval: std::time::Duration,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load seeds, build the models and run their data tests, in DAG order.
    Build(BuildArgs),
    /// Build the models (not the seeds).
    Run,
    /// Load the seeds.
    Seed,
    /// Run the data tests of the selected nodes against what is in the lake.
    Test,
    /// Build the snapshots: each row's history, as dbt's SCD type 2.
    Snapshot,
    /// Render the models to target/compiled/ and plan each against its
    /// inputs' schemas, without running anything.
    Compile,
    /// Where a column comes from, or (`--downstream`) what derives from it:
    /// `etl lineage kpis_produit.revenue`.
    Lineage(lineage::LineageArgs),
    /// Load and render the project and write target/manifest.json.
    Parse,
    /// Check the project, its target, its packages and that the lake is
    /// reachable.
    Debug,
    /// Make a new project that builds, in a folder of its name.
    Init(init::InitArgs),
    /// Run a macro against the lake: `etl run-operation name --args '{k: v}'`.
    RunOperation(operation::OperationArgs),
    /// `etl docs generate`: target/catalog.json, as dbt writes it.
    Docs {
        #[command(subcommand)]
        command: docs::DocsCommand,
    },
    /// Serve the lake's tables over the PostgreSQL wire protocol (BI
    /// tools, psql, any Postgres driver), read-only.
    Serve(serve::ServeArgs),
    /// List the project's nodes.
    #[command(alias = "list")]
    Ls(ls::LsArgs),
    /// Print the rows of a model, seed or source.
    Show(show::ShowArgs),
    /// Remove target/ (compiled SQL and artifacts; the lake is left alone).
    Clean,
    /// Install the git packages of packages.yml into dbt_packages/.
    Deps,
    /// Run again what errored, failed or was skipped in the last run.
    Retry,
    /// `etl notify test`: a test message to each channel of the
    /// target's `notify:`.
    Notify {
        #[command(subcommand)]
        command: notify::NotifyCommand,
    },
    /// Commands about sources: `etl source freshness`.
    Source {
        #[command(subcommand)]
        command: source::SourceCommand,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output::new(cli.global.log_format);
    out.init_tracing();
    // SQL parsing and DataFusion's planning recurse once per level of a
    // query's nesting, in frames that are large in a debug build: tokio's
    // 2 MiB threads overflowed on the reference project's nested test
    // queries there. The stack is reserved, not committed.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(16 << 20)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out.fatal(
                &[Diagnostic::error(
                    Code::Runtime,
                    format!("cannot start the async runtime: {e}"),
                )],
                None,
            );
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(async {
        match &cli.command {
            Command::Build(BuildArgs { watch: false, .. }) => build::run(&cli.global, &out, etl::Mode::Build).await,
            Command::Build(BuildArgs { watch: true, interval }) => watch::run(&cli.global, &out, *interval).await,
            Command::Run => build::run(&cli.global, &out, etl::Mode::Run).await,
            Command::Seed => build::run(&cli.global, &out, etl::Mode::Seed).await,
            Command::Test => build::run(&cli.global, &out, etl::Mode::Test).await,
            Command::Snapshot => build::run(&cli.global, &out, etl::Mode::Snapshot).await,
            Command::Compile => compile::run(&cli.global, &out).await,
            Command::Parse => compile::parse(&cli.global, &out),
            Command::Lineage(args) => lineage::run(&cli.global, args, &out).await,
            Command::Debug => debug::run(&cli.global, &out).await,
            Command::Init(args) => init::run(&cli.global, args, &out),
            Command::RunOperation(args) => operation::run(&cli.global, args, &out).await,
            Command::Docs { command } => docs::run(&cli.global, command, &out).await,
            Command::Ls(args) => ls::run(&cli.global, args, &out),
            Command::Serve(args) => serve::run(&cli.global, args, &out).await,
            Command::Show(args) => show::run(&cli.global, args, &out).await,
            Command::Clean => clean::run(&cli.global, &out),
            Command::Deps => deps::run(&cli.global, &out),
            Command::Retry => retry::run(&cli.global, &out).await,
            Command::Source { command } => source::run(&cli.global, command, &out).await,
            Command::Notify { command } => notify::run(&cli.global, command, &out).await,
        }
    });
    // The check's cache, written beside what followed the check.
    etl::check::finish_saving();
    ExitCode::from(code)
}

impl Global {
    fn load_options(&self) -> LoadOptions {
        LoadOptions {
            target: self.target.clone(),
            vars: self.vars.clone(),
            profiles_dir: self.profiles_dir.clone(),
        }
    }

    fn render_options(&self, invocation_id: &str) -> RenderOptions {
        RenderOptions {
            full_refresh: self.full_refresh,
            run_started_at: chrono::Utc::now(),
            invocation_id: invocation_id.to_owned(),
            incremental: Default::default(),
        }
    }

    /// Loads, renders and builds the DAG, printing its warnings, or the
    /// diagnostics it failed with.
    fn prepare(&self, out: &Output, invocation_id: &str) -> Result<etl::Prepared, u8> {
        self.prepare_or_say(out, invocation_id).map_err(|_| 2)
    }

    /// [`Self::prepare`], with the errors that stopped it (printed).
    fn prepare_or_say(&self, out: &Output, invocation_id: &str) -> Result<etl::Prepared, Vec<Diagnostic>> {
        let prepared = etl::prepare(
            &self.project_dir,
            &self.load_options(),
            &self.render_options(invocation_id),
        )
        .inspect_err(|diags| out.fatal(diags, Some(&self.project_dir)))?;
        out.warnings(&prepared.warnings(), &prepared.project.root);
        Ok(prepared)
    }
}

impl Global {
    /// `--defer --state DIR [--favor-state]`.
    fn defer(&self) -> Result<Option<etl::Defer>, Diagnostic> {
        match (self.defer, &self.state) {
            (false, _) if self.favor_state => Err(Diagnostic::error(
                Code::MissingState,
                "`--favor-state` goes with `--defer --state DIR`",
            )),
            (false, _) => Ok(None),
            (true, None) => Err(Diagnostic::error(
                Code::MissingState,
                "`--defer` reads the relations of an earlier run: give its target/ folder with `--state DIR`",
            )),
            (true, Some(state)) => Ok(Some(etl::Defer {
                state: state.clone(),
                favor_state: self.favor_state,
            })),
        }
    }

    /// What `--select`, `--exclude`, `--selector`, `--indirect-selection`
    /// and `--state` ask for.
    fn selecting(&self) -> etl::Selecting {
        etl::Selecting {
            select: self.select.clone(),
            exclude: self.exclude.clone(),
            selector: self.selector.clone(),
            indirect_selection: self.indirect_selection.clone(),
            state: self.state.clone(),
            only: None,
        }
    }

    /// Resolves the selection against the project, printing warnings; a
    /// malformed selector is a usage error (exit 2).
    fn selection(&self, prepared: &etl::Prepared, out: &Output) -> Result<Vec<petgraph::graph::NodeIndex>, u8> {
        let root = &prepared.project.root;
        match etl::select(prepared, &self.selecting()) {
            Ok(selection) => {
                out.warnings(&selection.warnings, root);
                Ok(selection.nodes)
            }
            Err(diag) => {
                out.fatal(&[diag], Some(root));
                Err(2)
            }
        }
    }

    /// The project's DataFusion session, printing why when there is none.
    fn session(
        &self,
        project: &etl::project::Project,
        out: &Output,
    ) -> Result<datafusion::prelude::SessionContext, u8> {
        etl::session(project, self.memory_limit.as_deref()).map_err(|diag| {
            out.fatal(&[diag], Some(&project.root));
            2
        })
    }
}

/// A fresh id per invocation, as dbt writes in its artifacts.
fn invocation_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{:016x}-{:08x}", now.as_nanos() as u64, std::process::id())
}
