//! The differential property of `filebus_core::tar`, shared by the `tar_parser`
//! fuzz target (fuzz/fuzz_targets/tar_parser.rs) and the corpus replay test
//! (the integration tests' corpus replay).
//!
//! The oracle is the `tar` crate. An archive is a chunk for the oracle when
//! its entries, global headers (`g`) aside, are exactly one regular file
//! (type `0`, NUL or `7`) named `from_server` whose content is all there,
//! with nothing after it but the end of the archive. Then `parse_bytes` must
//! find the same content; otherwise it must reject the archive. The only
//! disagreements allowed are the ones listed in `documented_leniency` and
//! `documented_strictness`, each checked against evidence in the archive
//! itself, so that a new kind of disagreement fails the property.

/// What the `tar` crate makes of an archive.
pub struct OracleView {
    /// The content of the member, if there is exactly one regular
    /// `from_server` and it is complete.
    pub member: Option<Vec<u8>>,
    /// Why the archive is not a chunk for the oracle (`None`: it is).
    pub rejection: Option<String>,
    /// True if the only problem came after the member was read: the oracle
    /// failed while looking for the next header.
    failed_after_member: bool,
    /// The keys of the member's PAX records, as the oracle reads them.
    member_pax_keys: Vec<Vec<u8>>,
}

pub fn oracle_view(data: &[u8]) -> OracleView {
    let mut view = OracleView {
        member: None,
        rejection: None,
        failed_after_member: false,
        member_pax_keys: Vec::new(),
    };
    let mut archive = tar::Archive::new(data);
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(error) => {
            view.rejection = Some(error.to_string());
            return view;
        }
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                view.failed_after_member = view.member.is_some();
                view.rejection = Some(error.to_string());
                return view;
            }
        };
        if view.member.is_some() {
            view.rejection = Some("a second entry".to_owned());
            return view;
        }
        let entry_type = entry.header().entry_type();
        if entry_type == tar::EntryType::XGlobalHeader {
            continue;
        }
        if !matches!(
            entry_type,
            tar::EntryType::Regular | tar::EntryType::Continuous
        ) {
            view.rejection = Some(format!("an entry of type {entry_type:?}"));
            return view;
        }
        if entry.path_bytes().as_ref() != b"from_server" {
            view.rejection = Some("another name".to_owned());
            return view;
        }
        if let Ok(Some(records)) = entry.pax_extensions() {
            view.member_pax_keys = records
                .filter_map(|record| record.ok())
                .map(|record| record.key_bytes().to_vec())
                .collect();
        }
        let size = entry.size();
        let mut content = Vec::new();
        if let Err(error) = std::io::Read::read_to_end(&mut entry, &mut content) {
            view.rejection = Some(error.to_string());
            return view;
        }
        if content.len() as u64 != size {
            // The crate's reader stops short at the end of the file.
            view.rejection = Some("content cut short".to_owned());
            return view;
        }
        view.member = Some(content);
    }
    if view.member.is_none() {
        view.rejection = Some("no member".to_owned());
    }
    view
}

pub fn check_tar_agreement(data: &[u8]) {
    // Random mutations break header checksums, which would keep the fuzzer
    // at the first header: an input one byte longer than a multiple of 512
    // has that byte dropped and its checksums set right first.
    let fixed;
    let data = if data.len() % 512 == 1 {
        fixed = with_checksums_set(&data[..data.len() - 1]);
        fixed.as_slice()
    } else {
        data
    };
    let ours = filebus_core::tar::parse_bytes(data);
    if let Ok(chunk) = &ours {
        assert!(
            chunk.content_offset % 512 == 0
                && chunk
                    .content_offset
                    .checked_add(chunk.content_len)
                    .is_some_and(|end| end <= data.len() as u64),
            "accepted content outside the file: {chunk:?}"
        );
    }
    let oracle = oracle_view(data);
    match (&ours, &oracle.rejection) {
        (Ok(chunk), None) => {
            let content =
                &data[chunk.content_range().start as usize..][..chunk.content_len as usize];
            assert_eq!(
                Some(content),
                oracle.member.as_deref(),
                "parse_bytes and the tar crate read different content"
            );
        }
        (Err(_), Some(_)) => {}
        (Ok(chunk), Some(reason)) => assert!(
            documented_leniency(data, chunk, &oracle),
            "parse_bytes accepted {chunk:?} where the tar crate found {reason}"
        ),
        (Err(error), None) => assert!(
            documented_strictness(data, error, &oracle),
            "parse_bytes rejected an archive the tar crate reads: {error}"
        ),
    }
}

/// We accept an archive whose end is missing: the padding of the member's
/// content, or a whole block after it (the end-of-archive blocks). Python's
/// `tarfile` (the 0.0.x reader) and GNU tar read the member all the same;
/// the tar crate fails when it looks for the next header. The content must
/// still agree.
fn documented_leniency(
    data: &[u8],
    chunk: &filebus_core::tar::TarChunk,
    oracle: &OracleView,
) -> bool {
    let content_end = chunk.content_offset + chunk.content_len;
    let next_header = content_end.div_ceil(512) * 512;
    let content = &data[chunk.content_offset as usize..content_end as usize];
    oracle.failed_after_member
        && oracle.member.as_deref() == Some(content)
        && next_header + 512 > data.len() as u64
}

/// The archives we reject although the tar crate reads them, each because
/// tar readers disagree on them (so a chunk must not depend on one reading)
/// or because they announce sizes no chunk has.
fn documented_strictness(
    data: &[u8],
    error: &filebus_core::tar::TarError,
    oracle: &OracleView,
) -> bool {
    use filebus_core::tar::TarError;
    match error {
        // The crate parses numbers with `str::trim` (Unicode white space)
        // and `from_str_radix` (which takes a `+`), and reads only the last
        // eight bytes of a base-256 field (so a negative one is a large
        // positive number); we take ASCII white space and octal digits, and
        // refuse base-256 numbers that are negative or beyond 64 bits (and
        // any in the checksum, which the crate reads as octal too).
        TarError::BadNumber { raw, field, .. } if *field == "checksum" => {
            raw.first() == Some(&0x80) || !strict_octal_or_base_256(raw)
        }
        TarError::BadNumber { raw, .. } => !strict_octal_or_base_256(raw),
        // The crate splits PAX records at newlines, skips or stops at
        // malformed ones (so a `size` after one is ignored) and takes an
        // empty key; we refuse any record that is not exactly
        // "<length> <key>=<value>\n" with a non-empty key and no newline.
        TarError::BadPaxRecord { offset, .. } => {
            extension_data(data, *offset).is_some_and(|body| strict_pax_records(body).is_none())
        }
        // The crate takes the first `path`/`size` record, GNU tar and Python
        // the last one.
        TarError::DuplicatePaxRecord { offset, key } => extension_data(data, *offset)
            .and_then(strict_pax_records)
            .is_some_and(|records| {
                records
                    .iter()
                    .filter(|(record_key, _)| record_key == key.as_bytes())
                    .count()
                    > 1
            }),
        // The crate ignores a `size` record that `u64::from_str` refuses
        // and takes a `+` sign; GNU tar refuses such an archive, Python
        // reads the size as 0. We accept plain decimal digits only.
        TarError::BadPaxNumber { value, .. } => !plain_decimal(value),
        // The crate knows nothing of PAX-format sparse files; GNU tar and
        // Python rename and resize the member from these records.
        TarError::SparsePax { key, .. } => key.starts_with("GNU.sparse."),
        // The crate ignores the content of global headers, GNU tar and
        // Python apply `path` and `size` from them to the member.
        TarError::GlobalOverride { offset, key } => {
            data.get(*offset as usize + 156) == Some(&b'g')
                && extension_data(data, *offset)
                    .and_then(strict_pax_records)
                    .is_some_and(|records| records.iter().any(|(k, _)| k == key.as_bytes()))
        }
        // A global header between an extended header and its member: the
        // crate applies the extended header to the global one, GNU tar and
        // Python to the member.
        TarError::MisplacedGlobalHeader { offset } => {
            data.get(*offset as usize + 156) == Some(&b'g')
        }
        // A GNU long name and a PAX `path`: the crate takes the long name,
        // Python whichever header came first.
        TarError::ConflictingNames { .. } => oracle
            .member_pax_keys
            .iter()
            .any(|key| key.as_slice() == b"path"),
        // Not reached by the fuzzer's short inputs, but a limit all the same.
        TarError::ExtensionTooLarge { size, .. } => *size > filebus_core::tar::MAX_EXTENSION_LEN,
        _ => false,
    }
}

/// The data of the extended header at `offset`, when its size field is a
/// plain octal number and the data is in the file.
fn extension_data(data: &[u8], offset: u64) -> Option<&[u8]> {
    let offset = usize::try_from(offset).ok()?;
    let header = data.get(offset..offset.checked_add(512)?)?;
    let field = &header[124..136];
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let text = std::str::from_utf8(&field[..end])
        .ok()?
        .trim_matches(|c: char| c.is_ascii_whitespace());
    let size = usize::from_str_radix(text, 8).ok()?;
    data.get(offset + 512..offset.checked_add(512)?.checked_add(size)?)
}

/// The numeric forms `filebus_core::tar` accepts, written independently of it:
/// octal digits up to a NUL, between ASCII white space; or 0x80 followed by
/// a big-endian number that fits in 64 bits.
fn strict_octal_or_base_256(field: &[u8]) -> bool {
    if field.first() == Some(&0x80) {
        return field.len() <= 9 || field[1..field.len() - 8].iter().all(|&b| b == 0);
    }
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let text = &field[..end];
    let white = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\x0c' | b'\r');
    let start = text.iter().position(|b| !white(b)).unwrap_or(text.len());
    let stop = text
        .iter()
        .rposition(|b| !white(b))
        .map_or(start, |at| at + 1);
    let digits = &text[start..stop];
    !digits.is_empty()
        && digits.iter().all(|b| (b'0'..=b'7').contains(b))
        && u64::from_str_radix(std::str::from_utf8(digits).unwrap_or("x"), 8).is_ok()
}

fn plain_decimal(value: &[u8]) -> bool {
    !value.is_empty()
        && value.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(value)
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .is_some()
}

/// PAX records in the strict form, written independently of `filebus_core::tar`:
/// split at newlines, each line is "<length> <key>=<value>" where the length
/// counts the line and its newline, the key is not empty, and the data ends
/// with a newline.
fn strict_pax_records(body: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    if body.is_empty() {
        return Some(Vec::new());
    }
    let lines = body.strip_suffix(b"\n")?;
    let mut records = Vec::new();
    for line in lines.split(|&b| b == b'\n') {
        let space = line.iter().position(|&b| b == b' ')?;
        let length = &line[..space];
        if length.is_empty() || !length.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let length: usize = std::str::from_utf8(length).ok()?.parse().ok()?;
        if length != line.len() + 1 {
            return None;
        }
        let text = &line[space + 1..];
        let equals = text.iter().position(|&b| b == b'=')?;
        if equals == 0 {
            return None;
        }
        records.push((text[..equals].to_vec(), text[equals + 1..].to_vec()));
    }
    Some(records)
}

/// `data` with the checksum of every header set right, walking the headers
/// as a tar reader does (a header, then its data padded to a block, up to a
/// zero block). Sizes it cannot read count as zero.
fn with_checksums_set(data: &[u8]) -> Vec<u8> {
    let mut data = data.to_vec();
    let mut offset = 0usize;
    while let Some(header) = data.get_mut(offset..offset.saturating_add(512)) {
        if header.iter().all(|&b| b == 0) {
            break;
        }
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let field = &header[124..136];
        let size = if field[0] == 0x80 {
            field[4..]
                .iter()
                .fold(0u64, |size, &b| (size << 8) | u64::from(b))
        } else {
            let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
            std::str::from_utf8(&field[..end])
                .ok()
                .and_then(|text| u64::from_str_radix(text.trim(), 8).ok())
                .unwrap_or(0)
        };
        let Some(next) = usize::try_from(size.div_ceil(512).saturating_mul(512))
            .ok()
            .and_then(|blocks| offset.checked_add(512)?.checked_add(blocks))
        else {
            break;
        };
        offset = next;
    }
    data
}
