//! What `parkd up --demo` sets up: a lot, a terminal showing it, and
//! simulated sensors on the embedded broker, so the operator page and the
//! kiosk show moving numbers within seconds.

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::simulate::SimulateOptions;

pub const DEMO_LOT: &str = "demo";
pub const DEMO_TERMINAL: &str = "demo-entrance";
/// Readings per second of the simulated sensors.
pub const DEMO_RATE: f64 = 2.0;

/// A two-level garage with cars on both levels and a motorcycle area.
pub fn demo_lot() -> Value {
    let mut bays = Vec::new();
    for (zone, class, prefix, count) in
        [("L1", "four_wheeler", "L1-", 12), ("L2", "four_wheeler", "L2-", 12), ("M", "two_wheeler", "M-", 8)]
    {
        for n in 1..=count {
            let id = format!("{prefix}{n:02}");
            bays.push(json!({ "id": id, "zone": zone, "class": class, "sensor": format!("DEMO-{id}") }));
        }
    }
    json!({ "name": "Demo Garage", "bays": bays })
}

/// The sensors of the demo lot's bays, in order.
pub fn demo_devices() -> Vec<String> {
    demo_lot()["bays"]
        .as_array()
        .map(|bays| bays.iter().filter_map(|b| b["sensor"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The demo terminal's definition (every zone and class of the demo lot).
pub fn demo_terminal(token: &str) -> Value {
    json!({ "lot": DEMO_LOT, "token": token })
}

/// A fresh random token for the demo terminal.
pub fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Endless simulated readings of the demo lot's sensors, published to `broker`.
pub fn traffic(broker: SocketAddr) -> SimulateOptions {
    let host = if broker.ip().is_unspecified() { "127.0.0.1".to_owned() } else { broker.ip().to_string() };
    SimulateOptions {
        mqtt_host: host,
        mqtt_port: broker.port(),
        rate: DEMO_RATE,
        readings: u64::MAX,
        devices: demo_devices(),
        progress: false,
        seed: rand::random(),
        ..SimulateOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_traffic_reports_for_every_bay_of_the_demo_lot() {
        let devices = demo_devices();
        assert_eq!(devices.len(), 32);
        assert_eq!(devices[1], "DEMO-L1-02");
        let traffic = traffic("0.0.0.0:1883".parse().unwrap());
        assert_eq!(traffic.mqtt_host, "127.0.0.1");
        assert_eq!(traffic.devices, devices);
    }

    #[test]
    fn the_demo_token_is_one_a_terminal_accepts() {
        let token = new_token();
        assert!((16..=256).contains(&token.len()) && token.chars().all(|c| c.is_ascii_graphic()));
        assert_ne!(token, new_token());
    }
}
