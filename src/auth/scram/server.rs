//! The server side: the proxy authenticating a client against a verifier.

use zeroize::Zeroizing;

use super::*;
use crate::auth::verifier::ScramVerifier;

/// The proxy's side of a SCRAM exchange with a client.
pub struct ServerExchange {
    verifier: ScramVerifier,
    /// No usable verifier: the exchange runs to its end with a mock salt and fails there, as
    /// PostgreSQL does for an unknown role, so the answer does not tell whether the user exists.
    doomed: bool,
    /// The tls-server-end-point data of the proxy's certificate, when channel binding is offered.
    end_point: Option<Vec<u8>>,
    state: ServerState,
}

enum ServerState {
    Start,
    SaltSent {
        /// What the client-final's `c=` must decode to.
        expected_binding: Vec<u8>,
        channel_binding: bool,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Done,
}

/// A client whose proof matched.
pub struct Verified {
    /// The client's ClientKey, recovered from its proof.
    pub client_key: Zeroizing<Key>,
    /// The server-final-message to send (AuthenticationSASLFinal).
    pub server_final: String,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verified(..)")
    }
}

impl ServerExchange {
    /// An exchange against `verifier`, or against `mock` (doomed) when there is none.
    /// `end_point`: the tls-server-end-point hash when the client is on TLS and channel binding
    /// is offered.
    pub fn new(
        verifier: Option<ScramVerifier>,
        mock: ScramVerifier,
        end_point: Option<Vec<u8>>,
    ) -> ServerExchange {
        let doomed = verifier.is_none();
        ServerExchange {
            verifier: verifier.unwrap_or(mock),
            doomed,
            end_point,
            state: ServerState::Start,
        }
    }

    /// The mechanisms to offer in AuthenticationSASL, preferred first (as PostgreSQL lists them).
    pub fn mechanisms(&self) -> &'static [&'static str] {
        if self.end_point.is_some() {
            &[SCRAM_SHA_256_PLUS, SCRAM_SHA_256]
        } else {
            &[SCRAM_SHA_256]
        }
    }

    /// Handles the SASLInitialResponse: the chosen mechanism and the client-first-message.
    /// Returns the server-first-message, built with `server_nonce`.
    pub fn start(
        &mut self,
        mechanism: &str,
        client_first: &[u8],
        server_nonce: &str,
    ) -> Result<String, ScramError> {
        let channel_binding = match mechanism {
            SCRAM_SHA_256_PLUS if self.end_point.is_some() => true,
            SCRAM_SHA_256 => false,
            _ => {
                return Err(violation(
                    "client selected an invalid SASL authentication mechanism",
                    None,
                ));
            }
        };
        let first = parse_client_first(client_first)?;
        match (&first.cbind, channel_binding) {
            (CbindFlag::No | CbindFlag::ClientOnly, true) => {
                return Err(malformed(
                    "The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not \
                     include channel binding data.",
                ));
            }
            (CbindFlag::ClientOnly, false) if self.end_point.is_some() => {
                return Err(violation(
                    "SCRAM channel binding negotiation error",
                    Some(
                        "The client supports SCRAM channel binding but thinks the server does \
                         not.  However, this server does support channel binding."
                            .into(),
                    ),
                ));
            }
            (CbindFlag::Required(_), false) => {
                return Err(malformed(
                    "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM \
                     message includes channel binding data.",
                ));
            }
            (CbindFlag::Required(name), true) if name != TLS_SERVER_END_POINT => {
                return Err(violation(
                    "unsupported SCRAM channel-binding type",
                    Some(format!("The client asked for \"{name}\".")),
                ));
            }
            _ => {}
        }
        let mut expected_binding = first.gs2_header.as_bytes().to_vec();
        if channel_binding {
            expected_binding.extend_from_slice(self.end_point.as_deref().unwrap_or_default());
        }
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first =
            server_first_message(&nonce, &self.verifier.salt, self.verifier.iterations);
        self.state = ServerState::SaltSent {
            expected_binding,
            channel_binding,
            client_first_bare: first.bare.to_string(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok(server_first)
    }

    /// Handles the SASLResponse (client-final-message): checks channel binding, nonce and
    /// proof. [`ScramError::Rejected`] for a wrong proof or a doomed exchange.
    pub fn finish(&mut self, client_final: &[u8]) -> Result<Verified, ScramError> {
        let ServerState::SaltSent {
            expected_binding,
            channel_binding,
            client_first_bare,
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, ServerState::Done)
        else {
            return Err(violation("invalid SCRAM exchange state", None));
        };
        let last = parse_client_final(client_final)?;
        if last.channel_binding != expected_binding {
            return Err(if channel_binding {
                ScramError::Protocol {
                    code: sqlstate::INVALID_AUTHORIZATION,
                    message: "SCRAM channel binding check failed",
                    detail: None,
                }
            } else {
                violation(
                    "unexpected SCRAM channel-binding attribute in client-final-message",
                    None,
                )
            });
        }
        if last.nonce != nonce {
            return Err(violation(
                "invalid SCRAM response",
                Some("Nonce does not match.".into()),
            ));
        }
        let auth_message = auth_message(&client_first_bare, &server_first, last.without_proof);
        // Computed for a doomed exchange too, so its timing does not tell that the user is unknown.
        let client_key = recover_client_key(
            &self.verifier.stored_key,
            auth_message.as_bytes(),
            &last.proof,
        );
        match client_key {
            Some(client_key) if !self.doomed => Ok(Verified {
                client_key,
                server_final: server_final_message(
                    &self.verifier.server_key,
                    auth_message.as_bytes(),
                ),
            }),
            _ => Err(ScramError::Rejected),
        }
    }
}
