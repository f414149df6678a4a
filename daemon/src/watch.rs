//! Tells the daemon when a file it depends on may have changed: the configuration file, and
//! the socket file (which the daemon re-creates when it is deleted or replaced).
//!
//! Watching the file itself breaks as soon as an editor replaces it (write a temporary file,
//! rename it over; vim's rename-to-backup dance), because the watch follows the old inode.
//! So the *directory* is watched, non-recursively, and events are filtered by file name. When
//! the directory does not exist yet (or is deleted later), the nearest existing ancestor is
//! watched instead, for the name of the next missing component, and the watch moves down as
//! directories appear. When the file is a symbolic link (dotfile managers), the directory of
//! each link target is watched as well, so that editing the target is seen.
//!
//! Events arrive on notify's thread and are passed to a Tokio task, which waits until they
//! have been quiet for a moment, moves the watches if the directory layout changed, and then
//! sends one `()`. A notification means "reload and compare": it may come when nothing
//! changed (a `touch`), never with the file still half-written by one burst of writes.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify::event::{Event, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long events must pause before a notification: long enough to cover an editor's
/// write/rename/chmod sequence, short enough to feel immediate.
const QUIET: Duration = Duration::from_millis(200);

/// A notification is sent at the latest this long after the first event, even if events
/// keep coming, so that a file rewritten in a loop cannot postpone reloads forever.
const MAX_DELAY: Duration = Duration::from_secs(2);

/// How many symbolic links to follow from the configuration path.
const MAX_LINKS: usize = 8;

/// Keeps a file watched; dropping it stops the watch and closes the
/// notification channel.
#[derive(Debug)]
pub struct FileWatcher {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FileWatcher {
    fn drop(&mut self) {
        // The task owns the notify watcher, so this also stops notify's thread.
        self.task.abort();
    }
}

/// Starts watching the configuration file at `path`, which need not exist yet, nor its
/// directory. Each `()` received means the file may have changed: reload it.
///
/// The watch is in place when this returns, so a caller that loads the file *after* calling
/// this misses no change. Must be called within a Tokio runtime. Fails if notify cannot
/// start (inotify limits reached, for example) or the directory cannot be watched.
pub fn watch_file(path: &Path) -> io::Result<(FileWatcher, mpsc::Receiver<()>)> {
    let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
    let config = std::path::absolute(path)?;
    let filter = Arc::new(Mutex::new(Filter::default()));

    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let callback_filter = Arc::clone(&filter);
    let watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        let filter = callback_filter
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(signal) = filter.classify(&event) {
            // Only fails once the task has ended, when nobody is listening any more.
            let _ = events_tx.send(signal);
        }
    })
    .map_err(into_io)?;

    let mut watch = Watch {
        watcher,
        config,
        filter,
        watched: Vec::new(),
    };
    watch.arm(false)?;

    // Capacity 1: a pending notification already says "reload", so more can be dropped.
    let (notify_tx, notify_rx) = mpsc::channel(1);
    let task = runtime.spawn(debounce(watch, events_rx, notify_tx));
    Ok((FileWatcher { task }, notify_rx))
}

/// What an event means for the watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// The file (or a link target) changed.
    File,
    /// A directory on the way to the file appeared, vanished or moved, or events were lost:
    /// the watches must be re-established.
    Layout,
}

/// Which events matter, by watched directory: shared with notify's callback thread.
#[derive(Debug, Default, PartialEq, Eq)]
struct Filter {
    /// Watched directory (as given to notify, which reports events as `dir/name`) → the
    /// names in it that matter, each with whether it is the file itself (`true`) or a
    /// directory on the way to it (`false`).
    dirs: BTreeMap<PathBuf, BTreeMap<OsString, bool>>,
}

impl Filter {
    fn classify(&self, event: &notify::Result<Event>) -> Option<Signal> {
        let event = match event {
            // An error from the backend may mean lost events or a dead watch.
            Err(_) => return Some(Signal::Layout),
            Ok(event) if event.need_rescan() => return Some(Signal::Layout),
            Ok(event) => event,
        };
        // Opening and closing without writing, as the daemon's own reload does, is not a
        // change; counting it would make every reload trigger the next one.
        if matches!(event.kind, EventKind::Access(_)) {
            return None;
        }
        let mut signal = None;
        for path in &event.paths {
            if self.dirs.contains_key(path) {
                // The watched directory itself was deleted or moved.
                return Some(Signal::Layout);
            }
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            match self.dirs.get(dir).and_then(|names| names.get(name)) {
                Some(true) => signal = Some(Signal::File),
                Some(false) => return Some(Signal::Layout),
                None => {}
            }
        }
        signal
    }
}

/// The notify watcher and what it currently watches.
struct Watch {
    watcher: RecommendedWatcher,
    config: PathBuf,
    filter: Arc<Mutex<Filter>>,
    watched: Vec<PathBuf>,
}

impl Watch {
    /// Watches the directories the current layout calls for. With `force`, directories that
    /// are already watched are watched afresh, because the path may now name another inode
    /// (a directory moved away and another moved in).
    fn arm(&mut self, force: bool) -> io::Result<()> {
        // A directory can vanish between planning and watching; plan again a few times.
        let mut attempts = 3;
        loop {
            match self.try_arm(force) {
                Err(error) if attempts > 1 && error.kind() == io::ErrorKind::NotFound => {
                    attempts -= 1;
                }
                result => return result,
            }
        }
    }

    fn try_arm(&mut self, force: bool) -> io::Result<()> {
        let filter = plan(&self.config);
        let wanted: Vec<PathBuf> = filter.dirs.keys().cloned().collect();
        // Install the new filter first, so that events in a newly watched directory are not
        // dropped for want of an entry.
        *self.filter.lock().unwrap_or_else(PoisonError::into_inner) = filter;

        for dir in std::mem::take(&mut self.watched) {
            if force || !wanted.contains(&dir) {
                // Fails when notify already dropped the watch because the directory was
                // deleted; either way it is gone.
                let _ = self.watcher.unwatch(&dir);
            } else {
                self.watched.push(dir);
            }
        }
        for dir in wanted {
            if !self.watched.contains(&dir) {
                self.watcher
                    .watch(&dir, RecursiveMode::NonRecursive)
                    .map_err(into_io)?;
                self.watched.push(dir);
            }
        }
        Ok(())
    }
}

/// The directories to watch for `config` as the file system is now.
fn plan(config: &Path) -> Filter {
    let mut filter = Filter::default();
    // Directories that are one directory under two names (through a symlinked parent) are
    // watched once: inotify gives both the same watch, and reports it under one name only.
    let mut canonical: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    for target in link_chain(config) {
        let Some((dir, name, is_file)) = nearest_existing(&target) else {
            continue;
        };
        let key = fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        let dir = canonical.entry(key).or_insert(dir).clone();
        let entry = filter
            .dirs
            .entry(dir)
            .or_default()
            .entry(name)
            .or_insert(is_file);
        // A name that is the file for one target and a directory on the way for another
        // counts as a directory: layout changes re-plan the watches, file changes do not.
        *entry &= is_file;
    }
    filter
}

/// `config`, then each symbolic link target it leads to.
fn link_chain(config: &Path) -> Vec<PathBuf> {
    let mut chain = vec![config.to_path_buf()];
    let mut current = config.to_path_buf();
    for _ in 0..MAX_LINKS {
        let Ok(target) = fs::read_link(&current) else {
            break;
        };
        // A relative target is relative to the link's directory; `..` is left for the
        // kernel to resolve, as it does when the link is followed.
        let next = match current.parent() {
            Some(dir) => dir.join(target),
            None => target,
        };
        if chain.contains(&next) {
            break; // a loop
        }
        chain.push(next.clone());
        current = next;
    }
    chain
}

/// The deepest existing directory on the way to `target`, with the name in it that leads
/// to `target` and whether that name is `target` itself.
fn nearest_existing(target: &Path) -> Option<(PathBuf, OsString, bool)> {
    let mut name = target.file_name()?.to_owned();
    let mut is_file = true;
    for dir in target.parent()?.ancestors() {
        if dir.is_dir() {
            return Some((dir.to_path_buf(), name, is_file));
        }
        name = dir.file_name()?.to_owned();
        is_file = false;
    }
    None
}

/// Waits for events to pause, re-arms the watches if needed, and notifies; ends when the
/// receiver of notifications is dropped.
async fn debounce(
    mut watch: Watch,
    mut events: mpsc::UnboundedReceiver<Signal>,
    notifications: mpsc::Sender<()>,
) {
    loop {
        let first = tokio::select! {
            signal = events.recv() => signal,
            () = notifications.closed() => return,
        };
        // `None` cannot happen while `watch` (which holds the sender) is alive.
        let Some(first) = first else { return };
        let mut layout_changed = first == Signal::Layout;
        let give_up_waiting = Instant::now() + MAX_DELAY;
        loop {
            let deadline = (Instant::now() + QUIET).min(give_up_waiting);
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(signal)) => layout_changed |= signal == Signal::Layout,
                Ok(None) => return,
                Err(_quiet) => break,
            }
        }
        // Re-planning is a few `stat`s, cheap enough to do every time: it also catches the
        // config symlink being pointed elsewhere, which shows only as a file event.
        if let Err(error) = watch.arm(layout_changed) {
            tracing::warn!(
                path = %watch.config.display(),
                %error,
                "cannot watch the configuration file's directory; changes may go unnoticed"
            );
        }
        // After re-arming, so that a change made before the new watches existed is still
        // picked up by the reload this triggers.
        if let Err(mpsc::error::TrySendError::Closed(())) = notifications.try_send(()) {
            return;
        }
    }
}

fn into_io(error: notify::Error) -> io::Error {
    let paths = error.paths.clone();
    let with_path = |kind: io::ErrorKind, message: String| match paths.first() {
        Some(path) => io::Error::new(kind, format!("{}: {message}", path.display())),
        None => io::Error::new(kind, message),
    };
    match error.kind {
        notify::ErrorKind::Io(io) => with_path(io.kind(), io.to_string()),
        notify::ErrorKind::PathNotFound => {
            with_path(io::ErrorKind::NotFound, "no such directory".into())
        }
        notify::ErrorKind::MaxFilesWatch => with_path(
            io::ErrorKind::QuotaExceeded,
            "the limit on inotify watches is reached (fs.inotify.max_user_watches)".into(),
        ),
        other => with_path(io::ErrorKind::Other, format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind};
    use tokio::time::timeout;

    use super::*;

    /// Generous, because the CI machine may be busy; only reached when a test fails.
    const WAIT: Duration = Duration::from_secs(10);
    /// How long "nothing arrives" is checked: well past QUIET.
    const SILENCE: Duration = Duration::from_millis(700);

    async fn next(rx: &mut mpsc::Receiver<()>) {
        match timeout(WAIT, rx.recv()).await {
            Ok(Some(())) => {}
            Ok(None) => panic!("the watcher stopped"),
            Err(_) => panic!("no notification within {WAIT:?}"),
        }
    }

    async fn silent(rx: &mut mpsc::Receiver<()>) {
        if let Ok(got) = timeout(SILENCE, rx.recv()).await {
            panic!("expected no notification, got {got:?}");
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        config: PathBuf,
    }

    fn fixture(existing: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let config = root.join("config.toml");
        if existing {
            fs::write(&config, "[accounts]\n").unwrap();
        }
        Fixture {
            _dir: dir,
            root,
            config,
        }
    }

    #[tokio::test]
    async fn a_write_notifies() {
        let f = fixture(true);
        let (_watcher, mut rx) = watch_file(&f.config).unwrap();
        fs::write(&f.config, "[defaults]\n").unwrap();
        next(&mut rx).await;
    }

    #[tokio::test]
    async fn a_rename_over_the_file_notifies() {
        let f = fixture(true);
        let (_watcher, mut rx) = watch_file(&f.config).unwrap();
        let temp = f.root.join(".config.toml.tmp");
        fs::write(&temp, "[defaults]\n").unwrap();
        fs::rename(&temp, &f.config).unwrap();
        next(&mut rx).await;
        // And the watch survives the replacement.
        fs::write(&f.config, "[accounts]\n").unwrap();
        next(&mut rx).await;
    }

    #[tokio::test]
    async fn delete_then_create_notifies_each_time() {
        let f = fixture(true);
        let (_watcher, mut rx) = watch_file(&f.config).unwrap();
        fs::remove_file(&f.config).unwrap();
        next(&mut rx).await;
        fs::write(&f.config, "[accounts]\n").unwrap();
        next(&mut rx).await;
    }

    #[tokio::test]
    async fn vim_style_backup_and_rewrite_notifies() {
        let f = fixture(true);
        let (_watcher, mut rx) = watch_file(&f.config).unwrap();
        let backup = f.root.join("config.toml~");
        fs::rename(&f.config, &backup).unwrap();
        fs::write(&f.config, "[defaults]\n").unwrap();
        fs::remove_file(&backup).unwrap();
        next(&mut rx).await;
        fs::write(&f.config, "[accounts]\n").unwrap();
        next(&mut rx).await;
    }

    // Multi-threaded, so that notifications are consumed while the writes go on: a slow
    // reader would see them merged by the channel even without debouncing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_writes_gives_one_notification() {
        let f = fixture(true);
        let (_watcher, mut rx) = watch_file(&f.config).unwrap();
        let config = f.config.clone();
        let writer = tokio::spawn(async move {
            // Spread over about 150 ms, as a tool writing in steps would; every gap is far
            // shorter than QUIET.
            for i in 0..30 {
                fs::write(&config, format!("# {i}\n")).unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let mut count = 0;
        // Count until the writer is done and nothing more has come for a while.
        loop {
            match timeout(SILENCE, rx.recv()).await {
                Ok(Some(())) => count += 1,
                Ok(None) => panic!("the watcher stopped"),
                Err(_) if writer.is_finished() => break,
                Err(_) => {}
            }
        }
        writer.await.unwrap();
        // Two only if the machine stalled the writer for longer than QUIET.
        assert!((1..=2).contains(&count), "{count} notifications");
    }

    #[tokio::test]
    async fn other_files_and_reads_do_not_notify() {
        let f = fixture(true);
        let (_watcher, mut rx) = watch_file(&f.config).unwrap();
        fs::write(f.root.join("other.toml"), "x").unwrap();
        fs::write(f.root.join("config.toml.bak"), "x").unwrap();
        fs::rename(f.root.join("other.toml"), f.root.join("other2.toml")).unwrap();
        fs::create_dir(f.root.join("sub")).unwrap();
        fs::write(f.root.join("sub").join("config.toml"), "x").unwrap();
        // The daemon's own reload opens and reads the file.
        fs::read(&f.config).unwrap();
        silent(&mut rx).await;
        // The watch was live all along.
        fs::write(&f.config, "[defaults]\n").unwrap();
        next(&mut rx).await;
    }

    #[tokio::test]
    async fn a_file_that_does_not_exist_yet() {
        let f = fixture(false);
        let (_watcher, mut rx) = watch_file(&f.config).unwrap();
        fs::write(&f.config, "[accounts]\n").unwrap();
        next(&mut rx).await;
    }

    #[tokio::test]
    async fn directories_that_do_not_exist_yet() {
        let f = fixture(false);
        let config = f.root.join("a").join("b").join("config.toml");
        let (_watcher, mut rx) = watch_file(&config).unwrap();
        // Unrelated files next to the missing directory are ignored.
        fs::write(f.root.join("noise"), "x").unwrap();
        silent(&mut rx).await;

        fs::create_dir_all(config.parent().unwrap()).unwrap();
        fs::write(&config, "[accounts]\n").unwrap();
        next(&mut rx).await;
        // The watch has moved down to the new directory.
        fs::write(&config, "[defaults]\n").unwrap();
        next(&mut rx).await;
        fs::write(config.with_file_name("other"), "x").unwrap();
        silent(&mut rx).await;
    }

    #[tokio::test]
    async fn the_directory_deleted_and_recreated() {
        let f = fixture(false);
        let dir = f.root.join("samld");
        let config = dir.join("config.toml");
        fs::create_dir(&dir).unwrap();
        fs::write(&config, "[accounts]\n").unwrap();
        let (_watcher, mut rx) = watch_file(&config).unwrap();

        fs::remove_dir_all(&dir).unwrap();
        next(&mut rx).await;
        fs::create_dir(&dir).unwrap();
        next(&mut rx).await;
        fs::write(&config, "[defaults]\n").unwrap();
        next(&mut rx).await;
    }

    #[tokio::test]
    async fn a_directory_replaced_by_another_one() {
        let f = fixture(false);
        let dir = f.root.join("samld");
        let config = dir.join("config.toml");
        fs::create_dir(&dir).unwrap();
        let (_watcher, mut rx) = watch_file(&config).unwrap();

        let staged = f.root.join("staged");
        fs::create_dir(&staged).unwrap();
        fs::rename(&dir, f.root.join("old")).unwrap();
        fs::rename(&staged, &dir).unwrap();
        next(&mut rx).await;
        // The watch follows the path, not the directory that moved away.
        fs::write(&config, "[accounts]\n").unwrap();
        next(&mut rx).await;
        fs::write(f.root.join("old").join("config.toml"), "x").unwrap();
        silent(&mut rx).await;
    }

    #[tokio::test]
    async fn edits_through_a_symlink_are_seen() {
        let f = fixture(false);
        let dotfiles = f.root.join("dotfiles");
        fs::create_dir(&dotfiles).unwrap();
        let real = dotfiles.join("samld.toml");
        fs::write(&real, "[accounts]\n").unwrap();
        let config_dir = f.root.join("config");
        fs::create_dir(&config_dir).unwrap();
        let config = config_dir.join("config.toml");
        symlink("../dotfiles/samld.toml", &config).unwrap();
        let (_watcher, mut rx) = watch_file(&config).unwrap();

        fs::write(&real, "[defaults]\n").unwrap();
        next(&mut rx).await;
        fs::write(dotfiles.join("unrelated"), "x").unwrap();
        silent(&mut rx).await;

        // Pointing the link elsewhere is a change, and the new target is watched.
        let other = f.root.join("elsewhere.toml");
        fs::write(&other, "[accounts]\n").unwrap();
        let link_temp = config_dir.join("link.tmp");
        symlink(&other, &link_temp).unwrap();
        fs::rename(&link_temp, &config).unwrap();
        next(&mut rx).await;
        fs::write(&other, "[defaults]\n").unwrap();
        next(&mut rx).await;
    }

    #[tokio::test]
    async fn dropping_the_watcher_closes_the_channel() {
        let f = fixture(true);
        let (watcher, mut rx) = watch_file(&f.config).unwrap();
        drop(watcher);
        assert_eq!(timeout(WAIT, rx.recv()).await, Ok(None));
    }

    #[test]
    fn classify_filters_by_name_and_kind() {
        let dir = PathBuf::from("/home/a/.config/samld");
        let mut filter = Filter::default();
        filter.dirs.insert(
            dir.clone(),
            BTreeMap::from([(OsString::from("config.toml"), true)]),
        );
        filter.dirs.insert(
            PathBuf::from("/home/a"),
            BTreeMap::from([(OsString::from("dotfiles"), false)]),
        );
        let event = |kind: EventKind, path: &Path| Ok(Event::new(kind).add_path(path.into()));
        let config = dir.join("config.toml");
        let modify = EventKind::Modify(ModifyKind::Any);

        let read = EventKind::Access(AccessKind::Close(AccessMode::Read));
        let other = dir.join("other");
        // (event kind, its path, the signal it gives)
        let cases = [
            (modify, config.as_path(), Some(Signal::File)),
            (
                EventKind::Remove(RemoveKind::File),
                config.as_path(),
                Some(Signal::File),
            ),
            (read, config.as_path(), None),
            (modify, other.as_path(), None),
            (modify, Path::new("/home/a/config.toml"), None),
            (
                EventKind::Create(CreateKind::Folder),
                Path::new("/home/a/dotfiles"),
                Some(Signal::Layout),
            ),
            (
                EventKind::Remove(RemoveKind::Folder),
                dir.as_path(),
                Some(Signal::Layout),
            ),
        ];
        for (kind, path, want) in cases {
            assert_eq!(
                filter.classify(&event(kind, path)),
                want,
                "{kind:?} {path:?}"
            );
        }
        let rescan = Ok(Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan));
        assert_eq!(filter.classify(&rescan), Some(Signal::Layout));
        assert_eq!(
            filter.classify(&Err(notify::Error::generic("boom"))),
            Some(Signal::Layout)
        );
    }

    #[test]
    fn plan_watches_the_nearest_existing_directory() {
        let f = fixture(false);
        let config = f.root.join("a").join("b").join("config.toml");
        let expected = |dir: &Path, name: &str, is_file: bool| Filter {
            dirs: BTreeMap::from([(
                dir.to_path_buf(),
                BTreeMap::from([(OsString::from(name), is_file)]),
            )]),
        };
        assert_eq!(plan(&config), expected(&f.root, "a", false));
        fs::create_dir(f.root.join("a")).unwrap();
        assert_eq!(plan(&config), expected(&f.root.join("a"), "b", false));
        fs::create_dir(f.root.join("a").join("b")).unwrap();
        assert_eq!(
            plan(&config),
            expected(&f.root.join("a").join("b"), "config.toml", true)
        );
    }

    #[test]
    fn plan_follows_symlinks_and_merges_one_directory() {
        let f = fixture(false);
        let config = f.root.join("config.toml");
        symlink("real.toml", &config).unwrap();
        let filter = plan(&config);
        assert_eq!(
            filter.dirs,
            BTreeMap::from([(
                f.root.clone(),
                BTreeMap::from([
                    (OsString::from("config.toml"), true),
                    (OsString::from("real.toml"), true),
                ])
            )])
        );
        // A link loop ends.
        let a = f.root.join("loop-a");
        symlink("loop-b", &a).unwrap();
        symlink("loop-a", f.root.join("loop-b")).unwrap();
        assert_eq!(link_chain(&a).len(), 2);
    }
}
