//! A bus on a shared filesystem, proven on a real FUSE mount (`bindfs`, see
//! `tests/util/fuse.rs`): one side of each test works through the mount, the
//! other through the directory underneath, as another machine would.
//!
//! The data are numbered records cut into chunks of exactly [`CHUNK`] bytes,
//! so a lost, duplicated, reordered or torn chunk is visible.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::fuse::{
    LONG_ATTRIBUTE_CACHE, NFS_FROZEN_TIMES, NO_ATTRIBUTE_CACHE, NO_XATTRS, SharedDir,
};
use crate::util::{
    CHUNK, CHUNK_ARG, RECORD_LEN, RECORDS_PER_CHUNK, Running, check_full_chunks, filebus,
    history_bus, history_entries, last_stats_line, names_in, produce, put_chunk_by_hand,
    ready_consumer, records, stat, stats_counts,
};

/// What a consumer on a FUSE mount says at `-v`.
const POLLING_ON_FUSE: &str = "is on FUSE, where inotify misses changes made by other machines: polling every --sleep-interval";

/// Records of `chunks` whole chunks, starting with chunk `first`.
fn chunks(first: usize, chunks: usize) -> Vec<u8> {
    records(first * RECORDS_PER_CHUNK..(first + chunks) * RECORDS_PER_CHUNK)
}

/// The first record of each of `count` chunks from chunk `first` on.
fn chunk_starts(first: usize, count: usize) -> Vec<usize> {
    (first..first + count)
        .map(|chunk| chunk * RECORDS_PER_CHUNK)
        .collect()
}

/// Asserts that the first records of the chunks a lossy consumer wrote are
/// strictly increasing: no chunk twice, none out of order.
fn assert_increasing(starts: &[usize], what: &str) {
    assert!(
        starts.windows(2).all(|pair| pair[0] < pair[1]),
        "{what}: chunks out of order or repeated: {starts:?}"
    );
}

/// Publishes `input` losslessly or lossily at `bus` with the numbered-record
/// block size, and waits for the producer to succeed.
fn produce_chunks(bus: &Path, extra: &[&str], input: &[u8], aux: &Path) {
    let mut args = vec!["--block-size", CHUNK_ARG];
    args.extend_from_slice(extra);
    produce(bus, &args, input, aux);
}

/// The names left in a bus directory once everyone is done: the bus files,
/// no temporary file.
fn assert_no_leftovers(dir: &Path, expected: &[&str]) {
    assert_eq!(names_in(dir), expected, "in {}", dir.display());
}

#[test]
fn lossy_consumer_on_the_mount_polls_and_sees_another_machines_chunks() {
    let shared = SharedDir::new();
    let consumer = Running::consumer(&shared.bus_here(), &["-v", "--sleep-interval", "0.01"]);
    crate::util::wait_until_showing(
        "the consumer to say it polls",
        || consumer.stderr().contains(POLLING_ON_FUSE),
        || format!("stderr: {}", consumer.stderr()),
    );
    // One chunk at a time, each waited for: polling misses none of them.
    for chunk in 0..4 {
        produce_chunks(&shared.bus_there(), &[], &chunks(chunk, 1), shared.aux());
        consumer.wait_for_output((chunk + 1) * CHUNK);
    }
    // Then a burst faster than the consumer looks: it skips some, but every
    // chunk it writes is whole, in order, and the last one arrives.
    produce_chunks(&shared.bus_there(), &[], &chunks(4, 60), shared.aux());
    let output = consumer.wait_for_suffix(&chunks(63, 1));
    let starts = check_full_chunks(&output, "lossy consumer on the mount");
    assert_eq!(starts[..4], chunk_starts(0, 4));
    assert_increasing(&starts, "lossy consumer on the mount");
    let finished = consumer.kill();
    assert_eq!(
        finished.stderr.lines().count(),
        1,
        "only the polling notice is expected: {}",
        finished.stderr
    );
    assert_no_leftovers(shared.there(), &["bus", "bus.lock"]);
}

#[test]
fn lossy_consumer_on_the_mount_ends_at_the_last_chunk_of_every_burst() {
    // ext4 gives a freed inode number to the next chunk, so the chunks
    // before and after the one the consumer opened may share a number: a
    // consumer that took the server's word for which file it had opened
    // (bindfs answers for the name, not the open file) recorded a later
    // chunk as written and waited on it for good, in about half of such
    // bursts.
    ends_at_the_last_chunk_of_every_burst(&SharedDir::new(), 10, 200);
}

#[test]
fn lossy_consumer_on_nfs_ends_at_the_last_chunk_of_every_burst() {
    // The server gives a new chunk the number of one deleted while the
    // consumer still had it open, times are whole seconds and every chunk
    // has one size: only the content tells the last chunk from one written.
    let shared = SharedDir::nfs_like(&[]);
    ends_at_the_last_chunk_of_every_burst(&shared, 10, 50);
}

/// Bursts of `chunks` chunks from the other machine (`there`), replaced
/// faster than a consumer on `here` looks: after each, the consumer must
/// write the burst's last chunk, and everything it writes is whole and in
/// order.
fn ends_at_the_last_chunk_of_every_burst(shared: &SharedDir, bursts: usize, chunks_each: usize) {
    let consumer = Running::consumer(&shared.bus_here(), &["-v", "--sleep-interval", "0.001"]);
    crate::util::wait_until_showing(
        "the consumer to say it polls",
        || consumer.stderr().contains(POLLING_ON_FUSE),
        || format!("stderr: {}", consumer.stderr()),
    );
    for burst in 0..bursts {
        let first = burst * chunks_each;
        produce_chunks(
            &shared.bus_there(),
            &[],
            &chunks(first, chunks_each),
            shared.aux(),
        );
        let last = chunks(first + chunks_each - 1, 1);
        crate::util::wait_until_showing(
            &format!("the last chunk of burst {burst}"),
            || consumer.output().ends_with(&last),
            || {
                format!(
                    "{} bytes written; stderr: {}",
                    consumer.output().len(),
                    consumer.stderr()
                )
            },
        );
    }
    let finished = consumer.kill();
    let starts = check_full_chunks(&finished.stdout, "lossy consumer on the mount");
    assert_increasing(&starts, "lossy consumer on the mount");
}

#[test]
fn lossy_producer_on_the_mount_reaches_a_consumer_underneath_by_events() {
    let shared = SharedDir::new();
    let consumer = Running::consumer(&shared.bus_there(), &["-vvv"]);
    crate::util::wait_until_showing(
        "the consumer to watch with inotify",
        || consumer.stderr().contains("with inotify"),
        || format!("stderr: {}", consumer.stderr()),
    );
    let (status, stderr) = crate::util::run_with_input(
        filebus(
            &shared.bus_here(),
            &["-vv", "--block-size", CHUNK_ARG, "producer"],
        ),
        &chunks(0, 1),
        shared.aux(),
    );
    assert!(status.success(), "{stderr}");
    // FUSE has no O_TMPFILE: the chunk was built under a unique name.
    assert!(
        stderr.contains("no O_TMPFILE support, using named temporary files"),
        "{stderr}"
    );
    consumer.wait_for_output(CHUNK);
    for chunk in 1..4 {
        produce_chunks(&shared.bus_here(), &[], &chunks(chunk, 1), shared.aux());
        consumer.wait_for_output((chunk + 1) * CHUNK);
    }
    produce_chunks(&shared.bus_here(), &[], &chunks(4, 60), shared.aux());
    let output = consumer.wait_for_suffix(&chunks(63, 1));
    let starts = check_full_chunks(&output, "lossy consumer underneath");
    assert_eq!(starts[..4], chunk_starts(0, 4));
    assert_increasing(&starts, "lossy consumer underneath");
    let finished = consumer.kill();
    assert!(!finished.stderr.contains("polling"), "{}", finished.stderr);
    assert_no_leftovers(shared.there(), &["bus", "bus.lock"]);
}

/// A lossless stream from `producer_bus` to `consumer_bus` (the same bus
/// seen from two sides): every record once, in order; the consumer ends at
/// the end-of-stream marker. Returns the consumer's stderr.
fn lossless_across(shared: &SharedDir, producer_bus: &Path, consumer_bus: &Path) -> String {
    let consumer = Running::consumer(consumer_bus, &["-v", "--lossless"]);
    let input = chunks(0, 40);
    produce_chunks(producer_bus, &["--lossless"], &input, shared.aux());
    let finished = consumer.wait();
    finished.assert_success();
    assert!(
        finished.stdout == input,
        "lossless output of {} bytes differs from the {} bytes of input",
        finished.stdout.len(),
        input.len()
    );
    assert_no_leftovers(shared.there(), &["bus.lock"]);
    finished.stderr
}

#[test]
fn lossless_from_another_machine_to_a_consumer_on_the_mount() {
    let shared = SharedDir::new();
    let stderr = lossless_across(&shared, &shared.bus_there(), &shared.bus_here());
    assert!(stderr.contains(POLLING_ON_FUSE), "{stderr}");
}

#[test]
fn lossless_from_the_mount_to_a_consumer_on_another_machine() {
    let shared = SharedDir::new();
    let stderr = lossless_across(&shared, &shared.bus_here(), &shared.bus_there());
    assert!(!stderr.contains("polling"), "{stderr}");
}

#[test]
fn lossless_without_attribute_caches_both_ways() {
    let shared = SharedDir::with_options(NO_ATTRIBUTE_CACHE);
    lossless_across(&shared, &shared.bus_there(), &shared.bus_here());
    lossless_across(&shared, &shared.bus_here(), &shared.bus_there());
}

/// Puts `content` at the bus underneath as another machine's producer would:
/// an unstamped chunk.
fn put_chunk_underneath(shared: &SharedDir, content: &[u8]) {
    put_chunk_by_hand(&shared.bus_there(), content);
}

/// Replaces the chunk underneath with `content` after the mount has looked
/// `F` up, so that the mount's caches still hold the size of the chunk before.
fn replace_behind_the_mounts_back(shared: &SharedDir, before: &[u8], content: &[u8]) {
    put_chunk_underneath(shared, before);
    let cached = std::fs::metadata(shared.bus_here()).expect("cannot stat F on the mount");
    assert_eq!(cached.len(), before.len() as u64);
    std::fs::remove_file(shared.bus_there()).expect("cannot take the chunk underneath");
    put_chunk_underneath(shared, content);
    let stale = std::fs::metadata(shared.bus_here()).expect("cannot stat F on the mount");
    assert_eq!(
        stale.len(),
        before.len() as u64,
        "the mount did not cache the size of the chunk before: this test proves nothing"
    );
}

#[test]
fn lossless_consumer_on_the_mount_takes_sizes_from_the_server_not_its_cache() {
    let shared = SharedDir::with_options(LONG_ATTRIBUTE_CACHE);
    // A chunk longer than the cached size is taken whole, not cut at it.
    let longer = chunks(1, 3);
    replace_behind_the_mounts_back(&shared, &chunks(0, 1), &longer);
    let consumer = Running::consumer(
        &shared.bus_here(),
        &["--lossless", "--sleep-interval", "0.01"],
    );
    crate::util::wait_until_showing(
        "the consumer to take the chunk",
        || !shared.bus_there().exists(),
        || format!("stderr: {}", consumer.stderr()),
    );
    // The end-of-stream marker, shorter than the cached size, ends the
    // stream: it is not taken for a chunk that came out short.
    put_chunk_underneath(&shared, b"");
    let finished = consumer.wait();
    finished.assert_success();
    assert!(
        finished.stdout == longer,
        "the consumer wrote {} bytes for a chunk of {}",
        finished.stdout.len(),
        longer.len()
    );
    // And with the marker behind a cached chunk size, from the start.
    replace_behind_the_mounts_back(&shared, &chunks(4, 1), b"");
    let finished = Running::consumer(
        &shared.bus_here(),
        &["--lossless", "--sleep-interval", "0.01"],
    )
    .wait();
    finished.assert_success();
    assert_eq!(finished.stdout, b"", "output for an end-of-stream marker");
    assert_no_leftovers(shared.there(), &["bus.lock"]);
}

#[test]
fn stat_says_how_each_side_wakes_up() {
    let shared = SharedDir::new();
    produce_chunks(&shared.bus_there(), &[], &chunks(0, 1), shared.aux());
    let here = stat(&[&shared.bus_here()]);
    assert!(
        here.contains(
            "wake-up:  polling every --sleep-interval, consumers and lossless producers alike \
             (the bus is on FUSE: inotify misses changes made by other machines)"
        ),
        "{here}"
    );
    let there = stat(&[&shared.bus_there()]);
    assert!(
        there.contains("wake-up:  inotify events, consumers and lossless producers alike"),
        "{there}"
    );
    // Both sides see the same chunk.
    for text in [&here, &there] {
        assert!(text.contains("size:     900 bytes"), "{text}");
        assert!(text.contains("sequence: 1\n"), "{text}");
    }
    let json_flag = Path::new("--json");
    let parse = |text: &str| -> serde_json::Value {
        serde_json::from_str(text).unwrap_or_else(|error| panic!("{error}: {text}"))
    };
    let here = parse(&stat(&[json_flag, &shared.bus_here()]));
    assert_eq!(here["wake_up"], "polling", "{here}");
    assert_eq!(here["remote_filesystem"], "FUSE", "{here}");
    let there = parse(&stat(&[json_flag, &shared.bus_there()]));
    assert_eq!(there["wake_up"], "events", "{there}");
    assert!(there["remote_filesystem"].is_null(), "{there}");
}

#[test]
fn producer_without_xattrs_or_tmpfile_falls_back_and_stats_say_unknown() {
    let shared = SharedDir::with_options(NO_XATTRS);
    let consumer = Running::start(
        filebus(&shared.bus_there(), &["--lossless", "consumer", "--stats"]),
        None,
    );
    let input = chunks(0, 20);
    let (status, stderr) = crate::util::run_with_input(
        filebus(
            &shared.bus_here(),
            &["-vv", "--lossless", "--block-size", CHUNK_ARG, "producer"],
        ),
        &input,
        shared.aux(),
    );
    assert!(status.success(), "{stderr}");
    // Each fallback is said once, not once a chunk.
    for notice in [
        "no O_TMPFILE support, using named temporary files",
        "chunks are not stamped: cannot set extended attributes",
    ] {
        assert_eq!(stderr.matches(notice).count(), 1, "{notice:?} in {stderr}");
    }
    let finished = consumer.wait();
    finished.assert_success();
    assert!(
        finished.stdout == input,
        "the stream differs from its input"
    );
    // 20 chunks and the end-of-stream marker, none stamped: all unknown,
    // none counted missed, no latency made up.
    assert_eq!(
        stats_counts(&finished.stderr),
        [21, input.len() as u64, 0, 21],
        "{}",
        finished.stderr
    );
    assert!(
        last_stats_line(&finished.stderr).contains("latency unknown"),
        "{}",
        finished.stderr
    );
    // Named temporary files were all renamed into place or removed.
    assert_no_leftovers(shared.there(), &["bus.lock"]);
}

#[test]
fn lossy_unstamped_chunks_from_the_mount_are_unknown_not_missed() {
    let shared = SharedDir::with_options(NO_XATTRS);
    // Stamped chunks first, from the other machine, then unstamped ones
    // through the mount, then stamped again: the sequence goes on from the
    // lock file, so the unstamped chunks in between are not counted missed.
    let consumer = Running::start(filebus(&shared.bus_there(), &["consumer", "--stats"]), None);
    let plan: [(&Path, usize); 6] = [
        (shared.there(), 0),
        (shared.there(), 1),
        (shared.here(), 2),
        (shared.here(), 3),
        (shared.there(), 4),
        (shared.here(), 5),
    ];
    for (dir, chunk) in plan {
        produce_chunks(&dir.join("bus"), &[], &chunks(chunk, 1), shared.aux());
        consumer.wait_for_output((chunk + 1) * CHUNK);
    }
    let finished = consumer.signal(libc::SIGTERM);
    assert_eq!(finished.stdout, chunks(0, 6));
    assert_eq!(
        stats_counts(&finished.stderr),
        [6, 6 * CHUNK as u64, 0, 3],
        "{}",
        finished.stderr
    );
    let text = stat(&[&shared.bus_there()]);
    assert!(text.contains("sequence: none (unstamped chunk)"), "{text}");
}

/// The notice a lossless consumer gives, at `-vv`, when another consumer
/// took the chunk between its look and its open.
const TAKEN_BEFORE_US: &str = "taken by another consumer before us: looking again";

#[test]
fn lossless_consumers_on_two_machines_racing_for_chunks_each_get_distinct_ones() {
    let shared = SharedDir::new();
    let consumer_args = ["-vv", "--lossless", "--sleep-interval", "0.001"];
    let here = Running::consumer(&shared.bus_here(), &consumer_args);
    let there = Running::consumer(&shared.bus_there(), &consumer_args);
    let mut producer = Command::new(crate::util::filebus_bin())
        .arg("--filename")
        .arg(shared.bus_there())
        .args(["--lossless", "--block-size", CHUNK_ARG, "producer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start the producer");
    let mut stdin = producer.stdin.take().expect("stdin was piped");
    // Chunks go in until one consumer found its chunk taken by the other
    // between looking at F and opening it (ENOENT: "look again"). Each
    // write is one whole chunk, and atomic (smaller than PIPE_BUF).
    let raced =
        || here.stderr().contains(TAKEN_BEFORE_US) || there.stderr().contains(TAKEN_BEFORE_US);
    let deadline = std::time::Instant::now() + crate::util::PATIENCE;
    let mut sent = 0;
    while sent < 50 || !raced() {
        assert!(
            std::time::Instant::now() < deadline,
            "no consumer lost a race for a chunk in {sent} chunks; here: {}\nthere: {}",
            here.stderr(),
            there.stderr()
        );
        stdin
            .write_all(&chunks(sent, 1))
            .expect("the producer reads");
        sent += 1;
    }
    drop(stdin);
    let status = producer.wait().expect("cannot wait for the producer");
    assert!(status.success(), "producer: {status}");
    // One consumer takes the end-of-stream marker and ends with success; the
    // other, which lost races and looked again, waits on.
    let (mut here, mut there) = (here, there);
    let deadline = std::time::Instant::now() + crate::util::PATIENCE;
    while here.is_running() && there.is_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "no consumer took the end of stream; here: {}\nthere: {}",
            here.stderr(),
            there.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let (ended, waiting) = if here.is_running() {
        (there, here)
    } else {
        (here, there)
    };
    let ended = ended.wait();
    ended.assert_success();
    let waiting = waiting.kill();
    assert!(
        !waiting.stderr.contains("error"),
        "the consumer still waiting: {}",
        waiting.stderr
    );
    let mut outputs = Vec::new();
    for (name, output) in [("ended", &ended.stdout), ("waiting", &waiting.stdout)] {
        let starts = check_full_chunks(output, name);
        assert_increasing(&starts, name);
        outputs.extend(starts);
    }
    // Together, every chunk exactly once.
    outputs.sort_unstable();
    assert_eq!(outputs, chunk_starts(0, sent));
    assert_no_leftovers(shared.there(), &["bus.lock"]);
}

/// The notice a consumer gives, at `-vv`, when the chunk it opened was
/// replaced or deleted by another machine before it could read it.
const VANISHED: &str =
    "the chunk was replaced or taken by another machine before it could be read: looking again";

#[test]
fn lossy_consumer_looks_again_when_the_chunk_it_opened_goes_stale() {
    // Through this mount, reading a chunk that the other machine replaced
    // since it was opened fails with ESTALE, as on NFS.
    looks_again_when_reads_fail(&SharedDir::stale(), "ESTALE");
}

#[test]
fn lossy_consumer_on_nfs_takes_efault_from_a_deleted_chunk_for_a_vanished_chunk_not_an_output_error()
 {
    // Some NFS clients fail a read of a file deleted through another client
    // with EFAULT; sendfile does not say which side failed.
    let shared = SharedDir::nfs_like(&["--stale-errno", "EFAULT", "--read-delay", "0.02"]);
    looks_again_when_reads_fail(&shared, "EFAULT");
}

/// Bursts from the other machine (`there`) replace chunks faster than a
/// consumer on `here` opens and reads them, until one fails in its hands
/// (with `errno`). After each burst, its last chunk stays at F: the
/// consumer, having looked again, writes it, and never stops with an error.
fn looks_again_when_reads_fail(shared: &SharedDir, errno: &str) {
    let consumer = Running::consumer(&shared.bus_here(), &["-vv", "--sleep-interval", "0.001"]);
    crate::util::wait_until_showing(
        "the consumer to say it polls",
        || consumer.stderr().contains(POLLING_ON_FUSE),
        || format!("stderr: {}", consumer.stderr()),
    );
    let burst = 100;
    let mut next = 0;
    let deadline = std::time::Instant::now() + crate::util::PATIENCE;
    while next == 0 || !consumer.stderr().contains(VANISHED) {
        assert!(
            std::time::Instant::now() < deadline,
            "no chunk failed with {errno} in {next} chunks; stderr: {}",
            consumer.stderr()
        );
        produce_chunks(&shared.bus_there(), &[], &chunks(next, burst), shared.aux());
        next += burst;
        consumer.wait_for_suffix(&chunks(next - 1, 1));
    }
    // Every chunk written is whole and in order.
    let output = consumer.output();
    let starts = check_full_chunks(&output, "consumer on the mount");
    assert_increasing(&starts, "consumer on the mount");
    let finished = consumer.kill();
    assert!(!finished.stderr.contains("error"), "{}", finished.stderr);
}

#[test]
fn a_failing_test_leaves_no_mount_behind() {
    let mut mount = None;
    let mut busy = None;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let shared = SharedDir::new();
        mount = Some(shared.here().to_owned());
        // A process left inside the mount keeps it busy, as a child of a
        // failed test could: the plain unmount is refused, the lazy one is not.
        busy = Some(
            Command::new("sleep")
                .arg("600")
                .current_dir(shared.here())
                .spawn()
                .expect("cannot start sleep"),
        );
        panic!("this test fails on purpose, with the mount in use");
    }));
    if let Some(mut busy) = busy {
        let _ = busy.kill();
        let _ = busy.wait();
    }
    assert!(outcome.is_err(), "the closure was meant to panic");
    let mount = mount.expect("the mount was made");
    assert_ne!(
        crate::util::fuse::filesystem_magic(&mount),
        crate::util::fuse::FUSE_SUPER_MAGIC,
        "{} is still mounted",
        mount.display()
    );
    assert!(!mount.exists(), "{} was not removed", mount.display());
}

#[test]
fn history_consumer_on_the_mount_takes_entry_sizes_from_the_server_not_its_cache() {
    let shared = SharedDir::with_options(LONG_ATTRIBUTE_CACHE);
    // A stream with a history of 4, in chunks of `block_size`.
    let stream = |block_size: &str, input: &[u8]| {
        let producer = filebus(
            &shared.bus_there(),
            &["--block-size", block_size, "producer", "--history", "4"],
        );
        let (status, stderr) = crate::util::run_with_input(producer, input, shared.aux());
        assert!(status.success(), "{status:?}: {stderr}");
    };
    // A first stream of one chunk, whose history entry the mount looks up.
    stream(CHUNK_ARG, &chunks(0, 1));
    let mut entries = names_in(&shared.there().join("bus.history"));
    entries.retain(|name| name.bytes().all(|byte| byte.is_ascii_digit()));
    let entry = entries.first().expect("no history entry").clone();
    let cached = shared.here().join("bus.history").join(&entry);
    let size_here = || {
        std::fs::metadata(&cached)
            .expect("cannot stat the entry on the mount")
            .len()
    };
    assert_eq!(size_here(), CHUNK as u64);
    // The bus starts again underneath (its lock file and history removed), so
    // sequence numbers, and entry names, come back: the same name now holds
    // a longer chunk, while the mount still caches the old size.
    std::fs::remove_dir_all(shared.there().join("bus.history")).expect("cannot remove the history");
    for name in ["bus", "bus.lock"] {
        std::fs::remove_file(shared.there().join(name)).expect("cannot remove a bus file");
    }
    let longer = chunks(1, 3);
    stream(&longer.len().to_string(), &longer);
    let there = std::fs::metadata(shared.there().join("bus.history").join(&entry))
        .expect("the new stream has no entry of that name");
    assert_eq!(there.len(), longer.len() as u64);
    assert_eq!(
        size_here(),
        CHUNK as u64,
        "the mount did not cache the old entry's size: this test proves nothing"
    );
    // A consumer on the mount replays the history: the chunk comes out whole.
    let consumer = ready_consumer(&shared.bus_here(), &["--last", "4"]);
    let received = consumer.wait_for_output(longer.len());
    std::thread::sleep(std::time::Duration::from_millis(100));
    let finished = consumer.kill();
    assert!(
        received == longer && finished.stdout == longer,
        "{} bytes written for a chunk of {}",
        finished.stdout.len(),
        longer.len()
    );
}

#[test]
fn reliable_multicast_from_another_machine_to_named_consumers_on_the_mount() {
    let shared = SharedDir::new();
    history_bus(&shared.bus_there(), "4", shared.aux());
    // Two named consumers on this machine, which see the other machine's
    // chunks by polling; the producer there waits for their cursors.
    let first = ready_consumer(&shared.bus_here(), &["--name", "first"]);
    let second = ready_consumer(&shared.bus_here(), &["--name", "second"]);
    let input = chunks(0, 40);
    produce_chunks(&shared.bus_there(), &[], &input, shared.aux());
    for (name, consumer) in [("first", first), ("second", second)] {
        let finished = consumer.wait();
        finished.assert_success();
        assert!(
            finished.stdout == input,
            "{name}: {} bytes written, not the {} of the stream",
            finished.stdout.len(),
            input.len()
        );
        assert!(
            finished.stderr.contains(POLLING_ON_FUSE),
            "{name}: {}",
            finished.stderr
        );
    }
    let held = history_entries(&shared.bus_there()).len();
    assert!(held <= 4, "{held} chunks held in a history of 4");
}

#[test]
fn reliable_multicast_from_the_mount_to_a_named_consumer_on_another_machine() {
    let shared = SharedDir::new();
    history_bus(&shared.bus_here(), "4", shared.aux());
    // The consumer on the other machine wakes up by events, but nobody reads
    // its output for a while: its pipe fills, and the producer here, which
    // cannot see the cursor move by events, must wait for it by polling.
    let mut named = Running::with_stdio(
        filebus(&shared.bus_there(), &["-vvv", "consumer", "--name", "far"]),
        Stdio::null(),
        Stdio::piped(),
    );
    let mut stdout = named.child.stdout.take().expect("stdout was piped");
    crate::util::wait_until_ready(&named);
    // Far more than the pipe and the history hold together.
    let input = chunks(0, 200);
    let stdin = crate::util::input_in(shared.aux(), "input", &input);
    let mut producer = Running::with_stdio(
        filebus(&shared.bus_here(), &["--block-size", CHUNK_ARG, "producer"]),
        stdin,
        Stdio::null(),
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        producer.try_status().is_none(),
        "the producer did not wait for the named consumer: {}",
        producer.stderr()
    );
    let reader = std::thread::spawn(move || {
        let mut output = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut output).expect("cannot read the consumer");
        output
    });
    let status = producer.wait_status();
    assert!(status.success(), "{status:?}: {}", producer.stderr());
    let status = named.wait_status();
    assert!(status.success(), "{status:?}: {}", named.stderr());
    let output = reader.join().expect("reader panicked");
    assert!(
        output == input,
        "{} bytes written, not the {} of the stream",
        output.len(),
        input.len()
    );
    assert!(!named.stderr().contains("polling"), "{}", named.stderr());
    // A late joiner on this machine replays the last chunks from history.
    let late = ready_consumer(&shared.bus_here(), &["--last", "3"]);
    assert_eq!(late.wait_for_output(3 * CHUNK), chunks(197, 3));
    drop(late);
    let held = history_entries(&shared.bus_there()).len();
    assert!(held <= 4, "{held} chunks held in a history of 4");
}

/// An NFSv3-like mount pair whose times are all the epoch: two chunks of
/// one size given the same inode number in turn look alike but for their
/// content.
#[test]
fn lossy_consumer_on_nfs_tells_a_new_chunk_from_the_one_it_wrote_under_the_same_inode_number() {
    let shared = SharedDir::nfs_like(NFS_FROZEN_TIMES);
    let consumer = Running::consumer(&shared.bus_here(), &["-v"]);
    crate::util::wait_until_showing(
        "the consumer to say it polls",
        || consumer.stderr().contains(POLLING_ON_FUSE),
        || format!("stderr: {}", consumer.stderr()),
    );
    produce_chunks(&shared.bus_there(), &[], &chunks(0, 1), shared.aux());
    consumer.wait_for_suffix(&chunks(0, 1));
    let number = |bus: &Path| std::fs::symlink_metadata(bus).map(|meta| meta.ino());
    let written = number(&shared.bus_here()).expect("the chunk the consumer wrote");
    // Stopped, it cannot look between chunks 1 and 2. Chunk 0 is deleted
    // when chunk 1 replaces it, and the server gives its number to the
    // file created next, chunk 2.
    consumer.send(libc::SIGSTOP);
    produce_chunks(&shared.bus_there(), &[], &chunks(1, 2), shared.aux());
    assert_eq!(
        number(&shared.bus_here()).expect("chunk 2"),
        written,
        "the test filesystem did not give chunk 2 the number of chunk 0; its logs:\n{}",
        shared.nfs_logs()
    );
    consumer.send(libc::SIGCONT);
    consumer.wait_for_suffix(&chunks(2, 1));
    let finished = consumer.kill();
    let starts = check_full_chunks(&finished.stdout, "lossy consumer on NFS");
    assert_eq!(starts.first(), Some(&0));
    assert_increasing(&starts, "lossy consumer on NFS");
}

/// How a chunk that replaced the one a consumer had open reaches the mount's
/// cache in [`consumer_on_the_mount_writes_the_chunk_it_opened`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Newer {
    /// A chunk of the same size: the pages of the name `F` are then the
    /// newer chunk's, and a read through the page cache returns them.
    SameSize,
    /// An empty file (an end-of-stream marker): the size the mount holds
    /// for `F` is then 0, and a read stops there, even past the cache.
    Empty,
}

/// A consumer on a path-based FUSE mount (bindfs) that opened chunk 3 at
/// `F` and is held before it reads it (its output pipe full while it writes
/// chunk 2 from history) must write chunk 3 when it goes on, although
/// meanwhile another process on the mount opened and read the chunk that
/// replaced it at `F`: the kernel keeps one page cache and one size per
/// name, so a read through the cache returns the newer chunk's pages, or
/// stops at its size (the soak's cut-short and wrong chunks,
/// `results/2026-12-03-soak/`).
fn consumer_on_the_mount_writes_the_chunk_it_opened(newer: Newer) {
    let shared = SharedDir::new();
    // The producer on the other machine publishes one chunk per CHUNK bytes
    // of input (chunk n + 1 holds the records of `chunks(n, 1)`).
    let mut producer = Running::with_stdio(
        filebus(
            &shared.bus_there(),
            &["--block-size", CHUNK_ARG, "producer", "--history", "8"],
        ),
        Stdio::piped(),
        Stdio::null(),
    );
    let mut feed = producer.child.stdin.take().expect("stdin was piped");
    let entry = |sequence: u64| {
        shared
            .there()
            .join("bus.history")
            .join(format!("{sequence:020}"))
    };
    let publish = |feed: &mut std::process::ChildStdin, first: usize, count: usize, last: u64| {
        feed.write_all(&chunks(first, count))
            .expect("cannot feed the producer");
        feed.flush().expect("cannot feed the producer");
        crate::util::wait_until_showing(
            "the producer to publish",
            || entry(last).exists(),
            String::new,
        );
    };
    publish(&mut feed, 0, 1, 1);
    // The consumer's output is a pipe this test fills, so that it blocks
    // exactly where it writes a chunk out.
    let (read_end, write_end) = rustix::pipe::pipe().expect("cannot make a pipe");
    // The test's own way into the pipe, non-blocking (reopened, so that the
    // consumer's end stays blocking: they share no file status flags).
    let filler_end = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", write_end.as_raw_fd()))
        .expect("cannot open the pipe again");
    let consumer = Running::with_stdio(
        filebus(
            &shared.bus_here(),
            &["-vvv", "--sleep-interval", "0.01", "consumer"],
        ),
        Stdio::null(),
        write_end,
    );
    crate::util::wait_until_showing(
        "the consumer to write chunk 1",
        || crate::util::pipe_queued(&read_end) == CHUNK,
        || consumer.stderr(),
    );
    // Stopped, it sees chunks 2 and 3 only once they are both there.
    consumer.send(libc::SIGSTOP);
    publish(&mut feed, 1, 2, 3);
    let mut filler = Vec::new();
    loop {
        match rustix::io::write(&filler_end, &[b'#'; 512]) {
            Ok(count) => filler.extend(std::iter::repeat_n(b'#', count)),
            Err(rustix::io::Errno::AGAIN) => break,
            Err(errno) => panic!("cannot fill the pipe: {errno}"),
        }
    }
    drop(filler_end);
    // Continued, it opens chunk 3 at `F`, checks its stamp, and blocks
    // writing chunk 2 from history before it reads chunk 3.
    consumer.send(libc::SIGCONT);
    // (In a write to its output, descriptor 1: write or sendfile, whose
    // first argument it is, or splice, whose third it is.)
    let blocked_in_write = || {
        let Ok(call) = std::fs::read_to_string(format!("/proc/{}/syscall", consumer.pid())) else {
            return false;
        };
        let fields: Vec<&str> = call.split(' ').collect();
        let output_at = |index: usize| fields.get(index) == Some(&"0x1");
        match fields
            .first()
            .and_then(|number| number.parse::<libc::c_long>().ok())
        {
            Some(libc::SYS_write | libc::SYS_sendfile) => output_at(1),
            Some(libc::SYS_splice) => output_at(3),
            _ => false,
        }
    };
    crate::util::wait_until_showing(
        "the consumer to block writing chunk 2",
        blocked_in_write,
        || consumer.stderr(),
    );
    // Meanwhile chunk 3 is replaced at `F` underneath, and a process on the
    // mount reads what is there now, once the mount's one-second caches
    // have expired: the kernel's cache for the name `F` is the newer file's.
    let replacement = match newer {
        Newer::SameSize => chunks(50, 1),
        Newer::Empty => Vec::new(),
    };
    let staged = shared.there().join("replacement");
    std::fs::write(&staged, &replacement).expect("cannot write the replacement");
    std::fs::rename(&staged, shared.bus_there()).expect("cannot replace the chunk");
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    assert_eq!(
        std::fs::read(shared.bus_here()).expect("cannot read F on the mount"),
        replacement,
        "the mount does not show the replacement: this test proves nothing"
    );
    assert!(
        blocked_in_write(),
        "the consumer went on too early: {}",
        consumer.stderr()
    );
    // Chunk 1, the filler, chunks 2 and 3, then (the same size case) the
    // replacement, which the consumer finds at `F` as a chunk without a
    // stamp and writes as it came.
    let mut expected = chunks(0, 1);
    expected.extend(&filler);
    expected.extend(chunks(1, 2));
    expected.extend(&replacement);
    // Its output read, the consumer goes on. (The empty replacement writes
    // nothing, and chunk 3, if it could not be read whole, comes from
    // history when the end of the stream, chunk 4, arrives.)
    let (output, reader) = crate::util::collect(std::fs::File::from(read_end));
    if newer == Newer::SameSize {
        crate::util::wait_until_showing(
            "the consumer to write chunks 2, 3 and the replacement",
            || output.lock().expect("poisoned").len() >= expected.len(),
            || consumer.stderr(),
        );
    }
    drop(feed);
    assert!(producer.wait_status().success(), "{}", producer.stderr());
    let mut consumer = consumer;
    let status = consumer.wait_status();
    reader.join().expect("the reader panicked");
    assert!(status.success(), "{status:?}: {}", consumer.stderr());
    let output = output.lock().expect("poisoned").clone();
    // The chunks after the filler, by their first records.
    let after_filler = |bytes: &[u8]| -> Vec<String> {
        bytes
            .get(CHUNK + filler.len()..)
            .unwrap_or_default()
            .chunks(CHUNK)
            .map(|chunk| {
                String::from_utf8_lossy(&chunk[..chunk.len().min(RECORD_LEN)])
                    .trim_end()
                    .to_owned()
                    + &format!(" ({} bytes)", chunk.len())
            })
            .collect()
    };
    assert!(
        output == expected,
        "after the filler: {:?}, not {:?}\n{}",
        after_filler(&output),
        after_filler(&expected),
        consumer.stderr()
    );
}

#[test]
fn consumer_on_the_mount_writes_the_chunk_it_opened_not_the_pages_of_a_newer_one() {
    consumer_on_the_mount_writes_the_chunk_it_opened(Newer::SameSize);
}

#[test]
fn consumer_on_the_mount_writes_the_chunk_it_opened_whole_not_cut_at_a_newer_ones_size() {
    consumer_on_the_mount_writes_the_chunk_it_opened(Newer::Empty);
}
