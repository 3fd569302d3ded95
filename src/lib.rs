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
//! - [`validate`]: every rule, every problem located → [`validate::Service`].
//! - [`render`]: a service → the resources it should own ([`render::Desired`]).
//! - [`aws`]: the only code that talks to AWS — [`aws::observe`] (→ [`observed::Observed`]),
//!   [`aws::apply`], the events poller and the lease; one call counter for all of it.
//! - [`plan`] and [`dns`]: desired vs observed → ordered, typed changes; pure.
//! - [`report`]: plans and results as text or JSON.
//! - [`controller`] and [`run`]: the control loop (`run`): work queue, backoff, resync, manifest
//!   watching, events, leader election; [`metrics`] exports what it does.
//! - [`cli`] and [`commands`]: flags, and one function per command wiring the stages.
#![forbid(unsafe_code)]

pub mod aws;
pub mod cli;
pub mod commands;
pub mod controller;
pub mod diagnostic;
pub mod dns;
pub mod events;
pub mod load;
pub mod metrics;
pub mod names;
pub mod observed;
pub mod plan;
pub mod render;
pub mod report;
pub mod run;
pub mod spec;
pub mod sshkeys;
pub mod validate;
