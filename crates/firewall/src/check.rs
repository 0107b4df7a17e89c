//! Comparing the live table with the expected one, line by line as nft prints them.

use std::collections::BTreeMap;

/// How the live `table inet webfarm` differs from the expected one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// The table is not loaded at all.
    NoTable,
    /// A line of the expected table (a rule, the chain's hook and policy) the live one
    /// lacks.
    Missing(String),
    /// A line of the live table that is not expected.
    Unexpected(String),
    /// The same lines, in another order (rules match first to last, so order matters).
    Order,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::NoTable => write!(f, "table {} is not loaded", crate::TABLE),
            Difference::Missing(l) => write!(f, "missing:    {l}"),
            Difference::Unexpected(l) => write!(f, "unexpected: {l}"),
            Difference::Order => write!(f, "the same rules are loaded in another order"),
        }
    }
}

/// The differences between two nft listings of the table (`expected` and `live`, both as
/// nft printed them), compared as multisets of trimmed lines, then in order; empty when
/// they match.
pub fn compare(expected: &str, live: Option<&str>) -> Vec<Difference> {
    let Some(live) = live else {
        return vec![Difference::NoTable];
    };
    let lines = |t: &str| -> Vec<String> {
        t.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (want, have) = (lines(expected), lines(live));
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for l in &want {
        *count.entry(l).or_default() += 1;
    }
    for l in &have {
        *count.entry(l).or_default() -= 1;
    }
    let mut out = Vec::new();
    for l in &want {
        if count.get(l.as_str()).is_some_and(|c| *c > 0) {
            out.push(Difference::Missing(l.clone()));
            *count.get_mut(l.as_str()).expect("counted") -= 1;
        }
    }
    for l in &have {
        if count.get(l.as_str()).is_some_and(|c| *c < 0) {
            out.push(Difference::Unexpected(l.clone()));
            *count.get_mut(l.as_str()).expect("counted") += 1;
        }
    }
    if out.is_empty() && want != have {
        out.push(Difference::Order);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_missing_extra_and_reordered_are_named() {
        let a = "table inet webfarm {\n  a\n  b\n}\n";
        assert!(compare(a, Some("table inet webfarm {\na\n\tb\n}")).is_empty());
        assert_eq!(compare(a, None), [Difference::NoTable]);
        assert_eq!(
            compare(a, Some("table inet webfarm {\n a\n c\n b\n}")),
            [Difference::Unexpected("c".into())]
        );
        assert_eq!(
            compare(a, Some("table inet webfarm {\n a\n}")),
            [Difference::Missing("b".into())]
        );
        assert_eq!(
            compare(a, Some("table inet webfarm {\n b\n a\n}")),
            [Difference::Order]
        );
        let d = compare(a, Some("table inet webfarm {\n a\n a\n b\n}"));
        assert_eq!(d, [Difference::Unexpected("a".into())]);
        assert_eq!(d[0].to_string(), "unexpected: a");
    }
}
