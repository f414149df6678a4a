//! The AWS CLI as the consumer: moto as STS, and `aws sts get-caller-identity` run with
//! samld-helper as its credential_process against the same command with the same
//! credentials in environment variables.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long moto may take to listen (it imports a lot of Python).
const MOTO_START: Duration = Duration::from_secs(60);

/// moto's server on a free port of 127.0.0.1 (scripts/interop/moto_server.py); stopped with
/// SIGTERM when dropped.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Moto {
    /// Starts moto with the venv's Python; its output goes to `dir/moto.log`. Readiness is
    /// the port the script writes to a FIFO once its socket listens.
    pub fn start(venv: &Path, dir: &Path) -> Result<Moto, String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("scripts/interop/moto_server.py");
        let fifo = dir.join("moto.ready");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())
            .map_err(|_| "the temp dir's path contains a NUL byte".to_owned())?;
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
            return Err(format!(
                "mkfifo {}: {}",
                fifo.display(),
                std::io::Error::last_os_error()
            ));
        }
        let log = fs::File::create(dir.join("moto.log")).map_err(|e| e.to_string())?;
        let mut child = Command::new(venv.join("bin/python"))
            .arg(&script)
            .arg(&fifo)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start moto ({}): {e}", script.display()))?;

        let (tx, rx) = mpsc::channel();
        let reader_fifo = fifo.clone();
        std::thread::spawn(move || {
            let line = fs::File::open(&reader_fifo).and_then(|f| {
                let mut line = String::new();
                BufReader::new(f).read_line(&mut line).map(|_| line)
            });
            let _ = tx.send(line);
        });
        let deadline = Instant::now() + MOTO_START;
        let port = loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(line)) => match line.trim().parse::<u16>() {
                    Ok(port) => break port,
                    Err(_) => return Err(format!("moto announced {line:?}, not a port")),
                },
                Ok(Err(e)) => return Err(format!("cannot read moto's readiness FIFO: {e}")),
                Err(_) => {
                    let exited = child.try_wait().ok().flatten();
                    if exited.is_some() || Instant::now() > deadline {
                        // Unblock the reader thread, which still waits for a writer.
                        let _ = OpenOptions::new()
                            .write(true)
                            .custom_flags(libc::O_NONBLOCK)
                            .open(&fifo);
                        let _ = child.kill();
                        let _ = child.wait();
                        let log = fs::read_to_string(dir.join("moto.log")).unwrap_or_default();
                        return Err(format!("moto did not start; its log:\n{log}"));
                    }
                }
            }
        };
        Ok(Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // SAFETY: kill only signals our own child, not yet reaped.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// How the AWS CLI gets its credentials in one variant of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `credential_process = samld-helper ACCOUNT`.
    Helper,
    /// `credential_process = cat FILE` with the same JSON: what any credential_process costs.
    Cat,
    /// `AWS_ACCESS_KEY_ID` and friends in the environment: no credential_process at all.
    Static,
}

impl Variant {
    /// All of them, in the order runs are interleaved.
    pub const ALL: [Variant; 3] = [Variant::Static, Variant::Helper, Variant::Cat];

    /// For the table.
    pub fn label(self) -> &'static str {
        match self {
            Variant::Helper => "credential_process = samld-helper",
            Variant::Cat => "credential_process = cat (same JSON)",
            Variant::Static => "static keys in environment variables",
        }
    }
}

/// The files and command lines of the comparison.
pub struct AwsCli {
    aws: PathBuf,
    endpoint: String,
    config: PathBuf,
    missing_credentials_file: PathBuf,
    keys: (String, String, String),
    /// Environment every variant shares (PATH with the venv first, HOME, samld's socket).
    base_env: Vec<(String, String)>,
}

impl AwsCli {
    /// Writes the AWS config with one profile per credential_process variant.
    pub fn new(
        venv: &Path,
        dir: &Path,
        endpoint: &str,
        helper: &Path,
        account: &str,
        creds_json: &str,
        base_env: Vec<(String, String)>,
    ) -> Result<AwsCli, String> {
        let doc: serde_json::Value =
            serde_json::from_str(creds_json).map_err(|e| format!("helper output: {e}"))?;
        let key = |k: &str| {
            doc[k]
                .as_str()
                .map(str::to_owned)
                .ok_or(format!("helper output has no {k}"))
        };
        let keys = (
            key("AccessKeyId")?,
            key("SecretAccessKey")?,
            key("SessionToken")?,
        );
        let json_file = dir.join("creds.json");
        fs::write(&json_file, creds_json).map_err(|e| e.to_string())?;
        // Plain absolute paths: botocore splits credential_process with shlex.
        let config = dir.join("aws-config");
        let text = format!(
            "[default]\nregion = us-east-1\n\n\
             [profile helper]\nregion = us-east-1\ncredential_process = {} {account}\n\n\
             [profile cat]\nregion = us-east-1\ncredential_process = /bin/cat {}\n",
            helper.display(),
            json_file.display()
        );
        fs::write(&config, text).map_err(|e| e.to_string())?;
        Ok(AwsCli {
            aws: venv.join("bin/aws"),
            endpoint: endpoint.to_owned(),
            config,
            missing_credentials_file: dir.join("no-credentials-file"),
            keys,
            base_env,
        })
    }

    /// `aws sts get-caller-identity` for one variant.
    pub fn command(&self, variant: Variant) -> Command {
        let mut cmd = Command::new(&self.aws);
        cmd.args([
            "sts",
            "get-caller-identity",
            "--endpoint-url",
            &self.endpoint,
            "--output",
            "json",
        ])
        .env_clear()
        .envs(self.base_env.iter().map(|(k, v)| (k, v)))
        .env("AWS_CONFIG_FILE", &self.config)
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            &self.missing_credentials_file,
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        match variant {
            Variant::Helper => {
                cmd.env("AWS_PROFILE", "helper");
            }
            Variant::Cat => {
                cmd.env("AWS_PROFILE", "cat");
            }
            Variant::Static => {
                cmd.env("AWS_ACCESS_KEY_ID", &self.keys.0)
                    .env("AWS_SECRET_ACCESS_KEY", &self.keys.1)
                    .env("AWS_SESSION_TOKEN", &self.keys.2);
            }
        }
        cmd
    }

    /// Runs one variant once: its time, or why it failed. Success means moto answered with
    /// the identity its keys belong to.
    pub fn run(&self, variant: Variant) -> Result<(Duration, String), String> {
        let mut cmd = self.command(variant);
        let start = Instant::now();
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.aws.display()))?;
        let took = start.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || !stdout.contains("\"Arn\"") {
            return Err(format!(
                "aws ({}) failed ({}): {}",
                variant.label(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok((took, stdout))
    }
}
