//! The key arithmetic: HMACs and hashes, salted passwords, ClientKey and ServerKey, proofs and
//! signatures, nonces.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{KEY_LEN, Key, NONCE_BYTES};

/// `HMAC-SHA-256(key, parts...)`.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> Key {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// `SHA-256(data)`.
pub fn h(data: &[u8]) -> Key {
    Sha256::digest(data).into()
}

/// `a XOR b`.
pub fn xor(a: &Key, b: &Key) -> Key {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// The password as SCRAM hashes it: SASLprep'd when that succeeds, else its raw bytes (as
/// PostgreSQL does for passwords that are not valid UTF-8 or hold prohibited characters).
pub fn normalize_password(password: &str) -> Zeroizing<Vec<u8>> {
    match stringprep::saslprep(password) {
        Ok(prepared) => Zeroizing::new(prepared.as_bytes().to_vec()),
        Err(_) => Zeroizing::new(password.as_bytes().to_vec()),
    }
}

/// `SaltedPassword = Hi(Normalize(password), salt, i)` (PBKDF2 with HMAC-SHA-256).
pub fn salted_password(password: &str, salt: &[u8], iterations: u32) -> Zeroizing<Key> {
    let normalized = normalize_password(password);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    pbkdf2::pbkdf2_hmac::<Sha256>(&normalized, salt, iterations, out.as_mut());
    out
}

/// `ClientKey = HMAC(SaltedPassword, "Client Key")`.
pub fn client_key(salted_password: &Key) -> Zeroizing<Key> {
    Zeroizing::new(hmac(salted_password, &[b"Client Key"]))
}

/// `ServerKey = HMAC(SaltedPassword, "Server Key")`.
pub fn server_key(salted_password: &Key) -> Key {
    hmac(salted_password, &[b"Server Key"])
}

/// `ClientProof = ClientKey XOR HMAC(H(ClientKey), AuthMessage)`.
pub fn client_proof(client_key: &Key, auth_message: &[u8]) -> Key {
    let stored_key = h(client_key);
    xor(client_key, &hmac(&stored_key, &[auth_message]))
}

/// Checks a client's proof against a StoredKey. When `H(proof XOR HMAC(StoredKey, AuthMessage))`
/// equals StoredKey (compared in constant time), the proof is right and the XOR is the client's
/// ClientKey.
pub fn recover_client_key(
    stored_key: &Key,
    auth_message: &[u8],
    proof: &Key,
) -> Option<Zeroizing<Key>> {
    let signature = hmac(stored_key, &[auth_message]);
    let client_key = Zeroizing::new(xor(proof, &signature));
    bool::from(h(client_key.as_ref()).ct_eq(stored_key)).then_some(client_key)
}

/// `ServerSignature = HMAC(ServerKey, AuthMessage)`.
pub fn server_signature(server_key: &Key, auth_message: &[u8]) -> Key {
    hmac(server_key, &[auth_message])
}

/// `client-first-message-bare "," server-first-message "," client-final-message-without-proof`.
pub fn auth_message(
    client_first_bare: &str,
    server_first: &str,
    client_final_bare: &str,
) -> String {
    format!("{client_first_bare},{server_first},{client_final_bare}")
}

/// A nonce of [`NONCE_BYTES`] random bytes in base64 (printable, no comma).
pub fn random_nonce() -> String {
    B64.encode(rand::random::<[u8; NONCE_BYTES]>())
}
