//! A strict reader of the OpenMetrics text `/metrics` answers (no
//! maintained Rust parser of the format exists; prometheus-client has
//! none): every family is `# HELP`, `# TYPE`, an optional `# UNIT`, then
//! its samples, each named by the family and a suffix its type allows,
//! with well-formed labels and a number; the text ends with `# EOF`.
//! Histograms are checked too: cumulative buckets, `+Inf` equal to
//! `_count`. Any departure panics with the line.

use std::collections::BTreeMap;

/// A sample's labels, in order.
type Labels = Vec<(String, String)>;

/// One sample: its name, its labels in order, its value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

/// The families (name to type) and the samples of an exposition.
#[derive(Debug)]
pub struct Exposition {
    pub types: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the one sample named `name` whose labels include
    /// `labels`; 0 when there is none (a counter not yet created).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = (self.samples.iter())
            .filter(|s| s.name == name)
            .filter(|s| {
                (labels.iter()).all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .collect();
        assert!(
            found.len() <= 1,
            "{name} {labels:?} names {} samples: {found:?}",
            found.len()
        );
        found.first().map_or(0.0, |s| s.value)
    }
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    is_name(name) && !name.contains(':')
}

/// The labels of `{...}` (without the braces): `key="value"` separated
/// by commas, values with `\\`, `\"` and `\n` escapes.
fn labels(text: &str, line: &str) -> Labels {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("a label without =\": {line}"));
        assert!(is_label_name(key), "label name {key:?}: {line}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => panic!("a bad escape {other:?}: {line}"),
                },
                Some((at, '"')) => break at,
                Some((_, c)) => value.push(c),
                None => panic!("an unterminated label value: {line}"),
            }
        };
        assert!(
            !labels.iter().any(|(k, _)| k == key),
            "label {key} twice: {line}"
        );
        labels.push((key.to_string(), value));
        rest = &after[end + 1..];
        if let Some(next) = rest.strip_prefix(',') {
            rest = next;
            assert!(!rest.is_empty(), "a trailing comma: {line}");
        } else {
            assert!(rest.is_empty(), "labels not separated by commas: {line}");
        }
    }
    labels
}

fn number(text: &str, line: &str) -> f64 {
    match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => text
            .parse()
            .unwrap_or_else(|_| panic!("{text:?} is not a number: {line}")),
    }
}

/// The suffixes a sample of a family of type `kind` may have.
fn suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "gauge" => &[""],
        "histogram" => &["_bucket", "_sum", "_count", "_created"],
        other => panic!("a type this server does not expose: {other}"),
    }
}

/// Reads an exposition, checking its structure strictly (module docs).
pub fn parse(text: &str) -> Exposition {
    let body = text
        .strip_suffix("# EOF\n")
        .unwrap_or_else(|| panic!("the text does not end with # EOF: {text}"));
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    // The family being read, its type, and whether its UNIT may come.
    let mut family: Option<(String, String)> = None;
    let mut help: Option<String> = None;
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(is_name(name), "HELP of {name:?}: {line}");
            assert!(!text.is_empty(), "an empty HELP: {line}");
            assert!(!types.contains_key(name), "family {name} twice: {line}");
            help = Some(name.to_string());
            family = None;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("a TYPE without a type: {line}"));
            assert_eq!(
                help.as_deref(),
                Some(name),
                "TYPE not after its HELP: {line}"
            );
            suffixes(kind);
            types.insert(name.to_string(), kind.to_string());
            family = Some((name.to_string(), kind.to_string()));
            help = None;
        } else if let Some(rest) = line.strip_prefix("# UNIT ") {
            let (name, unit) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("a UNIT without a unit: {line}"));
            let (current, _) = family.as_ref().expect("a UNIT outside a family");
            assert_eq!(current, name, "UNIT of another family: {line}");
            assert!(
                name.ends_with(&format!("_{unit}")),
                "the unit is not the name's suffix: {line}"
            );
        } else if line.starts_with('#') {
            panic!("a comment OpenMetrics does not allow: {line}");
        } else {
            let (family, kind) = family
                .as_ref()
                .unwrap_or_else(|| panic!("a sample before its TYPE: {line}"));
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("a sample without a value: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                    (name, labels(inner, line))
                }
                None => (series, Vec::new()),
            };
            let suffix = name
                .strip_prefix(family.as_str())
                .unwrap_or_else(|| panic!("{name} is not of family {family}: {line}"));
            assert!(
                suffixes(kind).contains(&suffix),
                "{name}: a {kind} has no {suffix:?} samples: {line}"
            );
            if suffix == "_bucket" {
                assert!(
                    labels.iter().any(|(k, _)| k == "le"),
                    "a bucket without le: {line}"
                );
            }
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value: number(value, line),
            });
        }
    }
    let exposition = Exposition { types, samples };
    check_histograms(&exposition);
    exposition
}

/// Each histogram series: buckets cumulative (never decreasing), the last
/// one `+Inf`, equal to `_count`.
fn check_histograms(exposition: &Exposition) {
    for (family, kind) in &exposition.types {
        if kind != "histogram" {
            continue;
        }
        let bucket = format!("{family}_bucket");
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for sample in exposition.samples.iter().filter(|s| s.name == bucket) {
            let le = &sample.labels.iter().find(|(k, _)| k == "le").unwrap().1;
            let rest: Vec<_> = (sample.labels.iter())
                .filter(|(k, _)| k != "le")
                .cloned()
                .collect();
            let le = number(le, "le");
            series.entry(rest).or_default().push((le, sample.value));
        }
        for (labels, buckets) in series {
            let pairs: Vec<(&str, &str)> = (labels.iter())
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert!(
                buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{family} {labels:?}: buckets not cumulative: {buckets:?}"
            );
            let (last_le, last) = *buckets.last().unwrap();
            assert_eq!(last_le, f64::INFINITY, "{family} {labels:?}: no +Inf");
            let count = exposition.value(&format!("{family}_count"), &pairs);
            assert_eq!(last, count, "{family} {labels:?}: +Inf is not _count");
        }
    }
}
