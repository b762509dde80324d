//! Bounds on what a user can ask for, checked before anything touches a table.
//! Plain Rust, so the rules are unit-tested without a server.

/// `days` below this would delete rows younger than a day: almost surely a typo.
pub const MIN_DAYS: i32 = 1;
/// A century. Far past any legal retention period, far short of timestamp overflow.
pub const MAX_DAYS: i32 = 36_500;

pub const MIN_BATCH_SIZE: i32 = 1;
/// Large enough for any table; small enough that one batch stays a short transaction.
pub const MAX_BATCH_SIZE: i32 = 1_000_000;

/// Checks the `days` argument of the cleanup functions.
pub fn check_days(days: Option<i32>) -> Result<i32, String> {
    match days {
        None => Err(format!(
            "days must not be NULL; it must be a whole number of days between {MIN_DAYS} and {MAX_DAYS}"
        )),
        Some(d) if !(MIN_DAYS..=MAX_DAYS).contains(&d) => Err(format!(
            "days must be between {MIN_DAYS} and {MAX_DAYS}, got {d}"
        )),
        Some(d) => Ok(d),
    }
}

/// Checks a policy's batch size.
pub fn check_batch_size(batch_size: i32) -> Result<i32, String> {
    if (MIN_BATCH_SIZE..=MAX_BATCH_SIZE).contains(&batch_size) {
        Ok(batch_size)
    } else {
        Err(format!(
            "batch_size must be between {MIN_BATCH_SIZE} and {MAX_BATCH_SIZE}, got {batch_size}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_in_range_pass() {
        assert_eq!(check_days(Some(1)), Ok(1));
        assert_eq!(check_days(Some(90)), Ok(90));
        assert_eq!(check_days(Some(MAX_DAYS)), Ok(MAX_DAYS));
    }

    #[test]
    fn days_out_of_range_name_the_argument_and_range() {
        for bad in [Some(0), Some(-1), Some(MAX_DAYS + 1), Some(i32::MAX), Some(i32::MIN), None] {
            let err = check_days(bad).unwrap_err();
            assert!(err.starts_with("days must"), "{err}");
            assert!(err.contains("1") && err.contains("36500"), "{err}");
        }
    }

    #[test]
    fn batch_size_bounds() {
        assert!(check_batch_size(1).is_ok());
        assert!(check_batch_size(MAX_BATCH_SIZE).is_ok());
        for bad in [0, -5, MAX_BATCH_SIZE + 1] {
            assert!(check_batch_size(bad).unwrap_err().starts_with("batch_size must be between"));
        }
    }
}
