//! The client side: the proxy logging in upstream with a ClientKey, or keys from a password.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::*;

/// The keys a client needs for one exchange: the ClientKey, and the ServerKey to check the
/// server's signature with.
pub struct ClientKeys {
    pub client_key: Zeroizing<Key>,
    pub server_key: Key,
}

impl ClientKeys {
    /// Derives both keys from a password and the server's salt and iteration count.
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> ClientKeys {
        let salted = salted_password(password, salt, iterations);
        ClientKeys {
            client_key: client_key(&salted),
            server_key: server_key(&salted),
        }
    }
}

/// The proxy's side of a SCRAM exchange with the upstream (SCRAM-SHA-256, no channel binding).
pub struct ClientExchange {
    nonce: String,
    client_first_bare: String,
    state: ClientState,
}

enum ClientState {
    Start,
    ProofSent {
        server_key: Key,
        auth_message: String,
    },
    Done,
}

/// `n,,`: the gs2 header of a client without channel binding.
const GS2_NO_BINDING: &str = "n,,";

impl ClientExchange {
    /// A new exchange with `nonce`; returns it and the client-first-message to send. The user
    /// name is left empty, as libpq does: the server takes the StartupMessage's.
    pub fn new(nonce: &str) -> (ClientExchange, String) {
        let bare = format!("n=,r={nonce}");
        let first = format!("{GS2_NO_BINDING}{bare}");
        let exchange = ClientExchange {
            nonce: nonce.to_string(),
            client_first_bare: bare,
            state: ClientState::Start,
        };
        (exchange, first)
    }

    /// Handles the server-first-message. `keys` gives the keys for the server's salt and
    /// iteration count (or refuses them). Returns the client-final-message.
    pub fn respond<E>(
        &mut self,
        server_first: &[u8],
        keys: impl FnOnce(&ServerFirst) -> Result<ClientKeys, E>,
    ) -> Result<Result<String, E>, ScramError> {
        if !matches!(self.state, ClientState::Start) {
            return Err(violation("invalid SCRAM exchange state", None));
        }
        let first = parse_server_first(server_first, &self.nonce)?;
        let keys = match keys(&first) {
            Ok(keys) => keys,
            Err(e) => return Ok(Err(e)),
        };
        let server_first = std::str::from_utf8(server_first).unwrap_or_default();
        let without_proof = format!("c={},r={}", B64.encode(GS2_NO_BINDING), first.nonce);
        let auth_message = auth_message(&self.client_first_bare, server_first, &without_proof);
        let proof = client_proof(&keys.client_key, auth_message.as_bytes());
        self.state = ClientState::ProofSent {
            server_key: keys.server_key,
            auth_message,
        };
        Ok(Ok(format!("{without_proof},p={}", B64.encode(proof))))
    }

    /// Whether the server's signature was checked.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, ClientState::Done)
    }

    /// Handles the server-final-message: the server's signature must match, compared in
    /// constant time.
    pub fn finish(&mut self, server_final: &[u8]) -> Result<(), ScramError> {
        let ClientState::ProofSent {
            server_key,
            auth_message,
        } = std::mem::replace(&mut self.state, ClientState::Done)
        else {
            return Err(violation("invalid SCRAM exchange state", None));
        };
        let signature = parse_server_final(server_final)?;
        let expected = server_signature(&server_key, auth_message.as_bytes());
        if bool::from(expected.ct_eq(&signature)) {
            Ok(())
        } else {
            Err(violation(
                "invalid SCRAM server signature",
                Some("The server's signature does not match its verifier's ServerKey.".into()),
            ))
        }
    }
}
