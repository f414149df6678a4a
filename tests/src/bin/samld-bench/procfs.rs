//! What the kernel says about a running process: memory, CPU time and, per thread, how often
//! it was switched out. Two samples taken a minute apart tell whether an idle daemon really
//! sleeps: every wakeup of a thread ends in a context switch (voluntary when it blocks
//! again, involuntary when it is preempted), so the switch counters count wakeups.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::time::Instant;

/// One thread's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSample {
    /// `comm`: the thread's name (tokio workers are `samld`, notify's is `notify-rs inotify`).
    pub name: String,
    /// `voluntary_ctxt_switches`.
    pub voluntary: u64,
    /// `nonvoluntary_ctxt_switches`.
    pub nonvoluntary: u64,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
}

impl ThreadSample {
    /// Every switch out, voluntary or not: one per wakeup.
    pub fn switches(&self) -> u64 {
        self.voluntary + self.nonvoluntary
    }
}

/// One look at a process.
#[derive(Debug, Clone)]
pub struct ProcSample {
    /// When it was taken.
    pub at: Instant,
    /// `VmRSS`, KiB.
    pub rss_kib: u64,
    /// `VmHWM` (the peak RSS so far), KiB.
    pub hwm_kib: u64,
    /// `RssAnon`: heap, stacks and other private memory, KiB. The rest of the RSS is mostly
    /// the binary's pages, shared with the page cache and dropped first under pressure.
    pub anon_kib: u64,
    /// User CPU time of the whole process, in clock ticks.
    pub utime: u64,
    /// System CPU time of the whole process, in clock ticks.
    pub stime: u64,
    /// Its threads by tid.
    pub threads: BTreeMap<u32, ThreadSample>,
}

/// Reads the process `pid` and all its threads.
pub fn sample(pid: u32) -> io::Result<ProcSample> {
    let at = Instant::now();
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let (utime, stime) = cpu_times(&fs::read_to_string(format!("/proc/{pid}/stat"))?)?;
    let mut threads = BTreeMap::new();
    for entry in fs::read_dir(format!("/proc/{pid}/task"))? {
        let entry = entry?;
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread that exits between the listing and the read is simply not in the sample.
        let (Ok(status), Ok(stat)) = (
            fs::read_to_string(entry.path().join("status")),
            fs::read_to_string(entry.path().join("stat")),
        ) else {
            continue;
        };
        let (u, s) = cpu_times(&stat)?;
        threads.insert(
            tid,
            ThreadSample {
                name: field(&status, "Name").unwrap_or("?").to_owned(),
                voluntary: number(&status, "voluntary_ctxt_switches")?,
                nonvoluntary: number(&status, "nonvoluntary_ctxt_switches")?,
                cpu_ticks: u + s,
            },
        );
    }
    Ok(ProcSample {
        at,
        rss_kib: kib(&status, "VmRSS")?,
        hwm_kib: kib(&status, "VmHWM")?,
        anon_kib: kib(&status, "RssAnon")?,
        utime,
        stime,
        threads,
    })
}

/// The kernel's clock tick, in which `/proc/*/stat` counts CPU time.
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// What changed for one thread between two samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadDelta {
    /// Its tid.
    pub tid: u32,
    /// Its name.
    pub name: String,
    /// Switches (wakeups) in the interval.
    pub switches: u64,
    /// Of those, involuntary.
    pub nonvoluntary: u64,
    /// CPU ticks used in the interval.
    pub cpu_ticks: u64,
    /// Started after the first sample (all its switches count) or gone before the second.
    pub note: &'static str,
}

/// Per-thread changes from `before` to `after`.
pub fn thread_deltas(before: &ProcSample, after: &ProcSample) -> Vec<ThreadDelta> {
    let mut out = Vec::new();
    for (tid, now) in &after.threads {
        let (old, note) = match before.threads.get(tid) {
            Some(old) => (old.clone(), ""),
            None => (
                ThreadSample {
                    name: now.name.clone(),
                    voluntary: 0,
                    nonvoluntary: 0,
                    cpu_ticks: 0,
                },
                "started during the interval",
            ),
        };
        out.push(ThreadDelta {
            tid: *tid,
            name: now.name.clone(),
            switches: now.switches().saturating_sub(old.switches()),
            nonvoluntary: now.nonvoluntary.saturating_sub(old.nonvoluntary),
            cpu_ticks: now.cpu_ticks.saturating_sub(old.cpu_ticks),
            note,
        });
    }
    for (tid, old) in &before.threads {
        if !after.threads.contains_key(tid) {
            // Its last counters died with it; at least one wakeup (the one that ended it).
            out.push(ThreadDelta {
                tid: *tid,
                name: old.name.clone(),
                switches: 1,
                nonvoluntary: 0,
                cpu_ticks: 0,
                note: "exited during the interval (at least 1)",
            });
        }
    }
    out
}

fn field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == key).then_some(v.trim())
    })
}

fn number(status: &str, key: &str) -> io::Result<u64> {
    field(status, key)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no {key} in /proc status")))
}

fn kib(status: &str, key: &str) -> io::Result<u64> {
    // "VmRSS:	    6044 kB"
    number(status, key)
}

/// utime and stime (fields 14 and 15) of a `stat` line. The command name (field 2) is in
/// parentheses and may itself contain spaces and parentheses, so fields are counted from the
/// last `)`.
fn cpu_times(stat: &str) -> io::Result<(u64, u64)> {
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::other("malformed /proc stat"))?;
    // After ")": field 3 (state) is the first; utime is field 14, the 12th from here.
    let mut fields = rest.split_whitespace().skip(11);
    let mut next = || -> io::Result<u64> {
        fields
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other("malformed /proc stat"))
    };
    Ok((next()?, next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let stat = "1234 (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 17 23 0 0 20 0 3 0";
        assert_eq!(cpu_times(stat).unwrap(), (17, 23));
    }

    #[test]
    fn samples_this_process() {
        let me = sample(std::process::id()).unwrap();
        assert!(me.rss_kib > 0 && me.hwm_kib >= me.rss_kib);
        assert!(!me.threads.is_empty());
        let again = sample(std::process::id()).unwrap();
        let deltas = thread_deltas(&me, &again);
        let main = deltas
            .iter()
            .find(|d| d.tid == std::process::id())
            .expect("the main thread is in both samples");
        assert_eq!(main.note, "");
    }
}
