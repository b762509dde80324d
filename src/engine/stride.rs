//! How far the next batch reaches (in blocks of a table, or in microseconds of time) so that
//! it holds about the rows wanted. Plain arithmetic, shared by the block and time-slice plans.

/// The first step over `span` units holding `rows` rows: what holds `wanted` of them if they
/// are spread evenly; at least `min`, at most the whole span.
pub fn first(span: i64, rows: i64, wanted: i64, min: i64) -> i64 {
    let step = (wanted as f64 * span as f64 / rows.max(1) as f64).ceil() as i64;
    step.clamp(min, span.max(min))
}

/// The step after one that took `processed` rows when `wanted` were wanted: in proportion,
/// growing at most twofold (rows are not spread evenly), at least `min`. An empty step keeps
/// its size (the plans seek the next row rather than widen until a step holds many batches).
pub fn next(step: i64, processed: i64, wanted: i64, min: i64) -> i64 {
    if processed <= 0 {
        return step.max(min);
    }
    ((step as f64 * wanted as f64 / processed as f64) as i64)
        .clamp(min, step.saturating_mul(2).max(min))
}

#[cfg(test)]
mod tests {
    use super::{first, next};

    #[test]
    fn the_first_step_holds_the_wanted_rows_if_spread_evenly() {
        assert_eq!(first(1000, 100_000, 10_000, 1), 100);
        assert_eq!(first(1000, 5_000, 10_000, 1), 1000, "never past the span");
        assert_eq!(first(10, 1_000_000, 10, 1), 1, "at least the minimum");
        assert_eq!(first(0, 0, 10, 1), 1);
        assert_eq!(
            first(1000, 0, 10, 1),
            1000,
            "no rows counted: the whole span"
        );
    }

    #[test]
    fn the_next_step_follows_the_rows_found_growing_at_most_twofold() {
        assert_eq!(next(100, 20_000, 10_000, 1), 50);
        assert_eq!(next(100, 1_000, 10_000, 1), 200, "at most twice as far");
        assert_eq!(next(100, 0, 10_000, 1), 100, "an empty step keeps its size");
        assert_eq!(next(3, 1_000_000, 10, 1), 1);
        assert_eq!(
            next(86_400, 1_000_000, 10, 86_400),
            86_400,
            "a day at least for dates"
        );
        assert_eq!(next(i64::MAX / 2 + 1, 1, 10, 1), i64::MAX, "no overflow");
    }
}
