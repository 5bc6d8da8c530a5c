//! Packages: a walked tree → payload (summary, tar, manifest) → zstd → sealed chunks, and back
//! into a fresh directory with every limit and path checked on the way.
//!
//! Both directions stream: memory holds one read buffer, the compressor's window and the list
//! of entries, whatever the size of the files.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::rc::Rc;

use ash_identity::Identity;
use sha2::{Digest as _, Sha256};

use crate::error::PackError;
use crate::seal::{Contents, Expect, JobId, Opener, Recipient, SealedHeader, Sealer};
use crate::secrets::{Finding, Scanner};
use crate::tar::{ReadError, TarReader, TarWriter};
use crate::unpack::Destination;
use crate::walk::{Entry, EntryKind, Walk};

/// First bytes of a package payload (before the tar).
pub const PAYLOAD_MAGIC: [u8; 8] = *b"ASHPKG\0\x01";
/// First bytes of the manifest (after the tar).
pub const MANIFEST_MAGIC: [u8; 8] = *b"ASHMNF\0\x01";
/// zstd window a reader accepts (8 MiB): the writer's level 3 uses far less.
const WINDOW_LOG_MAX: u32 = 23;
const READ_BUF: usize = 256 * 1024;

/// How to pack.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// Send even if the secret scan found likely secrets (the user confirmed).
    pub allow_secrets: bool,
    /// zstd level (1..=19; 3 by default).
    pub level: i32,
    /// zstd worker threads besides the caller's (0 = compress on the calling thread).
    pub workers: u32,
}

impl Default for PackOptions {
    fn default() -> Self {
        Self { allow_secrets: false, level: 3, workers: 1 }
    }
}

/// What a package holds, as both sides compute it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageInfo {
    /// Entries (files, directories, symlinks).
    pub entries: u64,
    /// Bytes of file content.
    pub total_bytes: u64,
    /// SHA-256 of the manifest: names the exact contents.
    pub digest: [u8; 32],
}

/// Limits an opener enforces; the defaults suit source trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most entries.
    pub max_entries: u64,
    /// Most bytes of file content in total.
    pub max_total_bytes: u64,
    /// Most bytes in one file.
    pub max_file_bytes: u64,
    /// Most decompressed bytes per compressed byte, checked once 16 MiB are out.
    pub max_ratio: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: 200_000,
            max_total_bytes: 2 << 30,
            max_file_bytes: 1 << 30,
            max_ratio: 1000,
        }
    }
}

/// Packs `walk`'s entries for `recipient`, writing the sealed package to `out`.
///
/// Every included text file is scanned for likely secrets on the way; if any is found and
/// `options.allow_secrets` is off, the result is [`PackError::Secrets`] and whatever was
/// written to `out` must be discarded.
pub fn pack<W: Write>(
    walk: &Walk,
    sender: &Identity,
    recipient: &Recipient,
    job: JobId,
    options: &PackOptions,
    out: W,
) -> Result<(PackageInfo, Vec<Finding>, W), PackError> {
    let stream = |e: io::Error| PackError::Payload(format!("cannot write: {e}"));
    let sealer = Sealer::new(out, sender, recipient, Contents::Package, job)
        .map_err(PackError::from_stream)?;
    let mut zstd = zstd::stream::write::Encoder::new(sealer, options.level).map_err(stream)?;
    if options.workers > 0 {
        zstd.multithread(options.workers).map_err(stream)?;
    }
    let entries = walk.entries.len() as u64;
    let total = walk.total_size();
    zstd.write_all(&summary(PAYLOAD_MAGIC, entries, total)).map_err(stream)?;
    let mut manifest = summary(MANIFEST_MAGIC, entries, total).to_vec();
    let mut tar = TarWriter::new(zstd);
    let mut findings = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    for entry in &walk.entries {
        tar.header(entry).map_err(stream)?;
        let hash = match entry.kind {
            EntryKind::File => copy_file(&walk.root, entry, &mut tar, &mut buf, &mut findings)?,
            EntryKind::Symlink => Sha256::digest(entry.target.as_deref().unwrap_or("")).into(),
            EntryKind::Dir => [0; 32],
        };
        manifest_entry(&mut manifest, entry, &hash);
    }
    let mut zstd = tar.finish().map_err(stream)?;
    zstd.write_all(&manifest).map_err(stream)?;
    let out = zstd.finish().map_err(stream)?.finish().map_err(stream)?;
    if !findings.is_empty() && !options.allow_secrets {
        return Err(PackError::Secrets(findings));
    }
    let info =
        PackageInfo { entries, total_bytes: total, digest: Sha256::digest(&manifest).into() };
    Ok((info, findings, out))
}

/// Reads every included text file and reports likely secrets (what [`pack`] would refuse).
pub fn scan(walk: &Walk) -> Result<Vec<Finding>, PackError> {
    let mut findings = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    for entry in walk.entries.iter().filter(|e| e.kind == EntryKind::File) {
        copy_file(&walk.root, entry, &mut io::sink(), &mut buf, &mut findings)?;
    }
    Ok(findings)
}

/// Where file data goes while it is hashed and scanned.
trait Sink {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()>;
}

impl<W: Write> Sink for TarWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.data(bytes)
    }
}

impl Sink for io::Sink {
    fn put(&mut self, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

/// Streams one file into `sink`, hashing and scanning it; its size must not change.
fn copy_file(
    root: &Path,
    entry: &Entry,
    sink: &mut impl Sink,
    buf: &mut [u8],
    findings: &mut Vec<Finding>,
) -> Result<[u8; 32], PackError> {
    let path = root.join(&entry.path);
    // Never follow a link put in the file's place after the walk, and read only the regular
    // file of the size the walk saw.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&path)
        .map_err(|e| match e.raw_os_error() {
            Some(code) if code == nix::errno::Errno::ELOOP as i32 => {
                PackError::FileChanged(entry.path.clone())
            }
            _ => PackError::io(&path, &e),
        })?;
    let meta = file.metadata().map_err(|e| PackError::io(&path, &e))?;
    if !meta.is_file() || meta.len() != entry.size {
        return Err(PackError::FileChanged(entry.path.clone()));
    }
    let mut hasher = Sha256::new();
    let mut scanner = Scanner::new(&entry.path);
    let mut left = entry.size;
    loop {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX)).max(1);
        let n = file.read(&mut buf[..want]).map_err(|e| PackError::io(&path, &e))?;
        if n as u64 > left || (n == 0 && left > 0) {
            return Err(PackError::FileChanged(entry.path.clone()));
        }
        if n == 0 {
            break;
        }
        left -= n as u64;
        let piece = &buf[..n];
        hasher.update(piece);
        scanner.feed(piece, left == 0, findings);
        sink.put(piece).map_err(|e| PackError::Payload(format!("cannot write: {e}")))?;
    }
    Ok(hasher.finalize().into())
}

fn summary(magic: [u8; 8], entries: u64, total: u64) -> [u8; 24] {
    let mut bytes = [0u8; 24];
    bytes[..8].copy_from_slice(&magic);
    bytes[8..16].copy_from_slice(&entries.to_be_bytes());
    bytes[16..].copy_from_slice(&total.to_be_bytes());
    bytes
}

/// One manifest record: kind, mode, size, SHA-256, path, target (lengths as u16 BE).
fn manifest_entry(out: &mut Vec<u8>, entry: &Entry, hash: &[u8; 32]) {
    out.push(match entry.kind {
        EntryKind::File => 0,
        EntryKind::Dir => 1,
        EntryKind::Symlink => 2,
    });
    out.extend_from_slice(&u16::try_from(entry.mode).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&entry.size.to_be_bytes());
    out.extend_from_slice(hash);
    for text in [entry.path.as_str(), entry.target.as_deref().unwrap_or("")] {
        // Paths are at most 4095 bytes (checked by the walk and the reader).
        out.extend_from_slice(&u16::try_from(text.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
}

/// What [`open`] unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The verified header.
    pub header: SealedHeader,
    /// Its contents.
    pub info: PackageInfo,
}

/// Opens a sealed package with `me`'s key and unpacks it into `dest`, which must not exist or
/// be an empty directory. Nothing is written outside `dest`; on any error, what was written is
/// removed again.
pub fn open<R: Read>(
    input: R,
    me: &Identity,
    expect: Expect,
    limits: &Limits,
    dest: &Path,
) -> Result<Opened, PackError> {
    let (header, opener) =
        Opener::new(input, me, Contents::Package, expect).map_err(PackError::from_stream)?;
    // Dropped without `keep`, the destination removes what was written.
    let mut destination = Destination::prepare(dest)?;
    let info = unpack(opener, limits, &mut destination)?;
    destination.keep();
    Ok(Opened { header, info })
}

fn unpack<R: Read>(
    opener: Opener<R>,
    limits: &Limits,
    dest: &mut Destination,
) -> Result<PackageInfo, PackError> {
    let compressed = Rc::new(Cell::new(0u64));
    let counted = Counted { inner: opener, count: Rc::clone(&compressed) };
    let mut decoder = zstd::stream::read::Decoder::new(counted).map_err(PackError::from_stream)?;
    decoder.window_log_max(WINDOW_LOG_MAX).map_err(PackError::from_stream)?;
    let mut payload = Guarded { inner: decoder, compressed, out: 0, max_ratio: limits.max_ratio };

    let mut head = [0u8; 24];
    payload.read_exact(&mut head).map_err(PackError::from_stream)?;
    let (entries, total) = parse_summary(&head, PAYLOAD_MAGIC)?;
    if entries > limits.max_entries {
        return Err(PackError::Limit { what: "entry count", limit: limits.max_entries });
    }
    if total > limits.max_total_bytes {
        return Err(PackError::Limit { what: "total size", limit: limits.max_total_bytes });
    }
    let mut manifest = summary(MANIFEST_MAGIC, entries, total).to_vec();
    let mut tar = TarReader::new(payload);
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut buf = vec![0u8; READ_BUF];
    while let Some(entry) = tar.next_entry().map_err(from_read)? {
        count += 1;
        bytes = bytes.saturating_add(entry.size);
        if count > entries || bytes > total {
            return Err(PackError::Payload(
                "more entries or bytes than the summary says".to_owned(),
            ));
        }
        if entry.size > limits.max_file_bytes {
            return Err(PackError::Limit { what: "file size", limit: limits.max_file_bytes });
        }
        let hash = dest.place(&entry, &mut tar, &mut buf)?;
        manifest_entry(&mut manifest, &entry, &hash);
    }
    if count != entries || bytes != total {
        return Err(PackError::Payload("fewer entries or bytes than the summary says".to_owned()));
    }
    dest.check_links()?;
    // The sender's manifest must equal, byte for byte, the one built from what arrived.
    let mut payload = tar.into_inner();
    let mut theirs = Vec::with_capacity(manifest.len());
    (&mut payload)
        .take(manifest.len() as u64 + 1)
        .read_to_end(&mut theirs)
        .map_err(PackError::from_stream)?;
    if theirs != manifest {
        return Err(PackError::Payload("the manifest does not match the archive".to_owned()));
    }
    Ok(PackageInfo { entries, total_bytes: total, digest: Sha256::digest(&manifest).into() })
}

fn parse_summary(head: &[u8; 24], magic: [u8; 8]) -> Result<(u64, u64), PackError> {
    if head[..8] != magic {
        return Err(PackError::Payload("not a package payload (bad magic)".to_owned()));
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[at..at + 8]);
        u64::from_be_bytes(b)
    };
    Ok((word(8), word(16)))
}

fn from_read(e: ReadError) -> PackError {
    match e {
        ReadError::Archive(a) => PackError::Archive(a),
        ReadError::Io(e) => PackError::from_stream(e),
    }
}

/// Counts bytes read through it (the compressed side).
struct Counted<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// The decompressed side: refuses a compression ratio above the limit.
struct Guarded<R> {
    inner: R,
    compressed: Rc<Cell<u64>>,
    out: u64,
    max_ratio: u64,
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        if self.out > 16 << 20 && self.out / self.compressed.get().max(1) > self.max_ratio {
            let limit = PackError::Limit { what: "compression ratio", limit: self.max_ratio };
            return Err(io::Error::new(io::ErrorKind::InvalidData, limit));
        }
        Ok(n)
    }
}
