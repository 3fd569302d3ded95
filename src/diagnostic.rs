//! Located problems in manifests: `file:line:column: field.path: message`, plus an optional hint.
//!
//! Every layer that reads user input (loading, parsing, validation) reports through this one
//! type, so the CLI prints them all the same way and tests can assert on each part.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::sshkeys::looks_like_key_material;

/// A position in a manifest file, 1-indexed like editors and compilers print it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

/// One problem found in the input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub pos: Pos,
    /// Dotted field path such as `spec.users[0].keys[1]`; empty for whole-file problems.
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// The field and message pass through [`scrub`]: whatever a check quoted, key material never
    /// reaches a terminal, a log line or JSON output.
    pub fn new(file: impl Into<PathBuf>, pos: Pos, field: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            pos,
            field: scrub_field(field.into()),
            message: scrub(message.into()),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(scrub(hint.into()));
        self
    }
}

/// Longest a quoted value is echoed, in characters.
const QUOTE_MAX: usize = 64;
const NOT_SHOWN: &str = "<value not shown: it looks like key material>";

/// A user's value as it may appear in a message: a short prefix with control characters escaped,
/// and nothing of a value that looks like key material.
pub fn quote(v: &str) -> String {
    if looks_like_key_material(v) {
        return NOT_SHOWN.to_owned();
    }
    let mut out = String::new();
    for c in v.chars().take(QUOTE_MAX) {
        if c.is_control() { out.extend(c.escape_default()) } else { out.push(c) }
    }
    if v.chars().nth(QUOTE_MAX).is_some() {
        out.push('…');
    }
    out
}

/// A message as it may be shown. Each `` `…` `` or `"…"` span in it (where checks and serde put
/// values) is [`quote`]d; if key material is still left outside the spans, nothing of the message
/// is kept but that it was withheld.
pub fn scrub(message: String) -> String {
    let mut out = String::new();
    let mut rest = message.as_str();
    while let Some(open) = rest.find(['`', '"']) {
        let delim = rest[open..].chars().next().unwrap_or('`');
        out.push_str(&rest[..=open]);
        let inner = &rest[open + 1..];
        let close = inner.find(delim).unwrap_or(inner.len());
        out.push_str(&quote(&inner[..close]));
        out.push_str(&inner[close..(close + 1).min(inner.len())]);
        rest = &inner[(close + 1).min(inner.len())..];
    }
    out.push_str(rest);
    if looks_like_key_material(&out) {
        return "(message withheld: it would show key material)".to_owned();
    }
    escape_controls(&out)
}

fn escape_controls(s: &str) -> String {
    if !s.contains(char::is_control) {
        return s.to_owned();
    }
    s.chars().flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }).collect()
}

/// Longest field path shown, in characters (paths are made of the user's keys).
const FIELD_MAX: usize = 200;

/// A field path without key material: a mapping key that holds some ends the path there.
fn scrub_field(field: String) -> String {
    let field = if looks_like_key_material(&field) {
        let cut = field
            .match_indices(['.', '['])
            .map(|(i, _)| i)
            .take_while(|i| !looks_like_key_material(&field[..*i]))
            .last();
        cut.map_or_else(String::new, |i| field[..i].to_owned())
    } else {
        field
    };
    let mut out = escape_controls(&field);
    if let Some((at, _)) = out.char_indices().nth(FIELD_MAX) {
        out.truncate(at);
        out.push('…');
    }
    out
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.pos.line, self.pos.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in one pass over the input, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// Sorts by file and position so output reads top to bottom, whatever order checks ran in.
    pub fn sorted(mut self) -> Self {
        self.0.sort_by(|a, b| (&a.file, a.pos, &a.field).cmp(&(&b.file, b.pos, &b.field)));
        self.0.dedup();
        self
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "error: {d}")?;
        }
        let n = self.0.len();
        write!(f, "{n} problem{} found", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIVATE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB\n-----END OPENSSH PRIVATE KEY-----";

    #[test]
    fn quote_keeps_a_short_escaped_prefix_and_hides_keys() {
        assert_eq!(quote("sftp"), "sftp");
        assert_eq!(quote(&"x".repeat(70)), format!("{}…", "x".repeat(64)));
        assert_eq!(quote("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(quote(PRIVATE), NOT_SHOWN);
    }

    #[test]
    fn messages_keep_their_words_and_lose_the_key() {
        let d = Diagnostic::new(
            "m.yaml",
            Pos::default(),
            "spec.cluster",
            format!("`{PRIVATE}` is not an ECS cluster name"),
        );
        assert_eq!(d.message, format!("`{NOT_SHOWN}` is not an ECS cluster name"));
        let serde = format!("invalid type: string \"{PRIVATE}\", expected u32");
        assert_eq!(scrub(serde), format!("invalid type: string \"{NOT_SHOWN}\", expected u32"));
        // Outside any quotes: withheld whole.
        assert!(!scrub(format!("bad value {PRIVATE} here")).contains("BEGIN"));
        let long = format!("`{}` is long", "y".repeat(500));
        assert_eq!(scrub(long), format!("`{}…` is long", "y".repeat(64)));
        assert_eq!(scrub("plain words".into()), "plain words");
    }

    #[test]
    fn long_values_and_control_characters_are_cut_in_any_message_and_path() {
        let serde = format!("unknown field `{}\u{1b}[31m`, expected one of `kind`", "k".repeat(300));
        let out = scrub(serde);
        assert_eq!(out, format!("unknown field `{}…`, expected one of `kind`", "k".repeat(64)));
        let d = Diagnostic::new("m.yaml", Pos::default(), format!("metadata.labels.a\u{1b}{}", "b".repeat(300)), "x");
        assert!(
            d.field.starts_with("metadata.labels.a\\u{1b}b") && d.field.chars().count() == FIELD_MAX + 1,
            "{}",
            d.field
        );
    }

    #[test]
    fn a_key_in_a_field_path_ends_the_path() {
        let d = Diagnostic::new("m.yaml", Pos::default(), format!("metadata.labels.{PRIVATE}"), "bad");
        assert_eq!(d.field, "metadata.labels");
    }
}
