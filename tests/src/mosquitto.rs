//! A real Mosquitto broker on a free loopback port, for as long as the value lives.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub struct Mosquitto {
    pub port: u16,
    /// With TLS: the PEM file of the CA that signed the broker's certificate.
    pub ca: Option<PathBuf>,
    child: Child,
    _dir: tempfile::TempDir,
}

pub fn binary() -> PathBuf {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("mosquitto"))
}

/// The in-flight window of the broker that ships, so tests and benchmarks
/// run with it rather than with Mosquitto's default.
fn shipped_inflight() -> &'static str {
    include_str!("../../deploy/mosquitto/mosquitto.conf")
        .lines()
        .find(|l| l.starts_with("max_inflight_messages "))
        .expect("deploy/mosquitto/mosquitto.conf sets max_inflight_messages")
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
        let settings = Self::credentials_and_acl(&dir, users)?;
        Self::start_with(&settings, dir)
    }

    /// As `start_secured`, on a TLS listener only, with a certificate for
    /// 127.0.0.1 from a throwaway CA (`ca`).
    pub fn start_secured_tls(users: &[(&str, &str)]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut settings = Self::credentials_and_acl(&dir, users)?;
        let (ca, certificate, key) =
            (dir.path().join("ca.pem"), dir.path().join("broker.pem"), dir.path().join("broker.key"));
        write_certificates(&ca, &certificate, &key)?;
        settings += &format!(
            "cafile {}\ncertfile {}\nkeyfile {}\ntls_version tlsv1.2\n",
            ca.display(),
            certificate.display(),
            key.display()
        );
        let mut broker = Self::start_with(&settings, dir)?;
        broker.ca = Some(ca);
        Ok(broker)
    }

    fn credentials_and_acl(dir: &tempfile::TempDir, users: &[(&str, &str)]) -> Result<String> {
        let passwd = dir.path().join("passwd");
        let users: Vec<(String, String)> =
            users.iter().map(|(u, p)| (u.to_string(), p.to_string())).collect();
        write_passwd(&passwd, &users)?;
        let acl = crate::repo_root().join("deploy/mosquitto/acl");
        Ok(format!(
            "per_listener_settings false\nallow_anonymous false\npassword_file {}\nacl_file {}\n",
            passwd.display(),
            acl.display()
        ))
    }

    fn start_with(settings: &str, dir: tempfile::TempDir) -> Result<Self> {
        let port = free_port()?;
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\n{settings}persistence false\n\
                 max_queued_messages 100000\n{}\nlog_dest stderr\nlog_type error\n",
                shipped_inflight()
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
        Ok(Self { port, ca: None, child, _dir: dir })
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

/// A Mosquitto password file with these users (made by mosquitto_passwd).
pub fn write_passwd(passwd: &Path, users: &[(String, String)]) -> Result<()> {
    for (i, (user, password)) in users.iter().enumerate() {
        let mut command = Command::new("mosquitto_passwd");
        if i == 0 {
            command.arg("-c");
        }
        let status = command.arg("-b").arg(passwd).arg(user).arg(password).stdout(Stdio::null()).status()?;
        if !status.success() {
            bail!("mosquitto_passwd failed for {user}");
        }
    }
    Ok(())
}

/// A CA, and a broker certificate for 127.0.0.1 and localhost signed by it.
pub fn write_certificates(ca_path: &Path, certificate_path: &Path, key_path: &Path) -> Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "parking test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let broker_key = KeyPair::generate()?;
    let mut broker_params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    broker_params.distinguished_name.push(DnType::CommonName, "parking test broker");
    let broker = broker_params.signed_by(&broker_key, &ca)?;
    std::fs::write(ca_path, ca.pem())?;
    std::fs::write(certificate_path, broker.pem())?;
    std::fs::write(key_path, broker_key.serialize_pem())?;
    Ok(())
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
