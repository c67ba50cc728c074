//! A PostgreSQL server of a test's own, which the test may stop and start
//! again (fault tests); the shared one from scripts/with-postgres.sh must not be.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

fn bin_dir() -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (Debian package postgresql)")?
        .flatten()
        .map(|d| d.path().join("bin"))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    candidates.sort();
    candidates.pop().context("no pg_ctl under /usr/lib/postgresql")
}

impl Postgres {
    pub fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let pg = Self { port, bin: bin_dir()?, dir };
        if is_root() {
            // PostgreSQL refuses to run as root.
            run(Command::new("chown").arg("postgres").arg(pg.dir.path()))?;
        }
        run(pg
            .as_postgres("initdb")
            .args(["-U", "parking", "-A", "trust", "--no-sync", "-D"])
            .arg(pg.data()))?;
        pg.start_again()?;
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn as_postgres(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    pub fn url(&self) -> String {
        format!("postgres://parking@127.0.0.1:{}/postgres", self.port)
    }

    pub fn stop(&self) -> Result<()> {
        run(self.as_postgres("pg_ctl").args(["-m", "fast", "-w", "stop", "-D"]).arg(self.data()))
    }

    pub fn start_again(&self) -> Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        run(self
            .as_postgres("pg_ctl")
            .args(["-w", "-o", &options, "-l"])
            .arg(self.dir.path().join("server.log"))
            .args(["start", "-D"])
            .arg(self.data()))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.as_postgres("pg_ctl").args(["-m", "immediate", "stop", "-D"]).arg(self.data()).output();
    }
}

fn is_root() -> bool {
    std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

fn run(command: &mut Command) -> Result<()> {
    let output = command.stdout(Stdio::null()).output().with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}
