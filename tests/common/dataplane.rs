//! The data plane, for real: atmoz's image (built by `scripts/atmoz-image.sh` as its Dockerfile
//! does), a task run as ECS runs it, OpenSSH's `sftp` as the user's client.
//!
//! [`Task::start`] plays ECS for one task of a rendered [`Desired`]: the container definition's
//! `environment`, its `secrets` resolved from a host-key secret's JSON, `entryPoint` + `command`,
//! and `/home` bind-mounted from a directory of the test's — in a network namespace of its own
//! (loopback only), a private mount and pid namespace, and a `chroot` into an overlay of the image,
//! so every task starts from the pristine image. Everything goes away when the [`Task`] is
//! dropped, also when a test fails.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sftp_operator::render::Desired;

/// The environment Docker gives a container before the task definition's own.
const CONTAINER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// sshd is listening (`sshd -D -e` writes this to its log).
const SSHD_READY: &str = "Server listening on 0.0.0.0 port 22";
const NETNS_PREFIX: &str = "sftp-dp-";

/// The image's root directory, or `None` (with a loud message) where this machine cannot run
/// tasks; in CI that is a failure.
pub fn image() -> Option<&'static Path> {
    static IMAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = IMAGE.get_or_init(|| {
        prerequisites()?;
        sweep_stale_namespaces();
        let out = Command::new(super::root().join("scripts/atmoz-image.sh"))
            .output()
            .map_err(|e| format!("scripts/atmoz-image.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!("scripts/atmoz-image.sh failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    });
    match built {
        Ok(root) => Some(root.as_path()),
        Err(why) if std::env::var_os("CI").is_some() => panic!("the data-plane harness cannot run in CI: {why}"),
        Err(why) => {
            eprintln!("\n!!!!! SKIPPED: the data-plane harness cannot run here: {why} !!!!!\n");
            None
        }
    }
}

fn prerequisites() -> Result<(), String> {
    let uid = Command::new("id").arg("-u").output().map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("needs root (network, mount and pid namespaces, chroot)".into());
    }
    for tool in ["ip", "unshare", "chroot", "sftp", "ssh-keygen", "sshpass", "busybox", "setpriv", "debootstrap"] {
        let found =
            Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().map_err(|e| e.to_string())?;
        if !found.status.success() {
            return Err(format!(
                "`{tool}` is missing (apt-get install debootstrap openssh-client sshpass busybox iproute2 util-linux)"
            ));
        }
    }
    let probe = format!("{NETNS_PREFIX}probe-{}", std::process::id());
    let ok = Command::new("ip").args(["netns", "add", &probe]).status().map_err(|e| e.to_string())?.success();
    let _ = Command::new("ip").args(["netns", "delete", &probe]).status();
    if !ok {
        return Err("`ip netns add` fails: network namespaces are not available".into());
    }
    Ok(())
}

/// Namespaces left by a test process that was killed before its drops ran.
fn sweep_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name.strip_prefix(NETNS_PREFIX).and_then(|r| r.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "delete", name]).status();
        }
    }
}

/// How a task differs from the image as published, for a test's purposes.
#[derive(Default)]
pub struct Options {
    /// `/bin/sh` is busybox, as on the default `atmoz/sftp:alpine` image.
    pub busybox_sh: bool,
    /// Files put into the task's root before it starts: (path, content, mode).
    pub files: Vec<(String, String, u32)>,
}

/// One running task: its namespaces, its process tree and its log.
pub struct Task {
    netns: String,
    child: Child,
    log: Arc<(Mutex<Log>, Condvar)>,
    dir: tempfile::TempDir,
}

#[derive(Default)]
struct Log {
    lines: Vec<String>,
    ended: bool,
}

impl Task {
    /// Starts the task ECS would start for `desired` and waits until sshd listens.
    /// `secret_json` is the host-key secret's value; `home` backs the `/home` volume, if any.
    pub fn start(image: &Path, desired: &Desired, secret_json: &str, home: Option<&Path>, options: Options) -> Task {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let netns = format!("{NETNS_PREFIX}{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let dir = tempfile::tempdir().unwrap();
        for d in ["upper", "work", "root"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let container = &desired.task_definition.container_definitions[0];
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), CONTAINER_PATH.into()),
            ("HOME".into(), "/root".into()),
            ("HOSTNAME".into(), netns.clone()),
        ];
        env.extend(container.environment.iter().map(|e| (e.name.clone(), e.value.clone())));
        env.extend(container.secrets.iter().map(|s| (s.name.clone(), resolve_secret(&s.value_from, secret_json))));
        let volume_path = container.mount_points.first().map(|m| m.container_path.clone());
        assert!(
            volume_path.is_none() || home.is_some(),
            "the task definition mounts a volume on {volume_path:?}: give a directory for it"
        );
        for (path, content, mode) in &options.files {
            let target = dir.path().join("upper").join(path.trim_start_matches('/'));
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(&target, content).unwrap();
            std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(*mode)).unwrap();
        }
        let setup = setup_script(options.busybox_sh);

        assert!(Command::new("ip").args(["netns", "add", &netns]).status().unwrap().success());
        assert!(Command::new("ip").args(["-n", &netns, "link", "set", "lo", "up"]).status().unwrap().success());
        let (reader, writer) = std::io::pipe().unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &netns, "unshare", "--mount", "--pid", "--fork", "--kill-child"])
            .args(["--propagation", "private", "--", "/bin/sh", "-c", &setup, "setup"])
            .arg(image)
            .arg(dir.path())
            .arg(home.map(Path::to_path_buf).unwrap_or_default())
            .arg(volume_path.unwrap_or_default())
            .args(&container.entry_point)
            .args(&container.command)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(writer.try_clone().unwrap())
            .stderr(writer);
        let child = cmd.spawn().unwrap();
        drop(cmd); // closes our copies of the pipe's write end
        let log = Arc::new((Mutex::new(Log::default()), Condvar::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                sink.0.lock().unwrap().lines.push(line);
                sink.1.notify_all();
            }
            sink.0.lock().unwrap().ended = true;
            sink.1.notify_all();
        });
        let task = Task { netns, child, log, dir };
        assert!(task.wait_for_log(SSHD_READY), "sshd did not start; task log:\n{}", task.log());
        task
    }

    /// Everything the task wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        self.log.0.lock().unwrap().lines.join("\n")
    }

    /// Waits until a log line contains `needle`; false when the task ended or a minute passed.
    pub fn wait_for_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut log = self.log.0.lock().unwrap();
        loop {
            if log.lines.iter().any(|l| l.contains(needle)) {
                return true;
            }
            let now = Instant::now();
            if log.ended || now >= deadline {
                return false;
            }
            log = self.log.1.wait_timeout(log, deadline - now).unwrap().0;
        }
    }

    /// A command run on the test host inside the task's network namespace (its loopback).
    pub fn in_netns(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns, program]);
        c
    }

    /// Plays Docker's port publishing the way its userland proxy does: a listener on the test
    /// host's loopback whose connections are forwarded to the task's port 22, connected from a
    /// thread inside the task's network namespace. Returns `127.0.0.1:PORT`. The host's routes
    /// and interfaces are left alone; the threads end with the test process.
    pub fn publish(&self) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let netns = std::fs::File::open(format!("/run/netns/{}", self.netns)).unwrap();
        let (accepted, to_connect) = std::sync::mpsc::channel::<std::net::TcpStream>();
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: setns on this thread only; the fd is open for the call.
            let entered = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
            for client in to_connect {
                // A failed connection closes the client's: it sees what a stopped container gives.
                let Ok(upstream) = std::net::TcpStream::connect("127.0.0.1:22") else { continue };
                splice(client, upstream);
            }
        });
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if accepted.send(client).is_err() {
                    return;
                }
            }
        });
        addr
    }

    /// A path inside the task's root filesystem, as the test host sees it (the overlay's upper
    /// layer holds what the task changed).
    pub fn changed_file(&self, path: &str) -> PathBuf {
        self.dir.path().join("upper").join(path.trim_start_matches('/'))
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // unshare's child is pid 1 of the task's pid namespace: killing it ends the whole tree,
        // and with the last process the mount namespace and its overlay go.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("ip").args(["netns", "delete", &self.netns]).status();
    }
}

/// Copies both ways between two connections until either side closes.
fn splice(a: std::net::TcpStream, b: std::net::TcpStream) {
    let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let pump = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        })
    };
    pump(a, b2);
    pump(b, a2);
}

/// `arn:…:secret:NAME:json-key:version-stage:version-id` → that key of the secret's JSON.
fn resolve_secret(value_from: &str, secret_json: &str) -> String {
    let json_key = value_from.split(':').nth(7).expect("valueFrom names a JSON key");
    let v: serde_json::Value = serde_json::from_str(secret_json).unwrap();
    v[json_key].as_str().unwrap_or_else(|| panic!("the secret has no `{json_key}`")).to_owned()
}

/// Runs in the task's fresh namespaces as `setup IMAGE DIR HOME VOLUME_PATH ENTRYPOINT...`:
/// mounts the overlay root, the volume, `/proc` and a minimal `/dev`, then `exec chroot`s.
fn setup_script(busybox_sh: bool) -> String {
    let mut s = String::from(
        r#"set -eu
image=$1 dir=$2 home=$3 volume=$4
shift 4
r=$dir/root
mount -t overlay overlay -o "lowerdir=$image,upperdir=$dir/upper,workdir=$dir/work" "$r"
if [ -n "$volume" ]; then mkdir -p "$r$volume" && mount --bind "$home" "$r$volume"; fi
mount -t proc proc "$r/proc"
mount -t tmpfs -o mode=755 tmpfs "$r/dev"
for d in null zero full random urandom tty; do touch "$r/dev/$d" && mount --bind "/dev/$d" "$r/dev/$d"; done
"#,
    );
    if busybox_sh {
        s.push_str("cp /usr/bin/busybox \"$r/usr/bin/busybox\" && ln -sf busybox \"$r/usr/bin/sh\"\n");
    }
    s.push_str("exec chroot \"$r\" \"$@\"\n");
    s
}

/// How a client authenticates.
pub enum Auth<'a> {
    /// Public key only (`BatchMode`, no password or keyboard-interactive).
    Key(&'a Path),
    /// Password only, typed by `sshpass`.
    Password(&'a str),
}

/// The outcome of one `sftp` session.
pub struct Session {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Task {
    /// Logs in as `user` with OpenSSH's `sftp` and runs `commands` (one per line; a line starting
    /// with `-` may fail). The host key is checked strictly against `known_hosts` under the name
    /// `host_key_alias` (the way `status` prints it); `None` accepts any host key.
    pub fn sftp(&self, user: &str, auth: Auth<'_>, known_hosts: Option<(&Path, &str)>, commands: &str) -> Session {
        self.sftp_from("127.0.0.1", user, auth, known_hosts, commands)
    }

    /// [`Task::sftp`] from `source`, another loopback address of the task's namespace (the whole
    /// of 127.0.0.0/8 is local there): a client on another network, as sshd sees it.
    pub fn sftp_from(
        &self,
        source: &str,
        user: &str,
        auth: Auth<'_>,
        known_hosts: Option<(&Path, &str)>,
        commands: &str,
    ) -> Session {
        let mut args: Vec<String> = vec!["-F".into(), "/dev/null".into()];
        let mut o = |kv: &str| args.extend(["-o".to_owned(), kv.to_owned()]);
        o("ConnectTimeout=20");
        o(&format!("BindAddress={source}"));
        o("GlobalKnownHostsFile=/dev/null");
        match known_hosts {
            Some((file, alias)) => {
                o("StrictHostKeyChecking=yes");
                o(&format!("UserKnownHostsFile={}", file.display()));
                o(&format!("HostKeyAlias={alias}"));
                o("CheckHostIP=no");
            }
            None => {
                o("StrictHostKeyChecking=no");
                o("UserKnownHostsFile=/dev/null");
            }
        }
        let program = match auth {
            Auth::Key(key) => {
                o("BatchMode=yes");
                o("PasswordAuthentication=no");
                o("KbdInteractiveAuthentication=no");
                o("IdentitiesOnly=yes");
                o(&format!("IdentityFile={}", key.display()));
                "sftp"
            }
            Auth::Password(_) => {
                // Before `-b`, which would otherwise turn BatchMode on (the first value wins).
                o("BatchMode=no");
                o("PubkeyAuthentication=no");
                o("PreferredAuthentications=password");
                o("NumberOfPasswordPrompts=1");
                "sshpass"
            }
        };
        let mut cmd = self.in_netns(program);
        if let Auth::Password(p) = auth {
            cmd.env("SSHPASS", p).args(["-e", "sftp"]);
        }
        cmd.args(&args).args(["-b", "-", "-P", "22", &format!("{user}@127.0.0.1")]);
        let out = run_with_stdin(cmd, commands);
        Session {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn run_with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// A fresh key pair made by `ssh-keygen` in `dir`: (private key path, public key line).
pub fn keypair(dir: &Path, name: &str, kind: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-N", "", "-C", &format!("{name}@test"), "-t", kind, "-f"]).arg(&path);
    if kind == "rsa" {
        cmd.args(["-b", "3072"]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = std::fs::read_to_string(format!("{}.pub", path.display())).unwrap().trim().to_owned();
    (path, public)
}
