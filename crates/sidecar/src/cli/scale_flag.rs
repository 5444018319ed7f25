//! The `--scale APP=N` flag of `sidecar run` (applied to a run file by [`crate::scale`]).

use std::str::FromStr;

/// Most instances of one app: far beyond what one machine runs usefully, low enough that a typo
/// (`=300`) is an error rather than hundreds of processes.
pub const MAX_REPLICAS: usize = 64;

/// One `--scale APP=N` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    pub app_id: String,
    pub replicas: usize,
}

/// A `--scale` value that is not `APP=N`; the message names the value and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScaleFlagError {
    #[error("--scale {value:?}: expected APP=N, e.g. email-worker=3")]
    Syntax { value: String },
    #[error(
        "--scale {value:?}: the instance count {count:?} is not a whole number from 1 to {MAX_REPLICAS}"
    )]
    Count { value: String, count: String },
}

impl FromStr for Scale {
    type Err = ScaleFlagError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let syntax = || ScaleFlagError::Syntax {
            value: value.to_owned(),
        };
        let (app_id, count) = value.split_once('=').ok_or_else(syntax)?;
        let app_id = app_id.trim();
        if app_id.is_empty() {
            return Err(syntax());
        }
        let replicas = count
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_REPLICAS).contains(n))
            .ok_or_else(|| ScaleFlagError::Count {
                value: value.to_owned(),
                count: count.to_owned(),
            })?;
        Ok(Scale {
            app_id: app_id.to_owned(),
            replicas,
        })
    }
}
