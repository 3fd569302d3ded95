//! Field-level differences between what we want and what AWS reported. Each kind compares
//! one typed view of its fields, built from both sides ([`diff`]).

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use super::FieldDiff;

/// Differences between two views of the same fields (`None` on the observed side: unknown).
pub(super) fn diff<T: Serialize>(want: &T, live: &T) -> Vec<FieldDiff> {
    let json = |v: &T| serde_json::to_value(v).expect("a field view serialises");
    diff_values(&json(want), &json(live))
}

/// Leaf-by-leaf differences between what we want and what AWS reported. A `null` on the
/// observed side means "not reported": unknown, so never a difference.
pub fn diff_values(want: &Value, live: &Value) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    walk("", want, live, &mut out);
    out
}

fn walk(path: &str, want: &Value, live: &Value, out: &mut Vec<FieldDiff>) {
    if live.is_null() {
        return;
    }
    match (want, live) {
        (Value::Object(w), Value::Object(l)) => {
            let keys: BTreeSet<&String> = w.keys().chain(l.keys()).collect();
            for k in keys {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match (w.get(k), l.get(k)) {
                    (Some(wv), Some(lv)) => walk(&p, wv, lv, out),
                    (Some(wv), None) if !wv.is_null() => {
                        out.push(FieldDiff { path: p, from: Value::Null, to: wv.clone() })
                    }
                    (None, Some(lv)) if !lv.is_null() => {
                        out.push(FieldDiff { path: p, from: lv.clone(), to: Value::Null })
                    }
                    _ => {}
                }
            }
        }
        (Value::Array(w), Value::Array(l)) if w.len() == l.len() => {
            for (i, (wv, lv)) in w.iter().zip(l).enumerate() {
                walk(&format!("{path}[{i}]"), wv, lv, out);
            }
        }
        _ if want != live => out.push(FieldDiff { path: path.to_owned(), from: live.clone(), to: want.clone() }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(want: Value, live: Value) -> Vec<String> {
        diff_values(&want, &live).into_iter().map(|d| d.path).collect()
    }

    #[test]
    fn equal_values_have_no_diff() {
        assert!(paths(json!({"a": 1, "b": [1, 2]}), json!({"a": 1, "b": [1, 2]})).is_empty());
    }

    #[test]
    fn an_unreported_field_is_unknown_not_drift() {
        assert!(paths(json!({"a": 1, "b": {"c": 2}}), json!({"a": null, "b": null})).is_empty());
    }

    #[test]
    fn leaves_are_named_by_dotted_and_indexed_paths() {
        let d = diff_values(&json!({"a": {"b": [1, 2]}}), &json!({"a": {"b": [1, 3]}}));
        assert_eq!(d, vec![FieldDiff { path: "a.b[1]".into(), from: json!(3), to: json!(2) }]);
    }

    #[test]
    fn arrays_of_different_length_differ_as_a_whole() {
        assert_eq!(paths(json!({"a": [1]}), json!({"a": [1, 2]})), vec!["a"]);
    }

    #[test]
    fn a_key_on_one_side_only_is_a_diff_unless_null() {
        let d = diff_values(&json!({"a": 1, "n": null}), &json!({"b": 2}));
        assert_eq!(
            d,
            vec![
                FieldDiff { path: "a".into(), from: Value::Null, to: json!(1) },
                FieldDiff { path: "b".into(), from: json!(2), to: Value::Null },
            ]
        );
    }

    #[test]
    fn typed_views_compare_like_their_json() {
        #[derive(Serialize)]
        struct View {
            n: Option<i64>,
        }
        assert!(diff(&View { n: Some(3) }, &View { n: None }).is_empty());
        assert_eq!(diff(&View { n: Some(3) }, &View { n: Some(4) })[0].to, json!(3));
    }
}
