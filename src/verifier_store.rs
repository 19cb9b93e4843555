//! Where verifiers (and fallback passwords) come from: the auth file, read at start and again by
//! a reload when it changed, and the auth query, run against the server as the backup user, its
//! answers cached for `auth_cache_ttl` (unknown users too, so a flood of bad logins costs one
//! query per user and period). A user the file names is never looked up by the query.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};
use zeroize::Zeroizing;

use crate::auth::userlist::{self, Secret};
use crate::auth::verifier::ScramVerifier;
use crate::config::Config;
use crate::config::stamp::FileStamp;
use crate::upstream::{Login, Upstream, describe_sql_error};

/// Authentication that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("cannot read {name} {path}: {reason}")]
    File {
        name: &'static str,
        path: String,
        reason: String,
    },
}

/// One answer of the auth query, and when it came.
struct Cached {
    fetched: Instant,
    verifier: Option<ScramVerifier>,
}

/// Verifiers and passwords for `auth = "proxy"`.
pub struct Verifiers {
    /// From `auth_file`: verifiers as given, or derived from plain passwords.
    file: HashMap<String, ScramVerifier>,
    /// Passwords for the login upstream: `auth_passwords`, `auth_passwords_file`, and the plain
    /// passwords of `auth_file`.
    passwords: HashMap<String, Zeroizing<String>>,
    /// The auth query, when verifiers may come from the server.
    query: Option<String>,
    ttl: Duration,
    cache: Mutex<HashMap<String, Cached>>,
    /// The backup user's login, which runs the auth query.
    user: String,
    password: Zeroizing<String>,
    /// The auth query's connection, kept between lookups.
    connection: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    /// Salts the mock verifiers of unknown users.
    mock_secret: [u8; 32],
    /// `auth_file` and `auth_passwords_file` just before they were read, for a reload to tell
    /// whether they changed.
    pub(crate) stamps: [Option<FileStamp>; 2],
}

impl Verifiers {
    /// Reads the auth file and the password file of a configuration with `auth = "proxy"`.
    pub fn load(config: &Config) -> Result<Verifiers, AuthSetupError> {
        let stamps = Verifiers::stamps_of(config);
        let mut file = HashMap::new();
        let mut passwords = HashMap::new();
        if let Some(path) = &config.auth_file {
            for (user, secret) in read_userlist("auth_file", path)? {
                match secret {
                    Secret::Scram(verifier) => {
                        file.insert(user, verifier);
                    }
                    Secret::Password(password) => {
                        file.insert(user.clone(), ScramVerifier::generate(&password));
                        passwords.insert(user, password);
                    }
                    Secret::Md5 => warn!(
                        %user,
                        "auth_file holds an MD5 hash for this user: it cannot check a SCRAM \
                         login, so the user cannot log in through the proxy"
                    ),
                }
            }
        }
        if let Some(path) = &config.auth_passwords_file {
            for (user, secret) in read_userlist("auth_passwords_file", path)? {
                match secret {
                    Secret::Password(password) => {
                        passwords.insert(user, password);
                    }
                    _ => warn!(
                        %user,
                        "auth_passwords_file holds a hash, not a password, for this user: ignored"
                    ),
                }
            }
        }
        for (user, password) in &config.auth_passwords.0 {
            passwords.insert(user.clone(), Zeroizing::new(password.clone()));
        }
        Ok(Verifiers {
            file,
            passwords,
            query: config.effective_auth_query().map(str::to_string),
            ttl: config.auth_cache_ttl,
            cache: Mutex::new(HashMap::new()),
            user: config.backup.user.clone(),
            password: Zeroizing::new(config.backup.password().to_string()),
            connection: tokio::sync::Mutex::new(None),
            mock_secret: rand::random(),
            stamps,
        })
    }

    /// The state of `config`'s auth files now, to compare with [`Verifiers::stamps`].
    pub(crate) fn stamps_of(config: &Config) -> [Option<FileStamp>; 2] {
        [&config.auth_file, &config.auth_passwords_file]
            .map(|file| file.as_deref().and_then(FileStamp::of))
    }

    /// Whether a lookup of `user` would run the auth query now (no file entry, no fresh cache).
    pub fn needs_query(&self, user: &str) -> bool {
        self.query.is_some() && !self.file.contains_key(user) && self.cached(user).is_none()
    }

    fn cached(&self, user: &str) -> Option<Option<ScramVerifier>> {
        let cache = self.cache.lock().unwrap();
        let entry = cache.get(user)?;
        (entry.fetched.elapsed() < self.ttl).then(|| entry.verifier.clone())
    }

    /// The verifier of `user`: from the file, the cache, or the auth query. `Ok(None)` when the
    /// user has none (unknown, no password, or not a SCRAM one); `Err` when the query failed.
    pub async fn lookup(
        &self,
        user: &str,
        upstream: &Upstream,
    ) -> Result<Option<ScramVerifier>, String> {
        if let Some(verifier) = self.file.get(user) {
            return Ok(Some(verifier.clone()));
        }
        let Some(query) = &self.query else {
            return Ok(None);
        };
        if let Some(cached) = self.cached(user) {
            return Ok(cached);
        }
        let mut connection = self.connection.lock().await;
        // Another session may have fetched it while this one waited for the connection.
        if let Some(cached) = self.cached(user) {
            return Ok(cached);
        }
        // A kept connection may have died unnoticed (a server restart): one more try on a new
        // one. Each attempt is bounded by the upstream's connect_timeout.
        let reused = connection.take().filter(|c| !c.is_closed());
        let mut attempt = if reused.is_some() { 0 } else { 1 };
        let mut client = reused;
        let rows = loop {
            let current = match client.take() {
                Some(current) => current,
                None => self.connect(upstream).await?,
            };
            let query = tokio::time::timeout(
                upstream.connect_timeout(),
                current.query(query.as_str(), &[&user]),
            )
            .await;
            match query {
                Ok(Ok(rows)) => {
                    *connection = Some(current);
                    break rows;
                }
                Ok(Err(e)) if attempt > 0 || e.as_db_error().is_some() => {
                    return Err(format!("the auth query failed: {}", describe_sql_error(&e)));
                }
                Err(_) if attempt > 0 => {
                    return Err(format!(
                        "the auth query got no answer within {:?}",
                        upstream.connect_timeout()
                    ));
                }
                _ => attempt += 1,
            }
        };
        let secret = match rows.first() {
            None => None,
            Some(row) => row
                .try_get::<_, Option<String>>(1)
                .map_err(|e| format!("the auth query's second column is not a text: {e}"))?,
        };
        let verifier = secret.as_deref().and_then(ScramVerifier::parse);
        debug!(
            %user,
            found = !rows.is_empty(),
            scram = verifier.is_some(),
            "auth query answered"
        );
        self.cache.lock().unwrap().insert(
            user.to_string(),
            Cached {
                fetched: Instant::now(),
                verifier: verifier.clone(),
            },
        );
        Ok(verifier)
    }

    /// Opens the auth query's connection, as the backup user.
    async fn connect(&self, upstream: &Upstream) -> Result<tokio_postgres::Client, String> {
        upstream
            .sql(&Login {
                user: &self.user,
                password: &self.password,
                database: "postgres",
            })
            .await
            .map_err(|e| format!("the auth query could not connect: {e}"))
    }

    /// Forgets the cached verifier of `user`: the server refused a login made with it.
    pub fn invalidate(&self, user: &str) {
        self.cache.lock().unwrap().remove(user);
    }

    /// The configured password of `user`, for the login upstream.
    pub fn password(&self, user: &str) -> Option<Zeroizing<String>> {
        self.passwords.get(user).cloned()
    }

    /// The stand-in verifier for a user without one.
    pub fn mock(&self, user: &str) -> ScramVerifier {
        ScramVerifier::mock(user, &self.mock_secret)
    }
}

fn read_userlist(name: &'static str, path: &Path) -> Result<Vec<(String, Secret)>, AuthSetupError> {
    let error = |reason: String| AuthSetupError::File {
        name,
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    userlist::parse(&text).map_err(|e| error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::auth::AuthMode;

    fn temp_file(name: &str, content: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dgs-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[tokio::test]
    async fn the_file_gives_verifiers_and_passwords() {
        let scram = ScramVerifier::generate("alice-pw");
        let file = temp_file(
            "userlist.txt",
            &format!(
                "\"alice\" \"{scram}\"\n\"bob\" \"bob-pw\"\n\"carol\" \"md5a3556571e93b0d20722ba62be61e8c2d\"\n"
            ),
        );
        let passwords = temp_file("passwords.txt", "\"alice\" \"alice-pw\"\n");
        let mut config = Config {
            auth: Some(AuthMode::Proxy),
            auth_file: Some(file),
            auth_passwords_file: Some(passwords),
            ..Config::default()
        };
        config
            .auth_passwords
            .0
            .insert("dave".into(), "dave-pw".into());
        let store = Verifiers::load(&config).unwrap();
        let upstream = Upstream::new(&config).unwrap();
        assert_eq!(store.lookup("alice", &upstream).await.unwrap(), Some(scram));
        let bob = store.lookup("bob", &upstream).await.unwrap().unwrap();
        assert_eq!(
            ScramVerifier::from_password("bob-pw", &bob.salt, bob.iterations),
            bob,
            "a plain password's verifier is derived from it"
        );
        assert_eq!(store.lookup("carol", &upstream).await.unwrap(), None);
        assert_eq!(store.lookup("nobody", &upstream).await.unwrap(), None);
        assert!(!store.needs_query("nobody"), "no auth query configured");
        for (user, password) in [
            ("alice", "alice-pw"),
            ("bob", "bob-pw"),
            ("dave", "dave-pw"),
        ] {
            assert_eq!(
                store.password(user).as_deref().map(String::as_str),
                Some(password)
            );
        }
        assert_eq!(store.password("carol"), None);
        assert_eq!(store.mock("x"), store.mock("x"));
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let config = Config {
            auth: Some(AuthMode::Proxy),
            auth_file: Some("/nonexistent/userlist.txt".into()),
            ..Config::default()
        };
        let err = Verifiers::load(&config).err().unwrap().to_string();
        assert!(err.contains("auth_file /nonexistent/userlist.txt"), "{err}");
        let broken = temp_file("broken.txt", "\"alice\" secret-pw\n");
        let config = Config {
            auth_file: Some(broken),
            ..config
        };
        let err = Verifiers::load(&config).err().unwrap().to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(!err.contains("secret-pw"), "{err}");
    }
}
