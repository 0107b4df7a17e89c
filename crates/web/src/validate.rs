//! Validation of a posted message, shared by the JSON API and the HTML form.

use serde::Deserialize;

/// Longest author name, in characters (Unicode scalar values) after trimming.
pub(crate) const AUTHOR_MAX: usize = 64;
/// Longest message text, in characters after trimming and CRLF → LF.
pub(crate) const TEXT_MAX: usize = 1000;

/// A message as posted (JSON body or form): every field optional so that a missing field gets
/// our own error rather than the deserializer's.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct MessageInput {
    pub author: Option<String>,
    pub text: Option<String>,
}

/// A message that passed validation: trimmed, newlines normalized to `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValidMessage {
    pub author: String,
    pub text: String,
}

/// Why a field was refused: `"<field>: <problem>"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub(crate) struct Invalid {
    /// `author`, `text` or `limit`.
    pub field: &'static str,
    /// What is wrong, such as `must be 1 to 64 characters`.
    pub problem: String,
}

impl Invalid {
    pub(crate) fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Invalid {
            field,
            problem: problem.into(),
        }
    }
}

/// Checks both fields (author first).
///
/// # Errors
///
/// [`Invalid`] for the first field that is missing, too short or long after trimming, or
/// holds control characters (newlines and tabs are allowed in `text` only).
pub(crate) fn validate(input: &MessageInput) -> Result<ValidMessage, Invalid> {
    let author = field("author", input.author.as_deref(), AUTHOR_MAX, false)?;
    let text = field("text", input.text.as_deref(), TEXT_MAX, true)?;
    Ok(ValidMessage { author, text })
}

fn field(
    name: &'static str,
    value: Option<&str>,
    max: usize,
    multiline: bool,
) -> Result<String, Invalid> {
    let Some(value) = value else {
        return Err(Invalid::new(name, "is required"));
    };
    let value = value.replace("\r\n", "\n").trim().to_string();
    let len = value.chars().count();
    if len == 0 || len > max {
        return Err(Invalid::new(name, format!("must be 1 to {max} characters")));
    }
    let allowed = |c: char| multiline && (c == '\n' || c == '\t');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        let problem = if multiline {
            "must not contain control characters other than newlines and tabs"
        } else {
            "must not contain control characters or newlines"
        };
        return Err(Invalid::new(name, problem));
    }
    Ok(value)
}

/// Default and largest `?limit=` of `GET /api/messages`.
pub(crate) const LIMIT_DEFAULT: u32 = 50;
/// Largest `?limit=`.
pub(crate) const LIMIT_MAX: u32 = 500;

/// The `limit` query parameter: absent → 50; otherwise 1..=500.
///
/// # Errors
///
/// [`Invalid`] outside 1..=500.
pub(crate) fn limit(value: Option<u32>) -> Result<u32, Invalid> {
    match value {
        None => Ok(LIMIT_DEFAULT),
        Some(n) if (1..=LIMIT_MAX).contains(&n) => Ok(n),
        Some(_) => Err(Invalid::new("limit", format!("must be 1 to {LIMIT_MAX}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(author: Option<&str>, text: Option<&str>) -> MessageInput {
        MessageInput {
            author: author.map(str::to_string),
            text: text.map(str::to_string),
        }
    }

    fn err(author: Option<&str>, text: Option<&str>) -> String {
        validate(&input(author, text)).unwrap_err().to_string()
    }

    #[test]
    fn valid_input_is_trimmed_and_normalized() {
        let v = validate(&input(Some("  ann "), Some("\r\nline 1\r\nline 2\t\n "))).unwrap();
        assert_eq!(v.author, "ann");
        assert_eq!(v.text, "line 1\nline 2");
    }

    #[test]
    fn missing_fields_are_required() {
        assert_eq!(err(None, Some("x")), "author: is required");
        assert_eq!(err(Some("ann"), None), "text: is required");
    }

    #[test]
    fn lengths_count_characters_after_trimming() {
        assert_eq!(
            err(Some("   "), Some("x")),
            "author: must be 1 to 64 characters"
        );
        assert_eq!(
            err(Some(""), Some("x")),
            "author: must be 1 to 64 characters"
        );
        // 64 multi-byte characters are fine; 65 are not.
        let name64 = "é".repeat(64);
        assert!(validate(&input(Some(&name64), Some("x"))).is_ok());
        let name65 = "é".repeat(65);
        assert_eq!(
            err(Some(&name65), Some("x")),
            "author: must be 1 to 64 characters"
        );
        let text1000 = format!("  {}  ", "a".repeat(1000));
        assert!(validate(&input(Some("a"), Some(&text1000))).is_ok());
        let text1001 = "a".repeat(1001);
        assert_eq!(
            err(Some("a"), Some(&text1001)),
            "text: must be 1 to 1000 characters"
        );
        assert_eq!(
            err(Some("a"), Some(" \n ")),
            "text: must be 1 to 1000 characters"
        );
    }

    #[test]
    fn control_characters_are_refused() {
        assert_eq!(
            err(Some("a\nb"), Some("x")),
            "author: must not contain control characters or newlines"
        );
        assert!(err(Some("a"), Some("x\u{0}y")).starts_with("text: must not contain control"));
        assert!(validate(&input(Some("a"), Some("x\n\ty"))).is_ok());
    }

    #[test]
    fn limit_defaults_and_bounds() {
        assert_eq!(limit(None), Ok(50));
        assert_eq!(limit(Some(1)), Ok(1));
        assert_eq!(limit(Some(500)), Ok(500));
        assert_eq!(
            limit(Some(0)).unwrap_err().to_string(),
            "limit: must be 1 to 500"
        );
        assert!(limit(Some(501)).is_err());
    }
}
