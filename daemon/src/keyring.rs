//! The OS keyring, where `samlctl login --save-password` keeps the JumpCloud password so that
//! the daemon can log in again unattended when the JumpCloud session ends.
//!
//! [`os_store`] picks the platform's store: the freedesktop Secret Service on Linux
//! (gnome-keyring, KWallet, KeePassXC), the login Keychain on macOS. [`InMemoryStore`] stands
//! in for it in tests.
//!
//! # Where the password lives
//!
//! One item per account *and* username, so that logging in to one account never overwrites or
//! deletes another's password, and a username changed in the config never receives the old
//! user's password:
//!
//! * Secret Service: an item in the default collection with the attributes
//!   `service = samld`, `account = <account name>`, `username = <JumpCloud username>`,
//!   labelled `samld: JumpCloud password for <username> (<account>)`. It can be inspected or
//!   stored by hand: `secret-tool lookup service samld account production username alice@example.com`.
//! * Keychain: a generic password with service `samld/<account name>` and account
//!   `<username>`: `security find-generic-password -s samld/production -a alice@example.com -w`.
//!
//! # Blocking
//!
//! Every call blocks: it talks D-Bus or the Security framework synchronously, and an unlock
//! prompt may wait for the user (bounded, see `SecretServiceStore::new`). Async callers
//! must go through `tokio::task::spawn_blocking`; [`run`] does that.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use samld_proto::{ErrorCode, Secret, WireError};

/// The service name every samld item is filed under.
pub const SERVICE: &str = "samld";

/// How long an unlock prompt of the keyring may wait for the user before the call fails with
/// [`KeyringError::Locked`].
pub const DEFAULT_PROMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// A place to keep the JumpCloud password of an account.
///
/// All methods block (see the [module docs](self)); call them from `spawn_blocking`.
pub trait PasswordStore: Send + Sync {
    /// The saved password of `username` for `account`, or `None` if none is saved.
    fn get(&self, account: &str, username: &str) -> Result<Option<Secret>, KeyringError>;

    /// Saves (or replaces) the password of `username` for `account`.
    fn set(&self, account: &str, username: &str, password: &Secret) -> Result<(), KeyringError>;

    /// Removes the saved password; succeeds when there was none.
    fn delete(&self, account: &str, username: &str) -> Result<(), KeyringError>;

    /// Whether calls may block (a real keyring over D-Bus or the Keychain). A store that
    /// never blocks (in memory) is called inline, which keeps simulations deterministic.
    fn blocks(&self) -> bool {
        true
    }

    /// Removes the saved password and says whether there was one (for `samlctl password
    /// forget`, which tells the user). Stores that can tell without reading the secret
    /// override this; the default reads it first.
    fn remove(&self, account: &str, username: &str) -> Result<bool, KeyringError> {
        let had = self.get(account, username)?.is_some();
        self.delete(account, username)?;
        Ok(had)
    }
}

/// Runs one call of a blocking store on tokio's blocking pool, for async callers:
///
/// ```ignore
/// let saved = keyring::run(&store, move |s| s.get(&account, &username)).await;
/// ```
///
/// A store that panics becomes [`KeyringError::Failed`] rather than a panic in the caller.
pub async fn run<T, F>(store: &Arc<dyn PasswordStore>, call: F) -> Result<T, KeyringError>
where
    T: Send + 'static,
    F: FnOnce(&dyn PasswordStore) -> Result<T, KeyringError> + Send + 'static,
{
    if !store.blocks() {
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(&**store)))
            .unwrap_or_else(|_| {
                Err(KeyringError::Failed {
                    detail: "the keyring call panicked".to_owned(),
                })
            });
    }
    let store = store.clone();
    tokio::task::spawn_blocking(move || call(&*store))
        .await
        .unwrap_or_else(|e| {
            Err(KeyringError::Failed {
                detail: format!("the keyring call did not finish: {e}"),
            })
        })
}

/// `samlctl password forget`: removes the password saved for `account` as `username` from
/// `store` (`None`: this daemon has no keyring). `Ok(false)` when none was saved. Errors are
/// wire errors that say what failed and what to do.
pub async fn forget(
    store: Option<&Arc<dyn PasswordStore>>,
    account: &str,
    username: &str,
) -> Result<bool, WireError> {
    let Some(store) = store else {
        return Err(WireError::new(
            ErrorCode::KeyringError,
            "this samld has no OS keyring, so no password is saved in one",
        ));
    };
    let (name, user) = (account.to_owned(), username.to_owned());
    let removed = run(store, move |s| s.remove(&name, &user))
        .await
        .map_err(|e| {
            WireError::new(
                ErrorCode::KeyringError,
                format!("cannot remove the saved password of {account}: {e}"),
            )
        })?;
    if removed {
        tracing::info!(%account, "removed the saved password from the keyring, as asked");
    }
    Ok(removed)
}

/// Why the keyring could not be used. The `Display` text tells the user what is missing and
/// what to do instead; it never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyringError {
    /// No D-Bus session bus to reach the Secret Service on (SSH sessions, cron, containers,
    /// services started outside the desktop session).
    NoSessionBus {
        /// What connecting to the bus said.
        detail: String,
    },
    /// The session bus works but nothing provides the Secret Service on it.
    NoSecretService {
        /// What the bus said.
        detail: String,
    },
    /// The Secret Service has no default collection to save the password in.
    NoDefaultCollection,
    /// The keyring is locked and was not unlocked: the unlock prompt was dismissed, timed out
    /// or could not be shown.
    Locked,
    /// The saved password is not text; it cannot be a JumpCloud password.
    NotText,
    /// This platform has no keyring samld can use.
    Unsupported,
    /// The keyring refused or failed in some other way.
    Failed {
        /// What the keyring said.
        detail: String,
    },
}

const INSTEAD: &str = "or set password_command for the account instead";

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyringError::NoSessionBus { detail } => write!(
                f,
                "the OS keyring is out of reach: there is no D-Bus session bus ({detail}); \
                 the Secret Service needs one (run samld inside your desktop session, for \
                 example as a systemd user service), or on a headless machine use \
                 password_command instead"
            ),
            KeyringError::NoSecretService { detail } => write!(
                f,
                "no Secret Service is running on the D-Bus session bus ({detail}); is \
                 gnome-keyring, KWallet or KeePassXC running? On a headless machine use \
                 password_command instead"
            ),
            KeyringError::NoDefaultCollection => write!(
                f,
                "the Secret Service has no default keyring to save the password in; create \
                 one (for example with Seahorse, \"Passwords and Keys\"), {INSTEAD}"
            ),
            KeyringError::Locked => write!(
                f,
                "the OS keyring is locked and was not unlocked; unlock it (log in to the \
                 desktop, or answer its unlock prompt) and try again, {INSTEAD}"
            ),
            KeyringError::NotText => write!(
                f,
                "the password saved in the OS keyring is not text; save it again with \
                 `samlctl login ACCOUNT --save-password`"
            ),
            KeyringError::Unsupported => write!(
                f,
                "samld has no OS keyring support on this platform; use password_command instead"
            ),
            KeyringError::Failed { detail } => write!(f, "the OS keyring failed: {detail}"),
        }
    }
}

impl std::error::Error for KeyringError {}

/// The platform's keyring: the Secret Service on Linux, the Keychain on macOS, and a store
/// that explains itself on anything else.
///
/// Nothing is contacted until the first call, so a daemon without a keyring starts fine and
/// only the accounts that use one see the error.
pub fn os_store() -> Arc<dyn PasswordStore> {
    #[cfg(target_os = "linux")]
    {
        Arc::new(SecretServiceStore::new(DEFAULT_PROMPT_TIMEOUT))
    }
    #[cfg(target_os = "macos")]
    {
        Arc::new(KeychainStore)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        Arc::new(UnsupportedStore)
    }
}

/// The label shown in keyring managers (the Keychain names its items by service and
/// account instead).
#[cfg(target_os = "linux")]
fn label(account: &str, username: &str) -> String {
    format!("{SERVICE}: JumpCloud password for {username} ({account})")
}

/// Turns what the keyring returned into a password; the bytes are wiped either way.
fn secret_from_bytes(bytes: Vec<u8>) -> Result<Secret, KeyringError> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Secret::from(text)),
        Err(e) => {
            zeroize::Zeroize::zeroize(&mut e.into_bytes());
            Err(KeyringError::NotText)
        }
    }
}

#[cfg(target_os = "linux")]
pub use secret_service::SecretServiceStore;

#[cfg(target_os = "linux")]
mod secret_service {
    use super::*;
    use dbus_secret_service::{EncryptionType, Error as SsError, Item, SecretService};

    /// The freedesktop Secret Service (gnome-keyring, KWallet, KeePassXC) over the D-Bus
    /// session bus.
    ///
    /// Each call opens its own connection: calls are rare (a login, an unattended re-login),
    /// and a fresh connection never goes stale when the keyring daemon restarts or the user
    /// logs in to the desktop after samld started. Secrets travel encrypted (the Secret
    /// Service's `dh-ietf1024-sha256-aes128-cbc-pkcs7` session), as libsecret does.
    #[derive(Debug, Clone)]
    pub struct SecretServiceStore {
        prompt_timeout: Duration,
    }

    impl SecretServiceStore {
        /// A store whose unlock prompts (shown by the keyring when the collection is locked)
        /// wait at most `prompt_timeout`, rounded down to whole seconds; zero never shows a
        /// prompt and treats a locked keyring as [`KeyringError::Locked`] at once.
        pub fn new(prompt_timeout: Duration) -> Self {
            Self { prompt_timeout }
        }

        fn connect(&self) -> Result<SecretService, KeyringError> {
            SecretService::connect_with_max_prompt_timeout(
                EncryptionType::Dh,
                self.prompt_timeout.as_secs(),
            )
            .map_err(classify)
        }
    }

    fn attributes<'a>(account: &'a str, username: &'a str) -> HashMap<&'a str, &'a str> {
        HashMap::from([
            ("service", SERVICE),
            ("account", account),
            ("username", username),
        ])
    }

    /// Every item of this account and username, unlocked (which may prompt).
    fn find<'s>(
        ss: &'s SecretService,
        account: &str,
        username: &str,
    ) -> Result<Vec<Item<'s>>, KeyringError> {
        let found = ss
            .search_items(attributes(account, username))
            .map_err(classify)?;
        if !found.locked.is_empty() {
            let locked: Vec<&Item<'_>> = found.locked.iter().collect();
            ss.unlock_all(&locked).map_err(classify)?;
        }
        Ok(found.unlocked.into_iter().chain(found.locked).collect())
    }

    impl PasswordStore for SecretServiceStore {
        fn get(&self, account: &str, username: &str) -> Result<Option<Secret>, KeyringError> {
            let ss = self.connect()?;
            // `set` keeps at most one item per key; should a user have stored more by hand,
            // the first is as good a guess as any.
            match find(&ss, account, username)?.first() {
                Some(item) => secret_from_bytes(item.get_secret().map_err(classify)?).map(Some),
                None => Ok(None),
            }
        }

        fn set(
            &self,
            account: &str,
            username: &str,
            password: &Secret,
        ) -> Result<(), KeyringError> {
            let ss = self.connect()?;
            let secret = password.expose().as_bytes();
            let existing = find(&ss, account, username)?;
            if !existing.is_empty() {
                // Update in place, wherever the user keeps it (another collection, say).
                for item in &existing {
                    item.set_secret(secret, "text/plain").map_err(classify)?;
                }
                return Ok(());
            }
            let collection = ss.get_default_collection().map_err(|e| match e {
                SsError::NoResult => KeyringError::NoDefaultCollection,
                other => classify(other),
            })?;
            collection.ensure_unlocked().map_err(classify)?;
            collection
                .create_item(
                    &label(account, username),
                    attributes(account, username),
                    secret,
                    true,
                    "text/plain",
                )
                .map_err(classify)?;
            Ok(())
        }

        fn delete(&self, account: &str, username: &str) -> Result<(), KeyringError> {
            self.remove(account, username).map(drop)
        }

        fn remove(&self, account: &str, username: &str) -> Result<bool, KeyringError> {
            let ss = self.connect()?;
            let items = find(&ss, account, username)?;
            for item in &items {
                item.delete().map_err(classify)?;
            }
            Ok(!items.is_empty())
        }
    }

    /// Sorts a Secret Service failure into what the user has to fix.
    fn classify(e: SsError) -> KeyringError {
        match e {
            SsError::Locked | SsError::Prompt => KeyringError::Locked,
            SsError::Unavailable => KeyringError::NoSecretService {
                detail: e.to_string(),
            },
            SsError::Dbus(ref d) => {
                let detail = d.message().unwrap_or("no details").to_owned();
                let name = d.name().unwrap_or("");
                let short = name
                    .strip_prefix("org.freedesktop.DBus.Error.")
                    .unwrap_or("");
                match short {
                    // Nobody owns org.freedesktop.secrets and nothing could be started for it.
                    "ServiceUnknown" | "NameHasNoOwner" => KeyringError::NoSecretService {
                        detail: "nothing provides org.freedesktop.secrets".into(),
                    },
                    s if s.starts_with("Spawn.") => KeyringError::NoSecretService {
                        detail: format!("starting it failed: {detail}"),
                    },
                    "NoReply" | "Timeout" | "TimedOut" => KeyringError::NoSecretService {
                        detail: format!("it does not answer: {detail}"),
                    },
                    // libdbus reports an unusable or unset bus address with these.
                    "FileNotFound" | "NotSupported" | "NoServer" | "BadAddress" | "NoNetwork"
                    | "Disconnected" | "AuthFailed" | "IOError" => {
                        KeyringError::NoSessionBus { detail }
                    }
                    _ => KeyringError::Failed {
                        detail: format!("{name}: {detail}"),
                    },
                }
            }
            other => KeyringError::Failed {
                detail: other.to_string(),
            },
        }
    }
}

#[cfg(target_os = "macos")]
pub use keychain::KeychainStore;

#[cfg(target_os = "macos")]
mod keychain {
    use super::*;
    use security_framework::base::Error as SfError;
    use security_framework::passwords::{
        PasswordOptions, delete_generic_password, generic_password, set_generic_password,
    };

    // OSStatus codes from <Security/SecBase.h>.
    const ERR_SEC_ITEM_NOT_FOUND: i32 = -25300;
    const ERR_SEC_INTERACTION_NOT_ALLOWED: i32 = -25308;
    const ERR_SEC_AUTH_FAILED: i32 = -25293;
    const ERR_SEC_USER_CANCELED: i32 = -128;
    const ERR_SEC_NO_SUCH_KEYCHAIN: i32 = -25294;
    const ERR_SEC_NO_DEFAULT_KEYCHAIN: i32 = -25307;

    /// The user's default (login) Keychain.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct KeychainStore;

    fn service(account: &str) -> String {
        format!("{SERVICE}/{account}")
    }

    fn classify(e: SfError) -> KeyringError {
        match e.code() {
            ERR_SEC_INTERACTION_NOT_ALLOWED | ERR_SEC_AUTH_FAILED | ERR_SEC_USER_CANCELED => {
                KeyringError::Locked
            }
            ERR_SEC_NO_SUCH_KEYCHAIN | ERR_SEC_NO_DEFAULT_KEYCHAIN => {
                KeyringError::NoDefaultCollection
            }
            code => KeyringError::Failed {
                detail: format!("{e} (OSStatus {code})"),
            },
        }
    }

    impl PasswordStore for KeychainStore {
        fn get(&self, account: &str, username: &str) -> Result<Option<Secret>, KeyringError> {
            match generic_password(PasswordOptions::new_generic_password(
                &service(account),
                username,
            )) {
                Ok(bytes) => secret_from_bytes(bytes).map(Some),
                Err(e) if e.code() == ERR_SEC_ITEM_NOT_FOUND => Ok(None),
                Err(e) => Err(classify(e)),
            }
        }

        fn set(
            &self,
            account: &str,
            username: &str,
            password: &Secret,
        ) -> Result<(), KeyringError> {
            set_generic_password(&service(account), username, password.expose().as_bytes())
                .map_err(classify)
        }

        fn delete(&self, account: &str, username: &str) -> Result<(), KeyringError> {
            self.remove(account, username).map(drop)
        }

        fn remove(&self, account: &str, username: &str) -> Result<bool, KeyringError> {
            match delete_generic_password(&service(account), username) {
                Ok(()) => Ok(true),
                Err(e) if e.code() == ERR_SEC_ITEM_NOT_FOUND => Ok(false),
                Err(e) => Err(classify(e)),
            }
        }
    }
}

/// The store on platforms without keyring support: every call says so.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnsupportedStore;

impl PasswordStore for UnsupportedStore {
    fn get(&self, _: &str, _: &str) -> Result<Option<Secret>, KeyringError> {
        Err(KeyringError::Unsupported)
    }

    fn set(&self, _: &str, _: &str, _: &Secret) -> Result<(), KeyringError> {
        Err(KeyringError::Unsupported)
    }

    fn delete(&self, _: &str, _: &str) -> Result<(), KeyringError> {
        Err(KeyringError::Unsupported)
    }
}

/// A keyring in memory, for tests: it behaves like a real one, and [`InMemoryStore::fail_with`]
/// makes it behave like a broken one.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    items: HashMap<(String, String), Secret>,
    failure: Option<KeyringError>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later call fail with `error` (or work again with `None`).
    pub fn fail_with(&self, error: Option<KeyringError>) {
        self.lock().failure = error;
    }

    /// How many passwords are saved.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether no password is saved.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(&self) -> Result<std::sync::MutexGuard<'_, MemoryState>, KeyringError> {
        let state = self.lock();
        match &state.failure {
            Some(e) => Err(e.clone()),
            None => Ok(state),
        }
    }
}

fn key(account: &str, username: &str) -> (String, String) {
    (account.to_owned(), username.to_owned())
}

impl PasswordStore for InMemoryStore {
    fn blocks(&self) -> bool {
        false
    }

    fn get(&self, account: &str, username: &str) -> Result<Option<Secret>, KeyringError> {
        Ok(self.check()?.items.get(&key(account, username)).cloned())
    }

    fn set(&self, account: &str, username: &str, password: &Secret) -> Result<(), KeyringError> {
        self.check()?
            .items
            .insert(key(account, username), password.clone());
        Ok(())
    }

    fn delete(&self, account: &str, username: &str) -> Result<(), KeyringError> {
        self.remove(account, username).map(drop)
    }

    fn remove(&self, account: &str, username: &str) -> Result<bool, KeyringError> {
        Ok(self
            .check()?
            .items
            .remove(&key(account, username))
            .is_some())
    }
}

#[cfg(test)]
mod tests;
