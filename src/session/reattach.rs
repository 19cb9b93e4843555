//! Giving a session a new upstream connection when its old one is gone (the server restarted for
//! a copy window, crashed, or was restarted by someone else) while the session was idle: wait for
//! the server (up to `hold_timeout`), log in again on the client's behalf, replay the session's
//! state, and only then let the client's next request through. The client sees nothing.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info};

use crate::control::Attached;
use crate::protocol::backend;
use crate::protocol::notice::sqlstate;
use crate::registry::{BackendKey, SessionInfo};
use crate::replay::{Doubt, Plan, Unreplayable};
use crate::shared::Shared;
use crate::tls::MaybeTls;

use super::converse::{ConverseError, converse};
use crate::auth::upstream_login::{Credentials, LoginError, upstream_login};

/// A login on a new upstream connection, done.
pub struct LoggedIn {
    pub server: MaybeTls,
    /// The BackendKeyData the server sent, if any.
    pub key: Option<BackendKey>,
}

/// Why a login on a new connection did not succeed.
#[derive(Debug)]
pub enum LoginFailure {
    /// The connection broke, or the server is not ready yet (`57P03`): try again.
    Transient(String),
    /// The server refused, or cannot be answered: give up.
    Refused(String),
}

/// A boxed future, for [`Relogin`].
pub type LoginFuture<'a> =
    Pin<Box<dyn Future<Output = Result<LoggedIn, LoginFailure>> + Send + 'a>>;

/// Logs a fresh upstream connection in as the session's user, without the client: sends the
/// client's StartupMessage and answers the server's authentication with what the session kept
/// (the client's SCRAM key, or a configured password), reading up to and including the first
/// ReadyForQuery. The error says why, for the log and the client.
pub trait Relogin: Send + Sync {
    fn login<'a>(&'a self, server: MaybeTls, startup: &'a [u8]) -> LoginFuture<'a>;
}

/// Logs in with the credentials the session kept from its client's login (see
/// [`super::login`]).
pub struct CredentialLogin {
    pub credentials: Credentials,
}

impl Relogin for CredentialLogin {
    fn login<'a>(&'a self, mut server: MaybeTls, startup: &'a [u8]) -> LoginFuture<'a> {
        Box::pin(async move {
            let outcome = match upstream_login(&mut server, startup, &self.credentials).await {
                Ok(outcome) => outcome,
                Err(e @ (LoginError::Io(_) | LoginError::Closed)) => {
                    return Err(LoginFailure::Transient(e.to_string()));
                }
                Err(LoginError::Refused {
                    sqlstate: Some(code),
                    ..
                }) if code == sqlstate::CANNOT_CONNECT_NOW => {
                    return Err(LoginFailure::Transient("the server is starting".into()));
                }
                Err(e) => return Err(LoginFailure::Refused(e.to_string())),
            };
            if !outcome.ready {
                let fields = backend::error_fields(outcome.after_auth.get(5..).unwrap_or(&[]));
                return Err(LoginFailure::Refused(format!(
                    "the server refused the session: {} ({})",
                    fields.message.unwrap_or("no message"),
                    fields.code.unwrap_or("?")
                )));
            }
            Ok(LoggedIn {
                server,
                key: outcome.backend_key,
            })
        })
    }
}

/// Why a session could not be given a new connection; what its client is told.
#[derive(Debug)]
pub struct Failure {
    pub code: &'static str,
    pub message: String,
    /// The ErrorResponse's DETAIL, for the client only: never logged at info, since it may
    /// repeat what the client's query parameters said.
    pub detail: Option<String>,
    /// The `sessions_ended_total` reason.
    pub reason: &'static str,
}

impl Failure {
    /// A failure without a detail.
    fn new(code: &'static str, message: String, reason: &'static str) -> Failure {
        Failure {
            code,
            message,
            detail: None,
            reason,
        }
    }

    pub fn unreplayable(kind: Unreplayable) -> Failure {
        Failure::new(
            sqlstate::ADMIN_SHUTDOWN,
            format!(
                "terminating connection: the server restarted and this session held {}, which \
                 cannot be restored on a new connection; reconnect to continue",
                kind.describe()
            ),
            match kind {
                Unreplayable::TempTable => "unreplayable_temp_table",
                Unreplayable::HoldCursor => "unreplayable_hold_cursor",
                Unreplayable::Listen => "unreplayable_listen",
                Unreplayable::AdvisoryLock => "unreplayable_advisory_lock",
            },
        )
    }

    /// The session changed settings with `set_config`, and their values could not be read from
    /// the server before its connection went (a crash), or cannot be read at all (a name the
    /// tracker does not know): a replay might run it on other settings.
    pub fn settings_in_doubt(doubt: &Doubt) -> Failure {
        Failure {
            detail: Some(format!(
                "Settings changed with set_config(): {}.",
                doubt.describe()
            )),
            ..Failure::new(
                sqlstate::ADMIN_SHUTDOWN,
                "terminating connection: the server restarted, and this session changed \
                 settings with set_config() whose values could not be read back from it; \
                 reconnect to continue"
                    .into(),
                "unreplayable_settings",
            )
        }
    }
}

/// Time between attempts to reach a server that is not accepting connections yet.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Waits for the server, connects, logs in and replays `plan`; returns the new connection,
/// attached. Gives up at `hold_timeout` (`57P03`), on a login the server refuses, or on a replay
/// that fails (`57P01`).
pub async fn reattach<'a>(
    shared: &'a Shared,
    info: &SessionInfo,
    relogin: &dyn Relogin,
    startup: &[u8],
    plan: &Plan,
) -> Result<(MaybeTls, Attached<'a>), Failure> {
    let started = Instant::now();
    let deadline = started + shared.config().hold_timeout;
    let timeout = || {
        Failure::new(
            sqlstate::CANNOT_CONNECT_NOW,
            "the database server did not come back in time (hold_timeout); reconnect to \
             continue"
                .into(),
            "reattach_timeout",
        )
    };
    let mut pause = RETRY_FIRST;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if !shared.control.wait_available(left).await {
            return Err(timeout());
        }
        let server = match shared.upstream.connect_relay().await {
            Ok(server) => server,
            Err(message) => {
                debug!(%message, "server not reachable yet; retrying");
                if Instant::now() + pause > deadline {
                    return Err(timeout());
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
                continue;
            }
        };
        let Some(attached) = shared.control.attach() else {
            continue;
        };
        let login = tokio::time::timeout_at(deadline, relogin.login(server, startup));
        let LoggedIn { mut server, key } = match login.await {
            Err(_) => return Err(timeout()),
            Ok(Err(LoginFailure::Transient(message))) => {
                debug!(%message, "login on the new connection failed; retrying");
                drop(attached);
                if Instant::now() + pause > deadline {
                    return Err(timeout());
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
                continue;
            }
            Ok(Err(LoginFailure::Refused(message))) => {
                return Err(Failure::new(
                    sqlstate::ADMIN_SHUTDOWN,
                    format!(
                        "terminating connection: the server restarted and logging in again \
                         failed: {message}"
                    ),
                    "reattach_login_failed",
                ));
            }
            Ok(Ok(done)) => done,
        };
        let max_len = shared.config().max_message_len;
        match tokio::time::timeout_at(deadline, replay(&mut server, plan, max_len)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                // The server's words may repeat a value set again, which may have come from a
                // query parameter: the client gets them, the log does not.
                return Err(Failure {
                    detail: Some(error.to_string()),
                    ..Failure::new(
                        sqlstate::ADMIN_SHUTDOWN,
                        "terminating connection: the server restarted and this session's \
                         settings could not be restored; reconnect to continue"
                            .into(),
                        "replay_failed",
                    )
                });
            }
            Err(_) => return Err(timeout()),
        }
        if let Some(key) = key {
            *info.upstream_key.lock().unwrap() = Some(key);
        }
        info.mark_connected();
        info!(
            after_ms = started.elapsed().as_millis() as u64,
            replayed = plan.requests,
            "session moved to a new server connection"
        );
        return Ok((server, attached));
    }
}

/// Sends the plan and reads the answers up to its last ReadyForQuery, all swallowed. Any error
/// fails the replay, with the server's message.
async fn replay(server: &mut MaybeTls, plan: &Plan, max_len: u32) -> Result<(), ConverseError> {
    converse(server, &plan.messages, plan.requests, max_len, |_, _| {}).await
}
