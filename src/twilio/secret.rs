//! The Twilio secret (auth token, or API key secret) lives in a file, never in a setting:
//! PostgreSQL logs a setting's new value on reload. The file must satisfy what PostgreSQL
//! requires of `ssl_key_file`: a regular file owned by the server's OS user (mode 0600 or
//! less) or by root (0640 or less). It is read at each run, so rotating it needs no reload.
//! No error here ever quotes the file's contents.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The setting that names the file, as errors spell it.
pub const SETTING: &str = "pg_retention.twilio_secret_file";

/// Reads the secret from `path`: absolute, or relative to `data_dir`. The first line, trimmed.
pub fn read(path: &str, data_dir: &Path, server_uid: u32) -> Result<String, String> {
    let text = read_file(path, data_dir, server_uid, SETTING)?;
    let secret = text.lines().next().unwrap_or("").trim();
    if secret.is_empty() {
        return Err(format!("{SETTING} \"{}\" is empty", resolve(path, data_dir).display()));
    }
    Ok(secret.to_string())
}

/// The whole text of a secret file under the same rules; `named_by` (a setting, a store) is
/// what errors say names the file.
pub fn read_file(path: &str, data_dir: &Path, server_uid: u32, named_by: &str) -> Result<String, String> {
    let path = resolve(path, data_dir);
    let shown = path.display();
    let metadata = std::fs::metadata(&path).map_err(|e| format!("could not read {named_by} \"{shown}\": {e}"))?;
    if !metadata.is_file() {
        return Err(format!("{named_by} \"{shown}\" is not a regular file"));
    }
    check_access(metadata.uid(), metadata.permissions().mode(), server_uid).map_err(|problem| format!("{named_by} \"{shown}\" {problem}"))?;
    std::fs::read_to_string(&path).map_err(|e| format!("could not read {named_by} \"{shown}\": {e}"))
}

fn resolve(path: &str, data_dir: &Path) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() { path.to_path_buf() } else { data_dir.join(path) }
}

/// PostgreSQL's rule for private key files (`check_ssl_key_file_permissions`).
fn check_access(file_uid: u32, mode: u32, server_uid: u32) -> Result<(), String> {
    const GROUP_OR_OTHER: u32 = 0o077;
    const ROOT_MAY_NOT: u32 = 0o037; // group write and execute, anything for others
    if file_uid != server_uid && file_uid != 0 {
        return Err("must be owned by the database server's OS user or by root".into());
    }
    if (file_uid == server_uid && mode & GROUP_OR_OTHER != 0) || (file_uid == 0 && file_uid != server_uid && mode & ROOT_MAY_NOT != 0) {
        return Err(format!(
            "has group or world access (mode {:04o}): it must be 0600 or less if owned by the server's OS user, 0640 or less if owned by root",
            mode & 0o777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_rules_are_those_of_ssl_key_file() {
        let server = 105;
        assert!(check_access(server, 0o100600, server).is_ok());
        assert!(check_access(server, 0o100400, server).is_ok());
        assert!(check_access(0, 0o100640, server).is_ok());
        assert!(check_access(server, 0o100640, server).unwrap_err().contains("group or world access"));
        assert!(check_access(server, 0o100604, server).unwrap_err().contains("(mode 0604)"));
        assert!(check_access(0, 0o100660, server).is_err());
        assert!(check_access(0, 0o100644, server).is_err());
        assert!(check_access(1000, 0o100600, server).unwrap_err().contains("must be owned"));
    }

    #[test]
    fn reads_the_first_line_and_never_quotes_the_secret() {
        let dir = std::env::temp_dir().join(format!("pg_retention_secret_test_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let uid = std::fs::metadata(&dir).unwrap().uid();
        let file = dir.join("twilio.secret");
        std::fs::write(&file, "  s3cret-token \nignored\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read("twilio.secret", &dir, uid).unwrap(), "s3cret-token");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = read(file.to_str().unwrap(), Path::new("/nowhere"), uid).unwrap_err();
        assert!(refused.contains("group or world access") && !refused.contains("s3cret"), "{refused}");
        std::fs::write(&file, "\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read("twilio.secret", &dir, uid).unwrap_err().ends_with("is empty"));
        assert!(read("missing", &dir, uid).unwrap_err().starts_with("could not read pg_retention.twilio_secret_file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
