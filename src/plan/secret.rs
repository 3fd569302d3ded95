//! The host-key secret, when the operator generates the keys. Never deleted by `delete` or
//! `--prune`: clients must never see a changed host key.

use super::service::Ctx;
use super::{Action, Change, Kind, Op, Options};

pub(super) fn plan(ctx: &Ctx) -> Vec<Change> {
    let mut changes = host_keys(ctx);
    changes.extend(probe_key(ctx));
    changes
}

/// The probe account's key pair: created with the pair render put in the task definition,
/// otherwise only claimed like the host keys. Kept by `delete` too (nothing else uses it).
fn probe_key(ctx: &Ctx) -> Option<Change> {
    let probe = ctx.d.probe.as_ref()?;
    let name = &probe.secret;
    let Some(live) = ctx.o.secrets.iter().find(|s| &s.name == name) else {
        let key = probe.new_key.clone()?;
        let ops = vec![Op::CreateProbeSecret { name: name.clone(), key, tags: ctx.d.tags.clone() }];
        let create = ctx.change(Kind::ProbeKeySecret, name, Action::Create, ops);
        return Some(create.because("generate an Ed25519 key for the probe account"));
    };
    // Never adopted: its key would be trusted without our having made it.
    let strict = Options { adopt: false, ..ctx.opts.clone() };
    let strict = Ctx { opts: &strict, ..*ctx };
    match strict.claim(Kind::ProbeKeySecret, name, &live.arn, &live.tags) {
        Err(conflict) => Some(*conflict),
        Ok(ops) if ops.is_empty() => None,
        Ok(ops) => Some(ctx.change(Kind::ProbeKeySecret, name, Action::Update, ops)),
    }
}

fn host_keys(ctx: &Ctx) -> Vec<Change> {
    let Some(name) = &ctx.d.host_key_secret else {
        return vec![];
    };
    let Some(live) = ctx.o.secrets.iter().find(|s| &s.name == name) else {
        let rsa_bits = ctx.d.host_key_rsa_bits;
        let ops = vec![Op::CreateSecret { name: name.clone(), rsa_bits, tags: ctx.d.tags.clone() }];
        let create = ctx.change(Kind::HostKeySecret, name, Action::Create, ops);
        return vec![create.because(format!("generate Ed25519 and RSA-{rsa_bits} host keys"))];
    };
    match ctx.claim(Kind::HostKeySecret, name, &live.arn, &live.tags) {
        Err(conflict) => vec![*conflict],
        Ok(ops) if ops.is_empty() => vec![],
        Ok(ops) => vec![ctx.change(Kind::HostKeySecret, name, Action::Update, ops)],
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::render::Desired;

    fn mk_desired_with_secret() -> Desired {
        let mut d = mk_desired(SERVICE);
        d.host_key_secret = Some(d.names.host_key_secret.clone());
        d
    }

    #[test]
    fn a_missing_secret_is_created_with_our_tags() {
        let d = mk_desired_with_secret();
        let (o, opts) = (mk_world(), mk_options(false));
        let c = plan(&ctx(&d, &o, &opts));
        assert_eq!(summary(&c), [(Kind::HostKeySecret, Action::Create, d.names.host_key_secret.clone())]);
        let op = Op::CreateSecret { name: d.names.host_key_secret.clone(), rsa_bits: 4096, tags: d.tags.clone() };
        assert_eq!(c[0].ops, [op]);
        assert_eq!(c[0].reason.as_deref(), Some("generate Ed25519 and RSA-4096 host keys"));
    }

    #[test]
    fn a_new_secret_gets_the_rsa_size_asked_for() {
        let mut d = mk_desired_with_secret();
        d.host_key_rsa_bits = 3072;
        let c = plan(&ctx(&d, &mk_world(), &mk_options(false)));
        assert!(matches!(&c[0].ops[..], [Op::CreateSecret { rsa_bits: 3072, .. }]), "{:?}", c[0].ops);
        assert_eq!(c[0].reason.as_deref(), Some("generate Ed25519 and RSA-3072 host keys"));
    }

    #[test]
    fn an_existing_secret_is_kept_whatever_the_rsa_size() {
        let mut d = mk_desired_with_secret();
        let mut o = mk_world();
        o.secrets.push(mk_live_secret(&d));
        d.host_key_rsa_bits = 4096;
        assert!(plan(&ctx(&d, &o, &mk_options(false))).is_empty());
    }

    fn mk_desired_with_probe(new_key: bool) -> Desired {
        let mut d = mk_desired(SERVICE);
        let key = new_key.then(|| crate::sshkeys::generate_probe_key("t").unwrap());
        d.probe =
            Some(crate::render::DesiredProbe { secret: format!("sftp-operator/{SERVICE}/probe-key"), new_key: key });
        d
    }

    fn probe_secret(d: &Desired, tags: crate::observed::Tags) -> crate::observed::Secret {
        let name = d.probe.as_ref().unwrap().secret.clone();
        crate::observed::Secret { arn: format!("arn:secret:{name}"), name, description: None, tags }
    }

    #[test]
    fn the_probe_key_generated_for_the_rendering_is_stored_and_an_owned_one_kept() {
        let d = mk_desired_with_probe(true);
        let (mut o, opts) = (mk_world(), mk_options(false));
        let c = plan(&ctx(&d, &o, &opts));
        let secret = d.probe.as_ref().unwrap().secret.clone();
        assert_eq!(summary(&c), [(Kind::ProbeKeySecret, Action::Create, secret)]);
        let key = d.probe.as_ref().unwrap().new_key.clone().unwrap();
        assert_eq!(
            c[0].ops,
            [Op::CreateProbeSecret { name: d.probe.as_ref().unwrap().secret.clone(), key, tags: d.tags.clone() }]
        );
        assert!(!format!("{:?}", c[0].ops).contains("PRIVATE KEY"), "the private half never reaches a {{:?}}");

        o.secrets.push(probe_secret(&d, d.tags.clone()));
        assert!(plan(&ctx(&mk_desired_with_probe(false), &o, &opts)).is_empty());
    }

    #[test]
    fn a_probe_secret_of_someone_else_is_a_conflict() {
        let d = mk_desired_with_probe(false);
        let mut o = mk_world();
        o.secrets.push(probe_secret(&d, foreign_tags()));
        let c = plan(&ctx(&d, &o, &mk_options(false)));
        assert_eq!((c[0].kind, c[0].action), (Kind::ProbeKeySecret, Action::Conflict));
        let c = plan(&ctx(&d, &o, &mk_options(true)));
        assert_eq!((c[0].kind, c[0].action), (Kind::ProbeKeySecret, Action::Conflict), "never adopted");
    }

    #[test]
    fn an_owned_secret_is_left_as_it_is() {
        let d = mk_desired_with_secret();
        let (mut o, opts) = (mk_world(), mk_options(false));
        o.secrets.push(mk_live_secret(&d));
        assert!(plan(&ctx(&d, &o, &opts)).is_empty());
    }

    #[test]
    fn no_secret_is_planned_when_keys_come_from_the_manifest() {
        let d = mk_desired(SERVICE);
        let (o, opts) = (mk_world(), mk_options(false));
        assert!(plan(&ctx(&d, &o, &opts)).is_empty());
    }

    #[test]
    fn an_unowned_secret_is_a_conflict_and_adopting_tags_it() {
        let d = mk_desired_with_secret();
        let mut o = mk_world();
        let mut live = mk_live_secret(&d);
        live.tags = foreign_tags();
        o.secrets.push(live.clone());
        let c = plan(&ctx(&d, &o, &mk_options(false)));
        assert_eq!(c[0].action, Action::Conflict);
        assert!(c[0].reason.as_deref().unwrap().contains("--adopt"), "{:?}", c[0].reason);
        let c = plan(&ctx(&d, &o, &mk_options(true)));
        assert_eq!(c[0].action, Action::Update);
        assert!(matches!(&c[0].ops[..], [Op::TagResource { kind: Kind::HostKeySecret, arn, .. }] if *arn == live.arn));
    }

    #[test]
    fn another_services_secret_is_a_conflict_even_when_adopting() {
        let d = mk_desired_with_secret();
        let mut o = mk_world();
        let mut live = mk_live_secret(&d);
        live.tags = mk_tags("other");
        o.secrets.push(live);
        let c = plan(&ctx(&d, &o, &mk_options(true)));
        assert_eq!(c[0].action, Action::Conflict);
        assert!(c[0].reason.as_deref().unwrap().contains("owned by service `other`"));
    }
}
