//! SCRAM-SHA-256 verifiers as PostgreSQL stores them in `pg_authid.rolpassword` (and Doltgres
//! reports them): `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, salt and keys in
//! base64. Pure.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::scram::{self, DEFAULT_ITERATIONS, KEY_LEN, Key, SALT_LEN};

/// What the proxy checks a client's proof against: never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Key,
    pub server_key: Key,
}

/// Shows the salt and iteration count only: the keys are as good as a password against a
/// server that uses the same verifier.
impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .finish_non_exhaustive()
    }
}

/// The keys are zeroed when a verifier is dropped.
impl Drop for ScramVerifier {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.stored_key.zeroize();
        self.server_key.zeroize();
    }
}

const PREFIX: &str = "SCRAM-SHA-256$";

impl ScramVerifier {
    /// Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`; `None` for anything
    /// else (an MD5 hash, a plain password, a malformed verifier).
    pub fn parse(text: &str) -> Option<ScramVerifier> {
        let rest = text.strip_prefix(PREFIX)?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        let iterations = iterations
            .parse::<u32>()
            .ok()
            .filter(|i| *i > 0 && iterations.bytes().all(|b| b.is_ascii_digit()))?;
        let salt = B64.decode(salt).ok().filter(|s| !s.is_empty())?;
        let key = |text: &str| -> Option<Key> { B64.decode(text).ok()?.try_into().ok() };
        Some(ScramVerifier {
            iterations,
            salt,
            stored_key: key(stored_key)?,
            server_key: key(server_key)?,
        })
    }

    /// The verifier of `password` with this salt and iteration count, as PostgreSQL computes it
    /// (SASLprep'd password, PBKDF2-HMAC-SHA-256).
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> ScramVerifier {
        let salted = scram::salted_password(password, salt, iterations);
        let client_key = scram::client_key(&salted);
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: scram::h(client_key.as_ref()),
            server_key: scram::server_key(&salted),
        }
    }

    /// A verifier for `password` with a random salt and PostgreSQL's default iteration count.
    pub fn generate(password: &str) -> ScramVerifier {
        let salt: [u8; SALT_LEN] = rand::random();
        ScramVerifier::from_password(password, &salt, DEFAULT_ITERATIONS)
    }

    /// The stand-in for a user without a verifier, as PostgreSQL's mock authentication makes it:
    /// a salt derived from the user name and a secret of this process (so the same unknown user
    /// always sees the same salt, like a real one, and nobody can tell the two apart), the
    /// default iteration count, and keys no proof matches.
    pub fn mock(user: &str, secret: &[u8]) -> ScramVerifier {
        let digest = scram::h(&[user.as_bytes(), secret].concat());
        ScramVerifier {
            iterations: DEFAULT_ITERATIONS,
            salt: digest[..SALT_LEN].to_vec(),
            stored_key: [0; KEY_LEN],
            server_key: [0; KEY_LEN],
        }
    }

    /// Whether this verifier was made with the salt and iteration count a server announces.
    pub fn matches(&self, salt: &[u8], iterations: u32) -> bool {
        self.salt == salt && self.iterations == iterations
    }
}

/// Writes the `pg_authid` form (secret: for tests and for writing auth files, never for logs).
impl std::fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PREFIX}{}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by Doltgres v1.2.0 for its superuser started with `DOLTGRES_PASSWORD=password`, read
    /// back from `pg_authid`.
    const DOLTGRES_POSTGRES: &str = "SCRAM-SHA-256$4096:8SJ+qH7TExhp2pgATLnU1Q==$\
        7G9Iu4p3Bqj+w8mlkiBCVFGdzNtaunTHZGUvXMYdqPo=:vpzKOmHPUgZYK9Qhw41uph2Q+HnpxLXdBPPP1gEmLDk=";

    #[test]
    fn a_server_made_verifier_parses_and_matches_its_password() {
        let v = ScramVerifier::parse(DOLTGRES_POSTGRES).unwrap();
        assert_eq!(v.iterations, 4096);
        assert_eq!(v.salt.len(), 16);
        assert_eq!(v.to_string(), DOLTGRES_POSTGRES);
        assert_eq!(
            ScramVerifier::from_password("password", &v.salt, 4096),
            v,
            "the server's verifier is the one derived from its password"
        );
        assert_ne!(ScramVerifier::from_password("Password", &v.salt, 4096), v);
    }

    #[test]
    fn round_trip_of_a_generated_verifier() {
        let v = ScramVerifier::generate("pencil");
        assert_eq!(ScramVerifier::parse(&v.to_string()), Some(v.clone()));
        assert!(v.matches(&v.salt, 4096));
        assert!(!v.matches(&v.salt, 4097));
    }

    #[test]
    fn anything_else_is_not_a_verifier() {
        let good = ScramVerifier::generate("x").to_string();
        for bad in [
            "",
            "password",
            "md5a3556571e93b0d20722ba62be61e8c2d",
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$4096:c2FsdA==",
            "SCRAM-SHA-256$0:c2FsdA==$AAAA:AAAA",
            "SCRAM-SHA-256$-1:c2FsdA==$AAAA:AAAA",
            "SCRAM-SHA-256$+4096:c2FsdA==$AAAA:AAAA",
            &good.replace("SCRAM-SHA-256", "SCRAM-SHA-1"),
            &good[..good.len() - 4],
            &good.replacen(':', ":!", 1),
            &format!("{good}$"),
        ] {
            assert_eq!(ScramVerifier::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn mock_verifiers_are_stable_per_user_and_secret() {
        let a = ScramVerifier::mock("alice", b"secret");
        assert_eq!(a, ScramVerifier::mock("alice", b"secret"));
        assert_ne!(a.salt, ScramVerifier::mock("bob", b"secret").salt);
        assert_ne!(a.salt, ScramVerifier::mock("alice", b"other").salt);
        assert_eq!((a.iterations, a.salt.len()), (4096, 16));
    }

    #[test]
    fn debug_shows_no_key() {
        let v = ScramVerifier::generate("x");
        let shown = format!("{v:?}");
        assert!(!shown.contains(&B64.encode(v.stored_key)), "{shown}");
        assert!(!shown.contains("stored"), "{shown}");
    }
}
