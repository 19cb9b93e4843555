//! The console's query handlers for `pgwire`: the simple protocol (several commands in one
//! query, each answered in turn) and the extended one (a command per prepared statement, its
//! columns described before it runs, values in text or binary as the client asks).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use tracing::info;

use super::answer::{self, Refused, Role};
use super::command::{self, Command};
use super::table::{self, Column, Kind, Table, Value};
use crate::shared::Shared;

/// `42601`.
const SYNTAX_ERROR: &str = "42601";

/// Serves one logged-in console connection.
pub struct Handler {
    pub shared: Arc<Shared>,
    pub role: Role,
    pub user: String,
    parser: Arc<Parser>,
}

impl Handler {
    pub fn new(shared: Arc<Shared>, role: Role, user: String) -> Handler {
        Handler {
            shared,
            role,
            user,
            parser: Arc::new(Parser),
        }
    }

    async fn answer(
        &self,
        command: &Command,
        format: Option<&Format>,
    ) -> Result<Response, Refused> {
        if command.is_control() {
            info!(user = %self.user, %command, "console command");
        }
        let table = answer::run(&self.shared, self.role, command).await?;
        encode(command.tag(), table, format).map_err(|e| Refused {
            code: "XX000",
            message: format!("cannot encode the answer: {e}"),
            detail: None,
        })
    }
}

/// The error a refusal is sent as.
fn error(refused: Refused) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".into(), refused.code.into(), refused.message);
    info.detail = refused.detail;
    info
}

fn syntax(e: command::ParseError) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".into(), SYNTAX_ERROR.into(), e.0);
    info.hint = Some(format!(
        "the console's commands: {}",
        command::HELP
            .iter()
            .map(|(c, _)| *c)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    info
}

fn pg_type(kind: Kind) -> Type {
    match kind {
        Kind::Text => Type::TEXT,
        Kind::Int => Type::INT8,
        Kind::Float => Type::FLOAT8,
        Kind::Bool => Type::BOOL,
        Kind::Time => Type::TIMESTAMPTZ,
    }
}

/// The row description of `columns`, each in the format the client asked for (text by default).
fn fields(columns: &[Column], format: Option<&Format>) -> Vec<FieldInfo> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let format = format.map_or(FieldFormat::Text, |f| f.format_for(i));
            FieldInfo::new(c.name.into(), None, None, pg_type(c.kind), format)
        })
        .collect()
}

/// `table` as a response: rows with their description, or only the tag when the command has no
/// columns.
fn encode(tag: &str, table: Table, format: Option<&Format>) -> PgWireResult<Response> {
    if table.columns.is_empty() {
        return Ok(Response::Execution(Tag::new(tag)));
    }
    let schema = Arc::new(fields(table.columns, format));
    let mut encoder = DataRowEncoder::new(schema.clone());
    let mut rows = Vec::with_capacity(table.rows.len());
    for row in table.rows {
        for value in row {
            match value {
                Value::Null => encoder.encode_field(&None::<i64>)?,
                Value::Text(s) => encoder.encode_field(&s)?,
                Value::Int(n) => encoder.encode_field(&n)?,
                Value::Float(x) => encoder.encode_field(&x)?,
                Value::Bool(b) => encoder.encode_field(&b)?,
                Value::Time(t) => encoder.encode_field(&t)?,
            }
        }
        rows.push(Ok(encoder.take_row()));
    }
    let mut response = QueryResponse::new(schema, futures::stream::iter(rows));
    response.set_command_tag(tag);
    Ok(Response::Query(response))
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut responses = Vec::new();
        // As PostgreSQL does: the commands before a failing one are answered, those after it
        // are not run.
        for piece in command::split(query) {
            let answered = match command::parse(piece) {
                Ok(command) => self.answer(&command, None).await.map_err(error),
                Err(e) => Err(syntax(e)),
            };
            match answered {
                Ok(response) => responses.push(response),
                Err(e) => {
                    responses.push(Response::Error(Box::new(e)));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = Command;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Command>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Command>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let command = &portal.statement.statement;
        self.answer(command, Some(&portal.result_column_format))
            .await
            .map_err(|e| PgWireError::UserError(Box::new(error(e))))
    }
}

/// Parses a prepared statement's text: one console command, no parameters.
#[derive(Debug, Default)]
pub struct Parser;

#[async_trait]
impl QueryParser for Parser {
    type Statement = Command;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Command>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let refuse = |e| PgWireError::UserError(Box::new(syntax(e)));
        match command::split(sql).as_slice() {
            [] => Ok(None),
            [one] => command::parse(one).map(Some).map_err(refuse),
            _ => Err(refuse(command::ParseError(
                "a prepared statement holds one console command".into(),
            ))),
        }
    }

    fn get_parameter_types(&self, _statement: &Command) -> PgWireResult<Vec<Type>> {
        Ok(Vec::new())
    }

    fn get_result_schema(
        &self,
        statement: &Command,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(fields(table::columns(statement), format))
    }
}
