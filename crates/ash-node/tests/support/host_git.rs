//! Git run directly on the host, for the job tests and benchmark: the trees are their own, so
//! no isolation is needed (the node itself spawns nothing; the CLI gives it git through
//! ash-sandbox).

use std::path::Path;

use ash_node::GitFactory;
use ash_pack::{Git, GitOutput};

/// Git on the host, claiming isolation for trees the test or benchmark made itself.
pub(crate) struct HostGit;

impl Git for HostGit {
    #[expect(
        clippy::disallowed_methods,
        reason = "git over the test's own trees; the node itself spawns nothing"
    )]
    fn run(
        &self,
        cwd: &Path,
        args: &[String],
        env: &[(String, String)],
        stdin: &[u8],
    ) -> Result<GitOutput, String> {
        use std::io::Write as _;
        let mut child = std::process::Command::new("git")
            .args(args)
            .current_dir(cwd)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .envs(env.iter().cloned())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut input = child.stdin.take().ok_or("git has no stdin")?;
        input.write_all(stdin).map_err(|e| e.to_string())?;
        drop(input);
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        Ok(GitOutput { success: out.status.success(), stdout: out.stdout, stderr: out.stderr })
    }

    fn isolated(&self) -> bool {
        true
    }
}

impl GitFactory for HostGit {
    fn for_tree(&self, _tree: &Path, _git_dir: &Path) -> Result<Box<dyn Git + Send>, String> {
        Ok(Box::new(Self))
    }
}
