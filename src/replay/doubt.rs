//! Settings a session may have changed where the tracker cannot follow: a `set_config` call ran,
//! and what it set is an expression's value. The tracker keeps which settings are in doubt; a
//! replay may go on only once the session's real values have been read from the server (a copy
//! window, before the session detaches), else the session is ended.

use std::collections::BTreeSet;

use super::set_config::Target;

/// What the tracker cannot know about a session's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Doubt {
    /// Settings (lowercased) that a `set_config` call may have changed.
    pub names: BTreeSet<String>,
    /// A `set_config` call changed a setting whose name the tracker cannot read (an expression):
    /// no read-back can cover it, since the server lists only its own settings.
    pub unnamed: bool,
}

impl Doubt {
    /// The doubt a statement's `set_config` calls leave, a `$n` name taken from `param(n)` (the
    /// Bind's value, if it is known).
    pub fn of_calls(calls: &[Target], param: impl Fn(usize) -> Option<String>) -> Doubt {
        let mut doubt = Doubt::default();
        for call in calls {
            let name = match call {
                Target::Named(name) => Some(name.clone()),
                Target::Param(n) => param(*n).map(|name| name.to_lowercase()),
                Target::Unknown => None,
            };
            match name {
                Some(name) => {
                    doubt.names.insert(name);
                }
                None => doubt.unnamed = true,
            }
        }
        doubt
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && !self.unnamed
    }

    pub fn merge(&mut self, other: Doubt) {
        self.names.extend(other.names);
        self.unnamed |= other.unnamed;
    }

    /// What the settings in doubt are, for the client: their names, or that one has none.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.names.iter().cloned().collect();
        if self.unnamed {
            parts.push("a setting named by an expression".into());
        }
        parts.join(", ")
    }
}
