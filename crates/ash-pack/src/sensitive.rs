//! Targets of a patch that deserve a person's look before they are written: files that run code
//! on their own (CI, build and package scripts, directory hooks, editor tasks), change how git
//! treats files, or become executable. Marking is advice for the summary and the prompt of
//! `ash apply`; the screen in `diff.rs` refuses what is unsafe outright.

/// Why writing `path` with the mode `new_mode` deserves a look, or `None`.
pub(crate) fn sensitive(path: &str, new_mode: Option<&str>) -> Option<&'static str> {
    by_path(path).or(match new_mode {
        Some("100755") => Some("becomes executable"),
        _ => None,
    })
}

fn by_path(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let under = |dir: &str| path.starts_with(dir) || path.contains(&format!("/{dir}"));
    if under(".github/workflows/") || under(".github/actions/") {
        return Some("CI workflow: runs on the forge");
    }
    if matches!(
        path,
        ".gitlab-ci.yml"
            | ".travis.yml"
            | "azure-pipelines.yml"
            | "Jenkinsfile"
            | "bitbucket-pipelines.yml"
    ) || under(".circleci/")
        || under(".buildkite/")
    {
        return Some("CI configuration: runs on the CI service");
    }
    match name {
        "build.rs" => Some("build script: cargo runs it on build"),
        "package.json" => Some("package manifest: its scripts run on install and build"),
        "setup.py" | "setup.cfg" | "pyproject.toml" => {
            Some("Python package configuration: runs or configures code on install")
        }
        "Cargo.toml" => Some("crate manifest: build scripts, dependencies and their sources"),
        "Makefile" | "makefile" | "GNUmakefile" | "CMakeLists.txt" | "meson.build" | "justfile"
        | "Justfile" | "Rakefile" | "build.gradle" | "build.gradle.kts" | "pom.xml" => {
            Some("build rules: run by the build")
        }
        ".envrc" => Some("direnv: runs on entering the directory"),
        ".npmrc" | ".yarnrc" | ".yarnrc.yml" | ".pypirc" | "pip.conf" => {
            Some("package manager configuration: registries and scripts")
        }
        ".gitattributes" => Some("git attributes: filters and diff drivers git runs"),
        ".gitmodules" => Some("git submodules: where git fetches code from"),
        ".pre-commit-config.yaml" => Some("pre-commit hooks: run by git"),
        _ if name.ends_with(".code-workspace") => Some("editor workspace: tasks and settings"),
        _ if under(".vscode/") || under(".idea/") => Some("editor configuration: tasks it runs"),
        _ if under(".husky/") || under(".githooks/") => Some("git hooks: run by git"),
        _ if under(".devcontainer/") => Some("dev container: what the editor builds and runs"),
        _ => None,
    }
}
