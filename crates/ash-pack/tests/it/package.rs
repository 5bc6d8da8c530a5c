//! Packages end to end: round trips, tampered ciphertext, hostile archives.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use ash_identity::Identity;
use ash_pack::{
    ArchiveError, CHUNK_SIZE, Contents, Entry, EntryKind, Expect, HEADER_LEN, JobId, Limits,
    PAYLOAD_MAGIC, PackError, PackOptions, Recipient, SealError, Sealer, WalkOptions, open, pack,
    walk,
};
use pretty_assertions::assert_eq;
use proptest::prelude::*;

use crate::write_tree;

pub(crate) fn alice() -> Identity {
    Identity::insecure_from_label("alice")
}

pub(crate) fn bob() -> Identity {
    Identity::insecure_from_label("bob")
}

pub(crate) fn to(identity: &Identity) -> Recipient {
    Recipient { node: identity.node_id(), key: identity.sealing_public() }
}

const JOB: JobId = JobId([7; 16]);

/// Packs `root` from alice to bob.
fn pack_tree(root: &Path) -> Vec<u8> {
    let walk = walk(root, &WalkOptions::default()).unwrap();
    let (_, _, out) =
        pack(&walk, &alice(), &to(&bob()), JOB, &PackOptions::default(), Vec::new()).unwrap();
    out
}

fn open_as(identity: &Identity, sealed: &[u8], dest: &Path) -> Result<ash_pack::Opened, PackError> {
    open(sealed, identity, Expect::default(), &Limits::default(), dest)
}

/// Everything a tree holds, as comparable values: entries plus file contents.
fn snapshot(root: &Path) -> Vec<(Entry, Vec<u8>)> {
    let walk = walk(root, &WalkOptions::default()).unwrap();
    walk.entries
        .into_iter()
        .map(|e| {
            let data = if e.kind == EntryKind::File {
                std::fs::read(root.join(&e.path)).unwrap()
            } else {
                Vec::new()
            };
            (e, data)
        })
        .collect()
}

#[test]
fn round_trip_keeps_modes_links_long_paths_and_empty_dirs() {
    let src = tempfile::tempdir().unwrap();
    let long = format!("{}/{}.txt", "d".repeat(120), "f".repeat(200));
    write_tree(
        src.path(),
        &[("a.txt", "hello"), ("bin/run.sh", "#!/bin/sh\n"), ("empty/", ""), (&long, "long")],
    );
    std::fs::set_permissions(src.path().join("bin/run.sh"), std::fs::Permissions::from_mode(0o755))
        .unwrap();
    std::os::unix::fs::symlink("../a.txt", src.path().join("bin/link")).unwrap();
    std::os::unix::fs::symlink(&long, src.path().join("to-long")).unwrap();
    let sealed = pack_tree(src.path());

    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("tree");
    let opened = open_as(&bob(), &sealed, &dest).unwrap();
    assert_eq!(opened.header.sender, alice().node_id());
    assert_eq!(opened.header.job, JOB);
    assert_eq!(opened.info.entries, 8);
    assert_eq!(snapshot(&dest), snapshot(src.path()));
    let mode = std::fs::metadata(dest.join("bin/run.sh")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// tree → package → tree is the identity, for random names, contents, modes and links.
    #[test]
    fn round_trip_is_identity(
        files in prop::collection::btree_map(
            "[a-z]{1,3}(/[a-z0-9_]{1,12}){0,3}",
            (prop::collection::vec(any::<u8>(), 0..3000), any::<bool>()),
            1..20,
        ),
        links in prop::collection::vec((0usize..20, 0usize..20), 0..4),
    ) {
        let src = tempfile::tempdir().unwrap();
        let names: Vec<&String> = files.keys().collect();
        for (path, (data, exec)) in &files {
            let full = src.path().join(path);
            // A path may be a prefix of another; keep whichever comes first.
            if std::fs::create_dir_all(full.parent().unwrap()).is_err() || full.exists() {
                continue;
            }
            std::fs::write(&full, data).unwrap();
            let mode = if *exec { 0o755 } else { 0o644 };
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        for (i, (from, target)) in links.iter().enumerate() {
            let target = names[target % names.len()];
            let link = src.path().join(format!("link{i}-{}", from % 7));
            let _ = std::os::unix::fs::symlink(target, link);
        }
        let sealed = pack_tree(src.path());
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("t");
        open_as(&bob(), &sealed, &dest).unwrap();
        prop_assert_eq!(snapshot(&dest), snapshot(src.path()));
    }
}

/// A tree whose package spans several chunks (incompressible data).
fn multi_chunk_package() -> Vec<u8> {
    let src = tempfile::tempdir().unwrap();
    let mut noise = vec![0u8; 3 * CHUNK_SIZE as usize];
    let mut x = 0x9e37_79b9_u32;
    for b in &mut noise {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    std::fs::write(src.path().join("noise.bin"), &noise).unwrap();
    std::fs::write(src.path().join("a.txt"), "a").unwrap();
    pack_tree(src.path())
}

fn chunk_len() -> usize {
    CHUNK_SIZE as usize + 16
}

/// Opening fails with `want`, and the destination does not exist afterwards.
#[track_caller]
fn refused(identity: &Identity, sealed: &[u8], want: &str) {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let err = open_as(identity, sealed, &dest).unwrap_err();
    assert_eq!(err.to_string(), want);
    assert!(!dest.exists(), "destination left behind after: {want}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn truncation_anywhere_is_detected() {
    let sealed = multi_chunk_package();
    let chunks = (sealed.len() - HEADER_LEN).div_ceil(chunk_len());
    assert!(chunks >= 4, "{chunks} chunks");
    for k in 1..chunks {
        let cut = HEADER_LEN + k * chunk_len();
        refused(
            &bob(),
            &sealed[..cut],
            &format!("the file is truncated after chunk {k} (no final chunk)"),
        );
    }
    refused(&bob(), &sealed[..HEADER_LEN], "the file is truncated after chunk 0 (no final chunk)");
    refused(
        &bob(),
        &sealed[..HEADER_LEN + 100],
        "chunk 0 failed authentication: the file was changed, cut or reordered",
    );
    let last = chunks as u32 - 1;
    refused(
        &bob(),
        &sealed[..sealed.len() - 1],
        &format!("chunk {last} failed authentication: the file was changed, cut or reordered"),
    );
    refused(&bob(), &sealed[..100], "malformed header: file shorter than the 272-byte header");
}

#[test]
fn reordered_spliced_flipped_and_extended_ciphertext_is_refused() {
    let sealed = multi_chunk_package();
    let chunk = |i: usize| HEADER_LEN + i * chunk_len()..HEADER_LEN + (i + 1) * chunk_len();
    let failed =
        |i: u32| format!("chunk {i} failed authentication: the file was changed, cut or reordered");

    let mut swapped = sealed.clone();
    let (first, second) = (sealed[chunk(0)].to_vec(), sealed[chunk(1)].to_vec());
    swapped[chunk(0)].copy_from_slice(&second);
    swapped[chunk(1)].copy_from_slice(&first);
    refused(&bob(), &swapped, &failed(0));

    // A chunk from another package for the same job, sender and recipient.
    let other = multi_chunk_package();
    let mut spliced = sealed.clone();
    spliced[chunk(1)].copy_from_slice(&other[chunk(1)]);
    refused(&bob(), &spliced, &failed(1));

    for at in [HEADER_LEN + 5, HEADER_LEN + chunk_len() + 77, sealed.len() - 3] {
        let mut flipped = sealed.clone();
        flipped[at] ^= 0x01;
        let index = ((at - HEADER_LEN) / chunk_len()) as u32;
        refused(&bob(), &flipped, &failed(index));
    }
    let mut extended = sealed.clone();
    extended.extend_from_slice(b"more");
    let last = ((sealed.len() - HEADER_LEN) / chunk_len()) as u32;
    refused(&bob(), &extended, &failed(last));
}

#[test]
fn header_tampering_and_wrong_keys_are_refused() {
    let sealed = multi_chunk_package();
    let flip = |at: usize| {
        let mut s = sealed.clone();
        s[at] ^= 0x01;
        s
    };
    let alice_id = alice().node_id();
    refused(&bob(), &flip(0), "not a sealed ash file (bad magic bytes)");
    refused(
        &bob(),
        &flip(9),
        "sealed-file version 0 is not supported (this build reads version 1)",
    );
    refused(
        &bob(),
        &flip(10),
        "this sealed file holds unknown contents 0, expected a package or diff",
    );
    refused(&bob(), &flip(11), "malformed header: reserved byte is not zero");
    refused(&bob(), &flip(13), "malformed header: chunk size outside 4 KiB..=1 MiB");
    for field in [12 + 3, 16, 140, 170, 230] {
        // chunk size (still in range), job id, encapsulated key, sealed key, signature
        let s = flip(field);
        let out = tempfile::tempdir().unwrap();
        let err = open_as(&bob(), &s, &out.path().join("d")).unwrap_err();
        assert!(
            matches!(err, PackError::Seal(SealError::Signature(_) | SealError::Header(_))),
            "byte {field}: {err}"
        );
    }
    refused(
        &alice(),
        &sealed,
        &format!("sealed to {}, not to this identity ({alice_id})", bob().node_id()),
    );
    // Same identity, another sealing key (rotated).
    let rotated = Identity::from_secrets(&[0x42; 32], &[0x43; 32]).unwrap();
    let for_old = {
        let walk_dir = tempfile::tempdir().unwrap();
        std::fs::write(walk_dir.path().join("x"), "x").unwrap();
        let w = walk(walk_dir.path(), &WalkOptions::default()).unwrap();
        let old = Recipient { node: rotated.node_id(), key: bob().sealing_public() };
        pack(&w, &alice(), &old, JOB, &PackOptions::default(), Vec::new()).unwrap().2
    };
    refused(
        &rotated,
        &for_old,
        &format!(
            "sealed to sealing key {}, but this identity's key is {}",
            bob().sealing_public(),
            rotated.sealing_public()
        ),
    );
    // Expectations of the caller.
    let out = tempfile::tempdir().unwrap();
    let expect = Expect { sender: Some(bob().node_id()), job: None };
    let err =
        open(&sealed[..], &bob(), expect, &Limits::default(), &out.path().join("d")).unwrap_err();
    assert_eq!(err.to_string(), format!("sealed by {alice_id}, expected {}", bob().node_id()));
    let expect = Expect { sender: None, job: Some(JobId([8; 16])) };
    let err =
        open(&sealed[..], &bob(), expect, &Limits::default(), &out.path().join("d")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("sealed for job {}, expected job {}", JobId([7; 16]), JobId([8; 16]))
    );
}

/// A tar header block for hostile archives, with a valid checksum.
fn ustar(name: &str, typeflag: u8, size: u64, link: &str) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// An entry whose path (and link target) travel in a pax header, as long paths do.
fn pax_entry(path: &str, typeflag: u8, data: &[u8], link: Option<&str>) -> Vec<u8> {
    let record = |key: &str, value: &str| {
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        format!("{len}{body}")
    };
    let mut records = record("path", path);
    if let Some(link) = link {
        records.push_str(&record("linkpath", link));
    }
    let mut out = ustar("pax", b'x', records.len() as u64, "");
    out.extend_from_slice(records.as_bytes());
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&ustar("long", typeflag, data.len() as u64, ""));
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn file(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = ustar(name, b'0', data.len() as u64, "");
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// Seals a hand-made payload: summary, `tar` blocks, end of archive, and no manifest (every
/// hostile archive must be refused before the manifest is looked at).
fn hostile(entries: u64, total: u64, tar: &[Vec<u8>]) -> Vec<u8> {
    let mut payload = PAYLOAD_MAGIC.to_vec();
    payload.extend_from_slice(&entries.to_be_bytes());
    payload.extend_from_slice(&total.to_be_bytes());
    for block in tar {
        payload.extend_from_slice(block);
    }
    payload.extend_from_slice(&[0; 1024]);
    seal(&payload)
}

fn seal(payload: &[u8]) -> Vec<u8> {
    let sealer = Sealer::new(Vec::new(), &alice(), &to(&bob()), Contents::Package, JOB).unwrap();
    let mut zstd = zstd::stream::write::Encoder::new(sealer, 3).unwrap();
    zstd.write_all(payload).unwrap();
    zstd.finish().unwrap().finish().unwrap()
}

#[test]
fn hostile_archives_are_refused_before_anything_lands_outside() {
    let archive = |index: u64, path: Option<&str>, problem: &str| {
        PackError::Archive(ArchiveError {
            index,
            path: path.map(str::to_owned),
            problem: problem.to_owned(),
        })
        .to_string()
    };
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "traversal",
            hostile(1, 1, &[file("../evil", b"x")]),
            archive(0, Some("../evil"), "unsafe path: `.` or `..` component"),
        ),
        (
            "absolute",
            hostile(1, 1, &[file("/tmp/evil", b"x")]),
            archive(0, Some("/tmp/evil"), "unsafe path: absolute path"),
        ),
        (
            "git dir",
            hostile(1, 1, &[file("a/.git/hooks/pre-commit", b"x")]),
            archive(0, Some("a/.git/hooks/pre-commit"), "unsafe path: `.git` component"),
        ),
        (
            "control",
            hostile(1, 1, &[file("a\u{1b}b", b"x")]),
            archive(0, Some("a\u{1b}b"), "unsafe path: control character in name"),
        ),
        (
            "hard link",
            hostile(1, 0, &[ustar("h", b'1', 0, "/etc/passwd")]),
            archive(0, Some("h"), "a hard link is not allowed"),
        ),
        (
            "device",
            hostile(1, 0, &[ustar("dev", b'3', 0, "")]),
            archive(0, Some("dev"), "a device file is not allowed"),
        ),
        (
            "fifo",
            hostile(1, 0, &[ustar("fifo", b'6', 0, "")]),
            archive(0, Some("fifo"), "a FIFO is not allowed"),
        ),
        (
            "gnu long name",
            hostile(1, 0, &[ustar("././@LongLink", b'L', 0, "")]),
            archive(0, Some("././@LongLink"), "a GNU long-name header is not allowed"),
        ),
        (
            "absolute link",
            hostile(1, 0, &[ustar("l", b'2', 0, "/etc/passwd")]),
            archive(0, Some("l"), "symlink target is empty, absolute or too long"),
        ),
        (
            "write through link",
            hostile(2, 1, &[ustar("l", b'2', 0, "sub"), file("l/x", b"x")]),
            "l/x: parent `l` is not a directory in this package".to_owned(),
        ),
        (
            "link escaping through a link",
            hostile(2, 0, &[ustar("here", b'2', 0, "."), ustar("up", b'2', 0, "here/..")]),
            "up: symlink resolves outside the package".to_owned(),
        ),
        (
            "duplicate",
            hostile(2, 2, &[file("a", b"1"), file("a", b"2")]),
            "a: appears twice in the package".to_owned(),
        ),
        (
            "bad checksum",
            hostile(
                1,
                1,
                &[{
                    let mut f = file("a", b"x");
                    f[0] = b'b';
                    f
                }],
            ),
            archive(0, None, "header checksum mismatch"),
        ),
        (
            "unknown pax key",
            hostile(
                1,
                1,
                &[{
                    let record = b"20 mtime=1234567890\n";
                    let mut h = ustar("pax", b'x', record.len() as u64, "");
                    h.extend_from_slice(record);
                    h.resize(1024, 0);
                    h.extend_from_slice(&file("a", b"x"));
                    h
                }],
            ),
            archive(0, None, "pax key `mtime` is not used by packages"),
        ),
        (
            "deeper than 128 components",
            hostile(1, 1, &[pax_entry(&format!("{}f", "d/".repeat(128)), b'0', b"x", None)]),
            archive(
                0,
                Some(&format!("{}f", "d/".repeat(128))),
                "unsafe path: more than 128 components deep",
            ),
        ),
        (
            "a link loop",
            hostile(2, 0, &[ustar("a", b'2', 0, "b"), ustar("b", b'2', 0, "a")]),
            "a: symlink resolves outside the package".to_owned(),
        ),
        (
            "more entries than the summary",
            hostile(1, 2, &[file("a", b"1"), file("b", b"2")]),
            "refused package: more entries or bytes than the summary says".to_owned(),
        ),
        (
            "no manifest",
            hostile(1, 1, &[file("a", b"1")]),
            "refused package: the manifest does not match the archive".to_owned(),
        ),
        (
            "entry count bomb",
            hostile(10_000_000, 0, &[]),
            "refused package: entry count exceeds the limit of 200000".to_owned(),
        ),
        (
            "size bomb",
            hostile(1, 1 << 40, &[]),
            "refused package: total size exceeds the limit of 2147483648".to_owned(),
        ),
        (
            "not a payload",
            seal(b"hello, this is not a package payload"),
            "refused package: not a package payload (bad magic)".to_owned(),
        ),
        (
            "not zstd",
            {
                let mut sealer =
                    Sealer::new(Vec::new(), &alice(), &to(&bob()), Contents::Package, JOB).unwrap();
                sealer.write_all(b"plain bytes").unwrap();
                sealer.finish().unwrap()
            },
            "refused package: cannot decompress: Unknown frame descriptor".to_owned(),
        ),
    ];
    for (name, sealed, want) in cases {
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("dest");
        let err = open_as(&bob(), &sealed, &dest).unwrap_err();
        assert_eq!(err.to_string(), want, "{name}");
        assert!(!dest.exists(), "{name}: destination left behind");
        assert_eq!(
            std::fs::read_dir(out.path()).unwrap().count(),
            0,
            "{name}: wrote beside the destination"
        );
    }
}

#[test]
fn compression_ratio_bomb_is_refused() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("zeros"), vec![0u8; 64 << 20]).unwrap();
    let sealed = pack_tree(src.path());
    assert!(sealed.len() < 64 << 10, "{} bytes", sealed.len());
    let out = tempfile::tempdir().unwrap();
    let err =
        open(&sealed[..], &bob(), Expect::default(), &Limits::default(), &out.path().join("d"))
            .unwrap_err();
    assert_eq!(err.to_string(), "refused package: compression ratio exceeds the limit of 1000");
    // A user who expects such files raises the limit.
    let limits = Limits { max_ratio: u64::MAX, ..Limits::default() };
    open(&sealed[..], &bob(), Expect::default(), &limits, &out.path().join("d")).unwrap();
}

#[test]
fn destination_must_be_fresh() {
    let sealed = pack_tree(tempfile::tempdir().unwrap().path());
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("keep.txt"), "mine").unwrap();
    let err = open_as(&bob(), &sealed, out.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: not empty; unpack into a new or empty directory", out.path().display())
    );
    assert_eq!(std::fs::read_to_string(out.path().join("keep.txt")).unwrap(), "mine");
    let err = open_as(&bob(), &sealed, &out.path().join("keep.txt")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: exists and is not a directory", out.path().join("keep.txt").display())
    );
    // An existing empty directory is fine, if only its owner may write to it.
    std::fs::create_dir(out.path().join("empty")).unwrap();
    std::fs::set_permissions(out.path().join("empty"), std::fs::Permissions::from_mode(0o755))
        .unwrap();
    open_as(&bob(), &sealed, &out.path().join("empty")).unwrap();
    let shared = out.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(
        open_as(&bob(), &sealed, &shared).unwrap_err().to_string(),
        format!(
            "{}: others may write to it; unpack into a directory only you can write (chmod go-w)",
            shared.display()
        )
    );
    // A new root is private.
    open_as(&bob(), &sealed, &out.path().join("new")).unwrap();
    let mode = std::fs::metadata(out.path().join("new")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    // Someone else's directory is refused (checked when the tests can give one away).
    if nix::unistd::geteuid().is_root() {
        let foreign = out.path().join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
        assert_eq!(
            open_as(&bob(), &sealed, &foreign).unwrap_err().to_string(),
            format!(
                "{}: belongs to another user; unpack into a directory of your own",
                foreign.display()
            )
        );
    }
}

#[test]
fn secrets_refuse_to_pack_unless_allowed() {
    let src = tempfile::tempdir().unwrap();
    let token = format!("ghp_{}", "A".repeat(36));
    write_tree(
        src.path(),
        &[("config.js", &format!("const t = \"{token}\";\n")), ("ok.rs", "fn x() {}")],
    );
    let w = walk(src.path(), &WalkOptions::default()).unwrap();
    let err =
        pack(&w, &alice(), &to(&bob()), JOB, &PackOptions::default(), Vec::new()).unwrap_err();
    let message = err.to_string();
    assert_eq!(
        message,
        "1 likely secret(s) found, first in config.js:1 (github-token); exclude the files in .ashignore or confirm that they may be sent"
    );
    assert!(!format!("{err:?}").contains(&token), "the secret itself leaked into the error");
    let options = PackOptions { allow_secrets: true, ..PackOptions::default() };
    let (_, findings, _) = pack(&w, &alice(), &to(&bob()), JOB, &options, Vec::new()).unwrap();
    assert_eq!(findings.len(), 1);
}

#[test]
fn a_file_swapped_for_a_link_after_the_walk_is_not_followed() {
    let src = tempfile::tempdir().unwrap();
    write_tree(src.path(), &[("a.txt", "hello\n"), ("b.txt", "world\n")]);
    let walked = walk(src.path(), &WalkOptions::default()).unwrap();
    // Between the walk and the read, a.txt becomes a link to a secret of the same size.
    std::fs::write(src.path().join("secret"), "s3cr3t").unwrap();
    std::fs::remove_file(src.path().join("a.txt")).unwrap();
    std::os::unix::fs::symlink(src.path().join("secret"), src.path().join("a.txt")).unwrap();
    let err = pack(&walked, &alice(), &to(&bob()), JOB, &PackOptions::default(), Vec::new())
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.to_string(), "a.txt changed while it was being packed; pack again");
}

/// Reads a package a little at a time; once the unpack has made `d`, swaps it for a link to
/// `outside`, as a co-writer in the destination would.
struct SwapDuringUnpack<'a> {
    input: &'a [u8],
    dest: &'a Path,
    outside: &'a Path,
    swapped: bool,
}

impl std::io::Read for SwapDuringUnpack<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let d = self.dest.join("d");
        if !self.swapped && d.is_dir() {
            std::fs::rename(&d, self.dest.join("d-moved")).unwrap();
            std::os::unix::fs::symlink(self.outside, &d).unwrap();
            self.swapped = true;
        }
        let n = buf.len().min(1024).min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

#[test]
fn a_directory_swapped_for_a_link_while_unpacking_is_not_followed() {
    let src = tempfile::tempdir().unwrap();
    // Incompressible files, so that `d` is made while most of the package is still to come.
    let mut x = 0x2545_f491_u32;
    for i in 0..200 {
        let noise: Vec<u8> = (0..2048)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let dir = if i < 100 { "d" } else { "d/sub" };
        std::fs::create_dir_all(src.path().join(dir)).unwrap();
        std::fs::write(src.path().join(format!("{dir}/f{i:04}")), noise).unwrap();
    }
    let sealed = pack_tree(src.path());
    assert!(sealed.len() > 4 * CHUNK_SIZE as usize);
    let out = tempfile::tempdir().unwrap();
    let (dest, outside) = (out.path().join("dest"), out.path().join("outside"));
    std::fs::create_dir(&outside).unwrap();
    let reader =
        SwapDuringUnpack { input: &sealed, dest: &dest, outside: &outside, swapped: false };
    let opened = open(reader, &bob(), Expect::default(), &Limits::default(), &dest).unwrap();
    // Everything went where the unpack had made `d`, which moved; nothing through the link.
    assert_eq!(opened.info.entries, 202);
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "written through the link");
    assert_eq!(std::fs::read_link(dest.join("d")).unwrap(), outside);
    let moved = |dir: &str| std::fs::read_dir(dest.join(dir)).unwrap().count();
    assert_eq!((moved("d-moved"), moved("d-moved/sub")), (101, 100));
}
