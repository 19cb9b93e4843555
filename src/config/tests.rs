//! The configuration's defaults, parsing and validation.

use super::*;

/// The key `validate` refuses `c` for, if it does.
fn invalid(c: &Config) -> Option<&'static str> {
    match c.validate() {
        Err(ConfigError::Invalid { name, .. }) => Some(name),
        _ => None,
    }
}

#[test]
fn defaults_are_valid() {
    Config::default().validate().unwrap();
}

#[test]
fn file_overrides_some_keys() {
    let c = Config::from_toml(
        "listen = \"0.0.0.0:7000\"\nupstream = \"db:5432\"\nstartup_timeout = \"2s\"\n",
    )
    .unwrap();
    assert_eq!(c.listen, "0.0.0.0:7000");
    assert_eq!(c.upstream, "db:5432");
    assert_eq!(c.startup_timeout, Duration::from_secs(2));
    assert_eq!(c.admin_listen, Config::default().admin_listen);
    c.validate().unwrap();
}

#[test]
fn tls_settings_need_their_files() {
    let c = Config::from_toml("tls = \"require\"").unwrap();
    assert_eq!(invalid(&c), Some("tls"));
    let c =
        Config::from_toml("tls = \"allow\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"").unwrap();
    c.validate().unwrap();
    let c = Config::from_toml("upstream_tls = \"verify-full\"").unwrap();
    assert!(c.validate().is_err());
    assert!(Config::from_toml("upstream_tls = \"sometimes\"").is_err());
}

#[test]
fn admin_off_loopback_needs_a_token() {
    let mut c = Config {
        admin_listen: "0.0.0.0:9187".into(),
        ..Config::default()
    };
    assert_eq!(invalid(&c), Some("admin_token"));
    c.admin_token = Some("secret".into());
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("at least 16 characters"), "{err}");
    c.admin_token = Some("a-token-of-24-characters".into());
    c.validate().unwrap();
    c.admin_token = Some("   ".into());
    assert!(c.validate().unwrap_err().to_string().contains("empty"));
    let loopback = Config {
        admin_token: Some(String::new()),
        ..Config::default()
    };
    assert!(
        loopback.validate().is_err(),
        "an empty token is refused anywhere"
    );
}

#[test]
fn proxy_auth_needs_a_source_of_verifiers() {
    let c = Config::from_toml("auth = \"proxy\"").unwrap();
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("no source of verifiers"), "{err}");
    assert_eq!(c.effective_auth_query(), Some(DEFAULT_AUTH_QUERY));
    let c = Config::from_toml("auth = \"proxy\"\nauth_file = \"users.txt\"").unwrap();
    c.validate().unwrap();
    assert_eq!(c.effective_auth_query(), None);
    let c =
        Config::from_toml("auth = \"proxy\"\nauth_cache_ttl = \"5s\"\n[backup]\npassword = \"pw\"")
            .unwrap();
    c.validate().unwrap();
    assert_eq!(c.auth_cache_ttl, Duration::from_secs(5));
    let c = Config::from_toml("auth = \"proxy\"\nauth_file = \"u.txt\"\nauth_query = \"SELECT 1\"")
        .unwrap();
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("backup user")
    );
    assert!(Config::from_toml("auth = \"trust\"").is_err());
    let c = Config::from_toml("[auth_passwords]\nalice = \"pw\"").unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("need auth"));
    assert_eq!(format!("{:?}", c.auth_passwords), "{\"alice\"}");
}

#[test]
fn managed_mode_defaults_to_proxy_auth() {
    let mut c = Config::default();
    c.server.control = ServerControl::Managed(Default::default());
    c.server.password = Some("pw".into());
    c.settle_managed().unwrap();
    assert_eq!(c.auth_mode(), AuthMode::Proxy);
    c.validate().unwrap();
    let mut c = Config::from_toml("auth = \"passthrough\"").unwrap();
    c.server.control = ServerControl::Managed(Default::default());
    c.settle_managed().unwrap();
    assert_eq!(c.auth_mode(), AuthMode::Passthrough);
    assert_eq!(Config::default().auth_mode(), AuthMode::Passthrough);
}

#[test]
fn in_managed_mode_an_offsite_section_alone_completes_the_default_copies() {
    let table: toml::Table = toml::from_str(
        "[server]\ncontrol = \"managed\"\ndir = \"/srv/d/doltgres\"\n\
         [backup.copy.offsite]\nurl = \"s3://b/p\"",
    )
    .unwrap();
    let mut c = Config::deserialize_table(table).unwrap();
    c.settle_default_backups();
    let copy = c.backup.copy.as_ref().unwrap();
    assert_eq!(copy.catalog, Path::new("/srv/d/backups"));
    assert_eq!((copy.keep_last, copy.verify_after), (10, true));
    assert_eq!(copy.offsite.as_ref().unwrap().url, "s3://b/p");
    assert_eq!(c.backup.every_write_commits, 1000);
    // The section's own settings win over the defaults.
    let table: toml::Table = toml::from_str(
        "[server]\ncontrol = \"managed\"\n[backup.copy]\nkeep_last = 3\n\
         [backup.copy.offsite]\nurl = \"s3://b/p\"",
    )
    .unwrap();
    let mut c = Config::deserialize_table(table).unwrap();
    c.settle_default_backups();
    assert_eq!(c.backup.copy.as_ref().unwrap().keep_last, 3);
    // Outside managed mode the catalog is still required.
    let table: toml::Table = toml::from_str("[backup.copy.offsite]\nurl = \"s3://b/p\"").unwrap();
    assert!(Config::deserialize_table(table).is_err());
}

#[test]
fn a_file_that_does_not_parse_is_reported_without_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let text = "listen = \"127.0.0.1:6432\"\nadmin_token = \"Secret-Token-1\n";
    std::fs::write(&path, text).unwrap();
    let err = Config::from_file(&path).unwrap_err().to_string();
    assert!(!err.contains("Secret-Token-1"), "{err}");
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn unknown_keys_are_rejected() {
    assert!(Config::from_toml("listn = \"x\"").is_err());
}

#[test]
fn bad_values_are_rejected() {
    let c = Config {
        upstream: "nohost".into(),
        ..Config::default()
    };
    assert_eq!(invalid(&c), Some("upstream"));
    let bad = [
        Config {
            listen: "localhost".into(),
            ..Config::default()
        },
        Config {
            max_message_len: 10,
            ..Config::default()
        },
        Config {
            connect_timeout: Duration::ZERO,
            ..Config::default()
        },
    ];
    for c in bad {
        assert!(c.validate().is_err(), "{c:?}");
    }
}
