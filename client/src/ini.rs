//! Just enough INI for `~/.saml2aws`, `~/.aws/config` and `~/.aws/credentials`: sections,
//! `key = value` entries with their line numbers, and edits that leave every other line of
//! the file exactly as it was.

/// A parsed file, keeping its lines for editing.
#[derive(Debug, Clone)]
pub(crate) struct Ini {
    lines: Vec<String>,
    /// The sections in file order; entries before the first header are not kept.
    pub(crate) sections: Vec<Section>,
}

/// One `[name]` section.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    /// The name between the brackets, trimmed.
    pub(crate) name: String,
    /// The header's line index.
    header: usize,
    /// The line index after the section's last line (the next header, or the end).
    end: usize,
    /// Top-level entries; indented lines (AWS nested settings such as `s3 =`) are skipped.
    pub(crate) entries: Vec<Entry>,
}

/// One `key = value` line.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The key, trimmed.
    pub(crate) key: String,
    /// The value, trimmed, without surrounding quotes and, when asked, inline comments.
    pub(crate) value: String,
    line: usize,
}

impl Section {
    /// The value of `key` (the last one when repeated, as INI readers do).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.key.eq_ignore_ascii_case(key))
            .map(|e| e.value.as_str())
    }
}

impl Ini {
    /// Parses `text`. `inline_comments` strips ` #…` and ` ;…` from values, as go-ini does
    /// for `~/.saml2aws`; the AWS files have no inline comments.
    pub(crate) fn parse(text: &str, inline_comments: bool) -> Self {
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let mut sections: Vec<Section> = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            if let Some(inner) = trimmed.strip_prefix('[') {
                let name = inner.split(']').next().unwrap_or(inner).trim().to_owned();
                if let Some(last) = sections.last_mut() {
                    last.end = i;
                }
                sections.push(Section {
                    name,
                    header: i,
                    end: lines.len(),
                    entries: Vec::new(),
                });
                continue;
            }
            if line.starts_with([' ', '\t']) {
                continue;
            }
            let Some(section) = sections.last_mut() else {
                continue;
            };
            let Some((key, value)) = trimmed.split_once(['=', ':']) else {
                continue;
            };
            let mut value = value.trim();
            if inline_comments {
                for marker in [" #", " ;", "\t#", "\t;"] {
                    if let Some(at) = value.find(marker) {
                        value = value[..at].trim_end();
                    }
                }
            }
            section.entries.push(Entry {
                key: key.trim().to_owned(),
                value: unquote(value).to_owned(),
                line: i,
            });
        }
        Ini { lines, sections }
    }

    /// The section called `name`.
    pub(crate) fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// Sets `keys` in section `name`, replacing existing entries in place and adding missing
    /// ones after the section's last entry; a missing section is appended. Returns the new
    /// text; every other line is untouched.
    pub(crate) fn set(&self, name: &str, keys: &[(&str, &str)]) -> String {
        let mut lines = self.lines.clone();
        match self.section(name) {
            Some(section) => {
                let mut missing = Vec::new();
                for &(key, value) in keys {
                    let existing: Vec<usize> = section
                        .entries
                        .iter()
                        .filter(|e| e.key.eq_ignore_ascii_case(key))
                        .map(|e| e.line)
                        .collect();
                    match existing.split_last() {
                        Some((&last, earlier)) => {
                            lines[last] = format!("{key} = {value}");
                            // Earlier duplicates are dead (the last one wins) and would only
                            // confuse; mark them rather than delete someone's line.
                            for &line in earlier {
                                lines[line] = format!("# {}", lines[line]);
                            }
                        }
                        None => missing.push(format!("{key} = {value}")),
                    }
                }
                let after = section
                    .entries
                    .last()
                    .map_or(section.header, |e| e.line)
                    .max(last_content_line(&lines, section));
                for (offset, line) in missing.into_iter().enumerate() {
                    lines.insert(after + 1 + offset, line);
                }
            }
            None => {
                if lines.last().is_some_and(|l| !l.trim().is_empty()) {
                    lines.push(String::new());
                }
                lines.push(format!("[{name}]"));
                for &(key, value) in keys {
                    lines.push(format!("{key} = {value}"));
                }
            }
        }
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }
}

/// The last non-blank, non-comment line of a section (its header if it has none), so that
/// added keys go before the blank lines and comments that introduce the next section.
fn last_content_line(lines: &[String], section: &Section) -> usize {
    (section.header..section.end)
        .rev()
        .find(|&i| {
            let t = lines[i].trim();
            !t.is_empty() && !t.starts_with('#') && !t.starts_with(';')
        })
        .unwrap_or(section.header)
}

fn unquote(value: &str) -> &str {
    for q in ['"', '\'', '`'] {
        if value.len() >= 2 && value.starts_with(q) && value.ends_with(q) {
            return &value[1..value.len() - 1];
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS: &str = "\
# my AWS config
[default]
region = eu-west-1

[profile prod]
output = json
s3 =
  max_concurrent_requests = 10
region = us-east-1

# staging below
[profile staging]
region = us-west-2
";

    #[test]
    fn sections_entries_and_nested_settings() {
        let ini = Ini::parse(AWS, false);
        let names: Vec<&str> = ini.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["default", "profile prod", "profile staging"]);
        let prod = ini.section("profile prod").unwrap();
        assert_eq!(prod.get("region"), Some("us-east-1"));
        assert_eq!(
            prod.get("max_concurrent_requests"),
            None,
            "nested, not top-level"
        );
    }

    #[test]
    fn inline_comments_and_quotes() {
        let ini = Ini::parse(
            "[a]\nurl = https://x/#frag # the url\nname = \"quoted\" ; c\n",
            true,
        );
        let a = ini.section("a").unwrap();
        assert_eq!(a.get("url"), Some("https://x/#frag"));
        assert_eq!(a.get("name"), Some("quoted"));
        let raw = Ini::parse("[a]\nv = x # y\n", false);
        assert_eq!(raw.section("a").unwrap().get("v"), Some("x # y"));
    }

    #[test]
    fn set_replaces_in_place_and_adds_before_the_next_section() {
        let ini = Ini::parse(AWS, false);
        let text = ini.set(
            "profile prod",
            &[
                ("credential_process", "/bin/samld-helper prod"),
                ("region", "us-east-2"),
            ],
        );
        assert_eq!(
            text,
            "\
# my AWS config
[default]
region = eu-west-1

[profile prod]
output = json
s3 =
  max_concurrent_requests = 10
region = us-east-2
credential_process = /bin/samld-helper prod

# staging below
[profile staging]
region = us-west-2
"
        );
    }

    #[test]
    fn set_appends_a_missing_section() {
        let ini = Ini::parse("[default]\nregion = x", false);
        assert_eq!(
            ini.set("profile new", &[("region", "y")]),
            "[default]\nregion = x\n\n[profile new]\nregion = y\n"
        );
        assert_eq!(
            Ini::parse("", false).set("default", &[("a", "b")]),
            "[default]\na = b\n"
        );
    }

    #[test]
    fn duplicate_keys_keep_only_the_replaced_last_one_live() {
        let ini = Ini::parse("[p]\nregion = a\nregion = b\n", false);
        assert_eq!(
            ini.set("p", &[("region", "c")]),
            "[p]\n# region = a\nregion = c\n"
        );
    }
}
