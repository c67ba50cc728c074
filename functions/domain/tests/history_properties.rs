//! Properties of the roll-up arithmetic: splitting a window anywhere and
//! merging the halves gives the roll-up of the whole, and the sums stay
//! within what the group could possibly hold.

use chrono::{DateTime, Duration, TimeZone, Utc};
use parking_domain::{BayAtStart, BayStatus, GroupKey, StatusChange, VehicleClass, roll_up, statuses_at};
use proptest::collection::vec;
use proptest::prelude::*;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap()
}

fn group(i: u8) -> GroupKey {
    let class = if i.is_multiple_of(2) { VehicleClass::four_wheeler() } else { VehicleClass::two_wheeler() };
    GroupKey { lot: "north".into(), zone: (i < 2).then(|| "L1".to_owned()), class }
}

fn status() -> impl Strategy<Value = BayStatus> {
    prop_oneof![
        4 => Just(BayStatus::Free),
        4 => Just(BayStatus::Occupied),
        1 => Just(BayStatus::Unknown),
        1 => Just(BayStatus::Closed),
    ]
}

/// Bays spread over up to four groups, and a consistent sequence of changes
/// (each change's `previous` is the bay's status at that moment) over six hours.
fn history() -> impl Strategy<Value = (Vec<BayAtStart>, Vec<StatusChange>)> {
    (vec((0u8..4, status()), 1..12), vec((any::<prop::sample::Index>(), 0i64..6 * 3600, status()), 0..60))
        .prop_map(|(bays, raw_changes)| {
            let bays: Vec<BayAtStart> = bays
                .into_iter()
                .enumerate()
                .map(|(i, (g, status))| BayAtStart { group: group(g), bay: format!("B{i}"), status })
                .collect();
            let mut raw_changes = raw_changes;
            raw_changes.sort_by_key(|(_, secs, _)| *secs);
            let mut current: Vec<BayStatus> = bays.iter().map(|b| b.status).collect();
            let mut occupied_since: Vec<Option<DateTime<Utc>>> = vec![None; bays.len()];
            let mut stay_started: Vec<Option<DateTime<Utc>>> = vec![None; bays.len()];
            let mut changes = Vec::new();
            for (index, secs, next) in raw_changes {
                let i = index.index(bays.len());
                if current[i] == next {
                    continue;
                }
                let at = start() + Duration::seconds(secs);
                // Stays as the reading path marks them: a start from free or
                // closed, resumed across an unknown spell, ended by free or
                // closed; every third one over its limit.
                let mark = match next {
                    BayStatus::Occupied if stay_started[i].is_none() => {
                        stay_started[i] = Some(at);
                        Some(at)
                    }
                    BayStatus::Free | BayStatus::Closed => stay_started[i].take(),
                    _ => None,
                };
                changes.push(StatusChange {
                    group: bays[i].group.clone(),
                    bay: bays[i].bay.clone(),
                    at,
                    previous: current[i],
                    status: next,
                    occupied_since: if current[i] == BayStatus::Occupied { occupied_since[i] } else { None },
                    stay_started_at: mark,
                    overstayed: mark.is_some_and(|m| m != at && secs % 3 == 0),
                });
                if next == BayStatus::Occupied {
                    occupied_since[i] = Some(at);
                }
                current[i] = next;
            }
            (bays, changes)
        })
}

proptest! {
    #[test]
    fn roll_up_split_at_any_hour_merges_into_the_whole((bays, changes) in history(), split_hour in 0i64..=6) {
        let end = start() + Duration::hours(6);
        let split = start() + Duration::hours(split_hour);
        let whole = roll_up(start(), end, &bays, &changes);
        let first = roll_up(start(), split, &bays, &changes);
        let at_split = statuses_at(split, &bays, &changes);
        let second = roll_up(split, end, &at_split, &changes);
        prop_assert_eq!(whole.len(), second.len().max(first.len()));
        for (key, expected) in &whole {
            let merged = match (first.get(key), second.get(key)) {
                (Some(a), Some(b)) => a.merge(b),
                (Some(a), None) => *a,
                (None, Some(b)) => *b,
                (None, None) => panic!("group {key:?} missing from both halves"),
            };
            prop_assert_eq!(&merged, expected, "group {:?} split at hour {}", key, split_hour);
        }
    }

    #[test]
    fn roll_up_split_at_any_instant_merges_into_the_whole((bays, changes) in history(), split_secs in 0i64..6 * 3600) {
        let end = start() + Duration::hours(6);
        let split = start() + Duration::seconds(split_secs);
        let whole = roll_up(start(), end, &bays, &changes);
        let first = roll_up(start(), split, &bays, &changes);
        let second = roll_up(split, end, &statuses_at(split, &bays, &changes), &changes);
        for (key, expected) in &whole {
            let merged = first[key].merge(&second[key]);
            prop_assert_eq!(&merged, expected);
        }
    }

    #[test]
    fn roll_up_stays_within_the_group((bays, changes) in history()) {
        let end = start() + Duration::hours(6);
        for (key, r) in roll_up(start(), end, &bays, &changes) {
            let size = bays.iter().filter(|b| b.group == key).count() as u32;
            prop_assert_eq!(r.bays, size);
            prop_assert!(r.peak_occupied <= size && r.min_free <= size);
            prop_assert!(r.occupied_bay_ms >= 0 && r.occupied_bay_ms <= i64::from(size) * r.span_ms);
            prop_assert!(r.mean_occupancy() >= 0.0 && r.mean_occupancy() <= 1.0);
            prop_assert!(r.dwell_count <= r.departures);
            prop_assert!(r.overstays <= r.stays_ended && r.stay_lengths.count() == r.stays_ended);
            let arrivals = changes.iter().filter(|c| c.group == key && c.is_arrival()).count() as u32;
            prop_assert_eq!(r.arrivals, arrivals);
        }
    }
}
