//! Configuration errors that point at the file, line, column and key.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A position in the configuration file, both numbers starting at 1. The column counts
/// characters (Unicode scalar values), not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
}

/// What kind of problem a [`ConfigError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file could not be read (including: it does not exist, see
    /// [`ConfigError::is_not_found`]).
    Read(io::ErrorKind),
    /// The file is not valid TOML (or not UTF-8).
    Syntax,
    /// A key that samld does not know.
    UnknownKey,
    /// A value of the wrong TOML type, such as a number where a string belongs.
    InvalidType,
    /// A value of the right type that is not acceptable, such as a malformed URL.
    InvalidValue,
    /// An account lacks a required key (in its table and in `[defaults]`).
    MissingKey,
}

/// An invalid or unreadable configuration file.
///
/// `Display` gives one line that is complete on its own, in the usual
/// `file:line:column: key: message` form. The alternate form (`{:#}`) adds the offending
/// line of the file with a caret under the problem, for `samlctl config check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(Box<Inner>);

// Boxed: errors are rare, and a small `Result` keeps the success path cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    path: PathBuf,
    kind: ErrorKind,
    location: Option<Location>,
    key: Option<String>,
    message: String,
    excerpt: Option<Excerpt>,
}

/// The source line an error points into, kept for the alternate `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Excerpt {
    text: String,
    /// How many characters of `text` to underline, at least 1.
    width: usize,
}

impl ConfigError {
    /// The file could not be read.
    pub(crate) fn read(path: &Path, error: &io::Error) -> Self {
        Self::new(Inner {
            path: path.to_path_buf(),
            kind: ErrorKind::Read(error.kind()),
            location: None,
            key: None,
            message: format!("cannot read the file: {error}"),
            excerpt: None,
        })
    }

    fn new(inner: Inner) -> Self {
        Self(Box::new(inner))
    }

    /// The file is not UTF-8 (which TOML requires); `valid` is the part before the first bad
    /// byte, which locates it.
    pub(crate) fn not_utf8(path: &Path, valid: &[u8]) -> Self {
        // `valid` is UTF-8 by construction; the fallback only avoids a panic path.
        let text = std::str::from_utf8(valid).unwrap_or_default();
        let end = text.len();
        let mut error = Source::new(path, text).error(
            ErrorKind::Syntax,
            end..end,
            None,
            "the file is not valid UTF-8",
        );
        // The bad bytes are not part of `text`, so the excerpt would show a truncated line.
        error.0.excerpt = None;
        error
    }

    /// The configuration file that is wrong.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// What kind of problem this is.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// Where in the file, when the problem is in its content.
    pub fn location(&self) -> Option<Location> {
        self.0.location
    }

    /// The dotted key path, such as `accounts.prod.region`, when the problem concerns a key
    /// or a table.
    pub fn key(&self) -> Option<&str> {
        self.0.key.as_deref()
    }

    /// The bare message, without path, position or key.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// Whether the file does not exist; the daemon then runs with no accounts and waits for
    /// it to appear.
    pub fn is_not_found(&self) -> bool {
        self.0.kind == ErrorKind::Read(io::ErrorKind::NotFound)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let this = &self.0;
        write!(f, "{}", this.path.display())?;
        if let Some(Location { line, column }) = this.location {
            write!(f, ":{line}:{column}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &this.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&this.message)?;
        if let (true, Some(excerpt), Some(location)) = (f.alternate(), &this.excerpt, this.location)
        {
            let number = location.line.to_string();
            let gutter = " ".repeat(number.len());
            // Copy tabs from the source line so that the caret lines up however tabs render.
            let indent: String = excerpt
                .text
                .chars()
                .take(location.column - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(
                f,
                "\n{gutter} |\n{number} | {}\n{gutter} | {indent}{}",
                excerpt.text,
                "^".repeat(excerpt.width)
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The text of a configuration file with a line index, to turn byte spans into errors.
pub(crate) struct Source<'a> {
    path: &'a Path,
    text: &'a str,
    /// Byte offset at which each line starts.
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    pub(crate) fn new(path: &'a Path, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            path,
            text,
            line_starts,
        }
    }

    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    /// An error about the bytes `span` of the file, with `key` the dotted path concerned.
    pub(crate) fn error(
        &self,
        kind: ErrorKind,
        span: Range<usize>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let start = self.text.floor_char_boundary(span.start);
        let line_index = self.line_starts.partition_point(|&s| s <= start) - 1;
        let line_start = self.line_starts[line_index];
        let line_end = self.text[line_start..]
            .find('\n')
            .map_or(self.text.len(), |i| line_start + i);
        let line_text = self.text[line_start..line_end].trim_end_matches('\r');
        let column = self.text[line_start..start].chars().count() + 1;
        let end = self
            .text
            .floor_char_boundary(span.end.min(line_start + line_text.len()).max(start));
        let width = self.text[start..end].chars().count().max(1);
        ConfigError::new(Inner {
            path: self.path.to_path_buf(),
            kind,
            location: Some(Location {
                line: line_index + 1,
                column,
            }),
            key,
            message: message.into(),
            excerpt: Some(Excerpt {
                text: line_text.to_owned(),
                width,
            }),
        })
    }

    /// An error with no position, for the rare TOML error that carries no span.
    pub(crate) fn error_without_span(
        &self,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(Inner {
            path: self.path.to_path_buf(),
            kind,
            location: None,
            key: None,
            message: message.into(),
            excerpt: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let text = "a = 1\nbé = \"x\"\r\n\n  zz";
        let source = Source::new(Path::new("/c.toml"), text);
        let at = |offset: usize| {
            source
                .error(ErrorKind::Syntax, offset..offset + 1, None, "m")
                .location()
                .unwrap()
        };
        // (byte offset, line, column)
        let cases = [
            (0, 1, 1),
            (4, 1, 5),
            (5, 1, 6), // the newline itself
            (6, 2, 1),
            // "bé = " is 6 bytes but 5 characters.
            (6 + 6, 2, 6),
            (text.len() - 2, 4, 3),
            // The end of the file (where "unexpected end" errors point) is still a position.
            (text.len(), 4, 5),
        ];
        for (offset, line, column) in cases {
            assert_eq!(at(offset), Location { line, column }, "offset {offset}");
        }
    }

    #[test]
    fn display_is_one_line_and_alternate_adds_the_source_line() {
        let text = "[accounts.prod]\n\tregon = \"us-east-1\"\n";
        let source = Source::new(Path::new("/home/a/samld.toml"), text);
        let error = source.error(
            ErrorKind::UnknownKey,
            17..22,
            Some("accounts.prod.regon".into()),
            "unknown key; did you mean `region`?",
        );
        assert_eq!(
            error.to_string(),
            "/home/a/samld.toml:2:2: accounts.prod.regon: unknown key; did you mean `region`?"
        );
        assert_eq!(
            format!("{error:#}"),
            "/home/a/samld.toml:2:2: accounts.prod.regon: unknown key; did you mean `region`?\n  \
             |\n2 | \tregon = \"us-east-1\"\n  | \t^^^^^"
        );
    }

    #[test]
    fn read_errors_name_the_path_and_the_os_error() {
        let error = ConfigError::read(
            Path::new("/etc/samld.toml"),
            &io::Error::from(io::ErrorKind::NotFound),
        );
        assert!(error.is_not_found());
        assert_eq!(error.location(), None);
        assert_eq!(
            error.to_string(),
            "/etc/samld.toml: cannot read the file: entity not found"
        );
        assert_eq!(format!("{error:#}"), error.to_string());
    }
}
