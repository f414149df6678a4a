use std::path::Path;

/// The configuration parser, fed the input's longest valid UTF-8 prefix (what a libfuzzer-sys
/// `&str` target receives). Seeds: the valid configurations from config/src/tests.rs.
pub fn config(data: &[u8]) {
    let text = crate::utf8_prefix(data);
    let Err(error) = samld_config::parse(text, Path::new("fuzz.toml")) else {
        return;
    };
    if let Some(location) = error.location() {
        // Lines and columns count from 1 and point into the text (or just past its end).
        let lines: Vec<&str> = text.split('\n').collect();
        assert!(
            location.line >= 1 && location.line <= lines.len(),
            "{location:?} in {} lines: {error}",
            lines.len()
        );
        let line_chars = lines[location.line - 1].chars().count();
        assert!(
            location.column >= 1 && location.column <= line_chars + 1,
            "{location:?} with {line_chars} characters on the line: {error}"
        );
    }
    // Both renderings, the caret excerpt included, must not panic.
    let _ = error.to_string();
    let _ = format!("{error:#}");
}
