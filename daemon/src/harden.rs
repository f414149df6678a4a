//! Process hardening at start-up: no core dumps, no ptrace by other processes of the same
//! user, and enough file descriptors for bursts of clients.

/// Applies every protection the platform offers; failures are logged, not fatal, because a
/// daemon that cannot harden itself is still better than no daemon.
pub fn harden_process() {
    // SAFETY: setrlimit and prctl take plain values and have no memory-safety preconditions.
    unsafe {
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::setrlimit(libc::RLIMIT_CORE, &no_core) != 0 {
            tracing::warn!("could not disable core dumps");
        }
        #[cfg(target_os = "linux")]
        if libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
            tracing::warn!("could not make the process non-dumpable");
        }
    }
    raise_fd_limit();
}

/// A burst of hundreds of helpers holds as many connections at once; the default soft
/// limit of 1024 descriptors is too close for comfort.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit write to and read from a local struct only.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            let wanted = limit.rlim_max.min(65_536);
            if limit.rlim_cur < wanted {
                limit.rlim_cur = wanted;
                let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn hardened_process_is_not_dumpable() {
        // Runs in a child so the test harness itself stays debuggable.
        if std::env::var_os("SAMLD_HARDEN_CHILD").is_some() {
            super::harden_process();
            // SAFETY: prctl with PR_GET_DUMPABLE only reads.
            let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
            std::process::exit(if dumpable == 0 { 0 } else { 1 });
        }
        let exe = std::env::current_exe().unwrap();
        let status = std::process::Command::new(exe)
            .args(["--exact", "harden::tests::hardened_process_is_not_dumpable"])
            .env("SAMLD_HARDEN_CHILD", "1")
            .status()
            .unwrap();
        assert!(status.success());
    }
}
