//! The tar subset packages use: POSIX ustar headers, with a pax `x` header in front of an entry
//! whose path or link target does not fit. Regular files, directories and symlinks only.
//!
//! The reader accepts exactly what the writer produces (checksums verified, fields strictly
//! octal, pax records `path` and `linkpath` only) and refuses everything else by name: hard
//! links, devices, FIFOs, GNU extensions, global headers. Paths are checked here, before any
//! caller sees them.

use std::io::{self, Read, Write};

use crate::paths::{MAX_PATH_BYTES, check_relative};
use crate::walk::{Entry, EntryKind};

const BLOCK: usize = 512;
/// Largest pax header accepted (two max-length paths and their record overhead fit easily).
const MAX_PAX_BYTES: u64 = 16 * 1024;
/// Largest file size a ustar size field holds (11 octal digits).
pub(crate) const MAX_FILE_BYTES: u64 = 0o77_777_777_777;

/// Writes entries to `out`.
pub(crate) struct TarWriter<W> {
    out: W,
    /// Data bytes still owed for the current entry.
    owed: u64,
    /// Padding after the current entry's data.
    pad: usize,
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        Self { out, owed: 0, pad: 0 }
    }

    /// Starts an entry; its `size` bytes of data follow through [`Self::data`].
    pub(crate) fn header(&mut self, entry: &Entry) -> io::Result<()> {
        if self.owed != 0 {
            return Err(io::Error::other("tar: previous entry's data incomplete"));
        }
        if entry.size > MAX_FILE_BYTES {
            return Err(io::Error::other(format!("{}: larger than 8 GiB", entry.path)));
        }
        let name = match entry.kind {
            EntryKind::Dir => format!("{}/", entry.path),
            _ => entry.path.clone(),
        };
        let target = entry.target.as_deref().unwrap_or("");
        let mut records = Vec::new();
        if name.len() > 100 {
            pax_record(&mut records, "path", &name);
        }
        if target.len() > 100 {
            pax_record(&mut records, "linkpath", target);
        }
        if !records.is_empty() {
            let pax = ustar(b"././@PaxHeader", b'x', 0o644, records.len() as u64, b"");
            self.out.write_all(&pax)?;
            self.out.write_all(&records)?;
            self.out.write_all(&[0; BLOCK][..padding(records.len() as u64)])?;
        }
        let (typeflag, size) = match entry.kind {
            EntryKind::File => (b'0', entry.size),
            EntryKind::Dir => (b'5', 0),
            EntryKind::Symlink => (b'2', 0),
        };
        let short_name = &name.as_bytes()[..name.len().min(100)];
        let short_target = &target.as_bytes()[..target.len().min(100)];
        self.out.write_all(&ustar(short_name, typeflag, entry.mode, size, short_target))?;
        self.owed = size;
        self.pad = padding(size);
        self.finish_entry_if_done()
    }

    /// Writes data of the current entry.
    pub(crate) fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.len() as u64 > self.owed {
            return Err(io::Error::other("tar: more data than the header announced"));
        }
        self.out.write_all(bytes)?;
        self.owed -= bytes.len() as u64;
        self.finish_entry_if_done()
    }

    fn finish_entry_if_done(&mut self) -> io::Result<()> {
        if self.owed == 0 && self.pad > 0 {
            self.out.write_all(&[0; BLOCK][..self.pad])?;
            self.pad = 0;
        }
        Ok(())
    }

    /// Ends the archive (two zero blocks) and returns the writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        if self.owed != 0 {
            return Err(io::Error::other("tar: last entry's data incomplete"));
        }
        self.out.write_all(&[0; 2 * BLOCK])?;
        Ok(self.out)
    }
}

fn padding(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

/// `"<len> <key>=<value>\n"`, where `<len>` counts the whole record including itself.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &str) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}={value}\n").as_bytes());
}

fn ustar(name: &[u8], typeflag: u8, mode: u32, size: u64, link: &[u8]) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 0);
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], 0);
    octal(&mut h[337..345], 0);
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    octal(&mut h[148..155], sum);
    h[155] = b' ';
    h
}

/// Zero-padded octal digits followed by a NUL, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// Why an archive is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {index}{}: {problem}", path.as_ref().map(|p| format!(" ({p})")).unwrap_or_default())]
pub struct ArchiveError {
    /// 0-based entry number.
    pub index: u64,
    /// The entry's path, once known.
    pub path: Option<String>,
    /// What is wrong.
    pub problem: String,
}

/// Reads entries from `inner`, strictly.
pub(crate) struct TarReader<R> {
    inner: R,
    /// Data bytes of the current entry not yet read.
    remaining: u64,
    /// Padding after them.
    pad: usize,
    index: u64,
    done: bool,
}

/// An error from [`TarReader`]: the archive or the stream under it.
#[derive(Debug)]
pub(crate) enum ReadError {
    Archive(ArchiveError),
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl<R: Read> TarReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self { inner, remaining: 0, pad: 0, index: 0, done: false }
    }

    fn refuse(&self, path: Option<&str>, problem: impl Into<String>) -> ReadError {
        ReadError::Archive(ArchiveError {
            index: self.index,
            path: path.map(str::to_owned),
            problem: problem.into(),
        })
    }

    /// The next entry, or `None` at the end of the archive. Unread data of the previous entry
    /// is skipped.
    pub(crate) fn next_entry(&mut self) -> Result<Option<Entry>, ReadError> {
        if self.done {
            return Ok(None);
        }
        let skip = self.remaining + self.pad as u64;
        io::copy(&mut (&mut self.inner).take(skip), &mut io::sink())?;
        self.remaining = 0;
        self.pad = 0;
        let mut block = [0u8; BLOCK];
        self.inner.read_exact(&mut block)?;
        if block.iter().all(|&b| b == 0) {
            self.inner.read_exact(&mut block)?;
            if block.iter().any(|&b| b != 0) {
                return Err(self.refuse(None, "a lone zero block inside the archive"));
            }
            self.done = true;
            return Ok(None);
        }
        let mut header = self.parse_header(&block)?;
        let (mut long_path, mut long_target) = (None, None);
        if header.typeflag == b'x' {
            if header.size > MAX_PAX_BYTES {
                return Err(self.refuse(None, "pax header larger than 16 KiB"));
            }
            let mut records = vec![0u8; header.size as usize];
            self.inner.read_exact(&mut records)?;
            let mut pad = [0u8; BLOCK];
            self.inner.read_exact(&mut pad[..padding(header.size)])?;
            (long_path, long_target) = self.parse_pax(&records)?;
            self.inner.read_exact(&mut block)?;
            header = self.parse_header(&block)?;
            if header.typeflag == b'x' {
                return Err(self.refuse(None, "two pax headers in a row"));
            }
        }
        let has_link = !header.link.is_empty();
        let mut path = long_path.unwrap_or(header.name);
        let target = long_target.unwrap_or(header.link);
        let kind = match header.typeflag {
            b'0' | 0 => EntryKind::File,
            b'5' => EntryKind::Dir,
            b'2' => EntryKind::Symlink,
            other => {
                let what = match other {
                    b'1' => "a hard link",
                    b'3' | b'4' => "a device file",
                    b'6' => "a FIFO",
                    b'7' => "a contiguous file",
                    b'g' => "a pax global header",
                    b'L' | b'K' => "a GNU long-name header",
                    b'S' => "a GNU sparse file",
                    _ => "an unknown entry type",
                };
                return Err(self.refuse(Some(&path), format!("{what} is not allowed")));
            }
        };
        if kind == EntryKind::Dir {
            match path.strip_suffix('/') {
                Some(p) => path = p.to_owned(),
                None => return Err(self.refuse(Some(&path), "directory name without `/`")),
            }
        }
        if let Err(problem) = check_relative(&path) {
            return Err(self.refuse(Some(&path), format!("unsafe path: {problem}")));
        }
        let (mode, target) = match kind {
            EntryKind::File => (if header.mode & 0o100 != 0 { 0o755 } else { 0o644 }, None),
            EntryKind::Dir => (0o755, None),
            EntryKind::Symlink => {
                if target.is_empty() || target.starts_with('/') || target.len() > MAX_PATH_BYTES {
                    return Err(
                        self.refuse(Some(&path), "symlink target is empty, absolute or too long")
                    );
                }
                (0o777, Some(target))
            }
        };
        if kind != EntryKind::File && header.size != 0 {
            return Err(self.refuse(Some(&path), "directory or symlink with data"));
        }
        if kind != EntryKind::Symlink && has_link {
            return Err(self.refuse(Some(&path), "link name on a file or directory"));
        }
        self.remaining = header.size;
        self.pad = padding(header.size);
        self.index += 1;
        Ok(Some(Entry { path, kind, mode, size: header.size, target }))
    }

    /// Reads data of the current entry; 0 at its end.
    pub(crate) fn read_data(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.remaining -= n as u64;
        Ok(n)
    }

    /// The stream after the archive's end.
    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    fn parse_header(&self, h: &[u8; BLOCK]) -> Result<Header, ReadError> {
        if &h[257..263] != b"ustar\0" || &h[263..265] != b"00" {
            return Err(self.refuse(None, "not a ustar header"));
        }
        let stored =
            parse_octal(&h[148..156]).ok_or_else(|| self.refuse(None, "bad checksum field"))?;
        let sum: u64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| if (148..156).contains(&i) { u64::from(b' ') } else { u64::from(b) })
            .sum();
        if stored != sum {
            return Err(self.refuse(None, "header checksum mismatch"));
        }
        if h[345..500].iter().any(|&b| b != 0) {
            return Err(self.refuse(None, "ustar prefix field is not used by packages"));
        }
        let text = |field: &[u8]| -> Result<String, ReadError> {
            let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
            String::from_utf8(field[..end].to_vec())
                .map_err(|_| self.refuse(None, "name is not UTF-8"))
        };
        let name = text(&h[..100])?;
        let link = text(&h[157..257])?;
        let field = |range: std::ops::Range<usize>, what: &str| {
            parse_octal(&h[range])
                .ok_or_else(|| self.refuse(Some(&name), format!("bad {what} field")))
        };
        let mode = field(100..108, "mode")?;
        let size = field(124..136, "size")?;
        Ok(Header { name, link, mode: u32::try_from(mode).unwrap_or(0), size, typeflag: h[156] })
    }

    fn parse_pax(&self, mut records: &[u8]) -> Result<(Option<String>, Option<String>), ReadError> {
        let bad = || self.refuse(None, "malformed pax record");
        let (mut path, mut target) = (None, None);
        while !records.is_empty() {
            let space = records.iter().position(|&b| b == b' ').ok_or_else(bad)?;
            let len: usize = std::str::from_utf8(&records[..space])
                .ok()
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse().ok())
                .ok_or_else(bad)?;
            if len <= space + 1 || len > records.len() || records[len - 1] != b'\n' {
                return Err(bad());
            }
            let record = std::str::from_utf8(&records[space + 1..len - 1]).map_err(|_| bad())?;
            let (key, value) = record.split_once('=').ok_or_else(bad)?;
            let slot = match key {
                "path" => &mut path,
                "linkpath" => &mut target,
                other => {
                    return Err(
                        self.refuse(None, format!("pax key `{other}` is not used by packages"))
                    );
                }
            };
            if slot.replace(value.to_owned()).is_some() {
                return Err(self.refuse(None, format!("pax key `{key}` twice")));
            }
            records = &records[len..];
        }
        Ok((path, target))
    }
}

struct Header {
    name: String,
    link: String,
    mode: u32,
    size: u64,
    typeflag: u8,
}

/// Octal digits, optionally space-padded in front, ended by NUL or space (or the field's end).
fn parse_octal(field: &[u8]) -> Option<u64> {
    let text: &[u8] = {
        let start = field.iter().position(|&b| b != b' ')?;
        let rest = &field[start..];
        let end = rest.iter().position(|&b| b == 0 || b == b' ').unwrap_or(rest.len());
        if rest[end..].iter().any(|&b| b != 0 && b != b' ') {
            return None;
        }
        &rest[..end]
    };
    if text.is_empty() || text.len() > 12 || !text.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| acc.checked_mul(8)?.checked_add(u64::from(b - b'0')))
}
