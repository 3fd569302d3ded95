//! sftp-operator: converge AWS (ECS, NLB, security groups, Cloud Map, Route 53) to declarative
//! `SftpService` manifests for the atmoz/sftp container.
//!
//! The data path, stage by stage (render and plan are pure; only observe and apply do I/O):
//!
//! ```text
//! -f PATH ─▶ load ─▶ validate ─▶ render ─▶ Desired ─┐
//!                                                   ├─▶ plan ─▶ Plan ─▶ apply ─▶ AWS
//!            AWS ─▶ observe ─────────────▶ Observed ─┘
//! ```
//!
//! - [`load`]: files, directories and stdin → YAML documents → [`spec::Manifest`] plus positions.
//! - [`validate`]: every rule, every problem located → [`model::Service`], the checked model.
//! - [`render`]: a service → the resources it should own ([`render::Desired`]).
//! - [`aws`]: the only code that talks to AWS — [`aws::observe`] (→ [`observed::Observed`]),
//!   [`aws::apply`], the events queue ([`aws::events`]) and the lease; one call counter for all.
//! - [`plan`] and [`dns`]: desired vs observed → ordered, typed changes; pure.
//! - [`names`] and [`codec`]: derived names and tags; the text formats written into AWS and read
//!   back (rule descriptions, TXT owner values, the host-key secret's description).
//! - [`reconcile`]: the one core — render → observe → plan ([`reconcile::prepare`]) and apply
//!   with its host-key follow-up ([`reconcile::apply`]); typed [`reconcile::ReconcileError`].
//! - [`report`]: plans and results as text or JSON.
//! - [`status`]: a service's Synced and Ready conditions, endpoints and notes, from what observe
//!   found and what plan would change; pure (`commands::status` does the I/O).
//! - [`rollout`]: where the ECS deployment of the task definition we applied stands (in
//!   progress, completed, failed and rolled back), for `converge --wait`, `run` and `status`; pure.
//! - [`controller`] and [`run`]: the control loop (`run`): work queue, backoff, resync, manifest
//!   watching, events ([`task_event`] parses them), leader election; [`metrics`] exports it.
//! - `app`, `cli` and `commands`: dispatch; flags (the only clap types); one function per
//!   command that calls [`reconcile`] and prints. Behind the default `cli` feature, so
//!   `cargo check --lib --no-default-features` checks the library without clap.
//!
//! Dependencies point down: `app → {cli, commands, run}`, `commands → {cli, reconcile, status}`,
//! `reconcile → {aws, plan, render}`, `run → {controller, reconcile}`, `validate → {load, render,
//! model}`, `render → model`; nothing below `app`/`cli`/`commands` sees clap or prints.
#![forbid(unsafe_code)]

#[cfg(feature = "cli")]
pub mod app;
pub mod aws;
#[cfg(feature = "cli")]
pub mod cli;
pub mod codec;
#[cfg(feature = "cli")]
pub mod commands;
pub mod controller;
pub mod diagnostic;
pub mod dns;
pub mod load;
pub mod metrics;
pub mod model;
pub mod names;
pub mod observed;
pub mod plan;
pub mod probe;
pub mod reconcile;
pub mod render;
pub mod report;
pub mod rollout;
pub mod run;
pub mod spec;
pub mod sshkeys;
pub mod status;
pub mod task_event;
pub mod validate;
