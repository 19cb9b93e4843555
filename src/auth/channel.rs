//! `tls-server-end-point` channel binding (RFC 5929, section 4.1): the hash of the proxy's own
//! certificate, with the hash function of the certificate's signature algorithm, SHA-256 when
//! that is MD5 or SHA-1. A client on TLS that sends the same hash in its SCRAM exchange proves
//! that its TLS session ends at the proxy. Pure.

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::oid::db::rfc5912::{
    DSA_WITH_SHA_1, DSA_WITH_SHA_224, DSA_WITH_SHA_256, ECDSA_WITH_SHA_224, ECDSA_WITH_SHA_256,
    ECDSA_WITH_SHA_384, ECDSA_WITH_SHA_512, SHA_1_WITH_RSA_ENCRYPTION, SHA_224_WITH_RSA_ENCRYPTION,
    SHA_256_WITH_RSA_ENCRYPTION, SHA_384_WITH_RSA_ENCRYPTION, SHA_512_WITH_RSA_ENCRYPTION,
};

/// `md5WithRSAEncryption` and `ecdsa-with-SHA1`, not in the OID database's RFC 5912 module.
const MD5_WITH_RSA_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.4");
const ECDSA_WITH_SHA_1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.1");

/// The hash functions a certificate signature may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

fn hash_of(algorithm: ObjectIdentifier) -> Option<Hash> {
    Some(match algorithm {
        // RFC 5929: MD5 and SHA-1 are replaced by SHA-256.
        MD5_WITH_RSA_ENCRYPTION
        | SHA_1_WITH_RSA_ENCRYPTION
        | ECDSA_WITH_SHA_1
        | DSA_WITH_SHA_1
        | SHA_256_WITH_RSA_ENCRYPTION
        | ECDSA_WITH_SHA_256
        | DSA_WITH_SHA_256 => Hash::Sha256,
        SHA_224_WITH_RSA_ENCRYPTION | ECDSA_WITH_SHA_224 | DSA_WITH_SHA_224 => Hash::Sha224,
        SHA_384_WITH_RSA_ENCRYPTION | ECDSA_WITH_SHA_384 => Hash::Sha384,
        SHA_512_WITH_RSA_ENCRYPTION | ECDSA_WITH_SHA_512 => Hash::Sha512,
        // RSA-PSS names its hash in parameters, Ed25519 has none: no channel binding, as with
        // PostgreSQL built against most OpenSSL versions.
        _ => return None,
    })
}

/// The tls-server-end-point data for a DER certificate, `None` when its signature algorithm
/// names no usable hash function (or it does not parse).
pub fn tls_server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    let cert = Certificate::from_der(cert_der).ok()?;
    Some(match hash_of(cert.signature_algorithm.oid)? {
        Hash::Sha224 => Sha224::digest(cert_der).to_vec(),
        Hash::Sha256 => Sha256::digest(cert_der).to_vec(),
        Hash::Sha384 => Sha384::digest(cert_der).to_vec(),
        Hash::Sha512 => Sha512::digest(cert_der).to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_algorithms_pick_the_hash() {
        assert_eq!(hash_of(ECDSA_WITH_SHA_256), Some(Hash::Sha256));
        assert_eq!(hash_of(SHA_1_WITH_RSA_ENCRYPTION), Some(Hash::Sha256));
        assert_eq!(hash_of(MD5_WITH_RSA_ENCRYPTION), Some(Hash::Sha256));
        assert_eq!(hash_of(SHA_384_WITH_RSA_ENCRYPTION), Some(Hash::Sha384));
        assert_eq!(hash_of(ECDSA_WITH_SHA_512), Some(Hash::Sha512));
        let ed25519 = ObjectIdentifier::new_unwrap("1.3.101.112");
        assert_eq!(hash_of(ed25519), None);
    }

    #[test]
    fn garbage_is_no_certificate() {
        assert_eq!(tls_server_end_point(b""), None);
        assert_eq!(tls_server_end_point(b"\x30\x03\x02\x01\x00"), None);
    }
}
