//! A partition's bound as `pg_get_expr(relpartbound, oid)` prints it, read into the literals
//! a proof of expiry needs. Plain Rust: the comparison with the cutoff is left to Postgres,
//! in the key's own type.

/// What a partition's bound says about its one key column.
#[derive(Debug, PartialEq, Eq)]
pub enum Bound {
    /// `DEFAULT`: any row no other partition takes, NULL keys included. Never proven expired.
    Default,
    /// `FOR VALUES FROM (lower) TO (upper)` on one column: lower <= key < upper. A side that is
    /// `MINVALUE`/`MAXVALUE` is None.
    Range { lower: Option<String>, upper: Option<String> },
    /// A list or hash bound, or a range over several columns: proves nothing about time.
    Other,
}

/// Reads a bound printed by `pg_get_expr`. Anything not understood is `Other`, which proves
/// nothing, so a format this does not know can only cost speed, never rows.
pub fn parse(text: &str) -> Bound {
    if text == "DEFAULT" {
        return Bound::Default;
    }
    let Some(rest) = text.strip_prefix("FOR VALUES FROM (") else { return Bound::Other };
    let Some((lower, rest)) = value(rest) else { return Bound::Other };
    let Some(rest) = rest.strip_prefix(") TO (") else { return Bound::Other };
    let Some((upper, rest)) = value(rest) else { return Bound::Other };
    if rest != ")" {
        return Bound::Other;
    }
    Bound::Range { lower, upper }
}

/// One bound value and what follows it: `MINVALUE`/`MAXVALUE` (None) or a quoted literal,
/// whose doubled quotes are undone. A second value (a comma) is not a value this reads.
fn value(text: &str) -> Option<(Option<String>, &str)> {
    for unbounded in ["MINVALUE", "MAXVALUE"] {
        if let Some(rest) = text.strip_prefix(unbounded) {
            return Some((None, rest));
        }
    }
    let mut chars = text.strip_prefix('\'')?.char_indices().peekable();
    let mut literal = String::new();
    while let Some((at, c)) = chars.next() {
        if c == '\'' {
            if chars.peek().is_some_and(|&(_, next)| next == '\'') {
                chars.next();
                literal.push('\'');
                continue;
            }
            return Some((Some(literal), &text[at + 2..]));
        }
        literal.push(c);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(lower: Option<&str>, upper: Option<&str>) -> Bound {
        Bound::Range { lower: lower.map(String::from), upper: upper.map(String::from) }
    }

    #[test]
    fn single_column_ranges_give_their_literals() {
        assert_eq!(
            parse("FOR VALUES FROM ('2026-01-01 00:00:00') TO ('2026-01-11 00:00:00')"),
            range(Some("2026-01-01 00:00:00"), Some("2026-01-11 00:00:00"))
        );
        assert_eq!(parse("FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')"), range(Some("2026-01-01"), Some("2026-02-01")));
        assert_eq!(
            parse("FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-01-02 05:30:00+05:30')"),
            range(Some("2026-01-01 00:00:00+00"), Some("2026-01-02 05:30:00+05:30"))
        );
        assert_eq!(parse("FOR VALUES FROM (MINVALUE) TO ('2026-01-01')"), range(None, Some("2026-01-01")));
        assert_eq!(parse("FOR VALUES FROM ('2026-01-01') TO (MAXVALUE)"), range(Some("2026-01-01"), None));
        assert_eq!(parse("FOR VALUES FROM ('it''s') TO ('x)'' TO (''y')"), range(Some("it's"), Some("x)' TO ('y")));
    }

    #[test]
    fn anything_else_proves_nothing() {
        assert_eq!(parse("DEFAULT"), Bound::Default);
        for text in [
            "FOR VALUES IN ('a', 'b')",
            "FOR VALUES WITH (modulus 4, remainder 0)",
            "FOR VALUES FROM ('2026-01-01', 1) TO ('2026-02-01', 1)",
            "FOR VALUES FROM ('2026-01-01') TO ('2026-02-01', MAXVALUE)",
            "FOR VALUES FROM (10) TO (20)",
            "FOR VALUES FROM ('unterminated) TO ('x')",
            "FOR VALUES FROM ('a') TO ('b') trailing",
            "",
        ] {
            assert_eq!(parse(text), Bound::Other, "{text}");
        }
    }
}
