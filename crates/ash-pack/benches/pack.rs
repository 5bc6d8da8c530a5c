//! Packing + sealing and opening + unpacking a generated 5,000-file / ~50 MB tree, with the
//! machine's raw `tar | zstd` as the floor, and peak memory of each direction in a child
//! process; then a diff of every file edited: baseline, extract, check + apply. Run: `cargo bench -p ash-pack --bench pack [-- --files N] [--dir /dev/shm]`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, reason = "a benchmark")]
#![allow(clippy::disallowed_methods, reason = "the floor is measured with the real tar and zstd")]

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ash_identity::Identity;
use ash_pack::{
    ApplyOptions, Expect, Git, GitOutput, JobId, Limits, MAX_DIFF_BYTES, PackOptions, Recipient,
    WalkOptions, apply, baseline, extract, open, pack, walk,
};

const RUNS: usize = 7;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], Path::new(&args[i + 2]), Path::new(&args[i + 3]));
        return;
    }
    let files = args
        .iter()
        .position(|a| a == "--files")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(5000);
    // `--dir /dev/shm` keeps the disk out of the figures (file creation on a VM disk varies 20×).
    let scratch = match args.iter().position(|a| a == "--dir").and_then(|i| args.get(i + 1)) {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let tree = scratch.path().join("tree");
    let bytes = generate(&tree, files);
    println!("tree: {files} files, {bytes} bytes ({:.1} MB)", bytes as f64 / 1e6);

    let sealed_path = scratch.path().join("tree.ashpkg");
    let mut pack_times = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        pack_to(&tree, &sealed_path);
        pack_times.push(start.elapsed());
    }
    let sealed_len = fs::metadata(&sealed_path).unwrap().len();
    report("walk + pack + seal", &pack_times);
    println!(
        "  sealed size {sealed_len} bytes ({:.1}% of the tree)",
        100.0 * sealed_len as f64 / bytes as f64
    );

    let mut open_times = Vec::new();
    for run in 0..RUNS {
        let dest = scratch.path().join(format!("open{run}"));
        // Earlier runs' dirty pages would otherwise be written back during this one.
        sh("sync");
        let start = Instant::now();
        open_to(&sealed_path, &dest);
        open_times.push(start.elapsed());
        fs::remove_dir_all(&dest).unwrap();
    }
    report("open + unpack", &open_times);

    let exe = std::env::current_exe().unwrap();
    let children = [
        ("pack", tree.clone(), sealed_path.clone()),
        ("open", sealed_path, scratch.path().join("mem-open")),
    ];
    for (mode, from, to) in children {
        let out = Command::new(&exe).args(["--child", mode]).arg(&from).arg(&to).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        println!("peak memory of {mode} (whole process): {}", text.trim());
    }

    // The floor: GNU tar piped into zstd -3 (one thread), and back.
    let floor_file = scratch.path().join("floor.tar.zst");
    let mut floor_pack = Vec::new();
    let mut floor_open = Vec::new();
    for run in 0..RUNS {
        let start = Instant::now();
        sh(&format!(
            "tar -C {} -cf - . | zstd -q -3 -T1 -o {} -f",
            tree.display(),
            floor_file.display()
        ));
        floor_pack.push(start.elapsed());
        let dest = scratch.path().join(format!("floor{run}"));
        fs::create_dir(&dest).unwrap();
        sh("sync");
        let start = Instant::now();
        sh(&format!("zstd -q -d -c {} | tar -C {} -xf -", floor_file.display(), dest.display()));
        floor_open.push(start.elapsed());
        fs::remove_dir_all(&dest).unwrap();
    }
    report("floor: tar | zstd -3", &floor_pack);
    report("floor: zstd -d | tar -x", &floor_open);

    diff_bench(scratch.path(), &tree);
    deep_links_bench(scratch.path());
}

/// The unpack bomb of the review, at the deepest path a package may hold: a directory 127
/// components deep, 200 symlinks into its bottom and a chain of 39 links through each other.
/// Opening must stay linear in entries × depth (the review's 1,000-deep version took 9–13 s;
/// paths over 128 components are now refused when read).
fn deep_links_bench(scratch: &Path) {
    let tree = scratch.join("deep");
    let deep = (0..126).fold(tree.clone(), |p, _| p.join("d"));
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("f"), "x").unwrap();
    let target = vec!["d"; 126].join("/");
    for i in 0..200 {
        std::os::unix::fs::symlink(&target, tree.join(format!("l{i}"))).unwrap();
    }
    for i in 0..39 {
        let to = if i == 0 { "d".to_owned() } else { format!("c{}", i - 1) };
        std::os::unix::fs::symlink(to, tree.join(format!("c{i}"))).unwrap();
    }
    let sealed = scratch.join("deep.ashpkg");
    pack_to(&tree, &sealed);
    let mut times = Vec::new();
    for run in 0..RUNS {
        let dest = scratch.join(format!("deep-open{run}"));
        let start = Instant::now();
        open_to(&sealed, &dest);
        times.push(start.elapsed());
        fs::remove_dir_all(&dest).unwrap();
    }
    report("open a 127-deep tree with 239 links into it (target ≤ 50 ms)", &times);
}

/// Git run directly, as the binary's sandboxed runner does (no configuration, English).
struct StdGit;

impl Git for StdGit {
    fn run(
        &self,
        cwd: &Path,
        args: &[String],
        env: &[(String, String)],
        stdin: &[u8],
    ) -> Result<GitOutput, String> {
        use std::io::Write as _;
        let mut child = Command::new("git")
            .args(args)
            .current_dir(cwd)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("LC_ALL", "C")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        child.stdin.take().ok_or("no stdin")?.write_all(stdin).map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        Ok(GitOutput { success: out.status.success(), stdout: out.stdout, stderr: out.stderr })
    }

    /// Claimed: the benchmark's trees are its own.
    fn isolated(&self) -> bool {
        true
    }
}

/// Every file of the tree edited (every 40th line), plus one new file: baseline, extract, and
/// check + apply onto a pristine copy.
fn diff_bench(scratch: &Path, tree: &Path) {
    let mut baseline_times = Vec::new();
    let mut extract_times = Vec::new();
    let mut apply_times = Vec::new();
    let mut patch_len = 0;
    for run in 0..3 {
        let work = scratch.join(format!("diff-work{run}"));
        let pristine = scratch.join(format!("diff-pristine{run}"));
        sh(&format!(
            "cp -a {} {} && cp -a {} {}",
            tree.display(),
            work.display(),
            tree.display(),
            pristine.display()
        ));
        let start = Instant::now();
        let base = baseline(&StdGit, &work, &scratch.join(format!("base{run}.git"))).unwrap();
        baseline_times.push(start.elapsed());
        edit_every_file(&work);
        let start = Instant::now();
        let diff = extract(&StdGit, &work, &base, MAX_DIFF_BYTES).unwrap();
        extract_times.push(start.elapsed());
        assert_eq!(diff.summary.files.len(), 5001.min(diff.summary.files.len()));
        patch_len = diff.patch.len();
        let start = Instant::now();
        apply(&StdGit, &pristine, &diff.patch, ApplyOptions::default(), &scratch.join("journals"))
            .unwrap();
        apply_times.push(start.elapsed());
    }
    println!("diff of every file edited: {patch_len} bytes");
    report("baseline (git add + commit, ash's git dir)", &baseline_times);
    report("extract (add -A + binary diff + numstat)", &extract_times);
    report("apply (screen + git's reading + journal + apply)", &apply_times);
}

fn edit_every_file(root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in fs::read_dir(&dir).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "ts") {
                let text = fs::read_to_string(&path).unwrap();
                let edited: Vec<String> = text
                    .lines()
                    .enumerate()
                    .map(|(i, l)| if i % 40 == 0 { format!("{l} // edited") } else { l.to_owned() })
                    .collect();
                fs::write(&path, edited.join("\n") + "\n").unwrap();
            }
        }
    }
    fs::write(root.join("NEW.md"), "a new file\n").unwrap();
}

fn sh(script: &str) {
    let status = Command::new("sh").args(["-c", script]).status().unwrap();
    assert!(status.success(), "{script}");
}

fn identities() -> (Identity, Identity) {
    (
        Identity::insecure_from_label("bench-sender"),
        Identity::insecure_from_label("bench-recipient"),
    )
}

fn pack_to(tree: &Path, out: &Path) {
    let (sender, recipient) = identities();
    let to = Recipient { node: recipient.node_id(), key: recipient.sealing_public() };
    let walk = walk(tree, &WalkOptions::default()).unwrap();
    let file = std::io::BufWriter::with_capacity(256 << 10, fs::File::create(out).unwrap());
    let (_, findings, file) =
        pack(&walk, &sender, &to, JobId([1; 16]), &PackOptions::default(), file).unwrap();
    assert!(findings.is_empty());
    file.into_inner().unwrap().sync_data().ok();
}

fn open_to(sealed: &Path, dest: &Path) {
    let (_, recipient) = identities();
    let file = std::io::BufReader::with_capacity(256 << 10, fs::File::open(sealed).unwrap());
    open(file, &recipient, Expect::default(), &Limits::default(), dest).unwrap();
}

/// Runs one direction (`pack TREE SEALED` or `open SEALED DEST`) and prints this process's
/// peak resident memory.
fn child(mode: &str, from: &Path, to: &Path) {
    if mode == "pack" {
        pack_to(from, to)
    } else {
        open_to(from, to)
    }
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let peak = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: ?");
    println!("{}", peak.trim_start_matches("VmHWM:").trim());
}

fn report(what: &str, times: &[Duration]) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: min {:.0} ms, median {:.0} ms, max {:.0} ms ({} runs)",
        ms(sorted[0]),
        ms(sorted[sorted.len() / 2]),
        ms(sorted[sorted.len() - 1]),
        sorted.len()
    );
}

/// A source-like tree: `src/pkgNN/modN/fileN.ts` of about 10 KB each, plus ignored files.
fn generate(root: &Path, files: usize) -> u64 {
    let mut x = 0x2545_f491_u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let words = [
        "value", "count", "index", "buffer", "result", "config", "handler", "state", "node",
        "token",
    ];
    let mut total = 0;
    fs::create_dir_all(root.join("dist")).unwrap();
    fs::write(root.join(".gitignore"), "dist/\n*.log\n").unwrap();
    fs::write(root.join("dist/bundle.js"), "ignored").unwrap();
    fs::write(root.join("debug.log"), "ignored").unwrap();
    for i in 0..files {
        let dir = root.join(format!("src/pkg{:02}/mod{}", i % 50, (i / 50) % 10));
        fs::create_dir_all(&dir).unwrap();
        let mut text = String::with_capacity(10_000);
        while text.len() < 9_700 {
            let n = next();
            let a = words[(n % 10) as usize];
            let b = words[((n >> 8) % 10) as usize];
            text.push_str(&format!(
                "export function {a}{}(input: {b}, limit = {}): number {{\n  return input.{b} * {} + {a}.length;\n}}\n",
                n % 100_000,
                (n >> 20) % 1000,
                (n >> 32) % 97
            ));
        }
        total += text.len() as u64;
        fs::write(dir.join(format!("file{i}.ts")), text).unwrap();
    }
    total
}
