//! A real S3-compatible server for the object-storage tests: moto, installed
//! by `scripts/install-s3-test-server` (pinned, from PyPI) and started here
//! on a free port of 127.0.0.1, one server per test. [`FaultProxy`] stands
//! between etl and the server to answer chosen requests with a 503, never
//! answer them, or drop every connection, as a failing store would.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

pub const KEY_ID: &str = "etl-test-key";
pub const SECRET: &str = "etl-test-secret-do-not-print";

/// The virtualenv python with moto, installed once per test process.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| PathBuf::from(crate::support::install("install-s3-test-server", "python3 and PyPI")))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, child: &mut Child) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                e.read_to_string(&mut err).unwrap();
            }
            panic!("the S3 test server exited ({status}):\n{err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the S3 test server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A moto server, stopped when dropped.
pub struct S3Server {
    child: Child,
    pub port: u16,
}

impl S3Server {
    pub fn start() -> S3Server {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/s3_test_server.py");
        let port = free_port();
        let mut child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the S3 test server starts");
        // moto logs every request to stderr: drain it so that it never blocks.
        wait_for_port(port, &mut child);
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        S3Server { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn create_bucket(&self, bucket: &str) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
            "{answer}"
        );
    }

    /// A client for `bucket`, with the tests' credentials.
    pub fn store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .with_region("us-east-1")
                .with_access_key_id(KEY_ID)
                .with_secret_access_key(SECRET)
                .build()
                .unwrap(),
        )
    }

    /// The storage options etl needs to reach this server through
    /// `endpoint` (the server's own, or a proxy's).
    pub fn options(&self, endpoint: &str) -> BTreeMap<String, String> {
        [
            ("aws_endpoint_url", endpoint),
            ("aws_allow_http", "true"),
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", KEY_ID),
            ("aws_secret_access_key", SECRET),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Copies the files under `dir` to `bucket/prefix/`, skipping those
    /// already there (a re-upload would be a new file to an ingesting model).
    pub fn upload(&self, bucket: &str, prefix: &str, dir: &Path) -> usize {
        let store = self.store(bucket);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let mut uploaded = 0;
            for entry in walkdir::WalkDir::new(dir) {
                let entry = entry.unwrap();
                if !entry.file_type().is_file() {
                    continue;
                }
                let relative = entry
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                let key = StorePath::from(format!("{prefix}/{relative}"));
                if store.head(&key).await.is_ok() {
                    continue;
                }
                let bytes = std::fs::read(entry.path()).unwrap();
                store.put(&key, PutPayload::from(bytes)).await.unwrap();
                uploaded += 1;
            }
            uploaded
        })
    }

    /// The keys under `bucket/prefix/`, sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let store = self.store(bucket);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            use futures::TryStreamExt;
            let mut keys: Vec<String> = store
                .list(Some(&StorePath::from(prefix)))
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .unwrap();
            keys.sort();
            keys
        })
    }
}

impl S3Server {
    /// Deletes the objects under `bucket/prefix/`.
    pub fn delete_prefix(&self, bucket: &str, prefix: &str) {
        let store = self.store(bucket);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        for key in self.keys(bucket, prefix) {
            runtime.block_on(store.delete(&StorePath::from(key))).unwrap();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does with a request whose method and path match.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer `503 Slow Down` this many times, then pass requests on.
    Unavailable(usize),
    /// Never answer.
    Hang,
}

#[derive(Default)]
struct Rules {
    /// (method, part of the path, fault)
    faults: Vec<(String, String, Fault)>,
    /// Once a request matching (method, part of the path) has been
    /// answered, the server is gone: every later connection is dropped.
    down_after: Option<(String, String)>,
}

/// A TCP proxy in front of an [`S3Server`] that injects store failures.
pub struct FaultProxy {
    pub port: u16,
    rules: Arc<Mutex<Rules>>,
    down: Arc<AtomicBool>,
    /// Requests answered with a fault so far.
    pub faults_served: Arc<AtomicUsize>,
}

impl FaultProxy {
    pub fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let rules: Arc<Mutex<Rules>> = Arc::default();
        let down = Arc::new(AtomicBool::new(false));
        let faults_served = Arc::new(AtomicUsize::new(0));
        let (r, d, f) = (rules.clone(), down.clone(), faults_served.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (r, d, f) = (r.clone(), d.clone(), f.clone());
                std::thread::spawn(move || serve(client, upstream, &r, &d, &f));
            }
        });
        FaultProxy {
            port,
            rules,
            down,
            faults_served,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Applies `fault` to requests with `method` whose path contains `path`.
    pub fn fail(&self, method: &str, path: &str, fault: Fault) {
        let mut rules = self.rules.lock().unwrap();
        rules.faults.push((method.to_owned(), path.to_owned(), fault));
    }

    /// Stops answering anything once a `method` request whose path contains
    /// `path` has been answered: the server stopped mid-build.
    pub fn go_down_after(&self, method: &str, path: &str) {
        self.rules.lock().unwrap().down_after = Some((method.to_owned(), path.to_owned()));
    }

    /// Back to passing every request on.
    pub fn heal(&self) {
        *self.rules.lock().unwrap() = Rules::default();
        self.down.store(false, Ordering::SeqCst);
    }
}

fn serve(mut client: TcpStream, upstream: u16, rules: &Mutex<Rules>, down: &AtomicBool, faults: &AtomicUsize) {
    if down.load(Ordering::SeqCst) {
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let Some(request) = read_request(&mut client) else {
        return;
    };
    let head = String::from_utf8_lossy(&request[..request.len().min(2048)]).into_owned();
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let fault = {
        let mut rules = rules.lock().unwrap();
        let mut chosen = None;
        for (m, p, fault) in rules.faults.iter_mut() {
            if m == method && path.contains(p.as_str()) {
                match fault {
                    Fault::Unavailable(0) => continue,
                    Fault::Unavailable(n) => {
                        *n -= 1;
                        chosen = Some(Fault::Unavailable(1));
                    }
                    Fault::Hang => chosen = Some(Fault::Hang),
                }
                break;
            }
        }
        chosen
    };
    match fault {
        Some(Fault::Unavailable(_)) => {
            faults.fetch_add(1, Ordering::SeqCst);
            let _ = client.write_all(b"HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        }
        Some(Fault::Hang) => {
            faults.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(120));
            return;
        }
        None => {}
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    if server.write_all(&request).is_err() {
        return;
    }
    let mut answer = Vec::new();
    let _ = server.read_to_end(&mut answer);
    let _ = client.write_all(&answer);
    let stop = rules
        .lock()
        .unwrap()
        .down_after
        .as_ref()
        .is_some_and(|(m, p)| m == method && path.contains(p.as_str()));
    if stop {
        down.store(true, Ordering::SeqCst);
    }
}

/// One HTTP request, head and body (sized by `Content-Length`).
fn read_request(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = client.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    assert!(
        !head.contains("transfer-encoding: chunked"),
        "the fault proxy reads sized bodies only"
    );
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    while buf.len() < head_end + length {
        let n = client.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf)
}
