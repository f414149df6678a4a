//! How `samlctl login` answers samld's questions: the password and the MFA code from stdin
//! (`--password-stdin`, `--mfa-code-stdin`) or from the controlling terminal.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};

use samld_client::{PromptError, SecretPrompter};
use samld_proto::{Secret, SecretKind};

/// The controlling terminal, for prompts that must work even with stdin and stdout redirected.
pub(crate) struct Tty {
    file: File,
}

impl Tty {
    /// Opens `/dev/tty`; `None` when there is no controlling terminal.
    pub(crate) fn open() -> Option<Tty> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()
            .map(|file| Tty { file })
    }

    /// Asks with echo (MFA codes are short-lived and not worth hiding).
    fn ask(&mut self, prompt: &str) -> Result<Secret, PromptError> {
        self.file
            .write_all(prompt.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(PromptError::Io)?;
        let mut line = String::new();
        BufReader::new(&self.file)
            .read_line(&mut line)
            .map_err(PromptError::Io)?;
        let code = line.trim();
        if code.is_empty() {
            return Err(PromptError::Cancelled);
        }
        Ok(Secret::new(code))
    }
}

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
                if self.tty.is_none() {
                    return Err(PromptError::Unavailable(
                        "samld needs the JumpCloud password, but there is no terminal to ask on; \
                         pipe it in with --password-stdin"
                            .into(),
                    ));
                }
                match rpassword::prompt_password(&prompt) {
                    Ok(p) if p.is_empty() => Err(PromptError::Cancelled),
                    Ok(p) => Ok(Secret::from(p)),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(PromptError::Cancelled),
                    Err(e) => Err(PromptError::Io(e)),
                }
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
            SecretKind::MfaCode => match &mut self.tty {
                Some(tty) => tty.ask(&prompt),
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

/// The daemon's prompt, ending in ": ".
fn prompt_text(prompt: &str) -> String {
    let p = prompt.trim_end();
    if p.ends_with(':') || p.ends_with('?') {
        format!("{p} ")
    } else {
        format!("{p}: ")
    }
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

    #[test]
    fn prompts_end_with_a_colon() {
        assert_eq!(
            prompt_text("JumpCloud password for a@b"),
            "JumpCloud password for a@b: "
        );
        assert_eq!(prompt_text("MFA code: "), "MFA code: ");
    }
}
