//! Report: plans, apply results and status as text for people (terraform-style, colour on a
//! TTY) or JSON for programs. Pure: takes data, returns strings.

use std::fmt::Write;

use anstyle::{AnsiColor, Style};

use crate::aws::apply::Applied;
use crate::plan::{Action, Change, Plan};

fn paint(color: bool, c: AnsiColor, text: &str) -> String {
    if color {
        let s = Style::new().fg_color(Some(c.into()));
        format!("{}{text}{}", s.render(), s.render_reset())
    } else {
        text.to_owned()
    }
}

fn symbol(a: Action) -> (&'static str, AnsiColor) {
    match a {
        Action::Create => ("+", AnsiColor::Green),
        Action::Update => ("~", AnsiColor::Yellow),
        Action::Delete => ("-", AnsiColor::Red),
        Action::Conflict => ("!", AnsiColor::Magenta),
    }
}

fn change_line(out: &mut String, ch: &Change, color: bool) {
    let (sym, c) = symbol(ch.action);
    let _ = writeln!(out, "  {} {} {}", paint(color, c, sym), ch.kind.as_str(), ch.name);
    for d in &ch.diff {
        let _ = writeln!(out, "      ~ {}: {} → {}", d.path, short(&d.from), short(&d.to));
    }
    if let Some(r) = &ch.reason {
        let _ = writeln!(out, "      # {r}");
    }
}

fn short(v: &serde_json::Value) -> String {
    let s = match v {
        serde_json::Value::Null => "(none)".to_owned(),
        serde_json::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// The plan in the terraform manner: per service, one line per change, field diffs under it.
pub fn plan_text(plan: &Plan, color: bool) -> String {
    let mut out = String::new();
    let mut services: Vec<&str> = plan.changes.iter().map(|c| c.service.as_str()).collect();
    services.extend(plan.problems.iter().map(|p| p.service.as_str()));
    services.sort();
    services.dedup();
    for svc in services {
        let _ = writeln!(out, "{}", paint(color, AnsiColor::Cyan, svc));
        for p in plan.problems.iter().filter(|p| p.service == svc) {
            let _ = writeln!(out, "  {} {}", paint(color, AnsiColor::Red, "✗"), p.message);
        }
        for ch in plan.changes.iter().filter(|c| c.service == svc) {
            change_line(&mut out, ch, color);
        }
    }
    if !plan.orphans.is_empty() {
        let _ = writeln!(out, "Owned resources whose manifest is gone (deleted with --prune):");
        for ch in &plan.orphans {
            let _ = writeln!(out, "  - {} {} (service {})", ch.kind.as_str(), ch.name, ch.service);
        }
    }
    let _ = write!(
        out,
        "Plan: {} to create, {} to change, {} to delete, {} conflict{}, {} problem{}.",
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Delete),
        plan.count(Action::Conflict),
        if plan.count(Action::Conflict) == 1 { "" } else { "s" },
        plan.problems.len(),
        if plan.problems.len() == 1 { "" } else { "s" },
    );
    if !plan.has_changes() && plan.problems.is_empty() && plan.count(Action::Conflict) == 0 {
        out.push_str(" No changes: AWS matches the manifests.");
    }
    out.push('\n');
    out
}

/// One line per applied change, ✓ or ✗ with the error.
pub fn applied_text(applied: &[Applied], color: bool) -> String {
    let mut out = String::new();
    for a in applied {
        let (sym, c) = symbol(a.action);
        let (mark, error) = match &a.error {
            None => (paint(color, AnsiColor::Green, "✓"), String::new()),
            Some(e) => (paint(color, AnsiColor::Red, "✗"), format!(": {e}")),
        };
        let _ = writeln!(out, "  {mark} {} {} {} {}{error}", paint(color, c, sym), a.service, a.kind.as_str(), a.name);
    }
    out
}
