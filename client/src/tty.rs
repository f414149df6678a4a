//! The controlling terminal, for asking the user when stdin, stdout and stderr are pipes, as
//! they are when the AWS CLI runs `samld-helper` (botocore captures both outputs and no SDK
//! shows them until the process ends) — `/dev/tty` still reaches the person at the keyboard.
//!
//! Only std and libc: the helper links this.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

use samld_proto::{Secret, SecretKind};

use crate::{PromptError, SecretPrompter};

/// The longest answer read; anything longer is no password or code of ours.
const MAX_ANSWER: usize = 4096;

/// The process's controlling terminal, opened read-write.
#[derive(Debug)]
pub struct Tty {
    file: File,
}

impl Tty {
    /// Opens `/dev/tty` if this process has a controlling terminal and is in its foreground
    /// process group. A background job that read from it would be stopped by `SIGTTIN`, so it
    /// counts as having no terminal.
    pub fn open() -> Option<Tty> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?;
        // SAFETY: plain calls on a descriptor we own; no memory is passed.
        let foreground = unsafe { libc::tcgetpgrp(file.as_raw_fd()) == libc::getpgrp() };
        foreground.then_some(Tty { file })
    }

    /// Writes `message` on a line of its own.
    pub fn say(&self, message: &str) -> io::Result<()> {
        let mut out = &self.file;
        out.write_all(format!("{message}\n").as_bytes())?;
        out.flush()
    }

    /// Asks for a secret without echoing what is typed. An empty answer or end of input
    /// (Ctrl-D) is [`PromptError::Cancelled`].
    pub fn read_secret(&self, prompt: &str) -> Result<Secret, PromptError> {
        let _echo_off = EchoOff::new(self.file.as_raw_fd()).map_err(PromptError::Io)?;
        self.ask(prompt)
    }

    /// Asks for an answer that may be seen as it is typed (a one-time code), without the
    /// blanks around it. Blank or end of input (Ctrl-D) is [`PromptError::Cancelled`].
    pub fn read_visible(&self, prompt: &str) -> Result<Secret, PromptError> {
        let answer = self.ask(prompt)?;
        let code = answer.expose().trim();
        if code.is_empty() {
            return Err(PromptError::Cancelled);
        }
        Ok(if code.len() == answer.expose().len() {
            answer
        } else {
            Secret::new(code)
        })
    }

    fn ask(&self, prompt: &str) -> Result<Secret, PromptError> {
        let mut out = &self.file;
        out.write_all(prompt.as_bytes())
            .and_then(|()| out.flush())
            .map_err(PromptError::Io)?;
        let line = self.read_line().map_err(PromptError::Io)?;
        if line.is_empty() {
            return Err(PromptError::Cancelled);
        }
        Ok(line)
    }

    /// One line, byte by byte so that nothing after it is consumed, into a buffer that never
    /// grows (growing would leave copies of the secret behind).
    fn read_line(&self) -> io::Result<Secret> {
        let mut line = String::with_capacity(MAX_ANSWER);
        let mut bytes = Vec::with_capacity(MAX_ANSWER);
        let mut input = &self.file;
        let mut byte = [0u8; 1];
        loop {
            match input.read(&mut byte) {
                Ok(0) => break,
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) if bytes.len() == MAX_ANSWER => {
                    zeroize::Zeroize::zeroize(&mut bytes);
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "answer too long",
                    ));
                }
                Ok(_) => bytes.push(byte[0]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    zeroize::Zeroize::zeroize(&mut bytes);
                    return Err(e);
                }
            }
        }
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let result = match std::str::from_utf8(&bytes) {
            Ok(text) => {
                line.push_str(text);
                Ok(Secret::from(line))
            }
            Err(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the answer is not valid UTF-8",
            )),
        };
        zeroize::Zeroize::zeroize(&mut bytes);
        result
    }
}

/// Answers the daemon's questions on the terminal: passwords hidden, MFA codes visible (they
/// are short-lived, and seeing them helps).
#[derive(Debug)]
pub struct TtyPrompter<'a> {
    tty: &'a Tty,
}

impl<'a> TtyPrompter<'a> {
    /// A prompter asking on `tty`.
    pub fn new(tty: &'a Tty) -> Self {
        Self { tty }
    }
}

impl SecretPrompter for TtyPrompter<'_> {
    fn prompt(&mut self, kind: SecretKind, prompt: &str) -> Result<Secret, PromptError> {
        let text = prompt_text(prompt);
        match kind {
            SecretKind::Password => self.tty.read_secret(&text),
            SecretKind::MfaCode => self.tty.read_visible(&text),
        }
    }
}

/// The daemon's prompt, ending in `": "` (or `"? "`).
pub fn prompt_text(prompt: &str) -> String {
    let p = prompt.trim_end();
    if p.ends_with(':') || p.ends_with('?') {
        format!("{p} ")
    } else {
        format!("{p}: ")
    }
}

/// Signals that end the process while echo is off; their handler turns echo back on first,
/// so Ctrl-C at a password prompt leaves a usable terminal. (SIGTSTP is left alone: the
/// shell resets the terminal of a stopped job, and echo must still be off on `fg`.)
const RESTORE_ON: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// One prompt with echo off at a time, so that the saved state below has one owner.
static ECHO_LOCK: Mutex<()> = Mutex::new(());
/// The terminal whose settings the signal handler restores, or -1.
static SAVED_FD: AtomicI32 = AtomicI32::new(-1);
/// Its settings before echo went off. Written only while no handler is installed.
static SAVED_TERMIOS: SavedTermios =
    SavedTermios(std::cell::UnsafeCell::new(MaybeUninit::uninit()));

struct SavedTermios(std::cell::UnsafeCell<MaybeUninit<libc::termios>>);

// SAFETY: written under ECHO_LOCK before the handlers are installed and never while they
// are; the handler only reads it.
unsafe impl Sync for SavedTermios {}

/// Echo off until dropped; restores the terminal and the previous signal dispositions.
struct EchoOff {
    fd: RawFd,
    saved: libc::termios,
    previous: Vec<(libc::c_int, libc::sigaction)>,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl EchoOff {
    fn new(fd: RawFd) -> io::Result<Self> {
        let lock = ECHO_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let mut termios = MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr fills the termios on success, which is checked before use.
        let saved = unsafe {
            if libc::tcgetattr(fd, termios.as_mut_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            termios.assume_init()
        };
        // SAFETY: no handler is installed (we hold ECHO_LOCK and the previous owner removed
        // its handlers before releasing it), so nothing reads the cell concurrently.
        unsafe { (*SAVED_TERMIOS.0.get()).write(saved) };
        SAVED_FD.store(fd, Ordering::SeqCst);
        let mut this = EchoOff {
            fd,
            saved,
            previous: Vec::new(),
            _lock: lock,
        };
        for sig in RESTORE_ON {
            // SAFETY: a zeroed sigaction is a valid "default" value; the handler is an
            // `extern "C"` fn that only makes async-signal-safe calls.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = restore_and_reraise as *const () as libc::sighandler_t;
                libc::sigemptyset(&mut action.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &action, &mut old) == 0 {
                    if old.sa_sigaction == libc::SIG_IGN {
                        // Ignored on purpose by whoever started us (nohup): keep it so.
                        libc::sigaction(sig, &old, std::ptr::null_mut());
                    } else {
                        this.previous.push((sig, old));
                    }
                }
            }
        }
        let mut quiet = saved;
        quiet.c_lflag &= !(libc::ECHO | libc::ECHOE | libc::ECHOK);
        // Still show the newline of Enter, so the next output starts on a fresh line.
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: `quiet` is a valid termios derived from the current one. TCSANOW rather
        // than TCSAFLUSH keeps a password typed ahead of the prompt.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(this)
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new`, then the saved dispositions.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
            for (sig, old) in &self.previous {
                libc::sigaction(*sig, old, std::ptr::null_mut());
            }
        }
        SAVED_FD.store(-1, Ordering::SeqCst);
    }
}

extern "C" fn restore_and_reraise(sig: libc::c_int) {
    let fd = SAVED_FD.load(Ordering::SeqCst);
    // SAFETY: tcsetattr, signal and raise are async-signal-safe; SAVED_TERMIOS was written
    // before this handler was installed.
    unsafe {
        if fd >= 0 {
            libc::tcsetattr(fd, libc::TCSANOW, (*SAVED_TERMIOS.0.get()).as_ptr());
        }
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_end_with_a_colon_and_a_space() {
        assert_eq!(prompt_text("Password"), "Password: ");
        assert_eq!(prompt_text("Password: "), "Password: ");
        assert_eq!(prompt_text("Approve?"), "Approve? ");
    }
}
