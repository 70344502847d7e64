//! How a chunk's content is stored at `F`: raw bytes, or a one-member tar
//! archive.

/// How a chunk's content is stored at `F`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Format {
    /// The content's bytes, nothing else (reference 0.1 and later).
    #[default]
    Raw,
    /// A tar archive with one member, `from_server` (reference 0.0.x); our
    /// producers add PAX records with the sequence number and time.
    Tar,
}

impl Format {
    /// The format's name as given on the command line (`--format`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Tar => "tar",
        }
    }

    /// Where a chunk's content starts in the files our producers write: in
    /// tar format, after the PAX extended header (two blocks, always present
    /// because it always carries the publish time) and the member's header.
    pub fn content_offset(self) -> u64 {
        match self {
            Format::Raw => 0,
            Format::Tar => TAR_HEADER_LEN,
        }
    }
}

/// The length of the header our producers write in tar format.
pub(crate) const TAR_HEADER_LEN: u64 = 3 * 512;
