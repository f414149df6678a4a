//! The browser process and the DevTools protocol over `--remote-debugging-pipe`: the
//! browser reads commands on its fd 3 and writes answers and events on its fd 4, each a JSON
//! object ended by a NUL byte. No port is opened, so no other local user can reach the
//! browser that holds the IdP session, and no websocket library is needed.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The largest message read from the browser: events carrying a SAML post are a few hundred
/// KiB at most; past this the browser is not speaking the protocol.
const MAX_MESSAGE: usize = 32 * 1024 * 1024;

/// How many lines of the browser's stderr are kept for a message when it dies.
const STDERR_LINES: usize = 8;

/// A message from the browser.
#[derive(Debug)]
pub enum Incoming {
    /// The answer to a command.
    Answer {
        /// The command's id.
        id: u64,
        /// `result`, or the protocol error's message.
        result: Result<Value, String>,
    },
    /// An event, with the session of the target it is about (none for the browser).
    Event {
        /// `Target.attachedToTarget`, `Fetch.requestPaused`, ...
        method: String,
        /// Its parameters.
        params: Value,
        /// The flat session it came on.
        session: Option<String>,
    },
}

/// A started browser, spoken to over its pipe. Dropping it kills the browser.
pub struct Browser {
    child: Child,
    commands: File,
    incoming: Receiver<Option<Incoming>>,
    pending: VecDeque<Incoming>,
    next_id: u64,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    closed: bool,
}

impl Browser {
    /// Starts `program` with `args` and the pipe on fds 3 and 4.
    pub fn start(program: &Path, args: &[String]) -> std::io::Result<Self> {
        let (browser_reads, commands) = cloexec_pipe()?;
        let (events, browser_writes) = cloexec_pipe()?;
        // Moved above the range the child's dup2 writes to, so that neither can be clobbered
        // by the other's dup2 (a pipe may well have got fd 3 or 4 itself).
        let browser_reads = high_fd(&browser_reads)?;
        let browser_writes = high_fd(&browser_writes)?;
        let (r, w) = (browser_reads.as_raw_fd(), browser_writes.as_raw_fd());
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: between fork and exec the closure only calls dup2 and prctl, which are
        // async-signal-safe, on descriptors that stay open in the parent until spawn returns.
        // dup2 clears close-on-exec on the copies, which is how the browser inherits them.
        // On Linux the browser is also asked to stop (SIGTERM, so that it saves its cookies)
        // when samlctl dies without killing it: a browser left holding the IdP session with
        // nobody driving it helps no one.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                #[cfg(target_os = "linux")]
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        drop((browser_reads, browser_writes));
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            let tail = Arc::clone(&stderr_tail);
            thread::spawn(move || keep_tail(stderr, &tail));
        }
        let (tx, incoming) = mpsc::channel();
        thread::spawn(move || read_messages(File::from(events), &tx));
        Ok(Self {
            child,
            commands: File::from(commands),
            incoming,
            pending: VecDeque::new(),
            next_id: 0,
            stderr_tail,
            closed: false,
        })
    }

    /// Sends a command without waiting for its answer; returns its id.
    pub fn send(
        &mut self,
        method: &str,
        params: Value,
        session: Option<&str>,
    ) -> std::io::Result<u64> {
        self.next_id += 1;
        let mut message = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).map_err(std::io::Error::other)?;
        bytes.push(0);
        self.commands.write_all(&bytes)?;
        Ok(self.next_id)
    }

    /// Sends a command and waits for its answer; events that arrive meanwhile are kept for
    /// [`Browser::next`].
    pub fn call(
        &mut self,
        method: &str,
        params: Value,
        session: Option<&str>,
        deadline: Instant,
    ) -> Result<Value, CallError> {
        let id = self
            .send(method, params, session)
            .map_err(|_| CallError::Closed)?;
        loop {
            match self.receive(deadline)? {
                Incoming::Answer { id: got, result } if got == id => {
                    return result.map_err(|message| CallError::Protocol {
                        method: method.to_owned(),
                        message,
                    });
                }
                // Answers to commands sent without waiting are of no interest.
                Incoming::Answer { .. } => {}
                event => self.pending.push_back(event),
            }
        }
    }

    /// The next event (or stray answer), waiting until `deadline`.
    pub fn next(&mut self, deadline: Instant) -> Result<Incoming, CallError> {
        match self.pending.pop_front() {
            Some(message) => Ok(message),
            None => self.receive(deadline),
        }
    }

    fn receive(&mut self, deadline: Instant) -> Result<Incoming, CallError> {
        if self.closed {
            return Err(CallError::Closed);
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.incoming.recv_timeout(wait) {
            Ok(Some(message)) => Ok(message),
            Ok(None) | Err(RecvTimeoutError::Disconnected) => {
                self.closed = true;
                Err(CallError::Closed)
            }
            Err(RecvTimeoutError::Timeout) => Err(CallError::TimedOut),
        }
    }

    /// Waits up to `wait` for the browser to exit by itself, then kills it; its status.
    pub fn finish(&mut self, wait: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + wait;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    // The pipe is already closed; only the exit is left to see.
                    thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = self.child.kill();
                    return self.child.wait().ok();
                }
            }
        }
    }

    /// The last lines the browser wrote to stderr, for a message about why it died.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Why a command got no answer.
#[derive(Debug)]
pub enum CallError {
    /// The browser closed its pipe: it exited or crashed.
    Closed,
    /// The deadline passed.
    TimedOut,
    /// The browser answered with a protocol error.
    Protocol {
        /// The command.
        method: String,
        /// The browser's message.
        message: String,
    },
}

fn cloexec_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    #[cfg(target_os = "linux")]
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    let made = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    // macOS has no pipe2; samlctl starts no other process while the flag is not yet set.
    #[cfg(not(target_os = "linux"))]
    // SAFETY: `fds` is a valid array of two ints for pipe to fill.
    let made = unsafe { libc::pipe(fds.as_mut_ptr()) };
    if made < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the call succeeded, so both are open descriptors that nothing else owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    #[cfg(not(target_os = "linux"))]
    for fd in [&read, &write] {
        // SAFETY: F_SETFD on an open descriptor has no other precondition.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((read, write))
}

/// A close-on-exec copy of `fd` numbered 10 or above.
fn high_fd(fd: &OwnedFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on an open descriptor has no other precondition.
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if copy < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fcntl returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

fn read_messages(events: File, tx: &mpsc::Sender<Option<Incoming>>) {
    let mut reader = BufReader::new(events).take(u64::MAX);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        reader.set_limit(MAX_MESSAGE as u64 + 1);
        match reader.read_until(0, &mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(_) if buffer.last() != Some(&0) => break,
            Ok(_) => {}
        }
        buffer.pop();
        let Some(message) = serde_json::from_slice::<Value>(&buffer)
            .ok()
            .and_then(parse)
        else {
            continue;
        };
        if tx.send(Some(message)).is_err() {
            return;
        }
    }
    let _ = tx.send(None);
}

fn parse(mut message: Value) -> Option<Incoming> {
    let session = message["sessionId"].as_str().map(str::to_owned);
    if let Some(id) = message["id"].as_u64() {
        let result = match message.get_mut("error") {
            Some(error) => Err(error["message"]
                .as_str()
                .unwrap_or("unknown error")
                .to_owned()),
            None => Ok(message["result"].take()),
        };
        return Some(Incoming::Answer { id, result });
    }
    let method = message["method"].as_str()?.to_owned();
    Some(Incoming::Event {
        method,
        params: message["params"].take(),
        session,
    })
}

fn keep_tail(stderr: impl Read, tail: &Mutex<VecDeque<String>>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == STDERR_LINES {
                tail.pop_front();
            }
            tail.push_back(line.chars().take(300).collect());
        }
    }
}
