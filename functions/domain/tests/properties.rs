//! Property tests of the domain rules that matter most: no input crashes a
//! decoder, counts stay consistent, reading order does not matter, and signs
//! do not flicker.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use parking_domain::{
    BayStatus, Counts, FRAME_REPLAY_WINDOW, Fullness, Observation, Outcome, Thresholds, apply_reading,
    decode_parking_json, next_fullness, normalise_device_id, parse_lot_spec, validate_device_id, validate_id,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Number, Value, json};

// ------------------------------------------------------------ (a) decoders

/// Keys the decoders look for, plus noise, so generated objects reach the
/// field-level checks rather than failing at the first missing field.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "device", "occupied", "seq", "observedAt", "battery", "name", "bays", "id", "zone", "class", "sensor",
            "model",
        ])
        .prop_map(str::to_owned),
        1 => "[a-zA-Z_]{0,8}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        "\\PC{0,24}".prop_map(Value::String),
        "[ -~]{0,140}".prop_map(Value::String),
        prop::sample::select(vec![
            "2026-11-25T10:00:00Z",
            "2026-11-25T10:00:00.123+05:30",
            "yesterday",
            "",
            "DEV-1",
            "70B3D5499A1B2C3D",
            "four_wheeler",
            "two_wheeler",
            "B1",
            "L1",
            "..",
            "9999-12-31T23:59:60Z",
            "0000-01-01T00:00:00Z",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 96, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            btree_map(key(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A reading-shaped object whose fields may each be right or wrong.
fn reading_like() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just(json!("DEV-1")), leaf()],
        prop_oneof![any::<bool>().prop_map(Value::Bool), leaf()],
        prop_oneof![any::<u32>().prop_map(|n| json!(n)), leaf()],
        prop_oneof![Just(json!("2026-11-25T10:00:00Z")), leaf()],
        prop_oneof![(0.0..5.0f64).prop_map(|b| json!(b)), leaf()],
        btree_map(key(), json_value(), 0..3),
    )
        .prop_map(|(device, occupied, seq, at, battery, extra)| {
            let mut obj: serde_json::Map<String, Value> = extra.into_iter().collect();
            obj.insert("device".into(), device);
            obj.insert("occupied".into(), occupied);
            obj.insert("seq".into(), seq);
            obj.insert("observedAt".into(), at);
            obj.insert("battery".into(), battery);
            Value::Object(obj)
        })
}

/// A lot-spec-shaped object with few distinct ids, so duplicates happen.
fn lot_spec_like() -> impl Strategy<Value = Value> {
    let id =
        prop_oneof![prop::sample::select(vec!["B1", "B2", "B3", "", "B 1"]).prop_map(|s| json!(s)), leaf()];
    let sensor = prop_oneof![
        prop::sample::select(vec!["S1", "S2", "70B3D5499A1B2C3D", "70b3d5499a1b2c3d"]).prop_map(|s| json!(s)),
        Just(Value::Null),
        leaf(),
    ];
    let class = prop_oneof![Just(json!("four_wheeler")), Just(json!("two_wheeler")), leaf()];
    let bay = (id, prop_oneof![Just(json!("L1")), leaf()], class, sensor, btree_map(key(), leaf(), 0..2))
        .prop_map(|(id, zone, class, sensor, extra)| {
            let mut obj: serde_json::Map<String, Value> = extra.into_iter().collect();
            obj.insert("id".into(), id);
            obj.insert("zone".into(), zone);
            obj.insert("class".into(), class);
            obj.insert("sensor".into(), sensor);
            Value::Object(obj)
        });
    (prop_oneof![Just(json!("Central")), leaf()], vec(bay, 0..6))
        .prop_map(|(name, bays)| json!({ "name": name, "bays": bays }))
}

/// Bytes of a JSON value with some of them overwritten, cut or inserted.
fn mutated(value: impl Strategy<Value = Value>) -> impl Strategy<Value = Vec<u8>> {
    (value, vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 0..4)).prop_map(|(v, edits)| {
        let mut bytes = serde_json::to_vec(&v).unwrap();
        for (at, byte, kind) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = byte,
                1 => bytes.truncate(i),
                _ => bytes.insert(i, byte),
            }
        }
        bytes
    })
}

fn check_reading(payload: &[u8]) {
    if let Ok(r) = decode_parking_json(payload) {
        assert!(validate_device_id(&r.device).is_ok());
        assert!(r.battery.is_none_or(|b| b.is_finite() && b >= 0.0));
    }
}

fn check_lot_spec(body: &[u8]) {
    if let Ok(spec) = parse_lot_spec(body) {
        assert!(!spec.name.trim().is_empty() && spec.name.chars().count() <= 200);
        let mut ids = HashSet::new();
        let mut sensors = HashSet::new();
        for bay in &spec.bays {
            validate_id("bay", &bay.id).unwrap();
            assert!(ids.insert(bay.id.clone()), "duplicate bay id accepted");
            if let Some(zone) = &bay.zone {
                validate_id("zone", zone).unwrap();
            }
            if let Some(sensor) = &bay.sensor {
                validate_device_id(sensor).unwrap();
                assert_eq!(&normalise_device_id(sensor), sensor);
                assert!(sensors.insert(sensor.clone()), "sensor bound twice accepted");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoders_survive_arbitrary_bytes(bytes in vec(any::<u8>(), 0..5000)) {
        check_reading(&bytes);
        check_lot_spec(&bytes);
    }

    #[test]
    fn decoders_survive_json_ish_text(text in r#"[\[\]{}",:0-9a-zA-Z .eE+\-\\]{0,300}"#) {
        check_reading(text.as_bytes());
        check_lot_spec(text.as_bytes());
    }

    #[test]
    fn decoders_survive_arbitrary_json(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        check_reading(&bytes);
        check_lot_spec(&bytes);
    }

    #[test]
    fn reading_decoder_survives_reading_like_and_mutated_input(
        value in reading_like(),
        bytes in mutated(reading_like()),
    ) {
        check_reading(&serde_json::to_vec(&value).unwrap());
        check_reading(&bytes);
    }

    #[test]
    fn lot_spec_parser_survives_spec_like_and_mutated_input(
        value in lot_spec_like(),
        bytes in mutated(lot_spec_like()),
    ) {
        check_lot_spec(&serde_json::to_vec(&value).unwrap());
        check_lot_spec(&bytes);
    }
}

// ------------------------------------------------------------ (b) counts

#[derive(Clone, Debug)]
enum Op {
    Add(BayStatus),
    Remove(BayStatus),
    Transition(BayStatus, BayStatus),
}

fn status() -> impl Strategy<Value = BayStatus> {
    prop::sample::select(BayStatus::ALL.to_vec())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        status().prop_map(Op::Add),
        status().prop_map(Op::Remove),
        (status(), status()).prop_map(|(a, b)| Op::Transition(a, b)),
    ]
}

proptest! {
    #[test]
    fn counts_stay_consistent_and_match_a_model(ops in vec(op(), 0..200)) {
        let mut counts = Counts::default();
        // The model: one entry per bay, its status.
        let mut bays: Vec<BayStatus> = Vec::new();
        for op in ops {
            let before = counts;
            match op {
                Op::Add(s) => {
                    counts.add(s);
                    bays.push(s);
                }
                Op::Remove(s) => match bays.iter().position(|b| *b == s) {
                    Some(i) => {
                        prop_assert!(counts.remove(s).is_ok());
                        bays.swap_remove(i);
                    }
                    None => {
                        prop_assert!(counts.remove(s).is_err());
                        prop_assert_eq!(counts, before);
                    }
                },
                Op::Transition(from, to) => match bays.iter().position(|b| *b == from) {
                    Some(i) => {
                        prop_assert!(counts.transition(from, to).is_ok());
                        bays[i] = to;
                    }
                    None => {
                        prop_assert!(counts.transition(from, to).is_err());
                        prop_assert_eq!(counts, before);
                    }
                },
            }
            prop_assert!(counts.is_consistent());
            prop_assert!(counts.free <= counts.total);
            prop_assert_eq!(counts, Counts::from_statuses(bays.iter().copied()));
        }
    }
}

// ------------------------------------------------------------ (c) ordering

#[derive(Clone, Debug, PartialEq)]
struct Frame {
    occupied: bool,
    at: DateTime<Utc>,
    seq: Option<u32>,
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
}

/// Distinct frames of one sensor: strictly increasing times; seq counting up
/// (sometimes absent), resetting to a small number only after a gap longer
/// than the replay window (a rejoin takes time), so frames inside one window
/// never share a seq.
fn stream() -> impl Strategy<Value = Vec<Frame>> {
    let step = (
        any::<bool>(),
        prop_oneof![3 => 1i64..=90, 2 => 91i64..=3600],
        prop_oneof![6 => (1u32..=3).prop_map(Some), 1 => Just(None)],
        prop::bool::weighted(0.2),
        0u32..3,
        prop::bool::weighted(0.1),
    );
    vec(step, 1..25).prop_map(|steps| {
        let mut frames = Vec::new();
        let mut at = t0();
        let mut seq = 0u32;
        for (occupied, gap_secs, increment, reset, reset_to, no_seq) in steps {
            let gap = Duration::seconds(gap_secs) + Duration::milliseconds(gap_secs % 7);
            at += gap;
            seq = match increment {
                Some(_) if reset && gap > FRAME_REPLAY_WINDOW => reset_to,
                Some(n) => seq + n,
                // No counter this time; keep counting for the next.
                None => seq + 1,
            };
            let seq = if no_seq { None } else { Some(seq) };
            frames.push(Frame { occupied, at, seq });
        }
        frames
    })
}

fn initial() -> impl Strategy<Value = Observation> {
    (status(), prop::option::of(1i64..100_000), prop::option::of(any::<u32>())).prop_map(
        |(status, ago, seq)| {
            match ago {
                // Older than every frame of the stream.
                Some(ago) => Observation { status, observed_at: Some(t0() - Duration::seconds(ago)), seq },
                None => Observation { status, observed_at: None, seq: None },
            }
        },
    )
}

fn replay<'a>(start: Observation, frames: impl IntoIterator<Item = &'a Frame>) -> Observation {
    let mut state = start;
    for f in frames {
        if let Some(next) = apply_reading(&state, f.occupied, f.at, f.seq).observation() {
            state = *next;
        }
    }
    state
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn final_state_does_not_depend_on_order_or_duplicates(
        (frames, shuffled) in stream().prop_flat_map(|f| (Just(f.clone()), Just(f).prop_shuffle())),
        start in initial(),
        dup_picks in vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..20),
    ) {
        // The generator's promise, checked so the property means what it says.
        for (i, a) in frames.iter().enumerate() {
            for b in &frames[i + 1..] {
                prop_assert!(b.at > a.at);
                if b.at - a.at <= FRAME_REPLAY_WINDOW && a.seq.is_some() {
                    prop_assert_ne!(a.seq, b.seq);
                }
            }
        }

        let in_order = replay(start, &frames);
        let last = frames.last().unwrap();
        let expected_status = if start.status == BayStatus::Closed {
            BayStatus::Closed
        } else if last.occupied {
            BayStatus::Occupied
        } else {
            BayStatus::Free
        };
        prop_assert_eq!(in_order, Observation { status: expected_status, observed_at: Some(last.at), seq: last.seq });

        prop_assert_eq!(replay(start, &shuffled), in_order);

        let mut with_dups = shuffled.clone();
        for (from, at) in dup_picks {
            let copy = shuffled[from.index(shuffled.len())].clone();
            with_dups.insert(at.index(with_dups.len() + 1), copy);
        }
        prop_assert_eq!(replay(start, &with_dups), in_order);

        // Every copy of an already applied frame is a no-op.
        let mut state = start;
        let mut seen = Vec::new();
        for f in &with_dups {
            let out = apply_reading(&state, f.occupied, f.at, f.seq);
            if seen.contains(&f) {
                prop_assert!(matches!(out, Outcome::Duplicate | Outcome::Stale), "{:?} re-applied", f);
            }
            if let Some(next) = out.observation() {
                state = *next;
            }
            seen.push(f);
        }
    }
}

// ------------------------------------------------------------ (d) hysteresis

fn thresholds() -> impl Strategy<Value = Thresholds> {
    prop_oneof![
        Just(Thresholds::default()),
        (0.0..=1.0f64, 0.0..=1.0f64, 0.0..=1.0f64, 0.0..=1.0f64)
            .prop_filter_map("valid thresholds", |(a, b, c, d)| Thresholds::new(a, b, c, d).ok()),
        // Ordered by construction, so valid sets are common.
        (0.0..0.2f64, 0.01..0.2f64, 0.0..0.2f64, 0.01..0.2f64, 0.0..0.6f64).prop_filter_map(
            "valid thresholds",
            |(gap_low, band_a, gap_mid, band_f, base)| {
                let afx = base;
                let afe = afx + band_a;
                let fx = afx + gap_low.max(0.0);
                let fe = (fx + band_f).max(afe + gap_mid);
                Thresholds::new(afe, afx, fe.min(1.0), fx).ok()
            },
        ),
    ]
}

fn rank(f: Fullness) -> u8 {
    match f {
        Fullness::Available => 0,
        Fullness::AlmostFull => 1,
        Fullness::Full => 2,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn fullness_changes_only_across_thresholds(
        t in thresholds(),
        usable in 1u32..200,
        closed in 0u32..5,
        unknown_share in 0u32..3,
        start in any::<prop::sample::Index>(),
        steps in vec(any::<bool>(), 1..300),
    ) {
        let at = |taken: u32| {
            let unknown = unknown_share.min(taken);
            Counts { total: usable + closed, free: usable - taken, occupied: taken - unknown, unknown, closed }
        };
        let mut taken = start.index(usable as usize + 1) as u32;
        let mut state = next_fullness(Fullness::Available, &at(taken), &t);
        // The fraction at which the state last changed, to check the band.
        let mut last_change: Option<(Fullness, Fullness, f64)> = None;
        for up in steps {
            taken = if up { (taken + 1).min(usable) } else { taken.saturating_sub(1) };
            let counts = at(taken);
            prop_assert!(counts.is_consistent());
            let r = counts.taken_fraction();
            let next = next_fullness(state, &counts, &t);
            if next != state {
                if rank(next) > rank(state) {
                    // Up: only by reaching the enter threshold of the new state.
                    let enter = if next == Fullness::Full { t.full_enter() } else { t.almost_full_enter() };
                    prop_assert!(r >= enter, "{:?} -> {:?} at {} below enter {}", state, next, r, enter);
                } else {
                    // Down: only by falling to the exit threshold of the old state.
                    let exit = if state == Fullness::Full { t.full_exit() } else { t.almost_full_exit() };
                    prop_assert!(r <= exit, "{:?} -> {:?} at {} above exit {}", state, next, r, exit);
                }
                // Flipping straight back needs the fraction to cross the
                // whole dead band of the thresholds involved.
                if let Some((from, to, r_prev)) = last_change
                    && from == next
                    && to == state
                {
                    let band = if from == Fullness::Full || to == Fullness::Full {
                        t.full_enter() - t.full_exit()
                    } else {
                        t.almost_full_enter() - t.almost_full_exit()
                    };
                    prop_assert!((r - r_prev).abs() >= band - 1e-12, "flicker: {:?} <-> {:?}", from, to);
                }
                last_change = Some((state, next, r));
            }
            // The state is always one the fraction allows.
            prop_assert!(r < t.full_enter() || next == Fullness::Full);
            state = next;
        }
    }

    #[test]
    fn thresholds_new_accepts_exactly_ordered_fractions(
        a in -0.5..1.5f64, b in -0.5..1.5f64, c in -0.5..1.5f64, d in -0.5..1.5f64,
    ) {
        let in_range = [a, b, c, d].iter().all(|x| (0.0..=1.0).contains(x));
        let ordered = b < a && d < c && a <= c && b <= d;
        prop_assert_eq!(Thresholds::new(a, b, c, d).is_ok(), in_range && ordered);
    }
}

#[test]
fn summary_counts_match_bay_statuses() {
    // A small deterministic cross-check that summarise and from_statuses agree.
    let class = parking_domain::VehicleClass::four_wheeler();
    let statuses = [BayStatus::Free, BayStatus::Closed, BayStatus::Occupied];
    let a = parking_domain::summarise(
        "x",
        statuses.iter().map(|s| parking_domain::BayCount {
            zone: None,
            class: &class,
            status: *s,
            changed_at: None,
        }),
    );
    let expected: BTreeMap<_, _> = [(class.clone(), Counts::from_statuses(statuses))].into_iter().collect();
    assert_eq!(a.classes, expected);
    assert!(a.zones.is_empty());
}

proptest! {
    /// Counts kept per (zone, class) group and summed add up to the same
    /// availability as counting every bay: the counts table may stand in
    /// for a scan of the lot.
    #[test]
    fn group_counts_sum_to_the_counts_of_their_bays(
        bays in vec((prop::option::of(0usize..3), any::<bool>(), status(), 0i64..1_000), 0..60)
    ) {
        let zones = ["L1", "L2", "M"];
        let classes = [parking_domain::VehicleClass::four_wheeler(), parking_domain::VehicleClass::two_wheeler()];
        let at = |ms: i64| Utc.timestamp_millis_opt(ms).single();
        let per_bay = parking_domain::summarise(
            "lot",
            bays.iter().map(|(zone, two, status, changed)| parking_domain::BayCount {
                zone: zone.map(|z| zones[z]),
                class: &classes[usize::from(*two)],
                status: *status,
                changed_at: at(*changed),
            }),
        );
        type Group<'a> = (Option<&'a str>, usize);
        let mut groups: BTreeMap<Group, (Counts, Option<DateTime<Utc>>)> = BTreeMap::new();
        for (zone, two, status, changed) in &bays {
            let group = groups.entry((zone.map(|z| zones[z]), usize::from(*two))).or_default();
            group.0.add(*status);
            group.1 = group.1.max(at(*changed));
        }
        let per_group = parking_domain::summarise_groups(
            "lot",
            groups.iter().map(|((zone, class), (counts, changed_at))| parking_domain::GroupCount {
                zone: *zone,
                class: &classes[*class],
                counts: *counts,
                changed_at: *changed_at,
            }),
        );
        prop_assert_eq!(per_group, per_bay);
    }
}
