//! `samlctl daemon install|uninstall|start|stop|status` against a recording command runner
//! in a temp HOME: the files written (paths, contents, modes) and the exact commands.

#![allow(clippy::disallowed_methods)] // fixtures are written directly (see client/clippy.toml)

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use samld_client::ConnectOptions;
use samld_client::lifecycle::env::{
    CommandOutput, CommandRunner, Manager, ServiceCommand, ServiceEnv,
};
use samld_client::lifecycle::service::Service;
use samld_client::lifecycle::units::{LAUNCHD_LABEL, SYSTEMD_SOCKET_UNIT, render_launchd_plist};
use samld_proto::{PROTOCOL_VERSION, Response, write_frame};

/// Records every command; answers from a script (first matching prefix wins), success with
/// no output otherwise.
#[derive(Default)]
struct Recorder {
    ran: Vec<String>,
    script: VecDeque<(String, CommandOutput)>,
}

impl Recorder {
    fn answer(mut self, prefix: &str, success: bool, stdout: &str) -> Self {
        self.script.push_back((
            prefix.to_owned(),
            CommandOutput {
                success,
                stdout: stdout.to_owned(),
                stderr: if success {
                    String::new()
                } else {
                    "boom".into()
                },
            },
        ));
        self
    }
}

impl CommandRunner for Recorder {
    fn run(&mut self, command: &ServiceCommand) -> io::Result<CommandOutput> {
        let line = command.to_string();
        self.ran.push(line.clone());
        let pos = self.script.iter().position(|(p, _)| line.starts_with(p));
        Ok(match pos {
            Some(i) => self.script.remove(i).unwrap().1,
            None => CommandOutput {
                success: true,
                ..CommandOutput::default()
            },
        })
    }
}

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("samld-svc-")
                .tempdir()
                .unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn runtime(&self) -> PathBuf {
        self.path().join("run")
    }

    /// The socket systemd's unit would listen on: the managed path.
    fn managed_socket(&self) -> PathBuf {
        self.runtime().join("samld").join("samld.sock")
    }

    fn env(&self, manager: Manager, socket: PathBuf) -> ServiceEnv {
        ServiceEnv {
            manager,
            home: self.path().to_owned(),
            config_home: self.path().join("config"),
            runtime_dir: Some(self.runtime()),
            uid: 1234,
            socket,
            path_var: Some("/opt/homebrew/bin:/usr/bin:/bin".into()),
        }
    }

    fn unit_dir(&self) -> PathBuf {
        self.path().join("config/systemd/user")
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

const SYSTEMCTL_SHOW: &str = "systemctl --user show --property=Id,ActiveState,UnitFileState,MainPID samld.socket samld.service";

#[test]
fn systemd_install_writes_both_units_and_enables_the_socket() {
    let home = Home::new();
    let samld = Path::new("/opt/samld/bin/samld");
    let mut runner = Recorder::default();
    let mut out = Vec::new();
    Service::new(
        home.env(Manager::Systemd, home.managed_socket()),
        &mut runner,
    )
    .install(samld, &mut out)
    .unwrap();

    let service = home.unit_dir().join("samld.service");
    let socket = home.unit_dir().join("samld.socket");
    let service_text = fs::read_to_string(&service).unwrap();
    assert!(
        service_text.contains("\nExecStart=/opt/samld/bin/samld\n"),
        "{service_text}"
    );
    assert!(!service_text.contains("ExecStart=@"));
    assert!(
        service_text.contains("with @SAMLD_BIN@\n# replaced by the absolute path"),
        "the comment still names the placeholder"
    );
    assert!(service_text.contains("\nType=notify\n"));
    assert_eq!(fs::read_to_string(&socket).unwrap(), SYSTEMD_SOCKET_UNIT);
    assert!(SYSTEMD_SOCKET_UNIT.contains("\nListenStream=%t/samld/samld.sock\n"));
    assert_eq!(mode(&service), 0o644);
    assert_eq!(mode(&socket), 0o644);

    assert_eq!(
        runner.ran,
        [
            SYSTEMCTL_SHOW,
            "systemctl --user daemon-reload",
            "systemctl --user enable --now samld.socket",
        ]
    );
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        out,
        format!(
            "Wrote {}\nWrote {}\nRan: systemctl --user daemon-reload\n\
             Ran: systemctl --user enable --now samld.socket\n\
             samld is installed: systemd listens on {} and starts samld on the first request.\n",
            service.display(),
            socket.display(),
            home.managed_socket().display()
        )
    );
    // No temp files left behind by the atomic writes.
    let mut names: Vec<_> = fs::read_dir(home.unit_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["samld.service", "samld.socket"]);
}

#[test]
fn an_awkward_samld_path_is_quoted_for_systemd() {
    let home = Home::new();
    let mut runner = Recorder::default();
    Service::new(
        home.env(Manager::Systemd, home.managed_socket()),
        &mut runner,
    )
    .install(Path::new("/home/a b/100%/samld"), &mut Vec::new())
    .unwrap();
    let text = fs::read_to_string(home.unit_dir().join("samld.service")).unwrap();
    assert!(
        text.contains("\nExecStart=\"/home/a b/100%%/samld\"\n"),
        "{text}"
    );
}

#[test]
fn dry_run_prints_everything_and_changes_nothing() {
    let home = Home::new();
    let mut runner = Recorder::default();
    let mut out = Vec::new();
    Service::new(
        home.env(Manager::Systemd, home.managed_socket()),
        &mut runner,
    )
    .dry_run(true)
    .install(Path::new("/usr/bin/samld"), &mut out)
    .unwrap();
    assert!(!home.unit_dir().exists(), "nothing written");
    assert_eq!(runner.ran, [SYSTEMCTL_SHOW], "only the read-only query ran");
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains(&format!(
            "Would write {}:\n",
            home.unit_dir().join("samld.service").display()
        )),
        "{out}"
    );
    assert!(out.contains("\n    ExecStart=/usr/bin/samld\n"), "{out}");
    assert!(
        out.contains("\n    ListenStream=%t/samld/samld.sock\n"),
        "{out}"
    );
    assert!(
        out.ends_with(
            "Would run: systemctl --user daemon-reload\n\
             Would run: systemctl --user enable --now samld.socket\n"
        ),
        "{out}"
    );
}

#[test]
fn a_failing_systemctl_is_reported_with_its_message() {
    let home = Home::new();
    let mut runner = Recorder::default().answer("systemctl --user daemon-reload", false, "");
    let err = Service::new(
        home.env(Manager::Systemd, home.managed_socket()),
        &mut runner,
    )
    .install(Path::new("/usr/bin/samld"), &mut Vec::new())
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "`systemctl --user daemon-reload` failed: boom"
    );
    assert!(
        !runner.ran.iter().any(|c| c.contains("enable")),
        "stops at the first failure: {:?}",
        runner.ran
    );
}

#[test]
fn without_a_systemd_user_manager_nothing_is_installed() {
    let home = Home::new();
    let mut runner = Recorder::default().answer("systemctl --user show", false, "");
    let err = Service::new(
        home.env(Manager::Systemd, home.managed_socket()),
        &mut runner,
    )
    .install(Path::new("/usr/bin/samld"), &mut Vec::new())
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot reach the systemd user manager, so nothing was installed"),
        "{err}"
    );
    assert!(!home.unit_dir().exists());
    assert_eq!(runner.ran, [SYSTEMCTL_SHOW]);
}

#[test]
fn reinstalling_over_a_running_service_says_the_new_binary_waits() {
    let home = Home::new();
    let mut runner = Recorder::default().answer(
        "systemctl --user show",
        true,
        "Id=samld.socket\nActiveState=active\n\nId=samld.service\nActiveState=active\nMainPID=9\n",
    );
    let mut out = Vec::new();
    Service::new(
        home.env(Manager::Systemd, home.managed_socket()),
        &mut runner,
    )
    .install(Path::new("/usr/bin/samld-new"), &mut out)
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.ends_with(
            "note: the running samld keeps the binary it started with; `samlctl daemon stop` \
             lets the next request start /usr/bin/samld-new\n"
        ),
        "{out}"
    );
}

#[test]
fn systemd_uninstall_disables_removes_and_reloads() {
    let home = Home::new();
    let mut runner = Recorder::default();
    let env = home.env(Manager::Systemd, home.managed_socket());
    Service::new(env.clone(), &mut runner)
        .install(Path::new("/usr/bin/samld"), &mut Vec::new())
        .unwrap();
    assert!(env.is_installed());

    let mut runner = Recorder::default();
    let mut out = Vec::new();
    Service::new(env.clone(), &mut runner)
        .uninstall(&mut out)
        .unwrap();
    assert_eq!(
        runner.ran,
        [
            "systemctl --user disable --now samld.socket samld.service",
            "systemctl --user daemon-reload",
        ]
    );
    assert!(!env.is_installed());
    assert!(!home.unit_dir().join("samld.service").exists());
    assert!(!home.unit_dir().join("samld.socket").exists());
    let out = String::from_utf8(out).unwrap();
    assert!(out.ends_with("samld is uninstalled.\n"), "{out}");

    // A second uninstall has nothing to do, and says so.
    let mut runner = Recorder::default();
    let mut out = Vec::new();
    Service::new(env, &mut runner).uninstall(&mut out).unwrap();
    assert!(runner.ran.is_empty());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "samld is not installed as a systemd service (no {}).\n",
            home.unit_dir().join("samld.service").display()
        )
    );
}

#[test]
fn systemd_owns_the_socket_only_when_enabled_and_on_its_path() {
    let home = Home::new();
    let env = home.env(Manager::Systemd, home.managed_socket());
    assert!(!env.systemd_owns_socket(), "not enabled yet");
    let wants = home.unit_dir().join("sockets.target.wants");
    fs::create_dir_all(&wants).unwrap();
    fs::write(home.unit_dir().join("samld.socket"), SYSTEMD_SOCKET_UNIT).unwrap();
    std::os::unix::fs::symlink(
        home.unit_dir().join("samld.socket"),
        wants.join("samld.socket"),
    )
    .unwrap();
    assert!(env.systemd_owns_socket());
    let elsewhere = home.env(Manager::Systemd, home.path().join("other.sock"));
    assert!(
        !elsewhere.systemd_owns_socket(),
        "SAMLD_SOCKET elsewhere is not systemd's business"
    );
    // A dangling link (unit file deleted by hand) no longer counts.
    fs::remove_file(home.unit_dir().join("samld.socket")).unwrap();
    assert!(!env.systemd_owns_socket());
}

/// A listener on `socket` that greets one client as samld pid `pid` would.
fn greeter(socket: &Path, pid: u32) -> std::thread::JoinHandle<()> {
    fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        write_frame(
            &mut stream,
            &Response::Hello {
                protocol_version: PROTOCOL_VERSION,
                daemon_version: "0.1.0".into(),
                pid,
            },
        )
        .unwrap();
    })
}

#[test]
fn start_stop_and_status_go_through_systemd_when_it_serves_the_socket() {
    let home = Home::new();
    let socket = home.managed_socket();
    let env = home.env(Manager::Systemd, socket.clone());
    Service::new(env.clone(), &mut Recorder::default())
        .install(Path::new("/usr/bin/samld"), &mut Vec::new())
        .unwrap();
    assert!(env.manages_socket());
    let opts = ConnectOptions::new(&socket);

    // systemctl start blocks until READY=1; then samlctl reports the pid it talks to.
    let served = greeter(&socket, 777);
    let mut runner = Recorder::default();
    let mut out = Vec::new();
    Service::new(env.clone(), &mut runner)
        .start(&opts, &mut out)
        .unwrap();
    served.join().unwrap();
    assert_eq!(runner.ran, ["systemctl --user start samld.service"]);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "Ran: systemctl --user start samld.service\nsamld 0.1.0 is running (pid 777) on {}.\n",
            socket.display()
        )
    );

    let mut runner = Recorder::default();
    let mut out = Vec::new();
    Service::new(env.clone(), &mut runner)
        .stop(&opts, &mut out)
        .unwrap();
    assert_eq!(runner.ran, ["systemctl --user stop samld.service"]);
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains("samld.socket still listens"),
    );

    let mut runner = Recorder::default().answer(
        "systemctl --user show",
        true,
        "Id=samld.socket\nActiveState=active\nUnitFileState=enabled\n\n\
         MainPID=0\nId=samld.service\nActiveState=inactive\nUnitFileState=indirect\n",
    );
    let status = Service::new(env, &mut runner).status().unwrap();
    assert!(status.listening_but_stopped());
    assert_eq!(
        status.summary(),
        "systemd: samld.socket active (enabled), samld.service inactive"
    );
    assert_eq!(runner.ran, [SYSTEMCTL_SHOW]);
}

#[test]
fn another_socket_is_never_handed_to_the_service_manager() {
    let home = Home::new();
    let managed = home.env(Manager::Systemd, home.managed_socket());
    Service::new(managed, &mut Recorder::default())
        .install(Path::new("/usr/bin/samld"), &mut Vec::new())
        .unwrap();
    // `samlctl --socket OTHER daemon stop`: a Shutdown to OTHER, no systemctl.
    let other = home.path().join("other").join("samld.sock");
    let env = home.env(Manager::Systemd, other.clone());
    assert!(!env.manages_socket());
    let mut runner = Recorder::default();
    let mut out = Vec::new();
    Service::new(env.clone(), &mut runner)
        .stop(&ConnectOptions::new(&other), &mut out)
        .unwrap();
    assert!(runner.ran.is_empty(), "{:?}", runner.ran);
    assert_eq!(String::from_utf8(out).unwrap(), "samld is not running.\n");
    assert!(Service::new(env, &mut runner).status().is_none());
}

/// Parses a property list with python3's plistlib (on every machine with python3) into
/// JSON; `None` when python3 is missing.
fn plist_as_json(path: &Path) -> serde_json::Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json,plistlib,sys; print(json.dumps(plistlib.load(open(sys.argv[1],'rb'))))",
        ])
        .arg(path)
        .output()
        .expect("python3 parses the property list; install python3 to run this test");
    assert!(
        out.status.success(),
        "{} is not a valid property list: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn launchd_install_writes_the_agent_and_bootstraps_it() {
    let home = Home::new();
    let socket = home.path().join("T/samld-1234/samld.sock");
    let env = home.env(Manager::Launchd, socket.clone());
    let samld = Path::new("/Users/road runner/.cargo/bin/samld");
    // `launchctl print` fails: the job is not loaded yet.
    let mut runner = Recorder::default().answer("launchctl print", false, "");
    let mut out = Vec::new();
    Service::new(env.clone(), &mut runner)
        .install(samld, &mut out)
        .unwrap();

    let plist = home
        .path()
        .join("Library/LaunchAgents/com.samld.samld.plist");
    assert_eq!(env.launchd_plist(), plist);
    assert_eq!(mode(&plist), 0o644);
    assert_eq!(
        runner.ran,
        [
            "launchctl print gui/1234/com.samld.samld".to_owned(),
            format!("launchctl bootstrap gui/1234 {}", plist.display()),
        ]
    );
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.starts_with(&format!(
            "Wrote {}\nRan: launchctl bootstrap gui/1234 {}\n",
            plist.display(),
            plist.display()
        )),
        "{out}"
    );
    assert!(env.launchd_serves_socket());
    assert!(env.manages_socket());
    assert!(
        !home
            .env(Manager::Launchd, home.path().join("x.sock"))
            .launchd_serves_socket(),
        "the agent is pinned to its socket"
    );

    let doc = plist_as_json(&plist);
    assert_eq!(doc["Label"], LAUNCHD_LABEL);
    assert_eq!(
        doc["ProgramArguments"],
        serde_json::json!([samld, "--socket", socket])
    );
    assert_eq!(doc["RunAtLoad"], true);
    assert_eq!(doc["KeepAlive"]["SuccessfulExit"], false);
    assert_eq!(
        doc["StandardErrorPath"],
        home.path().join("Library/Logs/samld.log").to_str().unwrap()
    );
    assert_eq!(
        doc["EnvironmentVariables"]["PATH"],
        "/opt/homebrew/bin:/usr/bin:/bin"
    );
    assert_eq!(doc["Umask"], 0o077);
}

#[test]
fn launchd_reinstall_boots_the_old_job_out_first_and_uninstall_removes_it() {
    let home = Home::new();
    let env = home.env(Manager::Launchd, home.path().join("s/samld.sock"));
    let mut first = Recorder::default().answer("launchctl print", false, "");
    Service::new(env.clone(), &mut first)
        .install(Path::new("/usr/local/bin/samld"), &mut Vec::new())
        .unwrap();

    // Loaded now: `launchctl print` succeeds.
    let mut runner = Recorder::default();
    Service::new(env.clone(), &mut runner)
        .install(Path::new("/usr/local/bin/samld"), &mut Vec::new())
        .unwrap();
    let plist = env.launchd_plist();
    assert_eq!(
        runner.ran,
        [
            "launchctl print gui/1234/com.samld.samld".to_owned(),
            "launchctl bootout gui/1234/com.samld.samld".to_owned(),
            format!("launchctl bootstrap gui/1234 {}", plist.display()),
        ]
    );

    let mut runner = Recorder::default();
    let mut out = Vec::new();
    Service::new(env.clone(), &mut runner)
        .uninstall(&mut out)
        .unwrap();
    assert_eq!(
        runner.ran,
        [
            "launchctl print gui/1234/com.samld.samld",
            "launchctl bootout gui/1234/com.samld.samld",
        ]
    );
    assert!(!plist.exists());
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains(&format!("Removed {}\n", plist.display()))
    );
}

#[test]
fn the_plist_template_escapes_what_xml_needs() {
    let text = render_launchd_plist(
        Path::new("/Users/a&b/<bin>/samld"),
        Path::new("/tmp/s.sock"),
        Path::new("/Users/a&b"),
        "/usr/bin",
    )
    .unwrap();
    assert!(text.contains("<string>/Users/a&amp;b/&lt;bin&gt;/samld</string>"));
    assert!(text.contains("<string>/Users/a&amp;b/Library/Logs/samld.log</string>"));
    assert!(
        !text.contains("<string>@"),
        "every placeholder is filled: {text}"
    );
    assert!(
        text.contains("with @SAMLD_BIN@, @SAMLD_SOCKET@ and @HOME@ replaced"),
        "the comment still explains them"
    );
}

#[test]
fn samlctl_daemon_install_dry_run_uses_the_real_environment() {
    let home = Home::new();
    let out = Command::new(env!("CARGO_BIN_EXE_samlctl"))
        .args(["daemon", "install", "--dry-run"])
        .env_clear()
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", home.runtime())
        .env("PATH", "/usr/bin:/bin")
        .env("SAMLD_NO_AUTOSTART", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // samld is built next to samlctl only when the whole workspace is; the message is
    // the one users get from a partial install.
    let samld = Path::new(env!("CARGO_BIN_EXE_samlctl")).with_file_name("samld");
    if !samld.exists() {
        assert!(!out.status.success());
        assert!(stderr.contains("no samld binary in"), "{stderr}");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    if cfg!(target_os = "macos") {
        assert!(
            stdout.contains("Would run: launchctl bootstrap gui/"),
            "{stdout}"
        );
        return;
    }
    assert!(
        stdout.starts_with(&format!(
            "Would write {}/.config/systemd/user/samld.service:\n",
            home.path().display()
        )),
        "XDG_CONFIG_HOME defaults to ~/.config: {stdout}"
    );
    assert!(
        stdout.contains(&format!("\n    ExecStart={}\n", samld.display())),
        "{stdout}"
    );
    assert!(
        !home.path().join(".config").exists(),
        "a dry run writes nothing"
    );
}
