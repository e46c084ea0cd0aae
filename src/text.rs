//! Bounding text that reaches people: one rule for error texts, condition messages and events.

/// `s` cut to at most `max` bytes on a character boundary; when cut, the last three bytes of
/// the budget become "..." so that a reader sees the text was shortened.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max.saturating_sub(3);
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// `text` with what looks like a credential replaced by `[redacted]`: the value after a
/// `Bearer`, after a name such as `api_key`, `token`, `secret` or `password` and `=` or `:`,
/// and tokens shaped like common API keys (`sk-...`, `pk_...`). For texts that come from
/// outside the operator (a deployment's message, often a Python traceback that may print its
/// environment) before they reach a condition or an event.
pub fn redact_credentials(text: &str) -> String {
    use std::sync::LazyLock;
    static RULES: LazyLock<[(regex::Regex, &'static str); 3]> = LazyLock::new(|| {
        let re = |p: &str| regex::Regex::new(p).expect("a valid pattern");
        [
            (re(r"(?i)\b(bearer\s+)[^\s\x22',;]+"), "${1}[redacted]"),
            (
                re(
                    r#"(?i)\b([a-z0-9_\-]*(?:api[_\-]?key|token|secret|password|passwd|credentials?)[a-z0-9_\-]*["']?\s*[:=]\s*["']?)[^\s"',;)}\]]+"#,
                ),
                "${1}[redacted]",
            ),
            (
                re(
                    r"\b(?:sk|pk|rk)[-_][A-Za-z0-9_\-]{12,}|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{20,}",
                ),
                "[redacted]",
            ),
        ]
    });
    let mut out = text.to_string();
    for (re, with) in RULES.iter() {
        if let std::borrow::Cow::Owned(s) = re.replace_all(&out, *with) {
            out = s;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{redact_credentials, truncate};

    #[test]
    fn credentials_in_a_traceback_are_redacted_and_the_rest_is_kept() {
        let tb = r#"Traceback (most recent call last):
  File "/app/bot.py", line 12, in <module>
    client = OpenAI(api_key="sk-proj-abcdefghijklmnop1234")
openai.AuthenticationError: Incorrect API key provided: sk-proj-abcdefghijklmnop1234
DEEPGRAM_API_KEY=0123456789abcdef password: hunter2 Authorization: Bearer eyJhbGciOi.x.y"#;
        let out = redact_credentials(tb);
        for secret in [
            "sk-proj-abcdefghijklmnop1234",
            "0123456789abcdef",
            "hunter2",
            "eyJhbGciOi",
        ] {
            assert!(!out.contains(secret), "{secret} left in:\n{out}");
        }
        assert!(
            out.contains("openai.AuthenticationError: Incorrect API key provided"),
            "{out}"
        );
        assert!(out.contains("File \"/app/bot.py\", line 12"), "{out}");
        assert_eq!(
            redact_credentials("nothing secret here"),
            "nothing secret here"
        );
    }

    #[test]
    fn short_text_is_kept_and_long_text_is_bounded_and_marked() {
        assert_eq!(truncate("abc".into(), 3), "abc");
        assert_eq!(truncate("abcdef".into(), 5), "ab...");
        let long = "x".repeat(10_000);
        let cut = truncate(long, 300);
        assert_eq!(cut.len(), 300);
        assert!(cut.ends_with("..."));
    }

    #[test]
    fn cuts_on_a_character_boundary() {
        // "é" is two bytes: a cut at byte 4 would split the second one.
        let cut = truncate("ééééé".into(), 7);
        assert_eq!(cut, "éé...");
        assert!(cut.len() <= 7);
    }
}
