//! Secrets Manager: the host-key secrets in scope, found by listing the operator's name prefix.

use aws_sdk_secretsmanager as sm;

use super::{Clients, Result, Scope, tag_map};
use crate::aws::aws;
use crate::observed;

/// Where every host-key secret's name starts (listing filters on it server-side).
const NAME_PREFIX: &str = "sftp-operator/";

pub(super) async fn secrets(c: &Clients, scope: &Scope) -> Result<Vec<observed::Secret>> {
    let mut out = Vec::new();
    if scope.secrets.is_empty() {
        return Ok(out);
    }
    let filter = sm::types::Filter::builder().key(sm::types::FilterNameStringType::Name).values(NAME_PREFIX).build();
    let mut pages = c.secrets.list_secrets().filters(filter).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("ListSecrets"))?;
        let listed = page.secret_list().iter().filter(|s| s.name().is_some_and(|n| scope.secrets.contains(n)));
        out.extend(listed.map(secret));
    }
    Ok(out)
}

/// One secret by name (a consistent read, where ListSecrets may lag behind a creation);
/// `None` when there is no such secret.
pub(super) async fn secret_named(c: &Clients, name: &str) -> Result<Option<observed::Secret>> {
    match c.secrets.describe_secret().secret_id(name).send().await.map_err(aws("DescribeSecret")) {
        Ok(s) => Ok(Some(observed::Secret {
            arn: s.arn().unwrap_or_default().to_owned(),
            name: s.name().unwrap_or_default().to_owned(),
            description: s.description().map(str::to_owned),
            tags: tag_map(s.tags().iter().map(|t| (t.key(), t.value()))),
        })),
        Err(e) if e.is("ResourceNotFoundException") => Ok(None),
        Err(e) => Err(e),
    }
}

// Conversions (pure): SDK values → observed pieces.

fn secret(s: &sm::types::SecretListEntry) -> observed::Secret {
    observed::Secret {
        arn: s.arn().unwrap_or_default().to_owned(),
        name: s.name().unwrap_or_default().to_owned(),
        description: s.description().map(str::to_owned),
        tags: tag_map(s.tags().iter().map(|t| (t.key(), t.value()))),
    }
}

#[cfg(test)]
mod tests {
    use sm::types::{SecretListEntry, Tag};

    use super::*;

    #[test]
    fn a_listed_secret_converts_with_its_description_and_tags() {
        let s = SecretListEntry::builder()
            .arn("arn:secret:sftp-operator/campus/host-keys-AbC")
            .name("sftp-operator/campus/host-keys")
            .description("ssh-ed25519 AAAA")
            .tags(Tag::builder().key("k").value("v").build())
            .build();
        assert_eq!(
            secret(&s),
            observed::Secret {
                arn: "arn:secret:sftp-operator/campus/host-keys-AbC".into(),
                name: "sftp-operator/campus/host-keys".into(),
                description: Some("ssh-ed25519 AAAA".into()),
                tags: [("k".into(), "v".into())].into(),
            }
        );
    }
}
