//! Lossy multicast: each chunk seen at `F` that was not written before,
//! without a lock.

use super::history;
use super::options::ConsumerOptions;
use super::output::{Output, looking_again};
use crate::bus::stamp;
use crate::bus::{Bus, Chunk, Current};
use crate::error::{Error, Result};
use crate::watch::Watcher;

/// Lossy multicast: emit each chunk not emitted before, without a lock.
///
/// The last emitted chunk stays open: its inode number cannot be recycled
/// while we hold it, so a new file at `F` always has a different identity.
/// (ext4 hands a freed inode number straight to the next file; a consumer
/// that only remembers the number misses chunks.)
///
/// A history directory appearing beside the bus (a producer started with
/// `--history`) turns this into the history consumer of [`history`].
pub(super) fn look_forever(
    bus: &Bus,
    watcher: &mut Watcher,
    output: &mut Output<'_>,
    options: &ConsumerOptions,
    baseline: Option<u64>,
) -> Result<()> {
    let mut last: Option<Chunk> = None;
    // The content of the last chunk, where the inode number cannot tell
    // chunks apart (see ContentDigest).
    let mut last_digest: Option<ContentDigest> = None;
    // Whether only the content tells chunks apart here (decided at the
    // first chunk; see ContentDigest).
    let mut compare_content = false;
    let mut warned_unusable = false;
    // On a FUSE or network filesystem a look for the history may be
    // answered from the client's cache of names that did not exist, and the
    // stream may end (`F` changes no more) before the cache does: there it
    // is looked for at every look. Elsewhere a producer links its history
    // before it puts a chunk at `F`, so a look when `F` changed sees it.
    let remote = bus.remote_filesystem().is_some();
    loop {
        let last_id = last.as_ref().map(|chunk| chunk.id);
        // A stat is cheaper than an open; open only when `F` changed (or
        // always, where only the content tells).
        let changed = compare_content || bus.current_id()?.is_none_or(|id| Some(id) != last_id);
        if (changed || remote) && crate::history::exists(bus) {
            return history::run(bus, watcher, output, options, last, baseline);
        }
        if changed {
            match bus.open_current()? {
                Current::Chunk(chunk)
                    if Some(chunk.id) != last_id
                        || last_digest.is_some_and(|digest| !digest.matches(&chunk)) =>
                {
                    compare_content = compare_content || ContentDigest::needed(bus, &chunk);
                    let digest = if compare_content {
                        match ContentDigest::of(&chunk) {
                            Some(digest) => Some(digest),
                            // Gone before we could read it: look again.
                            None => {
                                looking_again(bus);
                                watcher.wait_for_change()?;
                                continue;
                            }
                        }
                    } else {
                        None
                    };
                    // A chunk that is not of our format is skipped, once.
                    match output
                        .content(bus, &chunk)
                        .and_then(|content| output.emit(&chunk, &content))
                    {
                        Ok(()) => {}
                        // One that vanished is missed, like any chunk
                        // replaced before we looked; it is not remembered as
                        // seen: on a path-based FUSE filesystem (bindfs) the
                        // identity `fstat` gave is that of whatever is at `F`
                        // by then, which may be a newer chunk, not yet read.
                        Err(Error::ChunkVanished) => {
                            looking_again(bus);
                            watcher.wait_for_change()?;
                            continue;
                        }
                        Err(error @ Error::BadBusPath { .. }) => log::warn!("{error}: skipped"),
                        Err(error) => return Err(error),
                    }
                    last = Some(chunk);
                    last_digest = digest;
                    warned_unusable = false;
                }
                Current::Unusable(kind) if !warned_unusable => {
                    log::warn!(
                        "{} is {kind}, not a chunk: waiting for the next one",
                        bus.path().display()
                    );
                    warned_unusable = true;
                }
                _ => {}
            }
        }
        watcher.wait_for_change()?;
    }
}

/// What a lossy consumer keeps of the last chunk it wrote where the inode
/// number cannot tell two chunks apart: a shared filesystem whose server
/// keeps no open state (NFSv3) gives a new chunk the number of one deleted
/// while we still had it open, and without extended attributes there is no
/// stamp to compare. Modification times have a server's granularity (a
/// second on some), and chunks of a burst often have one size: what is left
/// is the content. Reading it costs one more read of each chunk, and of the
/// chunk at `F` at each look while nothing new comes; it is done only there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ContentDigest {
    len: u64,
    hash: u64,
}

impl ContentDigest {
    /// Whether only the content tells chunks apart: the bus is on a shared
    /// filesystem without extended attributes.
    fn needed(bus: &Bus, chunk: &Chunk) -> bool {
        bus.remote_filesystem().is_some() && stamp::unsupported(&chunk.file)
    }

    fn of(chunk: &Chunk) -> Option<ContentDigest> {
        use std::hash::Hasher;
        let mut hasher = std::hash::DefaultHasher::new();
        // On the stack: this runs at every look while nothing new comes.
        let mut buffer = [0u8; 16 * 1024];
        let mut offset = 0u64;
        while offset < chunk.len {
            let want = usize::try_from(chunk.len - offset)
                .unwrap_or(usize::MAX)
                .min(buffer.len());
            match rustix::io::pread(&chunk.file, &mut buffer[..want], offset) {
                Ok(0) => break,
                Ok(read) => {
                    hasher.write(&buffer[..read]);
                    offset += read as u64;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return None,
            }
        }
        Some(ContentDigest {
            len: offset,
            hash: hasher.finish(),
        })
    }

    /// Whether `chunk` has this content (a chunk that cannot be read does
    /// not: opening it again tells more).
    fn matches(&self, chunk: &Chunk) -> bool {
        chunk.len == self.len && ContentDigest::of(chunk) == Some(*self)
    }
}
