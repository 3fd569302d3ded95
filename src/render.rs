//! Render: a validated [`Service`] → the AWS resources it should have, as plain data.
//! Pure and deterministic: the same service renders byte-for-byte the same, and a user or key
//! change touches only the key-delivery part of the task definition (and so its hash).
//!
//! Keys reach atmoz without a custom image through an `entryPoint` prelude in the atmoz
//! container: it writes the host private keys (from Secrets Manager through `secrets`, never
//! plain environment) and each user's public keys with mode 600, unsets the variables and
//! `exec`s atmoz's `/entrypoint`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{HostKeySource, Service, Storage, User};
use crate::names::{self, Names};

/// Everything one SftpService should own, before anything is looked up in AWS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Desired {
    pub service: String,
    pub names: Names,
    pub tags: BTreeMap<String, String>,
    pub task_definition: TaskDefinition,
    /// SHA-256 of the task definition's canonical JSON, kept as a tag on each revision: a new
    /// revision is registered only when this changes.
    pub task_definition_hash: String,
    pub ecs_service: EcsService,
    pub target_group: TargetGroup,
    pub listener: Listener,
    pub load_balancer_arn: String,
    pub security_group_id: String,
    /// Rules for the allowed CIDRs; the NLB's subnet CIDRs are added once the NLB is observed.
    pub ingress: Vec<IngressRule>,
    pub cloud_map: Option<CloudMapService>,
    /// The owned host-key secret, when the operator generates the keys.
    pub host_key_secret: Option<String>,
    /// RSA size of the keys generated when `host_key_secret` is created. Not serialised (nor in
    /// any hash): it changes nothing once the secret exists, as host keys are never regenerated.
    #[serde(skip)]
    pub host_key_rsa_bits: u32,
    /// Records known without AWS: ownership TXT and SSHFP. A records need live placement.
    pub dns_records: Vec<DnsRecord>,
    /// The `dns` block, for the planner (A records follow live placement).
    pub dns: Option<crate::model::Dns>,
    /// The probe account, when enabled: where its key pair is kept, and the pair itself when
    /// this pass generated it (the secret does not exist yet).
    #[serde(skip)]
    pub probe: Option<DesiredProbe>,
    /// Host public keys given in the manifest (generated keys are read from the secret).
    #[serde(skip)]
    pub host_public_keys: Vec<crate::sshkeys::ParsedKey>,
    pub key_fingerprints: Vec<KeyFingerprint>,
    /// SHA-256 of what the ECS service vouches for once it is applied (the task definition,
    /// target group, listener, Cloud Map service, the service itself and the tags): carried as
    /// [`crate::names::RENDERING_TAG`]. Rules and records are read in full on every pass and
    /// are not part of it.
    #[serde(skip)]
    pub rendering_hash: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DesiredProbe {
    pub secret: String,
    /// Generated in this pass, to be stored by CreateSecret before the task definition that
    /// authorises it is registered.
    pub new_key: Option<crate::sshkeys::ProbeKeyPair>,
}

impl Eq for DesiredProbe {}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyFingerprint {
    pub user: String,
    pub algorithm: String,
    pub fingerprint: String,
    pub comment: String,
}

// ---- ECS task definition: shaped like RegisterTaskDefinition's input ----

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinition {
    pub family: String,
    pub network_mode: String,
    pub requires_compatibilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    pub container_definitions: Vec<ContainerDefinition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDefinition {
    pub name: String,
    pub image: String,
    pub essential: bool,
    pub cpu: u32,
    pub memory: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry_point: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<KeyValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_points: Vec<MountPoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_parameters: Option<LinuxParameters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_configuration: Option<LogConfiguration>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub container_port: u16,
    pub host_port: u16,
    pub protocol: String,
}

#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyValue {
    pub name: String,
    pub value: String,
}

/// A password hash's value never reaches a `{:?}` (of a Desired, a Plan's ops, a log line).
impl std::fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.name.starts_with(PASSWORD_HASH_ENV) { "<redacted>" } else { self.value.as_str() };
        f.debug_struct("KeyValue").field("name", &self.name).field("value", &value).finish()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    pub name: String,
    pub value_from: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountPoint {
    pub source_volume: String,
    pub container_path: String,
    pub read_only: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxParameters {
    pub capabilities_add: Vec<String>,
    pub devices: Vec<Device>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub host_path: String,
    pub container_path: String,
    pub permissions: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogConfiguration {
    pub log_driver: String,
    pub options: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_source_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efs: Option<EfsVolume>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EfsVolume {
    pub file_system_id: String,
    pub root_directory: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_point_id: Option<String>,
    pub transit_encryption: bool,
}

// ---- ECS service, load balancing, network, discovery, DNS ----

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EcsService {
    pub name: String,
    pub cluster: String,
    pub desired_count: u32,
    pub launch_type: String,
    pub container_name: String,
    pub container_port: u16,
    /// Host port is fixed, so an old task must stop before a new one can start on that host.
    pub minimum_healthy_percent: u32,
    pub maximum_percent: u32,
    pub circuit_breaker_rollback: bool,
    /// `distinctInstance` when more than one task runs (the host port is fixed).
    pub distinct_instance: bool,
    pub health_check_grace_period_seconds: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroup {
    pub name: String,
    pub protocol: String,
    pub port: u16,
    pub target_type: String,
    pub health_check: HealthCheck,
    pub deregistration_delay_seconds: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub protocol: String,
    pub port: String,
    pub interval_seconds: i32,
    pub healthy_threshold: i32,
    pub unhealthy_threshold: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    pub port: u16,
    pub protocol: String,
    pub idle_timeout_seconds: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressRule {
    pub protocol: String,
    pub port: u16,
    pub cidr: String,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudMapService {
    pub name: String,
    pub namespace: String,
    pub srv_ttl: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsRecord {
    /// Zone name (trailing dot) or id, as validated.
    pub zone: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub ttl: u32,
    pub values: Vec<String>,
}

/// The tags every owned resource carries: the manifest's labels plus ownership.
pub fn tags(service: &Service, owner: &str) -> BTreeMap<String, String> {
    let mut t = service.labels.clone();
    t.insert(names::OWNER_TAG.to_owned(), owner.to_owned());
    t.insert(names::SERVICE_TAG.to_owned(), service.name.clone());
    t
}

/// The prelude that runs before atmoz's `/entrypoint` (see the module docs).
///
/// - `umask 022`: it is inherited by atmoz's scripts and by sshd, so uploads get atmoz's stock
///   modes (directories 0755, files 0644) and a shared `gid` can read them.
/// - Public keys go to `/etc/ssh/authorized_keys/<user>` (root-owned, in the container's own
///   filesystem, outside every chroot) and sshd reads only those: a logged-in user can change
///   nothing about who logs in, and nothing in a persistent `/home` is trusted.
/// - A user's keys come from `SFTP_AUTHORIZED_KEYS_<n>`, `n` being the user's position in
///   `SFTP_MANAGED_USERS`: a user name or path never comes from key text.
/// - Password hashes go to a root-only file that a `/etc/sftp.d` hook feeds to `chpasswd -e` once
///   atmoz has created the users (atmoz logs the user list it is given, so they are not in it).
/// - Keys that earlier releases left in `/home/<user>/.ssh` are removed (that directory was root
///   0700, which locked every key user out).
/// - sshd's settings are put before atmoz's `sshd_config` (the first value wins), rebuilt from a
///   pristine copy, so a restarted container does not stack them.
pub const PRELUDE: &str = r#"set -eu
umask 022
put_host_key() {
  [ -n "$2" ] || return 0
  (umask 077 && printf '%s\n' "$2" > "/etc/ssh/ssh_host_$1_key")
  ssh-keygen -y -f "/etc/ssh/ssh_host_$1_key" > "/etc/ssh/ssh_host_$1_key.pub"
}
put_host_key ed25519 "${SFTP_HOST_KEY_ED25519:-}"
put_host_key rsa "${SFTP_HOST_KEY_RSA:-}"
unset SFTP_HOST_KEY_ED25519 SFTP_HOST_KEY_RSA
mkdir -p /etc/ssh/authorized_keys
chmod 755 /etc/ssh/authorized_keys
i=0
for u in $SFTP_MANAGED_USERS; do
  i=$((i + 1))
  rm -rf "/home/$u/.ssh/keys" "/home/$u/.ssh/authorized_keys" "/home/$u/.ssh/authorized_keys2"
  rmdir "/home/$u/.ssh" 2>/dev/null || :
  printenv "SFTP_AUTHORIZED_KEYS_$i" > "/etc/ssh/authorized_keys/$u" || :
  chmod 644 "/etc/ssh/authorized_keys/$u"
  if h=$(printenv "SFTP_PASSWORD_HASH_$i"); then
    (umask 077 && printf '%s:%s\n' "$u" "$h" >> /etc/sftp-operator-passwords)
  fi
  unset "SFTP_AUTHORIZED_KEYS_$i" "SFTP_PASSWORD_HASH_$i"
done
unset SFTP_MANAGED_USERS h
mkdir -p /etc/sftp.d
if [ -f /etc/sftp-operator-passwords ]; then
  printf '%s\n' '#!/bin/sh' 'chpasswd -e < /etc/sftp-operator-passwords && rm -f /etc/sftp-operator-passwords' \
    > /etc/sftp.d/40-passwords
  chmod 700 /etc/sftp.d/40-passwords
fi
[ -f /etc/ssh/sshd_config.atmoz ] || cp /etc/ssh/sshd_config /etc/ssh/sshd_config.atmoz
{
  echo 'AuthorizedKeysFile /etc/ssh/authorized_keys/%u'
  if [ "${SFTP_AUDIT_LOG:-0}" = 1 ]; then echo 'LogLevel VERBOSE'; fi
  if [ -n "${SFTP_SSHD_CONFIG:-}" ]; then printf '%s\n' "$SFTP_SSHD_CONFIG"; fi
  # Our HostKey lines (when given) replace atmoz's: their order is the order sshd offers them in.
  if printf '%s\n' "${SFTP_SSHD_CONFIG:-}" | grep -q '^HostKey '; then
    grep -v '^HostKey ' /etc/ssh/sshd_config.atmoz
  else
    cat /etc/ssh/sshd_config.atmoz
  fi
  if [ -n "${SFTP_SSHD_MATCH:-}" ]; then printf '%s\n' "$SFTP_SSHD_MATCH"; fi
} > /etc/ssh/sshd_config
if [ -n "${SFTP_MODULI_MIN:-}" ] && [ -f /etc/ssh/moduli ]; then
  [ -f /etc/ssh/moduli.atmoz ] || cp /etc/ssh/moduli /etc/ssh/moduli.atmoz
  awk -v min="$SFTP_MODULI_MIN" '$5 + 0 >= min + 0' /etc/ssh/moduli.atmoz > /etc/ssh/moduli
fi
unset SFTP_SSHD_CONFIG SFTP_SSHD_MATCH SFTP_MODULI_MIN
if [ -n "${SFTP_S3_BUCKET:-}" ]; then
  cat > /etc/sftp.d/50-goofys <<'EOF'
#!/bin/sh
set -eu
for entry in $SFTP_S3_MOUNTS; do
  u=${entry%%:*}; rest=${entry#*:}; ids=${rest%%:*}; dir=${rest#*:}
  goofys -o allow_other --uid "${ids%/*}" --gid "${ids#*/}" --file-mode=0660 --dir-mode=0770 \
    "$SFTP_S3_BUCKET:$u" "/home/$u/$dir"
done
EOF
  chmod 700 /etc/sftp.d/50-goofys
fi
exec /entrypoint "$@"
"#;

/// The atmoz user list: `user::uid:gid:dir1,dir2`, space-separated, in manifest order. The
/// password field stays empty: atmoz's `create-sftp-user` logs its whole argument, so hashes reach
/// the users through `SFTP_PASSWORD_HASH_<n>` and the prelude's hook instead.
pub fn atmoz_users(users: &[User]) -> String {
    users
        .iter()
        .map(|u| {
            let gid = u.gid.map(|g| g.to_string()).unwrap_or_default();
            format!("{}::{}:{}:{}", u.name, u.uid, gid, u.directories.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Environment variables holding a password hash: shown as `<redacted>` wherever they are printed.
pub const PASSWORD_HASH_ENV: &str = "SFTP_PASSWORD_HASH_";

/// `<prefix><n>` for each user that `value` gives something for, `n` being the user's 1-based
/// position in `SFTP_MANAGED_USERS`: the prelude finds a user's values by position, so no value
/// can name a user.
fn per_user(users: &[User], prefix: &str, value: impl Fn(&User) -> Option<String>) -> Vec<KeyValue> {
    let named = |(i, u): (usize, &User)| Some(KeyValue { name: format!("{prefix}{}", i + 1), value: value(u)? });
    users.iter().enumerate().filter_map(named).collect()
}

/// Each user's `authorized_keys` lines, sorted so reordering keys in the manifest changes nothing.
fn authorized_keys(users: &[User]) -> Vec<KeyValue> {
    per_user(users, "SFTP_AUTHORIZED_KEYS_", |u| {
        let mut lines: Vec<String> = u.keys.iter().map(|k| k.line()).collect();
        lines.sort();
        (!lines.is_empty()).then(|| lines.join("\n"))
    })
}

/// Each password user's hash.
fn password_hashes(users: &[User], redact: bool) -> Vec<KeyValue> {
    per_user(users, PASSWORD_HASH_ENV, |u| {
        let hash = u.password_hash.as_ref()?;
        Some(if redact { "<redacted>".to_owned() } else { hash.expose().to_owned() })
    })
}

/// Partition, region and account of the load balancer: the host-key secret lives beside it.
fn arn_parts(arn: &str) -> (&str, &str, &str) {
    let mut it = arn.split(':');
    let _ = it.next();
    let partition = it.next().unwrap_or("aws");
    let _ = it.next();
    let region = it.next().unwrap_or("");
    let account = it.next().unwrap_or("");
    (partition, region, account)
}

/// The ARN (without Secrets Manager's random suffix, which ECS and GetSecretValue accept) of
/// the secret holding the host keys.
pub fn host_key_secret_arn(s: &Service) -> String {
    match &s.host_keys {
        HostKeySource::Secret(arn) => arn.clone(),
        HostKeySource::Generate { .. } => {
            let (partition, region, account) = arn_parts(&s.load_balancer_arn);
            format!("arn:{partition}:secretsmanager:{region}:{account}:secret:{}", s.names.host_key_secret)
        }
    }
}

/// The ECS cluster's ARN, in the load balancer's partition, region and account.
pub fn cluster_arn(s: &Desired) -> String {
    let (partition, region, account) = arn_parts(&s.load_balancer_arn);
    format!("arn:{partition}:ecs:{region}:{account}:cluster/{}", s.ecs_service.cluster)
}

const HOME_VOLUME: &str = "sftp-home";

pub fn task_definition(s: &Service, redact: bool) -> TaskDefinition {
    let Mounted { image, volumes, mount_points, linux_parameters, environment: storage_environment } = mounted(s);
    let mut environment = environment(s, redact);
    environment.extend(storage_environment);
    environment.sort();
    TaskDefinition {
        family: s.names.task_family.clone(),
        network_mode: "bridge".into(),
        requires_compatibilities: vec!["EC2".into()],
        execution_role_arn: s.execution_role_arn.clone(),
        task_role_arn: s.task_role_arn.clone(),
        container_definitions: vec![ContainerDefinition {
            name: names::CONTAINER_NAME.into(),
            image,
            essential: true,
            cpu: s.cpu,
            memory: s.memory,
            port_mappings: vec![PortMapping { container_port: 22, host_port: s.port, protocol: "tcp".into() }],
            entry_point: vec!["/bin/sh".into(), "-c".into(), PRELUDE.into(), "sftp-operator-prelude".into()],
            command: vec![],
            environment,
            secrets: host_key_secrets(s),
            mount_points,
            linux_parameters,
            log_configuration: log_configuration(s),
        }],
        volumes,
    }
}

/// The users for atmoz and the prelude, their keys and password hashes, the audit switch.
fn environment(s: &Service, redact: bool) -> Vec<KeyValue> {
    let mut environment = vec![
        KeyValue { name: "SFTP_USERS".into(), value: atmoz_users(&s.users) },
        KeyValue {
            name: "SFTP_MANAGED_USERS".into(),
            value: s.users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>().join(" "),
        },
    ];
    environment.extend(authorized_keys(&s.users));
    environment.extend(password_hashes(&s.users, redact));
    if s.audit_log {
        environment.push(KeyValue { name: "SFTP_AUDIT_LOG".into(), value: "1".into() });
    }
    let sshd = sshd_settings(s);
    environment.push(KeyValue { name: "SFTP_SSHD_CONFIG".into(), value: sshd.first.join("\n") });
    if !sshd.last.is_empty() {
        environment.push(KeyValue { name: "SFTP_SSHD_MATCH".into(), value: sshd.last.join("\n") });
    }
    if let Some(bits) = sshd.moduli_min {
        environment.push(KeyValue { name: "SFTP_MODULI_MIN".into(), value: bits.to_string() });
    }
    environment
}

/// ssh-audit's hardened OpenSSH choices (its policy for the image's OpenSSH 9.2, which later
/// releases keep): every name exists in OpenSSH 9.2 and later, so one list serves both images.
const MODERN_KEX: &str = "sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,\
diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group-exchange-sha256";
const MODERN_CIPHERS: &str =
    "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-ctr";
const MODERN_MACS: &str = "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,umac-128-etm@openssh.com";
/// In ssh-audit's order (a client picks by its own preference: OpenSSH's takes Ed25519 first).
const MODERN_HOST_KEY_ALGORITHMS: &str = "rsa-sha2-512,rsa-sha2-256,ssh-ed25519";
/// Group-exchange moduli below 3072 bits are dropped (the moduli file's size column is the
/// bit length minus one).
const MODERN_MODULI_MIN: u32 = 3071;

/// sshd settings the prelude writes: `first` before atmoz's `sshd_config` (the first value of a
/// keyword wins; `AllowUsers` lines add up), `last` after it (`Match` blocks end a config).
struct SshdSettings {
    first: Vec<String>,
    last: Vec<String>,
    moduli_min: Option<u32>,
}

fn sshd_settings(s: &Service) -> SshdSettings {
    use crate::model::AuthMethods;
    let sec = &s.security;
    let mut first = Vec::new();
    if sec.policy == crate::model::CryptoPolicy::Modern {
        first.push(format!("KexAlgorithms {MODERN_KEX}"));
        first.push(format!("Ciphers {MODERN_CIPHERS}"));
        first.push(format!("MACs {MODERN_MACS}"));
        first.push(format!("HostKeyAlgorithms {MODERN_HOST_KEY_ALGORITHMS}"));
        // sshd offers its keys in the order they are loaded: RSA first, as ssh-audit's policy lists them.
        first.push("HostKey /etc/ssh/ssh_host_rsa_key".into());
        first.push("HostKey /etc/ssh/ssh_host_ed25519_key".into());
    }
    match sec.authentication {
        AuthMethods::PublicKey => {
            first.push("PasswordAuthentication no".into());
            first.push("KbdInteractiveAuthentication no".into());
            first.push("AuthenticationMethods publickey".into());
        }
        AuthMethods::PublicKeyOrPassword => first.push("KbdInteractiveAuthentication no".into()),
        AuthMethods::PublicKeyAndPassword => {
            first.push("KbdInteractiveAuthentication no".into());
            first.push("AuthenticationMethods publickey,password".into());
        }
    }
    first.push(format!("MaxAuthTries {}", sec.max_auth_tries));
    first.push(format!("LoginGraceTime {}", sec.login_grace_time_seconds));
    first.push(format!("MaxStartups {}", sec.max_startups));
    // Once one user has networks, sshd admits only users an AllowUsers line names: every user
    // gets one, with their networks or from anywhere.
    if s.users.iter().any(|u| !u.allowed_cidrs.is_empty()) {
        for u in &s.users {
            let patterns: Vec<String> = if u.allowed_cidrs.is_empty() {
                vec![u.name.clone()]
            } else {
                u.allowed_cidrs.iter().map(|net| format!("{}@{net}", u.name)).collect()
            };
            first.push(format!("AllowUsers {}", patterns.join(" ")));
        }
    }
    let mut last = Vec::new();
    if sec.authentication == AuthMethods::PublicKeyAndPassword && s.probe.is_some() {
        // The probe account has no password: it logs in with its key alone.
        last.push(format!("Match User {}", crate::model::PROBE_USER));
        last.push("  AuthenticationMethods publickey".into());
    }
    let gex = sec.policy == crate::model::CryptoPolicy::Modern;
    SshdSettings { first, last, moduli_min: gex.then_some(MODERN_MODULI_MIN) }
}

/// The host keys, read by ECS from Secrets Manager into the prelude's variables.
fn host_key_secrets(s: &Service) -> Vec<SecretRef> {
    let secret = host_key_secret_arn(s);
    vec![
        SecretRef { name: "SFTP_HOST_KEY_ED25519".into(), value_from: format!("{secret}:ed25519::") },
        SecretRef { name: "SFTP_HOST_KEY_RSA".into(), value_from: format!("{secret}:rsa::") },
    ]
}

fn log_configuration(s: &Service) -> Option<LogConfiguration> {
    s.awslogs.as_ref().map(|l| LogConfiguration {
        log_driver: "awslogs".into(),
        options: BTreeMap::from([
            ("awslogs-group".into(), l.group.clone()),
            ("awslogs-region".into(), l.region.clone()),
            ("awslogs-stream-prefix".into(), l.stream_prefix.clone()),
        ]),
    })
}

/// What the storage mode puts into the task definition.
struct Mounted {
    image: String,
    volumes: Vec<Volume>,
    mount_points: Vec<MountPoint>,
    linux_parameters: Option<LinuxParameters>,
    environment: Vec<KeyValue>,
}

impl Mounted {
    /// `volume` mounted as `/home` in the service's image.
    fn home(s: &Service, volume: Volume) -> Mounted {
        Mounted {
            image: s.image.clone(),
            mount_points: vec![MountPoint {
                source_volume: volume.name.clone(),
                container_path: "/home".into(),
                read_only: false,
            }],
            volumes: vec![volume],
            linux_parameters: None,
            environment: vec![],
        }
    }
}

fn mounted(s: &Service) -> Mounted {
    match &s.storage {
        Storage::Efs { file_system_id, access_point_id, root_directory } => Mounted::home(
            s,
            Volume {
                name: HOME_VOLUME.into(),
                host_source_path: None,
                efs: Some(EfsVolume {
                    file_system_id: file_system_id.clone(),
                    // With an access point, EFS requires the root directory to be "/".
                    root_directory: if access_point_id.is_some() { "/".into() } else { root_directory.clone() },
                    access_point_id: access_point_id.clone(),
                    transit_encryption: true,
                }),
            },
        ),
        Storage::HostPath { path } => {
            Mounted::home(s, Volume { name: HOME_VOLUME.into(), host_source_path: Some(path.clone()), efs: None })
        }
        Storage::S3 { bucket, image } => mounted_s3(s, bucket, image),
    }
}

/// The bucket through goofys (FUSE), mounted by the image's hook into each user's first directory.
fn mounted_s3(s: &Service, bucket: &str, image: &str) -> Mounted {
    let mounts = s
        .users
        .iter()
        .map(|u| format!("{}:{}/{}:{}", u.name, u.uid, u.gid.unwrap_or(u.uid), u.directories[0]))
        .collect::<Vec<_>>()
        .join(" ");
    Mounted {
        image: image.to_owned(),
        volumes: vec![],
        mount_points: vec![],
        linux_parameters: Some(LinuxParameters {
            capabilities_add: vec!["MKNOD".into(), "SYS_ADMIN".into()],
            devices: vec![Device {
                host_path: "/dev/fuse".into(),
                container_path: "/dev/fuse".into(),
                permissions: vec!["read".into(), "write".into(), "mknod".into()],
            }],
        }),
        environment: vec![
            KeyValue { name: "SFTP_S3_BUCKET".into(), value: bucket.to_owned() },
            KeyValue { name: "SFTP_S3_MOUNTS".into(), value: mounts },
        ],
    }
}

/// Hash of the canonical JSON of a task definition (unredacted: a hash change must roll the
/// service; the hash itself reveals nothing).
pub fn task_definition_hash(td: &TaskDefinition) -> String {
    let json = serde_json::to_vec(td).expect("task definition serialises");
    hex::encode(&Sha256::digest(&json)[..16])
}

/// [`render`] with the probe account among the users once its public key is known (from its
/// secret, or generated in this pass: `new_key`). Without a key the account is left out.
pub fn render_probed(
    s: &Service,
    owner: &str,
    key: Option<&crate::sshkeys::ParsedKey>,
    new_key: Option<crate::sshkeys::ProbeKeyPair>,
) -> Desired {
    let (Some(p), Some(key)) = (&s.probe, key) else { return render(s, owner) };
    let mut with_probe = s.clone();
    with_probe.users.push(User {
        name: crate::model::PROBE_USER.into(),
        uid: p.uid,
        gid: Some(p.uid),
        directories: vec![crate::model::PROBE_DIRECTORY.into()],
        keys: vec![key.clone()],
        password_hash: None,
        allowed_cidrs: Vec::new(),
    });
    let mut d = render(&with_probe, owner);
    d.probe = Some(DesiredProbe { secret: p.secret.clone(), new_key });
    d
}

pub fn render(s: &Service, owner: &str) -> Desired {
    let td = task_definition(s, false);
    let task_definition_hash = task_definition_hash(&td);
    let mut d = Desired {
        service: s.name.clone(),
        names: s.names.clone(),
        tags: tags(s, owner),
        task_definition: td,
        task_definition_hash,
        ecs_service: ecs_service(s),
        target_group: target_group(s),
        listener: Listener { port: s.listener_port, protocol: "TCP".into(), idle_timeout_seconds: s.idle_timeout },
        load_balancer_arn: s.load_balancer_arn.clone(),
        security_group_id: s.security_group_id.clone(),
        ingress: ingress(s, owner),
        cloud_map: s.namespace.as_ref().map(|ns| CloudMapService {
            name: s.names.cloud_map_service.clone(),
            namespace: ns.clone(),
            srv_ttl: 10,
        }),
        host_key_secret: matches!(s.host_keys, HostKeySource::Generate { .. }).then(|| s.names.host_key_secret.clone()),
        host_key_rsa_bits: match s.host_keys {
            HostKeySource::Generate { rsa_bits } => rsa_bits,
            HostKeySource::Secret(_) => crate::sshkeys::DEFAULT_RSA_HOST_KEY_BITS,
        },
        dns_records: dns_records(s, owner),
        dns: s.dns.clone(),
        probe: s.probe.as_ref().map(|p| DesiredProbe { secret: p.secret.clone(), new_key: None }),
        host_public_keys: s.host_public_keys.clone(),
        key_fingerprints: key_fingerprints(s),
        rendering_hash: String::new(),
    };
    d.rendering_hash = rendering_hash(&d);
    d
}

/// See [`Desired::rendering_hash`].
fn rendering_hash(d: &Desired) -> String {
    let vouched = serde_json::json!([
        d.names,
        d.tags,
        d.task_definition_hash,
        d.ecs_service,
        d.target_group,
        d.listener,
        d.load_balancer_arn,
        d.cloud_map,
        d.host_key_secret,
    ]);
    hex::encode(&Sha256::digest(vouched.to_string().as_bytes())[..16])
}

fn ecs_service(s: &Service) -> EcsService {
    ecs_service_named(s.names.ecs_service.clone(), s.cluster.clone(), s.desired_count)
}

/// The ECS service every SftpService gets, by its name, cluster and task count (shared with the
/// plan tests, so they plan against what render makes).
pub fn ecs_service_named(name: String, cluster: String, desired_count: u32) -> EcsService {
    EcsService {
        name,
        cluster,
        desired_count,
        launch_type: "EC2".into(),
        container_name: names::CONTAINER_NAME.into(),
        container_port: 22,
        minimum_healthy_percent: 0,
        maximum_percent: 100,
        circuit_breaker_rollback: true,
        distinct_instance: desired_count > 1,
        health_check_grace_period_seconds: 30,
    }
}

fn target_group(s: &Service) -> TargetGroup {
    tcp_target_group(s.names.target_group.clone(), s.port)
}

/// The TCP target group every service gets: instance targets on the host port, TCP checks.
pub(crate) fn tcp_target_group(name: String, port: u16) -> TargetGroup {
    TargetGroup {
        name,
        protocol: "TCP".into(),
        port,
        target_type: "instance".into(),
        health_check: HealthCheck {
            protocol: "TCP".into(),
            port: "traffic-port".into(),
            interval_seconds: 10,
            healthy_threshold: 3,
            unhealthy_threshold: 3,
        },
        deregistration_delay_seconds: 30,
    }
}

/// One rule per allowed CIDR on the host port, marked as ours in its description.
fn ingress(s: &Service, owner: &str) -> Vec<IngressRule> {
    let description = crate::codec::rule_description(owner, &s.name);
    s.allowed_cidrs
        .iter()
        .map(|c| IngressRule {
            protocol: "tcp".into(),
            port: s.port,
            cidr: c.to_string(),
            description: description.clone(),
        })
        .collect()
}

/// The ownership TXT records beside each name the service publishes, and SSHFP when asked for.
fn dns_records(s: &Service, owner: &str) -> Vec<DnsRecord> {
    let mut dns_records = Vec::new();
    if let Some(d) = &s.dns {
        let owner_txt = crate::codec::txt_owner_value(owner, &s.name);
        let mut owned = vec![(d.zone.clone(), d.record.clone())];
        if let Some(p) = &d.public_record {
            owned.push((d.public_zone.clone().unwrap_or_else(|| d.zone.clone()), p.clone()));
        }
        for (zone, name) in owned {
            dns_records.push(DnsRecord { zone, name, kind: "TXT".into(), ttl: d.ttl, values: vec![owner_txt.clone()] });
        }
        if d.sshfp && !s.host_public_keys.is_empty() {
            dns_records.push(DnsRecord {
                zone: d.zone.clone(),
                name: d.record.clone(),
                kind: "SSHFP".into(),
                ttl: d.ttl,
                values: sshfp_values(&s.host_public_keys),
            });
        }
    }
    dns_records.sort();
    dns_records
}

fn key_fingerprints(s: &Service) -> Vec<KeyFingerprint> {
    s.users
        .iter()
        .flat_map(|u| {
            u.keys.iter().map(|k| KeyFingerprint {
                user: u.name.clone(),
                algorithm: k.algorithm.clone(),
                fingerprint: k.fingerprint.clone(),
                comment: k.comment.clone(),
            })
        })
        .collect()
}

/// SSHFP rdata (`alg 2 sha256hex`) for each host key with a known SSHFP algorithm, sorted.
pub fn sshfp_values(keys: &[crate::sshkeys::ParsedKey]) -> Vec<String> {
    let mut v: Vec<String> =
        keys.iter().filter_map(|k| k.sshfp_algorithm.map(|a| format!("{a} 2 {}", k.sha256_hex))).collect();
    v.sort();
    v.dedup();
    v
}

/// The output of `render`: desired resources with password hashes replaced, safe to print.
pub fn render_for_display(s: &Service, owner: &str) -> Desired {
    let mut d = render(s, owner);
    d.task_definition = task_definition(s, true);
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::{MANIFEST, service};

    const OWNER: &str = "owner-1";
    const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:sftp/host-keys-AbCdEf";

    fn container(td: &TaskDefinition) -> &ContainerDefinition {
        assert_eq!(td.container_definitions.len(), 1);
        &td.container_definitions[0]
    }

    fn env<'a>(c: &'a ContainerDefinition, name: &str) -> Option<&'a str> {
        c.environment.iter().find(|kv| kv.name == name).map(|kv| kv.value.as_str())
    }

    #[test]
    fn the_environment_names_users_by_position_and_sorts() {
        let td = task_definition(&service(MANIFEST), false);
        let c = container(&td);
        let names: Vec<&str> = c.environment.iter().map(|kv| kv.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "SFTP_AUTHORIZED_KEYS_1",
                "SFTP_MANAGED_USERS",
                "SFTP_MODULI_MIN",
                "SFTP_PASSWORD_HASH_2",
                "SFTP_SSHD_CONFIG",
                "SFTP_USERS"
            ]
        );
        assert_eq!(env(c, "SFTP_USERS"), Some("alice::1001::upload bob::1002:100:upload,shared/in"));
        assert_eq!(env(c, "SFTP_MANAGED_USERS"), Some("alice bob"));
        assert_eq!(env(c, "SFTP_PASSWORD_HASH_2"), Some("$6$salt$hash"));
        let keys = env(c, "SFTP_AUTHORIZED_KEYS_1").unwrap();
        assert!(keys.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINvzrb"), "{keys}");
    }

    #[test]
    fn password_hashes_are_redacted_for_display_only() {
        let s = service(MANIFEST);
        assert_eq!(env(container(&task_definition(&s, true)), "SFTP_PASSWORD_HASH_2"), Some("<redacted>"));
        let shown = render_for_display(&s, OWNER);
        assert_eq!(env(container(&shown.task_definition), "SFTP_PASSWORD_HASH_2"), Some("<redacted>"));
        assert_eq!(shown.task_definition_hash, render(&s, OWNER).task_definition_hash, "the hash is of the real one");
    }

    #[test]
    fn debug_output_never_shows_a_password_hash() {
        let s = service(MANIFEST);
        let desired = render(&s, OWNER);
        assert!(env(container(&desired.task_definition), "SFTP_PASSWORD_HASH_2").is_some_and(|v| v.starts_with("$6$")));
        assert!(!format!("{desired:?}").contains("$6$"));
    }

    fn sshd_lines(text: &str) -> (Vec<String>, Vec<String>) {
        let s = service(text);
        let SshdSettings { first, last, .. } = sshd_settings(&s);
        (first, last)
    }

    #[test]
    fn the_modern_policy_and_key_only_logins_are_the_defaults_without_passwords() {
        let keyed = MANIFEST.replace(
            "      passwordHash: $6$salt$hash\n",
            "      keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINvzrb/pQTV0amUyWyMEWMB38bM1teRm7QEI4+smhNXc bob\"]\n",
        );
        let (first, last) = sshd_lines(&keyed);
        assert!(
            first[0].starts_with("KexAlgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256,"),
            "{first:?}"
        );
        assert!(first.contains(&"AuthenticationMethods publickey".to_owned()), "{first:?}");
        assert!(first.contains(&"PasswordAuthentication no".to_owned()));
        assert!(!first.iter().any(|l| l.starts_with("AllowUsers")), "no user has networks: no AllowUsers");
        assert!(last.is_empty());
        assert_eq!(sshd_settings(&service(&keyed)).moduli_min, Some(3071));

        // bob has only a password: either method, and the compatible policy keeps OpenSSH's lists.
        let text = MANIFEST.replace("  access:\n", "  security: {policy: compatible, maxAuthTries: 2}\n  access:\n");
        let (first, _) = sshd_lines(&text);
        assert_eq!(
            first,
            ["KbdInteractiveAuthentication no", "MaxAuthTries 2", "LoginGraceTime 30", "MaxStartups 10:30:60"]
        );
        assert_eq!(sshd_settings(&service(&text)).moduli_min, None);
    }

    #[test]
    fn a_users_networks_list_every_user_and_both_methods_spare_the_probe() {
        let text = MANIFEST
            .replace("      directories: [upload]\n", "      directories: [upload]\n      allowedCidrs: [198.51.100.0/25]\n")
            .replace("  access:\n", "  security: {authentication: publicKeyAndPassword}\n  probe: {}\n  access:\n")
            .replace("      passwordHash: $6$salt$hash\n", "      passwordHash: $6$salt$hash\n      keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINvzrb/pQTV0amUyWyMEWMB38bM1teRm7QEI4+smhNXc bob\"]\n")
            .replace("      keys:\n        - ssh-ed25519", "      passwordHash: $6$salt$hash\n      keys:\n        - ssh-ed25519");
        let (first, last) = sshd_lines(&text);
        let allow: Vec<&String> = first.iter().filter(|l| l.starts_with("AllowUsers")).collect();
        assert_eq!(allow, ["AllowUsers alice@198.51.100.0/25", "AllowUsers bob"]);
        assert!(first.contains(&"AuthenticationMethods publickey,password".to_owned()), "{first:?}");
        assert_eq!(last, ["Match User sftp-probe", "  AuthenticationMethods publickey"]);
    }

    #[test]
    fn audit_logging_adds_its_switch() {
        let text = MANIFEST.replace("  access:\n", "  logging:\n    audit: true\n  access:\n");
        assert_eq!(env(container(&task_definition(&service(&text), false)), "SFTP_AUDIT_LOG"), Some("1"));
        assert_eq!(env(container(&task_definition(&service(MANIFEST), false)), "SFTP_AUDIT_LOG"), None);
    }

    #[test]
    fn the_entry_point_runs_the_prelude_before_atmoz() {
        let td = task_definition(&service(MANIFEST), false);
        let c = container(&td);
        assert_eq!(c.entry_point, ["/bin/sh", "-c", PRELUDE, "sftp-operator-prelude"]);
        assert!(c.command.is_empty());
        assert!(PRELUDE.starts_with("set -eu\n"));
        assert!(PRELUDE.ends_with("exec /entrypoint \"$@\"\n"));
        assert_eq!(c.port_mappings, [PortMapping { container_port: 22, host_port: 30020, protocol: "tcp".into() }]);
        assert_eq!((c.name.as_str(), c.image.as_str()), (names::CONTAINER_NAME, crate::spec::DEFAULT_IMAGE));
    }

    #[test]
    fn host_keys_arrive_as_secrets_by_value_from_never_as_environment() {
        let td = task_definition(&service(MANIFEST), false);
        let c = container(&td);
        let generated = "arn:aws:secretsmanager:us-east-1:123456789012:secret:sftp-operator/drop/host-keys";
        assert_eq!(
            c.secrets,
            [
                SecretRef { name: "SFTP_HOST_KEY_ED25519".into(), value_from: format!("{generated}:ed25519::") },
                SecretRef { name: "SFTP_HOST_KEY_RSA".into(), value_from: format!("{generated}:rsa::") },
            ]
        );
        assert!(c.environment.iter().all(|kv| !kv.name.starts_with("SFTP_HOST_KEY")), "{:?}", c.environment);

        let text = MANIFEST.replace("  access:\n", &format!("  hostKeys:\n    secretArn: {SECRET_ARN}\n  access:\n"));
        let s = service(&text);
        let td = task_definition(&s, false);
        let from: Vec<&str> = container(&td).secrets.iter().map(|r| r.value_from.as_str()).collect();
        assert_eq!(from, [format!("{SECRET_ARN}:ed25519::"), format!("{SECRET_ARN}:rsa::")]);
        assert_eq!(render(&s, OWNER).host_key_secret, None, "the user's secret is not ours");
    }

    #[test]
    fn every_resource_is_tagged_with_labels_owner_and_service() {
        let d = render(&service(MANIFEST), OWNER);
        let want = BTreeMap::from([
            ("sftp-operator/owner".to_owned(), OWNER.to_owned()),
            ("sftp-operator/service".to_owned(), "drop".to_owned()),
            ("team".to_owned(), "research".to_owned()),
        ]);
        assert_eq!(d.tags, want);
        assert_eq!(d.host_key_secret.as_deref(), Some("sftp-operator/drop/host-keys"));
    }

    #[test]
    fn the_rsa_size_reaches_the_secret_and_nothing_already_applied() {
        let d = render(&service(MANIFEST), OWNER);
        assert_eq!(d.host_key_rsa_bits, 4096);
        let text = MANIFEST.replace("  access:\n", "  hostKeys:\n    rsaBits: 3072\n  access:\n");
        let d3072 = render(&service(&text), OWNER);
        assert_eq!(d3072.host_key_rsa_bits, 3072);
        assert_eq!(serde_json::to_value(&d3072).unwrap(), serde_json::to_value(&d).unwrap());
    }

    #[test]
    fn host_path_storage_mounts_the_directory_as_home() {
        let td = task_definition(&service(MANIFEST), false);
        assert_eq!(
            td.volumes,
            [Volume { name: HOME_VOLUME.into(), host_source_path: Some("/srv/sftp".into()), efs: None }]
        );
        assert_eq!(container(&td).mount_points[0].container_path, "/home");
        assert_eq!(container(&td).linux_parameters, None);
        assert_eq!((td.network_mode.as_str(), td.family.as_str()), ("bridge", "sftp-drop"));
    }

    #[test]
    fn efs_with_an_access_point_mounts_its_root() {
        let efs = "efs:\n      fileSystemId: fs-0123456789abcdef0\n      accessPointId: fsap-0123456789abcdef0\n      rootDirectory: /drop";
        let td = task_definition(&service(&MANIFEST.replace("hostPath: /srv/sftp", efs)), false);
        let volume = td.volumes[0].efs.as_ref().expect("an EFS volume");
        assert_eq!(volume.root_directory, "/", "EFS requires / with an access point");
        assert_eq!(volume.access_point_id.as_deref(), Some("fsap-0123456789abcdef0"));
        assert!(volume.transit_encryption);
    }

    #[test]
    fn s3_storage_mounts_through_fuse_with_each_users_first_directory() {
        let s3 = "s3:\n      bucket: drop-bucket\n      image: example/sftp-goofys:1\n      taskRoleArn: arn:aws:iam::123456789012:role/sftp-s3";
        let td = task_definition(&service(&MANIFEST.replace("hostPath: /srv/sftp", s3)), false);
        let c = container(&td);
        assert_eq!(c.image, "example/sftp-goofys:1");
        assert_eq!(env(c, "SFTP_S3_BUCKET"), Some("drop-bucket"));
        assert_eq!(env(c, "SFTP_S3_MOUNTS"), Some("alice:1001/1001:upload bob:1002/100:upload"));
        let linux = c.linux_parameters.as_ref().expect("FUSE needs linux parameters");
        assert_eq!(linux.devices[0].host_path, "/dev/fuse");
        assert!(td.volumes.is_empty() && c.mount_points.is_empty());
        assert_eq!(td.task_role_arn.as_deref(), Some("arn:aws:iam::123456789012:role/sftp-s3"));
    }

    #[test]
    fn key_order_does_not_change_the_hash_but_a_key_does() {
        let s = service(MANIFEST);
        let hash = |s: &Service| task_definition_hash(&task_definition(s, false));
        let mut reordered = s.clone();
        let key = reordered.users[0].keys[0].clone();
        reordered.users[0].keys.insert(0, crate::sshkeys::parse_public_key(&other_key()).unwrap());
        assert_ne!(hash(&reordered), hash(&s));
        let mut swapped = reordered.clone();
        swapped.users[0].keys = vec![key, reordered.users[0].keys[0].clone()];
        assert_eq!(hash(&swapped), hash(&reordered));
    }

    fn other_key() -> String {
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILWM7glWBVbDAjJ2z7StDgPXxs7oeC9AdkRkno/fs/Oe dave@example.edu".into()
    }

    #[test]
    fn ingress_allows_each_cidr_on_the_host_port() {
        let d = render(&service(MANIFEST), OWNER);
        let rules: Vec<(&str, u16)> = d.ingress.iter().map(|r| (r.cidr.as_str(), r.port)).collect();
        assert_eq!(rules, [("192.0.2.0/24", 30020), ("198.51.100.0/24", 30020)]);
        assert!(d.ingress.iter().all(|r| r.description == crate::codec::rule_description(OWNER, "drop")));
        assert_eq!((d.listener.port, d.target_group.port), (2220, 30020));
        assert!(!d.ecs_service.distinct_instance);
    }

    #[test]
    fn dns_owns_a_txt_record_beside_each_name() {
        let dns = "  dns:\n    zone: example.edu\n    record: sftp.example.edu\n    publicRecord: files.example.edu\n";
        let d = render(&service(&MANIFEST.replace("  access:\n", &format!("{dns}  access:\n"))), OWNER);
        let records: Vec<(&str, &str)> = d.dns_records.iter().map(|r| (r.name.as_str(), r.kind.as_str())).collect();
        assert_eq!(records, [("files.example.edu.", "TXT"), ("sftp.example.edu.", "TXT")]);
        let owner_txt = crate::codec::txt_owner_value(OWNER, "drop");
        assert!(d.dns_records.iter().all(|r| r.values == [owner_txt.clone()] && r.ttl == 60), "{:?}", d.dns_records);
    }
}
