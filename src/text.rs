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

#[cfg(test)]
mod tests {
    use super::truncate;

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
