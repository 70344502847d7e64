//! The history fuzz target's corpus (`fuzz/corpus/history`), replayed on
//! stable Rust through the target's own checks (`fuzz/properties/history.rs`).

include!("../fuzz/properties/history.rs");

#[test]
fn history_corpus_holds_its_invariants() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/history");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for path in files {
        let data = std::fs::read(&path).expect("cannot read a corpus file");
        let outcome = std::panic::catch_unwind(|| check_history(&data));
        assert!(outcome.is_ok(), "{} breaks an invariant", path.display());
    }
}
