use super::*;
use crate::auth::verifier::ScramVerifier;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use zeroize::Zeroizing;

// RFC 7677, section 3: user "user", password "pencil".
const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_verifier() -> ScramVerifier {
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    ScramVerifier::from_password("pencil", &salt, 4096)
}

fn mock() -> ScramVerifier {
    ScramVerifier::mock("user", b"process secret")
}

#[test]
fn rfc_7677_test_vector_server_side() {
    let mut server = ServerExchange::new(Some(rfc_verifier()), mock(), None);
    let first = server
        .start(SCRAM_SHA_256, RFC_CLIENT_FIRST.as_bytes(), RFC_SERVER_NONCE)
        .unwrap();
    assert_eq!(first, RFC_SERVER_FIRST);
    let verified = server.finish(RFC_CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(verified.server_final, RFC_SERVER_FINAL);
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let salted = salted_password("pencil", &salt, 4096);
    assert_eq!(*verified.client_key, *client_key(&salted));
}

#[test]
fn rfc_7677_test_vector_client_arithmetic() {
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let keys = ClientKeys::from_password("pencil", &salt, 4096);
    let auth = auth_message(
        "n=user,r=rOprNGfwEbeRWgbNEkqO",
        RFC_SERVER_FIRST,
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    );
    let proof = client_proof(&keys.client_key, auth.as_bytes());
    assert_eq!(
        B64.encode(proof),
        "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    );
    assert_eq!(
        server_final_message(&keys.server_key, auth.as_bytes()),
        RFC_SERVER_FINAL
    );
    let recovered =
        recover_client_key(&h(keys.client_key.as_ref()), auth.as_bytes(), &proof).unwrap();
    assert_eq!(*recovered, *keys.client_key);
}

#[test]
fn a_wrong_proof_and_a_doomed_exchange_are_rejected() {
    let tampered = RFC_CLIENT_FINAL.replace("p=dHzb", "p=dHzc");
    let mut server = ServerExchange::new(Some(rfc_verifier()), mock(), None);
    server
        .start(SCRAM_SHA_256, RFC_CLIENT_FIRST.as_bytes(), RFC_SERVER_NONCE)
        .unwrap();
    assert_eq!(
        server.finish(tampered.as_bytes()).err(),
        Some(ScramError::Rejected)
    );
    // No verifier: the mock's salt is offered, and even a proof that matches it fails.
    let mut doomed = ServerExchange::new(None, mock(), None);
    let first = doomed
        .start(SCRAM_SHA_256, RFC_CLIENT_FIRST.as_bytes(), RFC_SERVER_NONCE)
        .unwrap();
    assert!(first.contains(&format!("s={}", B64.encode(&mock().salt))));
    assert_eq!(
        doomed.finish(RFC_CLIENT_FINAL.as_bytes()).err(),
        Some(ScramError::Rejected)
    );
}

#[test]
fn a_final_nonce_other_than_the_exchanged_one_is_refused() {
    let mut server = ServerExchange::new(Some(rfc_verifier()), mock(), None);
    server
        .start(
            SCRAM_SHA_256,
            RFC_CLIENT_FIRST.as_bytes(),
            "another-server-nonce",
        )
        .unwrap();
    let err = server.finish(RFC_CLIENT_FINAL.as_bytes()).unwrap_err();
    assert!(
        matches!(
            &err,
            ScramError::Protocol {
                code: "08P01",
                message: "invalid SCRAM response",
                ..
            }
        ),
        "{err:?}"
    );
}

/// postgres-protocol's client (what tokio-postgres logs in with) against the proxy's server
/// side; returns the ClientKey the proxy recovered.
fn postgres_protocol_login(
    password: &str,
    verifier: &ScramVerifier,
    client_binding: ChannelBinding,
    mechanism: &str,
    end_point: Option<Vec<u8>>,
) -> Result<Zeroizing<Key>, ScramError> {
    let mut client = ScramSha256::new(password.as_bytes(), client_binding);
    let mut server = ServerExchange::new(Some(verifier.clone()), mock(), end_point);
    let first = server.start(mechanism, client.message(), &random_nonce())?;
    client.update(first.as_bytes()).unwrap();
    let verified = server.finish(client.message())?;
    client
        .finish(verified.server_final.as_bytes())
        .expect("the client accepts the proxy's signature");
    Ok(verified.client_key)
}

/// [`postgres_protocol_login`] without TLS: no channel binding, SCRAM-SHA-256.
fn plain_login(password: &str, verifier: &ScramVerifier) -> Result<Zeroizing<Key>, ScramError> {
    postgres_protocol_login(
        password,
        verifier,
        ChannelBinding::unsupported(),
        SCRAM_SHA_256,
        None,
    )
}

#[test]
fn round_trips_with_postgres_protocols_client() {
    let verifier = ScramVerifier::generate("correct horse");
    let key = plain_login("correct horse", &verifier).unwrap();
    assert_eq!(h(key.as_ref()), verifier.stored_key);
    let wrong = plain_login("correct horse!", &verifier);
    assert_eq!(wrong.err(), Some(ScramError::Rejected));
    // Passwords are SASLprep'd on both sides: a non-ASCII space is a space.
    let verifier = ScramVerifier::generate("pass\u{00a0}word");
    plain_login("pass word", &verifier).unwrap();
}

#[test]
fn channel_binding_with_postgres_protocols_client() {
    let verifier = ScramVerifier::generate("pw");
    let end_point = vec![7u8; 32];
    let over_tls = |binding, mechanism| {
        postgres_protocol_login("pw", &verifier, binding, mechanism, Some(end_point.clone()))
    };
    // Over TLS both mechanisms are offered; a client that binds to the same certificate logs in.
    over_tls(
        ChannelBinding::tls_server_end_point(end_point.clone()),
        SCRAM_SHA_256_PLUS,
    )
    .unwrap();
    // One that saw another certificate (a man in the middle) fails the binding check.
    let err = over_tls(
        ChannelBinding::tls_server_end_point(vec![8u8; 32]),
        SCRAM_SHA_256_PLUS,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ScramError::Protocol {
                code: "28000",
                message: "SCRAM channel binding check failed",
                ..
            }
        ),
        "{err:?}"
    );
    // A client without channel binding support still logs in over TLS.
    over_tls(ChannelBinding::unsupported(), SCRAM_SHA_256).unwrap();
    // "y": the client could bind but thinks the server cannot, while it can: a downgrade.
    let err = over_tls(ChannelBinding::unrequested(), SCRAM_SHA_256).unwrap_err();
    assert!(
        matches!(
            err,
            ScramError::Protocol {
                message: "SCRAM channel binding negotiation error",
                ..
            }
        ),
        "{err:?}"
    );
    // Without TLS "y" is fine, and PLUS is not offered.
    postgres_protocol_login(
        "pw",
        &verifier,
        ChannelBinding::unrequested(),
        SCRAM_SHA_256,
        None,
    )
    .unwrap();
    assert_eq!(
        ServerExchange::new(None, mock(), None).mechanisms(),
        [SCRAM_SHA_256]
    );
    assert_eq!(
        ServerExchange::new(None, mock(), Some(end_point)).mechanisms(),
        [SCRAM_SHA_256_PLUS, SCRAM_SHA_256]
    );
}

#[test]
fn mismatched_mechanism_and_binding_flag_are_refused() {
    let verifier = ScramVerifier::generate("pw");
    let end_point = Some(vec![1u8; 32]);
    let cases: [(&str, &str, Option<Vec<u8>>, &str); 5] = [
        (
            SCRAM_SHA_256_PLUS,
            "n,,n=,r=abc",
            end_point.clone(),
            "malformed SCRAM message",
        ),
        (
            SCRAM_SHA_256_PLUS,
            "y,,n=,r=abc",
            end_point.clone(),
            "malformed SCRAM message",
        ),
        (
            SCRAM_SHA_256,
            "p=tls-server-end-point,,n=,r=abc",
            end_point.clone(),
            "malformed SCRAM message",
        ),
        (
            SCRAM_SHA_256_PLUS,
            "p=tls-unique,,n=,r=abc",
            end_point.clone(),
            "unsupported SCRAM channel-binding type",
        ),
        (
            SCRAM_SHA_256_PLUS,
            "p=tls-server-end-point,,n=,r=abc",
            None,
            "client selected an invalid SASL authentication mechanism",
        ),
    ];
    for (mechanism, first, end_point, expected) in cases {
        let mut server = ServerExchange::new(Some(verifier.clone()), mock(), end_point);
        match server.start(mechanism, first.as_bytes(), "srv") {
            Err(ScramError::Protocol { code, message, .. }) => {
                assert_eq!(code, "08P01", "{first}");
                assert_eq!(message, expected, "{first}");
            }
            other => panic!("{first}: {other:?}"),
        }
    }
}

/// The proxy's whole method: the client logs in to the proxy, the proxy logs in to a server that
/// holds the same verifier with the ClientKey it recovered, and checks the server's signature.
#[test]
fn the_recovered_client_key_logs_in_upstream() {
    let verifier = ScramVerifier::generate("s3cret");
    let client_key = plain_login("s3cret", &verifier).unwrap();
    let upstream_login = |server_verifier: &ScramVerifier, key: &Key| {
        let mut server = ServerExchange::new(Some(server_verifier.clone()), mock(), None);
        let (mut client, first) = ClientExchange::new(&random_nonce());
        assert!(first.starts_with("n,,n=,r="));
        let server_first = server.start(SCRAM_SHA_256, first.as_bytes(), &random_nonce())?;
        let last = client
            .respond(server_first.as_bytes(), |sf| {
                assert!(verifier.matches(&sf.salt, sf.iterations));
                Ok::<_, ()>(ClientKeys {
                    client_key: Zeroizing::new(*key),
                    server_key: verifier.server_key,
                })
            })?
            .unwrap();
        let verified = server.finish(last.as_bytes())?;
        client.finish(verified.server_final.as_bytes())?;
        Ok::<_, ScramError>(verified.client_key)
    };
    let upstream_key = upstream_login(&verifier, &client_key).unwrap();
    assert_eq!(*upstream_key, *client_key);
    // A wrong key is refused by the server.
    let mut wrong = *client_key;
    wrong[0] ^= 1;
    assert_eq!(
        upstream_login(&verifier, &wrong).err(),
        Some(ScramError::Rejected)
    );
    // A server whose verifier has another ServerKey fails the proxy's signature check.
    let mut impostor = verifier.clone();
    impostor.server_key[0] ^= 1;
    let err = upstream_login(&impostor, &client_key).unwrap_err();
    assert!(
        matches!(
            err,
            ScramError::Protocol {
                message: "invalid SCRAM server signature",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn client_keys_from_a_password_log_in() {
    let verifier = ScramVerifier::generate("pw");
    let mut server = ServerExchange::new(Some(verifier), mock(), None);
    let (mut client, first) = ClientExchange::new("clientnonce");
    let server_first = server.start(SCRAM_SHA_256, first.as_bytes(), "s").unwrap();
    let last = client
        .respond(server_first.as_bytes(), |sf| {
            Ok::<_, ()>(ClientKeys::from_password("pw", &sf.salt, sf.iterations))
        })
        .unwrap()
        .unwrap();
    let verified = server.finish(last.as_bytes()).unwrap();
    client.finish(verified.server_final.as_bytes()).unwrap();
    // The callback may refuse the server's salt (a stale verifier).
    let (mut client, _) = ClientExchange::new("clientnonce");
    let refused = client
        .respond(server_first.as_bytes(), |_| Err::<ClientKeys, _>("stale"))
        .unwrap();
    assert_eq!(refused.err(), Some("stale"));
}

#[test]
fn client_first_syntax() {
    let first = parse_client_first(b"n,,n=,r=abc").unwrap();
    assert_eq!(
        first,
        ClientFirst {
            cbind: CbindFlag::No,
            gs2_header: "n,,",
            bare: "n=,r=abc",
            nonce: "abc"
        }
    );
    let first = parse_client_first(b"p=tls-server-end-point,,n=*,r=x,e=ext").unwrap();
    assert_eq!(
        first.cbind,
        CbindFlag::Required(TLS_SERVER_END_POINT.into())
    );
    assert_eq!(first.gs2_header, "p=tls-server-end-point,,");
    assert_eq!(first.bare, "n=*,r=x,e=ext");
    let refusals: [(&[u8], &str); 12] = [
        (b"", "malformed SCRAM message"),
        (b"n,,n=,r=a\0b", "malformed SCRAM message"),
        (b"x,,n=,r=a", "malformed SCRAM message"),
        (b"n;,n=,r=a", "malformed SCRAM message"),
        (
            b"n,a=bob,n=,r=a",
            "client uses authorization identity, but it is not supported",
        ),
        (b"n,x,n=,r=a", "malformed SCRAM message"),
        (
            b"n,,m=ext,n=,r=a",
            "client requires an unsupported SCRAM extension",
        ),
        (b"n,,r=a", "malformed SCRAM message"),
        (b"n,,n=,r=", "malformed SCRAM message"),
        (b"n,,n=,r=a\x7fb", "malformed SCRAM message"),
        (b"n,,n=,r=a,1=x", "malformed SCRAM message"),
        (b"p,,n=,r=a", "malformed SCRAM message"),
    ];
    for (input, expected) in refusals {
        match parse_client_first(input) {
            Err(ScramError::Protocol { message, .. }) => {
                assert_eq!(message, expected, "{:?}", String::from_utf8_lossy(input))
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }
}

#[test]
fn client_final_syntax() {
    let last = parse_client_final(RFC_CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(last.channel_binding, b"n,,");
    assert_eq!(
        last.without_proof,
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    );
    let with_extension = "c=biws,r=n,x=y,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    assert_eq!(
        parse_client_final(with_extension.as_bytes())
            .unwrap()
            .without_proof,
        "c=biws,r=n,x=y"
    );
    for bad in [
        "",
        "c=biws",
        "c=biws,r=n",
        "c=biws,r=n,",
        "c=!!,r=n,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "c=biws,r=n,p=dHzb",
        "c=biws,r=n,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=,",
        "c=biws,r=n,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=,x=1",
        "r=n,c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "c=biws,r=n,p",
    ] {
        assert!(parse_client_final(bad.as_bytes()).is_err(), "{bad:?}");
    }
}

#[test]
fn server_messages_syntax() {
    let first = parse_server_first(RFC_SERVER_FIRST.as_bytes(), "rOprNGfwEbeRWgbNEkqO").unwrap();
    assert_eq!(first.iterations, 4096);
    assert_eq!(first.salt.len(), 16);
    for bad in [
        "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "r=other%hv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "r=rOprNGfwEbeRWgbNEkqOx,s=!!,i=4096",
        "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
        "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1",
        "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==",
        "m=x,r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1",
    ] {
        assert!(
            parse_server_first(bad.as_bytes(), "rOprNGfwEbeRWgbNEkqO").is_err(),
            "{bad:?}"
        );
    }
    assert!(parse_server_final(RFC_SERVER_FINAL.as_bytes()).is_ok());
    let err = parse_server_final(b"e=invalid-proof").unwrap_err();
    assert!(err.to_string().contains("invalid-proof"), "{err}");
    assert!(parse_server_final(b"v=short").is_err());
}

/// A small deterministic generator, so the garbage is the same on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Every parser is total: garbage made of SCRAM's own characters, every truncation of valid
/// messages and single-byte changes of them give a value or an error, never a panic.
#[test]
fn parsers_are_total_over_garbage() {
    let verifier = rfc_verifier();
    let parse_all = |input: &[u8]| {
        let _ = parse_client_first(input);
        let _ = parse_client_final(input);
        let _ = parse_server_first(input, "rOprNGfwEbeRWgbNEkqO");
        let _ = parse_server_final(input);
        let mut server = ServerExchange::new(Some(verifier.clone()), mock(), Some(vec![0; 32]));
        if server.start(SCRAM_SHA_256, input, "n").is_ok() {
            let _ = server.finish(input);
        }
        let mut server = ServerExchange::new(Some(verifier.clone()), mock(), None);
        let _ = server.start(SCRAM_SHA_256, RFC_CLIENT_FIRST.as_bytes(), RFC_SERVER_NONCE);
        let _ = server.finish(input);
    };
    let alphabet = b"npyacrmsvie=,,==+/0123456789ABCxyz\0\x7f\xc3\xa9\xff";
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let len = (rng.next() % 48) as usize;
        let input: Vec<u8> = (0..len)
            .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
            .collect();
        parse_all(&input);
    }
    for valid in [
        RFC_CLIENT_FIRST,
        RFC_SERVER_FIRST,
        RFC_CLIENT_FINAL,
        RFC_SERVER_FINAL,
        "p=tls-server-end-point,,n=,r=abc",
    ] {
        let bytes = valid.as_bytes();
        for cut in 0..=bytes.len() {
            parse_all(&bytes[..cut]);
            parse_all(&bytes[cut..]);
        }
        for at in 0..bytes.len() {
            for replacement in [b',', b'=', 0, 0xff, b'p', b'a'] {
                let mut changed = bytes.to_vec();
                changed[at] = replacement;
                parse_all(&changed);
            }
        }
    }
}
