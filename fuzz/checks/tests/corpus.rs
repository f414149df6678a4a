//! Every file of `fuzz/corpus/TARGET/` through its target's checks, on stable: the committed
//! seeds on a fresh clone, and whatever libFuzzer has grown the corpus to locally.

use std::collections::BTreeSet;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use samld_fuzz_checks::TARGETS;

fn fuzz_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/checks is in fuzz/")
}

#[test]
fn every_corpus_file_passes_its_targets_checks() {
    let mut failures = Vec::new();
    for (target, check) in TARGETS {
        let dir = fuzz_dir().join("corpus").join(target);
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{target}: no corpus at {}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .collect();
        // A target with nothing to run would pass without checking anything.
        assert!(!files.is_empty(), "{target}: {} is empty", dir.display());
        files.sort();
        for file in files {
            let data = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            // The panic's message goes to stderr through the default hook; the file is
            // named below, and the remaining files still run.
            if panic::catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "inputs that fail their checks: {failures:#?}"
    );
}

/// A new target in fuzz/fuzz_targets/ is covered here only once it is in `TARGETS`, and each
/// target must run the function of its name (not, say, a copy of the old logic).
#[test]
fn every_fuzz_target_calls_its_function_in_this_crate() {
    let dir = fuzz_dir().join("fuzz_targets");
    let mut on_disk = BTreeSet::new();
    for entry in fs::read_dir(&dir).expect("fuzz/fuzz_targets") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let name = path
            .file_stem()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        let source = fs::read_to_string(&path).expect("a target's source");
        let call = format!("samld_fuzz_checks::{name}(data)");
        assert!(
            source.contains(&call),
            "{}: does not call {call}",
            path.display()
        );
        on_disk.insert(name);
    }
    let listed: BTreeSet<String> = TARGETS.iter().map(|(name, _)| name.to_string()).collect();
    assert_eq!(on_disk, listed);
}
