//! One probe of one endpoint, as a user's client would: SSH (russh) with the host key checked
//! against the known public halves, public-key login as the probe account, then SFTP
//! (russh-sftp): write a file into its directory, read it back, delete it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::keys::{Algorithm, EcdsaCurve, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use tokio::io::AsyncWriteExt;

use super::{Failure, Outcome, Step, StepTime};
use crate::sshkeys::ParsedKey;

/// What the probe logs in with and what it trusts.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    /// The probe account's private key (OpenSSH PEM), from its secret; never printed.
    pub private_key: Arc<zeroize::Zeroizing<String>>,
    /// The host keys the server may present (public halves from the host-key secret or the
    /// manifest).
    pub host_keys: Vec<ParsedKey>,
}

/// Checks the server's key against the known ones, and remembers what it offered.
struct Verifier {
    known: Vec<String>,
    offered: Arc<Mutex<Option<String>>>,
}

impl russh::client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        // Certificates are never asked for (no certificate algorithms are advertised).
        let PublicKeyOrCertificate::PublicKey { key, .. } = server else { return Ok(false) };
        let blob = key.to_openssh().map_err(|e| russh::Error::from(russh::keys::Error::from(e)))?;
        let blob = blob.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let known = self.known.contains(&blob);
        if !known {
            *self.offered.lock().expect("not poisoned") = Some(key.fingerprint(Default::default()).to_string());
        }
        Ok(known)
    }
}

/// The host-key algorithms to ask for: those of the known keys this client verifies (RSA is
/// left out: russh's RSA support depends on the `rsa` crate, RUSTSEC-2023-0071), Ed25519 first.
fn host_key_algorithms(known: &[ParsedKey]) -> Vec<Algorithm> {
    let mut out: Vec<Algorithm> = Vec::new();
    for k in known {
        let alg = match k.algorithm.as_str() {
            "ssh-ed25519" => Algorithm::Ed25519,
            "ecdsa-sha2-nistp256" => Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 },
            "ecdsa-sha2-nistp384" => Algorithm::Ecdsa { curve: EcdsaCurve::NistP384 },
            "ecdsa-sha2-nistp521" => Algorithm::Ecdsa { curve: EcdsaCurve::NistP521 },
            _ => continue,
        };
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    out.sort_by_key(|a| *a != Algorithm::Ed25519);
    out
}

/// Times each step against one deadline for the whole probe.
struct Clock {
    deadline: Instant,
    steps: Vec<StepTime>,
}

impl Clock {
    async fn step<T, E: std::fmt::Display>(
        &mut self,
        step: Step,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, Failure> {
        let started = Instant::now();
        let left = self.deadline.saturating_duration_since(started);
        let r = tokio::time::timeout(left, fut).await;
        self.steps.push(StepTime { step, seconds: started.elapsed().as_secs_f64() });
        match r {
            Err(_) => Err(Failure::Timeout(step)),
            Ok(Err(e)) => Err(Failure::Step { step, message: e.to_string() }),
            Ok(Ok(v)) => Ok(v),
        }
    }
}

/// Probes `endpoint` (`host:port`) within `timeout`.
pub async fn probe(endpoint: &str, creds: &Credentials, timeout: Duration) -> Outcome {
    let started = Instant::now();
    let mut clock = Clock { deadline: started + timeout, steps: Vec::new() };
    let result = run(endpoint, creds, &mut clock).await;
    Outcome { failure: result.err(), steps: clock.steps, seconds: started.elapsed().as_secs_f64() }
}

async fn run(endpoint: &str, creds: &Credentials, clock: &mut Clock) -> Result<(), Failure> {
    let algorithms = host_key_algorithms(&creds.host_keys);
    if algorithms.is_empty() {
        return Err(Failure::NoVerifiableHostKey);
    }
    let key = russh::keys::decode_secret_key(&creds.private_key, None).map_err(|_| Failure::ProbeKeyUnreadable)?;
    let config = russh::client::Config {
        preferred: russh::Preferred { key: algorithms.into(), ..russh::Preferred::default() },
        inactivity_timeout: Some(Duration::from_secs(30)),
        ..russh::client::Config::default()
    };
    let offered = Arc::new(Mutex::new(None));
    let verifier =
        Verifier { known: creds.host_keys.iter().map(|k| k.blob.clone()).collect(), offered: offered.clone() };
    let connected = clock.step(Step::Connect, russh::client::connect(Arc::new(config), endpoint, verifier)).await;
    let mut session = match connected {
        Ok(s) => s,
        Err(e) => {
            // The verifier refused the key: say so, with what the server offered.
            if let Some(fingerprint) = offered.lock().expect("not poisoned").take() {
                return Err(Failure::HostKeyChanged { offered: fingerprint });
            }
            return Err(e);
        }
    };
    let login = PrivateKeyWithHashAlg::new(Arc::new(key), None);
    let auth = clock.step(Step::Authenticate, session.authenticate_publickey(creds.user.clone(), login)).await?;
    if !auth.success() {
        return Err(Failure::LoginRefused);
    }
    let sftp = clock
        .step(Step::Session, async {
            let channel = session.channel_open_session().await.map_err(|e| e.to_string())?;
            channel.request_subsystem(true, "sftp").await.map_err(|e| e.to_string())?;
            russh_sftp::client::SftpSession::new(channel.into_stream()).await.map_err(|e| e.to_string())
        })
        .await?;
    let path = format!("{}/{}", crate::model::PROBE_DIRECTORY, super::probe_file_name());
    let body = super::probe_file_body();
    clock
        .step(Step::Write, async {
            let mut file = sftp.create(path.as_str()).await?;
            file.write_all(body.as_bytes()).await?;
            file.shutdown().await?;
            Ok::<_, russh_sftp::client::error::Error>(())
        })
        .await?;
    // The file is deleted whatever the read gave: no probe leaves files behind it can remove.
    let read = clock.step(Step::Read, sftp.read(path.as_str())).await;
    let removed = clock.step(Step::Delete, sftp.remove_file(path.as_str())).await;
    if read? != body.as_bytes() {
        return Err(Failure::ReadBackDiffers);
    }
    removed?;
    let _ = sftp.close().await;
    let _ = session.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    Ok(())
}
