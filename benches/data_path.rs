//! Criterion benchmarks of each stage of the data path, and of the variants
//! of each stage measured against each other so the defaults are chosen by
//! evidence:
//!
//! - `publish/<method>/<block>`: building a chunk from a pipe (mmap, write or
//!   splice) and renaming it onto the bus under the lock;
//! - `emit/<sink>/<method>/<block>`: writing a published chunk to a pipe or
//!   to /dev/null with splice, sendfile or read/write;
//! - `lock_and_rename`: the part of a publish done while holding the lock.
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

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use filebus_core::testing::{Bus, ChunkBuilder, Current, LockFile, Sink};
use filebus_core::{Format, InputMethod, OutputMethod};

const BLOCK_SIZES: [usize; 4] = [4 << 10, 64 << 10, 1 << 20, 4 << 20];

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

fn lock_and_rename(c: &mut Criterion) {
    let (_dir, path) = scratch();
    let bus = Bus::open(&path).expect("bus");
    let mut lock = bus.lock_file().expect("lock file");
    c.bench_function("lock_and_rename", |b| {
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
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, publish, emit, lock_and_rename);
criterion_main!(benches);
