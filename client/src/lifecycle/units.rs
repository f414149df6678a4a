//! The service definitions samld ships, and how they are filled in: the systemd units
//! (`systemd/samld.service`, `systemd/samld.socket`) and the launchd agent
//! (`launchd/com.samld.samld.plist`) are compiled in, and the paths of this installation are
//! put in with the quoting each format needs.
//!
//! Pure text: no environment, no files, no commands; [`super::service`] writes the results.

use std::fmt;
use std::path::Path;

/// The systemd service unit; `@SAMLD_BIN@` stands for the samld path.
pub const SYSTEMD_SERVICE_TEMPLATE: &str = include_str!("../../../systemd/samld.service");
/// The systemd socket unit, installed as it is.
pub const SYSTEMD_SOCKET_UNIT: &str = include_str!("../../../systemd/samld.socket");
/// The launchd agent; `@SAMLD_BIN@`, `@SAMLD_SOCKET@`, `@HOME@` and `@PATH@` are filled in.
pub const LAUNCHD_PLIST_TEMPLATE: &str = include_str!("../../../launchd/com.samld.samld.plist");
/// The launchd job label (and the plist's file name without `.plist`).
pub const LAUNCHD_LABEL: &str = "com.samld.samld";
/// The systemd service unit's name.
pub const SYSTEMD_SERVICE: &str = "samld.service";
/// The systemd socket unit's name.
pub const SYSTEMD_SOCKET: &str = "samld.socket";

/// A value that cannot go into a unit file or property list (not UTF-8, or with control
/// characters). The message says which, for the user as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError(String);

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnitError {}

/// `samld.service` with `ExecStart=` pointing at `samld`.
pub fn render_systemd_service(samld: &Path) -> Result<String, UnitError> {
    // Only on the ExecStart line: the comments name the placeholder for people.
    let exec = format!("ExecStart={}", systemd_exec_path(samld)?);
    Ok(SYSTEMD_SERVICE_TEMPLATE.replace("ExecStart=@SAMLD_BIN@", &exec))
}

/// The launchd agent for `samld` serving `socket`, logging under `home`, with `path` as
/// its `PATH`.
pub fn render_launchd_plist(
    samld: &Path,
    socket: &Path,
    home: &Path,
    path: &str,
) -> Result<String, UnitError> {
    fn text(p: &Path) -> Result<&str, UnitError> {
        p.to_str()
            .ok_or_else(|| UnitError(format!("{} is not valid UTF-8", p.display())))
    }
    // Only inside <string> elements: the comment names the placeholders for people.
    let value = |v: &str| -> Result<String, UnitError> {
        Ok(format!("<string>{}</string>", xml_escape(v)?))
    };
    Ok(LAUNCHD_PLIST_TEMPLATE
        .replace("<string>@SAMLD_BIN@</string>", &value(text(samld)?)?)
        .replace("<string>@SAMLD_SOCKET@</string>", &value(text(socket)?)?)
        .replace(
            "<string>@HOME@/Library/Logs/samld.log</string>",
            &value(&format!("{}/Library/Logs/samld.log", text(home)?))?,
        )
        .replace("<string>@PATH@</string>", &value(path)?))
}

/// A path as the first word of `ExecStart=`: quoted when needed, with systemd's specifier
/// (`%`) and variable (`$`) characters escaped.
fn systemd_exec_path(path: &Path) -> Result<String, UnitError> {
    let s = path
        .to_str()
        .ok_or_else(|| UnitError(format!("{} is not valid UTF-8", path.display())))?;
    if s.chars().any(char::is_control) {
        return Err(UnitError(format!(
            "{s:?} contains control characters and cannot go in a unit file"
        )));
    }
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._+-@,:".contains(c));
    if plain {
        return Ok(s.to_owned());
    }
    let mut quoted = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '%' => quoted.push_str("%%"),
            '$' => quoted.push_str("$$"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    Ok(quoted)
}

/// `s` as XML character data, for a `<string>` of a property list.
pub(super) fn xml_escape(s: &str) -> Result<String, UnitError> {
    if s.chars().any(|c| c.is_control() && c != '\t') {
        return Err(UnitError(format!(
            "{s:?} contains control characters and cannot go in a property list"
        )));
    }
    Ok(s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_paths_are_quoted_only_when_needed() {
        assert_eq!(
            systemd_exec_path(Path::new("/usr/local/bin/samld")).unwrap(),
            "/usr/local/bin/samld"
        );
        assert_eq!(
            systemd_exec_path(Path::new("/home/a b/100%/$x/\"q\"/samld")).unwrap(),
            r#""/home/a b/100%%/$$x/\"q\"/samld""#
        );
        assert!(systemd_exec_path(Path::new("/a\nb")).is_err());
    }
}
