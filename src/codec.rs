//! Text the operator writes into AWS and reads back later: one codec per format, the encoder
//! beside its decoder, each pair checked by a round trip. Anything that parses one of these
//! strings goes through here, so a format can only change in one place.
//!
//! | format                     | written to                                  | carries           |
//! |----------------------------|---------------------------------------------|-------------------|
//! | [`rule_description`]       | Cloud Map services (and older rules)        | owner, service    |
//! | [`shared_rule_description`]| security-group rules (merged, per group)    | owner             |
//! | [`txt_owner_value`]        | the TXT record beside each managed record   | owner, service    |
//! | [`host_key_description`]   | the generated host-key secret's description | public host keys  |
//! | [`probe_key_description`]  | the probe account's key secret              | its public key    |
//! | [`PROBE_KEY_FIELD`]        | the probe-key secret's JSON value           | its private key   |
//! | [`rendering_tag`]          | the ECS service's `sftp-operator/rendering` | hash, revision, port |

use crate::names::{OWNER_TAG, SERVICE_TAG};

/// Identifies the security-group rules the operator owns (with the rule tags).
pub const RULE_DESCRIPTION_PREFIX: &str = "sftp-operator";

/// Who a description or TXT value says owns a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub owner: String,
    pub service: String,
}

impl Owner {
    /// The ownership tags the encoded text stands for.
    pub fn tags(&self) -> std::collections::BTreeMap<String, String> {
        [(OWNER_TAG.to_owned(), self.owner.clone()), (SERVICE_TAG.to_owned(), self.service.clone())].into()
    }
}

/// Description on every security-group rule (and Cloud Map service) the operator owns.
pub fn rule_description(owner: &str, service: &str) -> String {
    format!("{RULE_DESCRIPTION_PREFIX} owner={owner} service={service}")
}

/// Decodes [`rule_description`].
pub fn parse_rule_description(d: &str) -> Option<Owner> {
    let rest = d.strip_prefix(RULE_DESCRIPTION_PREFIX)?.strip_prefix(" owner=")?;
    let (owner, service) = rest.split_once(" service=")?;
    Some(Owner { owner: owner.to_owned(), service: service.to_owned() })
}

/// Description on the merged security-group rules: shared by every service on a group, they
/// belong to the installation (owner id), not to one service.
pub fn shared_rule_description(owner: &str) -> String {
    format!("{RULE_DESCRIPTION_PREFIX} owner={owner}")
}

/// The owner a rule description names, in either format ([`shared_rule_description`], or
/// [`rule_description`] on rules from releases that kept one rule per service).
pub fn rule_owner(d: &str) -> Option<&str> {
    let rest = d.strip_prefix(RULE_DESCRIPTION_PREFIX)?.strip_prefix(" owner=")?;
    let owner = rest.split_once(" service=").map_or(rest, |(owner, _)| owner);
    (!owner.is_empty() && !owner.contains(' ')).then_some(owner)
}

/// TXT ownership value beside each managed record, in the external-dns manner.
pub fn txt_owner_value(owner: &str, service: &str) -> String {
    format!("\"heritage=sftp-operator,{OWNER_TAG}={owner},{SERVICE_TAG}={service}\"")
}

/// Decodes [`txt_owner_value`]: the service, if `value` is owned by `owner`.
pub fn parse_txt_owner_value(value: &str, owner: &str) -> Option<String> {
    parse_txt_owner(value).filter(|o| o.owner == owner).map(|o| o.service)
}

/// Decodes [`txt_owner_value`] whatever its owner (owner ids hold no `,`).
pub fn parse_txt_owner(value: &str) -> Option<Owner> {
    let rest = value.strip_prefix(&format!("\"heritage=sftp-operator,{OWNER_TAG}="))?.strip_suffix('"')?;
    let (owner, service) = rest.split_once(&format!(",{SERVICE_TAG}="))?;
    Some(Owner { owner: owner.to_owned(), service: service.to_owned() })
}

/// What an ECS service's rendering tag says: the rendering applied in full, the task-definition
/// revision it was applied with, and the host port it opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendering {
    pub hash: String,
    pub revision: i32,
    pub port: u16,
}

/// The rendering tag's value once withdrawn (it vouches for nothing).
pub const RENDERING_WITHDRAWN: &str = "withdrawn";

/// The value of [`crate::names::RENDERING_TAG`].
pub fn rendering_tag(r: &Rendering) -> String {
    format!("{} rev={} port={}", r.hash, r.revision, r.port)
}

/// Decodes [`rendering_tag`]; anything else (an older bare hash, a withdrawn tag) is `None`.
pub fn parse_rendering_tag(v: &str) -> Option<Rendering> {
    let mut parts = v.split(' ');
    let hash = parts.next().filter(|h| !h.is_empty())?.to_owned();
    let revision = parts.next()?.strip_prefix("rev=")?.parse().ok()?;
    let port = parts.next()?.strip_prefix("port=")?.parse().ok()?;
    parts.next().is_none().then_some(Rendering { hash, revision, port })
}

const HOST_KEYS_MARK: &str = "Public keys: ";
const HOST_KEYS_SEPARATOR: &str = " | ";

/// Description of a generated host-key secret: the public keys only, never the private ones.
pub fn host_key_description(public_keys: &[String]) -> String {
    format!("SSH host keys managed by sftp-operator. {HOST_KEYS_MARK}{}", public_keys.join(HOST_KEYS_SEPARATOR))
}

/// Description of the probe account's key secret: its public half, read back by every pass to
/// render the account (the private half is read only by `probe`).
pub fn probe_key_description(public_key: &str) -> String {
    format!("Key of the sftp-operator probe account. {HOST_KEYS_MARK}{public_key}")
}

/// The probe-key secret's value is `{"ed25519": "<OpenSSH private key>"}`.
pub const PROBE_KEY_FIELD: &str = "ed25519";

/// Decodes [`host_key_description`] and [`probe_key_description`]: the public keys (none when
/// the text holds none).
pub fn parse_host_key_description(d: &str) -> Vec<String> {
    d.split_once(HOST_KEYS_MARK)
        .map(|(_, k)| k.split(HOST_KEYS_SEPARATOR).map(str::to_owned).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_descriptions_round_trip() {
        let d = rule_description("o-1", "campus-sftp");
        assert_eq!(d, "sftp-operator owner=o-1 service=campus-sftp");
        assert_eq!(parse_rule_description(&d), Some(Owner { owner: "o-1".into(), service: "campus-sftp".into() }));
        assert_eq!(parse_rule_description(&d).unwrap().tags()[OWNER_TAG], "o-1");
        assert_eq!(parse_rule_description("someone else's rule"), None);
    }

    #[test]
    fn shared_rule_descriptions_round_trip_and_older_ones_still_name_their_owner() {
        let d = shared_rule_description("o-1");
        assert_eq!(d, "sftp-operator owner=o-1");
        assert_eq!(rule_owner(&d), Some("o-1"));
        assert_eq!(rule_owner(&rule_description("o-1", "campus")), Some("o-1"));
        assert_eq!(parse_rule_description(&d), None, "no service in a shared rule");
        assert_eq!(rule_owner("sftp-operator owner="), None);
        assert_eq!(rule_owner("sftp-operator owner=a b"), None);
        assert_eq!(rule_owner("hand-made"), None);
    }

    #[test]
    fn rendering_tags_round_trip_and_anything_else_says_nothing() {
        let r = Rendering { hash: "0123abcd".into(), revision: 7, port: 30020 };
        let v = rendering_tag(&r);
        assert_eq!(v, "0123abcd rev=7 port=30020");
        assert_eq!(parse_rendering_tag(&v), Some(r));
        for other in ["", "0123abcd", "0123abcd rev=x port=1", "h rev=1 port=70000", "h rev=1 port=1 extra"] {
            assert_eq!(parse_rendering_tag(other), None, "{other}");
        }
    }

    #[test]
    fn txt_owner_values_round_trip() {
        let v = txt_owner_value("o", "campus");
        assert_eq!(v, "\"heritage=sftp-operator,sftp-operator/owner=o,sftp-operator/service=campus\"");
        assert_eq!(parse_txt_owner_value(&v, "o").as_deref(), Some("campus"));
        assert_eq!(parse_txt_owner_value(&v, "other"), None);
        assert_eq!(parse_txt_owner_value("\"heritage=external-dns\"", "o"), None);
        assert_eq!(parse_txt_owner(&v), Some(Owner { owner: "o".into(), service: "campus".into() }));
    }

    #[test]
    fn host_key_descriptions_round_trip() {
        let keys = vec!["ssh-ed25519 AAAA host".to_owned(), "ssh-rsa BBBB host".to_owned()];
        let d = host_key_description(&keys);
        assert_eq!(d, "SSH host keys managed by sftp-operator. Public keys: ssh-ed25519 AAAA host | ssh-rsa BBBB host");
        assert_eq!(parse_host_key_description(&d), keys);
        assert!(parse_host_key_description("imported by hand").is_empty());
    }

    #[test]
    fn probe_key_descriptions_round_trip() {
        let d = probe_key_description("ssh-ed25519 AAAA sftp-operator/campus/probe-key");
        assert_eq!(parse_host_key_description(&d), ["ssh-ed25519 AAAA sftp-operator/campus/probe-key"]);
    }
}
