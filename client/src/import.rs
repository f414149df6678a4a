//! `samlctl import saml2aws`: turn the JumpCloud accounts of a saml2aws config (`~/.saml2aws`)
//! into `[accounts.NAME]` tables of the samld config.
//!
//! The samld config is edited as text: new tables are appended, and a table replaced with
//! `--force` is cut out by its lines, so the user's comments and layout survive. The result is
//! validated with the same parser the daemon uses before it replaces the file (atomically,
//! keeping `config.toml.bak`), so an import can never leave an invalid config behind.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::awsconfig::backup_path;
use crate::files::{FileMode, write_atomically};
use crate::ini::{Ini, Section};

/// A saml2aws account converted to samld settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedAccount {
    /// The account name (the saml2aws section name).
    pub name: String,
    /// `url`.
    pub url: String,
    /// `username`.
    pub username: String,
    /// `mfa`, in samld's spelling.
    pub mfa: &'static str,
    /// `role_arn` → `role`.
    pub role: Option<String>,
    /// `region`.
    pub region: Option<String>,
    /// `aws_session_duration` → `session_duration`.
    pub session_duration: Option<Duration>,
}

impl ImportedAccount {
    /// The `[accounts.NAME]` table.
    pub fn to_toml(&self) -> String {
        let mut t = format!("[accounts.{}]\n", self.name);
        t.push_str("provider = \"jumpcloud\"\n");
        t.push_str(&format!("url = {}\n", toml_string(&self.url)));
        t.push_str(&format!("username = {}\n", toml_string(&self.username)));
        if let Some(role) = &self.role {
            t.push_str(&format!("role = {}\n", toml_string(role)));
        }
        t.push_str(&format!("mfa = \"{}\"\n", self.mfa));
        if let Some(region) = &self.region {
            t.push_str(&format!("region = {}\n", toml_string(region)));
        }
        if let Some(d) = self.session_duration {
            t.push_str(&format!(
                "session_duration = \"{}\"\n",
                samld_config::format_duration(d)
            ));
        }
        t
    }
}

/// What reading a saml2aws file found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversion {
    /// Accounts that can be imported.
    pub accounts: Vec<ImportedAccount>,
    /// Sections that cannot, with the reason: (section, why).
    pub skipped: Vec<(String, String)>,
    /// Settings that were dropped or need a step of their own: (account, what).
    pub notes: Vec<(String, String)>,
}

/// Converts the text of a saml2aws config.
pub fn convert(text: &str) -> Conversion {
    let ini = Ini::parse(text, true);
    let mut out = Conversion::default();
    for section in &ini.sections {
        if section.entries.is_empty() && section.name.eq_ignore_ascii_case("default") {
            continue;
        }
        match convert_section(section, &mut out.notes) {
            Ok(account) => out.accounts.push(account),
            Err(why) => out.skipped.push((section.name.clone(), why)),
        }
    }
    out
}

fn convert_section(
    section: &Section,
    notes: &mut Vec<(String, String)>,
) -> Result<ImportedAccount, String> {
    let name = section.name.clone();
    let provider = section.get("provider").unwrap_or("");
    if !provider.eq_ignore_ascii_case("jumpcloud") {
        return Err(if provider.is_empty() {
            "no provider is set".to_owned()
        } else {
            format!("provider {provider} is not supported (samld signs in with JumpCloud only)")
        });
    }
    if let Err(why) = check_name(&name) {
        return Err(format!(
            "`{name}` cannot be a samld account name ({why}); rename the section and import again"
        ));
    }
    let url = section
        .get("url")
        .filter(|u| !u.is_empty())
        .ok_or("no url is set")?;
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(format!("url {url} is not an http(s) URL"));
    }
    let username = section
        .get("username")
        .filter(|u| !u.is_empty())
        .ok_or("no username is set (samld needs the JumpCloud email)")?;
    let mut note = |what: String| notes.push((name.clone(), what));

    let mfa = match section
        .get("mfa")
        .unwrap_or("")
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "auto" => "auto",
        "push" => "push",
        "totp" => "totp",
        "webauthn" => "webauthn",
        other => {
            note(format!(
                "mfa {other} is not supported by samld; set to auto (push, else TOTP)"
            ));
            "auto"
        }
    };
    let session_duration = match section
        .get("aws_session_duration")
        .filter(|v| !v.is_empty())
    {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(secs) if (900..=43_200).contains(&secs) => Some(Duration::from_secs(secs)),
            _ => {
                note(format!(
                    "aws_session_duration {v} is not 900 to 43200 seconds; left at samld's default (1h)"
                ));
                None
            }
        },
    };
    if section
        .get("skip_verify")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        note("skip_verify = true was dropped: samld always verifies TLS certificates".into());
    }
    for key in ["policy_file", "policy_arn_list"] {
        if section.get(key).is_some_and(|v| !v.is_empty()) {
            note(format!(
                "{key} was dropped: samld does not pass session policies"
            ));
        }
    }
    let profile = section
        .get("aws_profile")
        .filter(|p| !p.is_empty())
        .unwrap_or("saml");
    note(format!(
        "saml2aws wrote its credentials to the [{profile}] profile; run `samlctl aws-config \
         {name} --profile {profile} --write`, and delete [{profile}] from ~/.aws/credentials \
         (static keys there would win over samld)"
    ));

    let nonempty = |key| {
        section
            .get(key)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Ok(ImportedAccount {
        name: name.clone(),
        url: url.to_owned(),
        username: username.to_owned(),
        mfa,
        role: nonempty("role_arn"),
        region: nonempty("region"),
        session_duration,
    })
}

/// samld's rule for account names (they end up on command lines).
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("it is empty")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Err("only letters, digits, '.', '_' and '-' are allowed")
    } else if name.starts_with('-') {
        Err("it must not start with '-'")
    } else {
        Ok(())
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The outcome of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The samld config file.
    pub config: PathBuf,
    /// The backup of the previous config file, if there was one and it changed.
    pub backup: Option<PathBuf>,
    /// Accounts added.
    pub added: Vec<String>,
    /// Accounts replaced (`--force`).
    pub replaced: Vec<String>,
    /// Sections not imported, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Settings dropped or needing a step of their own.
    pub notes: Vec<(String, String)>,
}

impl Report {
    /// Whether anything was written.
    pub fn imported_any(&self) -> bool {
        !self.added.is_empty() || !self.replaced.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.imported_any() {
            writeln!(f, "Imported into {}:", self.config.display())?;
            for name in &self.added {
                writeln!(f, "  {name}")?;
            }
            for name in &self.replaced {
                writeln!(f, "  {name} (replaced)")?;
            }
            if let Some(backup) = &self.backup {
                writeln!(f, "The previous config is saved as {}.", backup.display())?;
            }
        } else {
            writeln!(f, "Nothing imported into {}.", self.config.display())?;
        }
        if !self.skipped.is_empty() {
            writeln!(f, "Not imported:")?;
            for (section, why) in &self.skipped {
                writeln!(f, "  [{section}]: {why}")?;
            }
        }
        let notes: Vec<&(String, String)> = self
            .notes
            .iter()
            .filter(|(name, _)| self.added.contains(name) || self.replaced.contains(name))
            .collect();
        if !notes.is_empty() {
            writeln!(f, "Notes:")?;
            for (name, what) in notes {
                writeln!(f, "  {name}: {what}")?;
            }
        }
        Ok(())
    }
}

/// Why an import failed as a whole.
#[derive(Debug)]
pub enum ImportError {
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// The samld config is invalid already; it has to be fixed first.
    InvalidConfig(String),
    /// The edited config would not be valid (a bug, or an account defined in a form the
    /// import cannot replace).
    Rejected(String),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            ImportError::InvalidConfig(e) => write!(
                f,
                "the samld config is invalid, so nothing was imported; fix it first \
                 (`samlctl config check`):\n{e}"
            ),
            ImportError::Rejected(e) => write!(
                f,
                "the imported config would be invalid, so nothing was written:\n{e}"
            ),
        }
    }
}

impl std::error::Error for ImportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImportError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Imports the JumpCloud accounts of the saml2aws config at `source` into the samld config
/// at `config`; existing accounts are replaced only with `force`.
pub fn import_saml2aws(source: &Path, config: &Path, force: bool) -> Result<Report, ImportError> {
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| ImportError::Io { path, source }
    };
    let text = std::fs::read_to_string(source).map_err(io_error(source))?;
    let conversion = convert(&text);
    let old = match std::fs::read_to_string(config) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error(config)(e)),
    };
    let old_text = old.as_deref().unwrap_or("");
    let existing = samld_config::parse(old_text, config)
        .map_err(|e| ImportError::InvalidConfig(format!("{e:#}")))?;

    let mut report = Report {
        config: config.to_owned(),
        backup: None,
        added: Vec::new(),
        replaced: Vec::new(),
        skipped: conversion.skipped,
        notes: conversion.notes,
    };
    let mut lines: Vec<String> = old_text.lines().map(str::to_owned).collect();
    let mut appended = String::new();
    for account in &conversion.accounts {
        if existing.account(&account.name).is_some() {
            if !force {
                report.skipped.push((
                    account.name.clone(),
                    format!(
                        "account {} already exists in the samld config; --force replaces it",
                        account.name
                    ),
                ));
                continue;
            }
            let Some(range) = account_table(&lines, &account.name) else {
                report.skipped.push((
                    account.name.clone(),
                    format!(
                        "account {} exists but is not written as an [accounts.{}] table, so it \
                         cannot be replaced automatically; edit the file by hand",
                        account.name, account.name
                    ),
                ));
                continue;
            };
            lines.splice(range.clone(), account.to_toml().lines().map(str::to_owned));
            report.replaced.push(account.name.clone());
        } else {
            appended.push('\n');
            appended.push_str(&account.to_toml());
            report.added.push(account.name.clone());
        }
    }
    if !report.imported_any() {
        return Ok(report);
    }

    let mut new_text = lines.join("\n");
    if !new_text.is_empty() && !new_text.ends_with('\n') {
        new_text.push('\n');
    }
    if new_text.trim().is_empty() {
        // A fresh file: no leading blank line.
        new_text = appended.trim_start().to_owned();
    } else {
        new_text.push_str(&appended);
    }
    let parsed = samld_config::parse(&new_text, config)
        .map_err(|e| ImportError::Rejected(format!("{e:#}")))?;
    for name in report.added.iter().chain(&report.replaced) {
        if parsed.account(name).is_none() {
            return Err(ImportError::Rejected(format!(
                "account {name} is missing after the edit"
            )));
        }
    }

    if old.is_some() {
        let backup = backup_path(config);
        std::fs::copy(config, &backup).map_err(io_error(&backup))?;
        report.backup = Some(backup);
    } else if let Some(dir) = config.parent() {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    write_atomically(config, new_text.as_bytes(), FileMode::KeepOr(0o600))
        .map_err(io_error(config))?;
    Ok(report)
}

/// The lines of the `[accounts.NAME]` table: its header up to the next table's header,
/// without the blank lines and comments just before that header (they belong to it).
fn account_table(lines: &[String], name: &str) -> Option<Range<usize>> {
    let start = lines
        .iter()
        .position(|l| header_path(l).is_some_and(|p| p == ["accounts", name]))?;
    let next = lines[start + 1..]
        .iter()
        .position(|l| header_path(l).is_some())
        .map_or(lines.len(), |i| start + 1 + i);
    let mut end = next;
    while end > start + 1 {
        let t = lines[end - 1].trim();
        if t.is_empty() || t.starts_with('#') {
            end -= 1;
        } else {
            break;
        }
    }
    Some(start..end)
}

/// The dotted key of a `[table]` header line (`[accounts."prod"]` → `accounts`, `prod`).
fn header_path(line: &str) -> Option<Vec<String>> {
    let t = line.trim();
    if t.starts_with("[[") {
        return Some(Vec::new());
    }
    let inner = t.strip_prefix('[')?;
    let inner = &inner[..inner.find(']')?];
    Some(
        inner
            .split('.')
            .map(|part| part.trim().trim_matches(['"', '\'']).to_owned())
            .collect(),
    )
}

#[cfg(test)]
// Fixtures are written directly; only the code under test must use write_atomically.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    const SAML2AWS: &str = r#"
[default]
name = default
app_id =
url = https://sso.jumpcloud.com/saml2/acme-prod-aws-admin
username = road.runner@the-acme-corporation.com
provider = JumpCloud
mfa = Auto
skip_verify = false
timeout = 0
aws_urn = urn:amazon:webservices
aws_session_duration = 7200
aws_profile = saml
role_arn = arn:aws:iam::012345678987:role/AcmeJumpCloudAdminRO
region = us-east-2

[staging]
url = https://sso.jumpcloud.com/saml2/acme-staging # the staging app
username = road.runner@the-acme-corporation.com
provider = JumpCloud
mfa = DUO
skip_verify = true
aws_session_duration = 100000

[okta-dev]
url = https://acme.okta.com/home/amazon_aws/0oa/272
username = rr@acme.com
provider = Okta
mfa = PUSH

[my account]
url = https://sso.jumpcloud.com/saml2/x
username = a@b.c
provider = JumpCloud
"#;

    #[test]
    fn jumpcloud_sections_convert_and_the_rest_is_explained() {
        let c = convert(SAML2AWS);
        let names: Vec<&str> = c.accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["default", "staging"]);
        assert_eq!(
            c.accounts[0],
            ImportedAccount {
                name: "default".into(),
                url: "https://sso.jumpcloud.com/saml2/acme-prod-aws-admin".into(),
                username: "road.runner@the-acme-corporation.com".into(),
                mfa: "auto",
                role: Some("arn:aws:iam::012345678987:role/AcmeJumpCloudAdminRO".into()),
                region: Some("us-east-2".into()),
                session_duration: Some(Duration::from_secs(7200)),
            }
        );
        let staging = &c.accounts[1];
        assert_eq!(staging.url, "https://sso.jumpcloud.com/saml2/acme-staging");
        assert_eq!(staging.mfa, "auto");
        assert_eq!(staging.session_duration, None);

        let skipped: Vec<&str> = c.skipped.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(skipped, ["okta-dev", "my account"]);
        assert!(c.skipped[0].1.contains("Okta"), "{:?}", c.skipped);
        assert!(c.skipped[1].1.contains("rename"), "{:?}", c.skipped);

        let staging_notes: Vec<&str> = c
            .notes
            .iter()
            .filter(|(n, _)| n == "staging")
            .map(|(_, w)| w.as_str())
            .collect();
        assert!(
            staging_notes.iter().any(|n| n.contains("mfa duo")),
            "{staging_notes:?}"
        );
        assert!(staging_notes.iter().any(|n| n.contains("skip_verify")));
        assert!(staging_notes.iter().any(|n| n.contains("100000")));
    }

    #[test]
    fn tables_are_valid_samld_config() {
        let c = convert(SAML2AWS);
        let text: String = c.accounts.iter().map(ImportedAccount::to_toml).collect();
        let config = samld_config::parse(&text, Path::new("/t.toml")).unwrap();
        let prod = config.account("default").unwrap();
        assert_eq!(prod.session_duration, Duration::from_secs(7200));
        assert_eq!(prod.region.as_deref(), Some("us-east-2"));
        assert_eq!(
            prod.role.as_deref(),
            Some("arn:aws:iam::012345678987:role/AcmeJumpCloudAdminRO")
        );
        assert_eq!(toml_string("a\"b\\c\n"), r#""a\"b\\c\u000A""#);
    }

    #[test]
    fn existing_accounts_are_kept_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("saml2aws");
        std::fs::write(&source, SAML2AWS).unwrap();
        let config = dir.path().join("config.toml");
        let original = "# my accounts\n[defaults]\nregion = \"eu-west-1\"\n\n[accounts.staging]\nurl = \"https://sso.jumpcloud.com/saml2/old\"\nusername = \"old@example.com\"\n\n# keep this comment\n[accounts.other]\nurl = \"https://sso.jumpcloud.com/saml2/other\"\nusername = \"o@example.com\"\n";
        std::fs::write(&config, original).unwrap();

        let report = import_saml2aws(&source, &config, false).unwrap();
        assert_eq!(report.added, ["default"]);
        assert!(report.replaced.is_empty());
        assert!(
            report
                .skipped
                .iter()
                .any(|(s, why)| s == "staging" && why.contains("--force")),
            "{report}"
        );
        let after = std::fs::read_to_string(&config).unwrap();
        assert!(
            after.starts_with(original),
            "the old text is untouched:\n{after}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("config.toml.bak")).unwrap(),
            original
        );
        let parsed = samld_config::load(&config).unwrap();
        assert_eq!(
            parsed.account("staging").unwrap().username,
            "old@example.com"
        );

        let report = import_saml2aws(&source, &config, true).unwrap();
        assert_eq!(report.replaced, ["default", "staging"]);
        let after = std::fs::read_to_string(&config).unwrap();
        let parsed = samld_config::load(&config).unwrap();
        let staging = parsed.account("staging").unwrap();
        assert_eq!(staging.username, "road.runner@the-acme-corporation.com");
        assert_eq!(
            staging.region.as_deref(),
            Some("eu-west-1"),
            "defaults still apply"
        );
        assert!(parsed.account("other").is_some());
        assert!(
            after.contains("# my accounts")
                && after.contains("# keep this comment\n[accounts.other]"),
            "{after}"
        );
        assert_eq!(after.matches("[accounts.default]").count(), 1);
    }

    #[test]
    fn an_invalid_samld_config_stops_the_import() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("saml2aws");
        std::fs::write(&source, SAML2AWS).unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "[accounts.x]\nurl = 3\n").unwrap();
        let e = import_saml2aws(&source, &config, false).unwrap_err();
        assert!(matches!(e, ImportError::InvalidConfig(_)), "{e}");
        assert_eq!(
            std::fs::read_to_string(&config).unwrap(),
            "[accounts.x]\nurl = 3\n"
        );
    }

    #[test]
    fn a_new_config_file_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("saml2aws");
        std::fs::write(&source, SAML2AWS).unwrap();
        let config = dir.path().join("samld").join("config.toml");
        let report = import_saml2aws(&source, &config, false).unwrap();
        assert_eq!(report.added, ["default", "staging"]);
        assert_eq!(report.backup, None);
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(text.starts_with("[accounts.default]\n"), "{text}");
        assert_eq!(samld_config::load(&config).unwrap().accounts.len(), 2);
    }
}
