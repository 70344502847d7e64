//! The `tar` format of a chunk (`--format tar`): what filebus 0.0.x wrote at
//! `F`, a POSIX tar archive with one regular-file member named `from_server`
//! whose content is the chunk.
//!
//! Writing: [`encode_header`], then the content, then [`trailer`]. The result
//! is a PAX (POSIX.1-2001) archive that `tar -xOf F from_server`, Python's
//! `tarfile` (so the 0.0.x reference) and the `tar` crate all read. When a
//! [`ChunkStamp`] is given, a PAX extended header before the member carries
//! it in two vendor records, named after the extended attributes that carry
//! the same stamp in the raw format ([`crate::bus::stamp`]):
//!
//! | record         | value (decimal ASCII)                                   |
//! |----------------|---------------------------------------------------------|
//! | `FILEBUS.seq`  | the chunk's sequence number                             |
//! | `FILEBUS.time` | when it was published: nanoseconds since the Unix epoch |
//!
//! Readers ignore records they do not know (GNU tar prints "Ignoring unknown
//! extended header keyword" on standard error and goes on;
//! `--warning=no-unknown-keyword` silences it).
//!
//! Reading: [`parse`] reads the headers, never the content, and says where
//! the member's content lies, so the consumer can splice it from the file
//! without a copy. `F` can be written by anyone with write access to its
//! directory, so the parser treats it as hostile: it never panics, every loop
//! advances by at least one 512-byte block, and no allocation exceeds the
//! bytes left in the file (nor [`MAX_EXTENSION_LEN`]).
//!
//! What it accepts, for the member `from_server`: ustar, GNU and old (v7)
//! headers; octal or base-256 sizes; GNU long names (`L`) and long link names
//! (`K`, ignored); PAX extended headers (`x`) whose `path` and `size` records
//! override the header's; PAX global headers (`g`), ignored. Where tar readers
//! are known to disagree about an archive (GNU tar, Python's `tarfile` and the
//! `tar` crate read it as different members), it rejects the archive rather
//! than pick one reading:
//!
//! - two extended headers of one kind for one member, or both a GNU long name
//!   and a PAX `path`;
//! - a global header between an extended header and its member, or one that
//!   sets `path`, `size` or sparse-file records (GNU tar and Python apply
//!   them to the member, the `tar` crate ignores them);
//! - a PAX record that is malformed, holds a newline in its value, or repeats
//!   a record filebus reads; numbers with signs or other decorations;
//! - sparse files in any form;
//! - anything after the member but zero blocks. The 0.0.x reference writes
//!   exactly one member; Python's `tarfile` would print every member named
//!   `from_server`, the `tar` crate would show the first. A second member is
//!   an error, not something to drop in silence.
//!
//! The padding after the content and the end-of-archive blocks may be missing
//! (as Python's `tarfile` and GNU tar allow); a partial block at the end of
//! the file is ignored.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The name of the one member of a chunk archive.
pub const MEMBER_NAME: &str = "from_server";
/// The PAX record that carries [`ChunkStamp::sequence`].
pub const SEQUENCE_KEY: &str = "FILEBUS.seq";
/// The PAX record that carries [`ChunkStamp::published_ns`].
pub const PUBLISHED_NS_KEY: &str = "FILEBUS.time";
/// The largest extended header (PAX records, GNU long name) the parser reads.
pub const MAX_EXTENSION_LEN: u64 = 1 << 20;

/// The size of a tar block: headers are one block, content is padded to one.
const BLOCK: u64 = 512;
/// The largest number an 11-digit octal field holds (8 GiB - 1).
const MAX_OCTAL_11: u64 = 0o777_7777_7777;
/// The name Python's `tarfile` gives its PAX extended headers.
const PAX_HEADER_NAME: &[u8] = b"././@PaxHeader";

/// Metadata a chunk archive may carry besides its content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkStamp {
    /// The chunk's sequence number (`FILEBUS.seq`).
    pub sequence: Option<u64>,
    /// When the chunk was published, in nanoseconds since the Unix epoch
    /// (`FILEBUS.time`).
    pub published_ns: Option<u64>,
}

/// Where the content of a chunk archive lies in the file, and its stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TarChunk {
    /// The offset of the content's first byte in the file.
    pub content_offset: u64,
    /// The content's length in bytes.
    pub content_len: u64,
    /// The metadata found in the member's PAX extended header.
    pub stamp: ChunkStamp,
}

impl TarChunk {
    /// The content's byte range in the file.
    pub fn content_range(&self) -> std::ops::Range<u64> {
        self.content_offset..self.content_offset + self.content_len
    }
}

/// Why a file is not a chunk archive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TarError {
    /// Reading the file failed (it may have been truncated under us).
    #[error("cannot read the tar header at offset {offset}")]
    Read {
        /// Where the read started.
        offset: u64,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The file has no bytes at all.
    #[error("the file is empty, not a tar archive")]
    Empty,
    /// A header block is cut short by the end of the file.
    #[error("the tar header at offset {offset} is cut short: the file ends at {file_len}")]
    TruncatedHeader {
        /// Where the header starts.
        offset: u64,
        /// The file's length.
        file_len: u64,
    },
    /// A header's checksum does not match its bytes: not a tar header.
    #[error(
        "the tar header at offset {offset} has a bad checksum \
         (recorded {recorded}, computed {computed}): not a tar archive, or a corrupt one"
    )]
    BadChecksum {
        /// Where the header starts.
        offset: u64,
        /// The checksum in the header.
        recorded: u64,
        /// The sum of the header's bytes.
        computed: u64,
    },
    /// A numeric header field is not a number this parser accepts.
    #[error(
        "the tar header at offset {offset} has a {field} field `{}` that is not a number",
        raw.escape_ascii()
    )]
    BadNumber {
        /// Where the header starts.
        offset: u64,
        /// Which field ("size", "checksum").
        field: &'static str,
        /// The field's bytes.
        raw: Vec<u8>,
    },
    /// A header announces more bytes than the file holds.
    #[error(
        "the tar header at offset {offset} announces {size} bytes of {what}, \
         past the end of the file ({file_len} bytes)"
    )]
    SizeBeyondFile {
        /// Where the header starts.
        offset: u64,
        /// What the bytes are ("content", "extended header data").
        what: &'static str,
        /// The size the header announces.
        size: u64,
        /// The file's length.
        file_len: u64,
    },
    /// An extended header is larger than any sane writer makes.
    #[error(
        "the extended header at offset {offset} has {size} bytes, \
         more than the limit of {limit}"
    )]
    ExtensionTooLarge {
        /// Where the header starts.
        offset: u64,
        /// Its size.
        size: u64,
        /// [`MAX_EXTENSION_LEN`].
        limit: u64,
    },
    /// A PAX record does not follow the `"<length> <key>=<value>\n"` syntax.
    #[error(
        "the PAX header at offset {offset} has a malformed record at byte {position}: {problem}"
    )]
    BadPaxRecord {
        /// Where the header starts.
        offset: u64,
        /// Where the record starts in the header's data.
        position: usize,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A PAX record that filebus reads appears twice in one header.
    #[error("the PAX header at offset {offset} has two `{key}` records")]
    DuplicatePaxRecord {
        /// Where the header starts.
        offset: u64,
        /// The repeated key.
        key: String,
    },
    /// A numeric PAX record is not a plain decimal number.
    #[error(
        "the PAX header at offset {offset} has a `{key}` record `{}` that is not a decimal number",
        value.escape_ascii()
    )]
    BadPaxNumber {
        /// Where the header starts.
        offset: u64,
        /// The record's key.
        key: String,
        /// The record's value.
        value: Vec<u8>,
    },
    /// A PAX record describes a sparse file, which a chunk never is.
    #[error("the PAX header at offset {offset} describes a sparse file (`{key}`): not supported")]
    SparsePax {
        /// Where the header starts.
        offset: u64,
        /// The sparse-file key.
        key: String,
    },
    /// A PAX global header sets a record that would change the member.
    #[error(
        "the PAX global header at offset {offset} sets `{key}`, which tar readers \
         disagree on applying to the member: not supported"
    )]
    GlobalOverride {
        /// Where the header starts.
        offset: u64,
        /// The key.
        key: String,
    },
    /// A PAX global header sits between an extended header and its member.
    #[error(
        "the PAX global header at offset {offset} separates an extended header from its member"
    )]
    MisplacedGlobalHeader {
        /// Where the global header starts.
        offset: u64,
    },
    /// Two extended headers of one kind describe the same member.
    #[error("the tar header at offset {offset} is a second {what} for the same member")]
    DuplicateExtension {
        /// Where the second header starts.
        offset: u64,
        /// Its kind ("PAX extended header", "GNU long name").
        what: &'static str,
    },
    /// Both a GNU long name and a PAX `path` name the member.
    #[error(
        "the member at offset {offset} is named by both a GNU long name and a PAX `path`, \
         on which tar readers disagree"
    )]
    ConflictingNames {
        /// Where the member's header starts.
        offset: u64,
    },
    /// A GNU long name has bytes after its terminating NUL.
    #[error("the GNU long name at offset {offset} has bytes after its terminating NUL")]
    BadLongName {
        /// Where the long name's header starts.
        offset: u64,
    },
    /// Extended headers are followed by the end of the archive.
    #[error("the extended header at offset {offset} is not followed by a member")]
    DanglingExtension {
        /// Where the first pending extended header starts.
        offset: u64,
    },
    /// The archive ends before any member.
    #[error("the tar archive has no member (it ends at offset {offset})")]
    NoMember {
        /// Where the end-of-archive block (or the end of the file) is.
        offset: u64,
    },
    /// The member has another name.
    #[error("the member `{}` at offset {offset} is not `from_server`", name.escape_ascii())]
    WrongName {
        /// Where the member's header starts.
        offset: u64,
        /// Its name.
        name: Vec<u8>,
    },
    /// The member is not a regular file.
    #[error("the member `from_server` at offset {offset} is {kind}, not a regular file")]
    NotRegular {
        /// Where the member's header starts.
        offset: u64,
        /// What it is ("a directory").
        kind: &'static str,
    },
    /// Something other than zero blocks follows the member.
    #[error(
        "data follows the member at offset {offset}: a second member or garbage \
         (a chunk archive holds exactly one member)"
    )]
    TrailingData {
        /// Where the first non-zero block after the member starts.
        offset: u64,
    },
}

/// A source of header bytes at given offsets: a [`File`] (read with
/// `pread(2)`) or a byte slice.
pub trait ReadAt {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let bytes = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(buf.len())?))
            .and_then(|range| self.get(range))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Writing

/// The bytes that precede a chunk's content in its archive: a PAX extended
/// header when `stamp` has anything to say (or the content is 8 GiB or
/// more), then the ustar header of the regular file `from_server`, mode
/// 0644, owned by 0:0, modified at `mtime_secs` (clamped to the largest
/// time the field holds, in the year 2242).
pub fn encode_header(content_len: u64, stamp: &ChunkStamp, mtime_secs: u64) -> Vec<u8> {
    let mut records = Vec::new();
    if content_len > MAX_OCTAL_11 {
        push_pax_record(&mut records, "size", content_len);
    }
    if let Some(sequence) = stamp.sequence {
        push_pax_record(&mut records, SEQUENCE_KEY, sequence);
    }
    if let Some(published_ns) = stamp.published_ns {
        push_pax_record(&mut records, PUBLISHED_NS_KEY, published_ns);
    }
    let mtime = mtime_secs.min(MAX_OCTAL_11);
    let mut out = Vec::with_capacity(3 * BLOCK as usize + records.len());
    if !records.is_empty() {
        out.extend_from_slice(&ustar_header(
            PAX_HEADER_NAME,
            b'x',
            records.len() as u64,
            mtime,
        ));
        out.extend_from_slice(&records);
        out.resize(out.len() + padding(records.len() as u64), 0);
    }
    // With a PAX `size` record, readers ignore the header's field.
    let size_field = if content_len > MAX_OCTAL_11 {
        0
    } else {
        content_len
    };
    out.extend_from_slice(&ustar_header(
        MEMBER_NAME.as_bytes(),
        b'0',
        size_field,
        mtime,
    ));
    out
}

/// The bytes that follow a chunk's content of `content_len` bytes: zeros up
/// to the next block, then the two zero blocks that end an archive.
pub fn trailer(content_len: u64) -> Vec<u8> {
    vec![0; padding(content_len) + 2 * BLOCK as usize]
}

/// A whole chunk archive in memory: header, `content`, trailer.
pub fn encode(content: &[u8], stamp: &ChunkStamp, mtime_secs: u64) -> Vec<u8> {
    let len = content.len() as u64;
    let mut out = encode_header(len, stamp, mtime_secs);
    out.extend_from_slice(content);
    out.extend_from_slice(&trailer(len));
    out
}

/// Zero bytes after `len` bytes of data up to the next block boundary.
fn padding(len: u64) -> usize {
    ((BLOCK - len % BLOCK) % BLOCK) as usize
}

/// Appends the record `"<length> <key>=<value>\n"`, whose length counts its
/// own digits.
fn push_pax_record(records: &mut Vec<u8>, key: &str, value: u64) {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len != body.len() + len.to_string().len() {
        len = body.len() + len.to_string().len();
    }
    records.extend_from_slice(format!("{len}{body}").as_bytes());
}

/// A ustar header block, laid out as GNU tar and Python's `tarfile` write it.
fn ustar_header(name: &[u8], typeflag: u8, size: u64, mtime: u64) -> [u8; BLOCK as usize] {
    let mut block = [0u8; BLOCK as usize];
    block[..name.len()].copy_from_slice(name);
    write_octal(&mut block[100..108], 0o644);
    write_octal(&mut block[108..116], 0);
    write_octal(&mut block[116..124], 0);
    write_octal(&mut block[124..136], size);
    write_octal(&mut block[136..148], mtime);
    block[156] = typeflag;
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    write_octal(&mut block[329..337], 0);
    write_octal(&mut block[337..345], 0);
    let sum = checksum(&block);
    // Six digits, a NUL and a space, as every tar writes it.
    block[148..154].copy_from_slice(format!("{sum:06o}").as_bytes());
    block[154] = 0;
    block[155] = b' ';
    block
}

/// Writes `value` as zero-padded octal digits followed by a NUL.
fn write_octal(field: &mut [u8], value: u64) {
    let digits = format!("{value:0width$o}", width = field.len() - 1);
    field[..digits.len()].copy_from_slice(digits.as_bytes());
    field[field.len() - 1] = 0;
}

/// The sum of a header's bytes with the checksum field taken as spaces.
fn checksum(block: &[u8; BLOCK as usize]) -> u64 {
    let spaces = 8 * u64::from(b' ');
    block[..148]
        .iter()
        .chain(&block[156..])
        .map(|&byte| u64::from(byte))
        .sum::<u64>()
        + spaces
}

// ---------------------------------------------------------------------------
// Reading

/// Parses the chunk archive `source` of `file_len` bytes, reading its headers
/// only, and says where the content of its member `from_server` lies.
pub fn parse<R: ReadAt + ?Sized>(source: &R, file_len: u64) -> Result<TarChunk, TarError> {
    Parser { source, file_len }.parse()
}

/// [`parse`] for an archive in memory.
pub fn parse_bytes(bytes: &[u8]) -> Result<TarChunk, TarError> {
    parse(bytes, bytes.len() as u64)
}

struct Parser<'a, R: ?Sized> {
    source: &'a R,
    file_len: u64,
}

/// How a header's magic says to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// POSIX ustar: `ustar\0` `00`; the name may have a prefix.
    Ustar,
    /// GNU: `ustar ` ` \0`.
    Gnu,
    /// Anything else: the 1979 (v7) layout, which knows no extended headers.
    Old,
}

/// Extended headers read so far for the member that follows them.
#[derive(Default)]
struct Pending {
    /// Where the first of them starts.
    first_offset: Option<u64>,
    long_name: Option<Vec<u8>>,
    long_link: bool,
    pax: Option<PaxInfo>,
}

/// What filebus takes from a member's PAX extended header.
#[derive(Default)]
struct PaxInfo {
    path: Option<Vec<u8>>,
    size: Option<u64>,
    stamp: ChunkStamp,
}

impl<R: ReadAt + ?Sized> Parser<'_, R> {
    fn parse(&self) -> Result<TarChunk, TarError> {
        if self.file_len == 0 {
            return Err(TarError::Empty);
        }
        // Extended headers (`x`, `L`, `K`) describe the member that follows
        // them and global headers (`g`) the whole archive: collect them up
        // to the first header of another type, the member.
        let mut pending = Pending::default();
        let mut offset = 0u64;
        loop {
            let Some(block) = self.header_at(offset)? else {
                return Err(match pending.first_offset {
                    Some(first) => TarError::DanglingExtension { offset: first },
                    None => TarError::NoMember { offset },
                });
            };
            let format = match &block[257..265] {
                b"ustar\x0000" => Format::Ustar,
                b"ustar  \0" => Format::Gnu,
                _ => Format::Old,
            };
            let typeflag = block[156];
            let extension = format != Format::Old && matches!(typeflag, b'x' | b'L' | b'K');
            if typeflag == b'g' || extension {
                let size = self.size_of(&block, offset)?;
                let data_offset = offset + BLOCK;
                self.check_within_file(offset, data_offset, size, "extended header data")?;
                let next = next_header(data_offset, size);
                if typeflag == b'g' {
                    if pending.first_offset.is_some() {
                        return Err(TarError::MisplacedGlobalHeader { offset });
                    }
                    let data = self.extension_data(offset, data_offset, size)?;
                    check_global(&data, offset)?;
                    offset = next;
                    continue;
                }
                pending.first_offset.get_or_insert(offset);
                match typeflag {
                    b'x' if pending.pax.is_some() => {
                        return Err(TarError::DuplicateExtension {
                            offset,
                            what: "PAX extended header",
                        });
                    }
                    b'x' => {
                        let data = self.extension_data(offset, data_offset, size)?;
                        pending.pax = Some(read_pax(&data, offset)?);
                    }
                    b'L' if pending.long_name.is_some() => {
                        return Err(TarError::DuplicateExtension {
                            offset,
                            what: "GNU long name",
                        });
                    }
                    b'L' => {
                        let data = self.extension_data(offset, data_offset, size)?;
                        pending.long_name = Some(long_name(data, offset)?);
                    }
                    _ if pending.long_link => {
                        return Err(TarError::DuplicateExtension {
                            offset,
                            what: "GNU long link name",
                        });
                    }
                    // A link name means nothing for a regular file.
                    _ => pending.long_link = true,
                }
                offset = next;
                continue;
            }
            return self.member(&block, format, offset, pending);
        }
    }

    /// The member's header at `offset`, with the extended headers before it.
    fn member(
        &self,
        block: &[u8; BLOCK as usize],
        format: Format,
        offset: u64,
        pending: Pending,
    ) -> Result<TarChunk, TarError> {
        // The header's size field is checked even when PAX overrides it, as
        // every reader does.
        let header_size = self.size_of(block, offset)?;
        let pax = pending.pax.unwrap_or_default();
        let name = match (pax.path, pending.long_name) {
            (Some(_), Some(_)) => return Err(TarError::ConflictingNames { offset }),
            (Some(name), None) | (None, Some(name)) => name,
            (None, None) => header_name(block, format),
        };
        if name != MEMBER_NAME.as_bytes() {
            return Err(TarError::WrongName { offset, name });
        }
        let typeflag = block[156];
        if !matches!(typeflag, b'0' | 0 | b'7') {
            return Err(TarError::NotRegular {
                offset,
                kind: describe_type(typeflag, format),
            });
        }
        let content_len = pax.size.unwrap_or(header_size);
        let content_offset = offset + BLOCK;
        self.check_within_file(offset, content_offset, content_len, "content")?;
        let next = next_header(content_offset, content_len);
        if next
            .checked_add(BLOCK)
            .is_some_and(|end| end <= self.file_len)
        {
            let mut after = [0u8; BLOCK as usize];
            self.read_at(&mut after, next)?;
            if after.iter().any(|&byte| byte != 0) {
                return Err(TarError::TrailingData { offset: next });
            }
        }
        Ok(TarChunk {
            content_offset,
            content_len,
            stamp: pax.stamp,
        })
    }

    /// The header block at `offset`, or `None` at the end of the archive (the
    /// end of the file or a zero block). Its checksum is verified.
    fn header_at(&self, offset: u64) -> Result<Option<[u8; BLOCK as usize]>, TarError> {
        if offset >= self.file_len {
            return Ok(None);
        }
        if self.file_len - offset < BLOCK {
            return Err(TarError::TruncatedHeader {
                offset,
                file_len: self.file_len,
            });
        }
        let mut block = [0u8; BLOCK as usize];
        self.read_at(&mut block, offset)?;
        if block.iter().all(|&byte| byte == 0) {
            return Ok(None);
        }
        let recorded = parse_octal(&block[148..156]).ok_or_else(|| TarError::BadNumber {
            offset,
            field: "checksum",
            raw: block[148..156].to_vec(),
        })?;
        let computed = checksum(&block);
        if recorded != computed {
            return Err(TarError::BadChecksum {
                offset,
                recorded,
                computed,
            });
        }
        Ok(Some(block))
    }

    fn size_of(&self, block: &[u8; BLOCK as usize], offset: u64) -> Result<u64, TarError> {
        let raw = &block[124..136];
        parse_number(raw).ok_or_else(|| TarError::BadNumber {
            offset,
            field: "size",
            raw: raw.to_vec(),
        })
    }

    /// Checks that `size` bytes from `start` are in the file.
    fn check_within_file(
        &self,
        offset: u64,
        start: u64,
        size: u64,
        what: &'static str,
    ) -> Result<(), TarError> {
        if start
            .checked_add(size)
            .is_none_or(|end| end > self.file_len)
        {
            return Err(TarError::SizeBeyondFile {
                offset,
                what,
                size,
                file_len: self.file_len,
            });
        }
        Ok(())
    }

    /// The data of the extended header at `offset`, already known to be in
    /// the file.
    fn extension_data(&self, offset: u64, start: u64, size: u64) -> Result<Vec<u8>, TarError> {
        if size > MAX_EXTENSION_LEN {
            return Err(TarError::ExtensionTooLarge {
                offset,
                size,
                limit: MAX_EXTENSION_LEN,
            });
        }
        let mut data = vec![0; size as usize];
        self.read_at(&mut data, start)?;
        Ok(data)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), TarError> {
        self.source
            .read_exact_at(buf, offset)
            .map_err(|source| TarError::Read { offset, source })
    }
}

/// Where the header after `size` bytes of data at `start` begins (saturating:
/// a result past the file's end only means "no more headers").
fn next_header(start: u64, size: u64) -> u64 {
    start
        .saturating_add(size)
        .saturating_add(padding(size) as u64)
}

/// The name in the header itself: for ustar, `prefix/name` when the prefix
/// is set.
fn header_name(block: &[u8; BLOCK as usize], format: Format) -> Vec<u8> {
    let name = until_nul(&block[..100]);
    let prefix = until_nul(&block[345..500]);
    if format == Format::Ustar && !prefix.is_empty() {
        [prefix, b"/", name].concat()
    } else {
        name.to_vec()
    }
}

/// A GNU long name: the name and at most one terminating NUL.
fn long_name(mut data: Vec<u8>, offset: u64) -> Result<Vec<u8>, TarError> {
    if data.last() == Some(&0) {
        data.pop();
    }
    if data.contains(&0) {
        return Err(TarError::BadLongName { offset });
    }
    Ok(data)
}

/// What a type flag means, for an error message.
fn describe_type(typeflag: u8, format: Format) -> &'static str {
    match typeflag {
        b'1' => "a hard link",
        b'2' => "a symbolic link",
        b'3' => "a character device",
        b'4' => "a block device",
        b'5' => "a directory",
        b'6' => "a FIFO",
        b'S' => "a GNU sparse file",
        b'D' => "a GNU directory dump",
        b'M' => "a GNU multi-volume continuation",
        b'V' => "a GNU volume label",
        b'x' | b'L' | b'K' if format == Format::Old => "an extended header without ustar magic",
        _ => "a member of an unknown type",
    }
}

fn until_nul(field: &[u8]) -> &[u8] {
    match field.iter().position(|&byte| byte == 0) {
        Some(end) => &field[..end],
        None => field,
    }
}

/// A numeric header field: octal digits, or GNU base-256 (first byte 0x80,
/// then a big-endian number; 0xff, a negative number, is refused).
fn parse_number(field: &[u8]) -> Option<u64> {
    match field.first() {
        Some(0x80) => field[1..].iter().try_fold(0u64, |value, &byte| {
            value.checked_mul(256)?.checked_add(u64::from(byte))
        }),
        Some(byte) if byte & 0x80 != 0 => None,
        _ => parse_octal(field),
    }
}

/// Octal digits, up to the first NUL, between optional ASCII white space.
fn parse_octal(field: &[u8]) -> Option<u64> {
    let digits = until_nul(field).trim_ascii();
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &byte| {
        if !(b'0'..=b'7').contains(&byte) {
            return None;
        }
        value.checked_mul(8)?.checked_add(u64::from(byte - b'0'))
    })
}

/// Plain decimal digits, as PAX numeric records hold.
fn parse_decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |number, &byte| {
        if !byte.is_ascii_digit() {
            return None;
        }
        number.checked_mul(10)?.checked_add(u64::from(byte - b'0'))
    })
}

/// A PAX record's key and value.
type PaxRecord<'a> = (&'a [u8], &'a [u8]);

/// The records `"<length> <key>=<value>\n"` of a PAX header's data, where
/// `<length>` counts the whole record. Newlines inside a record are refused:
/// some readers (the `tar` crate) split records at newlines.
fn pax_records(data: &[u8], offset: u64) -> Result<Vec<PaxRecord<'_>>, TarError> {
    let mut records = Vec::new();
    let mut position = 0;
    while position < data.len() {
        let bad = |problem| TarError::BadPaxRecord {
            offset,
            position,
            problem,
        };
        let rest = &data[position..];
        let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
        if digits == 0 {
            return Err(bad("it does not start with its length"));
        }
        if rest.get(digits) != Some(&b' ') {
            return Err(bad("its length is not followed by a space"));
        }
        let len = rest[..digits].iter().try_fold(0usize, |len, &byte| {
            len.checked_mul(10)?.checked_add(usize::from(byte - b'0'))
        });
        let Some(len) = len.filter(|&len| len <= rest.len()) else {
            return Err(bad("its length runs past the end of the header"));
        };
        if len < digits + 2 || rest[len - 1] != b'\n' {
            return Err(bad("its length does not end at a newline"));
        }
        let text = &rest[digits + 1..len - 1];
        if text.contains(&b'\n') {
            return Err(bad("it holds a newline"));
        }
        let Some(equals) = text.iter().position(|&byte| byte == b'=') else {
            return Err(bad("it has no `=`"));
        };
        if equals == 0 {
            return Err(bad("its key is empty"));
        }
        records.push((&text[..equals], &text[equals + 1..]));
        position += len;
    }
    Ok(records)
}

/// The records of a member's PAX extended header that filebus reads.
fn read_pax(data: &[u8], offset: u64) -> Result<PaxInfo, TarError> {
    let mut info = PaxInfo::default();
    let mut seen: Vec<&[u8]> = Vec::new();
    for (key, value) in pax_records(data, offset)? {
        if key.starts_with(b"GNU.sparse.") {
            return Err(TarError::SparsePax {
                offset,
                key: String::from_utf8_lossy(key).into_owned(),
            });
        }
        let read = [
            b"path".as_slice(),
            b"size",
            SEQUENCE_KEY.as_bytes(),
            PUBLISHED_NS_KEY.as_bytes(),
        ];
        if !read.contains(&key) {
            continue;
        }
        if seen.contains(&key) {
            return Err(TarError::DuplicatePaxRecord {
                offset,
                key: String::from_utf8_lossy(key).into_owned(),
            });
        }
        seen.push(key);
        if key == b"path" {
            info.path = Some(value.to_vec());
            continue;
        }
        let number = parse_decimal(value).ok_or_else(|| TarError::BadPaxNumber {
            offset,
            key: String::from_utf8_lossy(key).into_owned(),
            value: value.to_vec(),
        })?;
        match key {
            b"size" => info.size = Some(number),
            key if key == SEQUENCE_KEY.as_bytes() => info.stamp.sequence = Some(number),
            _ => info.stamp.published_ns = Some(number),
        }
    }
    Ok(info)
}

/// Checks a PAX global header: well formed, and silent about the member.
fn check_global(data: &[u8], offset: u64) -> Result<(), TarError> {
    for (key, _) in pax_records(data, offset)? {
        if key == b"path" || key == b"size" || key.starts_with(b"GNU.sparse.") {
            return Err(TarError::GlobalOverride {
                offset,
                key: String::from_utf8_lossy(key).into_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(sequence: u64, published_ns: u64) -> ChunkStamp {
        ChunkStamp {
            sequence: Some(sequence),
            published_ns: Some(published_ns),
        }
    }

    fn content_of<'a>(archive: &'a [u8], chunk: &TarChunk) -> &'a [u8] {
        &archive[chunk.content_offset as usize..][..chunk.content_len as usize]
    }

    /// A header block with `name`, `typeflag`, `size` and `magic`
    /// (`b"ustar\x0000"`, `b"ustar  \0"` or zeros for v7), checksum set.
    fn header(name: &[u8], typeflag: u8, size: u64, magic: &[u8; 8]) -> Vec<u8> {
        let mut block = ustar_header(name, typeflag, size, 0);
        block[257..265].copy_from_slice(magic);
        reseal(&mut block);
        block.to_vec()
    }

    fn reseal(block: &mut [u8]) {
        let block: &mut [u8; 512] = block.try_into().expect("a header is one block");
        let sum = checksum(block);
        block[148..154].copy_from_slice(format!("{sum:06o}").as_bytes());
        block[154] = 0;
        block[155] = b' ';
    }

    const USTAR: &[u8; 8] = b"ustar\x0000";
    const GNU: &[u8; 8] = b"ustar  \0";
    const V7: &[u8; 8] = &[0; 8];

    /// An archive: extended headers (typeflag, data), then a member with a
    /// header size of `content.len()`, then two zero blocks.
    fn archive(
        extensions: &[(u8, &[u8])],
        name: &[u8],
        typeflag: u8,
        magic: &[u8; 8],
        content: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        for (flag, data) in extensions {
            out.extend(header(b"ext", *flag, data.len() as u64, USTAR));
            out.extend_from_slice(data);
            out.resize(out.len() + padding(data.len() as u64), 0);
        }
        out.extend(header(name, typeflag, content.len() as u64, magic));
        out.extend_from_slice(content);
        out.extend(trailer(content.len() as u64));
        out
    }

    fn record(key: &str, value: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while len != body.len() + len.to_string().len() {
            len = body.len() + len.to_string().len();
        }
        out.extend_from_slice(format!("{len}{body}").as_bytes());
        out
    }

    #[test]
    fn round_trip_without_stamp_is_a_plain_ustar_archive() {
        let bytes = encode(b"hello", &ChunkStamp::default(), 1_700_000_000);
        assert_eq!(bytes.len(), 512 + 512 + 1024);
        let chunk = parse_bytes(&bytes).expect("our own archive parses");
        assert_eq!(chunk.content_offset, 512);
        assert_eq!(content_of(&bytes, &chunk), b"hello");
        assert_eq!(chunk.stamp, ChunkStamp::default());
    }

    #[test]
    fn round_trip_carries_the_stamp() {
        let bytes = encode(b"hello", &stamp(42, 1_700_000_000_123_456_789), 0);
        let chunk = parse_bytes(&bytes).expect("our own archive parses");
        assert_eq!(content_of(&bytes, &chunk), b"hello");
        assert_eq!(chunk.stamp, stamp(42, 1_700_000_000_123_456_789));
    }

    #[test]
    fn round_trip_of_empty_and_block_sized_content() {
        for len in [0usize, 1, 511, 512, 513, 4096] {
            let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let bytes = encode(&content, &stamp(len as u64, 7), 0);
            assert_eq!(bytes.len() % 512, 0);
            let chunk = parse_bytes(&bytes).expect("our own archive parses");
            assert_eq!(content_of(&bytes, &chunk), content.as_slice());
        }
    }

    #[test]
    fn pax_record_lengths_count_their_own_digits() {
        for value in [0u64, 9, 99, 999_999, u64::MAX] {
            let mut records = Vec::new();
            push_pax_record(&mut records, "k", value);
            let parsed = pax_records(&records, 0).expect("our record is well formed");
            assert_eq!(
                parsed,
                vec![(b"k".as_slice(), value.to_string().as_bytes())]
            );
        }
        // Eight bytes after the length make a 9-byte record; nine make an
        // 11-byte one, as 10 needs two digits.
        let mut records = Vec::new();
        push_pax_record(&mut records, "ab", 123);
        push_pax_record(&mut records, "abc", 123);
        assert_eq!(records, b"9 ab=123\n11 abc=123\n");
    }

    #[test]
    fn huge_content_gets_a_pax_size_record() {
        let len = MAX_OCTAL_11 + 1;
        let mut bytes = encode_header(len, &ChunkStamp::default(), 0);
        let header_len = bytes.len() as u64;
        // Parse as if the content were there: only the header is read.
        bytes.resize(bytes.len() + 512, 0);
        let chunk = parse(bytes.as_slice(), header_len + len).expect("headers parse");
        assert_eq!(chunk.content_len, len);
        assert_eq!(chunk.content_offset, header_len);
    }

    #[test]
    fn accepts_gnu_and_v7_headers() {
        for magic in [GNU, V7] {
            let bytes = archive(&[], b"from_server", b'0', magic, b"data");
            let chunk = parse_bytes(&bytes).expect("accepted");
            assert_eq!(content_of(&bytes, &chunk), b"data");
        }
        let old_regular = archive(&[], b"from_server", 0, V7, b"data");
        assert!(parse_bytes(&old_regular).is_ok());
        let contiguous = archive(&[], b"from_server", b'7', USTAR, b"data");
        assert!(parse_bytes(&contiguous).is_ok());
    }

    #[test]
    fn accepts_base_256_sizes() {
        let mut bytes = archive(&[], b"from_server", b'0', GNU, b"data");
        let mut size = [0u8; 12];
        size[0] = 0x80;
        size[11] = 4;
        bytes[124..136].copy_from_slice(&size);
        reseal(&mut bytes[..512]);
        let chunk = parse_bytes(&bytes).expect("accepted");
        assert_eq!(content_of(&bytes, &chunk), b"data");
    }

    #[test]
    fn accepts_a_gnu_long_name_with_or_without_its_nul() {
        for name in [b"from_server\0".as_slice(), b"from_server"] {
            let bytes = archive(&[(b'L', name)], b"././@LongLink", b'0', GNU, b"data");
            let chunk = parse_bytes(&bytes).expect("accepted");
            assert_eq!(content_of(&bytes, &chunk), b"data");
        }
    }

    #[test]
    fn pax_path_and_size_override_the_header() {
        let records = [record("path", "from_server"), record("size", "2")].concat();
        let bytes = archive(&[(b'x', &records)], b"other", b'0', USTAR, b"da");
        let chunk = parse_bytes(&bytes).expect("accepted");
        assert_eq!(content_of(&bytes, &chunk), b"da");

        let mut bytes = archive(
            &[(b'x', &record("size", "2"))],
            b"from_server",
            b'0',
            USTAR,
            b"data",
        );
        bytes.truncate(bytes.len() - 1024); // keep the content's padding only
        let chunk = parse_bytes(&bytes).expect("accepted");
        assert_eq!(content_of(&bytes, &chunk), b"da");
    }

    #[test]
    fn ignores_global_headers_and_long_link_names() {
        let global = record("comment", "made by hand");
        let bytes = archive(
            &[(b'g', &global), (b'K', b"target\0")],
            b"from_server",
            b'0',
            USTAR,
            b"data",
        );
        let chunk = parse_bytes(&bytes).expect("accepted");
        assert_eq!(content_of(&bytes, &chunk), b"data");
    }

    #[test]
    fn accepts_a_missing_trailer_and_record_padding() {
        let full = archive(&[], b"from_server", b'0', USTAR, b"data");
        let mut padded = full.clone();
        padded.resize(10240, 0);
        for bytes in [&full[..516], &full[..1024], &full[..1300], &padded[..]] {
            let chunk = parse_bytes(bytes).expect("accepted");
            assert_eq!(content_of(bytes, &chunk), b"data");
        }
    }

    #[test]
    fn ignores_anything_after_the_end_of_archive_block() {
        let mut bytes = archive(&[], b"from_server", b'0', USTAR, b"data");
        bytes.extend(header(b"second", b'0', 0, USTAR));
        assert!(parse_bytes(&bytes).is_ok());
    }

    #[test]
    fn rejects_an_empty_file() {
        assert!(matches!(parse_bytes(b""), Err(TarError::Empty)));
    }

    #[test]
    fn rejects_raw_bytes_with_a_bad_checksum() {
        let bytes = vec![b'a'; 1024];
        let error = parse_bytes(&bytes).expect_err("not tar");
        assert!(matches!(
            error,
            TarError::BadNumber {
                field: "checksum",
                ..
            }
        ));

        let mut bytes = archive(&[], b"from_server", b'0', USTAR, b"data");
        bytes[0] = b'F';
        let error = parse_bytes(&bytes).expect_err("corrupt");
        assert!(matches!(error, TarError::BadChecksum { offset: 0, .. }));
        assert!(error.to_string().contains("bad checksum"), "{error}");
    }

    #[test]
    fn rejects_a_truncated_header() {
        let bytes = archive(&[], b"from_server", b'0', USTAR, b"data");
        let error = parse_bytes(&bytes[..300]).expect_err("cut short");
        assert!(matches!(
            error,
            TarError::TruncatedHeader {
                offset: 0,
                file_len: 300
            }
        ));
    }

    #[test]
    fn rejects_a_size_beyond_the_file() {
        let bytes = archive(&[], b"from_server", b'0', USTAR, b"data");
        let error = parse_bytes(&bytes[..515]).expect_err("content cut short");
        assert!(matches!(
            error,
            TarError::SizeBeyondFile {
                what: "content",
                size: 4,
                ..
            }
        ));
        let mut huge = bytes.clone();
        huge[124..136].copy_from_slice(b"77777777777\0");
        reseal(&mut huge[..512]);
        assert!(matches!(
            parse_bytes(&huge),
            Err(TarError::SizeBeyondFile { .. })
        ));
    }

    #[test]
    fn rejects_sizes_that_are_not_plain_numbers() {
        for field in [
            *b"+0000000004\0",
            *b"\0\0\0\0\0\0\0\0\0\0\0\0",
            *b"00000000009\0",
        ] {
            let mut bytes = archive(&[], b"from_server", b'0', USTAR, b"data");
            bytes[124..136].copy_from_slice(&field);
            reseal(&mut bytes[..512]);
            let error = parse_bytes(&bytes).expect_err("bad size");
            assert!(
                matches!(error, TarError::BadNumber { field: "size", .. }),
                "{error}"
            );
        }
        // A negative base-256 number, and one too large for 64 bits.
        let mut negative = [0xffu8; 12];
        negative[11] = 0xfc;
        let mut wide = [0u8; 12];
        wide[0] = 0x80;
        wide[3] = 1;
        for field in [negative, wide] {
            let mut bytes = archive(&[], b"from_server", b'0', GNU, b"data");
            bytes[124..136].copy_from_slice(&field);
            reseal(&mut bytes[..512]);
            assert!(matches!(
                parse_bytes(&bytes),
                Err(TarError::BadNumber { .. })
            ));
        }
    }

    #[test]
    fn accepts_sizes_padded_with_spaces() {
        let mut bytes = archive(&[], b"from_server", b'0', USTAR, b"data");
        bytes[124..136].copy_from_slice(b"         4 \0");
        reseal(&mut bytes[..512]);
        assert!(parse_bytes(&bytes).is_ok());
    }

    #[test]
    fn rejects_a_member_of_another_name() {
        let bytes = archive(&[], b"x", b'0', USTAR, b"data");
        let error = parse_bytes(&bytes).expect_err("wrong name");
        assert_eq!(
            error.to_string(),
            "the member `x` at offset 0 is not `from_server`"
        );
        let dotted = archive(&[], b"./from_server", b'0', USTAR, b"data");
        assert!(matches!(
            parse_bytes(&dotted),
            Err(TarError::WrongName { .. })
        ));
        let mut prefixed = archive(&[], b"from_server", b'0', USTAR, b"data");
        prefixed[345..348].copy_from_slice(b"dir");
        reseal(&mut prefixed[..512]);
        let error = parse_bytes(&prefixed).expect_err("prefixed");
        assert!(error.to_string().contains("`dir/from_server`"), "{error}");
    }

    #[test]
    fn rejects_a_member_that_is_not_a_regular_file() {
        let bytes = archive(&[], b"from_server", b'5', USTAR, b"");
        let error = parse_bytes(&bytes).expect_err("a directory");
        assert_eq!(
            error.to_string(),
            "the member `from_server` at offset 0 is a directory, not a regular file"
        );
        for flag in [b'1', b'2', b'3', b'4', b'6', b'S', b'V', b'Z'] {
            let bytes = archive(&[], b"from_server", flag, USTAR, b"");
            assert!(matches!(
                parse_bytes(&bytes),
                Err(TarError::NotRegular { .. })
            ));
        }
        // Without ustar magic an `x` header is just a member of type `x`.
        let bytes = archive(&[], b"from_server", b'x', V7, b"");
        assert!(matches!(
            parse_bytes(&bytes),
            Err(TarError::NotRegular { .. })
        ));
    }

    #[test]
    fn rejects_a_second_member() {
        let mut bytes = archive(&[], b"from_server", b'0', USTAR, b"data");
        bytes.truncate(1024);
        bytes.extend(archive(&[], b"from_server", b'0', USTAR, b"more"));
        let error = parse_bytes(&bytes).expect_err("two members");
        assert!(matches!(error, TarError::TrailingData { offset: 1024 }));
    }

    #[test]
    fn rejects_archives_without_a_member() {
        assert!(matches!(
            parse_bytes(&[0; 1024]),
            Err(TarError::NoMember { offset: 0 })
        ));
        let global = record("comment", "x");
        let mut bytes = header(b"g", b'g', global.len() as u64, USTAR);
        bytes.extend_from_slice(&global);
        bytes.resize(1024, 0);
        assert!(matches!(
            parse_bytes(&bytes),
            Err(TarError::NoMember { offset: 1024 })
        ));
        let records = record("path", "from_server");
        let mut bytes = header(b"x", b'x', records.len() as u64, USTAR);
        bytes.extend_from_slice(&records);
        bytes.resize(2048, 0);
        assert!(matches!(
            parse_bytes(&bytes),
            Err(TarError::DanglingExtension { offset: 0 })
        ));
    }

    #[test]
    fn rejects_malformed_pax_records() {
        let cases: [&[u8]; 9] = [
            b"x",
            b"5",
            b"99999999999999999999999 a=b\n",
            b"100 a=b\n",
            b"6 a=bc",
            b"7 a=b\nc",
            b"8 a=b\nc\n",
            b"5 ab\n",
            b"5 =b\n",
        ];
        for data in cases {
            let bytes = archive(&[(b'x', data)], b"from_server", b'0', USTAR, b"d");
            let error = parse_bytes(&bytes).expect_err("malformed");
            assert!(
                matches!(error, TarError::BadPaxRecord { offset: 0, .. }),
                "{:?}: {error}",
                data.escape_ascii().to_string()
            );
        }
    }

    #[test]
    fn rejects_records_that_readers_disagree_on() {
        let twice = [record("path", "from_server"), record("path", "from_server")].concat();
        let sparse = record("GNU.sparse.name", "from_server");
        let signed = record("size", "+1");
        let stamp = record(SEQUENCE_KEY, "seven");
        let cases: [(u8, &[u8]); 5] = [
            (b'x', &twice),
            (b'x', &sparse),
            (b'x', &signed),
            (b'x', &stamp),
            (b'g', &record("path", "from_server")),
        ];
        for (flag, data) in cases {
            let bytes = archive(&[(flag, data)], b"from_server", b'0', USTAR, b"d");
            let error = parse_bytes(&bytes).expect_err("rejected");
            assert!(
                matches!(
                    error,
                    TarError::DuplicatePaxRecord { .. }
                        | TarError::SparsePax { .. }
                        | TarError::BadPaxNumber { .. }
                        | TarError::GlobalOverride { .. }
                ),
                "{error}"
            );
        }
    }

    #[test]
    fn rejects_conflicting_or_repeated_extended_headers() {
        let path = record("path", "from_server");
        let cases: [&[(u8, &[u8])]; 5] = [
            &[(b'L', b"from_server\0"), (b'x', &path)],
            &[(b'x', &path), (b'x', &path)],
            &[(b'L', b"from_server\0"), (b'L', b"from_server\0")],
            &[(b'K', b"a\0"), (b'K', b"b\0")],
            &[(b'x', b""), (b'g', b"")],
        ];
        let expected = [
            "named by both",
            "second PAX extended header",
            "second GNU long name",
            "second GNU long link name",
            "separates an extended header",
        ];
        for (extensions, expected) in cases.iter().zip(expected) {
            let bytes = archive(extensions, b"from_server", b'0', USTAR, b"d");
            let error = parse_bytes(&bytes).expect_err("rejected");
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    #[test]
    fn rejects_a_long_name_with_bytes_after_its_nul() {
        let bytes = archive(&[(b'L', b"from_server\0x")], b"y", b'0', GNU, b"d");
        assert!(matches!(
            parse_bytes(&bytes),
            Err(TarError::BadLongName { offset: 0 })
        ));
    }

    #[test]
    fn rejects_oversized_extended_headers() {
        let mut bytes = header(b"x", b'x', MAX_EXTENSION_LEN + 1, USTAR);
        bytes.resize(bytes.len() + MAX_EXTENSION_LEN as usize + 1024, 0);
        assert!(matches!(
            parse_bytes(&bytes),
            Err(TarError::ExtensionTooLarge { .. })
        ));
        // One that claims more than the file holds is refused before any
        // allocation.
        let mut bytes = header(b"x", b'x', 0o77777777777, USTAR);
        bytes.resize(2048, 0);
        assert!(matches!(
            parse_bytes(&bytes),
            Err(TarError::SizeBeyondFile {
                what: "extended header data",
                ..
            })
        ));
    }

    #[test]
    fn reads_headers_from_a_file() {
        let bytes = encode(b"from a file", &stamp(1, 2), 0);
        let mut file = tempfile::tempfile().expect("a temporary file");
        std::io::Write::write_all(&mut file, &bytes).expect("written");
        let chunk = parse(&file, bytes.len() as u64).expect("parses");
        assert_eq!(content_of(&bytes, &chunk), b"from a file");
        // The file shrank after its length was taken: a read error, not a panic.
        file.set_len(1600).expect("truncated");
        let error = parse(&file, bytes.len() as u64).expect_err("short");
        assert!(
            matches!(error, TarError::Read { offset: 2048, .. }),
            "{error}"
        );
    }
}
