//! Who a process is, for the audit: its name, executable and command line (bounded, with the
//! values of options that can hold secrets masked), and its parents.
//!
//! Linux reads `/proc`. Elsewhere nothing is read yet (see [`inspect`]): the audit then has
//! events without a process, which is still a record of every hand-out.

use samld_proto::ProcessInfo;

/// The most of a socket peer's command line kept, in bytes.
pub const COMMAND_LINE_LIMIT: usize = 512;

/// The most of an ancestor's command line kept, in bytes: the ancestry is up to
/// [`ANCESTRY_LEVELS`] entries per event, and the ring holds thousands of events.
pub const ANCESTOR_COMMAND_LINE_LIMIT: usize = 128;

/// The most of an executable's path kept, in bytes.
pub const EXE_LIMIT: usize = 256;

/// How many parents [`ancestry`] walks up.
pub const ANCESTRY_LEVELS: usize = 4;

/// Options whose value is a secret: `--password VALUE` and `--password=VALUE` both become
/// `***` in a recorded command line (`samlctl login --mfa-code 123456`, for example).
const SECRET_OPTIONS: &[&str] = &[
    "--mfa-code",
    "--password",
    "--token",
    "--secret",
    "--session-token",
    "--secret-access-key",
];

/// A process as read once: what the audit shows, and its parent (to walk the ancestry later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// What the audit records.
    pub info: ProcessInfo,
    /// Its parent's pid (0 when it has none).
    pub ppid: u32,
}

/// Reads the process `pid` (its command line kept to `command_line_limit` bytes), or `None`
/// when it is gone or cannot be read.
pub fn inspect(pid: u32, command_line_limit: usize) -> Option<Snapshot> {
    imp::inspect(pid, command_line_limit)
}

/// The parents of a process whose parent is `ppid`, nearest first, up to `levels` of them.
/// Stops at pid 1 (init, or a subreaper of nothing interesting) or 0, or at an entry that
/// cannot be read.
pub fn ancestry_from(mut ppid: u32, levels: usize) -> Vec<ProcessInfo> {
    let mut chain = Vec::new();
    while chain.len() < levels && ppid > 1 {
        let Some(parent) = inspect(ppid, ANCESTOR_COMMAND_LINE_LIMIT) else {
            break;
        };
        ppid = parent.ppid;
        chain.push(parent.info);
    }
    chain
}

/// The parents of `pid`, nearest first, up to `levels` of them (see [`ancestry_from`]).
pub fn ancestry(pid: u32, levels: usize) -> Vec<ProcessInfo> {
    match inspect(pid, ANCESTOR_COMMAND_LINE_LIMIT) {
        Some(me) => ancestry_from(me.ppid, levels),
        None => Vec::new(),
    }
}

/// Joins command-line arguments with spaces, masking the values of the options that can hold secrets, and
/// keeps at most `limit` bytes (cut on a character boundary, marked with `…`).
pub fn mask_command_line<S: AsRef<str>>(args: &[S], limit: usize) -> String {
    let mut out = String::new();
    let mut mask_next = false;
    for arg in args {
        let arg = arg.as_ref();
        if !out.is_empty() {
            out.push(' ');
        }
        if mask_next {
            out.push_str("***");
            mask_next = false;
            continue;
        }
        match arg.split_once('=') {
            Some((name, _)) if SECRET_OPTIONS.contains(&name) => {
                out.push_str(name);
                out.push_str("=***");
            }
            _ => {
                mask_next = SECRET_OPTIONS.contains(&arg);
                out.push_str(arg);
            }
        }
        if out.len() > limit {
            break;
        }
    }
    bound(out, limit)
}

/// Keeps at most `limit` bytes of `s`, cut on a character boundary and marked with `…`.
fn bound(mut s: String, limit: usize) -> String {
    if s.len() <= limit {
        return s;
    }
    let mut cut = limit.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push('…');
    s
}

/// Parses `/proc/PID/stat`: `pid (comm) state ppid ...`. The name is whatever lies between
/// the first `(` and the *last* `)`: a process may name itself `a) b (c`, and the kernel
/// writes that as is.
pub fn parse_stat(stat: &str) -> Option<(String, u32)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    if close < open {
        return None;
    }
    let name = stat[open + 1..close].to_owned();
    let mut rest = stat[close + 1..].split_ascii_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((name, ppid))
}

#[cfg(target_os = "linux")]
mod imp {
    use super::{EXE_LIMIT, Snapshot, bound, mask_command_line, parse_stat};
    use samld_proto::ProcessInfo;

    pub(super) fn inspect(pid: u32, command_line_limit: usize) -> Option<Snapshot> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (name, ppid) = parse_stat(&stat)?;
        // Another user's process (or a kernel thread) has no readable exe: shown without.
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| bound(p.to_string_lossy().into_owned(), EXE_LIMIT));
        let command_line = std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            // A zombie's (and a kernel thread's) is empty: nothing to show.
            .filter(|raw| !raw.is_empty())
            .map(|raw| {
                let args: Vec<String> = raw
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                mask_command_line(&args, command_line_limit)
            });
        Some(Snapshot {
            info: ProcessInfo {
                pid,
                name,
                exe,
                command_line,
            },
            ppid,
        })
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::Snapshot;

    /// Not read outside Linux yet: macOS has `proc_pidpath` and `proc_pidinfo`, but this
    /// code is never compiled or tested on a Mac here, and an untested reader of another
    /// process's memory layout is worse than an honest "unknown".
    pub(super) fn inspect(_pid: u32, _command_line_limit: usize) -> Option<Snapshot> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_names_may_hold_spaces_and_parentheses() {
        let cases = [
            ("1234 (bash) S 1000 1234 1234 0", Some(("bash", 1000))),
            ("7 (a b) R 6 7 7", Some(("a b", 6))),
            ("9 (x) (y) S 2 9", Some(("x) (y", 2))),
            ("9 (weird)) Z 3 9", Some(("weird)", 3))),
            ("10 () S 4 10", Some(("", 4))),
            ("garbage", None),
            ("5 (cut", None),
            ("5 (n) S notanumber", None),
        ];
        for (stat, want) in cases {
            let got = parse_stat(stat);
            let want = want.map(|(n, p)| (n.to_owned(), p));
            assert_eq!(got, want, "{stat}");
        }
    }

    #[test]
    fn secret_option_values_are_masked() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["samlctl", "login", "prod", "--mfa-code", "123456"],
                "samlctl login prod --mfa-code ***",
            ),
            (
                &["samlctl", "login", "--mfa-code=123456", "prod"],
                "samlctl login --mfa-code=*** prod",
            ),
            (&["x", "--password", "hunter2"], "x --password ***"),
            (&["x", "--password=hunter2"], "x --password=***"),
            (
                &["x", "--token", "t", "--secret", "s"],
                "x --token *** --secret ***",
            ),
            (&["x", "--session-token=abc"], "x --session-token=***"),
            (
                &["aws", "configure", "--secret-access-key", "AKIAxyz"],
                "aws configure --secret-access-key ***",
            ),
            // Only those options: a value that merely looks like one stays.
            (&["x", "--passwords", "keep"], "x --passwords keep"),
            (&["x", "--region", "eu-west-1"], "x --region eu-west-1"),
            // An option at the end has no value to mask.
            (&["x", "--password"], "x --password"),
        ];
        for (args, want) in cases {
            assert_eq!(mask_command_line(args, 1024), *want, "{args:?}");
        }
    }

    #[test]
    fn command_lines_are_bounded() {
        let long = "é".repeat(2000);
        let line = mask_command_line(&["prog", long.as_str()], COMMAND_LINE_LIMIT);
        assert!(line.len() <= COMMAND_LINE_LIMIT, "{}", line.len());
        assert!(line.starts_with("prog é"));
        assert!(line.ends_with('…'));
        // A secret past the limit is never half shown either.
        let args = ["p", long.as_str(), "--password", "hunter2"];
        assert!(!mask_command_line(&args, 64).contains("hunter2"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_its_own_process() {
        let me = inspect(std::process::id(), COMMAND_LINE_LIMIT).expect("own /proc entry");
        assert_eq!(me.info.pid, std::process::id());
        assert!(!me.info.name.is_empty());
        let exe = std::env::current_exe().unwrap();
        assert_eq!(me.info.exe.as_deref(), Some(exe.to_str().unwrap()));
        let line = me.info.command_line.expect("a command line");
        let binary = exe.file_name().unwrap().to_str().unwrap();
        assert!(line.contains(binary), "{line}");
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() } as u32;
        assert_eq!(me.ppid, ppid);
        let chain = ancestry(std::process::id(), ANCESTRY_LEVELS);
        assert!(chain.len() <= ANCESTRY_LEVELS);
        if ppid > 1 {
            assert_eq!(chain.first().map(|p| p.pid), Some(ppid));
        }
    }

    #[test]
    fn a_missing_process_is_none() {
        assert_eq!(inspect(u32::MAX - 1, COMMAND_LINE_LIMIT), None);
        assert!(ancestry_from(0, ANCESTRY_LEVELS).is_empty());
        assert!(ancestry_from(1, ANCESTRY_LEVELS).is_empty());
    }
}
