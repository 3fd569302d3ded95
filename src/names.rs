//! Names and tags derived from an SftpService's name, in one place so every stage agrees.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// `metadata.name` is a DNS label (Cloud Map service names are labels too).
pub const MAX_NAME_LEN: usize = 63;
/// Target group names are at most 32 characters.
const TARGET_GROUP_MAX: usize = 32;

pub const TAG_PREFIX: &str = "sftp-operator/";
pub const OWNER_TAG: &str = "sftp-operator/owner";
pub const SERVICE_TAG: &str = "sftp-operator/service";
/// On each ECS service: the hash of the whole rendering last applied in full. While it matches,
/// a shallow pass trusts the resources it vouches for (see `aws::observe::Vouch`).
pub const RENDERING_TAG: &str = "sftp-operator/rendering";
pub const CONTAINER_NAME: &str = "sftp";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Names {
    pub ecs_service: String,
    pub task_family: String,
    pub target_group: String,
    pub cloud_map_service: String,
    pub host_key_secret: String,
}

impl Names {
    pub fn derive(name: &str) -> Names {
        Names {
            ecs_service: name.to_owned(),
            task_family: format!("sftp-{name}"),
            target_group: target_group_name(name),
            cloud_map_service: name.to_owned(),
            host_key_secret: format!("sftp-operator/{name}/host-keys"),
        }
    }
}

/// The probe account's key pair, beside the host keys (same prefix: one ListSecrets finds both).
pub fn probe_secret(name: &str) -> String {
    format!("sftp-operator/{name}/probe-key")
}

/// How every target group name of ours starts (observe reads tags only for target groups named
/// so, or on a load balancer in scope).
pub const TARGET_GROUP_PREFIX: &str = "sftp-";

/// `sftp-<name>` when it fits in 32 characters; otherwise a prefix plus a stable hash of the
/// full name, so two long names sharing a prefix still get distinct target groups.
fn target_group_name(name: &str) -> String {
    let full = format!("sftp-{name}");
    if full.len() <= TARGET_GROUP_MAX {
        return full;
    }
    let hash = &hex::encode(Sha256::digest(name.as_bytes()))[..8];
    let keep = TARGET_GROUP_MAX - "sftp-".len() - 1 - hash.len();
    let prefix = name[..keep].trim_end_matches('-');
    format!("sftp-{prefix}-{hash}")
}

/// Normalises a DNS name for comparison: lower case, `\052` → `*`, exactly one trailing dot.
pub fn normalize_dns_name(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase().replace("\\052", "*");
    let n = n.trim_end_matches('.');
    format!("{n}.")
}

/// Longest `--owner-id`: the events rule `sftp-operator-<id>-ecs-tasks` must fit EventBridge's
/// 64 characters; everything else derived from it (tags, rule descriptions, TXT values, queue and
/// lease names) has more room.
pub const MAX_OWNER_ID_LEN: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerIdError {
    #[error("the owner id is empty")]
    Empty,
    #[error("the owner id is {0} characters long; at most {MAX_OWNER_ID_LEN} are allowed")]
    TooLong(usize),
    #[error(
        "the owner id may hold only letters, digits and '-', starting with a letter or digit (it goes into tags, rule descriptions, TXT records and queue names)"
    )]
    Character,
}

/// Checks an `--owner-id`. Its characters survive every place it is written (a `,` or `"` would
/// split the TXT owner record, a space the rule description) and map one to one onto queue and
/// rule names, so two installations never share them.
pub fn parse_owner_id(id: &str) -> Result<String, OwnerIdError> {
    let first_ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    match id.chars().count() {
        0 => Err(OwnerIdError::Empty),
        n if n > MAX_OWNER_ID_LEN => Err(OwnerIdError::TooLong(n)),
        _ if !first_ok || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => Err(OwnerIdError::Character),
        _ => Ok(id.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{rule_description, txt_owner_value};

    #[test]
    fn the_longest_name_still_fits_every_aws_limit() {
        let name = "a".repeat(MAX_NAME_LEN);
        let n = Names::derive(&name);
        assert!(n.target_group.len() <= 32, "{}", n.target_group);
        assert!(n.task_family.len() <= 255);
        assert!(n.cloud_map_service.len() <= 63);
        assert!(n.host_key_secret.len() <= 512);
    }

    #[test]
    fn long_names_sharing_a_prefix_get_distinct_target_groups() {
        let a = Names::derive("research-data-exchange-partner-one").target_group;
        let b = Names::derive("research-data-exchange-partner-two").target_group;
        assert_ne!(a, b);
        assert!(a.len() <= 32 && b.len() <= 32);
        assert_eq!(a, Names::derive("research-data-exchange-partner-one").target_group, "stable");
    }

    #[test]
    fn owner_ids_are_checked_before_they_reach_aws() {
        assert_eq!(parse_owner_id("sftp-operator"), Ok("sftp-operator".to_owned()));
        assert_eq!(parse_owner_id(""), Err(OwnerIdError::Empty));
        assert_eq!(parse_owner_id(&"a".repeat(41)), Err(OwnerIdError::TooLong(41)));
        for bad in ["a,b", "a\"b", "a b", "-a", "a.b", "a_b", "é"] {
            assert_eq!(parse_owner_id(bad), Err(OwnerIdError::Character), "{bad}");
        }
    }

    #[test]
    fn the_longest_owner_id_and_name_keep_every_derived_string_within_aws_limits() {
        let owner = "o".repeat(MAX_OWNER_ID_LEN);
        let name = "n".repeat(MAX_NAME_LEN);
        // EC2 rule descriptions: 255 characters.
        assert!(rule_description(&owner, &name).len() <= 255);
        assert_eq!(crate::codec::parse_rule_description(&rule_description(&owner, &name)).unwrap().owner, owner);
        // A TXT character-string: 255 characters between the quotes.
        let txt = txt_owner_value(&owner, &name);
        assert!(txt.len() - 2 <= 255, "{}", txt.len());
        assert_eq!(crate::codec::parse_txt_owner_value(&txt, &owner), Some(name.clone()));
        // Tag values: 256.
        assert!(owner.len() <= 256 && name.len() <= 256);
        let (queue, rule) = crate::aws::events::names(&owner);
        assert!(queue.len() <= 80 && rule.len() <= 64, "{queue} {rule}");
        assert!(queue.ends_with("-events") && rule.ends_with("-ecs-tasks"), "not truncated: {queue} {rule}");
    }

    #[test]
    fn short_names_are_kept_readable() {
        assert_eq!(Names::derive("campus-sftp").target_group, "sftp-campus-sftp");
    }

    #[test]
    fn a_hash_suffix_never_leaves_a_double_hyphen() {
        let name = format!("{}-{}", "a".repeat(25), "b".repeat(20));
        let tg = Names::derive(&name).target_group;
        assert!(!tg.contains("--"), "{tg}");
        assert!(tg.len() <= 32);
    }
}
