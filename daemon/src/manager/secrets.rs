//! Where a login's secrets come from: what the client sent, `password_command` and
//! `mfa_command`, the OS keyring, or a question to the client's terminal.

use std::sync::Arc;
use std::time::Duration;

use samld_config::Account;
use samld_proto::{LoginIntent, PasswordLogin, Secret, SecretKind};

use super::gate::Asker;
use crate::future::BoxFuture;
use crate::idp::{Contact, IdpError, LoginInteraction};
use crate::keyring::{self, KeyringError, PasswordStore};

/// The client end of a request, for logins that need a secret or have news for the user.
pub trait ClientChannel: Send {
    /// Asks the client for a secret; fails when the client cannot answer.
    fn ask<'a>(
        &'a mut self,
        kind: SecretKind,
        prompt: &'a str,
    ) -> BoxFuture<'a, Result<Secret, IdpError>>;

    /// Shows the user a message.
    fn tell<'a>(&'a mut self, message: &'a str) -> BoxFuture<'a, ()>;
}

/// Where a login's secrets come from, in order: what the client sent with the request, the
/// account's `password_command`/`mfa_command`, the keyring, then a question to the client if
/// it can answer one. It also counts what reached the person, for the unattended-login rule.
pub(super) struct SecretSources<'a> {
    pub(super) account: Account,
    /// What the login is for; the secrets it carries are taken out as they are used.
    pub(super) intent: LoginIntent,
    pub(super) channel: Option<&'a mut dyn ClientChannel>,
    pub(super) command_timeout: Duration,
    /// The keyring to look in after `password_command`; `None` to skip it (unattended
    /// logins read it up front, and `--save-password` means a new password is typed).
    pub(super) passwords: Option<Arc<dyn PasswordStore>>,
    /// With `--save-password`: the password handed to JumpCloud, saved once it is accepted.
    pub(super) to_save: Option<Secret>,
    /// Set once the provider sent a password, a push or a code.
    pub(super) reached_person: bool,
    /// Who the secrets are for: a person's login lifts a refusal, a helper's on a terminal
    /// must pass the gate again right before it signs in.
    pub(super) asker: Asker,
}

impl<'a> SecretSources<'a> {
    pub(super) fn new(
        account: &Account,
        intent: LoginIntent,
        channel: Option<&'a mut dyn ClientChannel>,
        command_timeout: Duration,
        passwords: Option<Arc<dyn PasswordStore>>,
    ) -> Self {
        Self {
            account: account.clone(),
            intent,
            channel,
            command_timeout,
            passwords,
            to_save: None,
            reached_person: false,
            asker: Asker::Unattended,
        }
    }

    async fn obtain(
        &mut self,
        kind: SecretKind,
        given: Option<Secret>,
        command: Option<String>,
        prompt: &str,
    ) -> Result<Secret, IdpError> {
        if let Some(secret) = given {
            return Ok(secret);
        }
        if let Some(command) = command {
            return run_secret_command(&command, kind, self.command_timeout).await;
        }
        match self.channel.as_mut() {
            Some(channel) => channel.ask(kind, prompt).await,
            None => {
                let reason = format!(
                    "no terminal to ask on and no {} configured for {}",
                    match kind {
                        SecretKind::Password => "password_command",
                        SecretKind::MfaCode => "mfa_command",
                    },
                    self.account.name
                );
                Err(match kind {
                    SecretKind::Password => IdpError::PasswordUnavailable { reason },
                    SecretKind::MfaCode => IdpError::MfaCodeUnavailable { reason },
                })
            }
        }
    }

    /// Shows the person a message (and logs it).
    pub(super) async fn tell(&mut self, message: &str) {
        self.progress(message).await
    }

    /// The password login's secrets, for taking them out: a secret is handed out once.
    fn given(&mut self) -> Option<&mut PasswordLogin> {
        match &mut self.intent {
            LoginIntent::Password(login) => Some(login),
            LoginIntent::ReuseOnly | LoginIntent::Browser { .. } => None,
        }
    }
}

impl LoginInteraction for SecretSources<'_> {
    fn browser_sign_in(&mut self) -> Option<samld_proto::BrowserSignIn> {
        match &mut self.intent {
            // Taken once: an empty one is what is left behind.
            LoginIntent::Browser { sign_in } if !sign_in.saml_response.expose().is_empty() => {
                Some(std::mem::take(sign_in))
            }
            _ => None,
        }
    }

    fn password<'a>(&'a mut self, prompt: &'a str) -> BoxFuture<'a, Result<Secret, IdpError>> {
        Box::pin(async move {
            let mut given = self.given().and_then(|g| g.password.take());
            let command = self.account.password_command.clone();
            if given.is_none()
                && command.is_none()
                && let Some(store) = self.passwords.take()
            {
                let (account, username) =
                    (self.account.name.clone(), self.account.username.clone());
                match keyring::run(&store, move |s| s.get(&account, &username)).await {
                    Ok(found) => given = found,
                    Err(e) => {
                        tracing::warn!(account = %self.account.name, error = %e, "saved password unavailable")
                    }
                }
            }
            let password = self
                .obtain(SecretKind::Password, given, command, prompt)
                .await?;
            if self.intent.saves_password() {
                self.to_save = Some(password.clone());
            }
            Ok(password)
        })
    }

    fn mfa_code<'a>(&'a mut self, prompt: &'a str) -> BoxFuture<'a, Result<Secret, IdpError>> {
        Box::pin(async move {
            // A code is good for one attempt: never hand the same one out twice.
            let given = self.given().and_then(|g| g.mfa_code.take());
            let command = self.account.mfa_command.clone();
            self.obtain(SecretKind::MfaCode, given, command, prompt)
                .await
        })
    }

    fn progress<'a>(&'a mut self, message: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            tracing::info!(account = %self.account.name, "{message}");
            if let Some(channel) = self.channel.as_mut() {
                channel.tell(message).await;
            }
        })
    }

    fn reaching_person(&mut self, contact: Contact) {
        tracing::debug!(account = %self.account.name, ?contact, "sending to the IdP");
        self.reached_person = true;
    }
}

/// What the keyring said about a saved password.
pub(super) enum SavedPassword {
    /// It holds one.
    Found(Secret),
    /// It answered, and holds none.
    None,
    /// It could not answer (locked, not running yet at boot): ask again later.
    Unavailable(KeyringError),
}

/// Reads the password saved for an account.
pub(super) async fn saved_password(
    store: &Arc<dyn PasswordStore>,
    account: &Account,
) -> SavedPassword {
    let (name, username) = (account.name.clone(), account.username.clone());
    match keyring::run(store, move |s| s.get(&name, &username)).await {
        Ok(Some(p)) => SavedPassword::Found(p),
        Ok(None) => SavedPassword::None,
        Err(e) => {
            tracing::warn!(account = %account.name, error = %e, "cannot read the saved password; will ask the keyring again later");
            SavedPassword::Unavailable(e)
        }
    }
}

/// Removes a saved password JumpCloud refused: trying it again, even after a restart, is how
/// accounts get locked.
pub(super) async fn forget_refused_password(store: &Arc<dyn PasswordStore>, account: &Account) {
    let (name, username) = (account.name.clone(), account.username.clone());
    match keyring::run(store, move |s| s.delete(&name, &username)).await {
        Ok(()) => {
            tracing::warn!(account = %account.name, "JumpCloud refused the saved password; removed it from the keyring")
        }
        Err(e) => {
            tracing::error!(account = %account.name, error = %e, "cannot remove the refused password from the keyring")
        }
    }
}

/// Runs `password_command` or `mfa_command` with `sh -c` and takes the first line of its
/// output. Neither its output nor its stderr is logged.
pub(super) async fn run_secret_command(
    command: &str,
    kind: SecretKind,
    timeout: Duration,
) -> Result<Secret, IdpError> {
    let key = match kind {
        SecretKind::Password => "password_command",
        SecretKind::MfaCode => "mfa_command",
    };
    let unavailable = |reason: String| match kind {
        SecretKind::Password => IdpError::PasswordUnavailable { reason },
        SecretKind::MfaCode => IdpError::MfaCodeUnavailable { reason },
    };
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| unavailable(format!("{key} could not be started: {e}")))?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| {
            unavailable(format!(
                "{key} did not finish within {}s",
                timeout.as_secs()
            ))
        })?
        .map_err(|e| unavailable(format!("{key} failed: {e}")))?;
    if !output.status.success() {
        return Err(unavailable(format!("{key} exited with {}", output.status)));
    }
    let mut stdout = output.stdout;
    let secret = String::from_utf8(std::mem::take(&mut stdout))
        .map_err(|_| unavailable(format!("{key} printed something that is not UTF-8")))?;
    let line = secret.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(unavailable(format!("{key} printed nothing")));
    }
    let result = Secret::new(line);
    drop(Secret::new(secret));
    Ok(result)
}
