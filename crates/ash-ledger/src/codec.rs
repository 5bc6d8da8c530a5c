//! Fixed-width big-endian reading and writing for canonical bytes.

use ash_identity::{NodeId, Signature};

/// Bytes that are not a valid encoding, with where and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}: {what}")]
pub struct DecodeError {
    /// Offset of the problem from the start of the entry.
    pub offset: usize,
    /// What is wrong.
    pub what: String,
}

#[derive(Default)]
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    pub(crate) fn id(&mut self, v: NodeId) -> &mut Self {
        self.bytes(v.as_bytes())
    }
}

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Offset of `bytes` inside the outermost entry, for error positions.
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) const fn new(bytes: &'a [u8], base: usize) -> Self {
        Self { bytes, pos: 0, base }
    }

    pub(crate) const fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub(crate) fn error(&self, what: impl Into<String>) -> DecodeError {
        DecodeError { offset: self.offset(), what: what.into() }
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let end =
            self.pos.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or_else(|| {
                self.error(format!(
                    "truncated: {what} needs {n} bytes, {} left",
                    self.bytes.len() - self.pos
                ))
            })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }
    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
    pub(crate) fn id(&mut self, what: &str) -> Result<NodeId, DecodeError> {
        Ok(NodeId::from_bytes(self.array(what)?))
    }
    pub(crate) fn signature(&mut self, what: &str) -> Result<Signature, DecodeError> {
        Ok(Signature(self.array(what)?))
    }

    /// UTF-8 text of `len` bytes without control characters.
    pub(crate) fn text(&mut self, len: usize, what: &str) -> Result<String, DecodeError> {
        let start = self.offset();
        let bytes = self.take(len, what)?;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| DecodeError { offset: start, what: format!("{what} is not UTF-8") })?;
        if text.chars().any(char::is_control) {
            return Err(DecodeError {
                offset: start,
                what: format!("{what} holds control characters"),
            });
        }
        Ok(text.to_owned())
    }

    pub(crate) const fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn finish(&self, what: &str) -> Result<(), DecodeError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(self.error(format!("{} unexpected bytes after {what}", self.remaining())))
        }
    }
}
