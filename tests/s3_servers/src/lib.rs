//! Real S3 servers on 127.0.0.1 that this project did not write, for the tests and the
//! benchmark: `s3s-fs` (checks every SigV4 signature; a bucket is a directory) and `moto` in
//! server mode (versioned buckets, object lock), with fixtures made and read by boto3, AWS's own
//! SDK (`servers.py`). `.ci/setup.sh` (run by `make test`) installs both: s3s-fs with `cargo
//! install`, moto and boto3 in `target/s3-venv`; a missing one fails the test that needs it,
//! saying how to install it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The credentials the servers accept.
pub const ACCESS: &str = "AKIAPGRETENTIONTEST";
pub const SECRET: &str = "pg-retention-s3-secret/+=";

/// A server process, stopped (and its files removed) when dropped.
pub struct Server {
    child: Option<Child>,
    pub endpoint: String,
    /// s3s-fs: the directory it serves (each bucket a directory in it).
    pub root: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(root) = &self.root {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

impl Server {
    /// A server someone else runs at `endpoint` (a scripted one of a test).
    pub fn at(endpoint: String) -> Server {
        Server { child: None, endpoint, root: None }
    }

    /// s3s-fs with the buckets `buckets` (directories), checking every signature.
    pub fn s3s_fs(buckets: &[&str]) -> Server {
        let root = std::env::temp_dir().join(format!("pg_retention-s3s-{}-{}", std::process::id(), free_port()));
        for bucket in buckets {
            std::fs::create_dir_all(root.join(bucket)).unwrap();
        }
        let port = free_port();
        let child = Command::new(program("s3s-fs", "cargo install s3s-fs --version =0.14.1 --locked --features binary"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", ACCESS, "--secret-key", SECRET])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        started(child, port, Some(root), "s3s-fs")
    }

    /// moto in server mode (it takes any credentials).
    pub fn moto() -> Server {
        let port = free_port();
        let child = Command::new(venv("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        started(child, port, None, "moto_server")
    }

    /// Runs `servers.py` (boto3) against the server: its JSON answer.
    pub fn boto3(&self, args: &[&str]) -> serde_json::Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("servers.py");
        let output = Command::new(venv("python")).arg(script).args([&self.endpoint, ACCESS, SECRET]).args(args).output().unwrap();
        assert!(output.status.success(), "servers.py {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// s3s-fs: writes each key of `bucket` as a file.
    pub fn put_files(&self, bucket: &str, keys: &[&str]) {
        for key in keys {
            let path = self.root.as_ref().expect("an s3s-fs server").join(bucket).join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"audio").unwrap();
        }
    }

    /// s3s-fs: every key of `bucket` still stored, sorted.
    pub fn stored(&self, bucket: &str) -> Vec<String> {
        let bucket = self.root.as_ref().expect("an s3s-fs server").join(bucket);
        let mut found = Vec::new();
        let mut stack = vec![bucket.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                if entry.file_type().unwrap().is_dir() {
                    stack.push(entry.path());
                } else {
                    found.push(entry.path().strip_prefix(&bucket).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        found
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn started(mut child: Child, port: u16, root: Option<PathBuf>, what: &str) -> Server {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited at start ({status})");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on 127.0.0.1:{port} within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child: Some(child), endpoint: format!("http://127.0.0.1:{port}"), root }
}

/// A program of the virtual environment `.ci/setup.sh` makes with moto and boto3.
fn venv(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/s3-venv/bin").join(name);
    assert!(path.is_file(), "{} is missing: .ci/setup.sh makes target/s3-venv with moto[server] and boto3", path.display());
    path
}

/// The program on PATH or in ~/.cargo/bin; a clear failure when it is not installed.
fn program(name: &str, install: &str) -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain([home.join(".cargo/bin")])
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed: {install} (.ci/run does)"))
}
