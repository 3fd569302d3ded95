//! Load: manifest paths → YAML documents → typed [`Manifest`]s, each with a map from field path
//! to source position so later stages can point at the exact line and column.
//!
//! ```text
//! -f file|dir|- ──read, decode──▶ text ──YAML events──▶ documents + PathIndex ──serde──▶ Manifest
//! ```
//!
//! Parsing problems (encoding, syntax, limits, wrong types, unknown fields) come back as
//! [`Diagnostic`]s; all files are read and every document is tried, so one run reports every
//! problem it can. Time and memory are linear in the input, and input past the [`limits`] is
//! refused at once with a located error (the controller runs in 256 MiB).

mod decode;
mod index;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

use crate::diagnostic::{Diagnostic, Diagnostics, Pos};
use crate::spec::Manifest;

use index::IndexBuilder;
pub use index::PathIndex;

/// What one load accepts; each is far above any real manifest set (a valid service renders to
/// at most 64 KiB) and low enough that the largest accepted input loads in well under 100 MiB.
pub mod limits {
    /// All files and standard input together.
    pub const MAX_INPUT_BYTES: usize = 16 * 1024 * 1024;
    /// YAML documents over all files (a document is one SftpService).
    pub const MAX_DOCUMENTS: usize = 20_000;
    /// Keys, values and list items in one document.
    pub const MAX_NODES_PER_DOCUMENT: usize = 100_000;
    /// Bytes of one mapping key (AWS tag keys, the longest keys a manifest has, are 128 characters).
    pub const MAX_KEY_BYTES: usize = 1024;
    /// Mappings and lists inside each other (a manifest needs 5).
    pub const MAX_DEPTH: usize = 32;
}

/// Where a document came from: its file and its index in a multi-document stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub doc: usize,
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
/// Text is UTF-8, or UTF-16 (with a byte-order mark, or ASCII first characters); undecodable or oversized input is a located
/// problem, reported for every file.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<SourceFile>> {
    let mut files = Vec::new();
    for path in paths {
        let io = |source| LoadError::Io { path: path.clone(), source };
        if path.as_os_str() != "-" && std::fs::metadata(path).map_err(io)?.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(io)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_manifest_file(p))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(LoadError::EmptyDirectory(path.clone()));
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut out = Vec::new();
    let mut problems = Diagnostics::default();
    let mut budget = limits::MAX_INPUT_BYTES;
    for path in files {
        let (shown, bytes) = read_bounded(&path, budget)?;
        if bytes.len() > budget {
            problems.push(Diagnostic::new(
                &shown,
                Pos { line: 1, column: 1 },
                "",
                format!(
                    "the manifests are larger than {} MiB in total; nothing past this file was read",
                    limits::MAX_INPUT_BYTES >> 20
                ),
            ));
            break;
        }
        budget -= bytes.len();
        match decode::text(&bytes) {
            Ok(text) => out.push(SourceFile { path: shown, text }),
            Err(d) => problems.push(Diagnostic { file: shown, ..d }),
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(LoadError::Invalid(problems)) }
}

fn is_manifest_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml")) && p.is_file()
}

/// A file's bytes (or stdin's for `-`), reading at most one byte past `budget`.
fn read_bounded(path: &Path, budget: usize) -> Result<(PathBuf, Vec<u8>)> {
    let io = |source| LoadError::Io { path: path.to_owned(), source };
    let mut bytes = Vec::new();
    let limit = budget as u64 + 1;
    if path.as_os_str() == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes).map_err(io)?;
        return Ok((PathBuf::from("<stdin>"), bytes));
    }
    std::fs::File::open(path).map_err(io)?.take(limit).read_to_end(&mut bytes).map_err(io)?;
    Ok((path.to_owned(), bytes))
}

/// Parses every document of every source. Returns all manifests, or every problem found.
pub fn parse_sources(sources: &[SourceFile]) -> Result<Vec<LoadedManifest>> {
    let mut manifests = Vec::new();
    for_each_document(sources, |m| manifests.push(m))?;
    Ok(manifests)
}

/// Hands each parsed document to `each` as soon as it is read, so a caller that keeps less than
/// the whole document keeps memory down; every problem comes back at the end.
pub fn for_each_document(sources: &[SourceFile], mut each: impl FnMut(LoadedManifest)) -> Result<()> {
    let mut problems = Diagnostics::default();
    let mut documents_left = limits::MAX_DOCUMENTS;
    for src in sources {
        let result = split_documents(&src.text, &mut documents_left, |doc| {
            let origin = Origin { file: src.path.clone(), doc: doc.number };
            match parse_document(origin, &src.text, doc) {
                Ok(m) => each(m),
                Err(d) => problems.push(d),
            }
        });
        if let Err(d) = result {
            problems.push(Diagnostic { file: src.path.clone(), ..d });
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(LoadError::Invalid(problems.sorted())) }
}

/// Reads and parses in one go: what every command starts with.
pub fn load(paths: &[PathBuf]) -> Result<Vec<LoadedManifest>> {
    parse_sources(&read_sources(paths)?)
}

/// One document of a stream: where its text is and where its fields are.
struct Document {
    number: usize,
    /// Byte range in the file, from the start of its first line.
    bytes: std::ops::Range<usize>,
    /// File line of the range's first line.
    first_line: u64,
    index: PathIndex,
}

fn pos_of(m: &serde_saphyr::granit_parser::Marker) -> Pos {
    // granit reports 1-indexed lines and 0-indexed columns.
    Pos { line: m.line() as u64, column: m.col() as u64 + 1 }
}

/// An open mapping or list, with the node its entries hang from.
enum Frame {
    /// `key` is the entry whose value comes next.
    Map {
        node: u32,
        key: Option<u32>,
    },
    Seq {
        node: u32,
        next: u32,
    },
}

/// Walks the YAML event stream once, handing each document with content to `each` as soon as
/// it ends (so only one document's index is being built at a time). Syntax errors and limits
/// come back as a located diagnostic (file left for the caller) and end the stream.
fn split_documents(
    text: &str,
    documents_left: &mut usize,
    mut each: impl FnMut(Document),
) -> std::result::Result<(), Diagnostic> {
    let mut walk = Walk::default();
    for ev in Parser::new_from_str_with_options(text, parser_options()) {
        let (event, span) = ev.map_err(|e| limit(pos_of(e.marker()), syntax_message(&e.info())))?;
        let pos = pos_of(&span.start);
        match event {
            Event::DocumentStart(..) => {
                if *documents_left == 0 {
                    return Err(limit(pos, format!("more than {} documents", limits::MAX_DOCUMENTS)));
                }
                walk.start_document(text, &span.start);
            }
            Event::DocumentEnd => {
                if let Some(doc) = walk.end_document(span.start.byte_offset().unwrap_or(text.len())) {
                    *documents_left -= 1;
                    each(doc);
                }
            }
            Event::Scalar(ref value, ..) if walk.expects_key() => walk.key(value, pos)?,
            // An alias as a key (`*a: v`): its text is not at hand; recorded as the key `*`.
            Event::Alias(_) if walk.expects_key() => walk.key("*", pos)?,
            Event::Scalar(..) | Event::Alias(_) | Event::MappingStart(..) | Event::SequenceStart(..) => {
                walk.node(&event, pos)?;
            }
            Event::MappingEnd | Event::SequenceEnd => {
                walk.stack.pop();
            }
            _ => {}
        }
    }
    Ok(())
}

fn parser_options() -> serde_saphyr::granit_parser::Options {
    let mut options = serde_saphyr::granit_parser::Options::default();
    // A backstop only: the walk refuses deeper nesting first, with a clearer message.
    options.block_nesting_limit = 2 * limits::MAX_DEPTH;
    options.flow_nesting_limit = 2 * limits::MAX_DEPTH;
    // YAML caps implicit keys at 1024 characters with a bare "mapping values are not allowed";
    // let the scanner read on so the walk can name the limit.
    options.simple_key_max_lookahead = limits::MAX_INPUT_BYTES;
    options
}

/// The scanner's own nesting backstop trips while it looks ahead, before the walk sees the
/// level: say which limit it is.
fn syntax_message(info: &str) -> String {
    if info.contains("recursion limit") {
        format!("nesting deeper than {} levels", limits::MAX_DEPTH)
    } else {
        format!("YAML syntax error: {info}")
    }
}

/// A syntax error or a limit reached, at `pos`.
fn limit(pos: Pos, message: String) -> Diagnostic {
    Diagnostic::new("", pos, "", message)
}

/// [`split_documents`]'s place in the stream: the current document's open mappings and lists,
/// its index so far, and where it started.
struct Walk {
    stack: Vec<Frame>,
    index: IndexBuilder,
    has_content: bool,
    first_line: u64,
    start_byte: usize,
    number: usize,
}

impl Default for Walk {
    fn default() -> Self {
        Walk {
            stack: Vec::new(),
            index: IndexBuilder::default(),
            has_content: false,
            first_line: 1,
            start_byte: 0,
            number: 0,
        }
    }
}

impl Walk {
    fn start_document(&mut self, text: &str, start: &serde_saphyr::granit_parser::Marker) {
        (self.index, self.has_content) = (IndexBuilder::default(), false);
        self.stack.clear();
        self.first_line = start.line() as u64;
        self.start_byte = line_start(text, start.byte_offset().unwrap_or(0));
        // `%TAG`/`%YAML` directives stand before `---` and belong to the document.
        while self.start_byte > 0 {
            let previous = line_start(text, self.start_byte - 1);
            if !text[previous..self.start_byte].starts_with('%') {
                break;
            }
            (self.start_byte, self.first_line) = (previous, self.first_line - 1);
        }
    }

    /// The document that ends at byte `end`, unless it had no content.
    fn end_document(&mut self, end: usize) -> Option<Document> {
        if !self.has_content {
            return None;
        }
        let index = std::mem::take(&mut self.index).finish();
        let doc = Document {
            number: self.number,
            bytes: self.start_byte..end.max(self.start_byte),
            first_line: self.first_line,
            index,
        };
        self.number += 1;
        Some(doc)
    }

    /// Whether the next scalar is a mapping key.
    fn expects_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn key(&mut self, value: &str, pos: Pos) -> std::result::Result<(), Diagnostic> {
        if value.len() > limits::MAX_KEY_BYTES {
            return Err(limit(pos, format!("a key longer than {} bytes", limits::MAX_KEY_BYTES)));
        }
        if let Some(Frame::Map { node, key }) = self.stack.last_mut() {
            *key = Some(self.index.key(*node, value, pos));
        }
        Ok(())
    }

    /// A value (scalar, alias, mapping or list) or a complex key starts.
    fn node(&mut self, event: &Event<'_>, pos: Pos) -> std::result::Result<(), Diagnostic> {
        if self.index.len() >= limits::MAX_NODES_PER_DOCUMENT {
            return Err(limit(
                pos,
                format!("a document with more than {} keys and values", limits::MAX_NODES_PER_DOCUMENT),
            ));
        }
        let node = match event {
            // A complex key (`? [a, b]`): recorded as the key `?`.
            Event::MappingStart(..) | Event::SequenceStart(..) if self.expects_key() => {
                let Some(Frame::Map { node, key }) = self.stack.last_mut() else { unreachable!() };
                let k = self.index.key(*node, "?", pos);
                *key = Some(k);
                k
            }
            _ => enter_value(&mut self.index, &mut self.stack, pos),
        };
        // An empty document (a trailing `---`, only comments) is a null at the root: skipped.
        let null_root = self.stack.is_empty()
            && matches!(event, Event::Scalar(v, ScalarStyle::Plain, ..) if ["", "~", "null", "Null", "NULL"].contains(&v.as_ref()));
        self.has_content |= !null_root;
        match event {
            Event::MappingStart(..) => self.stack.push(Frame::Map { node, key: None }),
            Event::SequenceStart(..) => self.stack.push(Frame::Seq { node, next: 0 }),
            _ => {}
        }
        if self.stack.len() > limits::MAX_DEPTH {
            return Err(limit(pos, format!("nesting deeper than {} levels", limits::MAX_DEPTH)));
        }
        Ok(())
    }
}

/// Records the value about to be read, advancing the enclosing frame; returns its node.
fn enter_value(index: &mut IndexBuilder, stack: &mut [Frame], pos: Pos) -> u32 {
    match stack.last_mut() {
        None => index.root(pos),
        Some(Frame::Map { node, key }) => match key.take() {
            Some(k) => {
                index.value(k, pos);
                k
            }
            None => *node,
        },
        Some(Frame::Seq { node, next }) => {
            *next += 1;
            index.item(*node, *next - 1, pos)
        }
    }
}

fn line_start(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].rfind('\n').map_or(0, |i| i + 1)
}

/// How serde-saphyr may spend on one document (it also expands aliases, which the walk above
/// counts once): the same limits, so `&a [*b, *b, ...]` chains cannot grow past them.
fn budget() -> Option<serde_saphyr::Budget> {
    serde_saphyr::budget! {
        max_depth: limits::MAX_DEPTH,
        max_nodes: limits::MAX_NODES_PER_DOCUMENT,
        max_events: 4 * limits::MAX_NODES_PER_DOCUMENT,
        max_total_scalar_bytes: limits::MAX_INPUT_BYTES,
        max_documents: 1,
    }
}

fn parse_document(origin: Origin, text: &str, doc: Document) -> std::result::Result<LoadedManifest, Diagnostic> {
    let options = serde_saphyr::options! { budget: budget() };
    let error = match serde_saphyr::from_str_with_options::<Manifest>(&text[doc.bytes.clone()], options) {
        Ok(manifest) => return Ok(LoadedManifest { origin, index: doc.index, manifest }),
        Err(e) => e,
    };
    let index = &doc.index;
    let pos = error
        .location()
        .map(|l| Pos { line: l.line() + doc.first_line - 1, column: l.column() })
        .unwrap_or_else(|| index.locate(""));
    let (message, hint) = describe_serde_error(&error);
    let missing = message.strip_prefix("missing field `").and_then(|m| m.split('`').next());
    let (pos, field) = match missing.and_then(|f| Some((f, missing_field_parent(index, pos, f)?))) {
        Some((f, parent)) => {
            (index.locate(&parent), if parent.is_empty() { f.to_owned() } else { format!("{parent}.{f}") })
        }
        None => (pos, index.field_at(pos)),
    };
    let mut d = Diagnostic::new(&origin.file, pos, field, message);
    d.hint = hint;
    Err(d)
}

/// The mapping a "missing field" error at `pos` is about. serde-saphyr reports it at the
/// mapping's last key (or at the mapping itself when empty): take whichever of that path and
/// its parent is a mapping that should hold `field`.
fn missing_field_parent(index: &PathIndex, pos: Pos, field: &str) -> Option<String> {
    let expected = crate::spec::parent_of_required(field)?;
    let at = index.field_at(pos);
    let parent = at.rfind(['.', '[']).map_or(String::new(), |i| at[..i].to_owned());
    let kind = |p: &str| p.rsplit('.').next().unwrap_or("").split('[').next().unwrap_or("").to_owned();
    [parent, at].into_iter().find(|p| expected.contains(&kind(p).as_str()))
}

/// serde-saphyr's message without its location suffix or snippet, plus hints for the errors
/// people hit most.
/// serde-saphyr's budget breach (`budget breached: Nodes { nodes: 100001 } ...`) in the
/// loader's own words: it trips where aliases expand past the limits the walk counted once.
fn budget_message(raw: &str) -> String {
    if raw.contains("Nodes") || raw.contains("Events") {
        format!("more than {} keys and values once aliases are expanded", limits::MAX_NODES_PER_DOCUMENT)
    } else if raw.contains("Depth") {
        format!("nesting deeper than {} levels once aliases are expanded", limits::MAX_DEPTH)
    } else {
        "the document exceeds the loader's limits once aliases are expanded".to_owned()
    }
}

fn describe_serde_error(e: &serde_saphyr::Error) -> (String, Option<String>) {
    let opts = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
    let raw = e.render_with_options(opts);
    let msg = strip_location_suffix(raw.lines().next().unwrap_or("").trim());
    // Plainer words for serde's type names.
    let msg = match msg.as_str() {
        m if m.starts_with("budget breached") => budget_message(m),
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

#[cfg(test)]
mod tests {
    use super::*;

    const CAMPUS: &str = include_str!("../../manifests/examples/campus.yaml");

    fn parse(text: &str) -> Result<Vec<LoadedManifest>> {
        parse_sources(&[SourceFile { path: PathBuf::from("m.yaml"), text: text.to_owned() }])
    }

    /// The index of a document that need not be a manifest.
    fn parse_index(text: &str) -> PathIndex {
        let mut left = limits::MAX_DOCUMENTS;
        let mut out = None;
        split_documents(text, &mut left, |d| out = Some(d.index)).unwrap();
        out.unwrap()
    }

    fn problems(text: &str) -> Vec<Diagnostic> {
        match parse(text) {
            Err(LoadError::Invalid(d)) => d.0,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn a_trailing_marker_and_comment_only_documents_are_empty_not_errors() {
        for text in [
            format!("{CAMPUS}---\n"),
            format!("{CAMPUS}---\n# nothing here\n"),
            format!("# header\n---\n{CAMPUS}...\n---\n~\n"),
        ] {
            let docs = parse(&text).unwrap();
            assert_eq!(docs.len(), 1, "{text}");
            assert_eq!(docs[0].manifest.metadata.name, "campus-sftp");
        }
        assert!(parse("---\n---\n# only comments\n").unwrap().is_empty());
    }

    #[test]
    fn positions_in_later_documents_are_file_positions() {
        let text = format!("{CAMPUS}---\n{}", CAMPUS.replace("  port: 30000", "  port: many"));
        let d = &problems(&text)[0];
        let line = text.lines().position(|l| l == "  port: many").unwrap() as u64 + 1;
        assert_eq!((d.pos.line, d.pos.column, d.field.as_str()), (line, 9, "spec.port"), "{d}");
        let docs = parse(&format!("{CAMPUS}---\n{CAMPUS}")).unwrap();
        assert_eq!(docs[1].origin.doc, 1);
        assert_eq!(docs[1].index.locate("metadata.name").line, CAMPUS.lines().count() as u64 + 1 + 8);
    }

    #[test]
    fn directives_stay_with_their_document_and_alias_keys_keep_paths_aligned() {
        let tagged = CAMPUS.replace("kind: SftpService", "kind: !e!kind SftpService");
        let text = format!("{CAMPUS}...\n%TAG !e! tag:example.edu,2026:\n---\n{tagged}");
        let docs = parse(&text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].index.locate("metadata.name").line, CAMPUS.lines().count() as u64 + 3 + 8);
        let ix = parse_index("a: &k x\nmap:\n  *k : 1\n  after: 2\n");
        assert_eq!(ix.field_at(Pos { line: 4, column: 10 }), "map.after");
        assert_eq!(ix.locate("map.after"), Pos { line: 4, column: 10 });
    }

    #[test]
    fn many_empty_documents_after_blank_lines_load_as_nothing() {
        let text = "\n".repeat(100_000) + &"---\n".repeat(20_000);
        assert!(parse(&text).unwrap().is_empty());
    }

    #[test]
    fn more_documents_than_the_limit_is_a_located_error() {
        let doc = "kind: x\n";
        let text = format!("{doc}---\n").repeat(limits::MAX_DOCUMENTS + 1);
        let all = problems(&text);
        let d = all.iter().find(|d| d.message.starts_with("more than")).expect("limit reported");
        assert_eq!(d.pos.line, 2 * limits::MAX_DOCUMENTS as u64, "{d}");
    }

    #[test]
    fn a_long_key_is_refused_where_it_starts() {
        let text = format!("kind: SftpService\n? {}\n: [{}]\n", "k".repeat(100_000), vec!["x"; 20_000].join(","));
        let d = &problems(&text)[0];
        assert_eq!((d.pos.line, d.pos.column), (2, 3));
        assert_eq!(d.message, format!("a key longer than {} bytes", limits::MAX_KEY_BYTES));
        let plain = format!("metadata:\n  {}: 1\n", "k".repeat(limits::MAX_KEY_BYTES + 1));
        assert_eq!(problems(&plain)[0].pos.line, 2);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let block: String = (0..limits::MAX_DEPTH + 1).map(|i| format!("{}k{i}:\n", "  ".repeat(i))).collect();
        let d = &problems(&format!("{block}{}v: 1\n", "  ".repeat(limits::MAX_DEPTH + 1)))[0];
        assert_eq!(d.message, format!("nesting deeper than {} levels", limits::MAX_DEPTH), "{d}");
        let flow = format!("a: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(problems(&flow)[0].message, format!("nesting deeper than {} levels", limits::MAX_DEPTH));
    }

    #[test]
    fn a_document_with_too_many_nodes_is_refused() {
        let text = format!("spec: [{}]\n", vec!["1"; limits::MAX_NODES_PER_DOCUMENT + 1].join(","));
        let d = &problems(&text)[0];
        assert!(d.message.starts_with("a document with more than"), "{d}");
        assert_eq!(d.pos.line, 1);
    }

    #[test]
    fn aliases_cannot_multiply_a_document_past_the_limits() {
        // One 10-key user repeated by 20 000 aliases: 200 000 nodes once expanded.
        let user = "{name: a, uid: 1001, directories: [a, b, c, d, e, f, g, h]}";
        let (head, rest) = CAMPUS.split_once("  users:\n").unwrap();
        let storage = &rest[rest.find("  storage:").unwrap()..];
        let text = format!("{head}  users: [&u {user}, {}]\n{storage}", vec!["*u"; 20_000].join(", "));
        let d = &problems(&text)[0];
        assert_eq!(d.message.as_str(), "more than 100000 keys and values once aliases are expanded", "{d}");
    }

    #[test]
    fn input_over_the_size_limit_is_refused_before_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
        std::fs::write(&a, CAMPUS).unwrap();
        std::fs::write(&b, "#".repeat(limits::MAX_INPUT_BYTES)).unwrap();
        let Err(LoadError::Invalid(d)) = read_sources(&[dir.path().to_owned()]) else { panic!("read") };
        assert_eq!(d.0[0].file, b);
        assert!(d.0[0].message.contains("larger than 16 MiB"), "{}", d.0[0]);
    }

    #[test]
    fn undecodable_files_are_each_located() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), b"kind: x\nname: \xC3\x28\n").unwrap();
        std::fs::write(dir.path().join("b.yaml"), [0xFF, 0xFE, b'a', 0, 0x00, 0xD8]).unwrap();
        let Err(LoadError::Invalid(d)) = read_sources(&[dir.path().to_owned()]) else { panic!("read") };
        let got: Vec<String> = d.iter().map(|d| format!("{}:{}:{}", d.pos.line, d.pos.column, d.message)).collect();
        assert_eq!(got, ["2:7:invalid UTF-8 (byte 0xC3)", "1:2:invalid UTF-16 (unpaired surrogate 0xD800)"]);
    }
}
