//! Authentication facts about Doltgres v1.2.0 that `auth = "proxy"` relies on, each pinned by one
//! test against the real server: where verifiers can be read, in which form, how the default
//! auth query is answered, and what identifies a session's user. If one fails after an upgrade,
//! update `docs/doltgres-notes.md` and check `src/auth/`.

use doltgres_sidecar::auth::DEFAULT_AUTH_QUERY;
use doltgres_sidecar::auth::verifier::ScramVerifier;
use proxy_tests::TestServer;
use proxy_tests::facts::exec;
use proxy_tests::facts::{column, value};

/// The verifier `pg_authid` holds for `user`, parsed (panics if it is not a SCRAM one).
async fn verifier_of(client: &tokio_postgres::Client, user: &str) -> ScramVerifier {
    let text = value(
        client,
        &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{user}'"),
    )
    .await;
    ScramVerifier::parse(&text).unwrap_or_else(|| panic!("not a SCRAM verifier: {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_authid_holds_scram_sha_256_verifiers_of_the_passwords() {
    let server = TestServer::doltgres().await;
    let client = server.connect_direct().await;
    let superuser = verifier_of(&client, &server.user).await;
    assert_eq!(superuser.iterations, 4096);
    assert_eq!(superuser.salt.len(), 16);
    assert_eq!(
        ScramVerifier::from_password(&server.password, &superuser.salt, superuser.iterations),
        superuser,
        "the verifier is PostgreSQL's, derived from DOLTGRES_PASSWORD"
    );
    exec(
        &client,
        "CREATE USER alice WITH PASSWORD 'alice-pw'; CREATE USER nopass",
    )
    .await;
    let alice = verifier_of(&client, "alice").await;
    assert_eq!(
        ScramVerifier::from_password("alice-pw", &alice.salt, alice.iterations),
        alice
    );
    assert_ne!(alice.salt, superuser.salt, "each verifier has its own salt");
    // A role without a password has NULL; the built-in `public` role is listed too.
    let rows = column(
        &client,
        "SELECT rolname || '=' || coalesce(rolpassword, 'NULL') FROM pg_authid \
         WHERE rolname IN ('nopass', 'public') ORDER BY rolname",
    )
    .await;
    assert_eq!(rows, ["nopass=NULL", "public=NULL"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_auth_query_takes_the_user_as_a_parameter() {
    let server = TestServer::doltgres().await;
    let client = server.connect_direct().await;
    // Extended protocol, `$1` bound as text: the column types are name and text.
    let rows = client
        .query(DEFAULT_AUTH_QUERY, &[&"postgres"])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "postgres");
    let secret: Option<String> = rows[0].get(1);
    assert!(ScramVerifier::parse(&secret.unwrap()).is_some());
    let none = client
        .query(DEFAULT_AUTH_QUERY, &[&"nobody"])
        .await
        .unwrap();
    assert!(none.is_empty(), "an unknown user has no row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_gets_a_new_salt() {
    let (_server, client) =
        TestServer::doltgres_seeded("CREATE USER alice WITH PASSWORD 'first-pw'").await;
    let before = verifier_of(&client, "alice").await;
    exec(&client, "ALTER USER alice WITH PASSWORD 'first-pw'").await;
    let after = verifier_of(&client, "alice").await;
    assert_ne!(
        before.salt, after.salt,
        "even the same password gets a new salt, so a cached verifier is recognisably stale"
    );
    assert_eq!(
        ScramVerifier::from_password("first-pw", &after.salt, after.iterations),
        after
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_user_is_the_login_at_its_host() {
    let server = TestServer::doltgres().await;
    let client = server.connect_direct().await;
    assert_eq!(
        value(&client, "SELECT current_user").await,
        "postgres@127.0.0.1"
    );
    exec(
        &client,
        "CREATE USER carol WITH SUPERUSER PASSWORD 'carol-pw'; \
             CREATE USER dave WITH PASSWORD 'dave-pw'",
    )
    .await;
    let mut config = server.config_at(&server.addr());
    config.user("carol").password("carol-pw");
    let carol = proxy_tests::server_connect(&config).await.unwrap();
    assert_eq!(
        value(&carol, "SELECT current_user").await,
        "carol@127.0.0.1"
    );
    // A role without SUPERUSER may not call it at all.
    config.user("dave").password("dave-pw");
    let dave = proxy_tests::server_connect(&config).await.unwrap();
    let err = dave.simple_query("SELECT current_user").await.unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.message(), "permission denied for routine current_user");
    // A wrong password and an unknown user are answered alike, in PostgreSQL's words.
    for (user, password) in [("dave", "wrong"), ("nobody", "x")] {
        config.user(user).password(password);
        let err = proxy_tests::server_connect(&config).await.err().unwrap();
        let db = err.as_db_error().unwrap();
        assert_eq!(
            (db.code().code(), db.message()),
            (
                "28P01",
                format!("password authentication failed for user \"{user}\"").as_str()
            )
        );
    }
}
