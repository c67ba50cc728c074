//! `parkd` as a real process (the binary scripts/build.sh built), for what
//! only a process shows: signals, exit statuses, restarts on the same state.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The grace period test processes get for their drain.
pub const GRACE_PERIOD: Duration = Duration::from_secs(20);

/// A running `parkd`, killed when dropped; its output is in `log`.
pub struct ParkdProcess {
    pub base: String,
    pub log: PathBuf,
    child: Child,
}

/// A free loopback port.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl ParkdProcess {
    /// Starts `parkd up` on a free loopback port with the repository's
    /// manifest, state in `data_dir`, the database `database` (`sqlite` or
    /// a postgres:// URL), no sweep ticks, a grace period of [`GRACE_PERIOD`]
    /// and `args`; waits until it answers
    /// `/healthz` (by then its bridge, if any, has subscribed). Its output
    /// goes to `log`, appended to (one file across restarts).
    pub async fn up(data_dir: &Path, database: &str, log: &Path, args: &[&str]) -> Result<Self> {
        let port = free_port()?;
        let output = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let child = Command::new(crate::cluster::parkd_binary()?)
            .args(["--log-format", "text", "up", "--no-sweep", "--database", database])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--manifest")
            .arg(crate::repo_root().join("spin.toml"))
            .args(args)
            .env("RUST_LOG", "warn,parkd=info,rumqttd=error")
            .env("PARKD_GRACE_PERIOD", GRACE_PERIOD.as_secs().to_string())
            .current_dir(crate::repo_root())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .context("starting parkd up")?;
        let mut parkd = Self { base: format!("http://127.0.0.1:{port}"), log: log.to_owned(), child };
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = client.get(parkd.url("/healthz")).send().await
                && r.status().is_success()
            {
                return Ok(parkd);
            }
            if let Some(status) = parkd.child.try_wait()? {
                bail!("parkd exited ({status}) before it answered:\n{}", parkd.tail());
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("parkd did not answer /healthz within 120 s:\n{}", parkd.tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `INT`), as Kubernetes or a terminal would.
    pub fn signal(&self, name: &str) -> Result<()> {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status()?;
        if !status.success() {
            bail!("kill -{name} {} failed", self.pid());
        }
        Ok(())
    }

    /// Waits for the process to exit, at most `within`.
    pub async fn exited(&mut self, within: Duration) -> Result<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > within {
                bail!("parkd still running {within:?} later:\n{}", self.tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its last lines of output, for failure messages.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }
}

impl Drop for ParkdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
