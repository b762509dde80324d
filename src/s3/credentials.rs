//! An S3 store's credentials, from its secret file in the AWS shared-credentials format:
//!
//! ```text
//! [default]
//! aws_access_key_id = AKIA...
//! aws_secret_access_key = ...
//! aws_session_token = ...      (optional: temporary credentials)
//! ```
//!
//! Read again at each run, so that rotated temporary credentials are used once written. The
//! file holds one profile (any name) or `[default]` among others. Errors name what is wrong,
//! never a value.

/// Keys and token; `Debug` never prints the secret or the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// Parses the file's text.
pub fn parse(text: &str) -> Result<Credentials, String> {
    let mut profiles: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            profiles.push((name.trim().to_string(), Vec::new()));
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {} is neither a [profile] nor key = value", number + 1));
        };
        if profiles.is_empty() {
            profiles.push((String::new(), Vec::new())); // keys before any section: one unnamed profile
        }
        let entries = &mut profiles.last_mut().expect("a profile was just pushed").1;
        entries.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let entries = match profiles.as_slice() {
        [] => return Err("the file holds no credentials".into()),
        [(_, entries)] => entries,
        many => match many.iter().find(|(name, _)| name == "default") {
            Some((_, entries)) => entries,
            None => return Err(format!("the file holds {} profiles and none is [default]", many.len())),
        },
    };
    let get = |name: &str| entries.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.clone()).filter(|v| !v.is_empty());
    let access_key_id = get("aws_access_key_id").ok_or("aws_access_key_id is missing")?;
    let secret_access_key = get("aws_secret_access_key").ok_or("aws_secret_access_key is missing")?;
    if !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("aws_access_key_id has characters other than letters and digits".into());
    }
    Ok(Credentials { access_key_id, secret_access_key, session_token: get("aws_session_token") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_credentials_format_is_read() {
        let text = "# rotated hourly\n[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = s3cr3t/+=\naws_session_token = tok\n";
        let credentials = parse(text).unwrap();
        assert_eq!((credentials.access_key_id.as_str(), credentials.secret_access_key.as_str()), ("AKIAEXAMPLE", "s3cr3t/+="));
        assert_eq!(credentials.session_token.as_deref(), Some("tok"));
        let one_named = parse("[retention]\naws_access_key_id=AKIA2\naws_secret_access_key=x").unwrap();
        assert_eq!((one_named.access_key_id.as_str(), one_named.session_token), ("AKIA2", None));
        let two = parse("[other]\naws_access_key_id=AKIA1\naws_secret_access_key=a\n[default]\naws_access_key_id=AKIA2\naws_secret_access_key=b").unwrap();
        assert_eq!(two.access_key_id, "AKIA2");
    }

    #[test]
    fn bad_files_are_refused_without_showing_a_value() {
        for (text, expected) in [
            ("", "no credentials"),
            ("[a]\naws_access_key_id=A\naws_secret_access_key=x\n[b]\naws_access_key_id=B\naws_secret_access_key=y", "none is [default]"),
            ("[default]\naws_secret_access_key=topsecret", "aws_access_key_id is missing"),
            ("[default]\naws_access_key_id=AKIA", "aws_secret_access_key is missing"),
            ("[default]\naws_access_key_id=AK IA\naws_secret_access_key=topsecret", "letters and digits"),
            ("topsecret", "line 1"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(expected) && !error.contains("topsecret"), "{text:?}: {error}");
        }
        let credentials = parse("aws_access_key_id=AKIA\naws_secret_access_key=topsecret\naws_session_token=tokentoken").unwrap();
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("topsecret") && !shown.contains("tokentoken"), "{shown}");
    }
}
