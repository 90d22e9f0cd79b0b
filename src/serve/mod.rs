//! `etl serve`: the lake's tables over the PostgreSQL wire protocol, so
//! that BI tools (Looker, Superset, Metabase, Tableau) and any Postgres
//! driver read the gold tables as from Postgres. The protocol and the
//! Postgres catalog (`pg_catalog`, which psql and SQLAlchemy ask) are
//! `datafusion-postgres`'s, over pgwire; etl adds the lake as the catalog
//! (every schema, each table at its latest committed version), read-only
//! statements, the user `etl` with a password, a memory limit per
//! connection and TLS.

mod catalog;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, QueryHook};
use futures::Sink;
use pgwire::api::auth::md5pass::{Md5PasswordAuthStartupHandler, hash_md5_password};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::{AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler};
use pgwire::api::results::Response;
use pgwire::api::{ClientInfo, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::tokio_rustls::rustls;

use crate::diagnostic::{Code, Diagnostic};
use crate::project::Project;

/// The one user `etl serve` knows.
pub const USER: &str = "etl";

/// How `etl serve` serves.
#[derive(Debug, Clone)]
pub struct Options {
    pub bind: IpAddr,
    /// 0: any free port (the one taken is given to `on_ready`).
    pub port: u16,
    /// The password of user `etl`; without one, only a loopback address
    /// may be bound, and any local client of user `etl` is let in.
    pub password: Option<String>,
    /// PEM files of the certificate chain and its private key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Bytes of memory each connection's queries may hold (they spill, or
    /// fail with an error, past it).
    pub memory_limit: Option<usize>,
}

/// Serves the project's lake until the process ends. `on_ready` gets the
/// address listened on, once clients can connect.
pub async fn serve(
    project: &Project,
    base: SessionContext,
    options: Options,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), Diagnostic> {
    if options.password.is_none() && !options.bind.is_loopback() {
        return Err(Diagnostic::error(
            Code::InvalidArgument,
            format!(
                "`etl serve --bind {}` lets other machines in: set a password for user `etl` in ETL_SERVE_PASSWORD",
                options.bind
            ),
        ));
    }
    let tls = options
        .tls
        .as_ref()
        .map(|(cert, key)| tls_acceptor(cert, key))
        .transpose()?;
    let default_catalog = base.state().config().options().catalog.default_catalog.clone();
    {
        let state = base.state_ref();
        state.write().config_mut().options_mut().catalog.information_schema = true;
    }
    let warehouse = warehouse_url(&project.target.lake);
    base.register_catalog(
        default_catalog.as_str(),
        Arc::new(catalog::LakeCatalog::new(base.clone(), warehouse)),
    );
    datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog(
        &base,
        &default_catalog,
        Arc::new(datafusion_postgres::auth::AuthManager::default()),
    )
    .map_err(|e| Diagnostic::error(Code::Internal, format!("cannot set up pg_catalog: {e}")))?;
    base.register_udf(version_udf());
    base.register_udf(to_regtype_udf());
    let address = SocketAddr::new(options.bind, options.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| Diagnostic::error(Code::Io, format!("cannot listen on {address}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Diagnostic::error(Code::Io, format!("cannot listen on {address}: {e}")))?;
    on_ready(bound);
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "a connection could not be accepted");
                continue;
            }
        };
        let ctx = match connection_context(&base, options.memory_limit) {
            Ok(ctx) => ctx,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "no session for a connection");
                continue;
            }
        };
        let handlers = Handlers {
            service: Arc::new(DfSessionService::new_with_hooks(Arc::new(ctx), hooks())),
            password: options.password.clone(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// `version()` as Postgres words it, which drivers parse for the server's
/// version (SQLAlchemy refuses a server whose version it cannot read):
/// the Postgres version whose protocol and catalog pgwire and
/// datafusion-postgres speak, then what answers really.
fn version_udf() -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    let text = format!(
        "PostgreSQL 16.0 on x86_64-pc-linux-gnu (etl {}, Apache DataFusion {}, read-only)",
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION
    );
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.clone()))))),
    )
}

/// `to_regtype(name)`: the OID of a built-in type by any of its names,
/// NULL for a type the server does not have (drivers ask for `hstore` as
/// they connect: there is none). The OIDs are Postgres's own, as in
/// `pg_catalog.pg_type`.
fn to_regtype_udf() -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::array::{Array, Int32Array, StringArray};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    fn oid(name: &str) -> Option<i32> {
        let name = name.trim().trim_start_matches("pg_catalog.").to_ascii_lowercase();
        Some(match name.as_str() {
            "bool" | "boolean" => 16,
            "bytea" => 17,
            "char" => 18,
            "name" => 19,
            "int8" | "bigint" => 20,
            "int2" | "smallint" => 21,
            "int4" | "integer" | "int" => 23,
            "text" => 25,
            "oid" => 26,
            "json" => 114,
            "float4" | "real" => 700,
            "float8" | "double precision" => 701,
            "bpchar" | "character" => 1042,
            "varchar" | "character varying" => 1043,
            "date" => 1082,
            "time" | "time without time zone" => 1083,
            "timestamp" | "timestamp without time zone" => 1114,
            "timestamptz" | "timestamp with time zone" => 1184,
            "interval" => 1186,
            "numeric" | "decimal" => 1700,
            "uuid" => 2950,
            "jsonb" => 3802,
            _ => return None,
        })
    }
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let names = arrays[0]
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| datafusion::error::DataFusionError::Plan("to_regtype takes a type's name".into()))?;
            let oids: Int32Array = (0..names.len())
                .map(|i| (!names.is_null(i)).then(|| oid(names.value(i))).flatten())
                .collect();
            Ok(ColumnarValue::Array(Arc::new(oids)))
        }),
    )
}

/// `<lake>/warehouse/`, where the tables are.
fn warehouse_url(lake: &url::Url) -> url::Url {
    let mut url = lake.clone();
    let path = format!("{}/warehouse/", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

/// A connection's own session: the server's tables and settings, its own
/// memory pool.
fn connection_context(base: &SessionContext, memory_limit: Option<usize>) -> datafusion::error::Result<SessionContext> {
    let state = base.state();
    let Some(limit) = memory_limit else {
        return Ok(SessionContext::new_with_state(state));
    };
    let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env())
        .with_memory_pool(Arc::new(FairSpillPool::new(limit)))
        .build_arc()?;
    let state = SessionStateBuilder::new_from_existing(state)
        .with_runtime_env(runtime)
        .build();
    Ok(SessionContext::new_with_state(state))
}

fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> Result<pgwire::tokio::TlsAcceptor, Diagnostic> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, path: &PathBuf, e: String| {
        Diagnostic::error(Code::InvalidArgument, format!("TLS {what} `{}`: {e}", path.display()))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("certificate", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certificate", cert, e.to_string()))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, e.to_string()))?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| bad("certificate and key", cert, e.to_string()))?;
    Ok(pgwire::tokio::TlsAcceptor::from(Arc::new(config)))
}

/// The statements a connection may run, then datafusion-postgres's own
/// handling of `SET`/`SHOW`, transactions and cursors.
fn hooks() -> Vec<Arc<dyn QueryHook>> {
    vec![
        Arc::new(ReadOnly),
        Arc::new(CursorStatementHook),
        Arc::new(SetShowHook),
        Arc::new(TransactionStatementHook),
    ]
}

/// Refuses what would change anything: the lake is written by `etl build`.
struct ReadOnly;

impl ReadOnly {
    /// A savepoint's answer, or the refusal of a statement that writes.
    fn answer(statement: &Statement) -> Option<PgWireResult<Response>> {
        savepoint(statement)
            .map(Ok)
            .or_else(|| Self::refuse(statement).map(Err))
    }

    fn refuse(statement: &Statement) -> Option<PgWireError> {
        let allowed = matches!(
            statement,
            Statement::Query(_)
                | Statement::Explain { .. }
                | Statement::ExplainTable { .. }
                | Statement::ShowTables { .. }
                | Statement::ShowColumns { .. }
                | Statement::ShowVariable { .. }
                | Statement::ShowVariables { .. }
                | Statement::ShowStatus { .. }
                | Statement::ShowCatalogs { .. }
                | Statement::ShowSchemas { .. }
                | Statement::ShowFunctions { .. }
                | Statement::Set(_)
                | Statement::StartTransaction { .. }
                | Statement::Commit { .. }
                | Statement::Rollback { .. }
                | Statement::Savepoint { .. }
                | Statement::ReleaseSavepoint { .. }
                | Statement::Declare { .. }
                | Statement::Fetch { .. }
                | Statement::Close { .. }
                | Statement::Discard { .. }
                | Statement::Deallocate { .. }
        );
        let first_word = statement.to_string();
        let first_word = first_word.split_whitespace().next().unwrap_or_default().to_uppercase();
        (!allowed).then(|| {
            PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_owned(),
                // read_only_sql_transaction
                "25006".to_owned(),
                format!("cannot execute {first_word}: `etl serve` is read-only; tables are written by `etl build`"),
            )))
        })
    }
}

/// A savepoint's statement, answered as done: nothing a read-only
/// session does needs undoing (SQLAlchemy opens one as it connects).
fn savepoint(statement: &Statement) -> Option<Response> {
    use pgwire::api::results::Tag;
    match statement {
        Statement::Savepoint { .. } => Some(Response::Execution(Tag::new("SAVEPOINT"))),
        Statement::ReleaseSavepoint { .. } => Some(Response::Execution(Tag::new("RELEASE"))),
        _ => None,
    }
}

#[async_trait]
impl QueryHook for ReadOnly {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::answer(statement)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if savepoint(statement).is_some() {
            let empty = datafusion::logical_expr::EmptyRelation {
                produce_one_row: false,
                schema: Arc::new(datafusion::common::DFSchema::empty()),
            };
            return Some(Ok(LogicalPlan::EmptyRelation(empty)));
        }
        Self::refuse(statement).map(Err)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::answer(statement)
    }
}

/// One connection's handlers: its session, and how it logs in.
struct Handlers {
    service: Arc<DfSessionService>,
    password: Option<String>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(Login {
            md5: self.password.clone().map(|password| {
                Md5PasswordAuthStartupHandler::new(
                    Arc::new(EtlPassword { password }),
                    Arc::new(DefaultServerParameterProvider::default()),
                )
            }),
        })
    }
}

/// User `etl` only: with its password (MD5, salted per connection) when
/// the server has one, else let in (loopback only).
struct Login {
    md5: Option<Md5PasswordAuthStartupHandler<EtlPassword, DefaultServerParameterProvider>>,
}

#[async_trait]
impl StartupHandler for Login {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(startup) = &message {
            let user = startup.parameters.get("user").map(String::as_str).unwrap_or_default();
            if user != USER {
                return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".to_owned(),
                    // invalid_authorization_specification
                    "28000".to_owned(),
                    format!("role \"{user}\" does not exist: `etl serve` knows user `{USER}`"),
                ))));
            }
        }
        match &self.md5 {
            Some(md5) => md5.on_startup(client, message).await,
            None => Trust.on_startup(client, message).await,
        }
    }
}

struct Trust;

impl NoopStartupHandler for Trust {}

/// The password of user `etl`, as MD5 authentication asks for it: salted.
#[derive(Debug)]
struct EtlPassword {
    password: String,
}

#[async_trait]
impl AuthSource for EtlPassword {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let salt = salt();
        let hashed = hash_md5_password(login.user().unwrap_or(USER), &self.password, &salt);
        Ok(Password::new(Some(salt.to_vec()), hashed.into_bytes()))
    }
}

/// Four bytes no client can guess ahead: from the standard library's
/// randomly keyed hasher, a counter and the time.
fn salt() -> [u8; 4] {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let bytes = hasher.finish().to_le_bytes();
    [bytes[0], bytes[1], bytes[2], bytes[3]]
}
