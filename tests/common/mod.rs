//! Test harness: a moto server per test on a free 127.0.0.1 port (stopped on drop), the
//! sandbox world seeded by `scripts/sandbox.py` (boto3: an independent client playing the
//! parts of AWS the operator never creates), and a recording proxy that logs every AWS
//! operation the operator sends — independent of the operator's own call counter.
#![allow(dead_code)]

pub mod dataplane;

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use regex::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn venv_bin(name: &str) -> PathBuf {
    let p = root().join(".venv/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run `scripts/venv.sh` (creates .venv with moto[server] and awscli) before the integration tests",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Moto {
    child: Child,
    pub url: String,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let mut child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start moto_server");
        let url = format!("http://127.0.0.1:{port}");
        // Readiness: werkzeug announces "Running on" once it listens; no polling, no sleeps.
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
        let mut seen = Vec::new();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("Running on") => break,
                Some(Ok(l)) => seen.push(l),
                _ => panic!("moto_server exited before listening: {}", seen.join("\n")),
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let moto = Moto { child, url };
        // ECS tasks would otherwise decay one state per describe call (see shared/MOTO.md).
        let status = Command::new(venv_bin("python"))
            .args(["-c", &format!(
                "import urllib.request,json; urllib.request.urlopen(urllib.request.Request('{}/moto-api/state-manager/set-transition', data=json.dumps({{'model_name':'ecs::task','transition':{{'progression':'manual','times':1000000}}}}).encode(), method='POST'))",
                moto.url
            )])
            .status()
            .unwrap();
        assert!(status.success());
        moto
    }

    /// Seeds the sandbox world and returns its ids.
    pub fn seed(&self) -> serde_json::Value {
        let out = Command::new(venv_bin("python"))
            .arg(root().join("scripts/sandbox.py"))
            .arg(&self.url)
            .envs(aws_env())
            .output()
            .unwrap();
        assert!(out.status.success(), "seeding failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn aws_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

/// A TCP proxy in front of moto that records every operation passing through it, read from
/// the request bytes (`X-Amz-Target: Service.Op` for JSON APIs, `Action=Op` for query APIs).
pub struct Proxy {
    pub url: String,
    ops: Arc<Mutex<Vec<String>>>,
    rt: tokio::runtime::Runtime,
}

impl Proxy {
    /// Its own runtime, a listener on a free loopback port, that port's URL and `upstream`'s
    /// `host:port`.
    fn listen(upstream: &str) -> (tokio::runtime::Runtime, tokio::net::TcpListener, String, String) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        (rt, listener, url, upstream.trim_start_matches("http://").to_owned())
    }

    pub fn start(upstream: &str) -> Proxy {
        let (rt, listener, url, upstream) = Proxy::listen(upstream);
        let ops = Arc::new(Mutex::new(Vec::new()));
        let rec = ops.clone();
        rt.spawn(async move {
            let re = operation_regex();
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                let upstream = upstream.clone();
                let rec = rec.clone();
                let re = re.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                    let (mut cr, mut cw) = client.split();
                    let (mut sr, mut sw) = server.split();
                    let up = async {
                        let mut buf = vec![0u8; 65536];
                        let mut pending = String::new();
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            pending.push_str(&String::from_utf8_lossy(&buf[..n]));
                            let mut last = 0;
                            for c in re.captures_iter(&pending) {
                                rec.lock().unwrap().push(operation(&c));
                                last = c.get(0).unwrap().end();
                            }
                            let keep = pending.len().saturating_sub(256).max(last);
                            let keep =
                                (keep..=pending.len()).find(|i| pending.is_char_boundary(*i)).unwrap_or(pending.len());
                            pending.drain(..keep);
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = sw.shutdown().await;
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                        let _ = cw.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Proxy { url, ops, rt }
    }

    /// Like [`Proxy::start`], but HTTP/1.1-aware: each request and response is read whole (head,
    /// then a Content-Length or chunked body), and every JSON response body passes through
    /// `rewrite` with its operation (as recorded: `DescribeServices`) before it goes back, its
    /// framing fixed. Tests play with it what moto cannot (ECS deployments that progress).
    pub fn rewriting(upstream: &str, rewrite: impl Fn(&str, &mut serde_json::Value) + Send + Sync + 'static) -> Proxy {
        let (rt, listener, url, upstream) = Proxy::listen(upstream);
        let ops = Arc::new(Mutex::new(Vec::new()));
        let rec = ops.clone();
        let rewrite: Arc<Rewrite> = Arc::new(rewrite);
        rt.spawn(async move {
            let re = operation_regex();
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let (upstream, rec, re, rewrite) = (upstream.clone(), rec.clone(), re.clone(), rewrite.clone());
                tokio::spawn(async move {
                    let (cr, mut cw) = client.into_split();
                    let mut cr = tokio::io::BufReader::new(cr);
                    while let Some(request) = http::read(&mut cr, false).await {
                        let text = format!("{}{}", request.head, String::from_utf8_lossy(&request.body));
                        let op = re.captures(&text).map(|c| operation(&c));
                        if let Some(op) = &op {
                            rec.lock().unwrap().push(op.clone());
                        }
                        // A connection per request: moto's server closes after each answer anyway.
                        let Some(mut response) = http::exchange(&upstream, &request).await else { return };
                        // moto labels some JSON answers (Secrets Manager's) text/html.
                        let json = http::header(&response.head, "content-type").is_some_and(|t| t.contains("json"))
                            || response.body.first() == Some(&b'{');
                        if let (Some(op), true) = (&op, json)
                            && let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&response.body)
                        {
                            rewrite(op, &mut value);
                            response.body = serde_json::to_vec(&value).unwrap();
                            response.rewritten = true;
                        }
                        if cw.write_all(&response.bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Proxy { url, ops, rt }
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.ops.lock().unwrap())
    }

    pub fn mutating(ops: &[String]) -> Vec<String> {
        ops.iter().filter(|o| sftp_operator::aws::is_mutating(o)).cloned().collect()
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

/// A change to the JSON body of a response, given its operation.
type Rewrite = dyn Fn(&str, &mut serde_json::Value) + Send + Sync;

/// JSON APIs name the operation in a header, query APIs in the body, Route 53 (REST) in the
/// method and path.
fn operation_regex() -> Regex {
    Regex::new(
        r"(?i)x-amz-target:\s*[A-Za-z0-9_.]*\.([A-Za-z]+)|(?:^|\r\n\r\n|&)Action=([A-Za-z]+)|(?:^|\n)(GET|POST) /2013-04-01/hostedzone(/[A-Za-z0-9]+/rrset)?[ ?]",
    )
    .unwrap()
}

/// The operation one match of [`operation_regex`] names.
fn operation(c: &regex::Captures) -> String {
    match (c.get(1).or(c.get(2)), c.get(3).map(|m| m.as_str()), c.get(4).is_some()) {
        (Some(m), _, _) => m.as_str().to_owned(),
        (None, Some("POST"), true) => "ChangeResourceRecordSets".to_owned(),
        (None, Some("POST"), false) => "CreateHostedZone".to_owned(),
        (None, _, true) => "ListResourceRecordSets".to_owned(),
        (None, _, false) => "ListHostedZones".to_owned(),
    }
}

/// Just enough HTTP/1.1 for [`Proxy::rewriting`]: one message at a time, read whole.
mod http {
    use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

    pub struct Message {
        /// Start line and headers, up to and including the blank line.
        pub head: String,
        /// The body, de-chunked.
        pub body: Vec<u8>,
        /// The body changed: checksums of the original (DynamoDB's `x-amz-crc32`) no longer hold.
        pub rewritten: bool,
    }

    impl Message {
        /// Head and body, framed by a Content-Length of the body as it is now.
        pub fn bytes(&self) -> Vec<u8> {
            let mut lines = self.head.trim_end().split("\r\n");
            let mut head = lines.next().unwrap_or_default().to_owned();
            for line in lines {
                let name = line.split(':').next().unwrap_or_default().trim().to_ascii_lowercase();
                // Framing is rewritten below; a checksum of the original body would no longer hold.
                let dropped = name == "content-length"
                    || name == "transfer-encoding"
                    || (self.rewritten && name == "x-amz-crc32");
                if !dropped {
                    head.push_str("\r\n");
                    head.push_str(line);
                }
            }
            let mut out = format!("{head}\r\nContent-Length: {}\r\n\r\n", self.body.len()).into_bytes();
            out.extend_from_slice(&self.body);
            out
        }
    }

    pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// One message; `None` at the end of the stream. A response without a length runs to the
    /// end of the stream (`to_eof`); a request without one has no body.
    pub async fn read<R: AsyncBufRead + Unpin>(r: &mut R, to_eof: bool) -> Option<Message> {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            if r.read_until(b'\n', &mut head).await.ok()? == 0 {
                return None;
            }
        }
        let head = String::from_utf8(head).ok()?;
        let status = head.split(' ').nth(1).unwrap_or_default();
        let bodiless = to_eof && (status.starts_with('1') || status == "204" || status == "304");
        let chunked = header(&head, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let mut body = Vec::new();
        if bodiless {
            return Some(Message { head, body, rewritten: false });
        }
        if chunked {
            loop {
                let mut line = String::new();
                r.read_line(&mut line).await.ok()?;
                let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
                if size == 0 {
                    // Trailers, up to the blank line.
                    while !matches!(line.as_str(), "\r\n" | "") {
                        line.clear();
                        r.read_line(&mut line).await.ok()?;
                    }
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                r.read_exact(&mut body[start..]).await.ok()?;
                r.read_line(&mut line).await.ok()?;
            }
        } else if let Some(n) = header(&head, "content-length") {
            body.resize(n.parse().ok()?, 0);
            r.read_exact(&mut body).await.ok()?;
        } else if to_eof {
            r.read_to_end(&mut body).await.ok()?;
        }
        Some(Message { head, body, rewritten: false })
    }

    /// Sends `request` to `upstream` on a connection of its own; the response.
    pub async fn exchange(upstream: &str, request: &Message) -> Option<Message> {
        let server = tokio::net::TcpStream::connect(upstream).await.ok()?;
        let (sr, mut sw) = server.into_split();
        sw.write_all(&request.bytes()).await.ok()?;
        read(&mut tokio::io::BufReader::new(sr), true).await
    }
}

/// The example manifests rewritten to the sandbox's ids, in a fresh directory.
pub fn examples_for(world: &serde_json::Value, dir: &Path) {
    for entry in std::fs::read_dir(root().join("manifests/examples")).unwrap() {
        let p = entry.unwrap().path();
        let text = adapt(&std::fs::read_to_string(&p).unwrap(), world);
        std::fs::write(dir.join(p.file_name().unwrap()), text).unwrap();
    }
}

pub fn adapt(text: &str, world: &serde_json::Value) -> String {
    text.replace(
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/sftp/0123456789abcdef",
        world["loadBalancerArn"].as_str().unwrap(),
    )
    .replace("sg-0123456789abcdef0", world["securityGroup"].as_str().unwrap())
    // The sandbox has a public and a private example.edu: name the public one by id.
    .replace("zone: example.edu.", &format!("zone: {}", world["publicZone"].as_str().unwrap()))
}

/// Runs the operator binary against `endpoint`; returns (exit code, stdout, stderr).
pub fn operator(endpoint: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sftp-operator"))
        .args(args)
        .envs(aws_env())
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// SDK clients pointed at moto directly (not through the proxy), for reading back and for
/// making drift by hand.
pub fn clients(proxy: &Proxy, endpoint: &str) -> sftp_operator::aws::Clients {
    proxy.block_on(async {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_ecs::config::Credentials::new("testing", "testing", None, None, "test"))
            .load()
            .await;
        sftp_operator::aws::Clients::from_sdk_config(&conf)
    })
}

/// The AWS CLI from the project's venv: an independent client for read-back checks.
pub fn aws_cli(endpoint: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(venv_bin("aws"))
        .args(args)
        .args(["--endpoint-url", endpoint, "--output", "json"])
        .envs(aws_env())
        .output()
        .unwrap();
    assert!(out.status.success(), "aws {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A `sftp-operator run` process with its metrics endpoint on a free port; killed on drop,
/// and its log printed when the test failed.
pub struct RunProc {
    pub child: Child,
    pub metrics: String,
    log: tempfile::NamedTempFile,
}

impl RunProc {
    pub fn start(endpoint: &str, args: &[&str]) -> RunProc {
        let port = free_port();
        let metrics = format!("127.0.0.1:{port}");
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sftp-operator"))
            .arg("run")
            .args(args)
            .args(["--metrics-addr", &metrics])
            .envs(aws_env())
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("start sftp-operator run");
        RunProc { child, metrics, log }
    }

    /// GET on the metrics server: (status, body), or None while it is not listening.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.metrics).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let status = out.split_whitespace().nth(1)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        Some((status, body))
    }

    /// The value of one sample line (`name{labels}`) in /metrics.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        body.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for RunProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!("--- last lines of `sftp-operator run` ({}) ---", self.metrics);
            tail.iter().rev().for_each(|l| eprintln!("{l}"));
        }
    }
}

/// Waits for a condition the system under test must reach, polling every 50 ms up to a
/// generous deadline; the deadline only bounds a broken run (on a loaded 2-core CI machine
/// too), it is not what the test asserts.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// One test's AWS: moto seeded with the sandbox, a recording proxy in front of it, and the
/// examples adapted to the sandbox in a fresh directory.
pub struct World {
    pub moto: Moto,
    pub proxy: Proxy,
    pub ids: serde_json::Value,
    pub dir: tempfile::TempDir,
    pub endpoint: String,
}

impl World {
    pub fn new() -> World {
        World::with_proxy(Proxy::start)
    }

    /// A world whose proxy passes every JSON response through `rewrite` ([`Proxy::rewriting`]).
    pub fn rewriting(rewrite: impl Fn(&str, &mut serde_json::Value) + Send + Sync + 'static) -> World {
        World::with_proxy(|url| Proxy::rewriting(url, rewrite))
    }

    fn with_proxy(proxy: impl FnOnce(&str) -> Proxy) -> World {
        let moto = Moto::start();
        let ids = moto.seed();
        let proxy = proxy(&moto.url);
        let dir = tempfile::tempdir().unwrap();
        examples_for(&ids, dir.path());
        World { endpoint: moto.url.clone(), moto, proxy, ids, dir }
    }

    pub fn manifest(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    /// The path of an example, after a converge of it that must succeed.
    pub fn converged(&self, name: &str) -> String {
        let f = self.manifest(name);
        let (code, out, err, _) = self.run(&["converge", "-f", &f]);
        assert_eq!(code, 0, "converge {name}:\n{out}{err}");
        f
    }

    /// Runs the operator through the proxy: (exit, stdout, stderr, operations it sent).
    pub fn run(&self, args: &[&str]) -> (i32, String, String, Vec<String>) {
        self.proxy.take();
        let (code, out, err) = operator(&self.proxy.url, args);
        (code, out, err, self.proxy.take())
    }

    /// Replaces text in a manifest with write-then-rename, as editors and ConfigMaps do.
    pub fn edit(&self, name: &str, from: &str, to: &str) {
        edit_file(&self.dir.path().join(name), from, to);
    }

    pub fn sg(&self) -> String {
        self.ids["securityGroup"].as_str().unwrap().to_owned()
    }

    pub fn zone(&self) -> String {
        self.ids["publicZone"].as_str().unwrap().to_owned()
    }

    /// (container instance ARN, private IP) of sandbox instance `i`.
    pub fn instance(&self, i: usize) -> (String, String) {
        let inst = &self.ids["instances"][i];
        (inst["containerInstanceArn"].as_str().unwrap().to_owned(), inst["privateIp"].as_str().unwrap().to_owned())
    }

    /// Plays the ECS scheduler: a RUNNING task of `service` on container instance `i`.
    pub fn start_task(&self, service: &str, i: usize) -> String {
        let c = clients(&self.proxy, &self.endpoint);
        let (ci, _) = self.instance(i);
        self.proxy.block_on(async {
            let out = c
                .ecs
                .start_task()
                .cluster("sftp")
                .task_definition(format!("sftp-{service}"))
                .container_instances(ci)
                .group(format!("service:{service}"))
                .send()
                .await
                .unwrap();
            out.tasks()[0].task_arn().unwrap().to_owned()
        })
    }

    pub fn stop_task(&self, arn: &str) {
        let c = clients(&self.proxy, &self.endpoint);
        self.proxy.block_on(async {
            c.ecs.stop_task().cluster("sftp").task(arn).send().await.unwrap();
        });
    }

    /// Plays ECS's part in EventBridge: an `ECS Task State Change` for `service`.
    pub fn put_task_event(&self, service: &str, status: &str) {
        let detail = serde_json::json!({
            "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/sftp",
            "group": format!("service:{service}"),
            "lastStatus": status,
        });
        let entries = serde_json::json!([{"Source": "aws.ecs", "DetailType": "ECS Task State Change", "Detail": detail.to_string()}]);
        aws_cli(&self.endpoint, &["events", "put-events", "--entries", &entries.to_string()]);
    }

    /// (type, sorted values, alias target) of the records at `name`, read with the AWS CLI.
    pub fn records(&self, name: &str) -> Vec<(String, Vec<String>, Option<String>)> {
        let out = aws_cli(&self.endpoint, &["route53", "list-resource-record-sets", "--hosted-zone-id", &self.zone()]);
        out["ResourceRecordSets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["Name"] == name)
            .map(|r| {
                let mut values: Vec<String> = r["ResourceRecords"]
                    .as_array()
                    .map(|v| v.iter().map(|x| x["Value"].as_str().unwrap().to_owned()).collect())
                    .unwrap_or_default();
                values.sort();
                (
                    r["Type"].as_str().unwrap().to_owned(),
                    values,
                    r["AliasTarget"]["DNSName"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }

    pub fn a_values(&self, name: &str) -> Vec<String> {
        self.records(name).into_iter().find(|r| r.0 == "A").map(|r| r.1).unwrap_or_default()
    }

    pub fn desired_count(&self, service: &str) -> i64 {
        let s = aws_cli(&self.endpoint, &["ecs", "describe-services", "--cluster", "sftp", "--services", service]);
        s["services"][0]["desiredCount"].as_i64().unwrap_or(-1)
    }

    /// An ingress rule on the instances' group made by hand (someone else, or drift).
    pub fn allow(&self, port: i32, cidr: &str, description: &str) {
        let c = clients(&self.proxy, &self.endpoint);
        self.proxy.block_on(async {
            let range = aws_sdk_ec2::types::IpRange::builder().cidr_ip(cidr).description(description).build();
            let perm = aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(port)
                .to_port(port)
                .ip_ranges(range)
                .build();
            c.ec2.authorize_security_group_ingress().group_id(self.sg()).ip_permissions(perm).send().await.unwrap();
        });
    }

    /// The DynamoDB lease table `run --lease-table` expects (partition key `lease`, type S).
    pub fn create_lease_table(&self, name: &str) {
        aws_cli(
            &self.endpoint,
            &[
                "dynamodb",
                "create-table",
                "--table-name",
                name,
                "--attribute-definitions",
                "AttributeName=lease,AttributeType=S",
                "--key-schema",
                "AttributeName=lease,KeyType=HASH",
                "--billing-mode",
                "PAY_PER_REQUEST",
            ],
        );
    }
}

/// Write-then-rename replacement of `from` by `to` in a file.
pub fn edit_file(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from} not in {}", path.display());
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text.replacen(from, to, 1)).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

/// A real Prometheus server (Debian's package) on loopback, scraping a `run` process every
/// second; stopped on drop. `None` where it is not installed (never in CI).
pub struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn scraping(run: &RunProc) -> Option<Prometheus> {
        let Some(bin) = which("prometheus") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "prometheus is missing: .ci/run installs Debian's prometheus package"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: sftp-operator\n    static_configs: [{{targets: ['{}']}}]\n",
                run.metrics
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Some(Prometheus { child, port, _dir: dir })
    }

    /// An instant query's JSON answer (`None` while the server is not up yet).
    pub fn query(&self, q: &str) -> Option<serde_json::Value> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let q: String = q
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"_.-".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        write!(s, "GET /api/v1/query?query={q} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        serde_json::from_str(out.split_once("\r\n\r\n")?.1).ok()
    }

    /// The first sample's value of an instant query.
    pub fn value(&self, q: &str) -> Option<f64> {
        self.query(q)?["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
}
