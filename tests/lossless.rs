//! Lossless unicast (`--back-pressure`): every chunk is taken exactly once,
//! whole, in order, and no larger than the block size (1 MiB by default); an
//! empty chunk ends the stream; a lone record goes out at once.

use std::process::Stdio;

use crate::util::{
    Running, Scratch, binary_data, filebus, input_in, lone_records_come_out_at_once,
    numbered_records, parse_records, run, take_chunks_by_hand, wait_until,
};

/// Runs one lossless producer and one lossless consumer over `input`;
/// returns what the consumer wrote.
fn lossless_round_trip(input: &[u8], extra: &[&str]) -> Vec<u8> {
    let scratch = Scratch::new();
    let mut consumer_args = vec!["--lossless"];
    consumer_args.extend_from_slice(extra);
    let consumer = Running::consumer(&scratch.bus(), &consumer_args);
    let mut producer_args = vec!["--lossless"];
    producer_args.extend_from_slice(extra);
    producer_args.push("producer");
    run(filebus(&scratch.bus(), &producer_args), input).assert_success();
    let finished = consumer.wait();
    finished.assert_success();
    assert!(
        !scratch.bus().exists(),
        "the end-of-stream chunk was not deleted"
    );
    finished.stdout
}

#[test]
fn ten_mebibytes_of_binary_data_arrive_byte_for_byte() {
    let input = binary_data(10 << 20);
    assert!(input.contains(&0), "the data must contain NUL bytes");
    assert!(
        lossless_round_trip(&input, &[]) == input,
        "output differs from input"
    );
}

#[test]
fn large_blocks_arrive_byte_for_byte() {
    let input = binary_data(10 << 20);
    assert!(lossless_round_trip(&input, &["--block-size", "1048576"]) == input);
}

#[test]
fn empty_input_sends_only_the_end_of_stream_marker() {
    assert_eq!(lossless_round_trip(b"", &[]), b"");
}

#[test]
fn one_byte_arrives() {
    assert_eq!(lossless_round_trip(b"x", &[]), b"x");
}

#[test]
fn chunks_never_exceed_the_block_size_around_block_boundaries() {
    for (block_size, len) in [
        (64, 63),
        (64, 64),
        (64, 65),
        (4096, 4095),
        (4096, 4096),
        (4096, 4097),
        (1, 5),
    ] {
        let scratch = Scratch::new();
        let input = binary_data(len);
        let block = block_size.to_string();
        let producer = Running::start(
            filebus(
                &scratch.bus(),
                &["--lossless", "--block-size", &block, "producer"],
            ),
            Some(input.clone()),
        );
        let chunks = take_chunks_by_hand(&scratch.bus());
        producer.wait().assert_success();
        assert!(
            chunks.iter().all(|chunk| chunk.len() <= block_size),
            "a chunk exceeds {block_size} bytes"
        );
        assert_eq!(
            chunks.concat(),
            input,
            "block size {block_size}, {len} bytes"
        );
    }
}

#[test]
fn input_from_a_regular_file_is_cut_into_full_blocks() {
    let scratch = Scratch::new();
    let input = numbered_records(1000);
    let stdin = input_in(scratch.dir.path(), "input", &input);
    let mut command = filebus(
        &scratch.bus(),
        &["--lossless", "--block-size", "900", "producer"],
    );
    command
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("cannot start producer");
    let chunks = take_chunks_by_hand(&scratch.bus());
    assert!(child.wait().expect("wait").success());
    let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
    assert!(sizes.iter().all(|&size| size == 900), "sizes {sizes:?}");
    assert_eq!(chunks.concat(), input);
}

#[test]
fn producer_waits_while_a_chunk_is_untaken() {
    let scratch = Scratch::new();
    let input = numbered_records(300);
    let stdin = input_in(scratch.dir.path(), "input", &input);
    let mut command = filebus(
        &scratch.bus(),
        &["--lossless", "--block-size", "900", "producer"],
    );
    command.stdin(Stdio::from(stdin));
    let mut producer = Running::with_own_stdin(command);
    wait_until("the first chunk", || scratch.bus().exists());
    // Give a producer that ignores back pressure ample time to overwrite it.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(producer.is_running(), "the producer did not wait");
    assert_eq!(
        std::fs::read(scratch.bus()).expect("chunk"),
        input[..900],
        "the first chunk was overwritten"
    );
    let consumer = Running::consumer(&scratch.bus(), &["--lossless"]);
    assert_eq!(consumer.wait().assert_success().stdout, input);
    producer.wait().assert_success();
}

#[test]
fn several_consumers_share_the_stream_each_chunk_exactly_once() {
    let scratch = Scratch::new();
    let input = numbered_records(20_000);
    let consumers: Vec<Running> = (0..3)
        .map(|_| Running::consumer(&scratch.bus(), &["--lossless", "--block-size", "900"]))
        .collect();
    let stdin = input_in(scratch.dir.path(), "input", &input);
    let mut command = filebus(
        &scratch.bus(),
        &["--lossless", "--block-size", "900", "producer"],
    );
    command.stdin(Stdio::from(stdin));
    Running::with_own_stdin(command).wait().assert_success();
    // The end-of-stream marker ends one consumer; the others wait for more.
    wait_until("the end-of-stream marker to be taken", || {
        !scratch.bus().exists()
    });
    let mut records = Vec::new();
    let mut ended = 0;
    for mut consumer in consumers {
        let finished = if consumer.is_running() {
            consumer.kill()
        } else {
            ended += 1;
            let finished = consumer.wait();
            finished.assert_success();
            finished
        };
        let own = parse_records(&finished.stdout);
        assert!(
            own.windows(2).all(|pair| pair[0] < pair[1]),
            "a consumer saw records out of order"
        );
        records.extend(own);
    }
    assert_eq!(
        ended, 1,
        "exactly one consumer takes the end-of-stream marker"
    );
    records.sort_unstable();
    assert!(
        records == (0..20_000).collect::<Vec<_>>(),
        "records lost or duplicated ({} records)",
        records.len()
    );
}

#[test]
fn a_lone_record_is_published_without_waiting_the_sleep_interval_lossless() {
    lone_records_come_out_at_once(&["--lossless"], &[], b'\n');
}

#[test]
fn the_default_block_size_is_1_mib_and_no_chunk_exceeds_it() {
    const BLOCK: usize = 1 << 20;
    for len in [BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 123] {
        let scratch = Scratch::new();
        let input = binary_data(len);
        // A regular file is always ready, so every chunk but the last is full.
        let stdin = input_in(scratch.dir.path(), "input", &input);
        let mut command = filebus(&scratch.bus(), &["--lossless", "producer"]);
        command.stdin(Stdio::from(stdin));
        let producer = Running::with_own_stdin(command);
        let chunks = take_chunks_by_hand(&scratch.bus());
        producer.wait().assert_success();
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        let mut expected = vec![BLOCK; len / BLOCK];
        if len % BLOCK != 0 {
            expected.push(len % BLOCK);
        }
        assert_eq!(sizes, expected, "chunk sizes for {len} bytes");
        assert!(chunks.concat() == input, "{len} bytes: output differs");
    }
}

/// A lossless publish links the chunk as `F`, which fails if a chunk is
/// there: then the chunk comes back unpublished and its sequence number is
/// given back, so that consumers count no chunk as missed.
#[test]
fn a_lossless_publish_onto_a_waiting_chunk_hands_it_back_and_gives_back_its_number() {
    use filebus_core::Format;
    use filebus_core::testing::{Bus, stamp, write_chunk};

    let scratch = Scratch::new();
    let bus = Bus::open(&scratch.bus()).expect("bus");
    let mut lock = bus.lock_file().expect("lock file");
    let first = write_chunk(&bus, b"first", true, Format::Raw).expect("chunk");
    let guard = lock.acquire().expect("lock");
    assert!(
        bus.publish_if_absent(first, &guard)
            .expect("publish")
            .is_none(),
        "the first chunk was not published"
    );
    assert_eq!(stamp::last_sequence(guard.lock_file()), Some(1));
    let second = write_chunk(&bus, b"second", true, Format::Raw).expect("chunk");
    let back = bus
        .publish_if_absent(second, &guard)
        .expect("publish")
        .expect("the second chunk was published over the first");
    drop(back);
    assert_eq!(
        stamp::last_sequence(guard.lock_file()),
        Some(1),
        "the number of the chunk not published was not given back"
    );
    drop(guard);
    assert_eq!(std::fs::read(scratch.bus()).expect("read F"), b"first");
    assert_eq!(
        crate::util::names_in(scratch.dir.path()),
        ["bus", "bus.lock"]
    );
}
