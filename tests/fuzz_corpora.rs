//! The fuzz corpora, replayed on stable Rust: every file of
//! `fuzz/corpus/tar_parser` through the differential check of
//! `filebus_core::tar` against the `tar` crate, every file of
//! `fuzz/corpus/chunker` through the chunker properties, and every file of
//! `fuzz/corpus/protocol` through the protocol's invariants, and every file of
//! `fuzz/corpus/history` through those of reliable multicast. The checks are
//! the fuzz targets' own (`filebus-testkit`), so `cargo test` keeps what
//! fuzzing found from coming back.

use std::path::{Path, PathBuf};

use filebus_testkit::tar_agreement::oracle_view;
use filebus_testkit::{check_chunking, check_history, check_protocol, check_tar_agreement};

/// The files of `fuzz/corpus/<target>`, sorted.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

/// Runs `check` on every file of the corpus of `target`, naming the file
/// that fails.
fn replay(target: &str, check: fn(&[u8])) {
    for path in corpus(target) {
        let data = std::fs::read(&path).expect("a corpus file");
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            panic!("{}: {message}", path.display());
        }
    }
}

#[test]
fn tar_parser_corpus_agrees_with_the_tar_crate() {
    replay("tar_parser", check_tar_agreement);
}

#[test]
fn chunker_corpus_keeps_the_chunking_properties() {
    replay("chunker", check_chunking);
}

#[test]
fn protocol_corpus_holds_its_invariants() {
    replay("protocol", check_protocol);
}

#[test]
fn history_corpus_holds_its_invariants() {
    replay("history", check_history);
}

#[test]
fn our_own_archive_is_a_chunk_for_both_readers() {
    let bytes = filebus_core::tar::encode(b"x", &filebus_core::tar::ChunkStamp::default(), 0);
    let view = oracle_view(&bytes);
    assert_eq!(view.member.as_deref(), Some(b"x".as_slice()));
    assert!(view.rejection.is_none());
    check_tar_agreement(&bytes);
}
