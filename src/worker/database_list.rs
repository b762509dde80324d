//! `pg_retention.database` as a list: the databases whose policies the worker runs, one
//! worker each. Plain Rust, so that the parsing is tested without a server.

/// The longest database name Postgres keeps (NAMEDATALEN - 1 bytes).
const MAX_NAME_BYTES: usize = 63;

/// The most databases the worker serves: the launcher's board in shared memory has a place
/// for each (`board.rs`).
pub const MAX_DATABASES: usize = 64;

/// The databases of a comma-separated list, in the order given, each trimmed of spaces. An
/// empty item, a name Postgres would truncate, or a name listed twice is refused, naming it.
pub fn parse(list: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    for item in list.split(',') {
        let name = item.trim();
        if name.is_empty() {
            return Err(format!("\"{list}\" has an empty item: list database names separated by commas"));
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(format!("\"{name}\" is longer than a database name can be ({MAX_NAME_BYTES} bytes)"));
        }
        if names.iter().any(|known| known == name) {
            return Err(format!("database \"{name}\" is listed twice"));
        }
        names.push(name.to_string());
    }
    if names.len() > MAX_DATABASES {
        return Err(format!("{} databases are listed; the worker serves at most {MAX_DATABASES}", names.len()));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn one_name_or_several_in_order_trimmed() {
        assert_eq!(parse("postgres"), Ok(vec!["postgres".to_string()]));
        assert_eq!(parse(" voice , app_db,postgres "), Ok(vec!["voice".into(), "app_db".into(), "postgres".into()]));
        assert_eq!(parse("Mixed Case"), Ok(vec!["Mixed Case".into()]), "a name with a space is a name");
    }

    #[test]
    fn empty_items_long_names_and_repeats_are_refused_by_name() {
        assert!(parse("a,,b").unwrap_err().contains("empty item"));
        assert!(parse("a,").unwrap_err().contains("empty item"));
        assert!(parse(&"x".repeat(64)).unwrap_err().contains("longer than a database name"));
        assert!(parse(&"x".repeat(63)).is_ok());
        assert_eq!(parse("a, b, a").unwrap_err(), "database \"a\" is listed twice");
        let many = |n: usize| (0..n).map(|i| format!("db{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(parse(&many(64)).map(|names| names.len()), Ok(64));
        assert_eq!(parse(&many(65)).unwrap_err(), "65 databases are listed; the worker serves at most 64");
    }
}
