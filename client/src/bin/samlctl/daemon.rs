//! `samlctl daemon install|uninstall|start|stop|status`: the service manager's view through
//! [`samld_client::lifecycle::service`], and the daemon's own answer on the socket.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use samld_client::lifecycle::autostart;
use samld_client::lifecycle::env::{ServiceEnv, SystemRunner};
use samld_client::lifecycle::service::{Service, ServiceError, ServiceStatus};
use samld_client::{ClientError, ConnectOptions};
use samld_proto::PROTOCOL_VERSION;
use serde::Serialize;

use crate::commands::print_json;
use crate::{DaemonCommand, Failure};

/// `daemon status` when nothing answers, as `systemctl status` does for a stopped unit.
const EXIT_NOT_RUNNING: u8 = 3;

/// `samlctl daemon …`. `opts` never autostart: these commands decide themselves.
pub(crate) fn run(
    command: DaemonCommand,
    opts: &ConnectOptions,
    out: &mut impl Write,
) -> Result<ExitCode, Failure> {
    let env = ServiceEnv::from_env(opts.socket().to_owned()).map_err(ServiceError::from);
    let mut runner = SystemRunner;
    // Without HOME there is no service to consult; status, start and stop still work
    // directly on the socket.
    let mut service = env.map(|env| Service::new(env, &mut runner));
    let service_error = |e: ServiceError| Failure(e.to_string());
    match command {
        DaemonCommand::Install { dry_run } => {
            let samld = autostart::find_samld().map_err(|e| Failure(e.to_string()))?;
            service
                .map_err(service_error)?
                .dry_run(dry_run)
                .install(&samld, out)
                .map_err(service_error)?;
        }
        DaemonCommand::Uninstall { dry_run } => {
            service
                .map_err(service_error)?
                .dry_run(dry_run)
                .uninstall(out)
                .map_err(service_error)?;
        }
        DaemonCommand::Start => match &mut service {
            Ok(service) => service.start(opts, out).map_err(service_error)?,
            Err(_) => {
                autostart::start_daemon(opts.socket()).map_err(|e| Failure(e.to_string()))?;
                writeln!(out, "samld is running on {}.", opts.socket().display())?;
            }
        },
        DaemonCommand::Stop => match &mut service {
            Ok(service) => service.stop(opts, out).map_err(service_error)?,
            Err(_) => samld_client::lifecycle::service::stop_and_report(opts, out)
                .map_err(service_error)?,
        },
        DaemonCommand::Status { json } => {
            let status = service.as_mut().ok().and_then(Service::status);
            return self::status(opts, status, json, out);
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
/// `samlctl daemon status`: exits [`EXIT_NOT_RUNNING`] when no daemon answers.
fn status(
    opts: &ConnectOptions,
    service: Option<ServiceStatus>,
    json: bool,
    out: &mut impl Write,
) -> Result<ExitCode, Failure> {
    #[derive(Serialize)]
    struct DaemonStatus<'a> {
        running: bool,
        socket: &'a Path,
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        protocol_version: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        service: Option<&'a ServiceStatus>,
    }
    let not_running = |mut out: &mut dyn Write, why: String| -> Result<ExitCode, Failure> {
        if json {
            print_json(
                &mut out,
                &DaemonStatus {
                    running: false,
                    socket: opts.socket(),
                    version: None,
                    pid: None,
                    protocol_version: None,
                    service: service.as_ref(),
                },
            )?;
        } else {
            writeln!(out, "{why}")?;
            if let Some(s) = &service {
                writeln!(out, "{}", s.summary())?;
            }
        }
        Ok(ExitCode::from(EXIT_NOT_RUNNING))
    };

    // Connecting to systemd's listening socket would start samld: a status query must not.
    if service
        .as_ref()
        .is_some_and(ServiceStatus::listening_but_stopped)
    {
        return not_running(
            out,
            format!(
                "samld is not running; systemd listens on {} and starts it on the first request",
                opts.socket().display()
            ),
        );
    }
    // Any version: the point of this command is to say which daemon runs, even one this
    // samlctl cannot talk to.
    let client = match opts.clone().any_version().connect() {
        Ok(client) => client,
        Err(e) if e.is_not_running() => {
            return not_running(
                out,
                format!(
                    "samld is not running (no daemon answers on {})",
                    opts.socket().display()
                ),
            );
        }
        Err(e) => return Err(e.into()),
    };
    let hello = client.hello();
    if json {
        print_json(
            out,
            &DaemonStatus {
                running: true,
                socket: opts.socket(),
                version: Some(&hello.daemon_version),
                pid: Some(hello.pid),
                protocol_version: Some(hello.protocol_version),
                service: service.as_ref(),
            },
        )?;
    } else {
        writeln!(
            out,
            "samld {} is running (pid {}, protocol {}) on {}",
            hello.daemon_version,
            hello.pid,
            hello.protocol_version,
            opts.socket().display()
        )?;
        if let Some(s) = &service {
            writeln!(out, "{}", s.summary())?;
        }
    }
    out.flush()?;
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(ClientError::VersionMismatch {
            client: "samlctl",
            daemon: hello.clone(),
        }
        .into());
    }
    Ok(ExitCode::SUCCESS)
}
