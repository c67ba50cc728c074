//! The cluster a knative/ overlay renders, played on loopback from the
//! rendered objects (never from a second copy): each Knative Service and
//! Deployment runs as the `parkd` process its container spec describes
//! (exactly its args and env, Secrets from the example Secret generator,
//! `$PORT` as Knative sets it), or, for a Service of SpinKube's runtime
//! class, as the Spin CLI runs what the shim would (the app with only the
//! components the spec retains), Mosquitto runs with the rendered
//! configuration and ACL, tansu stands in for Kafka, and `knative.rs` plays
//! the Broker, the Triggers, the KafkaSource and the PingSource.
//!
//! Cluster addresses become loopback ones through one explicit table,
//! [`Cluster::hosts`]; paths inside the image become the checkout's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_norway::Value;

use crate::kafka::Tansu;
use crate::knative::{self, Broker};

pub type Secrets = BTreeMap<String, BTreeMap<String, String>>;

/// A process of the cluster, killed when dropped; its output is in `log`.
pub struct Process {
    pub name: String,
    pub log: PathBuf,
    child: Child,
    /// It leads a process group of its own, killed whole: `spin up` runs
    /// each trigger as a child, which would outlive it.
    group: bool,
}

impl Process {
    /// The last lines it wrote, for failure messages.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.group {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn text(value: &Value, path: &[&str]) -> Option<String> {
    path.iter().try_fold(value, |v, k| v.get(*k)).and_then(Value::as_str).map(str::to_owned)
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name))
        .with_context(|| format!("no {kind} {name} rendered"))
}

/// The `parkd` binary scripts/build.sh built next to this test's binary.
pub fn parkd_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path =
        exe.parent().and_then(Path::parent).context("the test binary is in target/*/deps")?.join("parkd");
    if !path.exists() {
        bail!("{} is missing: build it with `bash scripts/build.sh` (scripts/test.sh does)", path.display());
    }
    Ok(path)
}

/// SpinKube's runtime class: a Service with it runs the Spin app, not parkd.
pub const SPIN_RUNTIME_CLASS: &str = "wasmtime-spin-v2";

/// The Spin CLI: `$PARKING_SPIN`, else `spin` on PATH; None without one.
pub fn spin_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PARKING_SPIN") {
        return Some(PathBuf::from(path));
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join("spin")).find(|p| p.is_file())
}

/// The example Secret generator (knative/examples/secrets) rendered as the
/// README says to use it: each `*.env.example` copied to `*.env`.
pub fn example_secrets(dir: &Path) -> Result<Secrets> {
    let source = crate::repo_root().join("knative/examples/secrets");
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(&source)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let target = name.strip_suffix(".example").unwrap_or(&name);
        std::fs::copy(&path, dir.join(target))?;
    }
    let mut secrets = Secrets::new();
    for object in knative_check::render_dir(dir)? {
        if object["kind"].as_str() != Some("Secret") {
            continue;
        }
        let name = text(&object, &["metadata", "name"]).unwrap_or_default();
        let mut values = BTreeMap::new();
        for (key, value) in object["data"].as_mapping().into_iter().flatten() {
            use base64::Engine;
            let encoded: String = value.as_str().unwrap_or_default().split_whitespace().collect();
            let decoded = base64::engine::general_purpose::STANDARD.decode(encoded)?;
            values.insert(key.as_str().unwrap_or_default().to_owned(), String::from_utf8(decoded)?);
        }
        for (key, value) in object["stringData"].as_mapping().into_iter().flatten() {
            values.insert(
                key.as_str().unwrap_or_default().to_owned(),
                value.as_str().unwrap_or_default().to_owned(),
            );
        }
        secrets.insert(name, values);
    }
    Ok(secrets)
}

/// MQTT users and passwords the example Secrets give the services.
fn mqtt_users(secrets: &Secrets) -> Vec<(String, String)> {
    let mut users = Vec::new();
    for (name, values) in secrets.iter().filter(|(n, _)| n.starts_with("parking-mqtt-")) {
        if let (Some(user), Some(password)) = (values.get("username"), values.get("password")) {
            users.push((user.clone(), password.clone()));
        } else if let Some(url) = values.get("url").and_then(|u| url::Url::parse(u).ok()) {
            users.push((url.username().to_owned(), url.password().unwrap_or_default().to_owned()));
        } else {
            panic!("Secret {name}: no MQTT credentials (username/password or a url with them)");
        }
    }
    users
}

/// Mosquitto run with the rendered configuration and ACL.
pub struct RenderedMosquitto {
    /// The TLS listener sensors use (8883 in the cluster) and the plain one
    /// for in-cluster clients (1883).
    pub tls_port: u16,
    pub internal_port: u16,
    /// The CA that signed the broker's certificate (cert-manager's, in the cluster).
    pub ca: PathBuf,
    pub process: Process,
}

impl RenderedMosquitto {
    /// Starts Mosquitto from the rendered `mosquitto-config` ConfigMap, its
    /// StatefulSet's mount paths moved into `dir`, with these credentials.
    pub fn start(objects: &[Value], dir: &Path, users: &[(String, String)]) -> Result<Self> {
        let config = objects
            .iter()
            .find(|o| {
                o["kind"].as_str() == Some("ConfigMap")
                    && o["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("mosquitto-config"))
            })
            .context("no mosquitto-config ConfigMap rendered")?;
        let statefulset = named(objects, "StatefulSet", "parking-mosquitto")?;
        let mounts = &statefulset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"];
        let mount = |volume: &str| {
            mounts
                .as_sequence()
                .into_iter()
                .flatten()
                .find(|m| m["name"].as_str() == Some(volume))
                .and_then(|m| text(m, &["mountPath"]))
                .with_context(|| format!("the mosquitto container mounts no {volume} volume"))
        };
        let (etc_mount, data_mount) = (mount("config")?, mount("data")?);
        let (etc, data) = (dir.join("etc"), dir.join("data"));
        std::fs::create_dir_all(etc.join("tls"))?;
        std::fs::create_dir_all(&data)?;
        std::fs::write(etc.join("acl"), text(config, &["data", "acl"]).context("no acl in the ConfigMap")?)?;
        crate::mosquitto::write_passwd(&etc.join("passwd"), users)?;
        let ca = dir.join("ca.pem");
        crate::mosquitto::write_certificates(&ca, &etc.join("tls/server.crt"), &etc.join("tls/server.key"))?;
        let (tls_port, internal_port) = (free_port()?, free_port()?);
        let conf = text(config, &["data", "mosquitto.conf"])
            .context("no mosquitto.conf in the ConfigMap")?
            .replace(&etc_mount, &etc.display().to_string())
            .replace(&data_mount, &data.display().to_string())
            .replace("listener 8883", &format!("listener {tls_port} 127.0.0.1"))
            .replace("listener 1883", &format!("listener {internal_port} 127.0.0.1"));
        let conf_path = etc.join("mosquitto.conf");
        std::fs::write(&conf_path, format!("{conf}\nlog_dest stderr\n"))?;
        let log = dir.join("mosquitto.log");
        let child = Command::new(crate::mosquitto::binary())
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting mosquitto (Debian package mosquitto)")?;
        let process = Process { name: "mosquitto".into(), log, child, group: false };
        wait_for_port(&process, tls_port)?;
        wait_for_port(&process, internal_port)?;
        Ok(Self { tls_port, internal_port, ca, process })
    }
}

fn wait_for_port(process: &Process, port: u16) -> Result<()> {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(10) {
            bail!("{} did not listen on {port} within 10 s:\n{}", process.name, process.tail());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The rendered overlay, running.
pub struct Cluster {
    pub objects: Vec<Value>,
    pub secrets: Secrets,
    /// Cluster address → loopback address: the only translation this test makes.
    pub hosts: Vec<(String, String)>,
    /// Knative Service or Deployment name → `http://127.0.0.1:port` of its first container port.
    pub services: BTreeMap<String, String>,
    pub broker: Arc<Broker>,
    pub broker_url: String,
    pub mosquitto: RenderedMosquitto,
    pub tansu: Tansu,
    pub processes: Vec<Process>,
    dir: tempfile::TempDir,
}

/// The Knative Services and Deployments this test runs (PostgreSQL and
/// Mosquitto are the test's own servers).
const PARKD_WORKLOADS: &[(&str, &str)] = &[
    ("Service", "sensor-event"),
    ("Service", "availability-query"),
    ("Service", "lot-admin"),
    ("Service", "terminal-push"),
    ("Service", "retention-sweep"),
    ("Deployment", "parking-bridge"),
    ("Deployment", "parking-gateway"),
];

impl Cluster {
    /// Renders `overlay` and starts it; `sensors` get Mosquitto credentials too.
    pub async fn start(overlay: &str, sensors: &[(&str, &str)]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let objects = knative_check::render(overlay)?;
        let secrets = example_secrets(&dir.path().join("secrets"))?;
        let mut users = mqtt_users(&secrets);
        users.extend(sensors.iter().map(|(u, p)| (u.to_string(), p.to_string())));
        let mosquitto = RenderedMosquitto::start(&objects, &dir.path().join("mosquitto"), &users)?;
        let tansu = Tansu::start()?;
        let database = url::Url::parse(&crate::fresh_postgres_database().await?)?;
        let mut hosts = vec![
            (
                "parking-postgres:5432/parking".to_owned(),
                format!("127.0.0.1:{}{}", database.port().unwrap_or(5432), database.path()),
            ),
            ("parking-postgres:5432".to_owned(), format!("127.0.0.1:{}", database.port().unwrap_or(5432))),
            ("parking-mosquitto:1883".to_owned(), format!("127.0.0.1:{}", mosquitto.internal_port)),
            ("parking-mosquitto:8883".to_owned(), format!("127.0.0.1:{}", mosquitto.tls_port)),
            ("parking-kafka-bootstrap.kafka.svc:9092".to_owned(), tansu.address()),
        ];
        let broker_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let broker_object = objects
            .iter()
            .find(|o| o["kind"].as_str() == Some("Broker"))
            .context("the overlay renders no Broker")?;
        let ingress_path = format!(
            "/{}/{}",
            text(broker_object, &["metadata", "namespace"]).unwrap_or_else(|| "default".into()),
            text(broker_object, &["metadata", "name"]).context("a Broker without a name")?
        );
        let broker_url = format!("http://{}{ingress_path}", broker_listener.local_addr()?);
        hosts.push((knative::KAFKA_BROKER_INGRESS.to_owned(), broker_listener.local_addr()?.to_string()));
        let mut ports = BTreeMap::new();
        let mut services = BTreeMap::new();
        for (_, name) in PARKD_WORKLOADS {
            let port = free_port()?;
            ports.insert(name.to_string(), port);
            services.insert(name.to_string(), format!("http://127.0.0.1:{port}"));
        }
        let broker = Broker::new(knative::triggers(&objects, "parking")?, services.clone(), &ingress_path);
        tokio::spawn(broker.clone().serve(broker_listener));
        let mut cluster = Self {
            objects,
            secrets,
            hosts,
            services,
            broker,
            broker_url,
            mosquitto,
            tansu,
            processes: Vec::new(),
            dir,
        };
        cluster.run_job("parking-migrate").await?;
        for (kind, name) in PARKD_WORKLOADS {
            let process = cluster.start_workload(kind, name, ports[*name])?;
            cluster.processes.push(process);
        }
        for (kind, name) in PARKD_WORKLOADS {
            cluster.wait_ready(kind, name, ports[*name]).await?;
        }
        cluster.start_kafka_sources().await?;
        Ok(cluster)
    }

    /// `value` with cluster addresses replaced by loopback ones.
    pub fn translate(&self, value: &str) -> String {
        self.hosts.iter().fold(value.to_owned(), |v, (from, to)| v.replace(from, to))
    }

    /// Paths inside the image (Containerfile: the app in /app, the cache and
    /// data directories) become the checkout and this test's directories.
    fn translate_path(&self, workload: &str, value: &str) -> String {
        let cache = std::env::var("PARKD_CACHE_DIR")
            .unwrap_or_else(|_| std::env::temp_dir().join("parkd-test-components").display().to_string());
        let data = self.dir.path().join(workload).join("data");
        let _ = std::fs::create_dir_all(&data);
        value
            .replace("/app/", &format!("{}/", crate::repo_root().display()))
            .replace("/var/cache/parkd", &cache)
            .replace("/var/lib/parkd", &data.display().to_string())
    }

    fn container<'a>(objects: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
        let object = named(objects, kind, name)?;
        object["spec"]["template"]["spec"]["containers"]
            .get(0)
            .with_context(|| format!("{kind} {name} has no container"))
    }

    /// The container's environment as the kubelet gives it: the image's ENV
    /// (Containerfile), then the spec's values, Secrets and fields.
    fn environment(
        &self,
        kind: &str,
        name: &str,
        container: &Value,
        port: u16,
    ) -> Result<Vec<(String, String)>> {
        let mut env = vec![
            ("PARKD_CACHE_DIR".to_owned(), self.translate_path(name, "/var/cache/parkd")),
            ("PARKD_DATA_DIR".to_owned(), self.translate_path(name, "/var/lib/parkd")),
            ("PARKD_LOG_FORMAT".to_owned(), "json".to_owned()),
        ];
        if kind == "Service" {
            // Knative sets PORT to the container port; here, to its loopback stand-in.
            env.push(("PORT".to_owned(), port.to_string()));
        }
        let container_port = container["ports"][0]["containerPort"].as_u64().unwrap_or(8080);
        for entry in container["env"].as_sequence().into_iter().flatten() {
            let variable = text(entry, &["name"]).context("an env entry without a name")?;
            let value = if let Some(value) = text(entry, &["value"]) {
                value
            } else if let Some(secret) = text(entry, &["valueFrom", "secretKeyRef", "name"]) {
                let key = text(entry, &["valueFrom", "secretKeyRef", "key"]).unwrap_or_default();
                self.secrets
                    .get(&secret)
                    .and_then(|s| s.get(&key))
                    .cloned()
                    .with_context(|| format!("{kind} {name}: {variable} needs Secret {secret} key {key}, which the example generator does not make"))?
            } else if text(entry, &["valueFrom", "fieldRef", "fieldPath"]).as_deref() == Some("metadata.name")
            {
                format!("{name}-0")
            } else {
                bail!("{kind} {name}: {variable}: a valueFrom this test cannot resolve");
            };
            let value = self
                .translate_path(name, &self.translate(&value))
                .replace(&format!("0.0.0.0:{container_port}"), &format!("127.0.0.1:{port}"));
            env.push((variable, value));
        }
        Ok(env)
    }

    fn spawn(&self, kind: &str, name: &str, port: u16) -> Result<Process> {
        let container = Self::container(&self.objects, kind, name)?;
        let environment = self.environment(kind, name, container, port)?;
        let runtime_class =
            text(named(&self.objects, kind, name)?, &["spec", "template", "spec", "runtimeClassName"]);
        let mut command = match runtime_class.as_deref() {
            None => {
                let args: Vec<String> = container["args"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str())
                    .map(|a| self.translate_path(name, &self.translate(a)))
                    .collect();
                let mut command = Command::new(parkd_binary()?);
                command.args(&args).env_clear().envs(environment);
                command
            }
            Some(SPIN_RUNTIME_CLASS) => {
                let mut command = self.spin_command(kind, name, container, environment)?;
                std::os::unix::process::CommandExt::process_group(&mut command, 0);
                command
            }
            Some(other) => bail!("{kind} {name}: runtime class {other} is not played here"),
        };
        let log = self.dir.path().join(format!("{name}.log"));
        let output = std::fs::File::create(&log)?;
        let child = command
            // The image's WORKDIR.
            .current_dir(crate::repo_root())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("starting {kind} {name}"))?;
        let group = runtime_class.as_deref() == Some(SPIN_RUNTIME_CLASS);
        Ok(Process { name: format!("{kind} {name}"), log, child, group })
    }

    /// What SpinKube's shim does with a Service of its runtime class, done by
    /// the Spin CLI: the app (`spin.toml`, which the image's artifact holds)
    /// with only the components `SPIN_COMPONENTS_TO_RETAIN` names, listening
    /// where `SPIN_HTTP_LISTEN_ADDR` says, its variables from `SPIN_VARIABLE_*`.
    fn spin_command(
        &self,
        kind: &str,
        name: &str,
        container: &Value,
        environment: Vec<(String, String)>,
    ) -> Result<Command> {
        let spin = spin_binary().context("no Spin CLI: set PARKING_SPIN or put `spin` on PATH")?;
        let command_line: Vec<&str> =
            container["command"].as_sequence().into_iter().flatten().filter_map(Value::as_str).collect();
        if command_line != ["/"] {
            bail!(
                "{kind} {name}: the shim runs the artifact's app with the command [\"/\"], not {command_line:?}"
            );
        }
        let retain = environment
            .iter()
            .find(|(k, _)| k == "SPIN_COMPONENTS_TO_RETAIN")
            .map(|(_, v)| v.clone())
            .with_context(|| {
                format!("{kind} {name}: no SPIN_COMPONENTS_TO_RETAIN: the shim would run every component")
            })?;
        let mut command = Command::new(spin);
        command
            .arg("up")
            .arg("--from")
            .arg(crate::repo_root().join("spin.toml"))
            .arg("--state-dir")
            .arg(self.dir.path().join(name).join("spin"));
        for component in retain.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            command.args(["--component-id", component]);
        }
        command.env_clear().envs(environment);
        // The CLI, unlike the shim, keeps its caches under the user's home.
        for inherited in ["HOME", "PATH"] {
            if let Some(value) = std::env::var_os(inherited) {
                command.env(inherited, value);
            }
        }
        Ok(command)
    }

    fn start_workload(&self, kind: &str, name: &str, port: u16) -> Result<Process> {
        self.spawn(kind, name, port)
    }

    /// Runs a Job's container to completion (the migration Job).
    async fn run_job(&mut self, name: &str) -> Result<()> {
        let mut process = self.spawn("Job", name, free_port()?)?;
        let started = Instant::now();
        loop {
            if let Some(status) = process.child.try_wait()? {
                if !status.success() {
                    bail!("Job {name} failed ({status}):\n{}", process.tail());
                }
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("Job {name} did not finish within 60 s:\n{}", process.tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the container's readinessProbe (its path, on its port).
    async fn wait_ready(&self, kind: &str, name: &str, port: u16) -> Result<()> {
        let container = Self::container(&self.objects, kind, name)?;
        let path =
            text(container, &["readinessProbe", "httpGet", "path"]).unwrap_or_else(|| "/healthz".into());
        let url = format!("http://127.0.0.1:{port}{path}");
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(120) {
                let process = self.processes.iter().find(|p| p.name == format!("{kind} {name}"));
                bail!(
                    "{kind} {name} was not ready at {url} within 120 s:\n{}",
                    process.map(Process::tail).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every KafkaSource: its topics, created as the Kafka Broker's config
    /// says, consumed and posted to its sink (the Broker).
    async fn start_kafka_sources(&self) -> Result<()> {
        let partitions: i32 = self
            .objects
            .iter()
            .find(|o| {
                o["kind"].as_str() == Some("ConfigMap")
                    && o["metadata"]["name"].as_str() == Some("parking-kafka-broker-config")
            })
            .and_then(|c| text(c, &["data", "default.topic.partitions"]))
            .and_then(|p| p.parse().ok())
            .unwrap_or(1);
        for source in self.objects.iter().filter(|o| o["kind"].as_str() == Some("KafkaSource")) {
            if text(source, &["spec", "sink", "ref", "kind"]).as_deref() != Some("Broker") {
                bail!(
                    "KafkaSource {}: only a Broker sink is played here",
                    text(source, &["metadata", "name"]).unwrap_or_default()
                );
            }
            for topic in
                source["spec"]["topics"].as_sequence().into_iter().flatten().filter_map(Value::as_str)
            {
                self.tansu.create_topic(topic, partitions).await?;
                crate::kafka::deliver_to(&self.tansu, topic, partitions, self.broker_url.clone()).await?;
            }
        }
        Ok(())
    }

    /// Sends each PingSource's tick to its sink, as its schedule would.
    pub fn ping(&self) -> Result<usize> {
        let mut sent = 0;
        for source in self.objects.iter().filter(|o| o["kind"].as_str() == Some("PingSource")) {
            if text(source, &["spec", "sink", "ref", "kind"]).as_deref() != Some("Broker") {
                bail!("PingSource: only a Broker sink is played here");
            }
            self.broker.publish(knative::ping_event(source)?);
            sent += 1;
        }
        Ok(sent)
    }

    pub fn secret(&self, name: &str, key: &str) -> String {
        self.secrets
            .get(name)
            .and_then(|s| s.get(key))
            .cloned()
            .unwrap_or_else(|| panic!("Secret {name} key {key}"))
    }

    /// The logs of every process, for a failing test's message.
    pub fn logs(&self) -> String {
        self.processes
            .iter()
            .chain(std::iter::once(&self.mosquitto.process))
            .map(|p| format!("--- {} ---\n{}", p.name, p.tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
