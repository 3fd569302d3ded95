//! The `SftpService` manifest exactly as users write it: k8s-style, camelCase, unknown fields
//! rejected, documented defaults filled in. Nothing here is checked beyond its YAML type; the
//! rules live in [`crate::validate`], which turns a [`Manifest`] into a [`crate::model::Service`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "sftp-operator/v1alpha1";
pub const KIND: &str = "SftpService";
pub const DEFAULT_IMAGE: &str = "atmoz/sftp:alpine";

/// One `SftpService` document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "SftpService")]
pub struct Manifest {
    /// Must be `sftp-operator/v1alpha1`.
    pub api_version: String,
    /// Must be `SftpService`.
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// DNS label naming the ECS service, task family (`sftp-<name>`), target group and records.
    pub name: String,
    /// Copied onto every AWS resource as tags.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    /// ECS cluster name or ARN; must exist.
    pub cluster: String,
    /// Container image; defaults to `atmoz/sftp:alpine`.
    #[serde(default = "default_image")]
    pub image: String,
    /// Number of tasks; more than one spreads them over distinct instances (the host port is fixed).
    #[serde(default = "default_desired_count")]
    pub desired_count: u32,
    /// Static host port (bridge mode), 1024–32767: below ECS's ephemeral range.
    pub port: u32,
    /// CPU units reserved for the container.
    #[serde(default = "default_cpu")]
    pub cpu: u32,
    /// Memory (MiB) reserved for the container.
    #[serde(default = "default_memory")]
    pub memory: u32,
    pub users: Vec<User>,
    pub storage: Storage,
    #[serde(default)]
    pub host_keys: HostKeys,
    /// Lets ECS pull the image and read the host-key secret into the task.
    #[serde(default)]
    pub execution_role_arn: Option<String>,
    /// Role the task runs as; needed for `s3` storage.
    #[serde(default)]
    pub task_role_arn: Option<String>,
    pub load_balancer: LoadBalancer,
    pub access: Access,
    #[serde(default)]
    pub discovery: Option<Discovery>,
    #[serde(default)]
    pub dns: Option<Dns>,
    #[serde(default)]
    pub logging: Logging,
    /// Names of existing resources to manage under their own names (a setup made by hand or by
    /// another tool, adopted in place with `--adopt`); each defaults to the derived name.
    #[serde(default)]
    pub names: Option<NameOverrides>,
    /// An extra account, `sftp-probe`, that `sftp-operator probe` and `run` log in as to check
    /// the service end to end (connect, verify the host key, authenticate, write, read, delete).
    #[serde(default)]
    pub probe: Option<Probe>,
    /// sshd's policy: algorithms, how users authenticate, limits on failed logins.
    #[serde(default)]
    pub security: Security,
}

/// sshd's settings, put before atmoz's `sshd_config` by the task's prelude (no custom image).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Security {
    /// `modern` (default): the key exchanges, ciphers, MACs and host-key algorithms ssh-audit's
    /// hardened OpenSSH policy allows, and DH group-exchange moduli of 3072 bits or more.
    /// `compatible`: OpenSSH's defaults, as the image ships them, for old clients.
    #[serde(default)]
    pub policy: CryptoPolicy,
    /// `auto` (default): public keys only when no user has a `passwordHash`, else a key or a
    /// password. `publicKey`: keys only. `publicKeyAndPassword`: both, one after the other.
    #[serde(default)]
    pub authentication: Authentication,
    /// Failed authentications per connection before sshd drops it (1–10).
    #[serde(default = "default_max_auth_tries")]
    pub max_auth_tries: u32,
    /// Seconds a connection may take to authenticate (5–600).
    #[serde(default = "default_login_grace_time")]
    pub login_grace_time_seconds: u32,
    /// Unauthenticated connections at once, `start:rate:full` (sshd's `MaxStartups`): beyond
    /// `start`, new ones are dropped with `rate`% chance, all beyond `full`.
    #[serde(default = "default_max_startups")]
    pub max_startups: String,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            policy: CryptoPolicy::default(),
            authentication: Authentication::default(),
            max_auth_tries: default_max_auth_tries(),
            login_grace_time_seconds: default_login_grace_time(),
            max_startups: default_max_startups(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CryptoPolicy {
    #[default]
    Modern,
    Compatible,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Authentication {
    #[default]
    Auto,
    PublicKey,
    PublicKeyAndPassword,
}

/// The probe account: its own uid, one directory (`probe`) in its chroot and a key pair the
/// operator generates once into Secrets Manager. It can do nothing outside that directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    /// Whether the account exists (default true when the block is given).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The account's uid (and group), unique among the service's users, 1000–2147483647.
    #[serde(default = "default_probe_uid")]
    pub uid: u32,
}

/// Existing resources' names; unset ones are derived from `metadata.name`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NameOverrides {
    /// ECS service (default `<name>`): 1–255 letters, digits, `-` and `_`.
    #[serde(default)]
    pub ecs_service: Option<String>,
    /// Task-definition family (default `sftp-<name>`): 1–255 letters, digits, `-` and `_`.
    #[serde(default)]
    pub task_family: Option<String>,
    /// Target group (default `sftp-<name>`): 1–32 letters, digits and `-`, not starting or ending
    /// with `-`, not starting with `internal-`.
    #[serde(default)]
    pub target_group: Option<String>,
    /// Cloud Map service (default `<name>`): a DNS label.
    #[serde(default)]
    pub cloud_map_service: Option<String>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct User {
    /// atmoz user name: `[A-Za-z0-9._][A-Za-z0-9._-]{0,31}`, not starting with '.', not all
    /// digits, not an account the image has (`root`, `sshd`, `nobody`, ...).
    pub name: String,
    /// Unique within the service, 1000–2147483647.
    pub uid: u32,
    /// Primary group, 100–2147483647 (100 is `users`); files uploaded get it.
    #[serde(default)]
    pub gid: Option<u32>,
    /// Directories created in the (root-owned) chroot home; at least one, so uploads can land.
    /// Relative, no part starting with '.' (a user-owned `.ssh` would let the user add keys).
    #[serde(default)]
    pub directories: Vec<String>,
    /// OpenSSH public keys (`ssh-ed25519 AAAA... comment`).
    #[serde(default)]
    pub keys: Vec<String>,
    /// crypt(3) hash (`$6$...`, `$y$...`); plaintext passwords are refused.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Networks this user may log in from (sshd's `AllowUsers user@cidr`), each inside
    /// `spec.access.allowedCidrs`; empty: wherever the service is reachable from.
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
}

/// The password hash never reaches a `{:?}`.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("directories", &self.directories)
            .field("keys", &self.keys)
            .field("password_hash", &self.password_hash.as_ref().map(|_| "<redacted>"))
            .field("allowed_cidrs", &self.allowed_cidrs)
            .finish()
    }
}

/// Exactly one of `efs`, `hostPath`, `s3`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Storage {
    #[serde(default)]
    pub efs: Option<Efs>,
    /// A dedicated directory on the container instance (seed 1: EFS mounted on the host), at least
    /// two levels deep and outside the system directories (`/etc`, `/home`, `/var`, `/usr`, ...):
    /// the container writes each user's home there as root.
    #[serde(default)]
    pub host_path: Option<String>,
    #[serde(default)]
    pub s3: Option<S3>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Efs {
    pub file_system_id: String,
    #[serde(default)]
    pub access_point_id: Option<String>,
    #[serde(default = "default_root_directory")]
    pub root_directory: String,
}

/// S3 through goofys (seed 2): needs an image with goofys and a task role; runs privileged-ish
/// (SYS_ADMIN + MKNOD and `/dev/fuse`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3 {
    pub bucket: String,
    /// An atmoz-based image that also carries goofys.
    #[serde(default)]
    pub image: Option<String>,
    /// Role with read/write/delete on the bucket (or give `spec.taskRoleArn`).
    #[serde(default)]
    pub task_role_arn: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostKeys {
    /// Generate Ed25519 + RSA host keys once and keep them in Secrets Manager.
    #[serde(default = "default_true")]
    pub generate: bool,
    /// Size of the generated RSA host key: 4096 (what ssh-audit's hardened policy asks) or 3072
    /// (OpenSSH's default). Only a new secret
    /// uses it: existing host keys are never regenerated.
    #[serde(default = "default_rsa_bits")]
    pub rsa_bits: u32,
    /// Use an existing secret instead (JSON object of OpenSSH private keys).
    #[serde(default)]
    pub secret_arn: Option<String>,
    /// Public halves of the host keys, for SSHFP records and `known_hosts` without AWS access.
    #[serde(default)]
    pub public_keys: Vec<String>,
}

impl Default for HostKeys {
    fn default() -> Self {
        HostKeys { generate: true, rsa_bits: default_rsa_bits(), secret_arn: None, public_keys: Vec::new() }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancer {
    /// ARN of an existing network load balancer.
    pub arn: String,
    /// Static TCP listener port on the NLB.
    pub listener_port: u32,
    /// Seconds before the NLB drops an idle TCP flow (60–6000); its 350 s default cuts idle SFTP sessions.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Access {
    /// The container instances' security group.
    pub security_group_id: String,
    /// Client networks allowed on `port`; the NLB's subnets are added for health checks.
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    /// Required for `0.0.0.0/0` or `::/0`.
    #[serde(default)]
    pub allow_public: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Discovery {
    /// Cloud Map private DNS namespace (name or `ns-` id).
    pub namespace: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dns {
    /// Hosted zone (name or `Z...` id) for the direct record.
    pub zone: String,
    /// A record(s) = private IPs of the hosts running the task.
    pub record: String,
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// Publish SSHFP records for the host keys.
    #[serde(default)]
    pub sshfp: bool,
    /// Optional alias A record to the NLB.
    #[serde(default)]
    pub public_record: Option<String>,
    /// Zone for `publicRecord` when it differs from `zone`.
    #[serde(default)]
    pub public_zone: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logging {
    /// `LogLevel VERBOSE` in sshd: logins and key fingerprints in the container log.
    #[serde(default)]
    pub audit: bool,
    #[serde(default)]
    pub awslogs: Option<AwsLogs>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsLogs {
    pub group: String,
    pub region: String,
    #[serde(default = "default_stream_prefix")]
    pub stream_prefix: String,
}

fn default_image() -> String {
    DEFAULT_IMAGE.to_owned()
}
fn default_desired_count() -> u32 {
    1
}
fn default_cpu() -> u32 {
    256
}
fn default_memory() -> u32 {
    512
}
fn default_root_directory() -> String {
    "/".to_owned()
}
fn default_true() -> bool {
    true
}
fn default_rsa_bits() -> u32 {
    crate::sshkeys::DEFAULT_RSA_HOST_KEY_BITS
}
fn default_probe_uid() -> u32 {
    crate::model::DEFAULT_PROBE_UID
}
fn default_max_auth_tries() -> u32 {
    3
}
fn default_login_grace_time() -> u32 {
    30
}
fn default_max_startups() -> String {
    "10:30:60".to_owned()
}
fn default_idle_timeout() -> u32 {
    3600
}
fn default_ttl() -> u32 {
    60
}
fn default_stream_prefix() -> String {
    "sftp".to_owned()
}

/// JSON Schema of the manifest, for editors (yaml-language-server) and `sftp-operator schema`.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Manifest)).expect("schema serialises")
}

/// For a required field, the mapping (by its last path segment; "" for the document) that
/// must hold it: lets a "missing field" error point at the right mapping.
pub fn parent_of_required(field: &str) -> Option<&'static [&'static str]> {
    Some(match field {
        "apiVersion" | "kind" | "metadata" | "spec" => &[""],
        "name" => &["metadata", "users"],
        "cluster" | "port" | "users" | "storage" | "loadBalancer" | "access" => &["spec"],
        "uid" => &["users"],
        "fileSystemId" => &["efs"],
        "bucket" => &["s3"],
        "arn" | "listenerPort" => &["loadBalancer"],
        "securityGroupId" => &["access"],
        "namespace" => &["discovery"],
        "zone" | "record" => &["dns"],
        "group" | "region" => &["awslogs"],
        _ => return None,
    })
}
