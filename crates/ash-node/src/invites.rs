//! A mint authority's invite codes, for networks whose genesis sets `signup_cost = "invite"`:
//! issued by `ash admin invite`, each redeemed once, by one identity, through
//! [`PeerRequest::Signup`](ash_protocol::PeerRequest::Signup).
//!
//! The book is one text file the authority keeps (`$ASH_HOME/admin/invites`), a line per code:
//! `<SHA-256 of the code, hex> <issued, ms> <redeemed by, hex node id, or -> <redeemed, ms, or 0>`.
//! Only hashes are kept, so the file does not hand out codes. Every change takes an exclusive
//! lock on the file and replaces it whole (written beside, then renamed), so `ash admin invite`
//! and a running `ash admin serve` can share it and a crash leaves the old book or the new.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use ash_identity::{NodeId, encode_hex};
use sha2::{Digest as _, Sha256};

use crate::NodeError;

/// Most codes one book holds.
pub const MAX_INVITES: usize = 100_000;
/// Most codes issued at once.
pub const MAX_INVITES_AT_ONCE: usize = 1000;

/// An invite book on disk.
#[derive(Debug, Clone)]
pub struct InviteBook {
    path: PathBuf,
}

/// Why a code was not redeemed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    /// No such code in this authority's book.
    #[error("this authority issued no such invite code")]
    Unknown,
    /// Someone else redeemed it.
    #[error("this invite code was already used by another identity")]
    Used,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    hash: String,
    issued: u64,
    redeemed_by: Option<NodeId>,
    redeemed_at: u64,
}

impl InviteBook {
    /// The book at `path` (created on first use).
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Issues `n` new codes (`inv-` and 32 hex digits, 128 random bits) at `now`; returns them.
    /// Only their hashes are kept.
    pub fn issue(&self, n: usize, now: u64) -> Result<Vec<String>, NodeError> {
        if n == 0 || n > MAX_INVITES_AT_ONCE {
            return Err(NodeError::Invites(format!(
                "issue 1–{MAX_INVITES_AT_ONCE} codes at once, not {n}"
            )));
        }
        self.change(|lines| {
            if lines.len() + n > MAX_INVITES {
                return Err(NodeError::Invites(format!(
                    "the book holds {} codes; at most {MAX_INVITES}",
                    lines.len()
                )));
            }
            let mut codes = Vec::with_capacity(n);
            for _ in 0..n {
                let mut bytes = [0u8; 16];
                getrandom::fill(&mut bytes)
                    .map_err(|e| NodeError::Invites(format!("no randomness: {e}")))?;
                let code = format!("inv-{}", encode_hex(&bytes));
                lines.push(Line {
                    hash: hash(&code),
                    issued: now,
                    redeemed_by: None,
                    redeemed_at: 0,
                });
                codes.push(code);
            }
            Ok((codes, true))
        })
    }

    /// Redeems `code` for `who` at `now`. Redeeming it again for the same identity succeeds
    /// (an answer lost on the way is asked again); for another, it fails.
    pub fn redeem(&self, code: &str, who: NodeId, now: u64) -> Result<(), NodeError> {
        let wanted = hash(code);
        self.change(|lines| {
            let Some(line) = lines.iter_mut().find(|l| l.hash == wanted) else {
                return Err(NodeError::Invite(InviteError::Unknown));
            };
            match line.redeemed_by {
                // Asked again: nothing to write.
                Some(by) if by == who => Ok(((), false)),
                Some(_) => Err(NodeError::Invite(InviteError::Used)),
                None => {
                    line.redeemed_by = Some(who);
                    line.redeemed_at = now;
                    Ok(((), true))
                }
            }
        })
    }

    /// The identities that redeemed a code.
    pub fn admitted(&self) -> Result<HashSet<NodeId>, NodeError> {
        Ok(self.read()?.into_iter().filter_map(|l| l.redeemed_by).collect())
    }

    /// Codes issued and codes redeemed.
    pub fn counts(&self) -> Result<(usize, usize), NodeError> {
        let lines = self.read()?;
        let redeemed = lines.iter().filter(|l| l.redeemed_by.is_some()).count();
        Ok((lines.len(), redeemed))
    }

    fn read(&self) -> Result<Vec<Line>, NodeError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => parse(&text, &self.path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io(&self.path, &e)),
        }
    }

    /// Runs `f` on the lines under the lock and writes them back if it succeeds and says it
    /// changed them.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut Vec<Line>) -> Result<(T, bool), NodeError>,
    ) -> Result<T, NodeError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, &e))?;
        }
        let lock_path = self.path.with_extension("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io(&lock_path, &e))?;
        lock.lock().map_err(|e| io(&lock_path, &e))?;
        let mut lines = self.read()?;
        let (result, changed) = f(&mut lines)?;
        if !changed {
            return Ok(result);
        }
        let mut text =
            String::from("# ash invite book: sha256(code) issued_ms redeemed_by redeemed_ms\n");
        for l in &lines {
            let by = l.redeemed_by.map_or_else(|| "-".to_owned(), |n| n.to_string());
            text.push_str(&format!("{} {} {by} {}\n", l.hash, l.issued, l.redeemed_at));
        }
        let tmp = self.path.with_extension("tmp");
        let written = File::create(&tmp)
            .and_then(|mut file| {
                file.write_all(text.as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        written.map_err(|e| io(&self.path, &e))?;
        drop(lock);
        Ok(result)
    }
}

fn hash(code: &str) -> String {
    encode_hex(&Sha256::digest(code.trim().as_bytes()))
}

fn parse(text: &str, path: &Path) -> Result<Vec<Line>, NodeError> {
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let bad =
            || NodeError::Invites(format!("{}:{}: not an invite line", path.display(), n + 1));
        let fields: Vec<&str> = line.split(' ').collect();
        let [hash, issued, by, at] = fields[..] else { return Err(bad()) };
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        lines.push(Line {
            hash: hash.to_owned(),
            issued: issued.parse().map_err(|_| bad())?,
            redeemed_by: match by {
                "-" => None,
                id => Some(id.parse().map_err(|_| bad())?),
            },
            redeemed_at: at.parse().map_err(|_| bad())?,
        });
    }
    Ok(lines)
}

fn io(path: &Path, e: &std::io::Error) -> NodeError {
    NodeError::Invites(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn id(byte: u8) -> NodeId {
        ash_identity::Identity::insecure_from_label(&byte.to_string()).node_id()
    }

    #[test]
    fn codes_are_redeemed_once_and_a_damaged_book_is_refused_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin/invites");
        let book = InviteBook::new(path.clone());
        let codes = book.issue(2, 5).unwrap();
        assert_eq!(book.redeem(&codes[0], id(1), 6), Ok(()));
        // Asked again by the same identity: admitted, and nothing is written.
        let before = std::fs::read(&path).unwrap();
        assert_eq!(book.redeem(&format!(" {} ", codes[0]), id(1), 7), Ok(()));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(book.redeem(&codes[0], id(2), 8), Err(NodeError::Invite(InviteError::Used)));
        assert_eq!(book.redeem("inv-0", id(2), 8), Err(NodeError::Invite(InviteError::Unknown)));
        assert_eq!(book.admitted().unwrap(), HashSet::from([id(1)]));
        assert_eq!(book.counts().unwrap(), (2, 1));
        assert_eq!(
            book.issue(0, 9),
            Err(NodeError::Invites(format!("issue 1–{MAX_INVITES_AT_ONCE} codes at once, not 0")))
        );
        // A line someone edited by hand stops the book, with the place named.
        let mut text = String::from_utf8(before).unwrap();
        text.push_str("not a line\n");
        std::fs::write(&path, text).unwrap();
        assert_eq!(
            book.admitted(),
            Err(NodeError::Invites(format!("{}:4: not an invite line", path.display())))
        );
    }
}
