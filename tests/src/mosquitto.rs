//! A real Mosquitto broker on a free loopback port, for as long as the value lives.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub struct Mosquitto {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

fn binary() -> PathBuf {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("mosquitto"))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Mosquitto {
    /// A broker that lets anyone in.
    pub fn start() -> Result<Self> {
        Self::start_with("allow_anonymous true\n", tempfile::tempdir()?)
    }

    /// A broker with one credential per user and the repository's ACL
    /// (`deploy/mosquitto/acl`), as production runs it.
    pub fn start_secured(users: &[(&str, &str)]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let passwd = dir.path().join("passwd");
        for (i, (user, password)) in users.iter().enumerate() {
            let mut command = Command::new("mosquitto_passwd");
            if i == 0 {
                command.arg("-c");
            }
            let status =
                command.arg("-b").arg(&passwd).arg(user).arg(password).stdout(Stdio::null()).status()?;
            if !status.success() {
                bail!("mosquitto_passwd failed for {user}");
            }
        }
        let acl = crate::repo_root().join("deploy/mosquitto/acl");
        let settings = format!(
            "per_listener_settings false\nallow_anonymous false\npassword_file {}\nacl_file {}\n",
            passwd.display(),
            acl.display()
        );
        Self::start_with(&settings, dir)
    }

    fn start_with(settings: &str, dir: tempfile::TempDir) -> Result<Self> {
        let port = free_port()?;
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\n{settings}persistence false\n\
                 max_queued_messages 100000\nlog_dest stderr\nlog_type error\n"
            ),
        )?;
        let child = Command::new(binary())
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mosquitto (Debian package mosquitto; scripts/bootstrap.sh --test-servers installs it)")?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("mosquitto did not listen on 127.0.0.1:{port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { port, child, _dir: dir })
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
