//! How `samlctl login` answers samld's questions: the password and the MFA code from stdin
//! (`--password-stdin`, `--mfa-code-stdin`) or from the controlling terminal.

use std::io::{self, BufRead};

use samld_client::tty::{Tty, prompt_text};
use samld_client::{PromptError, SecretPrompter};
use samld_proto::{Secret, SecretKind};

/// Answers samld's questions during `samlctl login`.
pub(crate) struct LoginPrompter {
    /// `--password-stdin` was given.
    pub(crate) password_stdin: bool,
    /// The line on stdin was already read as the password (sent with the request).
    pub(crate) stdin_used: bool,
    /// With `--mfa-code-stdin`: whether stdin held a code (sent with the request).
    pub(crate) mfa_code_stdin: Option<bool>,
    /// The terminal to ask on, if any.
    pub(crate) tty: Option<Tty>,
}

impl SecretPrompter for LoginPrompter {
    fn prompt(&mut self, kind: SecretKind, prompt: &str) -> Result<Secret, PromptError> {
        let prompt = prompt_text(prompt);
        match kind {
            SecretKind::Password if self.password_stdin => {
                if self.stdin_used {
                    // A second request means JumpCloud refused the first password; reading
                    // another line would guess at what the user meant.
                    return Err(PromptError::Unavailable(
                        "samld asked for the password again, but --password-stdin supplies only one"
                            .into(),
                    ));
                }
                self.stdin_used = true;
                read_password_line(io::stdin().lock())
            }
            SecretKind::Password => {
                let Some(tty) = &self.tty else {
                    return Err(PromptError::Unavailable(
                        "samld needs the JumpCloud password, but there is no terminal to ask on; \
                         pipe it in with --password-stdin"
                            .into(),
                    ));
                };
                tty.read_secret(&prompt)
            }
            SecretKind::MfaCode if self.mfa_code_stdin.is_some() => {
                let line = if self.password_stdin {
                    "second line, after the password"
                } else {
                    "first line"
                };
                Err(PromptError::Unavailable(
                    if self.mfa_code_stdin == Some(true) {
                        // The code sent with the request was not enough (refused, or a second
                        // factor step asked again); another line would be a guess.
                        "samld asked for the MFA code again, but --mfa-code-stdin supplies only one"
                            .into()
                    } else {
                        format!(
                            "samld needs an MFA code, but --mfa-code-stdin found none on stdin \
                         (expected on its {line})"
                        )
                    },
                ))
            }
            SecretKind::MfaCode => match &self.tty {
                Some(tty) => tty.read_visible(&prompt),
                None => Err(PromptError::Unavailable(
                    "samld needs an MFA code, but there is no terminal to ask on; pipe it in \
                     with --mfa-code-stdin"
                        .into(),
                )),
            },
        }
    }
}

/// One line of `input`, without its line ending, as the password.
pub(crate) fn read_password_line(mut input: impl BufRead) -> Result<Secret, PromptError> {
    // Room for any sane password up front, so that growing the buffer leaves no copies of
    // it behind in freed memory.
    let mut line = String::with_capacity(1024);
    input.read_line(&mut line).map_err(PromptError::Io)?;
    let len = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(len);
    let secret = Secret::from(line);
    if secret.is_empty() {
        return Err(PromptError::Unavailable(
            "--password-stdin: stdin has no password (an empty first line or no input)".into(),
        ));
    }
    Ok(secret)
}

/// The next line of `input` as a TOTP code, blanks trimmed; `None` when there is no line or
/// it is empty.
pub(crate) fn read_code_line(mut input: impl BufRead) -> Result<Option<Secret>, PromptError> {
    let mut line = String::with_capacity(64);
    input.read_line(&mut line).map_err(PromptError::Io)?;
    // Trimmed in place, so that the only copy is the one the Secret wipes.
    line.truncate(line.trim_end().len());
    line.drain(..line.len() - line.trim_start().len());
    let code = Secret::from(line);
    Ok((!code.is_empty()).then_some(code))
}

/// What a [`SecretKind`] is called in messages.
pub(crate) fn secret_noun(kind: SecretKind) -> &'static str {
    match kind {
        SecretKind::Password => "password",
        SecretKind::MfaCode => "MFA code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_line_loses_only_its_line_ending() {
        let p = read_password_line(&b"  pass word \r\nsecond line\n"[..]).unwrap();
        assert_eq!(p.expose(), "  pass word ");
        assert_eq!(
            read_password_line(&b"no newline"[..]).unwrap().expose(),
            "no newline"
        );
        assert!(read_password_line(&b"\n"[..]).is_err());
        assert!(read_password_line(&b""[..]).is_err());
    }
}
