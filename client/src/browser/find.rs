//! Which browser to start: the account's `browser`, or the first Chromium-family browser in
//! the usual places of this OS.

use std::path::{Path, PathBuf};

/// Program names looked up in `PATH`, most common first.
const NAMES: &[&str] = &[
    "google-chrome",
    "google-chrome-stable",
    "chromium",
    "chromium-browser",
    "microsoft-edge",
    "microsoft-edge-stable",
    "brave-browser",
    "brave",
];

/// Where the browsers install themselves outside `PATH`.
#[cfg(not(target_os = "macos"))]
const INSTALLED: &[&str] = &[
    "/opt/google/chrome/chrome",
    "/usr/lib/chromium/chromium",
    "/snap/bin/chromium",
    "/opt/microsoft/msedge/msedge",
    "/opt/brave.com/brave/brave",
];

/// The app bundles' executables, under `/Applications` or `~/Applications`.
#[cfg(target_os = "macos")]
const INSTALLED: &[&str] = &[
    "Google Chrome.app/Contents/MacOS/Google Chrome",
    "Chromium.app/Contents/MacOS/Chromium",
    "Microsoft Edge.app/Contents/MacOS/Microsoft Edge",
    "Brave Browser.app/Contents/MacOS/Brave Browser",
];

/// The browser to start: `configured` (a path, or a name in `PATH`) when set, else the first
/// one found. The error says where samlctl looked.
pub fn find_browser(configured: Option<&str>) -> Result<PathBuf, String> {
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(configured) = configured {
        let found = if configured.contains('/') {
            Some(PathBuf::from(configured)).filter(|p| is_executable(p))
        } else {
            in_path(&path_dirs, configured)
        };
        return found.ok_or_else(|| {
            format!(
                "the account's browser = {configured:?} is not an executable file{}",
                if configured.contains('/') {
                    ""
                } else {
                    " found in PATH"
                }
            )
        });
    }
    if let Some(found) = NAMES.iter().find_map(|name| in_path(&path_dirs, name)) {
        return Ok(found);
    }
    let installed = installed_candidates();
    installed
        .iter()
        .find(|p| is_executable(p))
        .cloned()
        .ok_or_else(|| {
            format!(
                "no Chromium-family browser (Chrome, Chromium, Edge, Brave) was found: looked \
                 for {} in PATH and at {}; install one, or set browser = \"/path/to/browser\" \
                 for the account",
                NAMES.join(", "),
                installed
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn installed_candidates() -> Vec<PathBuf> {
    #[cfg(target_os = "macos")]
    {
        let mut roots = vec![PathBuf::from("/Applications")];
        if let Some(home) = std::env::var_os("HOME") {
            roots.push(PathBuf::from(home).join("Applications"));
        }
        roots
            .iter()
            .flat_map(|root| INSTALLED.iter().map(move |app| root.join(app)))
            .collect()
    }
    #[cfg(not(target_os = "macos"))]
    {
        INSTALLED.iter().map(PathBuf::from).collect()
    }
}

fn in_path(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter()
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
