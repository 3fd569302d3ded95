//! Field path → source position for one document, kept as a tree so its memory is linear in
//! the document: a path is spelled out only when asked for, never stored per node (a long key
//! above a long list would otherwise be copied into every item's path).

use std::cmp::Ordering;

use crate::diagnostic::Pos;

/// One step of a field path: a mapping key, a list index, or the document itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Segment {
    Root,
    /// A key's text, as a byte range of [`PathIndex::keys`].
    Key {
        start: u32,
        len: u32,
    },
    Index(u32),
}

/// A position in half the space of [`Pos`]: an index holds one per key and value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct At {
    line: u32,
    column: u32,
}

impl At {
    /// Line 0: no position (a key whose value has not been read).
    const NONE: At = At { line: 0, column: 0 };

    fn new(p: Pos) -> At {
        At { line: p.line.min(u32::MAX as u64) as u32, column: p.column.min(u32::MAX as u64) as u32 }
    }

    fn pos(self) -> Option<Pos> {
        (self.line > 0).then_some(Pos { line: self.line as u64, column: self.column as u64 })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    parent: u32,
    segment: Segment,
    /// Where the key (or the list item, or the document) starts; nodes are in this order.
    start: At,
    /// Where the value starts.
    value: At,
}

/// Where each field of one document is, looked up by dotted path (`spec.users[0].keys[1]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathIndex {
    nodes: Vec<Node>,
    /// Every key's text, back to back.
    keys: String,
    /// Node ids sorted by (parent, segment): the children of a node are a contiguous run.
    by_parent: Vec<u32>,
}

impl PathIndex {
    /// Position of `path`, or of its nearest recorded ancestor (a missing field points at the
    /// mapping that should hold it).
    pub fn locate(&self, path: &str) -> Pos {
        let (node, _) = self.resolve(path);
        self.ancestors(node).find_map(|n| self.nodes[n as usize].value.pos()).unwrap_or(Pos { line: 1, column: 1 })
    }

    /// Whether the document spelled this field out (as opposed to it taking its default).
    pub fn contains(&self, path: &str) -> bool {
        match self.resolve(path) {
            (node, true) => self.nodes[node as usize].value.pos().is_some(),
            _ => false,
        }
    }

    /// The innermost field whose key or value starts at or before `pos`.
    pub fn field_at(&self, pos: Pos) -> String {
        let at = At::new(pos);
        match self.nodes.partition_point(|n| n.start <= at) {
            0 => String::new(),
            i => self.path_of(i as u32 - 1),
        }
    }

    /// The dotted path of a node, built by walking up to the root.
    pub(super) fn path_of(&self, node: u32) -> String {
        let mut segments: Vec<Segment> = self.ancestors(node).map(|n| self.nodes[n as usize].segment).collect();
        segments.reverse();
        let mut out = String::new();
        for s in segments {
            match s {
                Segment::Root => {}
                Segment::Key { .. } => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(self.key_text(s));
                }
                Segment::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }

    fn ancestors(&self, node: u32) -> impl Iterator<Item = u32> + '_ {
        let mut next = (!self.nodes.is_empty()).then_some(node);
        std::iter::from_fn(move || {
            let n = next?;
            let parent = self.nodes[n as usize].parent;
            next = (parent != n).then_some(parent);
            Some(n)
        })
    }

    fn key_text(&self, s: Segment) -> &str {
        match s {
            Segment::Key { start, len } => &self.keys[start as usize..(start + len) as usize],
            _ => "",
        }
    }

    fn cmp_segment(&self, a: Segment, b: Segment) -> Ordering {
        match (a, b) {
            (Segment::Index(x), Segment::Index(y)) => x.cmp(&y),
            (Segment::Key { .. }, Segment::Key { .. }) => self.key_text(a).cmp(self.key_text(b)),
            (Segment::Root, Segment::Root) => Ordering::Equal,
            (Segment::Root, _) | (Segment::Index(_), Segment::Key { .. }) => Ordering::Less,
            _ => Ordering::Greater,
        }
    }

    /// The first child of `parent` at `segment` (the first one wins for duplicate keys).
    fn child(&self, parent: u32, segment: &str, index: Option<u32>) -> Option<u32> {
        let target = |n: u32| {
            let node = &self.nodes[n as usize];
            let seg = match (node.segment, index) {
                (Segment::Index(i), Some(want)) => i.cmp(&want),
                (Segment::Key { .. }, None) => self.key_text(node.segment).cmp(segment),
                (Segment::Root, _) | (Segment::Index(_), None) => Ordering::Less,
                (Segment::Key { .. }, Some(_)) => Ordering::Greater,
            };
            node.parent.cmp(&parent).then(seg)
        };
        let i = self.by_parent.partition_point(|n| target(*n) == Ordering::Less);
        self.by_parent.get(i).copied().filter(|n| target(*n) == Ordering::Equal && *n != parent)
    }

    /// The deepest node along `path`, and whether all of the path was found. Keys may contain
    /// dots (`app.kubernetes.io/name`), so every split point is tried.
    fn resolve(&self, path: &str) -> (u32, bool) {
        if self.nodes.is_empty() {
            return (0, false);
        }
        self.descend(0, path)
    }

    fn descend(&self, node: u32, rest: &str) -> (u32, bool) {
        if rest.is_empty() {
            return (node, true);
        }
        let mut best = (node, false);
        let mut deeper = |found: (u32, bool)| {
            if found.1 || self.ancestors(found.0).count() > self.ancestors(best.0).count() {
                best = found;
            }
            found.1
        };
        if let Some(after) = rest.strip_prefix('[') {
            if let Some((digits, tail)) = after.split_once(']')
                && let Ok(i) = digits.parse::<u32>()
                && let Some(child) = self.child(node, "", Some(i))
            {
                deeper(self.descend(child, tail.strip_prefix('.').unwrap_or(tail)));
            }
            return best;
        }
        let ends = rest.match_indices(['.', '[']).map(|(i, _)| i).chain([rest.len()]);
        for end in ends {
            let Some(child) = self.child(node, &rest[..end], None) else { continue };
            let tail = &rest[end..];
            if deeper(self.descend(child, tail.strip_prefix('.').unwrap_or(tail))) {
                break;
            }
        }
        best
    }
}

/// Builds a [`PathIndex`] from the parser's events, one node per key or value.
#[derive(Default)]
pub(super) struct IndexBuilder {
    index: PathIndex,
}

impl IndexBuilder {
    pub fn len(&self) -> usize {
        self.index.nodes.len()
    }

    /// The document's root value.
    pub fn root(&mut self, pos: Pos) -> u32 {
        self.push(0, Segment::Root, pos, true)
    }

    /// A key in mapping `parent`; its value comes later through [`Self::value`].
    pub fn key(&mut self, parent: u32, key: &str, pos: Pos) -> u32 {
        let start = self.index.keys.len() as u32;
        self.index.keys.push_str(key);
        self.push(parent, Segment::Key { start, len: key.len() as u32 }, pos, false)
    }

    /// Item `i` of list `parent`.
    pub fn item(&mut self, parent: u32, i: u32, pos: Pos) -> u32 {
        self.push(parent, Segment::Index(i), pos, true)
    }

    /// The value of a mapping entry whose key was recorded as `node`.
    pub fn value(&mut self, node: u32, pos: Pos) {
        let n = &mut self.index.nodes[node as usize];
        if n.value == At::NONE {
            n.value = At::new(pos);
        }
    }

    fn push(&mut self, parent: u32, segment: Segment, start: Pos, is_value: bool) -> u32 {
        let id = self.index.nodes.len() as u32;
        // The root is its own parent, which ends every walk up.
        let parent = if segment == Segment::Root { id } else { parent };
        let start = At::new(start);
        self.index.nodes.push(Node { parent, segment, start, value: if is_value { start } else { At::NONE } });
        id
    }

    pub fn finish(mut self) -> PathIndex {
        let index = &self.index;
        let mut by_parent: Vec<u32> = (0..index.nodes.len() as u32).collect();
        // Stable: among duplicate keys the first stays first.
        by_parent.sort_by(|a, b| {
            let (x, y) = (&index.nodes[*a as usize], &index.nodes[*b as usize]);
            x.parent.cmp(&y.parent).then_with(|| index.cmp_segment(x.segment, y.segment))
        });
        self.index.by_parent = by_parent;
        // Kept for the life of the manifest: no growth slack.
        self.index.nodes.shrink_to_fit();
        self.index.keys.shrink_to_fit();
        self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u64, column: u64) -> Pos {
        Pos { line, column }
    }

    /// metadata: {name: x, labels: {app.kubernetes.io/name: y}}, spec: {users: [{name: a}, {name: b}]}
    fn sample() -> PathIndex {
        let mut b = IndexBuilder::default();
        let root = b.root(at(1, 1));
        let metadata = b.key(root, "metadata", at(1, 1));
        b.value(metadata, at(2, 3));
        let name = b.key(metadata, "name", at(2, 3));
        b.value(name, at(2, 9));
        let labels = b.key(metadata, "labels", at(3, 3));
        b.value(labels, at(4, 5));
        let label = b.key(labels, "app.kubernetes.io/name", at(4, 5));
        b.value(label, at(4, 29));
        let spec = b.key(root, "spec", at(5, 1));
        b.value(spec, at(6, 3));
        let users = b.key(spec, "users", at(6, 3));
        b.value(users, at(7, 5));
        for (i, line) in [7u64, 8].into_iter().enumerate() {
            let item = b.item(users, i as u32, at(line, 7));
            let n = b.key(item, "name", at(line, 7));
            b.value(n, at(line, 13));
        }
        b.finish()
    }

    #[test]
    fn locates_fields_and_list_items() {
        let ix = sample();
        assert_eq!(ix.locate("metadata.name"), at(2, 9));
        assert_eq!(ix.locate("spec.users[1].name"), at(8, 13));
        assert_eq!(ix.locate("spec.users[1]"), at(8, 7));
        assert_eq!(ix.locate(""), at(1, 1));
    }

    #[test]
    fn a_missing_field_points_at_its_nearest_ancestor() {
        let ix = sample();
        assert_eq!(ix.locate("spec.users[1].uid"), at(8, 7));
        assert_eq!(ix.locate("spec.users[5].name"), at(7, 5));
        assert_eq!(ix.locate("spec.storage.efs"), at(6, 3));
        assert!(!ix.contains("spec.users[1].uid"));
        assert!(ix.contains("spec.users[0].name"));
    }

    #[test]
    fn keys_with_dots_are_found_whole() {
        let ix = sample();
        assert_eq!(ix.locate("metadata.labels.app.kubernetes.io/name"), at(4, 29));
        assert!(ix.contains("metadata.labels.app.kubernetes.io/name"));
        assert!(!ix.contains("metadata.labels.app"));
    }

    #[test]
    fn field_at_names_the_innermost_field_before_a_position() {
        let ix = sample();
        assert_eq!(ix.field_at(at(8, 20)), "spec.users[1].name");
        assert_eq!(ix.field_at(at(4, 6)), "metadata.labels.app.kubernetes.io/name");
        assert_eq!(ix.field_at(at(1, 1)), "metadata");
        assert_eq!(PathIndex::default().field_at(at(3, 3)), "");
        assert_eq!(PathIndex::default().locate("spec"), at(1, 1));
    }

    #[test]
    fn the_first_of_duplicate_keys_wins() {
        let mut b = IndexBuilder::default();
        let root = b.root(at(1, 1));
        let first = b.key(root, "kind", at(1, 1));
        b.value(first, at(1, 7));
        let second = b.key(root, "kind", at(2, 1));
        b.value(second, at(2, 7));
        assert_eq!(b.finish().locate("kind"), at(1, 7));
    }
}
