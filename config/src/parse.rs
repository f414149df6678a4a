//! From TOML text to a validated [`Config`].
//!
//! The document is parsed into toml's spanned tree ([`DeTable`]) and walked by hand rather
//! than deserialised with serde: every key and value keeps its byte span, so each error can
//! name the exact line, column and key path, and unknown keys can be caught everywhere with a
//! suggestion.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};
use url::Url;

use crate::arn::{RoleArn, is_role_name};
use crate::duration::{self, DurationError};
use crate::error::{ConfigError, ErrorKind, Source};
use crate::{
    Account, Config, DEFAULT_FEDERATION_URL, DEFAULT_JUMPCLOUD_CONSOLE_URL, DEFAULT_LOGIN_WAIT,
    DEFAULT_REFRESH_BEFORE, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SESSION_DURATION, LoginMethod,
    MAX_LOGIN_WAIT, MAX_REQUEST_TIMEOUT, MAX_SESSION_DURATION, MIN_LOGIN_WAIT, MIN_REFRESH_BEFORE,
    MIN_REQUEST_TIMEOUT, MIN_SESSION_DURATION, MfaMode, Provider,
};

const TOP_LEVEL_KEYS: &[&str] = &["defaults", "accounts", "audit_log"];

/// A value that is wrong, before it is given a position: kind and message.
type Problem = (ErrorKind, String);

/// A value as set in one table, with where it was set (for errors about combinations).
struct Setting<T> {
    value: T,
    span: Range<usize>,
    key: String,
}

/// Declares the account keys once: the [`Layer`] that holds what one table sets, the list of
/// known keys for suggestions, and which function checks each value.
macro_rules! account_keys {
    ($($key:ident: $ty:ty => $check:ident),* $(,)?) => {
        /// What one table (`[defaults]` or `[accounts.NAME]`) sets, each key optional.
        #[derive(Default)]
        struct Layer {
            $($key: Option<Setting<$ty>>,)*
        }

        /// Every key an account (or `[defaults]`) may set.
        const ACCOUNT_KEYS: &[&str] = &[$(stringify!($key)),*];

        impl Layer {
            /// Checks and records `value` for `key`; `None` when the key is unknown.
            fn set(
                &mut self,
                key: &str,
                value: &Spanned<DeValue<'_>>,
                key_path: &str,
            ) -> Option<Result<(), Problem>> {
                match key {
                    $(stringify!($key) => Some($check(value.get_ref()).map(|checked| {
                        self.$key = Some(Setting {
                            value: checked,
                            span: value.span(),
                            key: key_path.to_owned(),
                        });
                    })),)*
                    _ => None,
                }
            }
        }
    };
}

account_keys! {
    provider: Provider => provider,
    url: String => idp_url,
    username: String => username,
    role: String => role,
    mfa: MfaMode => mfa_mode,
    region: String => region,
    session_duration: Duration => session_duration,
    refresh_before: Duration => refresh_before,
    password_command: String => command,
    mfa_command: String => command,
    jumpcloud_console_url: String => idp_url,
    sts_endpoint: String => sts_url,
    federation_url: String => federation_url,
    notifications: bool => boolean,
    login_wait: Duration => login_wait,
    request_timeout: Duration => request_timeout,
    login: LoginMethod => login_method,
    browser: String => browser_path,
    browser_args: Vec<String> => browser_args,
}

pub(crate) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let source = Source::new(path, text);
    let root = DeTable::parse(text).map_err(|e| syntax_error(&source, &e))?;

    let mut defaults = Layer::default();
    let mut tables = Vec::new();
    let mut audit_log = None;
    for (key, value) in in_file_order(root.get_ref()) {
        match key.get_ref().as_ref() {
            "defaults" => {
                let table = expect_table(&source, value, "defaults", "a table of settings")?;
                defaults = parse_layer(&source, table, "defaults")?;
            }
            "accounts" => {
                let table = expect_table(&source, value, "accounts", "a table of accounts")?;
                for (name, value) in in_file_order(table) {
                    let key_path = key_path("accounts", name.get_ref());
                    check_account_name(name.get_ref()).map_err(|(kind, m)| {
                        source.error(kind, name.span(), Some(key_path.clone()), m)
                    })?;
                    let table =
                        expect_table(&source, value, &key_path, "a table of account settings")?;
                    let layer = parse_layer(&source, table, &key_path)?;
                    tables.push((name.get_ref().to_string(), key_path, value.span(), layer));
                }
            }
            "audit_log" => {
                let path = audit_log_path(value.get_ref()).map_err(|(kind, message)| {
                    source.error(kind, value.span(), Some("audit_log".to_owned()), message)
                })?;
                audit_log = Some(path);
            }
            other => {
                let hint = if ACCOUNT_KEYS.contains(&other) {
                    Some("account settings belong in [defaults] or [accounts.NAME]".to_owned())
                } else {
                    suggest(other, TOP_LEVEL_KEYS).map(|known| format!("did you mean `{known}`?"))
                };
                return Err(unknown_key(&source, key, key_path("", other), hint));
            }
        }
    }

    let mut accounts = BTreeMap::new();
    for (name, key_path, header, layer) in tables {
        let account = resolve(&source, name, &key_path, header, &layer, &defaults)?;
        accounts.insert(account.name.clone(), account);
    }
    Ok(Config {
        accounts,
        audit_log,
    })
}

/// `audit_log`: an absolute path (the daemon's working directory is nobody's business).
fn audit_log_path(value: &DeValue<'_>) -> Result<std::path::PathBuf, Problem> {
    let text = string(value, "a string (an absolute path)")?;
    let path = std::path::PathBuf::from(text);
    if !path.is_absolute() {
        return Err(invalid(format!("must be an absolute path, got {text:?}")));
    }
    Ok(path)
}

/// A table's entries in the order they appear in the file, so that the first error reported
/// is the first one a reader meets (the table itself is sorted by key).
fn in_file_order<'t, 'i>(
    table: &'t DeTable<'i>,
) -> Vec<(&'t Spanned<DeString<'i>>, &'t Spanned<DeValue<'i>>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

fn parse_layer(
    source: &Source<'_>,
    table: &DeTable<'_>,
    prefix: &str,
) -> Result<Layer, ConfigError> {
    let mut layer = Layer::default();
    for (key, value) in in_file_order(table) {
        let path = key_path(prefix, key.get_ref());
        match layer.set(key.get_ref(), value, &path) {
            Some(Ok(())) => {}
            Some(Err((kind, message))) => {
                return Err(source.error(kind, value.span(), Some(path), message));
            }
            None => {
                let hint = suggest(key.get_ref(), ACCOUNT_KEYS)
                    .map(|known| format!("did you mean `{known}`?"));
                return Err(unknown_key(source, key, path, hint));
            }
        }
    }
    Ok(layer)
}

/// Applies `[defaults]` under one account's own settings and checks what needs both.
fn resolve(
    source: &Source<'_>,
    name: String,
    account_path: &str,
    header: Range<usize>,
    own: &Layer,
    defaults: &Layer,
) -> Result<Account, ConfigError> {
    fn pick<'a, T>(
        own: &'a Option<Setting<T>>,
        defaults: &'a Option<Setting<T>>,
    ) -> Option<&'a Setting<T>> {
        own.as_ref().or(defaults.as_ref())
    }
    fn value<T: Clone>(own: &Option<Setting<T>>, defaults: &Option<Setting<T>>) -> Option<T> {
        pick(own, defaults).map(|s| s.value.clone())
    }
    let required = |setting: Option<&Setting<String>>, key: &str| {
        setting.map(|s| s.value.clone()).ok_or_else(|| {
            source.error(
                ErrorKind::MissingKey,
                header.clone(),
                Some(account_path.to_owned()),
                format!("missing required key `{key}` (set it in this table or in [defaults])"),
            )
        })
    };

    let url = required(pick(&own.url, &defaults.url), "url")?;
    let provider = value(&own.provider, &defaults.provider).unwrap_or(Provider::JumpCloud);
    // A generic SAML IdP is signed in to in the browser, which knows who the person is.
    let username = match provider {
        Provider::JumpCloud => required(pick(&own.username, &defaults.username), "username")?,
        Provider::Saml => value(&own.username, &defaults.username).unwrap_or_default(),
    };
    let login = match (provider, pick(&own.login, &defaults.login)) {
        (Provider::Saml, Some(s)) if s.value == LoginMethod::Api => {
            return Err(source.error(
                ErrorKind::InvalidValue,
                s.span.clone(),
                Some(s.key.clone()),
                format!(
                    "provider = \"saml\" signs in only through a browser (samld knows no API \
                     for an arbitrary IdP); set login = \"browser\" or leave it out (for \
                     account `{name}`)"
                ),
            ));
        }
        (_, Some(s)) => s.value,
        (Provider::Saml, None) => LoginMethod::Browser,
        (Provider::JumpCloud, None) => LoginMethod::Api,
    };

    let session = pick(&own.session_duration, &defaults.session_duration);
    let refresh = pick(&own.refresh_before, &defaults.refresh_before);
    let session_duration = session.map_or(DEFAULT_SESSION_DURATION, |s| s.value);
    // The default suits the usual hour-long session; a shorter session that did not say
    // when to refresh gets half its length instead of an error about a key it never set.
    let refresh_before = refresh.map_or(DEFAULT_REFRESH_BEFORE.min(session_duration / 2), |s| {
        s.value
    });
    if refresh_before >= session_duration {
        // Point at whichever of the two this account sets itself, as that is what its author
        // most likely wants to change; fall back to the `[defaults]` line.
        let own_setting = own
            .refresh_before
            .as_ref()
            .or(own.session_duration.as_ref());
        let (span, key, in_defaults) = match own_setting.or(refresh).or(session) {
            Some(s) => (s.span.clone(), s.key.clone(), own_setting.is_none()),
            None => (header.clone(), account_path.to_owned(), false),
        };
        let mut message = format!(
            "refresh_before ({}) must be shorter than session_duration ({}), or credentials \
             would be refreshed as soon as they are issued",
            duration::format_duration(refresh_before),
            duration::format_duration(session_duration),
        );
        if in_defaults {
            message.push_str(&format!(" (for account `{name}`)"));
        }
        return Err(source.error(ErrorKind::InvalidValue, span, Some(key), message));
    }

    Ok(Account {
        provider,
        login,
        browser: value(&own.browser, &defaults.browser),
        browser_args: value(&own.browser_args, &defaults.browser_args).unwrap_or_default(),
        url,
        username,
        role: value(&own.role, &defaults.role),
        mfa: value(&own.mfa, &defaults.mfa).unwrap_or(MfaMode::Auto),
        region: value(&own.region, &defaults.region),
        session_duration,
        refresh_before,
        password_command: value(&own.password_command, &defaults.password_command),
        mfa_command: value(&own.mfa_command, &defaults.mfa_command),
        jumpcloud_console_url: value(&own.jumpcloud_console_url, &defaults.jumpcloud_console_url)
            .unwrap_or_else(|| DEFAULT_JUMPCLOUD_CONSOLE_URL.to_owned()),
        sts_endpoint: value(&own.sts_endpoint, &defaults.sts_endpoint),
        federation_url: value(&own.federation_url, &defaults.federation_url)
            .unwrap_or_else(|| DEFAULT_FEDERATION_URL.to_owned()),
        notifications: value(&own.notifications, &defaults.notifications).unwrap_or(true),
        login_wait: value(&own.login_wait, &defaults.login_wait).unwrap_or(DEFAULT_LOGIN_WAIT),
        request_timeout: value(&own.request_timeout, &defaults.request_timeout)
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT),
        name,
    })
}

fn syntax_error(source: &Source<'_>, error: &toml::de::Error) -> ConfigError {
    let mut message = error.message().to_owned();
    let Some(span) = error.span() else {
        return source.error_without_span(ErrorKind::Syntax, message);
    };
    // toml does not say which key is duplicated; the span covers it.
    if message == "duplicate key"
        && let Some(key) = source.text().get(span.clone())
        && !key.is_empty()
        && !key.contains('\n')
    {
        message = format!("duplicate key `{key}`");
    }
    source.error(ErrorKind::Syntax, span, None, message)
}

fn expect_table<'t, 'i>(
    source: &Source<'_>,
    value: &'t Spanned<DeValue<'i>>,
    key_path: &str,
    what: &str,
) -> Result<&'t DeTable<'i>, ConfigError> {
    match value.get_ref() {
        DeValue::Table(table) => Ok(table),
        other => Err(source.error(
            ErrorKind::InvalidType,
            value.span(),
            Some(key_path.to_owned()),
            format!("expected {what}, got {}", type_name(other)),
        )),
    }
}

fn unknown_key(
    source: &Source<'_>,
    key: &Spanned<DeString<'_>>,
    key_path: String,
    hint: Option<String>,
) -> ConfigError {
    let message = match hint {
        Some(hint) => format!("unknown key; {hint}"),
        None => "unknown key".to_owned(),
    };
    source.error(ErrorKind::UnknownKey, key.span(), Some(key_path), message)
}

/// The known key closest to a misspelt one, if any is close enough to be a likely intent.
fn suggest(unknown: &str, known: &[&'static str]) -> Option<&'static str> {
    let lower = unknown.to_ascii_lowercase();
    let closest = known
        .iter()
        .map(|k| (strsim::jaro_winkler(&lower, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k);
    // A shortened key ("duration", "console_url") scores low on similarity but is
    // unambiguous when exactly one known key contains it.
    closest.or_else(|| {
        let mut containing = known
            .iter()
            .filter(|k| lower.len() >= 4 && k.contains(&lower));
        match (containing.next(), containing.next()) {
            (Some(k), None) => Some(*k),
            _ => None,
        }
    })
}

/// `prefix.key`, quoting `key` the TOML way when it is not a bare key.
fn key_path(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

fn check_account_name(name: &str) -> Result<(), Problem> {
    // The name is typed on command lines (`credential_process = samld-helper NAME`), so it is
    // kept to characters no shell or AWS config parser treats specially, and may not look
    // like an option.
    if name.is_empty() {
        return Err((
            ErrorKind::InvalidValue,
            "an account name must not be empty".into(),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err((
            ErrorKind::InvalidValue,
            "an account name may only contain letters, digits, '.', '_' and '-'".into(),
        ));
    }
    if name.starts_with('-') {
        return Err((
            ErrorKind::InvalidValue,
            "an account name must not start with '-' (it would read as a command-line option)"
                .into(),
        ));
    }
    Ok(())
}

fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn string<'v>(value: &'v DeValue<'_>, expected: &str) -> Result<&'v str, Problem> {
    match value {
        DeValue::String(s) => Ok(s),
        other => Err((
            ErrorKind::InvalidType,
            format!("expected {expected}, got {}", type_name(other)),
        )),
    }
}

fn invalid(message: String) -> Problem {
    (ErrorKind::InvalidValue, message)
}

fn provider(value: &DeValue<'_>) -> Result<Provider, Problem> {
    let text = string(value, "a string (\"jumpcloud\" or \"saml\")")?;
    if text.eq_ignore_ascii_case("jumpcloud") {
        Ok(Provider::JumpCloud)
    } else if text.eq_ignore_ascii_case("saml") {
        Ok(Provider::Saml)
    } else {
        Err(invalid(format!(
            "unsupported provider {text:?}; expected \"jumpcloud\", or \"saml\" for any other \
             SAML IdP (signed in to through a browser)"
        )))
    }
}

fn login_method(value: &DeValue<'_>) -> Result<LoginMethod, Problem> {
    const EXPECTED: &str = "\"api\" or \"browser\"";
    let text = string(value, &format!("a string ({EXPECTED})"))?;
    if text.eq_ignore_ascii_case("api") {
        Ok(LoginMethod::Api)
    } else if text.eq_ignore_ascii_case("browser") {
        Ok(LoginMethod::Browser)
    } else {
        Err(invalid(format!("expected {EXPECTED}, got {text:?}")))
    }
}

/// `browser`: an absolute path, or a program name looked up in `PATH` when samlctl starts
/// it (a relative path would depend on where samlctl happens to run).
fn browser_path(value: &DeValue<'_>) -> Result<String, Problem> {
    let text = string(value, "a string (the browser's path)")?;
    if text.trim().is_empty() {
        return Err(invalid("the browser path must not be empty".into()));
    }
    if text.contains('/') && !text.starts_with('/') {
        return Err(invalid(format!(
            "must be an absolute path or a program name found in PATH, got {text:?}"
        )));
    }
    Ok(text.to_owned())
}

/// `browser_args`: extra command-line flags for the browser, such as `--no-sandbox`.
fn browser_args(value: &DeValue<'_>) -> Result<Vec<String>, Problem> {
    const EXPECTED: &str = "an array of strings (browser flags)";
    let DeValue::Array(items) = value else {
        return Err((
            ErrorKind::InvalidType,
            format!("expected {EXPECTED}, got {}", type_name(value)),
        ));
    };
    items
        .iter()
        .map(|item| match item.get_ref() {
            // samlctl owns the DevTools pipe and the profile: a flag that moved either would
            // hand the session to someone else or mix it with the person's own browsing.
            DeValue::String(s) if s.starts_with("--remote-debugging-pipe") => Err(invalid(
                "--remote-debugging-pipe is samlctl's own channel to the browser".into(),
            )),
            DeValue::String(s) if s.starts_with("--user-data-dir") => Err(invalid(
                "--user-data-dir is set by samlctl (a profile of samld's own, never the \
                 browser's main one)"
                    .into(),
            )),
            DeValue::String(s) => Ok(s.to_string()),
            other => Err((
                ErrorKind::InvalidType,
                format!("expected {EXPECTED}, got {} in it", type_name(other)),
            )),
        })
        .collect()
}

fn mfa_mode(value: &DeValue<'_>) -> Result<MfaMode, Problem> {
    const MODES: [(&str, MfaMode); 5] = [
        ("auto", MfaMode::Auto),
        ("push", MfaMode::Push),
        ("totp", MfaMode::Totp),
        ("webauthn", MfaMode::Webauthn),
        ("none", MfaMode::None),
    ];
    let expected = "one of \"auto\", \"push\", \"totp\", \"webauthn\", \"none\"";
    let text = string(value, &format!("a string ({expected})"))?;
    MODES
        .iter()
        .find(|(name, _)| text.eq_ignore_ascii_case(name))
        .map(|(_, mode)| *mode)
        .ok_or_else(|| invalid(format!("expected {expected}, got {text:?}")))
}

/// `url` and `jumpcloud_console_url`: the JumpCloud pages the password is posted to.
fn idp_url(value: &DeValue<'_>) -> Result<String, Problem> {
    https_url(value, "the password and the JumpCloud session cookie")
}

/// `sts_endpoint`: AssumeRoleWithSAML carries the assertion out and the keys back.
fn sts_url(value: &DeValue<'_>) -> Result<String, Problem> {
    https_url(value, "the SAML assertion and the AWS keys STS returns")
}

/// `federation_url`: the getSigninToken call puts the temporary keys in its query string.
fn federation_url(value: &DeValue<'_>) -> Result<String, Problem> {
    https_url(
        value,
        "the AWS secret key and session token (sent in its query)",
    )
}

/// An https URL, or http to a loopback host (the fakes in tests, a local proxy): plain http
/// anywhere else would put `in_clear` on the network. Checked here rather than only where
/// the URL is used so that `samlctl config check` refuses what the daemon would.
fn https_url(value: &DeValue<'_>, in_clear: &str) -> Result<String, Problem> {
    const EXPECTED: &str = "an https:// URL";
    let text = string(value, EXPECTED)?;
    let parsed = Url::parse(text)
        .map_err(|e| invalid(format!("expected {EXPECTED}, got {text:?} ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(invalid(format!("expected {EXPECTED}, got {text:?}")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // The URL is not echoed: whatever is in it may be a password.
        return Err(invalid(
            "the URL must not contain a user name or password".into(),
        ));
    }
    if parsed.scheme() == "http" && !is_loopback(&parsed) {
        return Err(invalid(format!(
            "plain http:// would send {in_clear} in clear; use https:// (http:// is accepted \
             only for loopback: 127.0.0.0/8, ::1, localhost)"
        )));
    }
    // Kept as written (minus surrounding blanks) rather than normalised, since normalising
    // adds a trailing slash to bare origins, which would double up when paths are appended.
    Ok(text.trim().to_owned())
}

/// Whether `url` names this machine: 127.0.0.0/8, ::1 or `localhost` (which resolvers keep
/// on loopback). No DNS lookup: a name that merely resolves to 127.0.0.1 today is not
/// trusted, since whoever controls its zone can point it elsewhere tomorrow. The one rule for
/// where plain `http://` is allowed, in the config check and in the daemon alike.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn username(value: &DeValue<'_>) -> Result<String, Problem> {
    let text = string(value, "a string (the JumpCloud email)")?;
    if text.trim().is_empty() {
        return Err(invalid("the username must not be empty".into()));
    }
    Ok(text.to_owned())
}

fn role(value: &DeValue<'_>) -> Result<String, Problem> {
    const EXPECTED: &str = "a role ARN like \"arn:aws:iam::123456789012:role/Name\" or a role name";
    let text = string(value, EXPECTED)?;
    let valid = if text.starts_with("arn:") {
        text.parse::<RoleArn>().is_ok()
    } else {
        is_role_name(text)
    };
    if valid {
        Ok(text.to_owned())
    } else {
        Err(invalid(format!("expected {EXPECTED}, got {text:?}")))
    }
}

fn region(value: &DeValue<'_>) -> Result<String, Problem> {
    const EXPECTED: &str = "an AWS region like \"us-east-1\"";
    let text = string(value, EXPECTED)?;
    let valid = !text.is_empty()
        && !text.starts_with('-')
        && !text.ends_with('-')
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(invalid(format!("expected {EXPECTED}, got {text:?}")))
    }
}

fn command(value: &DeValue<'_>) -> Result<String, Problem> {
    let text = string(value, "a string (a shell command)")?;
    if text.trim().is_empty() {
        return Err(invalid("the command must not be empty".into()));
    }
    Ok(text.to_owned())
}

fn boolean(value: &DeValue<'_>) -> Result<bool, Problem> {
    match value {
        DeValue::Boolean(b) => Ok(*b),
        other => Err((
            ErrorKind::InvalidType,
            format!("expected true or false, got {}", type_name(other)),
        )),
    }
}

/// A duration, written as a string (`"1h30m"`) or as a whole number of seconds.
fn duration(value: &DeValue<'_>) -> Result<Duration, Problem> {
    const EXPECTED: &str = "a duration like \"1h\" or \"20m\"";
    match value {
        DeValue::String(text) => duration::parse(text).map_err(|e| match e {
            DurationError::Malformed(_) => invalid(format!("expected {EXPECTED}, got {text:?}")),
            DurationError::Overflow => invalid(format!("the duration {text:?} is too large")),
        }),
        DeValue::Integer(integer) => {
            let digits = integer.as_str();
            match u64::from_str_radix(digits, integer.radix()) {
                Ok(seconds) => Ok(Duration::from_secs(seconds)),
                Err(_) if digits.starts_with('-') => {
                    Err(invalid("a duration must not be negative".into()))
                }
                Err(_) => Err(invalid(format!("the duration {integer} is too large"))),
            }
        }
        other => Err((
            ErrorKind::InvalidType,
            format!("expected {EXPECTED}, got {}", type_name(other)),
        )),
    }
}

/// A duration within `min..=max`; `why_max` says where the upper bound comes from.
fn bounded_duration(
    value: &DeValue<'_>,
    min: (Duration, &str),
    max: (Duration, &str),
) -> Result<Duration, Problem> {
    let parsed = duration(value)?;
    let fmt = duration::format_duration;
    // An empty reason leaves the bound bare rather than adding "()".
    let why = |reason: &str| {
        if reason.is_empty() {
            String::new()
        } else {
            format!(" ({reason})")
        }
    };
    if parsed < min.0 {
        Err(invalid(format!(
            "must be at least {}{}, got {}",
            fmt(min.0),
            why(min.1),
            fmt(parsed)
        )))
    } else if parsed > max.0 {
        Err(invalid(format!(
            "must be at most {}{}, got {}",
            fmt(max.0),
            why(max.1),
            fmt(parsed)
        )))
    } else {
        Ok(parsed)
    }
}

/// A duration within the DurationSeconds range that STS accepts.
fn session_duration(value: &DeValue<'_>) -> Result<Duration, Problem> {
    bounded_duration(
        value,
        (MIN_SESSION_DURATION, "the STS minimum"),
        (MAX_SESSION_DURATION, "the STS maximum"),
    )
}

/// At least a second (zero would refresh only once the credentials had expired) and at most
/// the longest session; [`resolve`] then checks it is under the account's own session.
fn refresh_before(value: &DeValue<'_>) -> Result<Duration, Problem> {
    bounded_duration(
        value,
        (
            MIN_REFRESH_BEFORE,
            "credentials would be refreshed only once expired",
        ),
        (MAX_SESSION_DURATION, "the longest session"),
    )
}

/// Long enough to approve a push, short enough that a helper is answered in human time (and
/// that the deadline it sets is always a representable instant).
fn login_wait(value: &DeValue<'_>) -> Result<Duration, Problem> {
    bounded_duration(
        value,
        (MIN_LOGIN_WAIT, ""),
        (MAX_LOGIN_WAIT, "no one waits longer for a login"),
    )
}

/// Long enough for a slow proxy, short enough that a hung IdP fails a login in human time.
fn request_timeout(value: &DeValue<'_>) -> Result<Duration, Problem> {
    bounded_duration(
        value,
        (MIN_REQUEST_TIMEOUT, ""),
        (
            MAX_REQUEST_TIMEOUT,
            "a hung IdP would hold logins and the helpers waiting for them",
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_only_when_close() {
        // (what was written, the keys it could mean, the suggestion)
        let cases: &[(&str, &[&str], Option<&str>)] = &[
            ("regon", ACCOUNT_KEYS, Some("region")),
            ("Region", ACCOUNT_KEYS, Some("region")),
            ("user", ACCOUNT_KEYS, Some("username")),
            ("notification", ACCOUNT_KEYS, Some("notifications")),
            ("mfa_cmd", ACCOUNT_KEYS, Some("mfa_command")),
            ("duration", ACCOUNT_KEYS, Some("session_duration")),
            ("console_url", ACCOUNT_KEYS, Some("jumpcloud_console_url")),
            ("default", TOP_LEVEL_KEYS, Some("defaults")),
            ("timeout", ACCOUNT_KEYS, Some("request_timeout")),
            ("foo", ACCOUNT_KEYS, None),
            // "command" ends two keys: no single guess.
            ("command", ACCOUNT_KEYS, None),
        ];
        for &(input, keys, want) in cases {
            assert_eq!(suggest(input, keys), want, "{input:?}");
        }
    }

    #[test]
    fn key_paths_quote_what_is_not_a_bare_key() {
        // (parent path, key, the joined path)
        const CASES: &[(&str, &str, &str)] = &[
            ("accounts", "prod", "accounts.prod"),
            ("accounts", "a.b", "accounts.\"a.b\""),
            ("accounts", "", "accounts.\"\""),
            ("", "x y", "\"x y\""),
        ];
        for &(parent, key, want) in CASES {
            assert_eq!(key_path(parent, key), want, "{parent:?} {key:?}");
        }
    }

    #[test]
    fn role_forms() {
        for good in [
            "arn:aws:iam::012345678987:role/AcmeJumpCloudAdminRO",
            "arn:aws-us-gov:iam::012345678987:role/path/to/Admin",
            "arn:aws-cn:iam::012345678987:role/a+b=c,d.e@f_g-h",
            "Admin",
            "a",
        ] {
            assert!(role(&DeValue::String(good.into())).is_ok(), "{good}");
        }
        let long = "x".repeat(65);
        for bad in [
            "",
            "arn:aws:iam::12345:role/Admin",
            "arn:aws:sts::012345678987:role/Admin",
            "arn:aws:iam:us-east-1:012345678987:role/Admin",
            "arn:aws:iam::012345678987:user/Admin",
            "arn:aws:iam::012345678987:role/",
            "arn::iam::012345678987:role/Admin",
            // The assertion parser never accepted these; the config now refuses them too.
            "arn:azure:iam::012345678987:role/Admin",
            "arn:aws:iam::012345678987:role/o ps/Admin",
            "Ad min",
            long.as_str(),
        ] {
            assert!(role(&DeValue::String(bad.into())).is_err(), "{bad}");
        }
    }
}
