//! OpenSSH public keys: parsing, fingerprints, SSHFP data — and host-key generation.
//!
//! Error messages never include the key text: a private key pasted by mistake must not end up
//! in a terminal scrollback or a CI log.

use serde::Serialize;
use sha2::{Digest, Sha256};
use ssh_key::{Algorithm, HashAlg, PublicKey};

/// A public key that parsed, in the canonical `algorithm base64 [comment]` form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParsedKey {
    /// `algorithm base64` without the comment: what identity (and duplicate checks) rest on.
    pub blob: String,
    pub comment: String,
    pub algorithm: String,
    /// `SHA256:...` as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    pub bits: Option<u32>,
    /// SSHFP algorithm number (RFC 4255/6594/7479): RSA 1, ECDSA 3, Ed25519 4.
    pub sshfp_algorithm: Option<u8>,
    /// SHA-256 of the key blob, hex: SSHFP fingerprint type 2.
    pub sha256_hex: String,
}

impl ParsedKey {
    /// The authorized_keys line: blob plus comment.
    pub fn line(&self) -> String {
        if self.comment.is_empty() { self.blob.clone() } else { format!("{} {}", self.blob, self.comment) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("this is a private key; paste the public half (the `.pub` file) instead — the key is not shown here")]
    PrivateKey,
    #[error("not an OpenSSH public key ({0}); expected `ssh-ed25519 AAAA... comment`")]
    Unparseable(String),
    #[error("RSA key of {0} bits is too weak; at least 2048 bits are required")]
    WeakRsa(u32),
    #[error("authorized_keys options are not supported here; give the bare key")]
    Options,
    #[error("a key is one line: this one holds a control character (a line break or tab) at character {0}")]
    ControlCharacter(usize),
}

/// True when the text looks like any private key format (PEM, OpenSSH, PuTTY).
pub fn looks_private(text: &str) -> bool {
    let t = text.trim_start();
    t.contains("PRIVATE KEY") || t.starts_with("PuTTY-User-Key-File") || t.starts_with("-----BEGIN")
}

/// True when the text carries key material anywhere: private-key armour (PEM, OpenSSH, PuTTY),
/// the base64 of a key (an SSH key blob starts `AAAA`, DER `MI`/`MC4C`/`MHcC`, OpenSSH's private
/// format `b3BlbnNzaC1rZXktdjE`), or a mixed-case base64 run long enough to be one. Errors never
/// echo such text and only key fields may hold it.
pub fn looks_like_key_material(text: &str) -> bool {
    const MARKERS: [&str; 6] =
        ["-----BEGIN", "-----END", "PRIVATE KEY", "PuTTY-User-Key-File", "openssh-key-v1", "b3BlbnNzaC1rZXktdjE"];
    if MARKERS.iter().any(|m| text.contains(m)) {
        return true;
    }
    let base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    text.split(|c| !base64(c)).any(|run| {
        let mixed = run.bytes().any(|b| b.is_ascii_uppercase())
            && run.bytes().any(|b| b.is_ascii_lowercase())
            && run.bytes().any(|b| b.is_ascii_digit());
        let key_prefix = ["AAAA", "MI", "MC4C", "MHcC"].iter().any(|p| run.starts_with(p));
        mixed && (run.len() >= 200 || (run.len() >= 40 && key_prefix))
    })
}

pub fn parse_public_key(text: &str) -> Result<ParsedKey, KeyError> {
    if looks_private(text) {
        return Err(KeyError::PrivateKey);
    }
    let trimmed = text.trim();
    // A line break would let the text after it pass for another authorized_keys line.
    if let Some(at) = trimmed.chars().position(char::is_control) {
        return Err(KeyError::ControlCharacter(at + 1));
    }
    let first = trimmed.split_whitespace().next().unwrap_or("");
    if !first.is_empty()
        && Algorithm::new(first).is_err()
        && trimmed.contains(' ')
        && (first.contains('=') || first.contains(','))
    {
        return Err(KeyError::Options);
    }
    let key = PublicKey::from_openssh(trimmed).map_err(|e| KeyError::Unparseable(describe(&e)))?;
    let bits = rsa_bits(&key);
    if let Some(b) = bits
        && b < 2048
    {
        return Err(KeyError::WeakRsa(b));
    }
    Ok(describe_key(&key, bits))
}

fn describe(e: &ssh_key::Error) -> String {
    // ssh-key's messages name the failing step, never the input.
    match e {
        ssh_key::Error::AlgorithmUnknown | ssh_key::Error::AlgorithmUnsupported { .. } => {
            "unknown key algorithm".into()
        }
        ssh_key::Error::Encoding(_) => "bad base64 or key data".into(),
        other => other.to_string(),
    }
}

fn rsa_bits(key: &PublicKey) -> Option<u32> {
    let rsa = key.key_data().rsa()?;
    let n = rsa.n.as_positive_bytes().unwrap_or(rsa.n.as_bytes());
    let lead = n.first().map_or(0, |b| b.leading_zeros());
    Some((n.len() as u32 * 8).saturating_sub(lead))
}

fn describe_key(key: &PublicKey, bits: Option<u32>) -> ParsedKey {
    let blob_bytes = key.to_bytes().unwrap_or_default();
    let openssh = key.to_openssh().unwrap_or_default();
    let mut parts = openssh.split_whitespace();
    let blob = format!("{} {}", parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let algorithm = key.algorithm();
    let sshfp_algorithm = match algorithm {
        Algorithm::Rsa { .. } => Some(1),
        Algorithm::Ecdsa { .. } => Some(3),
        Algorithm::Ed25519 => Some(4),
        _ => None,
    };
    ParsedKey {
        blob,
        comment: key.comment().to_owned(),
        algorithm: algorithm.as_str().to_owned(),
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        bits,
        sshfp_algorithm,
        sha256_hex: hex::encode(Sha256::digest(&blob_bytes)),
    }
}

/// A `known_hosts` line for a host key reached at `host:port` (OpenSSH brackets non-22 ports).
pub fn known_hosts_line(host: &str, port: u16, public_key: &str) -> String {
    let name = if port == 22 { host.to_owned() } else { format!("[{host}]:{port}") };
    let key: Vec<&str> = public_key.split_whitespace().take(2).collect();
    format!("{name} {}", key.join(" "))
}

/// Freshly generated host keys: the secret's JSON (`{"ed25519": PEM, "rsa": PEM}`) and the
/// public halves (kept in the secret's description so SSHFP and `known_hosts` never need the
/// private material).
pub struct GeneratedHostKeys {
    pub secret_json: zeroize::Zeroizing<String>,
    pub public_keys: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("RSA key generation failed")]
    Rsa,
    #[error("RSA host keys are 3072 or 4096 bits, not {0}")]
    RsaBits(u32),
    #[error("RSA key encoding: {0}")]
    Der(pkcs1::der::Error),
    #[error(transparent)]
    Ssh(#[from] ssh_key::Error),
    #[error("the generated public key: {0}")]
    Public(#[from] KeyError),
}

/// The RSA host-key sizes `spec.hostKeys.rsaBits` takes.
pub const RSA_HOST_KEY_BITS: [u32; 2] = [3072, 4096];
/// What ssh-audit's hardened OpenSSH policy asks of an RSA host key (OpenSSH's own default is
/// 3072); here 0.43 s per pair against 0.29 s for 3072.
pub const DEFAULT_RSA_HOST_KEY_BITS: u32 = 4096;

/// An Ed25519 key and an RSA key of `rsa_bits` (one of [`RSA_HOST_KEY_BITS`]).
pub fn generate_host_keys(comment: &str, rsa_bits: u32) -> Result<GeneratedHostKeys, KeygenError> {
    use ssh_key::private::Ed25519Keypair;
    use ssh_key::{LineEnding, PrivateKey};
    let mut ed = PrivateKey::from(Ed25519Keypair::random(&mut rand_core::OsRng));
    let mut rsa = PrivateKey::from(rsa_keypair(rsa_bits)?);
    ed.set_comment(comment);
    rsa.set_comment(comment);
    let json = serde_json::json!({
        "ed25519": ed.to_openssh(LineEnding::LF)?.as_str(),
        "rsa": rsa.to_openssh(LineEnding::LF)?.as_str(),
    });
    Ok(GeneratedHostKeys {
        secret_json: zeroize::Zeroizing::new(json.to_string()),
        public_keys: vec![ed.public_key().to_openssh()?, rsa.public_key().to_openssh()?],
    })
}

/// The probe account's key pair: the private half (OpenSSH PEM) goes only into the probe-key
/// secret; the public half into the task definition and the secret's description.
#[derive(Clone)]
pub struct ProbeKeyPair {
    pub private_openssh: std::sync::Arc<zeroize::Zeroizing<String>>,
    pub public: ParsedKey,
}

/// Never the private half in a `{:?}`.
impl std::fmt::Debug for ProbeKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeKeyPair").field("public", &self.public.line()).finish_non_exhaustive()
    }
}

/// Two pairs are the same when their public halves are.
impl PartialEq for ProbeKeyPair {
    fn eq(&self, other: &Self) -> bool {
        self.public == other.public
    }
}

/// A fresh Ed25519 pair for the probe account (microseconds: no need to leave the async worker).
pub fn generate_probe_key(comment: &str) -> Result<ProbeKeyPair, KeygenError> {
    use ssh_key::private::Ed25519Keypair;
    use ssh_key::{LineEnding, PrivateKey};
    let mut key = PrivateKey::from(Ed25519Keypair::random(&mut rand_core::OsRng));
    key.set_comment(comment);
    let pem = key.to_openssh(LineEnding::LF)?;
    let public = parse_public_key(&key.public_key().to_openssh()?)?;
    Ok(ProbeKeyPair { private_openssh: std::sync::Arc::new(zeroize::Zeroizing::new(pem.to_string())), public })
}

/// RSA from AWS-LC (already linked for TLS): the pure-Rust `rsa` crate takes 2–18 s per 4096-bit
/// key here, and carries RUSTSEC-2023-0071. AWS-LC hands out PKCS#8; OpenSSH wants the
/// PKCS#1 components.
fn rsa_keypair(bits: u32) -> Result<ssh_key::private::RsaKeypair, KeygenError> {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    use aws_lc_rs::rsa::KeySize;
    use pkcs1::der::Decode;
    use ssh_key::Mpint;
    let size = match bits {
        3072 => KeySize::Rsa3072,
        4096 => KeySize::Rsa4096,
        other => return Err(KeygenError::RsaBits(other)),
    };
    let pair = aws_lc_rs::rsa::KeyPair::generate(size).map_err(|_| KeygenError::Rsa)?;
    let der: Pkcs8V1Der = pair.as_der().map_err(|_| KeygenError::Rsa)?;
    let der_err = KeygenError::Der;
    let info = pkcs8::PrivateKeyInfo::from_der(der.as_ref()).map_err(der_err)?;
    let k = pkcs1::RsaPrivateKey::from_der(info.private_key).map_err(der_err)?;
    let int = |u: pkcs1::UintRef| Mpint::from_positive_bytes(u.as_bytes());
    Ok(ssh_key::private::RsaKeypair {
        public: ssh_key::public::RsaPublicKey { e: int(k.public_exponent)?, n: int(k.modulus)? },
        private: ssh_key::private::RsaPrivateKey {
            d: int(k.private_exponent)?,
            iqmp: int(k.coefficient)?,
            p: int(k.prime1)?,
            q: int(k.prime2)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFIoKsJjFWreGcAuiHllsitYI/zAomIvsiDu9IwEUlwH alice@example.edu";

    #[test]
    fn key_material_is_recognised_in_any_form_and_ordinary_values_are_not() {
        let public = std::fs::read_to_string("tests/fixtures/keys/alice.pub").unwrap();
        let private = std::fs::read_to_string("tests/fixtures/keys/throwaway_private_key").unwrap();
        for text in [
            &private,
            "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW",
            "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj",
            "PuTTY-User-Key-File-3: ssh-ed25519",
            public.trim(),
            "AAAAC3NzaC1lZDI1NTE5AAAAIFIoKsJjFWreGcAuiHllsitYI/zAomIvsiDu9IwEUlwH",
        ] {
            assert!(looks_like_key_material(text), "{text}");
        }
        for text in [
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:sftp-operator/campus-sftp/host-keys-AbCdEf",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/sftp/0123456789abcdef",
            "/srv/sftp/research/data",
            "research-computing",
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            &"a".repeat(300),
            "$6$Qx3f1m2k$Pv0GQ3zyXx7kGJ0c0m6mM0rZ0Zk3mC2b6w6ZbL6L0wKQ0uE9c8kF8b9y0r1s2t3u4v5w6x7y8z9A0B1C2D3E4F",
        ] {
            assert!(!looks_like_key_material(text), "{text}");
        }
    }

    #[test]
    fn an_ed25519_key_parses_with_its_fingerprint_and_sshfp_type() {
        let k = parse_public_key(ED).unwrap();
        assert_eq!(k.algorithm, "ssh-ed25519");
        assert_eq!(k.comment, "alice@example.edu");
        assert!(k.fingerprint.starts_with("SHA256:"));
        assert_eq!(k.sshfp_algorithm, Some(4));
        assert_eq!(k.sha256_hex.len(), 64);
    }

    #[test]
    fn a_private_key_is_refused_without_echoing_it() {
        let pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----";
        let err = parse_public_key(pem).unwrap_err();
        assert_eq!(err, KeyError::PrivateKey);
        assert!(!err.to_string().contains("b3BlbnNzaC1rZXktdjEA"));
    }

    #[test]
    fn garbage_is_refused_without_echoing_it() {
        let err = parse_public_key("ssh-ed25519 notbase64!!! me").unwrap_err();
        assert!(matches!(err, KeyError::Unparseable(_)));
        assert!(!err.to_string().contains("notbase64"));
    }

    /// The generated private keys load in OpenSSH and derive the published public halves.
    #[test]
    fn generated_host_keys_are_what_ssh_keygen_derives() {
        let keys = generate_host_keys("test", DEFAULT_RSA_HOST_KEY_BITS).unwrap();
        let secret: serde_json::Value = serde_json::from_str(&keys.secret_json).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (name, public) in [("ed25519", &keys.public_keys[0]), ("rsa", &keys.public_keys[1])] {
            let parsed = parse_public_key(public).unwrap();
            if name == "rsa" {
                assert_eq!(parsed.bits, Some(4096));
            }
            let Ok(_) = std::process::Command::new("ssh-keygen").arg("-?").output() else {
                assert!(std::env::var_os("CI").is_none(), "ssh-keygen is missing: .ci/run installs openssh-client");
                continue;
            };
            let path = dir.path().join(name);
            std::fs::write(&path, secret[name].as_str().unwrap()).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
            let out = std::process::Command::new("ssh-keygen").arg("-y").arg("-f").arg(&path).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(parse_public_key(&String::from_utf8_lossy(&out.stdout)).unwrap().blob, parsed.blob);
        }
    }

    #[test]
    fn the_rsa_size_is_the_one_asked_for_and_only_the_supported_ones_are() {
        let keys = generate_host_keys("test", 4096).unwrap();
        assert_eq!(parse_public_key(&keys.public_keys[1]).unwrap().bits, Some(4096));
        assert!(matches!(generate_host_keys("test", 2048), Err(KeygenError::RsaBits(2048))));
    }
}
