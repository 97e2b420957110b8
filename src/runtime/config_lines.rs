//! Line numbers for configuration errors found after parsing. Syntax and type
//! errors carry toml's own span; a validation error (a duplicate destination,
//! a zero where a positive value is needed) starts with the path of the field,
//! such as `streaming[1].flow[0].port`, which is looked up here in the
//! document's spans so the operator is told the line too.

use toml::de::{DeTable, DeValue};

/// One step of a field path: a key, then an optional array index.
fn segments(path: &str) -> Option<Vec<(&str, Option<usize>)>> {
    path.split('.')
        .map(|segment| match segment.split_once('[') {
            None => Some((segment, None)),
            Some((key, rest)) => {
                let index = rest.strip_suffix(']')?.parse().ok()?;
                Some((key, Some(index)))
            }
        })
        .collect()
}

/// The byte offset of the field at `path` in `text`, or of the deepest table
/// on the way that exists (a missing field is reported where its table is).
fn offset_of(text: &str, path: &str) -> Option<usize> {
    let document = DeTable::parse(text).ok()?;
    let mut table = document.get_ref();
    let mut found = None;
    for (key, index) in segments(path)? {
        let Some(value) = table.get(key) else {
            break;
        };
        let mut value = value;
        if let Some(i) = index {
            match value.get_ref() {
                DeValue::Array(items) => match items.get(i) {
                    Some(item) => value = item,
                    None => break,
                },
                _ => break,
            }
        }
        found = Some(value.span().start);
        match value.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ => break,
        }
    }
    found
}

/// The 1-based line of the field at `path` in `text`.
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    let offset = offset_of(text, path)?;
    Some(text.get(..offset)?.matches('\n').count() + 1)
}

/// Prefixes a validation message that starts with a field path (up to the
/// first `:` or space) with the line of that field.
pub fn with_line(text: &str, message: &str) -> String {
    let path = message.split([':', ' ']).next().unwrap_or_default();
    match line_of(text, path) {
        Some(line) if !path.is_empty() => format!("line {line}: {message}"),
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"state_dir = "/x"
[bmsc]
endpoint = "http://h:1"
[[streaming]]
name = "a"
[[streaming.flow]]
port = 1
[[streaming]]
name = "b"
mtk = { period = "1s" }
[[streaming.flow]]
port = 2
[[streaming.flow]]
port = 3
"#;

    #[test]
    fn fields_are_found_through_tables_and_arrays() {
        assert_eq!(line_of(DOC, "state_dir"), Some(1));
        assert_eq!(line_of(DOC, "bmsc.endpoint"), Some(3));
        assert_eq!(line_of(DOC, "streaming[0].flow[0].port"), Some(7));
        assert_eq!(line_of(DOC, "streaming[1].name"), Some(9));
        assert_eq!(line_of(DOC, "streaming[1].mtk.period"), Some(10));
        assert_eq!(line_of(DOC, "streaming[1].flow[1].port"), Some(14));
    }

    #[test]
    fn a_missing_field_points_at_its_table() {
        // `streaming[1].flow[1]` starts at its header line.
        assert_eq!(
            line_of(DOC, "streaming[1].flow[1].ingest"),
            line_of(DOC, "streaming[1].flow[1]")
        );
        assert!(line_of(DOC, "streaming[1].flow[1]").unwrap() >= 13);
    }

    #[test]
    fn messages_get_the_line_of_their_field() {
        assert_eq!(
            with_line(DOC, "streaming[1].flow[1].port: must not be 0"),
            "line 14: streaming[1].flow[1].port: must not be 0"
        );
        assert_eq!(with_line(DOC, "no path here"), "no path here");
        assert_eq!(with_line("not = [toml", "x: y"), "x: y");
    }
}
