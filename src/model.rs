//! The checked model: what [`crate::validate`] makes of a manifest and every later stage (render,
//! plan, status, the controller) reads. Plain data; the rules that produce it live in validate,
//! so render depends on this and not on validate.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::Serialize;

use crate::load::Origin;
use crate::names::Names;
use crate::sshkeys::ParsedKey;

/// A password hash: used to render the task definition, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Only validate makes one, from a value it checked.
    pub(crate) fn new(hash: String) -> Self {
        PasswordHash(hash)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

impl Serialize for PasswordHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: Option<u32>,
    pub directories: Vec<String>,
    pub keys: Vec<ParsedKey>,
    pub password_hash: Option<PasswordHash>,
    /// Where this user may log in from; empty: anywhere the service allows.
    pub allowed_cidrs: Vec<IpNet>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "mode")]
pub enum Storage {
    Efs { file_system_id: String, access_point_id: Option<String>, root_directory: String },
    HostPath { path: String },
    S3 { bucket: String, image: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum HostKeySource {
    /// Generated on first converge into the owned secret `sftp-operator/<name>/host-keys`, with
    /// an RSA key of `rsa_bits` (4096 or 3072; only when the secret is created).
    Generate { rsa_bits: u32 },
    /// A secret the user manages.
    Secret(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dns {
    /// Zone name (normalised, trailing dot) or hosted-zone id.
    pub zone: String,
    pub record: String,
    pub ttl: u32,
    pub sshfp: bool,
    pub public_record: Option<String>,
    pub public_zone: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AwsLogs {
    pub group: String,
    pub region: String,
    pub stream_prefix: String,
}

/// A checked, normalised SftpService: everything render and plan need, nothing they must re-check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Service {
    pub name: String,
    #[serde(skip)]
    pub origin: Origin,
    pub names: Names,
    pub labels: BTreeMap<String, String>,
    /// Cluster name (an ARN is reduced to its name so comparisons never flap).
    pub cluster: String,
    pub image: String,
    pub desired_count: u32,
    pub port: u16,
    pub cpu: u32,
    pub memory: u32,
    pub users: Vec<User>,
    pub storage: Storage,
    pub host_keys: HostKeySource,
    pub host_public_keys: Vec<ParsedKey>,
    pub execution_role_arn: Option<String>,
    pub task_role_arn: Option<String>,
    pub load_balancer_arn: String,
    pub listener_port: u16,
    pub idle_timeout: u32,
    pub security_group_id: String,
    /// Sorted, canonical, deduplicated.
    pub allowed_cidrs: Vec<IpNet>,
    pub namespace: Option<String>,
    pub dns: Option<Dns>,
    pub audit_log: bool,
    pub awslogs: Option<AwsLogs>,
    /// The probe account, when `spec.probe` enables it.
    pub probe: Option<Probe>,
    pub security: Security,
}

pub use crate::spec::CryptoPolicy;

/// sshd's policy, checked; `authentication` resolved (never `auto`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Security {
    pub policy: CryptoPolicy,
    pub authentication: AuthMethods,
    pub max_auth_tries: u32,
    pub login_grace_time_seconds: u32,
    pub max_startups: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthMethods {
    /// Keys only: passwords are never asked for.
    PublicKey,
    /// A key or a password (some user has only a password).
    PublicKeyOrPassword,
    /// A key, then the password.
    PublicKeyAndPassword,
}

/// The account `probe` and `run` log in as; no manifest user may take its name.
pub const PROBE_USER: &str = "sftp-probe";
/// The one directory in the probe's chroot it writes its test file into.
pub const PROBE_DIRECTORY: &str = "probe";
pub const DEFAULT_PROBE_UID: u32 = 59999;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub uid: u32,
    /// Where its key pair is kept (`sftp-operator/<name>/probe-key`).
    pub secret: String,
}
