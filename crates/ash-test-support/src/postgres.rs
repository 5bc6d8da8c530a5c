//! Real PostgreSQL servers for tests: the one `.ci/run` starts and the tests share
//! (`ASH_TEST_POSTGRES`, an admin URL; each test gets a fresh database on it), and private
//! clusters a test starts, restarts and stops on its own.
//!
//! Without `ASH_TEST_POSTGRES` a test that needs PostgreSQL says so on stderr and passes
//! without running, unless `ASH_TEST_REQUIRE_POSTGRES` is set (as `.ci/run` does): then it
//! fails, so CI never skips one silently.
#![allow(
    clippy::disallowed_methods,
    clippy::print_stderr,
    reason = "tests find their database server and run its programs themselves"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The shared server.
#[derive(Debug, Clone)]
pub struct Postgres {
    admin_url: String,
}

static DATABASES: AtomicUsize = AtomicUsize::new(0);

impl Postgres {
    /// The shared server, or `None` (with the reason on stderr) when this machine has none.
    /// `what` names the test for that message.
    pub fn shared(what: &str) -> Option<Self> {
        match std::env::var("ASH_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => Some(Self { admin_url: url }),
            _ => {
                assert!(
                    std::env::var_os("ASH_TEST_REQUIRE_POSTGRES").is_none(),
                    "{what} needs PostgreSQL: ASH_TEST_REQUIRE_POSTGRES is set but ASH_TEST_POSTGRES is not"
                );
                eprintln!(
                    "skipping {what}: it needs a PostgreSQL server; set ASH_TEST_POSTGRES to an admin URL (`.ci/run` starts one)"
                );
                None
            }
        }
    }

    /// Creates an empty database and returns its URL.
    pub fn fresh_database(&self) -> String {
        let name = format!(
            "ash_test_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        psql(&self.admin_url, &format!("CREATE DATABASE {name}"));
        database_url(&self.admin_url, &name)
    }
}

/// `url` with its database replaced by `name`.
fn database_url(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let base = base[authority..].find('/').map_or(base, |slash| &base[..authority + slash]);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Runs one statement with `psql`.
pub fn psql(url: &str, sql: &str) -> String {
    let output = Command::new(bin_dir().join("psql"))
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
    assert!(
        output.status.success(),
        "psql `{sql}` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Where PostgreSQL's programs are: `ASH_TEST_POSTGRES_BIN`, else `pg_config --bindir`, else
/// the newest `/usr/lib/postgresql/*/bin`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ASH_TEST_POSTGRES_BIN") {
        return PathBuf::from(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path().join("bin"))).collect())
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| PathBuf::from("/usr/bin"))
}

/// A PostgreSQL cluster of one test's own, on loopback, removed on drop.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    port: u16,
    /// Server settings beside the address (TLS).
    settings: String,
}

impl Cluster {
    /// Initialises and starts a cluster; `None` (with the reason) where PostgreSQL is absent,
    /// as for [`Postgres::shared`].
    pub fn start(what: &str) -> Option<Self> {
        Self::start_with(what, false)
    }

    /// Like [`Cluster::start`], serving TLS with a certificate for `127.0.0.1` and `localhost`
    /// signed by a certificate authority of its own: [`Cluster::ca_file`].
    pub fn start_with_tls(what: &str) -> Option<Self> {
        Self::start_with(what, true)
    }

    /// The PEM file of the certificate authority that signed a TLS cluster's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    fn start_with(what: &str, tls: bool) -> Option<Self> {
        Postgres::shared(what)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dir = std::env::temp_dir().join(format!("ash-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let settings = if tls {
            make_certificates(&dir);
            format!(
                "-c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
                dir.display()
            )
        } else {
            String::new()
        };
        as_postgres_owner(&dir);
        let data = dir.join("data");
        let args = ["-A", "trust", "-U", "ash", "-D"].map(std::ffi::OsStr::new);
        run_as_postgres("initdb", &[&args[..], &[data.as_os_str()]].concat());
        let cluster = Self { dir, port, settings };
        cluster.ctl("start");
        psql(&cluster.admin_url(), "CREATE DATABASE ash");
        Some(cluster)
    }

    fn admin_url(&self) -> String {
        format!("postgres://ash@127.0.0.1:{}/postgres", self.port)
    }

    /// The URL of its database `ash`.
    pub fn url(&self) -> String {
        format!("postgres://ash@127.0.0.1:{}/ash", self.port)
    }

    /// The URL of its database `ash` over its Unix socket.
    pub fn socket_url(&self) -> String {
        let dir: String = self
            .dir
            .display()
            .to_string()
            .chars()
            .map(|c| if c == '/' { "%2F".to_owned() } else { c.to_string() })
            .collect();
        format!("postgres://ash@{dir}:{}/ash", self.port)
    }

    /// Stops the server (fast shutdown: sessions are ended, nothing committed is lost).
    pub fn stop(&self) {
        self.ctl("stop");
    }

    /// Starts it again after [`Cluster::stop`].
    pub fn start_again(&self) {
        self.ctl("start");
    }

    fn ctl(&self, action: &str) {
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} {}",
            self.port,
            self.dir.display(),
            self.settings
        );
        let args = [action, "-w", "-m", "fast", "-D"].map(std::ffi::OsStr::new);
        let rest =
            [data.as_os_str(), "-l".as_ref(), log.as_os_str(), "-o".as_ref(), options.as_ref()];
        run_as_postgres("pg_ctl", &[&args[..], &rest[..]].concat());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut stop = postgres_command(&bin_dir().join("pg_ctl"));
        stop.args(["stop", "-m", "immediate", "-D"]).arg(self.dir.join("data"));
        let _ = stop.output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A certificate authority and a server certificate for 127.0.0.1 and localhost it signed, in
/// `dir` (`ca.crt`, `server.crt`, `server.key`), made with the `openssl` program.
fn make_certificates(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let openssl = |args: &[&str]| {
        let out =
            Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca = [
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=ash test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ];
    openssl(&[&["req", "-x509"][..], &ec, &ca].concat());
    let csr = ["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"];
    openssl(&[&["req"][..], &ec, &csr].concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write the extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o600))
        .expect("close the key");
}

fn is_root() -> bool {
    // Root owns `/proc/self` of a root process; no libc call needed.
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// PostgreSQL refuses to run as root: there the cluster belongs to the `postgres` user.
fn as_postgres_owner(dir: &Path) {
    if is_root() {
        let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir).status();
        assert!(status.is_ok_and(|s| s.success()), "cannot give {} to postgres", dir.display());
    }
}

/// `program`, run as the `postgres` user when this process is root.
fn postgres_command(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run_as_postgres(program: &str, args: &[&std::ffi::OsStr]) {
    let output = postgres_command(&bin_dir().join(program))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn database_urls_swap_the_database_only() {
        assert_eq!(database_url("postgres://a@h:1/postgres", "x"), "postgres://a@h:1/x");
        assert_eq!(database_url("postgres://a@h:1", "x"), "postgres://a@h:1/x");
        assert_eq!(
            database_url("postgres://a@h:1/db?sslmode=disable", "x"),
            "postgres://a@h:1/x?sslmode=disable"
        );
    }
}
