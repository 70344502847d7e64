//! Pipe sizes: the producer grows its input pipe to the block size once it
//! finds it full, and a consumer grows its output pipe to the largest chunk
//! it wrote, up to 1 MiB; a lone record or a small chunk leaves them as they
//! are.

use std::io::Write;
use std::process::Stdio;

use crate::util::{Running, Scratch, binary_data, filebus, put_chunk_by_hand};

/// The size of a pipe after the program at its other end started on it.
fn pipe_grows_to(pipe: &impl std::os::fd::AsRawFd, expected: usize, what: &str) {
    crate::util::wait_until(&format!("{what}: a pipe of {expected} bytes"), || {
        crate::util::pipe_capacity(pipe) == expected
    });
}

#[test]
fn the_producer_grows_its_input_pipe_to_the_block_size_once_it_finds_it_full() {
    // A lone record leaves the pipe as it is (default block size, 1 MiB).
    let scratch = Scratch::new();
    let mut producer = filebus(&scratch.bus(), &["producer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("cannot start the producer");
    let mut stdin = producer.stdin.take().expect("stdin was piped");
    let before = crate::util::pipe_capacity(&stdin);
    stdin
        .write_all(b"one record\n")
        .expect("the producer reads");
    crate::util::wait_until("the chunk", || scratch.bus().exists());
    assert_eq!(
        crate::util::pipe_capacity(&stdin),
        before,
        "a lone record grew the pipe"
    );
    drop(stdin);
    assert!(producer.wait().expect("cannot wait").success());

    // Bulk input: a lossless producer with no consumer yet stops reading once
    // its second chunk is full, the writer fills the pipe, and the first
    // read after a consumer took a chunk finds the pipe full.
    for (block_size, expected) in [("1048576", 1 << 20), ("262144", 256 << 10)] {
        let scratch = Scratch::new();
        let mut producer = filebus(
            &scratch.bus(),
            &["--lossless", "--block-size", block_size, "producer"],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("cannot start the producer");
        let mut stdin = producer.stdin.take().expect("stdin was piped");
        let watched = std::os::fd::AsFd::as_fd(&stdin)
            .try_clone_to_owned()
            .expect("cannot duplicate the pipe");
        let input = binary_data(4 << 20);
        let writer = {
            let input = input.clone();
            std::thread::spawn(move || stdin.write_all(&input).expect("the producer reads"))
        };
        crate::util::wait_until("the first chunk", || scratch.bus().exists());
        let consumer = Running::consumer(&scratch.bus(), &["--lossless"]);
        pipe_grows_to(&watched, expected, &format!("--block-size {block_size}"));
        writer.join().expect("the writer panicked");
        // Our copy of the pipe's end would keep the producer from its end.
        drop(watched);
        let finished = consumer.wait();
        finished.assert_success();
        assert!(
            finished.stdout == input,
            "--block-size {block_size}: output differs"
        );
        assert!(producer.wait().expect("cannot wait").success());
    }
}

#[test]
fn a_consumer_grows_its_output_pipe_to_the_largest_chunk_up_to_1_mib() {
    use std::io::Read;
    let scratch = Scratch::new();
    let mut consumer = Running::with_stdio(
        filebus(&scratch.bus(), &["--lossless", "consumer"]),
        Stdio::null(),
        Stdio::piped(),
    );
    let mut stdout = consumer.child.stdout.take().expect("stdout was piped");
    let default = crate::util::pipe_capacity(&stdout);
    // Chunks published by hand, each read whole before the next: a small one
    // leaves the pipe as it is, bigger ones grow it, up to 1 MiB.
    for (len, expected) in [
        (1000, default),
        (200 << 10, 256 << 10),
        (4 << 20, 1 << 20),
        (100 << 10, 1 << 20),
    ] {
        let chunk = binary_data(len);
        put_chunk_by_hand(&scratch.bus(), &chunk);
        let mut read = vec![0; len];
        stdout.read_exact(&mut read).expect("cannot read the chunk");
        assert!(read == chunk, "a chunk of {len} bytes came out changed");
        assert_eq!(
            crate::util::pipe_capacity(&stdout),
            expected,
            "after a chunk of {len} bytes"
        );
        crate::util::wait_until("the chunk to be taken", || !scratch.bus().exists());
    }
    put_chunk_by_hand(&scratch.bus(), b"");
    assert_eq!(consumer.wait_status().code(), Some(0));
}
