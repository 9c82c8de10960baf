//! Tables for people: columns padded to their widest cell, two spaces
//! apart, every cell's control characters escaped (names and stacks are a
//! guest's own and must not move the terminal); and the small formats
//! their cells use.

use custody_handle::diagnostics::escape_control;
use serde_json::Value;

/// A table of text cells under headings.
pub(crate) struct Table {
    headings: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(headings: &[&'static str]) -> Table {
        Table {
            headings: headings.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table, a line per row under the headings' line.
    pub(crate) fn render(&self) -> String {
        let headings: Vec<String> = self.headings.iter().map(|h| h.to_string()).collect();
        let lines: Vec<Vec<String>> = std::iter::once(headings)
            .chain(self.rows.iter().map(|row| {
                row.iter()
                    .map(|cell| escape_control(cell).into_owned())
                    .collect()
            }))
            .collect();
        let mut widths = vec![0; self.headings.len()];
        for line in &lines {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in &lines {
            let mut text = String::new();
            for (cell, width) in line.iter().zip(&widths) {
                let pad = width - cell.chars().count();
                text.push_str(cell);
                text.extend(std::iter::repeat_n(' ', pad + 2));
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A JSON value as a cell: a string as it is, `null` (or nothing) `-`.
pub(crate) fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Milliseconds for people: `850 ms`, `1.5 s`, `2 min 3 s`.
pub(crate) fn millis(value: &Value) -> String {
    let Some(ms) = value.as_u64() else {
        return "-".into();
    };
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

/// Bytes for people, in binary units.
pub(crate) fn bytes(value: &Value) -> String {
    let Some(n) = value.as_u64() else {
        return "-".into();
    };
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut size = n as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < units.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{size:.1} {}", units[unit])
    }
}

/// The non-zero counts of an object (`handles_by_type`, `faults`), as
/// `name n, ...`.
pub(crate) fn counts(value: &Value) -> String {
    let Some(map) = value.as_object() else {
        return String::new();
    };
    let counted: Vec<String> = (map.iter())
        .filter(|(_, n)| n.as_u64() != Some(0))
        .map(|(name, n)| format!("{name} {}", cell(n)))
        .collect();
    counted.join(", ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn columns_line_up_and_control_characters_are_escaped() {
        let mut table = Table::new(&["ID", "NAME"]);
        table.row(vec!["1".into(), "a\u{1b}[2Jb".into()]);
        table.row(vec!["1234".into(), "x".into()]);
        assert_eq!(table.render(), "ID    NAME\n1     a\\u{1b}[2Jb\n1234  x\n");
    }

    #[test]
    fn cells_for_people() {
        assert_eq!(millis(&json!(850)), "850 ms");
        assert_eq!(millis(&json!(1500)), "1.5 s");
        assert_eq!(millis(&json!(123_000)), "2 min 3 s");
        assert_eq!(millis(&json!(null)), "-");
        assert_eq!(bytes(&json!(65536)), "64.0 KiB");
        assert_eq!(bytes(&json!(12)), "12 B");
        assert_eq!(
            counts(&json!({"Fd": 2, "Pipe": 0, "Timer": 1})),
            "Fd 2, Timer 1"
        );
        assert_eq!(cell(&json!("x")), "x");
        assert_eq!(cell(&json!(3)), "3");
    }
}
