//! Sealing: a signed header, then AES-256-GCM in fixed-size chunks (the STREAM construction),
//! the content key sealed to one recipient with HPKE (RFC 9180, base mode,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM).
//!
//! Chunk `i` is encrypted with nonce `0⁷ ‖ i (u32 BE) ‖ final` and the SHA-256 of the header as
//! associated data. Every chunk but the last holds exactly `chunk_size` plaintext bytes; the
//! last holds fewer (possibly none) and has `final = 1`. So truncation, reordering, splicing
//! and trailing bytes all fail authentication. The byte layout is in `docs/package-format.md`.

use std::fmt;
use std::io::{self, Read, Write};

use aes_gcm::aead::AeadInOut as _;
use aes_gcm::{Aes256Gcm, KeyInit as _};
use ash_identity::{
    Domain, Identity, NodeId, SealingKeyCert, SealingPublicKey, Signature, decode_hex, encode_hex,
    verify,
};
use hpke::{Deserializable as _, Serializable as _};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type HpkeAead = hpke::aead::AesGcm256;

/// First bytes of every sealed file.
pub const SEAL_MAGIC: [u8; 8] = *b"ASHSEAL\0";
/// The sealed-file format version this build writes and reads.
pub const SEAL_VERSION: u16 = 1;
/// Plaintext bytes per chunk.
pub const CHUNK_SIZE: u32 = 64 * 1024;
/// Length of the header.
pub const HEADER_LEN: usize = 272;
/// The part of the header the sender signs (all but the signature).
const SIGNED_LEN: usize = 208;
/// The part bound into HPKE's `info` (all before the encapsulated key).
const INFO_LEN: usize = 128;
const TAG_LEN: usize = 16;
const SHORT: &str = "file shorter than the 272-byte header";
/// Smallest and largest chunk sizes a reader accepts.
const CHUNK_RANGE: std::ops::RangeInclusive<u32> = 4096..=(1 << 20);

/// What a sealed file carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    /// A source package.
    Package,
    /// A result diff.
    Diff,
    /// A job's prompt (UTF-8 text).
    Prompt,
    /// A job's result: a manifest (what ran, for the requester to check) and the diff.
    Result,
}

impl Contents {
    const fn byte(self) -> u8 {
        match self {
            Self::Package => 1,
            Self::Diff => 2,
            Self::Prompt => 3,
            Self::Result => 4,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Package),
            2 => Some(Self::Diff),
            3 => Some(Self::Prompt),
            4 => Some(Self::Result),
            _ => None,
        }
    }

    /// `package`, `diff`, `prompt` or `result`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Package => "package",
            Self::Diff => "diff",
            Self::Prompt => "prompt",
            Self::Result => "result",
        }
    }
}

/// A job's 16-byte id, bound into every sealed file of the job.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct JobId(pub [u8; 16]);

impl JobId {
    /// A random id.
    pub fn random() -> Result<Self, SealError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| SealError::Random(e.to_string()))?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_hex(&self.0))
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

impl std::str::FromStr for JobId {
    type Err = SealError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        decode_hex::<16>(text).map(Self).ok_or(SealError::JobIdSyntax)
    }
}

/// Whom a file is sealed to: an identity and its sealing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipient {
    /// The recipient's identity.
    pub node: NodeId,
    /// Its X25519 sealing key.
    pub key: SealingPublicKey,
}

impl Recipient {
    /// The recipient a verified sealing-key certificate names.
    pub fn from_cert(cert: &SealingKeyCert) -> Self {
        Self { node: cert.node, key: cert.key }
    }
}

/// The header of a sealed file, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedHeader {
    /// What it carries.
    pub contents: Contents,
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// The job it belongs to.
    pub job: JobId,
    /// Who sealed it (verified by signature).
    pub sender: NodeId,
    /// Whom it is sealed to.
    pub recipient: Recipient,
}

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The file does not start with the sealed-file magic.
    #[error("not a sealed ash file (bad magic bytes)")]
    Magic,
    /// A version this build does not read.
    #[error("sealed-file version {0} is not supported (this build reads version 1)")]
    Version(u16),
    /// A contents byte this build does not know, or not the one expected.
    #[error("this sealed file holds {found}, expected a {expected}")]
    Contents {
        /// What the caller expected.
        expected: &'static str,
        /// What the header says.
        found: String,
    },
    /// A chunk size outside 4 KiB..=1 MiB, or a reserved byte that is not zero.
    #[error("malformed header: {0}")]
    Header(&'static str),
    /// Sealed to another identity.
    #[error("sealed to {found}, not to this identity ({me})")]
    NotForMe {
        /// The header's recipient.
        found: NodeId,
        /// This identity.
        me: NodeId,
    },
    /// Sealed to another sealing key of this identity.
    #[error("sealed to sealing key {found}, but this identity's key is {mine}")]
    OtherKey {
        /// The header's key.
        found: SealingPublicKey,
        /// This identity's key.
        mine: SealingPublicKey,
    },
    /// The header's signature does not verify.
    #[error("the header is not validly signed by its sender {0}")]
    Signature(NodeId),
    /// Another sender than the caller expected.
    #[error("sealed by {found}, expected {expected}")]
    Sender {
        /// Expected sender.
        expected: NodeId,
        /// The header's sender.
        found: NodeId,
    },
    /// Another job than the caller expected.
    #[error("sealed for job {found}, expected job {expected}")]
    Job {
        /// Expected job.
        expected: JobId,
        /// The header's job.
        found: JobId,
    },
    /// HPKE could not open the content key (wrong key, or the header was changed).
    #[error("cannot open the content key: wrong recipient key or a changed header")]
    KeyUnwrap,
    /// HPKE could not seal to the recipient's key.
    #[error("cannot seal to this recipient key: {0}")]
    KeySeal(String),
    /// A chunk failed authentication.
    #[error("chunk {0} failed authentication: the file was changed, cut or reordered")]
    Chunk(u32),
    /// The file ends without a final chunk.
    #[error("the file is truncated after chunk {0} (no final chunk)")]
    Truncated(u32),
    /// More than 2³² chunks.
    #[error("too many chunks")]
    TooLong,
    /// A job id in text is not 32 hex digits.
    #[error("a job id is 32 hexadecimal digits")]
    JobIdSyntax,
    /// The OS random source failed.
    #[error("no randomness: {0}")]
    Random(String),
}

impl From<SealError> for io::Error {
    fn from(e: SealError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// The [`SealError`] inside an I/O error from [`Opener`] or [`Sealer`], if there is one.
pub fn seal_error(e: &io::Error) -> Option<&SealError> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<SealError>())
}

fn nonce(counter: u32, last: bool) -> aes_gcm::Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[7..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n.into()
}

/// Seals a job's prompt for `recipient` (not compressed).
pub fn seal_prompt(
    prompt: &str,
    sender: &Identity,
    recipient: &Recipient,
    job: JobId,
) -> io::Result<Vec<u8>> {
    let mut sealer = Sealer::new(Vec::new(), sender, recipient, Contents::Prompt, job)?;
    sealer.write_all(prompt.as_bytes())?;
    sealer.finish()
}

/// Opens a sealed prompt with `me`'s key, as `expect` says; refuses one over `max_bytes` or
/// not UTF-8. Errors say what was wrong, never what the prompt holds.
pub fn open_prompt(
    sealed: &[u8],
    me: &Identity,
    expect: Expect,
    max_bytes: usize,
) -> Result<(SealedHeader, String), String> {
    let (header, opener) =
        Opener::new(sealed, me, Contents::Prompt, expect).map_err(|e| e.to_string())?;
    let mut prompt = Vec::new();
    opener.take(max_bytes as u64 + 1).read_to_end(&mut prompt).map_err(|e| e.to_string())?;
    if prompt.len() > max_bytes {
        return Err(format!("the prompt is larger than {max_bytes} bytes"));
    }
    let prompt = String::from_utf8(prompt).map_err(|_| "the prompt is not UTF-8".to_owned())?;
    Ok((header, prompt))
}

/// Writes a sealed file: the header at creation, then chunks as plaintext arrives.
/// [`Sealer::finish`] writes the final chunk; a sealer dropped without it leaves a file every
/// reader refuses.
pub struct Sealer<W: Write> {
    out: W,
    cipher: Aes256Gcm,
    aad: [u8; 32],
    buf: Vec<u8>,
    chunk_size: usize,
    counter: u32,
}

impl<W: Write> Sealer<W> {
    /// Writes the header for `contents` of `job`, signed by `sender` and sealed to `recipient`.
    pub fn new(
        mut out: W,
        sender: &Identity,
        recipient: &Recipient,
        contents: Contents,
        job: JobId,
    ) -> Result<Self, io::Error> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut()).map_err(|e| SealError::Random(e.to_string()))?;
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(&SEAL_MAGIC);
        header[8..10].copy_from_slice(&SEAL_VERSION.to_be_bytes());
        header[10] = contents.byte();
        header[12..16].copy_from_slice(&CHUNK_SIZE.to_be_bytes());
        header[16..32].copy_from_slice(&job.0);
        header[32..64].copy_from_slice(sender.node_id().as_bytes());
        header[64..96].copy_from_slice(recipient.node.as_bytes());
        header[96..128].copy_from_slice(&recipient.key.0);
        let public = <Kem as hpke::Kem>::PublicKey::from_bytes(&recipient.key.0)
            .map_err(|e| SealError::KeySeal(e.to_string()))?;
        let (enc, sealed_key) = hpke::single_shot_seal::<HpkeAead, Kdf, Kem>(
            &hpke::OpModeS::Base,
            &public,
            &header[..INFO_LEN],
            key.as_ref(),
            b"",
        )
        .map_err(|e| SealError::KeySeal(e.to_string()))?;
        header[128..160].copy_from_slice(&enc.to_bytes());
        header[160..208].copy_from_slice(&sealed_key);
        let signature = sender.sign(Domain::SealedHeader, &header[..SIGNED_LEN]);
        header[SIGNED_LEN..].copy_from_slice(&signature.0);
        out.write_all(&header)?;
        let cipher = Aes256Gcm::new((&*key).into());
        let chunk_size = CHUNK_SIZE as usize;
        let aad = Sha256::digest(header).into();
        Ok(Self {
            out,
            cipher,
            aad,
            buf: Vec::with_capacity(chunk_size + TAG_LEN),
            chunk_size,
            counter: 0,
        })
    }

    fn emit(&mut self, last: bool) -> io::Result<()> {
        let tag = self
            .cipher
            .encrypt_inout_detached(
                &nonce(self.counter, last),
                &self.aad,
                self.buf.as_mut_slice().into(),
            )
            .map_err(|_| io::Error::other("AES-GCM refused a chunk"))?;
        self.out.write_all(&self.buf)?;
        self.out.write_all(&tag)?;
        self.buf.clear();
        self.counter = self.counter.checked_add(1).ok_or(SealError::TooLong)?;
        Ok(())
    }

    /// Writes the final chunk and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.emit(true)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(self.chunk_size - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.chunk_size {
            self.emit(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// What the opener checks the header against, besides "sealed to me".
#[derive(Debug, Clone, Copy, Default)]
pub struct Expect {
    /// The sender it must come from.
    pub sender: Option<NodeId>,
    /// The job it must belong to.
    pub job: Option<JobId>,
}

/// Reads a sealed file's plaintext, authenticating each chunk before releasing it.
pub struct Opener<R: Read> {
    inner: R,
    cipher: Aes256Gcm,
    aad: [u8; 32],
    chunk_size: usize,
    buf: Vec<u8>,
    pos: usize,
    counter: u32,
    done: bool,
}

impl<R: Read> Opener<R> {
    /// Reads and checks the header (magic, version, `contents`, recipient, signature, the
    /// expectations) and opens the content key with `me`'s sealing key.
    pub fn new(
        mut inner: R,
        me: &Identity,
        contents: Contents,
        expect: Expect,
    ) -> Result<(SealedHeader, Self), io::Error> {
        let mut header = [0u8; HEADER_LEN];
        if fill(&mut inner, &mut header)? < HEADER_LEN {
            return Err(SealError::Header(SHORT).into());
        }
        let parsed = parse_header(&header, contents)?;
        if parsed.recipient.node != me.node_id() {
            return Err(
                SealError::NotForMe { found: parsed.recipient.node, me: me.node_id() }.into()
            );
        }
        if parsed.recipient.key != me.sealing_public() {
            let mine = me.sealing_public();
            return Err(SealError::OtherKey { found: parsed.recipient.key, mine }.into());
        }
        let signature = Signature(header[SIGNED_LEN..].try_into().map_err(|_| SealError::Magic)?);
        let key = parsed.sender.public_key().map_err(|_| SealError::Signature(parsed.sender))?;
        verify(&key, Domain::SealedHeader, &header[..SIGNED_LEN], &signature)
            .map_err(|_| SealError::Signature(parsed.sender))?;
        if let Some(expected) = expect.sender.filter(|s| *s != parsed.sender) {
            return Err(SealError::Sender { expected, found: parsed.sender }.into());
        }
        if let Some(expected) = expect.job.filter(|j| *j != parsed.job) {
            return Err(SealError::Job { expected, found: parsed.job }.into());
        }
        let secret = me.sealing_secret().to_bytes();
        let private = <Kem as hpke::Kem>::PrivateKey::from_bytes(secret.as_ref())
            .map_err(|_| SealError::KeyUnwrap)?;
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&header[128..160])
            .map_err(|_| SealError::KeyUnwrap)?;
        let key = Zeroizing::new(
            hpke::single_shot_open::<HpkeAead, Kdf, Kem>(
                &hpke::OpModeR::Base,
                &private,
                &enc,
                &header[..INFO_LEN],
                &header[160..208],
                b"",
            )
            .map_err(|_| SealError::KeyUnwrap)?,
        );
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| SealError::KeyUnwrap)?;
        let chunk_size = parsed.chunk_size as usize;
        let opener = Self {
            inner,
            cipher,
            aad: Sha256::digest(header).into(),
            chunk_size,
            buf: Vec::with_capacity(chunk_size + TAG_LEN),
            pos: 0,
            counter: 0,
            done: false,
        };
        Ok((parsed, opener))
    }

    /// Reads, authenticates and decrypts the next chunk into `buf`.
    fn next_chunk(&mut self) -> io::Result<()> {
        self.buf.resize(self.chunk_size + TAG_LEN, 0);
        let filled = fill(&mut self.inner, &mut self.buf)?;
        let last = filled < self.buf.len();
        if filled < TAG_LEN {
            return Err(SealError::Truncated(self.counter).into());
        }
        self.buf.truncate(filled);
        let body = filled - TAG_LEN;
        let (data, tag) = self.buf.split_at_mut(body);
        let tag: &[u8] = tag;
        self.cipher
            .decrypt_inout_detached(
                &nonce(self.counter, last),
                &self.aad,
                data.into(),
                tag.try_into().map_err(|_| SealError::Chunk(self.counter))?,
            )
            .map_err(|_| SealError::Chunk(self.counter))?;
        self.buf.truncate(body);
        self.pos = 0;
        self.done = last;
        self.counter = self.counter.checked_add(1).ok_or(SealError::TooLong)?;
        Ok(())
    }
}

impl<R: Read> Read for Opener<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn parse_header(header: &[u8; HEADER_LEN], expected: Contents) -> Result<SealedHeader, SealError> {
    if header[..8] != SEAL_MAGIC {
        return Err(SealError::Magic);
    }
    let version = u16::from_be_bytes([header[8], header[9]]);
    if version != SEAL_VERSION {
        return Err(SealError::Version(version));
    }
    let contents = Contents::from_byte(header[10]).ok_or_else(|| SealError::Contents {
        expected: "package or diff",
        found: format!("unknown contents {}", header[10]),
    })?;
    if header[11] != 0 {
        return Err(SealError::Header("reserved byte is not zero"));
    }
    let chunk_size = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
    if !CHUNK_RANGE.contains(&chunk_size) {
        return Err(SealError::Header("chunk size outside 4 KiB..=1 MiB"));
    }
    if contents != expected {
        let found = contents.name().to_owned();
        return Err(SealError::Contents { expected: expected.name(), found });
    }
    let bytes32 = |at: usize| -> [u8; 32] {
        let mut b = [0u8; 32];
        b.copy_from_slice(&header[at..at + 32]);
        b
    };
    let mut job = [0u8; 16];
    job.copy_from_slice(&header[16..32]);
    Ok(SealedHeader {
        contents,
        chunk_size,
        job: JobId(job),
        sender: NodeId::from_bytes(bytes32(32)),
        recipient: Recipient {
            node: NodeId::from_bytes(bytes32(64)),
            key: SealingPublicKey(bytes32(96)),
        },
    })
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
