//! `samlctl aws-config`: the `~/.aws/config` profile that runs `samld-helper`, printed or
//! written in place; and the checks for AWS settings that would quietly win over samld.
//!
//! The AWS CLI and SDKs look for credentials in a fixed order: environment variables, then
//! static keys in `~/.aws/credentials`, then `credential_process`, …, then the container
//! endpoint. Static keys left behind by saml2aws in `~/.aws/credentials` therefore shadow
//! `credential_process` forever (saml2aws#895), and any credential setting in the `default`
//! profile shadows `samlctl exec`'s endpoint; both are reported.

use std::fmt;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::files::{FileMode, write_atomically};
use crate::ini::Ini;

/// The profile `aws-config` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The AWS profile name (`default` is written as `[default]`).
    pub name: String,
    /// The `credential_process` line.
    pub credential_process: String,
    /// The region, when the account has one.
    pub region: Option<String>,
}

/// A `--role` or `--profile` that cannot go into `~/.aws/config` as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidName(String);

impl fmt::Display for InvalidName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidName {}

/// Characters that would change the structure of an INI file from inside a section header,
/// besides whitespace and control characters.
const PROFILE_FORBIDDEN: &str = "[]#;";

/// Checks a profile name: it becomes a section header, so a newline or a bracket in it would
/// start sections (with their own `credential_process`) of the caller's choosing.
pub fn check_profile_name(name: &str) -> Result<(), InvalidName> {
    let bad = name
        .chars()
        .find(|&c| c.is_whitespace() || c.is_control() || PROFILE_FORBIDDEN.contains(c));
    if name.is_empty() {
        return Err(InvalidName("--profile must not be empty".into()));
    }
    match bad {
        None => Ok(()),
        Some(c) => Err(InvalidName(format!(
            "--profile {name:?} is not a usable profile name: it contains {c:?}, and a profile \
             name may not contain whitespace, control characters or any of {PROFILE_FORBIDDEN} \
             (they would change the structure of the AWS config file); choose another name"
        ))),
    }
}

/// Checks a role: it goes into the `credential_process` line, which the SDKs split like a
/// shell (aws-sdk-rust runs it with `sh -c`), so only the characters of IAM role ARNs and
/// names may appear.
pub fn check_role(role: &str) -> Result<(), InvalidName> {
    let valid = !role.is_empty()
        && !role.starts_with('-')
        && role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-:/".contains(c));
    if valid {
        Ok(())
    } else {
        Err(InvalidName(format!(
            "--role {role:?} is not a role ARN or a role name: use an ARN like \
             arn:aws:iam::123456789012:role/Name or a name like Name (letters, digits and \
             +=,.@_-:/ only)"
        )))
    }
}

impl Profile {
    /// The profile for `account` (and `role`), named `profile` or after the account, running
    /// `helper`. A role or profile name that would change the file's structure or the
    /// command line is refused.
    pub fn new(
        account: &str,
        role: Option<&str>,
        profile: Option<&str>,
        region: Option<&str>,
        helper: &str,
    ) -> Result<Self, InvalidName> {
        let name = profile.unwrap_or(account);
        check_profile_name(name)?;
        let mut credential_process = format!("{helper} {account}");
        if let Some(role) = role {
            check_role(role)?;
            credential_process.push_str(" --role ");
            credential_process.push_str(role);
        }
        Ok(Profile {
            name: name.to_owned(),
            credential_process,
            region: region.map(str::to_owned),
        })
    }

    /// The section header in `~/.aws/config`: `[default]` or `[profile NAME]`.
    pub fn section(&self) -> String {
        if self.name == "default" {
            "default".to_owned()
        } else {
            format!("profile {}", self.name)
        }
    }

    fn keys(&self) -> Vec<(&str, &str)> {
        let mut keys = vec![("credential_process", self.credential_process.as_str())];
        if let Some(region) = &self.region {
            keys.push(("region", region.as_str()));
        }
        keys
    }

    /// The stanza as it would appear in `~/.aws/config`.
    pub fn stanza(&self) -> String {
        Ini::parse("", false).set(&self.section(), &self.keys())
    }
}

/// How the helper is named in `credential_process`: the `samld-helper` next to the running
/// program when there is one (the AWS CLI runs the line without a shell and without our
/// PATH guarantees), else the bare name.
pub fn helper_command() -> String {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("samld-helper")))
        .filter(|p| p.is_file());
    match sibling.as_deref().and_then(Path::to_str) {
        // botocore splits the line like a shell (shlex) and aws-sdk-rust runs it with
        // `sh -c`; a path free of quoting-relevant characters reads the same to both.
        Some(path) if !path.contains(|c: char| c.is_whitespace() || "\"'\\$`".contains(c)) => {
            path.to_owned()
        }
        _ => "samld-helper".to_owned(),
    }
}

/// `$AWS_CONFIG_FILE`, else `~/.aws/config`.
pub fn config_file() -> Option<PathBuf> {
    aws_file("AWS_CONFIG_FILE", "config")
}

/// `$AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`.
pub fn credentials_file() -> Option<PathBuf> {
    aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
}

fn aws_file(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".aws").join(name))
}

/// A warning when `~/.aws/credentials` has static keys for `profile`, which the AWS tools
/// use instead of its `credential_process`.
pub fn static_keys_warning(credentials: &Path, profile: &str) -> Option<String> {
    let text = std::fs::read_to_string(credentials).ok()?;
    let ini = Ini::parse(&text, false);
    let section = ini.section(profile)?;
    section.get("aws_access_key_id")?;
    Some(format!(
        "{} has static keys in [{profile}], and the AWS CLI and SDKs use those instead of \
         credential_process; delete that section (saml2aws left it there?)",
        credentials.display()
    ))
}

/// A warning when the `default` profile has its own credentials, which the AWS SDKs use
/// before the container endpoint of `samlctl exec` (use `--static` then, or remove them).
pub fn default_profile_warning() -> Option<String> {
    let credential_keys = [
        "aws_access_key_id",
        "credential_process",
        "role_arn",
        "sso_session",
        "sso_start_url",
        "web_identity_token_file",
    ];
    let found = [
        (credentials_file(), "default"),
        (config_file(), "default"),
        (config_file(), "profile default"),
    ]
    .into_iter()
    .find_map(|(file, section)| {
        let file = file?;
        let text = std::fs::read_to_string(&file).ok()?;
        let ini = Ini::parse(&text, false);
        let key = credential_keys
            .iter()
            .find(|k| ini.section(section).and_then(|s| s.get(k)).is_some())?;
        Some((file, section, *key))
    })?;
    let (file, section, key) = found;
    Some(format!(
        "[{section}] in {} sets {key}, which the AWS SDKs prefer to the credentials samlctl \
         exec provides; use `samlctl exec --static` or remove it",
        file.display()
    ))
}

/// What `write_profile` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The file already said exactly this.
    Unchanged,
    /// The file was created.
    Created,
    /// The file was changed; the old one is kept at `backup`.
    Updated {
        /// The copy of the file as it was.
        backup: PathBuf,
    },
}

/// Why the AWS config file could not be written.
#[derive(Debug)]
pub struct WriteError {
    path: PathBuf,
    source: io::Error,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot update {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Adds (or updates) `profile` in the AWS config file at `path`, keeping its other settings
/// and every other line, and a backup (`PATH.bak`) of the previous file.
pub fn write_profile(path: &Path, profile: &Profile) -> Result<WriteOutcome, WriteError> {
    let error = |source| WriteError {
        path: path.to_owned(),
        source,
    };
    let old = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(error(e)),
    };
    let new =
        Ini::parse(old.as_deref().unwrap_or(""), false).set(&profile.section(), &profile.keys());
    if old.as_deref() == Some(new.as_str()) {
        return Ok(WriteOutcome::Unchanged);
    }
    let outcome = match &old {
        Some(_) => {
            let backup = backup_path(path);
            std::fs::copy(path, &backup).map_err(error)?;
            WriteOutcome::Updated { backup }
        }
        None => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(error)?;
            }
            WriteOutcome::Created
        }
    };
    write_atomically(path, new.as_bytes(), FileMode::KeepOr(0o600)).map_err(error)?;
    Ok(outcome)
}

/// `PATH.bak`.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".bak");
    path.with_file_name(name)
}

#[cfg(test)]
// Fixtures are written directly; only the code under test must use write_atomically.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn stanzas_name_the_profile_and_the_role() {
        let p = Profile::new(
            "prod",
            Some("ReadOnly"),
            None,
            Some("us-east-2"),
            "/opt/bin/samld-helper",
        )
        .unwrap();
        assert_eq!(
            p.stanza(),
            "[profile prod]\ncredential_process = /opt/bin/samld-helper prod --role ReadOnly\nregion = us-east-2\n"
        );
        let d = Profile::new("prod", None, Some("default"), None, "samld-helper").unwrap();
        assert_eq!(
            d.stanza(),
            "[default]\ncredential_process = samld-helper prod\n"
        );
    }

    #[test]
    fn writing_keeps_other_settings_and_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aws").join("config");
        let p = Profile::new("prod", None, None, Some("us-east-2"), "samld-helper").unwrap();

        assert_eq!(write_profile(&path, &p).unwrap(), WriteOutcome::Created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(write_profile(&path, &p).unwrap(), WriteOutcome::Unchanged);

        let before = "[profile prod]\noutput = json\ncredential_process = saml2aws login --credential-process\n";
        std::fs::write(&path, before).unwrap();
        let outcome = write_profile(&path, &p).unwrap();
        assert_eq!(
            outcome,
            WriteOutcome::Updated {
                backup: dir.path().join("aws").join("config.bak")
            }
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[profile prod]\noutput = json\ncredential_process = samld-helper prod\nregion = us-east-2\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("aws").join("config.bak")).unwrap(),
            before
        );
    }

    #[test]
    fn static_keys_in_the_credentials_file_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        std::fs::write(
            &creds,
            "[prod]\naws_access_key_id = ASIA\naws_secret_access_key = x\n[other]\nregion = y\n",
        )
        .unwrap();
        let w = static_keys_warning(&creds, "prod").unwrap();
        assert!(
            w.contains("[prod]") && w.contains("credential_process"),
            "{w}"
        );
        assert_eq!(static_keys_warning(&creds, "other"), None);
        assert_eq!(static_keys_warning(&creds, "missing"), None);
        assert_eq!(static_keys_warning(&dir.path().join("none"), "prod"), None);
    }

    #[test]
    fn names_that_change_the_files_structure_are_refused() {
        let new = |role: Option<&str>, profile: Option<&str>| {
            Profile::new("prod", role, profile, None, "samld-helper").map(|p| p.stanza())
        };
        let e = new(None, Some("x\ncredential_process = evil"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'\\n'") && e.contains("may not contain"), "{e}");
        // (profile name, whether it is accepted)
        for (profile, ok) in [
            ("a[b", false),
            ("a b", false),
            ("", false),
            ("acme/prod.admin@eu", true),
        ] {
            assert_eq!(new(None, Some(profile)).is_ok(), ok, "{profile:?}");
        }
        let e = new(Some("Admin\ncredential_process = x"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a role ARN or a role name"), "{e}");
        // (role, whether it is accepted)
        for (role, ok) in [
            ("Admin; rm -rf ~", false),
            ("$(id)", false),
            ("--help", false),
            (
                "arn:aws-us-gov:iam::123456789012:role/a/b+c=d,e.f@g_h-i",
                true,
            ),
        ] {
            assert_eq!(new(Some(role), None).is_ok(), ok, "{role:?}");
        }
    }

    #[test]
    fn backups_sit_beside_the_file() {
        assert_eq!(
            backup_path(Path::new("/h/.aws/config")),
            Path::new("/h/.aws/config.bak")
        );
    }
}
