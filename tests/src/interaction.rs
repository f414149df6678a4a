//! A scripted [`LoginInteraction`] for tests: it hands out the secrets it was given, in order,
//! and records every call so that tests can assert what a login asked for.

use std::collections::VecDeque;

use samld::future::BoxFuture;
use samld::idp::{IdpError, LoginInteraction};
use samld_proto::Secret;

/// One call a login made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InteractionCall {
    /// [`LoginInteraction::password`], with its prompt.
    Password(String),
    /// [`LoginInteraction::mfa_code`], with its prompt.
    MfaCode(String),
    /// [`LoginInteraction::progress`], with its message.
    Progress(String),
}

/// Hands out scripted passwords and TOTP codes (each once) and records the calls.
/// When the script runs out it answers [`IdpError::PasswordUnavailable`] or
/// [`IdpError::MfaCodeUnavailable`], as a daemon without a terminal would.
#[derive(Debug, Default)]
pub struct ScriptedInteraction {
    passwords: VecDeque<Result<Secret, IdpError>>,
    codes: VecDeque<Result<Secret, IdpError>>,
    calls: Vec<InteractionCall>,
}

impl ScriptedInteraction {
    /// An interaction with nothing to hand out.
    pub fn new() -> Self {
        Self::default()
    }

    /// An interaction that hands out `password` once.
    pub fn with_password(password: &str) -> Self {
        Self::new().then_password(password)
    }

    /// Queues a password.
    pub fn then_password(mut self, password: &str) -> Self {
        self.passwords.push_back(Ok(Secret::new(password)));
        self
    }

    /// Queues a TOTP code.
    pub fn then_code(mut self, code: &str) -> Self {
        self.codes.push_back(Ok(Secret::new(code)));
        self
    }

    /// Queues an error for the next password request.
    pub fn then_password_error(mut self, error: IdpError) -> Self {
        self.passwords.push_back(Err(error));
        self
    }

    /// Queues an error for the next code request.
    pub fn then_code_error(mut self, error: IdpError) -> Self {
        self.codes.push_back(Err(error));
        self
    }

    /// Every call, in order.
    pub fn calls(&self) -> &[InteractionCall] {
        &self.calls
    }

    /// How many passwords were asked for.
    pub fn passwords_asked(&self) -> usize {
        self.count(|c| matches!(c, InteractionCall::Password(_)))
    }

    /// How many TOTP codes were asked for.
    pub fn codes_asked(&self) -> usize {
        self.count(|c| matches!(c, InteractionCall::MfaCode(_)))
    }

    /// The progress messages shown, in order.
    pub fn progress_messages(&self) -> Vec<&str> {
        self.calls
            .iter()
            .filter_map(|c| match c {
                InteractionCall::Progress(m) => Some(m.as_str()),
                _ => None,
            })
            .collect()
    }

    fn count(&self, f: impl Fn(&InteractionCall) -> bool) -> usize {
        self.calls.iter().filter(|c| f(c)).count()
    }
}

impl LoginInteraction for ScriptedInteraction {
    fn password<'a>(&'a mut self, prompt: &'a str) -> BoxFuture<'a, Result<Secret, IdpError>> {
        self.calls
            .push(InteractionCall::Password(prompt.to_owned()));
        let next = self.passwords.pop_front().unwrap_or_else(|| {
            Err(IdpError::PasswordUnavailable {
                reason: "the test script has no more passwords".to_owned(),
            })
        });
        Box::pin(async move { next })
    }

    fn mfa_code<'a>(&'a mut self, prompt: &'a str) -> BoxFuture<'a, Result<Secret, IdpError>> {
        self.calls.push(InteractionCall::MfaCode(prompt.to_owned()));
        let next = self.codes.pop_front().unwrap_or_else(|| {
            Err(IdpError::MfaCodeUnavailable {
                reason: "the test script has no more codes".to_owned(),
            })
        });
        Box::pin(async move { next })
    }

    fn progress<'a>(&'a mut self, message: &'a str) -> BoxFuture<'a, ()> {
        self.calls
            .push(InteractionCall::Progress(message.to_owned()));
        Box::pin(async {})
    }
}
