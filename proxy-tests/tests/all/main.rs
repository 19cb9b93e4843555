//! The integration tests, one binary: each file of this directory is a module, run against real
//! Doltgres and PostgreSQL servers (and the sidecar's own process where a test needs one). One
//! binary links once instead of once per file. Two measuring tests stay binaries of their own:
//! `soak.rs` (a long run whose figures want the machine to itself) and `survival_figures.rs`
//! (which reads this process's CPU time).
//!
//! `cargo test -p proxy-tests --test all <module>::` runs one file's tests.

mod accounting;
mod actions;
mod admin_flood;
mod admin_limits;
mod backup_proof;
mod backup_targets;
mod bad_input;
mod cancel;
mod catalog_trust;
mod cli;
mod client_abuse;
mod client_view;
mod configuration_reference;
mod console;
mod copy;
mod copy_command;
mod copy_drain;
mod copy_journal;
mod copy_process;
mod copy_proof;
mod design;
mod doltgres_auth_facts;
mod doltgres_backup_facts;
mod doltgres_file_facts;
mod doltgres_journal_facts;
mod doltgres_session_facts;
mod doltgres_sql_facts;
mod doltgres_transfer_facts;
mod doltgres_wire_facts;
mod drivers;
mod drivers_restart;
mod faults;
mod first_run;
mod idle_flood;
mod import_cycles;
mod kill_sidecar;
mod memory_bounds;
mod network_faults;
mod offsite;
mod offsite_encrypted;
mod offsite_process;
mod offsite_races;
mod offsite_recovery;
mod offsite_verify;
mod proxy_auth;
mod quiesce;
mod readme;
mod relay;
mod relay_protocol;
mod reload;
mod remote_server;
mod restart_settings;
mod restore_safety;
mod restore_verify;
mod seaweedfs_facts;
mod secrets_in_logs;
mod server_faults;
mod server_start;
mod shutdown;
mod shutdown_backup;
mod startup_like_postgres;
mod survive_restart;
mod tls;
mod unauthenticated;
mod upgrade;
mod window_steps;
