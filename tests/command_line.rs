//! Bad command lines and bad bus paths: one line on stderr naming the
//! problem (and, for an option on the wrong side of the subcommand, where it
//! belongs), a non-zero exit, nothing allocated or published, and existing
//! data untouched; the reference's own `--impl` accepted.

use std::process::{Command, ExitStatus};

use crate::util::{Scratch, assert_one_line_error, filebus, filebus_bin, names_in, run};

/// Runs our binary with `args` and no bus, returning (status, stderr).
fn run_args(args: &[&str]) -> (ExitStatus, String) {
    let output = Command::new(filebus_bin())
        .args(args)
        .output()
        .expect("cannot run filebus");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn missing_filename_is_a_usage_error() {
    let (code, stderr) = run_args(&["consumer"]);
    assert_one_line_error(code, &stderr, Some(2), &["--filename"], "");
}

#[test]
fn missing_subcommand_is_a_usage_error() {
    let (code, stderr) = run_args(&["--filename", "/tmp/nowhere-bus"]);
    assert_one_line_error(code, &stderr, Some(2), &["subcommand"], "");
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let (code, stderr) = run_args(&["--filename", "/tmp/nowhere-bus", "publisher"]);
    assert_one_line_error(code, &stderr, Some(2), &["publisher"], "");
}

#[test]
fn unknown_option_is_a_usage_error() {
    let (code, stderr) = run_args(&["--filename", "/tmp/nowhere-bus", "--colour", "consumer"]);
    assert_one_line_error(code, &stderr, Some(2), &["--colour"], "");
}

#[test]
fn bad_block_sizes_are_usage_errors() {
    for bad in ["0", "-1", "4k", "1.5", ""] {
        let (code, stderr) = run_args(&[
            "--filename",
            "/tmp/nowhere-bus",
            "--block-size",
            bad,
            "consumer",
        ]);
        assert_one_line_error(code, &stderr, Some(2), &["block size"], "");
    }
}

#[test]
fn bad_sleep_intervals_are_usage_errors() {
    for bad in ["-0.1", "NaN", "inf", "-inf", "soon"] {
        let (code, stderr) = run_args(&[
            "--filename",
            "/tmp/nowhere-bus",
            "--sleep-interval",
            bad,
            "consumer",
        ]);
        assert_one_line_error(code, &stderr, Some(2), &["sleep interval"], "");
    }
}

#[test]
fn global_options_are_accepted_after_the_subcommand() {
    let scratch = Scratch::new();
    let bus = scratch.bus();
    let output = Command::new(filebus_bin())
        .arg("producer")
        .arg("--filename")
        .arg(&bus)
        .args([
            "--block-size",
            "3",
            "--sleep-interval",
            "0.05",
            "--lossless",
            "-v",
            "--blocking-read",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("cannot run filebus");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Lossless at end of input: the empty end-of-stream chunk is published.
    assert_eq!(std::fs::read(&bus).expect("no chunk published"), b"");
}

#[test]
fn help_and_version_succeed() {
    let help = Command::new(filebus_bin())
        .arg("--help")
        .output()
        .expect("cannot run filebus");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--back-pressure",
        "--lossless",
        "--block-size",
        "--no-file-monitoring",
        "--filename",
        "--sleep-interval",
        "--verbose",
    ] {
        assert!(text.contains(option), "--help does not mention {option}");
    }
    let version = Command::new(filebus_bin())
        .arg("--version")
        .output()
        .expect("cannot run filebus");
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("filebus "));
}

#[test]
fn a_directory_at_the_bus_path_is_refused() {
    let scratch = Scratch::new();
    std::fs::create_dir(scratch.bus()).expect("cannot create directory");
    for side in ["producer", "consumer"] {
        let finished = run(filebus(&scratch.bus(), &[side]), b"data");
        assert_one_line_error(
            finished.status,
            &finished.stderr,
            Some(1),
            &["is a directory"],
            "",
        );
    }
    assert!(scratch.bus().is_dir(), "the directory was disturbed");
}

#[test]
fn a_fifo_at_the_bus_path_is_refused() {
    let scratch = Scratch::new();
    let status = Command::new("mkfifo")
        .arg(scratch.bus())
        .status()
        .expect("cannot run mkfifo");
    assert!(status.success());
    for side in ["producer", "consumer"] {
        let finished = run(filebus(&scratch.bus(), &[side]), b"data");
        assert_one_line_error(finished.status, &finished.stderr, Some(1), &["FIFO"], "");
    }
}

#[test]
fn a_device_at_the_bus_path_is_refused() {
    for side in ["producer", "consumer"] {
        let finished = run(filebus(std::path::Path::new("/dev/null"), &[side]), b"data");
        assert_one_line_error(finished.status, &finished.stderr, Some(1), &["device"], "");
    }
}

#[test]
fn a_missing_parent_directory_is_refused_not_created() {
    let scratch = Scratch::new();
    let bus = scratch.path("absent/bus");
    for side in ["producer", "consumer"] {
        let finished = run(filebus(&bus, &[side]), b"data");
        assert_one_line_error(
            finished.status,
            &finished.stderr,
            Some(1),
            &["does not exist"],
            "",
        );
    }
    assert!(
        !scratch.path("absent").exists(),
        "the directory was created"
    );
}

#[test]
fn a_path_ending_in_slash_is_refused() {
    let scratch = Scratch::new();
    let bus = format!("{}/", scratch.bus().display());
    let finished = run(filebus(std::path::Path::new(&bus), &["consumer"]), b"");
    assert_one_line_error(
        finished.status,
        &finished.stderr,
        Some(1),
        &["directory"],
        "",
    );
}

#[test]
fn an_absurd_block_size_is_refused_in_one_line_before_any_allocation() {
    let scratch = Scratch::new();
    for size in ["99999999999999", "1073741825", "99999999999999999999999"] {
        let finished = run(
            filebus(&scratch.bus(), &["--block-size", size, "producer"]),
            b"data\n",
        );
        assert_one_line_error(
            finished.status,
            &finished.stderr,
            Some(2),
            &["block size", "1073741824"],
            size,
        );
        assert!(
            !finished.stderr.contains("backtrace"),
            "{}",
            finished.stderr
        );
    }
    assert!(
        names_in(scratch.dir.path()).is_empty(),
        "something was created"
    );
    // The largest allowed size works, and allocates nothing up front.
    let finished = run(
        filebus(
            &scratch.bus(),
            &["--block-size", "1073741824", "producer", "--lines"],
        ),
        b"small\n",
    );
    finished.assert_success();
    assert_eq!(std::fs::read(scratch.bus()).expect("published"), b"small\n");
}

#[test]
fn a_bus_name_too_long_for_its_own_files_is_refused_before_publishing() {
    let scratch = Scratch::new();
    let bus = scratch.dir.path().join("b".repeat(250));
    let finished = run(filebus(&bus, &["producer"]), b"data\n");
    assert_one_line_error(
        finished.status,
        &finished.stderr,
        Some(1),
        &["250 bytes", "245"],
        "a 250-byte bus name",
    );
    assert!(
        names_in(scratch.dir.path()).is_empty(),
        "something was published"
    );
    // The longest name that leaves room (for `F.consumers`) works, publish
    // after publish.
    let bus = scratch.dir.path().join("b".repeat(245));
    for chunk in [b"one\n", b"two\n"] {
        run(filebus(&bus, &["producer"]), chunk).assert_success();
    }
    assert_eq!(std::fs::read(&bus).expect("published"), b"two\n");
}

#[test]
fn the_reference_impl_option_is_accepted() {
    let scratch = Scratch::new();
    // `--impl python` changes nothing.
    let finished = run(
        filebus(
            &scratch.bus(),
            &["--impl", "python", "--block-size", "10", "producer"],
        ),
        b"12345\n1234567\n",
    );
    finished.assert_success();
    assert_eq!(std::fs::read(scratch.bus()).expect("published"), b"567\n");
    // `--implementation bash` cuts chunks at newlines, as the bash variant.
    let finished = run(
        filebus(
            &scratch.bus(),
            &["--implementation", "bash", "--block-size", "10", "producer"],
        ),
        b"12345\n1234567\n",
    );
    finished.assert_success();
    assert_eq!(
        std::fs::read(scratch.bus()).expect("published"),
        b"1234567\n"
    );
    let finished = run(
        filebus(&scratch.bus(), &["--impl", "perl", "producer"]),
        b"",
    );
    assert_one_line_error(
        finished.status,
        &finished.stderr,
        Some(2),
        &["perl"],
        "--impl perl",
    );
}

#[test]
fn an_option_on_the_wrong_side_of_the_subcommand_says_where_it_belongs() {
    let scratch = Scratch::new();
    let bus = scratch.bus();
    let bus = bus.to_str().expect("a UTF-8 path");
    let cases: [(&[&str], &[&str]); 3] = [
        (
            &["--lines", "--filename", bus, "producer"],
            &["--lines", "filebus producer", "after"],
        ),
        (
            &["--stats", "--filename", bus, "consumer"],
            &["--stats", "filebus consumer", "after"],
        ),
        (
            &["--filename", bus, "producer", "--impl", "bash"],
            &["--impl", "before the subcommand"],
        ),
    ];
    for (args, needles) in cases {
        let finished = run(
            {
                let mut command = Command::new(filebus_bin());
                command.args(args);
                command
            },
            b"",
        );
        assert_one_line_error(
            finished.status,
            &finished.stderr,
            Some(2),
            needles,
            &args.join(" "),
        );
    }
    assert!(names_in(scratch.dir.path()).is_empty());
}
