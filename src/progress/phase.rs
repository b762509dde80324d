//! What a run is doing now, as `retention.progress` shows it, and the time it has left. Plain
//! Rust: no pgrx here.

/// A run's phase. Stored in shared memory as its index, so the order is part of the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Taking the policy's lock, or waiting before a batch tried again after a row lock wait.
    Locking,
    /// Counting the rows past the cutoff (the count `retention.preview` makes).
    Counting,
    /// Deleting (or soft-deleting) a batch of rows.
    Deleting,
    /// Detaching or dropping partitions every row of which is past the cutoff.
    RemovingPartitions,
    /// A recordings batch: reading it, then its Twilio (and S3) calls, nothing held.
    CallingTwilio,
    /// Marking the rows Twilio confirmed.
    Marking,
    /// Writing the run's end and sealing its ledger entry.
    Sealing,
    /// Waiting between batches to keep `max_rows_per_second`.
    Pacing,
}

const PHASES: [Phase; 8] = [
    Phase::Locking,
    Phase::Counting,
    Phase::Deleting,
    Phase::RemovingPartitions,
    Phase::CallingTwilio,
    Phase::Marking,
    Phase::Sealing,
    Phase::Pacing,
];

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Locking => "locking",
            Phase::Counting => "counting",
            Phase::Deleting => "deleting",
            Phase::RemovingPartitions => "removing partitions",
            Phase::CallingTwilio => "calling twilio",
            Phase::Marking => "marking",
            Phase::Sealing => "sealing",
            Phase::Pacing => "pacing",
        }
    }

    pub fn index(self) -> u8 {
        PHASES.iter().position(|p| *p == self).unwrap_or(0) as u8
    }

    /// The phase stored as `index`; None for a value no phase has (never written by this code).
    pub fn from_index(index: u8) -> Option<Phase> {
        PHASES.get(usize::from(index)).copied()
    }
}

/// Seconds left at the pace so far: the rows still to go at the rate of those done. None until
/// a row is done or while the estimate is unknown; zero once the estimate is reached (a run
/// can do more than it counted: rows expire while it runs).
pub fn seconds_left(elapsed_s: f64, rows_done: i64, rows_estimated: Option<i64>) -> Option<f64> {
    let estimated = rows_estimated?;
    if rows_done >= estimated {
        return Some(0.0);
    }
    if rows_done <= 0 || elapsed_s <= 0.0 {
        return None;
    }
    Some(elapsed_s * (estimated - rows_done) as f64 / rows_done as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_is_stored_and_read_back_as_itself() {
        for phase in PHASES {
            assert_eq!(Phase::from_index(phase.index()), Some(phase));
        }
        assert_eq!(Phase::from_index(PHASES.len() as u8), None);
        let names: std::collections::HashSet<_> = PHASES.iter().map(|p| p.as_str()).collect();
        assert_eq!(names.len(), PHASES.len());
    }

    #[test]
    fn time_left_is_the_rest_at_the_pace_so_far() {
        assert_eq!(seconds_left(10.0, 250, Some(1000)), Some(30.0));
        assert_eq!(seconds_left(10.0, 0, Some(1000)), None, "no pace yet");
        assert_eq!(seconds_left(10.0, 250, None), None, "nothing counted");
        assert_eq!(seconds_left(10.0, 1000, Some(1000)), Some(0.0));
        assert_eq!(seconds_left(10.0, 1200, Some(1000)), Some(0.0), "more expired while it ran");
        assert_eq!(seconds_left(0.0, 5, Some(10)), None);
    }
}
