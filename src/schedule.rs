//! When the worker runs: once a day at `run_at`, local time in the worker's time zone.
//! Plain Rust on wall-clock times; Postgres converts between them and real instants.

use chrono::{Duration, NaiveDateTime, NaiveTime};

/// Parses `run_at`: `HH:MM` on a 24-hour clock.
pub fn parse_run_at(text: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(text.trim(), "%H:%M")
        .map_err(|_| format!("\"{text}\" is not a time of day as HH:MM on a 24-hour clock, such as 03:00"))
}

/// The latest scheduled time at or before `now`.
pub fn last_slot(now: NaiveDateTime, run_at: NaiveTime) -> NaiveDateTime {
    let today = now.date().and_time(run_at);
    if today <= now {
        today
    } else {
        today - Duration::days(1)
    }
}

/// The first scheduled time after `now`.
pub fn next_slot(now: NaiveDateTime, run_at: NaiveTime) -> NaiveDateTime {
    last_slot(now, run_at) + Duration::days(1)
}

/// What the worker should do now, given the slot it last ran (or started from).
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    /// Never started before: remember the current slot without running it, so enabling the
    /// worker at noon does not purge at noon.
    Baseline(NaiveDateTime),
    /// The slot has come (or was missed while the server was down): run once, for this slot.
    Run(NaiveDateTime),
    /// Nothing to do before `next_slot`.
    Wait,
}

pub fn due(now: NaiveDateTime, run_at: NaiveTime, last_run_slot: Option<NaiveDateTime>) -> Due {
    let slot = last_slot(now, run_at);
    match last_run_slot {
        None => Due::Baseline(slot),
        Some(done) if done < slot => Due::Run(slot),
        Some(_) => Due::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn run_at_parses_hh_mm_only() {
        assert_eq!(parse_run_at("03:00").unwrap(), NaiveTime::from_hms_opt(3, 0, 0).unwrap());
        assert_eq!(parse_run_at("23:59").unwrap(), NaiveTime::from_hms_opt(23, 59, 0).unwrap());
        for bad in ["24:00", "3am", "", "03:60", "03:00:00x"] {
            assert!(parse_run_at(bad).unwrap_err().contains("HH:MM"), "{bad}");
        }
    }

    #[test]
    fn slots() {
        let three = parse_run_at("03:00").unwrap();
        assert_eq!(last_slot(at("2026-11-26 14:00"), three), at("2026-11-26 03:00"));
        assert_eq!(last_slot(at("2026-11-26 02:59"), three), at("2026-11-25 03:00"));
        assert_eq!(last_slot(at("2026-11-26 03:00"), three), at("2026-11-26 03:00"));
        assert_eq!(next_slot(at("2026-11-26 03:00"), three), at("2026-11-27 03:00"));
        assert_eq!(next_slot(at("2026-12-31 23:00"), three), at("2027-01-01 03:00"));
    }

    #[test]
    fn first_start_only_sets_a_baseline() {
        let three = parse_run_at("03:00").unwrap();
        assert_eq!(due(at("2026-11-26 14:00"), three, None), Due::Baseline(at("2026-11-26 03:00")));
    }

    #[test]
    fn a_slot_runs_once() {
        let three = parse_run_at("03:00").unwrap();
        let done = Some(at("2026-11-25 03:00"));
        assert_eq!(due(at("2026-11-26 02:00"), three, done), Due::Wait);
        assert_eq!(due(at("2026-11-26 03:00"), three, done), Due::Run(at("2026-11-26 03:00")));
        assert_eq!(due(at("2026-11-26 03:05"), three, Some(at("2026-11-26 03:00"))), Due::Wait);
    }

    #[test]
    fn missed_nights_run_once_at_start_up() {
        let three = parse_run_at("03:00").unwrap();
        // Down from the 23rd to the 26th at noon: one run, for the latest slot.
        assert_eq!(due(at("2026-11-26 12:00"), three, Some(at("2026-11-23 03:00"))), Due::Run(at("2026-11-26 03:00")));
    }
}
