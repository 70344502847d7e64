//! Criterion benchmarks of each stage of the data path, and of the variants
//! of each stage measured against each other so the defaults are chosen by
//! evidence:
//!
//! - `publish/<method>/<block>`: building a chunk from a pipe (mmap, write or
//!   splice) and renaming it onto the bus under the lock;
//! - `emit/<sink>/<method>/<block>`: writing a published chunk to a pipe or
//!   to /dev/null with splice, sendfile or read/write;
//! - `publish_exchange`: the part of a lossy publish done while holding the
//!   lock, over a chunk already at `F` (stamp, link, exchange, delete);
//! - `lossless_handoff/<block>`: a lossless producer's publish and a lossless
//!   consumer's take of one chunk, in one process;
//! - `open_current/<present|absent>`: a consumer's look at `F`;
//! - `history_publish/<depth>/<block>`: a lossy publish through the history
//!   writer, without a history and with one of 64 chunks.
//!
//! The chunker's cut decisions and the tar codec, which do no I/O, are in
//! `benches/chunker.rs` and `benches/tar_codec.rs`.
//!
//! Run with `cargo bench --bench data_path`; the bus lives in `/tmp` (ext4
//! here) unless `FILEBUS_BENCH_DIR` names another directory.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use filebus_core::testing::{
    Bus, ChunkBuilder, Current, HistoryWriter, LockFile, Sink, write_chunk,
};
use filebus_core::{DEFAULT_SLEEP_INTERVAL, Format, InputMethod, OutputMethod};

const BLOCK_SIZES: [usize; 4] = [4 << 10, 64 << 10, 1 << 20, 4 << 20];

/// The chunk size of the benches of one chunk's way through the protocol:
/// small, so that the protocol's system calls, not the copy, dominate.
const SMALL_CHUNK: usize = 4 << 10;

/// A scratch directory holding a bus.
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let base =
        std::env::var_os("FILEBUS_BENCH_DIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let dir = tempfile::Builder::new()
        .prefix("filebus-bench-")
        .tempdir_in(base)
        .expect("cannot create a scratch directory");
    let bus = dir.path().join("bus");
    (dir, bus)
}

/// A pipe kept full by a thread, as a producer's stdin would be.
struct Feeder {
    read: OwnedFd,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Feeder {
    fn new() -> Feeder {
        let (read, write) = rustix::pipe::pipe().expect("pipe");
        // A larger pipe lets big blocks arrive in fewer reads (root may exceed
        // the default 1 MiB limit).
        let _ = rustix::pipe::fcntl_setpipe_size(&write, 4 << 20);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut write = File::from(write);
            let block = vec![0x5Au8; 1 << 20];
            while !stopping.load(Ordering::Relaxed) {
                if write.write_all(&block).is_err() {
                    break;
                }
            }
        });
        Feeder {
            read,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Drain so the writer notices the flag instead of blocking.
        let mut sink = vec![0u8; 1 << 20];
        let mut reader = File::from(self.read.try_clone().expect("dup"));
        while let Some(thread) = self.thread.take() {
            while !thread.is_finished() {
                let _ = reader.read(&mut sink);
            }
            thread.join().expect("feeder panicked");
        }
    }
}

/// Fills a chunk of `block` bytes from `input` with `method` and publishes
/// it, reusing `buffer` from chunk to chunk as the producer does.
fn build_and_publish(
    bus: &Bus,
    lock: &mut LockFile,
    input: &OwnedFd,
    method: InputMethod,
    block: usize,
    buffer: &mut Vec<u8>,
) {
    let mut chunk = ChunkBuilder::with_buffer(
        bus,
        block,
        method,
        true,
        Format::Raw,
        std::mem::take(buffer),
    )
    .expect("chunk");
    while chunk.len() < block {
        match chunk.read_from(input.as_fd(), block) {
            Ok(_) => {}
            // splice is non-blocking: wait for the feeder.
            Err(rustix::io::Errno::AGAIN) => {
                let mut fds = [rustix::event::PollFd::new(
                    input,
                    rustix::event::PollFlags::IN,
                )];
                rustix::event::poll(&mut fds, None).expect("poll");
            }
            Err(errno) => panic!("cannot read the feeder pipe: {errno}"),
        }
    }
    let (temp, reused) = chunk.finish_with_buffer(bus.dir_path()).expect("finish");
    *buffer = reused;
    let guard = lock.acquire().expect("lock");
    bus.publish(temp, &guard).expect("publish");
}

/// `publish/<method>/<block>`: a producer's whole publish of one chunk of
/// `block` bytes read from a pipe kept full, by each input method: fill the
/// chunk file, take the lock, stamp, and put it at `F` over the last one.
fn publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish");
    let (_dir, path) = scratch();
    let bus = Bus::open(&path).expect("bus");
    let mut lock = bus.lock_file().expect("lock file");
    let feeder = Feeder::new();
    for block in BLOCK_SIZES {
        group.throughput(Throughput::Bytes(block as u64));
        for method in [InputMethod::Mmap, InputMethod::Write, InputMethod::Splice] {
            let id = BenchmarkId::new(format!("{method:?}").to_lowercase(), block);
            let mut buffer = Vec::new();
            group.bench_function(id, |b| {
                b.iter(|| {
                    build_and_publish(&bus, &mut lock, &feeder.read, method, block, &mut buffer)
                })
            });
        }
    }
    group.finish();
}

/// A pipe whose contents a thread throws away, as a consumer's reader would.
struct Drain {
    write: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl Drain {
    fn new() -> Drain {
        let (read, write) = rustix::pipe::pipe().expect("pipe");
        let _ = rustix::pipe::fcntl_setpipe_size(&write, 1 << 20);
        let thread = std::thread::spawn(move || {
            let mut read = File::from(read);
            let mut buffer = vec![0u8; 1 << 20];
            while read.read(&mut buffer).is_ok_and(|count| count > 0) {}
        });
        Drain {
            write,
            thread: Some(thread),
        }
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        // Closing our end would not end the reader while `write` lives; swap in /dev/null.
        let null = File::options()
            .write(true)
            .open("/dev/null")
            .expect("/dev/null");
        self.write = OwnedFd::from(null);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("drain panicked");
        }
    }
}

/// `emit/<sink>/<method>/<block>`: a consumer writing out a chunk of `block`
/// bytes already open, to a pipe a thread drains or to `/dev/null`, by each
/// output method.
fn emit(c: &mut Criterion) {
    let mut group = c.benchmark_group("emit");
    let (_dir, path) = scratch();
    let bus = Bus::open(&path).expect("bus");
    let mut lock = bus.lock_file().expect("lock file");
    let null = File::options()
        .write(true)
        .open("/dev/null")
        .expect("/dev/null");
    for block in BLOCK_SIZES {
        std::fs::write(&path, vec![0xA5u8; block]).expect("write chunk");
        let Current::Chunk(chunk) = bus.open_current().expect("open") else {
            panic!("no chunk at {}", path.display())
        };
        group.throughput(Throughput::Bytes(block as u64));
        for method in [
            OutputMethod::Splice,
            OutputMethod::Sendfile,
            OutputMethod::Write,
        ] {
            let name = method.name();
            let drain = Drain::new();
            let mut to_pipe = Sink::new(drain.write.as_fd(), method).expect("sink");
            group.bench_function(BenchmarkId::new(format!("pipe/{name}"), block), |b| {
                b.iter(|| to_pipe.emit(&chunk.file, chunk.len).expect("emit"))
            });
            assert_eq!(
                to_pipe.method(),
                method,
                "{name} fell back while writing to a pipe"
            );
            drop(to_pipe);
            drop(drain);
            let mut to_null = Sink::new(null.as_fd(), method).expect("sink");
            group.bench_function(BenchmarkId::new(format!("devnull/{name}"), block), |b| {
                b.iter(|| to_null.emit(&chunk.file, chunk.len).expect("emit"))
            });
        }
    }
    drop(lock.acquire().expect("lock"));
    group.finish();
}

/// `publish_exchange` (called `lock_and_rename` before 2026-12-03): the part
/// of a lossy publish done while holding the lock, for an empty chunk and
/// with a chunk already at `F`: lock, stamp, link as `F.__new__`, exchange
/// with `F`, delete the old chunk, unlock. Building the chunk file is not
/// measured.
fn publish_exchange(c: &mut Criterion) {
    let (_dir, path) = scratch();
    let bus = Bus::open(&path).expect("bus");
    let mut lock = bus.lock_file().expect("lock file");
    c.bench_function("publish_exchange", |b| {
        b.iter_batched(
            || {
                ChunkBuilder::new(&bus, 0, InputMethod::Write, true, Format::Raw)
                    .expect("chunk")
                    .finish(bus.dir_path())
                    .expect("finish")
            },
            |temp| {
                let guard = lock.acquire().expect("lock");
                bus.publish(temp, &guard).expect("publish");
            },
            BatchSize::SmallInput,
        )
    });
}

/// `lossless_handoff/4096`: one chunk handed from a lossless producer to a
/// lossless consumer, in one process and without their waits: the producer
/// locks, publishes the chunk if `F` is empty (`publish_if_absent`: stamp,
/// link as `F`) and unlocks; the consumer locks, opens `F`, writes it to
/// `/dev/null` (default output method), deletes it (`remove_current`),
/// unlocks and closes it (which frees the file). Each side has its own lock
/// file description, as two processes would. Writing the chunk file is not
/// measured.
fn lossless_handoff(c: &mut Criterion) {
    let mut group = c.benchmark_group("lossless_handoff");
    let (_dir, path) = scratch();
    let bus = Bus::open(&path).expect("bus");
    let mut producer_lock = bus.lock_file().expect("lock file");
    let mut consumer_lock = bus.lock_file().expect("lock file");
    let null = File::options()
        .write(true)
        .open("/dev/null")
        .expect("/dev/null");
    let mut sink = Sink::new(null.as_fd(), OutputMethod::default()).expect("sink");
    let content = vec![0xA5u8; SMALL_CHUNK];
    group.throughput(Throughput::Bytes(SMALL_CHUNK as u64));
    group.bench_function(BenchmarkId::from_parameter(SMALL_CHUNK), |b| {
        b.iter_batched(
            || write_chunk(&bus, &content, true, Format::Raw).expect("chunk"),
            |temp| {
                let guard = producer_lock.acquire().expect("lock");
                let refused = bus.publish_if_absent(temp, &guard).expect("publish");
                assert!(refused.is_none(), "F was not empty");
                drop(guard);
                let guard = consumer_lock.acquire().expect("lock");
                let Current::Chunk(chunk) = bus.open_current().expect("open") else {
                    panic!("no chunk at {}", path.display())
                };
                let written = sink.emit(&chunk.file, chunk.len).expect("emit");
                assert_eq!(written, SMALL_CHUNK as u64);
                bus.remove_current(&guard).expect("take");
                drop(guard);
                drop(chunk);
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// `open_current/present`: a consumer's look at `F` holding a 4 KiB chunk:
/// open (no symlink followed, non-blocking), `statx`, and the close when the
/// chunk is dropped. `open_current/absent`: the same look at an empty bus
/// (the open fails with `ENOENT`).
fn open_current(c: &mut Criterion) {
    let mut group = c.benchmark_group("open_current");
    let (_dir, path) = scratch();
    let bus = Bus::open(&path).expect("bus");
    std::fs::write(&path, vec![0xA5u8; SMALL_CHUNK]).expect("write chunk");
    group.bench_function("present", |b| {
        b.iter(|| match bus.open_current().expect("open") {
            Current::Chunk(chunk) => chunk,
            _ => panic!("no chunk at {}", path.display()),
        })
    });
    std::fs::remove_file(&path).expect("remove chunk");
    group.bench_function("absent", |b| {
        b.iter(|| {
            let current = bus.open_current().expect("open");
            assert!(
                matches!(current, Current::Absent),
                "a chunk at {}",
                path.display()
            );
        })
    });
    group.finish();
}

/// `history_publish/<depth>/4096`: a lossy producer's publish of a 4 KiB
/// chunk through its history writer, over a chunk already at `F`, lock
/// included. `none`: a bus without history (the writer only looks for
/// `F.history`; the rest is `publish_exchange`'s work). `64`: a history of 64
/// chunks, kept full, so that each publish also links the chunk into
/// `F.history/` and drops the entry leaving the window; nobody is named, so
/// no consumer is waited for. Writing the chunk file is not measured.
fn history_publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("history_publish");
    group.throughput(Throughput::Bytes(SMALL_CHUNK as u64));
    let content = vec![0x5Au8; SMALL_CHUNK];
    for depth in [None, Some(64)] {
        let (_dir, path) = scratch();
        let bus = Bus::open(&path).expect("bus");
        let mut lock = bus.lock_file().expect("lock file");
        let history = HistoryWriter::new(depth, DEFAULT_SLEEP_INTERVAL, true);
        let mut publish = |temp| {
            let guard = lock.acquire().expect("lock");
            history.publish(&bus, temp, &guard).expect("publish");
        };
        // Fill the window, so that the measured publishes each drop an entry.
        for _ in 0..=depth.unwrap_or(0) {
            publish(write_chunk(&bus, &content, true, Format::Raw).expect("chunk"));
        }
        assert_eq!(history.is_active(), depth.is_some());
        let label = depth.map_or_else(|| "none".to_owned(), |depth| depth.to_string());
        group.bench_function(BenchmarkId::new(label, SMALL_CHUNK), |b| {
            b.iter_batched(
                || write_chunk(&bus, &content, true, Format::Raw).expect("chunk"),
                &mut publish,
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    publish,
    emit,
    publish_exchange,
    lossless_handoff,
    open_current,
    history_publish
);
criterion_main!(benches);
