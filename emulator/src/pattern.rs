//! Patterns over image references and request paths: a glob, or a regex when it starts with `^`.

use regex::Regex;

/// A compiled image or path pattern, remembering the text it came from.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

/// A pattern that could not be compiled.
#[derive(Debug, thiserror::Error)]
#[error("invalid pattern {source_text:?}: {reason}")]
pub struct PatternError {
    source_text: String,
    reason: String,
}

impl Pattern {
    /// An image pattern: a regex when it starts with `^`, otherwise a glob over the whole
    /// reference where `*` matches any characters (slashes included) and `?` one character.
    pub fn image(source: &str) -> Result<Self, PatternError> {
        Self::compile(source, false)
    }

    /// A request path pattern: a regex when it starts with `^`, otherwise a glob over the whole
    /// path where `*` matches within one segment (no `/`), `**` matches anything and `?` one
    /// character.
    pub fn path(source: &str) -> Result<Self, PatternError> {
        Self::compile(source, true)
    }

    fn compile(source: &str, segments: bool) -> Result<Self, PatternError> {
        let fail = |reason: String| PatternError {
            source_text: source.to_owned(),
            reason,
        };
        if source.is_empty() {
            return Err(fail("the pattern is empty".to_owned()));
        }
        let expression = if source.starts_with('^') {
            source.to_owned()
        } else {
            glob_to_regex(source, segments)
        };
        let regex = Regex::new(&expression).map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            source: source.to_owned(),
            regex,
        })
    }

    /// Whether `text` matches.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }

    /// The pattern as it was given.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

fn glob_to_regex(glob: &str, segments: bool) -> String {
    let mut out = String::with_capacity(glob.len() * 2 + 2);
    out.push('^');
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if segments && chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str(".*");
            }
            '*' if segments => out.push_str("[^/]*"),
            '*' => out.push_str(".*"),
            '?' if segments => out.push_str("[^/]"),
            '?' => out.push('.'),
            other => out.push_str(&regex::escape(other.encode_utf8(&mut [0; 4]))),
        }
    }
    out.push('$');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_glob_crosses_slashes() {
        let p = Pattern::image("*:crash*").unwrap();
        assert!(p.is_match("docker.io/acme/bot:crash-1"));
        assert!(!p.is_match("docker.io/acme/bot:1.0"));
        assert!(!Pattern::image("acme/bot").unwrap().is_match("acme/bot:1"));
    }

    #[test]
    fn path_glob_keeps_segments() {
        let p = Pattern::path("/v1/agents/*").unwrap();
        assert!(p.is_match("/v1/agents/voice"));
        assert!(!p.is_match("/v1/agents"));
        assert!(!p.is_match("/v1/agents/voice/extra"));
        assert!(
            Pattern::path("/v1/**")
                .unwrap()
                .is_match("/v1/public/a/start")
        );
    }

    #[test]
    fn regex_when_anchored() {
        let p = Pattern::path("^/v1/(agents|secrets)").unwrap();
        assert!(p.is_match("/v1/secrets/x"));
        assert!(!p.is_match("/v2/agents"));
        let err = Pattern::image("^(").unwrap_err().to_string();
        assert!(err.starts_with("invalid pattern \"^(\""), "{err}");
    }
}
