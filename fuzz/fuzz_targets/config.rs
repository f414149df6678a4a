//! The configuration parser. Seeds: the valid configurations from config/src/tests.rs.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
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
});
