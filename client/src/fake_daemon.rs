//! A scripted stand-in for samld, shared by the unit tests (`mod fake_daemon`) and the binary
//! tests (`#[path]`-included). Not part of the library.
//!
//! It binds a Unix socket in a fresh temp dir before returning, so a client may connect at
//! once, then serves the scripted connections in order on a thread; after the last one it
//! removes the socket, which is how a daemon that exits looks to a client.
#![allow(dead_code)]

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::thread::JoinHandle;

use samld_proto::{PROTOCOL_VERSION, Request, Response, read_frame, write_frame};

/// The pid the fake daemon claims.
pub const FAKE_PID: u32 = 4242;
/// The version the fake daemon claims.
pub const FAKE_VERSION: &str = "0.1.0-fake";

/// One step of a connection script.
pub enum Step {
    /// Read one request and record it; stop the script if the client hung up instead.
    Recv,
    /// Send one response.
    Send(Response),
    /// Send raw bytes (broken frames).
    Raw(Vec<u8>),
}

/// The script of one connection.
pub struct Conn {
    hello: Option<Response>,
    steps: Vec<Step>,
}

impl Conn {
    /// A connection that greets with the current protocol version.
    pub fn new() -> Self {
        Self {
            hello: Some(hello(PROTOCOL_VERSION)),
            steps: Vec::new(),
        }
    }

    /// Greets with `response` instead (or not at all with `None`).
    pub fn greeting(mut self, response: Option<Response>) -> Self {
        self.hello = response;
        self
    }

    /// Reads one request.
    pub fn recv(mut self) -> Self {
        self.steps.push(Step::Recv);
        self
    }

    /// Sends one response.
    pub fn send(mut self, response: Response) -> Self {
        self.steps.push(Step::Send(response));
        self
    }

    /// Sends raw bytes.
    pub fn raw(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.steps.push(Step::Raw(bytes.into()));
        self
    }

    /// Reads the request and answers it.
    pub fn answer(self, response: Response) -> Self {
        self.recv().send(response)
    }
}

impl Default for Conn {
    fn default() -> Self {
        Self::new()
    }
}

/// A `Hello` with the given protocol version.
pub fn hello(protocol_version: u32) -> Response {
    Response::Hello {
        protocol_version,
        daemon_version: FAKE_VERSION.into(),
        pid: FAKE_PID,
    }
}

/// A running fake daemon.
pub struct FakeDaemon {
    /// The socket it listens on.
    pub socket: PathBuf,
    dir: tempfile::TempDir,
    thread: Option<JoinHandle<Vec<Request>>>,
}

impl FakeDaemon {
    /// Binds the socket and serves `conns` one after the other on a thread.
    pub fn serve(conns: Vec<Conn>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("samld.sock");
        let listener = UnixListener::bind(&socket).expect("bind fake daemon socket");
        let path = socket.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for conn in conns {
                let (mut stream, _) = listener.accept().expect("accept");
                if let Some(h) = &conn.hello {
                    write_frame(&mut stream, h).expect("send hello");
                }
                for step in conn.steps {
                    match step {
                        Step::Recv => match read_frame::<_, Request>(&mut stream) {
                            Ok(Some(req)) => seen.push(req),
                            Ok(None) => break,
                            Err(e) => panic!("fake daemon got a bad request: {e}"),
                        },
                        // The client may have given up already (that is what some tests
                        // check), so a failed write ends the script rather than the test.
                        Step::Send(r) => {
                            if write_frame(&mut stream, &r).is_err() {
                                break;
                            }
                        }
                        Step::Raw(bytes) => {
                            if stream.write_all(&bytes).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
            drop(listener);
            let _ = std::fs::remove_file(&path);
            seen
        });
        Self {
            socket,
            dir,
            thread: Some(thread),
        }
    }

    /// Waits for the script to finish and returns the requests the daemon read.
    pub fn requests(mut self) -> Vec<Request> {
        let thread = self.thread.take().expect("joined once");
        match thread.join() {
            Ok(seen) => seen,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// The temp dir holding the socket, for tests that place other files beside it.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
