//! `--format tar` through the real binary: archives `tar` reads, stamps in
//! PAX records, the member's content spliced out, garbage refused, and
//! interoperability with the 0.0.5 reference (which wrote tar chunks).

use std::process::Command;

use crate::util::{
    Running, Scratch, binary_data, command_for, filebus, reference_filebus_version, run, wait_until,
};

#[test]
fn a_tar_chunk_is_read_by_tar_and_carries_pax_stamps() {
    let scratch = Scratch::new();
    run(
        filebus(&scratch.bus(), &["--format", "tar", "producer"]),
        b"in a tar\n",
    )
    .assert_success();
    let output = Command::new("tar")
        .arg("-xOf")
        .arg(scratch.bus())
        .arg("from_server")
        .output()
        .expect("cannot run tar (GNU tar on the PATH), which this test needs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, b"in a tar\n");
    let script = "import sys, tarfile; m = tarfile.open(sys.argv[1]).getmember('from_server'); \
                  print(m.pax_headers['FILEBUS.seq'], int(m.pax_headers['FILEBUS.time']) > 0)";
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(scratch.bus())
        .output()
        .expect("cannot run python3 (on the PATH), which this test needs");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "1 True",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn lossless_tar_stream_arrives_byte_for_byte_and_emits_only_content() {
    let scratch = Scratch::new();
    let input = binary_data(3 << 20);
    let consumer = Running::start(
        filebus(
            &scratch.bus(),
            &[
                "--format",
                "tar",
                "--lossless",
                "-vvv",
                "consumer",
                "--stats",
            ],
        ),
        None,
    );
    run(
        filebus(
            &scratch.bus(),
            &[
                "--format",
                "tar",
                "--lossless",
                "--block-size",
                "65536",
                "producer",
            ],
        ),
        &input,
    )
    .assert_success();
    let finished = consumer.wait();
    finished.assert_success();
    assert!(finished.stdout == input, "output differs from input");
    assert!(
        finished.stderr.contains("output: splice"),
        "{}",
        finished.stderr
    );
    // 48 chunks and the end-of-stream marker, all stamped, none missed.
    assert!(
        finished
            .stderr
            .contains("stats: 49 chunks, 3145728 bytes emitted; 0 missed, 0 unknown"),
        "{}",
        finished.stderr
    );
}

#[test]
fn a_lossy_tar_consumer_skips_what_is_not_a_tar_chunk() {
    let scratch = Scratch::new();
    std::fs::write(scratch.bus(), b"this is not a tar archive").expect("write");
    let consumer = Running::consumer(&scratch.bus(), &["--format", "tar", "-v"]);
    wait_until("the warning", || {
        consumer.stderr().contains("is not a tar chunk")
    });
    run(
        filebus(&scratch.bus(), &["--format", "tar", "producer"]),
        b"good\n",
    )
    .assert_success();
    assert_eq!(consumer.wait_for_output(5), b"good\n");
    assert_eq!(
        consumer.stderr().lines().count(),
        1,
        "{}",
        consumer.stderr()
    );
}

#[test]
fn a_lossless_tar_consumer_refuses_a_bad_chunk_and_leaves_it() {
    let scratch = Scratch::new();
    let mut garbage = vec![0u8; 512];
    garbage[..11].copy_from_slice(b"from_server");
    std::fs::write(scratch.bus(), &garbage).expect("write");
    let finished = Running::consumer(&scratch.bus(), &["--format", "tar", "--lossless"]).wait();
    assert_eq!(finished.status.code(), Some(1), "{}", finished.stderr);
    assert_eq!(finished.stderr.lines().count(), 1, "{}", finished.stderr);
    assert!(
        finished.stderr.contains("is not a tar chunk"),
        "{}",
        finished.stderr
    );
    assert!(finished.stdout.is_empty());
    assert_eq!(std::fs::read(scratch.bus()).expect("still there"), garbage);
}

#[test]
fn the_0_0_5_reference_reads_our_tar_chunks_and_we_read_its() {
    let reference = reference_filebus_version("0.0.5");
    // Ours to theirs: the 0.0.5 consumer needs the bus to exist when it starts.
    let scratch = Scratch::new();
    run(
        filebus(&scratch.bus(), &["--format", "tar", "producer"]),
        b"ours 1\n",
    )
    .assert_success();
    let theirs = Running::start(
        command_for(
            &reference,
            &scratch.bus(),
            &["--sleep-interval", "0.02", "consumer"],
        ),
        None,
    );
    theirs.wait_for_output(7);
    run(
        filebus(&scratch.bus(), &["--format", "tar", "producer"]),
        b"ours 2\n",
    )
    .assert_success();
    assert_eq!(theirs.wait_for_output(14), b"ours 1\nours 2\n");
    drop(theirs);

    // Theirs to ours.
    let scratch = Scratch::new();
    let ours_tar = Running::consumer(&scratch.bus(), &["--format", "tar"]);
    for (index, text) in ["theirs 1\n", "theirs 2\n"].iter().enumerate() {
        run(
            command_for(
                &reference,
                &scratch.bus(),
                &["--sleep-interval", "0.02", "producer"],
            ),
            text.as_bytes(),
        )
        .assert_success();
        let expected = ["theirs 1\n", "theirs 2\n"][..=index].concat();
        assert_eq!(
            ours_tar.wait_for_output(expected.len()),
            expected.as_bytes()
        );
    }
}
