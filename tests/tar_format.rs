//! The `tar` chunk format against real tar writers and readers: archives
//! made by GNU tar and by Python's `tarfile` (which the 0.0.x reference used
//! to write and read chunks) go through `filebus_core::tar::parse`, and what
//! `filebus_core::tar` encodes comes out of `tar -xOf F from_server`, Python's
//! `tarfile` and the `tar` crate intact.
//!
//! These tests need GNU `tar` and `python3` on the `PATH`; where one is
//! missing they fail, naming it.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use filebus_core::tar::{
    ChunkStamp, TarChunk, TarError, encode, encode_header, parse, parse_bytes,
};

/// Content that shows truncation, shifting and padding errors: not a
/// multiple of the block size, every byte value, no run of zeros.
fn content() -> Vec<u8> {
    (0..1300u32).map(|i| (i % 255 + 1) as u8).collect()
}

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("file written");
        path
    }
}

/// Runs `program` with `args` in `dir`; fails the test, naming the program,
/// if it cannot be run (the tests need GNU tar and python3).
fn run(dir: &Path, program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run {program}, which the tar format tests need (GNU tar and python3 \
                 on the PATH): {error}"
            )
        })
}

fn succeeded(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Parses the archive at `path` as the consumer will: headers through
/// `pread`, content by offset.
fn parse_file(path: &Path) -> Result<(TarChunk, Vec<u8>), TarError> {
    let mut file = File::open(path).expect("archive opened");
    let len = file.metadata().expect("archive stat").len();
    let chunk = parse(&file, len)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).expect("archive read");
    let content = bytes[chunk.content_offset as usize..][..chunk.content_len as usize].to_vec();
    Ok((chunk, content))
}

/// Makes `from_server` holding `content()` in a fresh directory and archives
/// it with GNU tar `--format=FORMAT`.
fn gnu_tar_archive(format: &str) -> (Dir, PathBuf) {
    let dir = Dir::new();
    dir.write("from_server", &content());
    let output = run(
        dir.dir.path(),
        "tar",
        &[
            &format!("--format={format}"),
            "-cf",
            "chunk.tar",
            "from_server",
        ],
    );
    succeeded(&output, "tar -c");
    let path = dir.path("chunk.tar");
    (dir, path)
}

#[test]
fn reads_every_gnu_tar_format() {
    for format in ["gnu", "oldgnu", "ustar", "posix", "v7"] {
        let (_dir, path) = gnu_tar_archive(format);
        let (chunk, got) =
            parse_file(&path).unwrap_or_else(|error| panic!("--format={format}: {error}"));
        assert_eq!(got, content(), "--format={format}");
        assert_eq!(chunk.stamp, ChunkStamp::default());
    }
}

#[test]
fn reads_a_posix_archive_with_a_stamp_written_by_gnu_tar() {
    let dir = Dir::new();
    dir.write("from_server", &content());
    let output = run(
        dir.dir.path(),
        "tar",
        &[
            "--format=posix",
            "--pax-option=FILEBUS.seq:=7,FILEBUS.time:=1700000000000000001",
            "-cf",
            "chunk.tar",
            "from_server",
        ],
    );
    succeeded(&output, "tar -c");
    let (chunk, got) = parse_file(&dir.path("chunk.tar")).expect("accepted");
    assert_eq!(got, content());
    assert_eq!(
        chunk.stamp,
        ChunkStamp {
            sequence: Some(7),
            published_ns: Some(1_700_000_000_000_000_001),
        }
    );
}

#[test]
fn rejects_gnu_tar_archives_that_are_not_one_regular_from_server() {
    let dir = Dir::new();
    dir.write("from_server", b"x");
    dir.write("other", b"y");
    std::fs::create_dir(dir.path("sub")).expect("directory");
    std::os::unix::fs::symlink("other", dir.path("link")).expect("symlink");
    let cases: [(&[&str], &str); 4] = [
        (
            &["-cf", "a.tar", "other"],
            "the member `other` at offset 0 is not `from_server`",
        ),
        (&["-cf", "a.tar", "./from_server"], "`./from_server`"),
        (
            &["-cf", "a.tar", "from_server", "other"],
            "data follows the member",
        ),
        (
            &["--transform=s/link/from_server/", "-cf", "a.tar", "link"],
            "is a symbolic link, not a regular file",
        ),
    ];
    for (args, expected) in cases {
        let output = run(dir.dir.path(), "tar", args);
        succeeded(&output, "tar -c");
        let error = parse_file(&dir.path("a.tar")).expect_err("rejected");
        assert!(error.to_string().contains(expected), "{args:?}: {error}");
    }
    // A compressed archive is not a tar archive (the 0.0.x reader would
    // have decompressed it; filebus never writes one).
    let mut state = 1u32;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (state >> 16) as u8
        })
        .collect();
    dir.write("from_server", &noise);
    let output = run(dir.dir.path(), "tar", &["-czf", "a.tar", "from_server"]);
    succeeded(&output, "tar -cz");
    let error = parse_file(&dir.path("a.tar")).expect_err("compressed");
    assert!(
        matches!(
            error,
            TarError::BadNumber { .. } | TarError::BadChecksum { .. }
        ),
        "{error}"
    );
}

/// Runs a Python script with `tarfile` imported and `path` as `sys.argv[1]`.
fn python(dir: &Dir, script: &str, path: &Path) -> Output {
    let program = format!("import sys, io, tarfile\n{script}");
    let path = path.to_str().expect("temporary paths are UTF-8");
    let output = run(dir.dir.path(), "python3", &["-c", &program, path]);
    succeeded(&output, "python3");
    output
}

/// Python writes `content()` as member `name` of an archive in `format`,
/// optionally with a size and PAX records.
fn python_archive(dir: &Dir, format: &str, name: &str, extra: &str) -> PathBuf {
    let path = dir.path("chunk.tar");
    let script = format!(
        "data = bytes(i % 255 + 1 for i in range(1300))\n\
         with tarfile.open(sys.argv[1], 'w', format=tarfile.{format}) as tar:\n\
         \x20   info = tarfile.TarInfo({name:?})\n\
         \x20   info.size = len(data)\n\
         \x20   {extra}\n\
         \x20   tar.addfile(info, io.BytesIO(data))\n"
    );
    python(dir, &script, &path);
    path
}

#[test]
fn reads_every_python_tarfile_format() {
    for format in ["USTAR_FORMAT", "GNU_FORMAT", "PAX_FORMAT"] {
        let dir = Dir::new();
        let path = python_archive(&dir, format, "from_server", "pass");
        let (chunk, got) = parse_file(&path).unwrap_or_else(|error| panic!("{format}: {error}"));
        assert_eq!(got, content(), "{format}");
        // Python pads archives to a 10240-byte record.
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 10240);
        assert_eq!(chunk.content_offset, 512);
    }
}

#[test]
fn reads_python_pax_records() {
    let dir = Dir::new();
    let extra = "info.pax_headers = {'FILEBUS.seq': '9', 'comment': 'caf\\u00e9'}";
    let path = python_archive(&dir, "PAX_FORMAT", "from_server", extra);
    let (chunk, got) = parse_file(&path).expect("accepted");
    assert_eq!(got, content());
    assert_eq!(chunk.stamp.sequence, Some(9));
    assert_eq!(chunk.stamp.published_ns, None);
}

#[test]
fn reads_long_names_from_python_gnu_and_pax_archives() {
    // The name decides acceptance; a long one shows the extended header was
    // read (GNU `L` record, PAX `path` record).
    let long = "d/".repeat(60) + "from_server";
    for format in ["GNU_FORMAT", "PAX_FORMAT"] {
        let dir = Dir::new();
        let path = python_archive(&dir, format, &long, "pass");
        let error = parse_file(&path).expect_err("long name");
        let TarError::WrongName { name, .. } = error else {
            panic!("{format}: {error}");
        };
        assert_eq!(name, long.as_bytes(), "{format}");
    }
}

#[test]
fn reads_sizes_beyond_8_gib_from_python_gnu_and_pax_headers() {
    // Base-256 (GNU) or a PAX `size` record: only the headers are written;
    // the file is sparse up to the announced end.
    let size: u64 = 9 << 30;
    for format in ["GNU_FORMAT", "PAX_FORMAT"] {
        let dir = Dir::new();
        let path = dir.path("chunk.tar");
        let script = format!(
            "info = tarfile.TarInfo('from_server')\n\
             info.size = {size}\n\
             open(sys.argv[1], 'wb').write(info.tobuf(tarfile.{format}))\n"
        );
        python(&dir, &script, &path);
        let file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .expect("archive opened");
        let header_len = file.metadata().expect("stat").len();
        file.set_len(header_len + size + 1024)
            .expect("sparse content");
        let chunk = parse(&file, header_len + size + 1024).expect(format);
        assert_eq!(chunk.content_len, size, "{format}");
        assert_eq!(chunk.content_offset, header_len, "{format}");
    }
}

#[test]
fn rejects_a_python_directory_named_from_server() {
    // Python writes a directory's name with a trailing slash.
    let dir = Dir::new();
    let extra = "info.type = tarfile.DIRTYPE; info.size = 0; data = b''";
    let path = python_archive(&dir, "PAX_FORMAT", "from_server", extra);
    let error = parse_file(&path).expect_err("directory");
    assert!(error.to_string().contains("`from_server/`"), "{error}");
}

fn stamp() -> ChunkStamp {
    ChunkStamp {
        sequence: Some(12345),
        published_ns: Some(1_700_000_000_123_456_789),
    }
}

#[test]
fn gnu_tar_extracts_what_we_encode() {
    for stamp in [ChunkStamp::default(), stamp()] {
        let dir = Dir::new();
        let path = dir.write("chunk.tar", &encode(&content(), &stamp, 1_700_000_000));
        let output = run(
            dir.dir.path(),
            "tar",
            &["-xOf", path.to_str().expect("UTF-8"), "from_server"],
        );
        succeeded(&output, "tar -xO");
        assert_eq!(output.stdout, content());
        let listing = run(
            dir.dir.path(),
            "tar",
            &[
                "--warning=no-unknown-keyword",
                "-tvf",
                path.to_str().expect("UTF-8"),
            ],
        );
        succeeded(&listing, "tar -tv");
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(listing.starts_with("-rw-r--r-- 0/0 "), "{listing}");
        assert!(listing.contains(" 1300 2023-11-14 "), "{listing}");
        assert_eq!(listing.lines().count(), 1, "{listing}");
    }
}

#[test]
fn python_tarfile_reads_what_we_encode() {
    let dir = Dir::new();
    let path = dir.write("chunk.tar", &encode(&content(), &stamp(), 0));
    // As the 0.0.x consumer reads a chunk: every member named from_server.
    let script = "with tarfile.open(sys.argv[1], mode='r') as tar:\n\
                  \x20   members = tar.getmembers()\n\
                  \x20   assert [m.name for m in members] == ['from_server'], members\n\
                  \x20   info = members[0]\n\
                  \x20   assert info.isreg() and info.mode == 0o644, info\n\
                  \x20   assert info.pax_headers['FILEBUS.seq'] == '12345'\n\
                  \x20   sys.stdout.buffer.write(tar.extractfile(info).read())\n";
    let output = python(&dir, script, &path);
    assert_eq!(output.stdout, content());
}

#[test]
fn the_tar_crate_reads_what_we_encode() {
    for stamp in [ChunkStamp::default(), stamp()] {
        let bytes = encode(&content(), &stamp, 0);
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut entries = archive.entries().expect("entries");
        let mut entry = entries.next().expect("one member").expect("readable");
        assert_eq!(entry.path_bytes().as_ref(), b"from_server");
        assert_eq!(
            entry.header().entry_type(),
            tar::EntryType::Regular,
            "regular file"
        );
        let mut got = Vec::new();
        entry.read_to_end(&mut got).expect("content");
        assert_eq!(got, content());
        if stamp.sequence.is_some() {
            let records: Vec<(String, String)> = entry
                .pax_extensions()
                .expect("pax")
                .expect("present")
                .map(|record| {
                    let record = record.expect("well formed");
                    (
                        record.key().expect("UTF-8").to_owned(),
                        record.value().expect("UTF-8").to_owned(),
                    )
                })
                .collect();
            assert_eq!(
                records,
                [
                    ("FILEBUS.seq".to_owned(), "12345".to_owned()),
                    ("FILEBUS.time".to_owned(), "1700000000123456789".to_owned()),
                ]
            );
        }
        drop(entry);
        assert!(entries.next().is_none(), "a single member");
    }
}

#[test]
fn header_content_and_trailer_written_in_pieces_parse_as_one_archive() {
    // The producer writes the three parts to the chunk's file in turn.
    let dir = Dir::new();
    let path = dir.path("chunk");
    let data = content();
    let mut file = File::create(&path).expect("created");
    file.write_all(&encode_header(data.len() as u64, &stamp(), 0))
        .expect("header");
    file.write_all(&data).expect("content");
    file.write_all(&filebus_core::tar::trailer(data.len() as u64))
        .expect("trailer");
    drop(file);
    let (chunk, got) = parse_file(&path).expect("parses");
    assert_eq!(got, data);
    assert_eq!(chunk.stamp, stamp());
    assert_eq!(
        std::fs::read(&path).expect("read"),
        encode(&data, &stamp(), 0)
    );
    assert!(parse_bytes(&std::fs::read(&path).expect("read")).is_ok());
}
