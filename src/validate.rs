//! Validate: [`LoadedManifest`]s → [`Service`]s ([`crate::model`]), the normalised, checked form
//! every later stage uses. Pure; collects every problem instead of stopping at the first.
//!
//! ```text
//! LoadedManifest ──per-document rules──▶ Service ──cross-document rules──▶ Vec<Service>
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::LazyLock;

use ipnet::IpNet;
use regex::Regex;
use serde::Serialize;

use crate::diagnostic::{Diagnostic, Diagnostics, Pos, quote};
use crate::load::{self, LoadError, LoadedManifest, Origin, PathIndex, SourceFile};
pub use crate::model::{
    AuthMethods, AwsLogs, Dns, HostKeySource, PROBE_USER, PasswordHash, Probe, Security, Service, Storage, User,
};
use crate::names::{self, Names, normalize_dns_name};
use crate::spec::{self, Manifest};
use crate::sshkeys::{self, ParsedKey};

static DNS_LABEL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$").unwrap());
static ATMOZ_USER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z0-9._][A-Za-z0-9._-]{0,31}$").unwrap());
static CRYPT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\$(1|5|6|y|2b|2y|2a)\$[./A-Za-z0-9$=,]+$").unwrap());
static SG_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^sg-[0-9a-f]{8}([0-9a-f]{9})?$").unwrap());
static FS_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^fs-[0-9a-f]{8}([0-9a-f]{9})?$").unwrap());
static FSAP_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^fsap-[0-9a-f]{8}([0-9a-f]{9})?$").unwrap());
static LB_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:loadbalancer/(net|app|gwy)/[A-Za-z0-9-]{1,32}/[0-9a-f]+$")
        .unwrap()
});
static ROLE_ARN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$").unwrap());
static SECRET_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$").unwrap()
});
static CLUSTER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:cluster/)?([A-Za-z0-9_-]{1,255})$").unwrap());
static ZONE_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(/hostedzone/)?([A-Z0-9]{10,32})$").unwrap());
static NAMESPACE_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^ns-[a-z0-9]{16,32}$").unwrap());
static REGION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$").unwrap());
static BUCKET: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$").unwrap());
/// The characters AWS accepts in tag keys and values (ECS, ELB, Cloud Map, Secrets Manager).
static TAG_TEXT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$").unwrap());
static DIRECTORY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$").unwrap());

/// The largest uid/gid Linux tools accept (they are signed 32-bit in the image's shadow tools).
const MAX_ID: u32 = i32::MAX as u32;
/// Below this a gid is a system group (`root`, `shadow`, `disk`, ...) in Debian and Alpine.
const MIN_GID: u32 = 100;
/// atmoz's `create-sftp-user` accepts `[^:]{0,255}` as the password field.
const MAX_PASSWORD_HASH: usize = 255;
/// AWS's limit on tags per resource (ECS, ELB, Cloud Map, Secrets Manager, EC2).
const MAX_TAGS: usize = 50;
/// ECS refuses a task definition whose JSON is larger than this (RegisterTaskDefinition).
pub const MAX_TASK_DEFINITION_BYTES: usize = 64 * 1024;

/// Accounts the atmoz images already have (Debian bookworm with openssh-server, and Alpine's
/// baselayout with openssh): atmoz skips an existing user ("already exists"), so a manifest user
/// of that name would log in as the system account, with its home and uid.
/// `tests/dataplane.rs` checks this list against the built image's `/etc/passwd`.
pub const IMAGE_ACCOUNTS: &[&str] = &[
    "_apt",
    "adm",
    "at",
    "backup",
    "bin",
    "cron",
    "cyrus",
    "daemon",
    "ftp",
    "games",
    "gnats",
    "guest",
    "halt",
    "irc",
    "list",
    "lp",
    "mail",
    "man",
    "messagebus",
    "news",
    "nobody",
    "ntp",
    "operator",
    "postmaster",
    "proxy",
    "root",
    "shutdown",
    "smmsp",
    "squid",
    "sshd",
    "sync",
    "sys",
    "systemd-network",
    "systemd-resolve",
    "systemd-timesync",
    "uucp",
    "vpopmail",
    "www-data",
    "xfs",
];

/// Host directories that `hostPath` may not be, be inside, or contain: atmoz and the prelude run
/// `chown root`, `chmod 755` and write as root under `hostPath/<user>`, so these would hand the
/// container instance's own files (admin homes, `/etc`, the ECS agent's state) to the container.
pub const HOST_SYSTEM_DIRS: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/lost+found",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/snap",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
];

fn check_user_name(c: &mut Checker<'_>, path: &str, name: &str) {
    if !ATMOZ_USER.is_match(name) {
        c.hint(
            path,
            format!("`{}` is not a valid user name", quote(name)),
            "atmoz accepts [A-Za-z0-9._][A-Za-z0-9._-]{0,31}",
        );
    } else if name.starts_with('.') {
        c.hint(
            path,
            format!("`{name}` starts with '.'"),
            "`.` and `..` would make the chroot `/home` or `/`; start with a letter, digit or '_'",
        );
    } else if name.bytes().all(|b| b.is_ascii_digit()) {
        c.hint(path, format!("`{name}` is all digits"), "tools read an all-digit name as a uid; add a letter");
    } else if IMAGE_ACCOUNTS.contains(&name) {
        c.hint(
            path,
            format!("`{name}` is an account the image already has"),
            "atmoz would skip creating it and the login would be the system account's; choose another name",
        );
    }
}

fn check_host_path(c: &mut Checker<'_>, path: &str) {
    const FIELD: &str = "spec.storage.hostPath";
    if path == "/" {
        c.hint(FIELD, "`/` is the container instance's root directory", "use a dedicated directory, e.g. /srv/sftp");
        return;
    }
    let parts: Vec<&str> = path.strip_prefix('/').map(|p| p.split('/').collect()).unwrap_or_default();
    let well_formed = !parts.is_empty()
        && path.len() <= 255
        && parts.iter().all(|p| !p.is_empty() && *p != "." && *p != ".." && DIRECTORY.is_match(p));
    if !well_formed {
        c.hint(
            FIELD,
            format!("`{}` is not a normalised absolute path", quote(path)),
            "like /srv/sftp: '/'-separated letters, digits, '.', '_', '-', without '.', '..', '//' or a trailing '/'",
        );
        return;
    }
    let inside = |p: &str, dir: &str| p.starts_with(&format!("{dir}/"));
    let relation = |dir: &str| {
        if path == dir {
            Some("is")
        } else if inside(path, dir) {
            Some("lies inside")
        } else {
            inside(dir, path).then_some("holds")
        }
    };
    if let Some((dir, how)) = HOST_SYSTEM_DIRS.iter().find_map(|d| relation(d).map(|how| (d, how))) {
        c.hint(
            FIELD,
            format!("`{path}` {how} the container instance's system directory `{dir}`"),
            "use a dedicated directory outside /bin /boot /dev /etc /home /lib* /proc /root /run /sbin /snap /sys /tmp /usr /var, e.g. /srv/sftp or /mnt/efs/sftp",
        );
    } else if parts.len() < 2 {
        c.hint(
            FIELD,
            format!("`{path}` is a top-level directory"),
            "use a dedicated directory at least two levels deep (e.g. /srv/sftp): each user's home is created inside it",
        );
    }
}

/// Collects the problems of one document, each located through the document's [`PathIndex`].
struct Checker<'a> {
    file: &'a PathBuf,
    index: &'a PathIndex,
    out: &'a mut Diagnostics,
}

impl Checker<'_> {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.out.push(Diagnostic::new(self.file, self.index.locate(path), path, message));
    }

    fn hint(&mut self, path: &str, message: impl Into<String>, hint: impl Into<String>) {
        self.out.push(Diagnostic::new(self.file, self.index.locate(path), path, message).with_hint(hint));
    }

    fn range(&mut self, path: &str, v: u32, lo: u32, hi: u32, why: &str) {
        if v < lo || v > hi {
            self.hint(path, format!("{v} is out of range {lo}–{hi}"), why);
        }
    }

    fn pattern(&mut self, path: &str, v: &str, re: &Regex, what: &str) -> bool {
        let ok = re.is_match(v);
        if !ok {
            self.err(path, format!("`{}` is not {what}", quote(v)));
        }
        ok
    }
}

fn valid_dns_name(name: &str) -> bool {
    let n = name.trim_end_matches('.');
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').enumerate().all(|(i, l)| {
            (i == 0 && l == "*") || (!l.is_empty() && l.len() <= 63 && DNS_LABEL.is_match(&l.to_ascii_lowercase()))
        })
}

/// A zone given by id passes through; a zone name is normalised.
fn zone_ref(zone: &str) -> String {
    match ZONE_ID.captures(zone) {
        Some(c) => c[2].to_owned(),
        None => normalize_dns_name(zone),
    }
}

/// Whether `record` lies in `zone` (a name, normalised); ids cannot be checked offline.
fn in_zone(record: &str, zone: &str) -> bool {
    record == zone || record.ends_with(&format!(".{zone}"))
}

pub fn validate(docs: &[LoadedManifest]) -> Result<Vec<Service>, Diagnostics> {
    let mut out = Diagnostics::default();
    let placed = docs.iter().filter_map(|doc| check_one(doc, &mut out)).collect();
    finish(placed, out)
}

/// Loads and validates in one pass, a document at a time: each document's parse tree and index
/// are dropped once it is checked, so memory holds the services and not every manifest twice.
/// Problems in loading and in validation come back together.
pub fn load_and_validate(sources: &[SourceFile]) -> Result<Vec<Service>, LoadError> {
    let mut out = Diagnostics::default();
    let mut placed = Vec::new();
    if let Err(e) = load::for_each_document(sources, |doc| placed.extend(check_one(&doc, &mut out))) {
        match e {
            LoadError::Invalid(d) => d.0.into_iter().for_each(|x| out.push(x)),
            other => return Err(other),
        }
    }
    finish(placed, out).map_err(LoadError::Invalid)
}

/// A valid service with where its cross-checked fields are ([`CROSS_FIELDS`]), so the checks
/// across documents can point at both sides without keeping the documents.
struct Placed {
    service: Service,
    positions: [Pos; CROSS_FIELDS.len()],
}

fn check_one(doc: &LoadedManifest, out: &mut Diagnostics) -> Option<Placed> {
    let mut c = Checker { file: &doc.origin.file, index: &doc.index, out };
    let service = check_document(&mut c, &doc.origin, &doc.manifest)?;
    Some(Placed { service, positions: CROSS_FIELDS.map(|(path, ..)| doc.index.locate(path)) })
}

fn finish(placed: Vec<Placed>, mut out: Diagnostics) -> Result<Vec<Service>, Diagnostics> {
    check_across(&placed, &mut out);
    if out.is_empty() { Ok(placed.into_iter().map(|p| p.service).collect()) } else { Err(out.sorted()) }
}

fn check_document(c: &mut Checker<'_>, origin: &Origin, m: &Manifest) -> Option<Service> {
    let before = c.out.len();
    check_metadata(c, m);
    let s = &m.spec;
    let cluster = check_workload(c, s);
    let users = check_users(c, &s.users);
    let storage = check_storage(c, s);
    let task_role_arn = check_roles(c, s);
    let (host_keys, host_public_keys) = check_host_keys(c, &s.host_keys);
    check_load_balancer(c, &s.load_balancer);
    let allowed_cidrs = check_access(c, &s.access);
    let namespace = s.discovery.as_ref().map(|d| check_discovery(c, d));
    let dns = s.dns.as_ref().map(|d| check_dns(c, d));
    if let Some(d) = &dns {
        check_sshfp(c, d, &host_keys, &host_public_keys);
    }
    let awslogs = s.logging.awslogs.as_ref().map(|l| check_awslogs(c, l));
    let names = check_names(c, &m.metadata.name, s.names.as_ref());
    let probe = s.probe.as_ref().filter(|p| p.enabled).map(|p| check_probe(c, &m.metadata.name, p, s));
    let mut users = users;
    check_user_cidrs(c, &s.users, &allowed_cidrs, &mut users);
    let security = check_security(c, &s.security, &s.users);

    if c.out.len() > before {
        return None;
    }
    let name = &m.metadata.name;
    let lb = &s.load_balancer;
    let service = Service {
        name: name.clone(),
        origin: origin.clone(),
        names,
        labels: m.metadata.labels.clone(),
        cluster,
        image: s.image.clone(),
        desired_count: s.desired_count,
        port: s.port as u16,
        cpu: s.cpu,
        memory: s.memory,
        users,
        storage: storage?,
        host_keys,
        host_public_keys,
        execution_role_arn: s.execution_role_arn.clone(),
        task_role_arn,
        load_balancer_arn: lb.arn.clone(),
        listener_port: lb.listener_port as u16,
        idle_timeout: lb.idle_timeout,
        security_group_id: s.access.security_group_id.clone(),
        allowed_cidrs,
        namespace,
        dns,
        audit_log: s.logging.audit,
        awslogs,
        probe,
        security,
    };
    check_task_definition_size(c, &service).then_some(service)
}

/// `apiVersion`, `kind`, the name, the labels, and no key material outside the key fields.
fn check_metadata(c: &mut Checker<'_>, m: &Manifest) {
    if m.api_version != spec::API_VERSION {
        c.hint(
            "apiVersion",
            format!("unsupported apiVersion `{}`", quote(&m.api_version)),
            format!("use `{}`", spec::API_VERSION),
        );
    }
    if m.kind != spec::KIND {
        c.hint("kind", format!("unsupported kind `{}`", quote(&m.kind)), format!("use `{}`", spec::KIND));
    }
    let name = &m.metadata.name;
    if !DNS_LABEL.is_match(name) || name.len() > names::MAX_NAME_LEN {
        c.hint(
            "metadata.name",
            format!("`{}` is not a DNS label of at most {} characters", quote(name), names::MAX_NAME_LEN),
            "lower-case letters, digits and '-', starting and ending with a letter or digit",
        );
    }
    check_labels(c, &m.metadata.labels);
    check_no_key_material(c, m);
}

/// The derived names, with `spec.names` for existing resources checked against AWS's naming rules.
fn check_names(c: &mut Checker<'_>, name: &str, given: Option<&spec::NameOverrides>) -> Names {
    let mut names = Names::derive(name);
    let Some(given) = given else { return names };
    let ecs = |n: &str| {
        !n.is_empty() && n.len() <= 255 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let tg = |n: &str| {
        !n.is_empty()
            && n.len() <= 32
            && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !n.starts_with('-')
            && !n.ends_with('-')
            && !n.starts_with("internal-")
    };
    let label = |n: &str| DNS_LABEL.is_match(n) && n.len() <= names::MAX_NAME_LEN;
    let ecs_rule = "1–255 letters, digits, '-' and '_'";
    let tg_rule = "1–32 letters, digits and '-', not starting or ending with '-', not starting with `internal-`";
    let label_rule = "a DNS label: lower-case letters, digits and '-', at most 63 characters";
    set_name(c, "spec.names.ecsService", &given.ecs_service, &ecs, ecs_rule, &mut names.ecs_service);
    set_name(c, "spec.names.taskFamily", &given.task_family, &ecs, ecs_rule, &mut names.task_family);
    set_name(c, "spec.names.targetGroup", &given.target_group, &tg, tg_rule, &mut names.target_group);
    set_name(
        c,
        "spec.names.cloudMapService",
        &given.cloud_map_service,
        &label,
        label_rule,
        &mut names.cloud_map_service,
    );
    names
}

/// `given`, when set and valid by `valid`, into `slot`; a located problem saying `rule` otherwise.
fn set_name(
    c: &mut Checker<'_>,
    field: &str,
    given: &Option<String>,
    valid: &dyn Fn(&str) -> bool,
    rule: &str,
    slot: &mut String,
) {
    let Some(v) = given else { return };
    if valid(v) {
        v.clone_into(slot);
    } else {
        c.hint(field, format!("`{}` is not a valid name here", quote(v)), rule);
    }
}

/// The cluster, image, task count, host port and size; returns the cluster's name (empty when
/// it is invalid).
fn check_workload(c: &mut Checker<'_>, s: &spec::Spec) -> String {
    let cluster = match CLUSTER.captures(&s.cluster) {
        Some(cap) => cap[2].to_owned(),
        None => {
            c.err("spec.cluster", format!("`{}` is not an ECS cluster name or ARN", quote(&s.cluster)));
            String::new()
        }
    };
    if s.image.trim().is_empty() || s.image.contains(char::is_whitespace) {
        c.err("spec.image", "image must be a non-empty image reference without spaces");
    }
    c.range("spec.desiredCount", s.desired_count, 0, 10, "one task per container instance; 0 stops the service");
    c.range(
        "spec.port",
        s.port,
        1024,
        32767,
        "the host port must stay below ECS's ephemeral range (32768+) and away from the host's sshd and privileged ports",
    );
    c.range("spec.cpu", s.cpu, 128, 10240, "CPU units; 1024 = one vCPU");
    c.range("spec.memory", s.memory, 64, 122880, "memory in MiB");
    cluster
}

/// The task and execution roles (the execution role is required); returns the task role, which
/// s3 storage may give instead of the spec.
fn check_roles(c: &mut Checker<'_>, s: &spec::Spec) -> Option<String> {
    if let Some(arn) = &s.task_role_arn {
        c.pattern("spec.taskRoleArn", arn, &ROLE_ARN, "an IAM role ARN");
    }
    if let Some(arn) = &s.execution_role_arn {
        c.pattern("spec.executionRoleArn", arn, &ROLE_ARN, "an IAM role ARN");
    } else {
        c.hint(
            "spec.executionRoleArn",
            "an execution role is required: ECS reads the host-key secret into the task with it",
            "give a role with secretsmanager:GetSecretValue on the host-key secret (and ECR pull if the image is private)",
        );
    }
    s.task_role_arn.clone().or_else(|| s.storage.s3.as_ref().and_then(|x| x.task_role_arn.clone()))
}

/// Host keys: persistent, or every failover shows clients "REMOTE HOST IDENTIFICATION HAS CHANGED".
fn check_host_keys(c: &mut Checker<'_>, k: &spec::HostKeys) -> (HostKeySource, Vec<ParsedKey>) {
    let source = match (&k.secret_arn, k.generate) {
        (Some(arn), generate) => {
            if generate && c.index.contains("spec.hostKeys.generate") {
                c.err("spec.hostKeys", "give either `generate: true` or `secretArn`, not both");
            }
            c.pattern("spec.hostKeys.secretArn", arn, &SECRET_ARN, "a Secrets Manager secret ARN");
            HostKeySource::Secret(arn.clone())
        }
        (None, true) => HostKeySource::Generate { rsa_bits: k.rsa_bits },
        (None, false) => {
            c.hint(
                "spec.hostKeys",
                "host keys must persist across tasks",
                "set `generate: true` (the default) or `secretArn` to an existing secret, or clients will see \"host key changed\" after every failover",
            );
            HostKeySource::Generate { rsa_bits: k.rsa_bits }
        }
    };
    if !sshkeys::RSA_HOST_KEY_BITS.contains(&k.rsa_bits) {
        c.hint(
            "spec.hostKeys.rsaBits",
            format!("{} is not a supported RSA host-key size", k.rsa_bits),
            "use 4096 (the default, as ssh-audit's hardened policy asks) or 3072 (OpenSSH's default)",
        );
    }
    let mut public_keys = Vec::new();
    for (i, key) in k.public_keys.iter().enumerate() {
        match sshkeys::parse_public_key(key) {
            Ok(p) => public_keys.push(p),
            Err(e) => c.err(&format!("spec.hostKeys.publicKeys[{i}]"), e.to_string()),
        }
    }
    (source, public_keys)
}

fn check_load_balancer(c: &mut Checker<'_>, lb: &spec::LoadBalancer) {
    c.pattern(
        "spec.loadBalancer.arn",
        &lb.arn,
        &LB_ARN,
        "an Elastic Load Balancing load-balancer ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:loadbalancer/net/NAME/ID)",
    );
    c.range("spec.loadBalancer.listenerPort", lb.listener_port, 1, 65535, "a TCP port");
    c.range(
        "spec.loadBalancer.idleTimeout",
        lb.idle_timeout,
        60,
        6000,
        "seconds; the NLB accepts 60–6000 and drops idle SFTP sessions after its 350 s default",
    );
}

/// The security group and the allowed CIDRs (returned sorted, canonical, deduplicated).
fn check_access(c: &mut Checker<'_>, a: &spec::Access) -> Vec<IpNet> {
    c.pattern("spec.access.securityGroupId", &a.security_group_id, &SG_ID, "a security group id (sg-...)");
    check_cidrs(c, &a.allowed_cidrs, a.allow_public)
}

/// The Cloud Map namespace: an `ns-` id as given, or a name normalised.
fn check_discovery(c: &mut Checker<'_>, d: &spec::Discovery) -> String {
    if !NAMESPACE_ID.is_match(&d.namespace) && !valid_dns_name(&d.namespace) {
        c.err(
            "spec.discovery.namespace",
            format!("`{}` is neither a namespace name nor an ns- id", quote(&d.namespace)),
        );
    }
    if NAMESPACE_ID.is_match(&d.namespace) {
        d.namespace.clone()
    } else {
        d.namespace.trim_end_matches('.').to_ascii_lowercase()
    }
}

/// SSHFP records need the host public keys: known for generated keys, listed for a user's secret.
fn check_sshfp(c: &mut Checker<'_>, d: &Dns, host_keys: &HostKeySource, host_public_keys: &[ParsedKey]) {
    if d.sshfp && !matches!(host_keys, HostKeySource::Generate { .. }) && host_public_keys.is_empty() {
        c.hint(
            "spec.dns.sshfp",
            "SSHFP needs the host public keys",
            "list them in `spec.hostKeys.publicKeys` when the host keys come from your own secret",
        );
    }
}

fn check_awslogs(c: &mut Checker<'_>, l: &spec::AwsLogs) -> AwsLogs {
    if l.group.is_empty() || l.group.len() > 512 {
        c.err("spec.logging.awslogs.group", "log group name must be 1–512 characters");
    }
    c.pattern("spec.logging.awslogs.region", &l.region, &REGION, "an AWS region");
    AwsLogs { group: l.group.clone(), region: l.region.clone(), stream_prefix: l.stream_prefix.clone() }
}

/// Whether the rendered task definition fits what ECS accepts (users and keys make it grow).
fn check_task_definition_size(c: &mut Checker<'_>, service: &Service) -> bool {
    let size = json_size(&crate::render::task_definition(service, false));
    if size > MAX_TASK_DEFINITION_BYTES {
        c.hint(
            "spec.users",
            format!("the task definition would be {size} bytes; ECS accepts at most {MAX_TASK_DEFINITION_BYTES}"),
            "users and keys are rendered into it: split the users over several services or drop unused keys",
        );
        return false;
    }
    true
}

/// Bytes of a value's JSON, counted without building it.
fn json_size(v: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, v).map_or(0, |_| count.0)
}

/// Labels become tags on every owned resource, so AWS's tag rules (the strictest of ECS, ELB,
/// Cloud Map and Secrets Manager) apply, with room for the operator's own two tags.
fn check_labels(c: &mut Checker<'_>, labels: &BTreeMap<String, String>) {
    // Owner and service, plus one hash (the task definition's, or the ECS service's rendering).
    const OWN_TAGS: usize = 3;
    if labels.len() + OWN_TAGS > MAX_TAGS {
        c.hint(
            "metadata.labels",
            format!(
                "{} labels; AWS allows {MAX_TAGS} tags per resource and the operator adds {OWN_TAGS}",
                labels.len()
            ),
            format!("keep at most {} labels", MAX_TAGS - OWN_TAGS),
        );
    }
    for (k, v) in labels {
        let path = format!("metadata.labels.{k}");
        if k.chars().count() > 128 || v.chars().count() > 256 || k.is_empty() {
            c.err(&path, "tag keys are 1–128 characters and values at most 256");
        } else if !TAG_TEXT.is_match(k) || !TAG_TEXT.is_match(v) {
            c.hint(
                &path,
                format!("label `{}: {}` has a character AWS tags refuse", quote(k), quote(v)),
                "tags allow letters, digits, spaces and _ . : / = + - @",
            );
        }
        if k.to_ascii_lowercase().starts_with("aws:") || k.starts_with(names::TAG_PREFIX) {
            c.hint(
                &path,
                format!("label `{}` uses a reserved prefix", quote(k)),
                format!("`aws:` (in any case) and `{}` are reserved", names::TAG_PREFIX),
            );
        }
    }
}

/// Fields where key text belongs: users' public keys and the host public keys.
static KEY_FIELD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(spec\.users\[\d+\]\.keys|spec\.hostKeys\.publicKeys)\[\d+\]$").unwrap());

/// Refuses key material (a private key above all) anywhere but the key fields: it would be
/// rendered into tags, names or the task definition, and shown by `render` and `plan`.
fn check_no_key_material(c: &mut Checker<'_>, m: &Manifest) {
    fn walk(c: &mut Checker<'_>, path: &str, v: &serde_json::Value) {
        let child = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
        match v {
            // A password hash is never echoed, and its base64-like body may look like a key.
            serde_json::Value::String(s)
                if !KEY_FIELD.is_match(path)
                    && !path.ends_with(".passwordHash")
                    && sshkeys::looks_like_key_material(s) =>
            {
                c.hint(
                    path,
                    "this looks like key material; the value is not shown",
                    "only `spec.users[].keys` and `spec.hostKeys.publicKeys` take keys, and only public ones; host private keys stay in the secret `hostKeys.secretArn` names",
                );
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(c, &format!("{path}[{i}]"), item);
                }
            }
            serde_json::Value::Object(map) => {
                for (k, item) in map {
                    if sshkeys::looks_like_key_material(k) {
                        c.hint(path, "a key here looks like key material; it is not shown", "remove it");
                    } else {
                        walk(c, &child(k), item);
                    }
                }
            }
            _ => {}
        }
    }
    if let Ok(v) = serde_json::to_value(m) {
        walk(c, "", &v);
    }
}

fn check_users(c: &mut Checker<'_>, users: &[spec::User]) -> Vec<User> {
    if users.is_empty() {
        c.err("spec.users", "at least one user is required");
    }
    let mut names_seen = BTreeMap::new();
    let mut uids_seen = BTreeMap::new();
    let mut out = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let p = format!("spec.users[{i}]");
        check_user_name(c, &format!("{p}.name"), &u.name);
        if u.name == PROBE_USER {
            c.hint(
                &format!("{p}.name"),
                format!("`{PROBE_USER}` is the operator's probe account"),
                "choose another name (enable the probe with spec.probe)",
            );
        }
        if let Some(first) = names_seen.insert(u.name.clone(), i) {
            c.err(&format!("{p}.name"), format!("duplicate user `{}` (also spec.users[{first}])", quote(&u.name)));
        }
        check_user_ids(c, &p, u);
        if let Some(first) = uids_seen.insert(u.uid, i) {
            c.err(&format!("{p}.uid"), format!("duplicate uid {} (also spec.users[{first}])", u.uid));
        }
        check_user_directories(c, &p, &u.directories);
        let keys = check_user_keys(c, &p, &u.keys);
        let password_hash = u.password_hash.as_ref().map(|h| check_password_hash(c, &p, h));
        if u.keys.is_empty() && u.password_hash.is_none() {
            c.hint(
                &p,
                format!("user `{}` has no way to log in", quote(&u.name)),
                "give at least one key in `keys` or a `passwordHash`",
            );
        }
        out.push(User {
            name: u.name.clone(),
            uid: u.uid,
            gid: u.gid,
            directories: u.directories.clone(),
            keys,
            password_hash,
            allowed_cidrs: Vec::new(),
        });
    }
    out
}

/// Each user's `allowedCidrs`: CIDR blocks inside the service's own allowed networks (a
/// narrower door, never another one).
fn check_user_cidrs(c: &mut Checker<'_>, given: &[spec::User], service: &[IpNet], users: &mut [User]) {
    for (i, (u, out)) in given.iter().zip(users.iter_mut()).enumerate() {
        let p = format!("spec.users[{i}].allowedCidrs");
        out.allowed_cidrs = parse_cidrs(c, &p, &u.allowed_cidrs);
        // Located at the item as written (the parsed list is sorted).
        for (j, raw) in u.allowed_cidrs.iter().enumerate() {
            let Ok(net) = raw.parse::<IpNet>() else { continue };
            if !service.iter().any(|s| s.contains(&net)) {
                c.hint(
                    &format!("{p}[{j}]"),
                    format!("`{net}` is not inside spec.access.allowedCidrs"),
                    "a user's networks narrow the service's; add it there too, or narrow it",
                );
            }
        }
    }
}

/// sshd's policy; `auto` authentication resolved from the users' credentials.
fn check_security(c: &mut Checker<'_>, s: &spec::Security, users: &[spec::User]) -> Security {
    c.range("spec.security.maxAuthTries", s.max_auth_tries, 1, 10, "sshd drops a connection after this many failures");
    c.range("spec.security.loginGraceTimeSeconds", s.login_grace_time_seconds, 5, 600, "time to authenticate");
    // sshd refuses to start on a rate of 0 or numbers past its int: checked here, not in the task.
    let parts: Vec<Option<u32>> = s.max_startups.split(':').map(|n| n.parse().ok().filter(|n| *n <= 10_000)).collect();
    let startups = match parts[..] {
        [Some(start)] if start >= 1 => Some((start, 100, start)),
        [Some(start), Some(rate), Some(full)] if start >= 1 && (1..=100).contains(&rate) && full >= start => {
            Some((start, rate, full))
        }
        _ => None,
    };
    if startups.is_none() {
        c.hint(
            "spec.security.maxStartups",
            format!("`{}` is not `start` or `start:rate:full`", quote(&s.max_startups)),
            "for example `10:30:60` (start 1–10000, rate 1–100 percent, full at least start)",
        );
    }
    let (start, rate, full) = startups.unwrap_or((10, 30, 60));
    let with_password = users.iter().filter(|u| u.password_hash.is_some()).count();
    let authentication = match s.authentication {
        spec::Authentication::Auto if with_password == 0 => AuthMethods::PublicKey,
        spec::Authentication::Auto => AuthMethods::PublicKeyOrPassword,
        spec::Authentication::PublicKey => {
            for (i, u) in users.iter().enumerate().filter(|(_, u)| u.password_hash.is_some()) {
                c.hint(
                    &format!("spec.users[{i}].passwordHash"),
                    format!("`{}` has a password, and spec.security.authentication is publicKey", quote(&u.name)),
                    "remove the passwordHash, or set authentication to auto",
                );
            }
            AuthMethods::PublicKey
        }
        spec::Authentication::PublicKeyAndPassword => {
            for (i, u) in users.iter().enumerate().filter(|(_, u)| u.password_hash.is_none() || u.keys.is_empty()) {
                c.hint(
                    &format!("spec.users[{i}]"),
                    format!("`{}` needs both a key and a passwordHash to log in", quote(&u.name)),
                    "spec.security.authentication is publicKeyAndPassword",
                );
            }
            AuthMethods::PublicKeyAndPassword
        }
    };
    Security {
        policy: s.policy,
        authentication,
        max_auth_tries: s.max_auth_tries,
        login_grace_time_seconds: s.login_grace_time_seconds,
        max_startups: format!("{start}:{rate}:{full}"),
    }
}

/// The probe account: a uid of its own, and host keys it can verify.
fn check_probe(c: &mut Checker<'_>, name: &str, p: &spec::Probe, s: &spec::Spec) -> Probe {
    if p.uid < 1000 {
        c.hint(
            "spec.probe.uid",
            format!("uid {} is below 1000", p.uid),
            "uids under 1000 belong to system accounts in the image",
        );
    }
    c.range("spec.probe.uid", p.uid, 0, MAX_ID, "Linux ids are signed 32-bit: useradd refuses larger ones");
    if let Some(i) = s.users.iter().position(|u| u.uid == p.uid) {
        c.hint(
            "spec.probe.uid",
            format!("uid {} is also spec.users[{i}]'s", p.uid),
            "the probe account needs a uid of its own: set spec.probe.uid to an unused one",
        );
    }
    let verifiable = |k: &String| k.starts_with("ssh-ed25519 ") || k.starts_with("ecdsa-sha2-");
    if s.host_keys.secret_arn.is_some() && s.host_keys.public_keys.is_empty() {
        c.hint(
            "spec.probe",
            "the probe cannot verify the host key of a secret it may not read",
            "list the host keys' public halves in spec.hostKeys.publicKeys",
        );
    } else if !s.host_keys.public_keys.is_empty() && !s.host_keys.public_keys.iter().any(verifiable) {
        c.hint(
            "spec.probe",
            "the probe verifies Ed25519 and ECDSA host keys, and spec.hostKeys.publicKeys lists neither",
            "add the server's Ed25519 host key to spec.hostKeys.publicKeys",
        );
    }
    Probe { uid: p.uid, secret: crate::names::probe_secret(name) }
}

/// The user at `p`'s uid and gid: outside the system ranges and within what Linux tools accept.
fn check_user_ids(c: &mut Checker<'_>, p: &str, u: &spec::User) {
    if u.uid < 1000 {
        c.hint(
            &format!("{p}.uid"),
            format!("uid {} is below 1000", u.uid),
            "uids under 1000 belong to system accounts in the image",
        );
    }
    c.range(&format!("{p}.uid"), u.uid, 0, MAX_ID, "Linux ids are signed 32-bit: useradd refuses larger ones");
    if let Some(gid) = u.gid {
        if gid < MIN_GID {
            c.hint(
                &format!("{p}.gid"),
                format!("gid {gid} is a system group"),
                format!("use a group id of {MIN_GID} or more (100 is `users`, atmoz's group for upload directories)"),
            );
        }
        c.range(&format!("{p}.gid"), gid, 0, MAX_ID, "Linux ids are signed 32-bit: groupadd refuses larger ones");
    }
}

/// The user at `p`'s writable directories: at least one, relative, nothing hidden.
fn check_user_directories(c: &mut Checker<'_>, p: &str, directories: &[String]) {
    if directories.is_empty() {
        c.hint(
            &format!("{p}.directories"),
            "at least one directory is required",
            "the chroot home is root-owned, so uploads need a writable directory such as `upload`",
        );
    }
    for (j, d) in directories.iter().enumerate() {
        if !DIRECTORY.is_match(d) || d.len() > 255 {
            c.hint(
                &format!("{p}.directories[{j}]"),
                format!("`{}` is not a relative directory path", quote(d)),
                "letters, digits, '.', '_', '-' separated by '/', at most 255 characters",
            );
        } else if d.split('/').any(|s| s.starts_with('.')) {
            c.hint(
                &format!("{p}.directories[{j}]"),
                format!("`{d}` has a part starting with '.'"),
                "hidden names (`.ssh`, `..`) are refused: a user-owned `.ssh` would let the user add keys",
            );
        }
    }
}

/// The user at `p`'s public keys, parsed; unparseable and duplicate keys are problems.
fn check_user_keys(c: &mut Checker<'_>, p: &str, keys: &[String]) -> Vec<ParsedKey> {
    let mut parsed_keys: Vec<ParsedKey> = Vec::new();
    for (j, k) in keys.iter().enumerate() {
        let kp = format!("{p}.keys[{j}]");
        match sshkeys::parse_public_key(k) {
            Ok(parsed) => {
                if let Some(dup) = parsed_keys.iter().position(|x| x.blob == parsed.blob) {
                    c.err(&kp, format!("duplicate key {} (also keys[{dup}])", parsed.fingerprint));
                }
                parsed_keys.push(parsed);
            }
            Err(e) => c.err(&kp, e.to_string()),
        }
    }
    parsed_keys
}

/// The user at `p`'s password hash: a crypt(3) hash atmoz accepts. The value is never echoed:
/// it might be a plaintext password.
fn check_password_hash(c: &mut Checker<'_>, p: &str, h: &str) -> PasswordHash {
    if h.len() > MAX_PASSWORD_HASH {
        c.hint(
            &format!("{p}.passwordHash"),
            format!("longer than {MAX_PASSWORD_HASH} characters; the value is not shown"),
            "atmoz accepts at most 255 characters (`[^:]{0,255}`)",
        );
    } else if !CRYPT.is_match(h) {
        c.hint(
            &format!("{p}.passwordHash"),
            "not a crypt(3) hash ($1$, $5$, $6$, $y$ or $2b$); the value is not shown",
            "hash it first, e.g. `openssl passwd -6` or `mkpasswd -m yescrypt`",
        );
    }
    PasswordHash::new(h.to_owned())
}

fn check_storage(c: &mut Checker<'_>, s: &spec::Spec) -> Option<Storage> {
    let st = &s.storage;
    let given = [st.efs.is_some(), st.host_path.is_some(), st.s3.is_some()].iter().filter(|x| **x).count();
    if given != 1 {
        c.hint(
            "spec.storage",
            format!("exactly one of efs, hostPath, s3 is required ({given} given)"),
            "efs: an EFS volume; hostPath: a directory on the host; s3: a bucket through goofys",
        );
        return None;
    }
    if let Some(efs) = &st.efs {
        c.pattern("spec.storage.efs.fileSystemId", &efs.file_system_id, &FS_ID, "an EFS file system id (fs-...)");
        if let Some(ap) = &efs.access_point_id {
            c.pattern("spec.storage.efs.accessPointId", ap, &FSAP_ID, "an EFS access point id (fsap-...)");
        }
        if !efs.root_directory.starts_with('/') {
            c.err("spec.storage.efs.rootDirectory", "must be an absolute path");
        }
        return Some(Storage::Efs {
            file_system_id: efs.file_system_id.clone(),
            access_point_id: efs.access_point_id.clone(),
            root_directory: efs.root_directory.clone(),
        });
    }
    if let Some(path) = &st.host_path {
        check_host_path(c, path);
        return Some(Storage::HostPath { path: path.clone() });
    }
    let s3 = st.s3.as_ref()?;
    if !BUCKET.is_match(&s3.bucket) {
        c.err("spec.storage.s3.bucket", format!("`{}` is not a valid S3 bucket name", quote(&s3.bucket)));
    }
    if s3.image.is_none() {
        c.hint(
            "spec.storage.s3.image",
            "s3 storage requires `image`",
            "an atmoz-based image that carries goofys (see seed 2)",
        );
    }
    if let Some(arn) = &s3.task_role_arn {
        c.pattern("spec.storage.s3.taskRoleArn", arn, &ROLE_ARN, "an IAM role ARN");
    } else if s.task_role_arn.is_none() {
        c.hint(
            "spec.storage.s3.taskRoleArn",
            "s3 storage requires `taskRoleArn`",
            "a role allowed to read, write and delete in the bucket",
        );
    }
    Some(Storage::S3 { bucket: s3.bucket.clone(), image: s3.image.clone().unwrap_or_default() })
}

fn check_cidrs(c: &mut Checker<'_>, cidrs: &[String], allow_public: bool) -> Vec<IpNet> {
    let out = parse_cidrs(c, "spec.access.allowedCidrs", cidrs);
    for (i, raw) in cidrs.iter().enumerate() {
        let everywhere = raw.parse::<IpNet>().is_ok_and(|n| n.prefix_len() == 0 && n.trunc() == n);
        if everywhere && !allow_public {
            c.hint(
                &format!("spec.access.allowedCidrs[{i}]"),
                format!("`{raw}` opens the port to the whole internet"),
                "set `spec.access.allowPublic: true` if that is intended",
            );
        }
    }
    out
}

/// CIDR blocks at `field`: each parsed, without host bits, once; sorted.
fn parse_cidrs(c: &mut Checker<'_>, field: &str, cidrs: &[String]) -> Vec<IpNet> {
    let mut out = BTreeSet::new();
    for (i, raw) in cidrs.iter().enumerate() {
        let p = format!("{field}[{i}]");
        let net: IpNet = match raw.parse::<IpNet>() {
            Ok(n) => n,
            Err(_) => match raw.parse::<IpAddr>() {
                Ok(ip) => {
                    let host = IpNet::from(ip);
                    c.hint(&p, format!("`{raw}` has no prefix length"), format!("write `{host}`"));
                    continue;
                }
                Err(_) => {
                    c.err(&p, format!("`{}` is not a CIDR block", quote(raw)));
                    continue;
                }
            },
        };
        if net.trunc() != net {
            c.hint(&p, format!("`{raw}` has host bits set"), format!("did you mean `{}`?", net.trunc()));
            continue;
        }
        if !out.insert(net) {
            c.err(&p, format!("duplicate CIDR `{net}`"));
        }
    }
    out.into_iter().collect()
}

fn check_dns(c: &mut Checker<'_>, d: &spec::Dns) -> Dns {
    let zone_is_id = ZONE_ID.is_match(&d.zone);
    if !zone_is_id && !valid_dns_name(&d.zone) {
        c.err("spec.dns.zone", format!("`{}` is neither a zone name nor a hosted-zone id", quote(&d.zone)));
    }
    let zone = zone_ref(&d.zone);
    let record = normalize_dns_name(&d.record);
    if !valid_dns_name(&d.record) {
        c.err("spec.dns.record", format!("`{}` is not a DNS name", quote(&d.record)));
    } else if !zone_is_id && !in_zone(&record, &zone) {
        c.hint(
            "spec.dns.record",
            format!("`{record}` is not inside zone `{zone}`"),
            format!("use a name ending in `.{zone}`"),
        );
    }
    c.range("spec.dns.ttl", d.ttl, 1, 86400, "seconds; short TTLs let clients follow a failover quickly");
    let public_zone = d.public_zone.as_ref().map(|z| {
        if !ZONE_ID.is_match(z) && !valid_dns_name(z) {
            c.err("spec.dns.publicZone", format!("`{}` is neither a zone name nor a hosted-zone id", quote(z)));
        }
        zone_ref(z)
    });
    let public_record = d.public_record.as_ref().map(|r| {
        let n = normalize_dns_name(r);
        let z = public_zone.as_deref().unwrap_or(&zone);
        if !valid_dns_name(r) {
            c.err("spec.dns.publicRecord", format!("`{}` is not a DNS name", quote(r)));
        } else if !ZONE_ID.is_match(z) && !in_zone(&n, z) {
            c.hint(
                "spec.dns.publicRecord",
                format!("`{n}` is not inside zone `{z}`"),
                "set `publicZone` to the zone that holds it",
            );
        } else if n == record {
            c.err("spec.dns.publicRecord", "must differ from `record`");
        }
        n
    });
    Dns { zone, record, ttl: d.ttl, sshfp: d.sshfp, public_record, public_zone }
}

type CrossKey = fn(&Service) -> Option<String>;

/// Fields two services may not share, with the key they are compared by.
const CROSS_FIELDS: [(&str, CrossKey, &str); 8] = [
    ("metadata.name", |s| Some(s.name.clone()), "duplicate service name"),
    // The names of what each service owns, given or derived (`spec.names`).
    (
        "spec.names.ecsService",
        |s| Some(format!("{}/{}", s.cluster, s.names.ecs_service)),
        "ECS service name already used by another service on this cluster",
    ),
    ("spec.names.taskFamily", |s| Some(s.names.task_family.clone()), "task family already used by another service"),
    (
        "spec.names.targetGroup",
        |s| Some(s.names.target_group.clone()),
        "target group name already used by another service",
    ),
    (
        "spec.names.cloudMapService",
        |s| s.namespace.as_ref().map(|ns| format!("{ns}/{}", s.names.cloud_map_service)),
        "Cloud Map service name already used by another service in this namespace",
    ),
    (
        "spec.port",
        |s| Some(format!("{}/{}", s.cluster, s.port)),
        "host port already used by another service on this cluster",
    ),
    (
        "spec.loadBalancer.listenerPort",
        |s| Some(format!("{}/{}", s.load_balancer_arn, s.listener_port)),
        "listener port already used by another service on this load balancer",
    ),
    (
        "spec.dns.record",
        |s| s.dns.as_ref().map(|d| d.record.clone()),
        "DNS record already published by another service",
    ),
];

/// Rules across documents: names, host ports per cluster, listener ports per NLB, DNS records.
/// One clash per service: a duplicate name makes every derived name clash too.
fn check_across(placed: &[Placed], out: &mut Diagnostics) {
    let mut reported = vec![false; placed.len()];
    for (i, (path, key, msg)) in CROSS_FIELDS.iter().enumerate() {
        let mut seen: BTreeMap<String, &Placed> = BTreeMap::new();
        for (j, p) in placed.iter().enumerate() {
            let Some(k) = key(&p.service) else { continue };
            match seen.get(&k) {
                Some(_) if reported[j] => {}
                Some(first) => {
                    reported[j] = true;
                    let (file, at) = (&first.service.origin.file, first.positions[i]);
                    out.push(
                        Diagnostic::new(
                            &p.service.origin.file,
                            p.positions[i],
                            *path,
                            format!("{msg} (`{}`)", first.service.name),
                        )
                        .with_hint(format!(
                            "first defined at {}:{}:{}",
                            file.display(),
                            at.line,
                            at.column
                        )),
                    );
                }
                None => {
                    seen.insert(k, p);
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid manifest: a key user and a password user, hostPath storage, generated host keys.
    pub(crate) const MANIFEST: &str = "\
apiVersion: sftp-operator/v1alpha1
kind: SftpService
metadata:
  name: drop
  labels:
    team: research
spec:
  cluster: sftp
  port: 30020
  users:
    - name: alice
      uid: 1001
      directories: [upload]
      keys:
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINvzrb/pQTV0amUyWyMEWMB38bM1teRm7QEI4+smhNXc alice@example.edu
    - name: bob
      uid: 1002
      gid: 100
      directories: [upload, shared/in]
      passwordHash: $6$salt$hash
  storage:
    hostPath: /srv/sftp
  executionRoleArn: arn:aws:iam::123456789012:role/sftp-exec
  loadBalancer:
    arn: arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/sftp/0123456789abcdef
    listenerPort: 2220
  access:
    securityGroupId: sg-0123456789abcdef0
    allowedCidrs: [198.51.100.0/24, 192.0.2.0/24]
";

    fn sources(files: &[(&str, &str)]) -> Vec<SourceFile> {
        files.iter().map(|(path, text)| SourceFile { path: PathBuf::from(path), text: (*text).to_owned() }).collect()
    }

    fn parse(text: &str) -> Vec<LoadedManifest> {
        load::parse_sources(&sources(&[("test.yaml", text)])).expect("the manifest parses")
    }

    /// `text` (one document of `test.yaml`) validated; panics with the problems if it is invalid.
    pub(crate) fn service(text: &str) -> Service {
        match validate(&parse(text)) {
            Ok(mut services) => services.remove(0),
            Err(d) => panic!("expected a valid manifest:\n{d}"),
        }
    }

    fn problems(text: &str) -> Vec<Diagnostic> {
        validate(&parse(text)).expect_err("expected problems").0
    }

    /// The one problem `text` has.
    fn problem(text: &str) -> Diagnostic {
        let mut all = problems(text);
        assert_eq!(all.len(), 1, "{all:#?}");
        all.remove(0)
    }

    /// Where `needle` first starts in `text`, 1-indexed.
    fn at(text: &str, needle: &str) -> Pos {
        let byte = text.find(needle).unwrap_or_else(|| panic!("`{needle}` is not in the text"));
        let before = &text[..byte];
        let line = before.matches('\n').count() as u64 + 1;
        let column = (byte - before.rfind('\n').map_or(0, |i| i + 1)) as u64 + 1;
        Pos { line, column }
    }

    fn with_labels(labels: &str) -> String {
        MANIFEST.replace("    team: research\n", labels)
    }

    fn with_cidrs(cidrs: &str) -> String {
        MANIFEST.replace("[198.51.100.0/24, 192.0.2.0/24]", cidrs)
    }

    #[test]
    fn the_manifest_validates_into_a_normalised_service() {
        let s = service(MANIFEST);
        assert_eq!((s.name.as_str(), s.cluster.as_str(), s.port, s.listener_port), ("drop", "sftp", 30020, 2220));
        assert_eq!(s.origin, Origin { file: "test.yaml".into(), doc: 0 });
        let cidrs: Vec<String> = s.allowed_cidrs.iter().map(ToString::to_string).collect();
        assert_eq!(cidrs, ["192.0.2.0/24", "198.51.100.0/24"], "sorted");
        assert_eq!(s.host_keys, HostKeySource::Generate { rsa_bits: 4096 });
        assert_eq!(s.storage, Storage::HostPath { path: "/srv/sftp".into() });
        assert_eq!(s.users.len(), 2);
        assert_eq!((s.users[0].keys.len(), s.users[0].password_hash.is_none()), (1, true));
        assert_eq!(s.users[1].password_hash.as_ref().map(PasswordHash::expose), Some("$6$salt$hash"));
        assert_eq!(s.users[1].gid, Some(100));
    }

    #[test]
    fn the_rsa_host_key_size_is_3072_or_4096() {
        let with_bits =
            |bits: &str| MANIFEST.replace("  access:\n", &format!("  hostKeys:\n    rsaBits: {bits}\n  access:\n"));
        assert_eq!(service(&with_bits("4096")).host_keys, HostKeySource::Generate { rsa_bits: 4096 });
        let text = with_bits("2048");
        let d = problem(&text);
        assert_eq!((d.field.as_str(), d.pos), ("spec.hostKeys.rsaBits", at(&text, "2048")));
    }

    #[test]
    fn the_probe_account_has_its_own_name_and_uid_and_verifiable_host_keys() {
        let with_probe = |probe: &str| MANIFEST.replace("  access:\n", &format!("  probe: {probe}\n  access:\n"));
        let s = service(&with_probe("{enabled: true}"));
        let probe = Probe { uid: crate::model::DEFAULT_PROBE_UID, secret: "sftp-operator/drop/probe-key".into() };
        assert_eq!(s.probe, Some(probe));
        assert_eq!(service(&with_probe("{enabled: false, uid: 1001}")).probe, None, "disabled: nothing checked");
        assert_eq!(service(MANIFEST).probe, None);

        let text = with_probe("{uid: 1002}");
        let d = problem(&text);
        assert_eq!((d.field.as_str(), d.pos), ("spec.probe.uid", at(&text, "1002}")));
        assert_eq!(d.message, "uid 1002 is also spec.users[1]'s");

        let text = MANIFEST.replace("name: bob", &format!("name: {PROBE_USER}"));
        let d = problem(&text);
        assert_eq!(d.field, "spec.users[1].name");
        assert_eq!(d.message, "`sftp-probe` is the operator's probe account");

        let keys = "  hostKeys: {generate: false, secretArn: \"arn:aws:secretsmanager:us-east-1:123456789012:secret:k-AbCdEf\"}\n";
        let text = with_probe("{enabled: true}").replace("  access:\n", &format!("{keys}  access:\n"));
        let d = problem(&text);
        assert_eq!(d.field, "spec.probe");
        assert_eq!(d.hint.as_deref(), Some("list the host keys' public halves in spec.hostKeys.publicKeys"));
        let rsa_only =
            text.replace("}\n  access:", ", publicKeys: [\"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ host\"]}\n  access:");
        let d = problems(&rsa_only).into_iter().find(|d| d.field == "spec.probe").expect("a probe problem");
        assert!(d.message.contains("neither"), "{}", d.message);
    }

    #[test]
    fn the_security_settings_are_checked_and_auto_follows_the_users_credentials() {
        let with = |security: &str| MANIFEST.replace("  access:\n", &format!("  security: {security}\n  access:\n"));
        assert_eq!(service(MANIFEST).security.authentication, AuthMethods::PublicKeyOrPassword, "bob has a password");
        let text = with("{maxAuthTries: 0, loginGraceTimeSeconds: 1, maxStartups: \"10:300:5\"}");
        let fields: Vec<String> = problems(&text).into_iter().map(|d| d.field).collect();
        assert_eq!(
            fields,
            ["spec.security.maxAuthTries", "spec.security.loginGraceTimeSeconds", "spec.security.maxStartups"]
        );
        // What sshd would refuse to start on is refused here.
        for bad in ["10:0:60", "3000000000", "0", "10:30", "10:30:5", "a:b:c"] {
            let d = problem(&with(&format!("{{maxStartups: \"{bad}\"}}")));
            assert_eq!(d.field, "spec.security.maxStartups", "{bad}");
        }
        assert_eq!(service(&with("{maxStartups: \"20\"}")).security.max_startups, "20:100:20");
        let d = problem(&with("{authentication: publicKey}"));
        assert_eq!(
            (d.field.as_str(), d.message.as_str()),
            ("spec.users[1].passwordHash", "`bob` has a password, and spec.security.authentication is publicKey")
        );
        let both: Vec<String> =
            problems(&with("{authentication: publicKeyAndPassword}")).into_iter().map(|d| d.message).collect();
        assert_eq!(
            both,
            [
                "`alice` needs both a key and a passwordHash to log in",
                "`bob` needs both a key and a passwordHash to log in"
            ]
        );
    }

    #[test]
    fn a_users_networks_must_lie_inside_the_services() {
        let text = MANIFEST.replace(
            "      directories: [upload]\n",
            "      directories: [upload]\n      allowedCidrs: [198.51.100.128/25, 10.0.0.0/8]\n",
        );
        let d = problem(&text);
        assert_eq!((d.field.as_str(), d.pos), ("spec.users[0].allowedCidrs[1]", at(&text, "10.0.0.0/8")));
        let ok = text.replace(", 10.0.0.0/8", "");
        assert_eq!(service(&ok).users[0].allowed_cidrs, ["198.51.100.128/25".parse::<IpNet>().unwrap()]);
    }

    #[test]
    fn a_cluster_arn_is_reduced_to_its_name() {
        let text = MANIFEST.replace("cluster: sftp", "cluster: arn:aws:ecs:us-east-1:123456789012:cluster/sftp");
        assert_eq!(service(&text).cluster, "sftp");
    }

    #[test]
    fn a_reserved_label_prefix_is_refused_in_any_case() {
        let text = with_labels("    team: research\n    AWS:team: x\n");
        let d = problem(&text);
        assert_eq!(d.field, "metadata.labels.AWS:team");
        assert_eq!(d.pos, Pos { line: 7, column: 15 });
        assert_eq!(d.message, "label `AWS:team` uses a reserved prefix");
        assert_eq!(d.hint.as_deref(), Some("`aws:` (in any case) and `sftp-operator/` are reserved"));

        let text = with_labels("    sftp-operator/owner: me\n");
        assert_eq!(problem(&text).message, "label `sftp-operator/owner` uses a reserved prefix");
    }

    #[test]
    fn a_label_aws_tags_cannot_hold_is_refused() {
        let text = with_labels("    team: \"r&d\"\n");
        let d = problem(&text);
        assert_eq!((d.field.as_str(), d.pos), ("metadata.labels.team", at(&text, "\"r&d\"")));
        assert_eq!(d.message, "label `team: r&d` has a character AWS tags refuse");

        let text = with_labels(&format!("    team: {}\n", "x".repeat(257)));
        assert_eq!(problem(&text).message, "tag keys are 1–128 characters and values at most 256");
    }

    #[test]
    fn a_name_given_for_an_existing_resource_replaces_the_derived_one_and_stays_unique() {
        let named = MANIFEST
            .replace("  access:\n", "  names: {ecsService: research-sftp, targetGroup: research-tg}\n  access:\n");
        let s = service(&named);
        assert_eq!((s.names.ecs_service.as_str(), s.names.target_group.as_str()), ("research-sftp", "research-tg"));
        assert_eq!(s.names.task_family, "sftp-drop", "unset names stay derived");
        // A second service naming the first one's derived target group.
        let other = MANIFEST
            .replace("name: drop", "name: other")
            .replace("port: 30020", "port: 30021")
            .replace("listenerPort: 2220", "listenerPort: 2221")
            .replace("  access:\n", "  names: {targetGroup: sftp-drop}\n  access:\n");
        let docs = load::parse_sources(&sources(&[("a.yaml", MANIFEST), ("b.yaml", &other)])).unwrap();
        let errors = validate(&docs).unwrap_err().to_string();
        assert!(errors.contains("b.yaml:"), "{errors}");
        assert!(
            errors.contains("spec.names.targetGroup: target group name already used by another service (`drop`)"),
            "{errors}"
        );
    }

    #[test]
    fn labels_leave_room_for_the_operators_own_tags() {
        let labels: String = (0..48).map(|i| format!("    l{i}: v\n")).collect();
        let text = with_labels(&labels);
        let d = problem(&text);
        assert_eq!((d.field.as_str(), d.pos), ("metadata.labels", at(&text, "l0: v")));
        assert_eq!(d.message, "48 labels; AWS allows 50 tags per resource and the operator adds 3");
        assert_eq!(d.hint.as_deref(), Some("keep at most 47 labels"));
        service(&with_labels(&labels.replace("    l47: v\n", "")));
    }

    #[test]
    fn each_bad_cidr_is_located_at_its_item() {
        let text = with_cidrs("[192.0.2.1/24, 10.0.0.1, nonsense, 0.0.0.0/0]");
        let got: Vec<(String, Pos, String, Option<String>)> =
            problems(&text).into_iter().map(|d| (d.field, d.pos, d.message, d.hint)).collect();
        let item = |i: usize, at: Pos, message: &str, hint: Option<&str>| {
            (format!("spec.access.allowedCidrs[{i}]"), at, message.to_owned(), hint.map(str::to_owned))
        };
        assert_eq!(
            got,
            [
                item(
                    0,
                    at(&text, "192.0.2.1/24"),
                    "`192.0.2.1/24` has host bits set",
                    Some("did you mean `192.0.2.0/24`?")
                ),
                item(1, at(&text, "10.0.0.1"), "`10.0.0.1` has no prefix length", Some("write `10.0.0.1/32`")),
                item(2, at(&text, "nonsense"), "`nonsense` is not a CIDR block", None),
                item(
                    3,
                    at(&text, "0.0.0.0/0"),
                    "`0.0.0.0/0` opens the port to the whole internet",
                    Some("set `spec.access.allowPublic: true` if that is intended")
                ),
            ]
        );
    }

    #[test]
    fn cidrs_are_compared_canonically() {
        let text = with_cidrs("[192.0.2.0/24, 198.51.100.0/24, 192.0.2.0/24]");
        let d = problem(&text);
        assert_eq!(
            (d.field.as_str(), d.message.as_str()),
            ("spec.access.allowedCidrs[2]", "duplicate CIDR `192.0.2.0/24`")
        );
        assert_eq!(d.pos, Pos { line: 29, column: 51 });

        let text = with_cidrs("[\"0.0.0.0/0\"]\n    allowPublic: true");
        assert_eq!(service(&text).allowed_cidrs.len(), 1);
    }

    #[test]
    fn host_path_stays_out_of_the_hosts_system_directories() {
        let cases = [
            ("/", "`/` is the container instance's root directory"),
            ("/srv", "`/srv` is a top-level directory"),
            ("/etc", "`/etc` is the container instance's system directory `/etc`"),
            ("/var/lib/sftp", "`/var/lib/sftp` lies inside the container instance's system directory `/var`"),
            ("/srv/../etc", "`/srv/../etc` is not a normalised absolute path"),
            ("/srv//sftp", "`/srv//sftp` is not a normalised absolute path"),
            ("/srv/sftp/", "`/srv/sftp/` is not a normalised absolute path"),
            ("srv/sftp", "`srv/sftp` is not a normalised absolute path"),
        ];
        for (path, message) in cases {
            let text = MANIFEST.replace("hostPath: /srv/sftp", &format!("hostPath: {path}"));
            let d = problem(&text);
            assert_eq!((d.field.as_str(), d.pos), ("spec.storage.hostPath", Pos { line: 22, column: 15 }), "{path}");
            assert_eq!(d.message, message);
        }
        for path in ["/mnt/efs/sftp", "/srv/sftp-data", "/data/sftp"] {
            service(&MANIFEST.replace("hostPath: /srv/sftp", &format!("hostPath: {path}")));
        }
    }

    #[test]
    fn user_names_atmoz_or_the_image_would_misread_are_refused() {
        let cases = [
            ("root", "`root` is an account the image already has"),
            ("sshd", "`sshd` is an account the image already has"),
            ("1234", "`1234` is all digits"),
            (".alice", "`.alice` starts with '.'"),
            ("-alice", "`-alice` is not a valid user name"),
            ("al:ice", "`al:ice` is not a valid user name"),
            ("a-very-long-user-name-of-33-chars", "`a-very-long-user-name-of-33-chars` is not a valid user name"),
        ];
        for (name, message) in cases {
            let text = MANIFEST.replace("name: alice", &format!("name: \"{name}\""));
            let d = problem(&text);
            assert_eq!((d.field.as_str(), d.pos), ("spec.users[0].name", Pos { line: 11, column: 13 }), "{name}");
            assert_eq!(d.message, message);
        }
        for name in ["_alice", "alice.b", "a1234", "Alice-2"] {
            service(&MANIFEST.replace("name: alice", &format!("name: {name}")));
        }
    }

    #[test]
    fn a_second_user_of_the_same_name_points_at_the_first() {
        let text = MANIFEST.replace("name: bob", "name: alice");
        let d = problem(&text);
        assert_eq!((d.field.as_str(), d.pos), ("spec.users[1].name", Pos { line: 16, column: 13 }));
        assert_eq!(d.message, "duplicate user `alice` (also spec.users[0])");
    }

    #[test]
    fn a_password_that_is_not_a_hash_is_never_echoed() {
        let text = MANIFEST.replace("$6$salt$hash", "hunter2");
        let d = problem(&text);
        assert_eq!((d.field.as_str(), d.pos), ("spec.users[1].passwordHash", at(&text, "hunter2")));
        assert!(d.message.starts_with("not a crypt(3) hash"), "{}", d.message);
        assert!(!d.to_string().contains("hunter2"), "{d}");
    }

    #[test]
    fn a_hash_whose_body_looks_like_base64_key_text_is_accepted() {
        let text = MANIFEST.replace(
            "$6$salt$hash",
            "$6$Qx3f1m2k$MIIBvQ3zyXx7kGJ0c0m6mM0rZ0Zk3mC2b6w6ZbL6L0wKQ0uE9c8kF8b9y0r1s2t3u4v5w6x7y8z9A0B1C2D3E4F",
        );
        assert!(validate(&parse(&text)).is_ok());
    }

    #[test]
    fn every_problem_of_a_document_is_reported_at_once() {
        let text = MANIFEST.replace("port: 30020", "port: 80").replace("name: alice", "name: root");
        let fields: Vec<String> = problems(&text).into_iter().map(|d| d.field).collect();
        assert_eq!(fields, ["spec.port", "spec.users[0].name"], "sorted by position");
    }

    #[test]
    fn a_duplicate_across_documents_is_reported_on_the_later_one() {
        let second = MANIFEST.replace("port: 30020", "port: 30021").replace("listenerPort: 2220", "listenerPort: 2221");
        let stream = format!("{MANIFEST}---\n{second}");
        let d = validate(&parse(&stream)).expect_err("a duplicate name").0;
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!((d[0].field.as_str(), d[0].pos), ("metadata.name", Pos { line: 34, column: 9 }));
        assert_eq!(d[0].message, "duplicate service name (`drop`)");
        assert_eq!(d[0].hint.as_deref(), Some("first defined at test.yaml:4:9"));
    }

    #[test]
    fn a_duplicate_across_files_names_the_first_file() {
        let other = MANIFEST.replace("name: drop", "name: other").replace("listenerPort: 2220", "listenerPort: 2221");
        let docs = load::parse_sources(&sources(&[("a.yaml", MANIFEST), ("b.yaml", &other)])).unwrap();
        let d = validate(&docs).expect_err("the same host port on one cluster").0;
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!((d[0].file.to_str(), d[0].field.as_str()), (Some("b.yaml"), "spec.port"));
        assert_eq!(d[0].message, "host port already used by another service on this cluster (`drop`)");
        assert_eq!(d[0].hint.as_deref(), Some("first defined at a.yaml:9:9"));
    }

    #[test]
    fn load_and_validate_reports_both_kinds_of_problem_together() {
        let broken = "apiVersion: [unclosed\n";
        let invalid = MANIFEST.replace("port: 30020", "port: 80");
        let Err(LoadError::Invalid(d)) = load_and_validate(&sources(&[("a.yaml", broken), ("b.yaml", &invalid)]))
        else {
            panic!("expected located problems");
        };
        let files: Vec<&str> = d.iter().map(|x| x.file.to_str().unwrap()).collect();
        assert_eq!(files, ["a.yaml", "b.yaml"]);
        assert_eq!(d.0[1].field, "spec.port");
    }
}
