//! Load: manifest paths → YAML documents → typed [`Manifest`]s, each with a map from field path
//! to source position so later stages can point at the exact line and column.
//!
//! ```text
//! -f file|dir|- ──read──▶ text ──YAML events──▶ documents + PathIndex ──serde──▶ Manifest
//! ```
//!
//! Parsing problems (syntax, wrong types, unknown fields) come back as [`Diagnostic`]s; all
//! files are read and every document is tried, so one run reports every problem it can.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_saphyr::granit_parser::{Event, Parser};

use crate::diagnostic::{Diagnostic, Diagnostics, Pos};
use crate::spec::Manifest;

/// Where a document came from: its file and its index in a multi-document stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub doc: usize,
}

/// Field path → position of its value (and of its key, for mapping entries).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathIndex {
    values: BTreeMap<String, Pos>,
    /// Every recorded position with its path, in document order, to map a parser error back
    /// to the field it is in.
    ordered: Vec<(Pos, String)>,
}

impl PathIndex {
    /// Position of `path`, or of its nearest recorded ancestor (a missing field points at the
    /// mapping that should hold it).
    pub fn locate(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => {
                    return self.values.get("").copied().unwrap_or(Pos { line: 1, column: 1 });
                }
            }
        }
    }

    /// Whether the document spelled this field out (as opposed to it taking its default).
    pub fn contains(&self, path: &str) -> bool {
        self.values.contains_key(path)
    }

    /// The innermost field whose key or value starts at or before `pos`.
    pub fn field_at(&self, pos: Pos) -> String {
        let i = self.ordered.partition_point(|(p, _)| *p <= pos);
        if i == 0 {
            return String::new();
        }
        self.ordered[i - 1].1.clone()
    }

    /// The mapping a "missing field" error at `pos` is about. serde-saphyr reports it at the
    /// mapping's last key (or at the mapping itself when empty): take whichever of that path
    /// and its parent is a mapping that should hold `field`.
    fn missing_field_parent(&self, pos: Pos, field: &str) -> Option<String> {
        let expected = crate::spec::parent_of_required(field)?;
        let at = self.field_at(pos);
        let parent = at.rfind(['.', '[']).map_or(String::new(), |i| at[..i].to_owned());
        let kind = |p: &str| p.rsplit('.').next().unwrap_or("").split('[').next().unwrap_or("").to_owned();
        [parent, at].into_iter().find(|p| expected.contains(&kind(p).as_str()))
    }

    fn record(&mut self, path: &str, pos: Pos, is_value: bool) {
        if is_value {
            self.values.entry(path.to_owned()).or_insert(pos);
        }
        self.ordered.push((pos, path.to_owned()));
    }
}

/// One `SftpService` document as written, with where it came from.
#[derive(Clone, Debug)]
pub struct LoadedManifest {
    pub origin: Origin,
    pub index: PathIndex,
    pub manifest: Manifest,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: no *.yaml or *.yml files found")]
    EmptyDirectory(PathBuf),
    #[error("{0}")]
    Invalid(Diagnostics),
}

pub type Result<T, E = LoadError> = std::result::Result<T, E>;

/// A file's name (as shown in errors) and its text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// Reads every path: `-` is standard input, a directory contributes its `*.yaml`/`*.yml`
/// files in name order (not recursive; hidden entries such as a ConfigMap's `..data` are skipped).
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<SourceFile>> {
    let mut out = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| LoadError::Io { path: path.clone(), source })?;
            out.push(SourceFile { path: PathBuf::from("<stdin>"), text });
            continue;
        }
        let io = |source| LoadError::Io { path: path.clone(), source };
        if std::fs::metadata(path).map_err(io)?.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(io)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_manifest_file(p))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(LoadError::EmptyDirectory(path.clone()));
            }
            for f in files {
                out.push(read_file(&f)?);
            }
        } else {
            out.push(read_file(path)?);
        }
    }
    Ok(out)
}

fn is_manifest_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml")) && p.is_file()
}

fn read_file(path: &Path) -> Result<SourceFile> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io { path: path.to_owned(), source })?;
    Ok(SourceFile { path: path.to_owned(), text })
}

/// Parses every document of every source. Returns all manifests, or every problem found.
pub fn parse_sources(sources: &[SourceFile]) -> Result<Vec<LoadedManifest>> {
    let mut manifests = Vec::new();
    let mut problems = Diagnostics::default();
    for src in sources {
        match split_documents(&src.text) {
            Err(d) => problems.push(Diagnostic { file: src.path.clone(), ..d }),
            Ok(docs) => {
                for (i, doc) in docs.into_iter().enumerate() {
                    let origin = Origin { file: src.path.clone(), doc: i };
                    match parse_document(&origin, &doc) {
                        Ok(m) => manifests.push(m),
                        Err(d) => problems.push(d),
                    }
                }
            }
        }
    }
    if problems.is_empty() { Ok(manifests) } else { Err(LoadError::Invalid(problems.sorted())) }
}

/// Reads and parses in one go: what every command starts with.
pub fn load(paths: &[PathBuf]) -> Result<Vec<LoadedManifest>> {
    parse_sources(&read_sources(paths)?)
}

/// A document's text padded with blank lines so parser positions are positions in the file.
struct DocumentText {
    text: String,
    index: PathIndex,
}

fn pos_of(m: &serde_saphyr::granit_parser::Marker) -> Pos {
    // granit reports 1-indexed lines and 0-indexed columns.
    Pos { line: m.line() as u64, column: m.col() as u64 + 1 }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") }
}

/// Walks the YAML event stream once: records each document's byte range and every field's
/// position. Syntax errors come back as a located diagnostic (file left for the caller).
fn split_documents(text: &str) -> std::result::Result<Vec<DocumentText>, Diagnostic> {
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut index = PathIndex::default();
    let mut start_line = 1u64;
    let mut has_content = false;
    let mut start_byte = 0usize;

    for ev in Parser::new_from_str(text) {
        let (event, span) = ev.map_err(|e| {
            let m = e.marker();
            Diagnostic::new("", pos_of(m), "", format!("YAML syntax error: {}", e.info()))
        })?;
        let pos = pos_of(&span.start);
        match event {
            Event::DocumentStart(..) => {
                index = PathIndex::default();
                stack.clear();
                has_content = false;
                start_line = span.start.line() as u64;
                start_byte = line_start(text, span.start.byte_offset().unwrap_or(0));
            }
            Event::DocumentEnd => {
                let end = span.start.byte_offset().unwrap_or(text.len()).max(start_byte);
                if has_content {
                    let body = blank_marker(&text[start_byte..end]);
                    let padded = "\n".repeat(start_line.saturating_sub(1) as usize) + &body;
                    docs.push(DocumentText { text: padded, index: std::mem::take(&mut index) });
                }
            }
            Event::Scalar(ref value, ..) => {
                let is_key = matches!(stack.last(), Some(Frame::Map { key: None, .. }));
                if is_key {
                    if let Some(Frame::Map { path, key }) = stack.last_mut() {
                        let p = child_path(path, value);
                        index.record(&p, pos, false);
                        *key = Some(value.to_string());
                    }
                } else {
                    let p = enter_value(&mut stack);
                    if !(p.is_empty() && value.is_empty()) {
                        has_content = true;
                    }
                    index.record(&p, pos, true);
                }
            }
            Event::Alias(_) => {
                let p = enter_value(&mut stack);
                index.record(&p, pos, true);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_key = matches!(stack.last(), Some(Frame::Map { key: None, .. }));
                let p = if is_key {
                    // A complex key: record nothing useful, but keep the stack balanced.
                    if let Some(Frame::Map { key, .. }) = stack.last_mut() {
                        *key = Some("?".into());
                    }
                    "?".to_owned()
                } else {
                    enter_value(&mut stack)
                };
                has_content = true;
                index.record(&p, pos, true);
                stack.push(if matches!(event, Event::MappingStart(..)) {
                    Frame::Map { path: p, key: None }
                } else {
                    Frame::Seq { path: p, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    Ok(docs)
}

/// The path of the value about to be read, advancing the enclosing frame.
fn enter_value(stack: &mut [Frame]) -> String {
    match stack.last_mut() {
        None => String::new(),
        Some(Frame::Map { path, key }) => child_path(path, &key.take().unwrap_or_default()),
        Some(Frame::Seq { path, next }) => {
            let p = format!("{path}[{next}]");
            *next += 1;
            p
        }
    }
}

fn line_start(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].rfind('\n').map_or(0, |i| i + 1)
}

/// Replaces a leading `---` marker with spaces so the document parses alone with its columns intact.
fn blank_marker(body: &str) -> String {
    match body.strip_prefix("---") {
        Some(rest) => format!("   {rest}"),
        None => body.to_owned(),
    }
}

fn parse_document(origin: &Origin, doc: &DocumentText) -> std::result::Result<LoadedManifest, Diagnostic> {
    match serde_saphyr::from_str::<Manifest>(&doc.text) {
        Ok(manifest) => Ok(LoadedManifest { origin: origin.clone(), index: doc.index.clone(), manifest }),
        Err(e) => {
            let pos = e
                .location()
                .map(|l| Pos { line: l.line(), column: l.column() })
                .unwrap_or_else(|| doc.index.locate(""));
            let (message, hint) = describe_serde_error(&e);
            let missing = message.strip_prefix("missing field `").and_then(|m| m.split('`').next());
            let field = match missing.and_then(|f| Some((f, doc.index.missing_field_parent(pos, f)?))) {
                Some((f, parent)) => {
                    let parent_pos = doc.index.locate(&parent);
                    let path = if parent.is_empty() { f.to_owned() } else { format!("{parent}.{f}") };
                    let mut d = Diagnostic::new(&origin.file, parent_pos, path, message);
                    d.hint = hint;
                    return Err(d);
                }
                None => doc.index.field_at(pos),
            };
            let mut d = Diagnostic::new(&origin.file, pos, field, message);
            d.hint = hint;
            Err(d)
        }
    }
}

/// serde-saphyr's message without its location suffix or snippet, plus hints for the errors
/// people hit most.
fn describe_serde_error(e: &serde_saphyr::Error) -> (String, Option<String>) {
    let opts = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
    let raw = e.render_with_options(opts);
    let msg = strip_location_suffix(raw.lines().next().unwrap_or("").trim());
    // Plainer words for serde's type names.
    let msg = match msg.as_str() {
        m if m.starts_with("invalid u32") || m.starts_with("invalid u16") => "expected a whole number".to_owned(),
        "expected sequence start" => "expected a list".to_owned(),
        "expected mapping start" => "expected a mapping (key: value pairs)".to_owned(),
        _ => msg,
    };
    let hint = if msg.contains("unknown field `password`") {
        Some("plaintext passwords are refused; put a crypt(3) hash in `passwordHash`, e.g. from `openssl passwd -6` or `mkpasswd -m sha-512`".to_owned())
    } else if msg.contains("unknown field") {
        Some("check the spelling against `sftp-operator schema`; fields are camelCase".to_owned())
    } else {
        None
    };
    (msg, hint)
}

fn strip_location_suffix(msg: &str) -> String {
    // serde-saphyr appends " at line N, column M" (or similar) when snippets are off.
    for marker in [" at line ", " at row "] {
        if let Some(i) = msg.rfind(marker) {
            return msg[..i].to_owned();
        }
    }
    msg.to_owned()
}
