//! The state the orchestration shares, each type in its own file and apart from the tasks that
//! drive it, so that `Shared` (which holds them) sits below those tasks: the windows' slot, hold
//! and history ([`windows`]) and their records ([`record`]), the verifications under way
//! ([`verifications`]), the operator's work ([`work`]) and the hand-over ([`handover`]).

pub mod handover;
pub mod record;
pub mod verifications;
pub mod windows;
pub mod work;
