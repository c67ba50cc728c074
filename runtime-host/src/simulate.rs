//! `parkd simulate`: virtual bays that vehicles arrive at and leave, with
//! sensor heartbeats, published over MQTT at a target rate. It is the demo
//! traffic for `parkd up` and the load source for benchmarks.
//!
//! Each bay alternates between free and occupied with exponentially
//! distributed dwell times (cars stay longer than they leave a bay empty);
//! the simulation clock runs as fast as the target rate needs. Observation
//! times are the wall clock, so readings are live for the system.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct SimulateOptions {
    pub mqtt_host: String,
    pub mqtt_port: u16,
    pub bays: usize,
    /// Readings per second, heartbeats included.
    pub rate: f64,
    /// Stop after this many readings.
    pub readings: u64,
    /// Device ids are `{prefix}-0001` and up ...
    pub device_prefix: String,
    /// ... unless given here, one per bay (then `bays` is their number).
    pub devices: Vec<String>,
    /// Share of readings that are heartbeats (status unchanged).
    pub heartbeat_share: f64,
    pub seed: u64,
    pub progress: bool,
}

impl Default for SimulateOptions {
    fn default() -> Self {
        Self {
            mqtt_host: "127.0.0.1".into(),
            mqtt_port: 1883,
            bays: 100,
            rate: 50.0,
            readings: 3000,
            device_prefix: "SIM".into(),
            devices: Vec::new(),
            heartbeat_share: 0.1,
            seed: 1,
            progress: true,
        }
    }
}

/// Mean dwell times in simulated minutes: a parked car stays about 45 minutes,
/// a bay stays empty about 20.
const MEAN_OCCUPIED_MIN: f64 = 45.0;
const MEAN_FREE_MIN: f64 = 20.0;

pub fn device_id(prefix: &str, bay: usize) -> String {
    format!("{prefix}-{:04}", bay + 1)
}

/// The lot definition matching the simulated devices, for `PUT /api/v1/lots/{lot}`:
/// four in five bays for cars on levels L1/L2, the rest for two-wheelers.
pub fn lot_definition(name: &str, prefix: &str, bays: usize) -> serde_json::Value {
    let bays: Vec<_> = (0..bays)
        .map(|i| {
            let (zone, class) = if i % 5 == 4 { ("M", "two_wheeler") } else if i % 2 == 0 { ("L1", "four_wheeler") } else { ("L2", "four_wheeler") };
            json!({ "id": format!("B{:04}", i + 1), "zone": zone, "class": class, "sensor": device_id(prefix, i) })
        })
        .collect();
    json!({ "name": name, "bays": bays })
}

fn exponential(rng: &mut StdRng, mean: f64) -> f64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    -u.ln() * mean
}

struct Bay {
    occupied: bool,
    seq: u32,
}

/// What a simulation sent: the count, and each bay's last published state
/// (`None`: never published), which is what the system must end up showing.
#[derive(Debug, Clone)]
pub struct Summary {
    pub sent: u64,
    pub last_published: Vec<Option<bool>>,
}

/// Publishes readings until `readings` are out.
pub async fn run(mut options: SimulateOptions) -> Result<Summary> {
    if !options.devices.is_empty() {
        options.bays = options.devices.len();
    }
    let mut mqtt =
        MqttOptions::new(format!("parkd-simulate-{}", options.seed), &options.mqtt_host, options.mqtt_port);
    mqtt.set_keep_alive(Duration::from_secs(15));
    let (client, mut eventloop) = AsyncClient::new(mqtt, 1024);
    // The broker's acknowledgements: a reading counts as sent once the
    // broker has it, so a burst is not cut short when the simulation ends.
    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let poller = tokio::spawn({
        let acknowledged = acknowledged.clone();
        async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                        acknowledged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "simulator lost its MQTT connection; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
    });

    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut bays: Vec<Bay> =
        (0..options.bays).map(|_| Bay { occupied: rng.random_bool(0.5), seq: 0 }).collect();
    // Next change of every bay, in simulated minutes.
    let mut changes: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    for (i, bay) in bays.iter().enumerate() {
        let mean = if bay.occupied { MEAN_OCCUPIED_MIN } else { MEAN_FREE_MIN };
        changes.push(Reverse(((exponential(&mut rng, mean) * 1000.0) as u64, i)));
    }

    let mut last_published = vec![None; options.bays];
    let progress = if options.progress { ProgressBar::new(options.readings) } else { ProgressBar::hidden() };
    progress.set_style(
        ProgressStyle::with_template("simulate [{bar:30}] {pos}/{len} readings {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let interval = Duration::from_secs_f64(1.0 / options.rate.max(0.001));
    let started = Instant::now();
    for n in 0..options.readings {
        // Pace by the schedule, not by sleeping a fixed time: the rate holds
        // even when a publish takes a while.
        let due = started + interval.mul_f64(n as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let (bay_index, heartbeat) = if rng.random_bool(options.heartbeat_share.clamp(0.0, 1.0)) {
            (rng.random_range(0..options.bays), true)
        } else {
            let Reverse((at, i)) = changes.pop().context("no bays to simulate")?;
            let bay = &mut bays[i];
            bay.occupied = !bay.occupied;
            let mean = if bay.occupied { MEAN_OCCUPIED_MIN } else { MEAN_FREE_MIN };
            changes.push(Reverse((at + (exponential(&mut rng, mean) * 1000.0) as u64, i)));
            (i, false)
        };
        let bay = &mut bays[bay_index];
        bay.seq = bay.seq.wrapping_add(1);
        let device = options
            .devices
            .get(bay_index)
            .cloned()
            .unwrap_or_else(|| device_id(&options.device_prefix, bay_index));
        let reading = json!({
            "device": device,
            "occupied": bay.occupied,
            "seq": bay.seq,
            "observedAt": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "battery": if heartbeat { Some(3.6) } else { None },
        });
        client
            .publish(format!("parking/uplink/{device}"), QoS::AtLeastOnce, false, reading.to_string())
            .await
            .context("publishing a simulated reading")?;
        last_published[bay_index] = Some(bay.occupied);
        progress.inc(1);
    }
    progress.finish();
    // Every reading must reach the broker before the connection goes.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.load(std::sync::atomic::Ordering::Relaxed) < options.readings {
        if Instant::now() > deadline {
            poller.abort();
            anyhow::bail!(
                "the broker acknowledged {} of {} readings within 60 s: is it overloaded or gone?",
                acknowledged.load(std::sync::atomic::Ordering::Relaxed),
                options.readings
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    poller.abort();
    Ok(Summary { sent: options.readings, last_published })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lot_definition_matches_the_devices() {
        let lot = lot_definition("Sim", "SIM", 10);
        let bays = lot["bays"].as_array().unwrap();
        assert_eq!(bays.len(), 10);
        assert_eq!(bays[0]["sensor"], "SIM-0001");
        assert_eq!(bays[4]["class"], "two_wheeler");
        assert_eq!(bays.iter().filter(|b| b["class"] == "four_wheeler").count(), 8);
    }

    #[test]
    fn dwell_times_average_to_their_means() {
        let mut rng = StdRng::seed_from_u64(7);
        let n = 20_000;
        let mean = (0..n).map(|_| exponential(&mut rng, 45.0)).sum::<f64>() / n as f64;
        assert!((mean - 45.0).abs() < 2.0, "{mean}");
    }
}
