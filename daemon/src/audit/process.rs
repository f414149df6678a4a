//! Who a process is, for the audit: its name, executable and command line (bounded, with the
//! values of options that can hold secrets masked), and its parents.
//!
//! Linux reads `/proc`; macOS asks libproc (`proc_pidinfo`, `proc_pidpath`) and the
//! `KERN_PROCARGS2` sysctl. The macOS code is type-checked here for `aarch64-apple-darwin`
//! but never run (there is no Mac here). Elsewhere nothing is read: the audit then has
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

/// The children of `pid` (the program `samlctl exec` runs is its only one), oldest first;
/// empty when none or when this platform cannot tell.
pub fn children(pid: u32) -> Vec<u32> {
    imp::children(pid)
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

    pub(super) fn children(pid: u32) -> Vec<u32> {
        // Each thread lists the children it started, so every thread is asked. Needs
        // CONFIG_PROC_CHILDREN (on in the usual distribution kernels); without it the
        // program behind `samlctl exec` is simply not named.
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return Vec::new();
        };
        let mut children: Vec<u32> = tasks
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
            .flat_map(|text| {
                text.split_ascii_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
        children.sort_unstable();
        children
    }
}

/// The arguments in a `KERN_PROCARGS2` buffer (macOS): `argc` as a native `i32`, the
/// executable's path and its NUL padding, then `argc` NUL-ended arguments (the environment
/// follows and is never read). `None` when the buffer is not that.
pub fn parse_procargs2(buf: &[u8]) -> Option<Vec<String>> {
    let argc = i32::from_ne_bytes(buf.get(..4)?.try_into().ok()?);
    let argc = usize::try_from(argc).ok()?;
    let rest = &buf[4..];
    let path_end = rest.iter().position(|&b| b == 0)?;
    let start = path_end + rest[path_end..].iter().position(|&b| b != 0)?;
    let args: Vec<String> = rest[start..]
        .split(|&b| b == 0)
        .take(argc)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (args.len() == argc).then_some(args)
}

#[cfg(target_os = "macos")]
mod imp {
    use super::{EXE_LIMIT, Snapshot, bound, mask_command_line, parse_procargs2};
    use samld_proto::ProcessInfo;

    pub(super) fn inspect(pid: u32, command_line_limit: usize) -> Option<Snapshot> {
        let pid_t = libc::pid_t::try_from(pid).ok()?;
        // SAFETY: proc_bsdinfo holds only integers and byte arrays: all zeroes is valid.
        let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
        let size = libc::c_int::try_from(std::mem::size_of::<libc::proc_bsdinfo>()).ok()?;
        // SAFETY: `info` is writable for `size` bytes, what PROC_PIDTBSDINFO fills.
        let filled = unsafe {
            libc::proc_pidinfo(
                pid_t,
                libc::PROC_PIDTBSDINFO,
                0,
                (&raw mut info).cast(),
                size,
            )
        };
        if filled != size {
            return None;
        }
        let name = c_text(&info.pbi_name)
            .filter(|n| !n.is_empty())
            .or_else(|| c_text(&info.pbi_comm))?;
        let mut path = vec![0u8; libc::PROC_PIDPATHINFO_MAXSIZE as usize];
        let capacity = u32::try_from(path.len()).ok()?;
        // SAFETY: `path` is writable for `capacity` bytes.
        let len = unsafe { libc::proc_pidpath(pid_t, path.as_mut_ptr().cast(), capacity) };
        let exe = usize::try_from(len)
            .ok()
            .filter(|&n| n > 0 && n <= path.len())
            .map(|n| bound(String::from_utf8_lossy(&path[..n]).into_owned(), EXE_LIMIT));
        let command_line = process_arguments(pid_t)
            .as_deref()
            .and_then(parse_procargs2)
            .filter(|args| !args.is_empty())
            .map(|args| mask_command_line(&args, command_line_limit));
        Some(Snapshot {
            info: ProcessInfo {
                pid,
                name,
                exe,
                command_line,
            },
            ppid: info.pbi_ppid,
        })
    }

    pub(super) fn children(pid: u32) -> Vec<u32> {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return Vec::new();
        };
        let mut pids: Vec<libc::pid_t> = vec![0; 64];
        let Ok(bytes) = libc::c_int::try_from(std::mem::size_of_val(pids.as_slice())) else {
            return Vec::new();
        };
        // SAFETY: `pids` is writable for `bytes` bytes; the call returns how many it filled.
        let filled = unsafe { libc::proc_listchildpids(pid, pids.as_mut_ptr().cast(), bytes) };
        let count = usize::try_from(filled).unwrap_or(0).min(pids.len());
        pids.truncate(count);
        pids.into_iter()
            .filter_map(|p| u32::try_from(p).ok())
            .filter(|&p| p > 0)
            .collect()
    }

    /// The `KERN_PROCARGS2` buffer of `pid` (another user's is refused by the kernel).
    fn process_arguments(pid: libc::pid_t) -> Option<Vec<u8>> {
        let mut mib = [libc::CTL_KERN, libc::KERN_PROCARGS2, pid];
        let mut size: libc::size_t = 0;
        // SAFETY: a null buffer asks only for the size, written to `size`.
        let asked = unsafe {
            libc::sysctl(
                mib.as_mut_ptr(),
                3,
                std::ptr::null_mut(),
                &mut size,
                std::ptr::null_mut(),
                0,
            )
        };
        if asked != 0 || size == 0 {
            return None;
        }
        let mut buf = vec![0u8; size];
        // SAFETY: `buf` is writable for `size` bytes; the kernel writes back how many it used.
        let read = unsafe {
            libc::sysctl(
                mib.as_mut_ptr(),
                3,
                buf.as_mut_ptr().cast(),
                &mut size,
                std::ptr::null_mut(),
                0,
            )
        };
        if read != 0 {
            return None;
        }
        buf.truncate(size);
        Some(buf)
    }

    /// A NUL-ended C string in a fixed array, as text.
    fn c_text(chars: &[libc::c_char]) -> Option<String> {
        let bytes: Vec<u8> = chars
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod imp {
    use super::Snapshot;

    /// No process inspection on this platform: events carry no process.
    pub(super) fn inspect(_pid: u32, _command_line_limit: usize) -> Option<Snapshot> {
        None
    }

    pub(super) fn children(_pid: u32) -> Vec<u32> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procargs2_buffers_give_their_arguments_and_nothing_of_the_environment() {
        let buffer = |argc: i32, rest: &[u8]| {
            let mut b = argc.to_ne_bytes().to_vec();
            b.extend_from_slice(rest);
            b
        };
        let aws = buffer(
            3,
            b"/usr/local/bin/aws\0\0\0\0aws\0s3\0ls\0AWS_PROFILE=prod\0HOME=/Users/a\0",
        );
        let cases: [(&[u8], Option<&[&str]>); 6] = [
            (&aws, Some(&["aws", "s3", "ls"])),
            (&buffer(0, b"/bin/x\0\0"), None),
            (&buffer(0, b"/bin/x\0\0a\0"), Some(&[])),
            (&buffer(5, b"/bin/x\0\0a\0b\0"), None),
            (&buffer(-1, b"/bin/x\0\0a\0"), None),
            (b"\x01\x00", None),
        ];
        for (buf, want) in cases {
            let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(parse_procargs2(buf), want, "{buf:?}");
        }
    }

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
