//! The MQTT capability against a real Mosquitto (Debian's `mosquitto`,
//! installed by `scripts/bootstrap.sh --test-servers`), on a free port.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use wasmtime::component::Resource;

use super::*;
use crate::capabilities::bindings::fermyon::spin::mqtt::{Error, HostConnection, Qos};

struct Mosquitto {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n"),
        )
        .unwrap();
        let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("mosquitto");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (scripts/bootstrap.sh --test-servers installs it)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, child, _dir: dir }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn allowed(entries: &[&str]) -> AllowedHosts {
    AllowedHosts::parse("terminal-push", &entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

fn retain(filters: &[&str]) -> Arc<[String]> {
    filters.iter().map(|s| s.to_string()).collect()
}

/// A subscriber that answers the first message on `filter`: (topic, payload, retained).
async fn subscribe(
    port: u16,
    filter: &str,
) -> (AsyncClient, tokio::sync::mpsc::Receiver<(String, Vec<u8>, bool)>) {
    let options = MqttOptions::new(format!("sub-{}", uuid::Uuid::new_v4().simple()), "127.0.0.1", port);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec(), p.retain)).await;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = tx.send((String::new(), Vec::new(), false)).await;
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    (client, rx)
}

async fn next(rx: &mut tokio::sync::mpsc::Receiver<(String, Vec<u8>, bool)>) -> (String, Vec<u8>, bool) {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a message within 10 s").unwrap()
}

#[tokio::test]
async fn published_messages_reach_a_subscriber_and_listed_topics_are_retained() {
    let broker = Mosquitto::start();
    let capability = MqttCapability::new();
    let mut mqtt = capability.instance(
        allowed(&[&format!("mqtt://127.0.0.1:{}", broker.port)]),
        retain(&["parking/terminals/+/frame"]),
    );
    let (_sub, mut rx) = subscribe(broker.port, "parking/#").await;
    assert_eq!(next(&mut rx).await.0, "", "subscribed");

    let address = format!("mqtt://127.0.0.1:{}?client_id=push-test", broker.port);
    let conn = mqtt.open(address, String::new(), String::new(), 30).await.unwrap().unwrap();
    let c = || Resource::new_borrow(conn.rep());
    mqtt.publish(c(), "parking/terminals/T1/frame".into(), b"frame-1".to_vec(), Qos::AtLeastOnce)
        .await
        .unwrap()
        .unwrap();
    mqtt.publish(c(), "parking/other".into(), b"plain".to_vec(), Qos::AtLeastOnce).await.unwrap().unwrap();
    let (topic, payload, _) = next(&mut rx).await;
    assert_eq!((topic.as_str(), payload.as_slice()), ("parking/terminals/T1/frame", &b"frame-1"[..]));
    assert_eq!(next(&mut rx).await.0, "parking/other");
    mqtt.drop(conn).await.unwrap();

    // A subscriber that comes later gets the retained frame, not the plain message.
    let (_late, mut late) = subscribe(broker.port, "parking/#").await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(next(&mut late).await);
    }
    let retained: Vec<_> = seen.iter().filter(|(t, _, _)| !t.is_empty()).collect();
    assert_eq!(retained.len(), 1, "{seen:?}");
    assert_eq!(retained[0].0, "parking/terminals/T1/frame");
    assert!(retained[0].2, "delivered as a retained message");
}

#[tokio::test]
async fn instances_share_one_client_per_broker() {
    let broker = Mosquitto::start();
    let capability = MqttCapability::new();
    let hosts = allowed(&["mqtt://127.0.0.1:*"]);
    let named = format!("mqtt://127.0.0.1:{}?client_id=shared", broker.port);
    let unnamed = format!("mqtt://127.0.0.1:{}", broker.port);
    for i in 0..10 {
        let mut mqtt = capability.instance(hosts.clone(), retain(&[]));
        let address = if i % 2 == 0 { named.clone() } else { unnamed.clone() };
        let conn = mqtt.open(address, String::new(), String::new(), 30).await.unwrap().unwrap();
        mqtt.publish(Resource::new_borrow(conn.rep()), "a/b".into(), vec![1], Qos::AtMostOnce)
            .await
            .unwrap()
            .unwrap();
        mqtt.drop(conn).await.unwrap();
    }
    assert_eq!(capability.client_count(), 2, "one named client, one parkd named once");
}

#[tokio::test]
async fn addresses_outside_allowed_outbound_hosts_are_refused_before_connecting() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let capability = MqttCapability::new();
    let mut mqtt = capability.instance(allowed(&["mqtt://broker.internal:1883"]), retain(&[]));
    let err = mqtt
        .open(format!("mqtt://127.0.0.1:{port}"), "u".into(), "secret".into(), 30)
        .await
        .unwrap()
        .unwrap_err();
    let Error::ConnectionFailed(msg) = err else { panic!("expected a refusal, got {err:?}") };
    assert!(msg.contains(&format!("mqtt://127.0.0.1:{port}")), "{msg}");
    assert!(msg.contains("allowed_outbound_hosts"), "{msg}");
    assert_eq!(capability.client_count(), 0);
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "nothing may connect to a host that is not allowed");
}

#[tokio::test]
async fn an_unreachable_broker_is_connection_failed_and_bad_addresses_are_invalid() {
    let capability = MqttCapability::with_connect_timeout(Duration::from_millis(700));
    let mut mqtt = capability.instance(allowed(&["mqtt://127.0.0.1:*"]), retain(&[]));
    let err =
        mqtt.open("mqtt://127.0.0.1:1".into(), String::new(), String::new(), 30).await.unwrap().unwrap_err();
    assert!(matches!(&err, Error::ConnectionFailed(m) if m.contains("127.0.0.1:1")), "{err:?}");
    let err = mqtt.open("not a url".into(), String::new(), String::new(), 30).await.unwrap().unwrap_err();
    assert_eq!(err, Error::InvalidAddress);
}

#[tokio::test]
async fn wildcard_topics_are_refused() {
    let broker = Mosquitto::start();
    let capability = MqttCapability::new();
    let mut mqtt = capability.instance(allowed(&["mqtt://127.0.0.1:*"]), retain(&[]));
    let conn = mqtt
        .open(format!("mqtt://127.0.0.1:{}", broker.port), String::new(), String::new(), 30)
        .await
        .unwrap()
        .unwrap();
    let err = mqtt
        .publish(Resource::new_borrow(conn.rep()), "parking/+/frame".into(), vec![], Qos::AtLeastOnce)
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(&err, Error::Other(m) if m.contains("parking/+/frame")), "{err:?}");
}
