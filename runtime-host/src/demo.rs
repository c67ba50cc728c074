//! The demo lot `parkd up --demo` provisions: enough to try the API at once.

use serde_json::{Value, json};

pub const DEMO_LOT: &str = "demo";

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
