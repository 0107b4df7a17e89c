//! Read consistency levels: rqlite's `level` query parameter.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Read consistency level (rqlite's `level` parameter), from the fastest to the safest.
///
/// rqlite documents the levels at <https://rqlite.io/docs/api/read-consistency/>; a db node
/// serves each as `crates/db/src/read.rs` describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Read the local copy of whichever node answers: fastest, may be stale.
    None,
    /// Read on the node that believes it is the leader (followers forward): almost always
    /// fresh; stale only for the short time a deposed leader has not noticed.
    #[default]
    Weak,
    /// The leader confirms with a quorum that it still leads before reading: never stale.
    Linearizable,
    /// The statements go through the Raft log like a write: never stale, slowest.
    Strong,
    /// `none` on a learner (read-only replica), `weak` on a voter.
    Auto,
}

impl Consistency {
    /// Every level, in the order of [`Consistency`].
    pub const ALL: [Consistency; 5] = [
        Consistency::None,
        Consistency::Weak,
        Consistency::Linearizable,
        Consistency::Strong,
        Consistency::Auto,
    ];

    /// The value of the `level` query parameter: `none`, `weak`, `linearizable`, `strong` or
    /// `auto`.
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::None => "none",
            Consistency::Weak => "weak",
            Consistency::Linearizable => "linearizable",
            Consistency::Strong => "strong",
            Consistency::Auto => "auto",
        }
    }

    /// The level a request's `level` parameter asks for, as rqlite reads it: the name in any
    /// case; a missing or unknown level is `weak`.
    pub fn from_param(level: Option<&str>) -> Consistency {
        level
            .and_then(|l| l.parse().ok())
            .unwrap_or(Consistency::Weak)
    }

    /// The level a node serves: `auto` is `none` on a learner and `weak` on a voter; the
    /// others are themselves.
    pub fn resolve(self, learner: bool) -> Consistency {
        match self {
            Consistency::Auto if learner => Consistency::None,
            Consistency::Auto => Consistency::Weak,
            other => other,
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that names no level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a level; expected one of none, weak, linearizable, strong, auto")]
pub struct UnknownLevel(pub String);

impl FromStr for Consistency {
    type Err = UnknownLevel;

    /// A level's name, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Consistency::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownLevel(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_levels_are_weak_and_auto_depends_on_the_node() {
        let level = |q: Option<&str>, learner| Consistency::from_param(q).resolve(learner);
        assert_eq!(level(Some("none"), false), Consistency::None);
        assert_eq!(level(Some("STRONG"), false), Consistency::Strong);
        assert_eq!(
            level(Some("linearizable"), false),
            Consistency::Linearizable
        );
        assert_eq!(level(Some("sometimes"), false), Consistency::Weak);
        assert_eq!(level(None, false), Consistency::Weak);
        assert_eq!(level(Some("auto"), true), Consistency::None);
        assert_eq!(level(Some("auto"), false), Consistency::Weak);
        for l in Consistency::ALL {
            assert_eq!(l.as_str().parse::<Consistency>(), Ok(l));
        }
        assert!("bogus".parse::<Consistency>().is_err());
    }
}
