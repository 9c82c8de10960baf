//! Sizes as people write them (`64MiB`, `1G`, `512K`, bytes): the one parser
//! of the policy file, manifests and the command line.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// A size that [`parse_size`] cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a size (like 64MiB, 64M, 1G, 512K or bytes)")]
pub struct SizeError(pub String);

/// Reads a size in bytes: a number, optionally followed by `K`, `M`, `G` or
/// `T` (binary multiples: `1K` is 1024 bytes), optionally followed by `iB`
/// or `B`, case-insensitive, with spaces allowed around the unit: `64MiB`,
/// `64M`, `1 GB`, `512k`, `4096`, `4096B`.
///
/// ```
/// assert_eq!(custody_host::parse_size("64MiB"), Ok(64 << 20));
/// assert_eq!(custody_host::parse_size("1G"), Ok(1 << 30));
/// assert_eq!(custody_host::parse_size("4096"), Ok(4096));
/// assert!(custody_host::parse_size("lots").is_err());
/// ```
///
/// # Errors
/// A [`SizeError`] quoting the text, if it is not a size or does not fit a
/// `usize`.
pub fn parse_size(text: &str) -> Result<usize, SizeError> {
    let fail = || SizeError(text.to_string());
    let upper = text.trim().to_ascii_uppercase();
    let upper = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper)
        .trim_end();
    let (number, shift) = match upper.chars().last() {
        Some('K') => (&upper[..upper.len() - 1], 10),
        Some('M') => (&upper[..upper.len() - 1], 20),
        Some('G') => (&upper[..upper.len() - 1], 30),
        Some('T') => (&upper[..upper.len() - 1], 40),
        _ => (upper, 0),
    };
    let number = number.trim();
    // `parse` takes a leading `+`; a size is digits only.
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail());
    }
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(1usize.checked_shl(shift)?))
        .ok_or_else(fail)
}

/// Deserializes a size written as a number of bytes or as text for
/// [`parse_size`] (`memory_limit = "64MiB"` or `memory_limit = 67108864`).
pub(crate) fn deserialize_size<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<usize>, D::Error> {
    struct SizeVisitor;

    impl Visitor<'_> for SizeVisitor {
        type Value = usize;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a size: bytes, or text like \"64MiB\"")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
            usize::try_from(v).map_err(|_| E::custom(format!("{v} bytes is too large")))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
            u64::try_from(v)
                .map_err(|_| E::custom(format!("a size cannot be negative ({v})")))
                .and_then(|v| self.visit_u64(v))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
            parse_size(v).map_err(E::custom)
        }
    }

    deserializer.deserialize_any(SizeVisitor).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        for (text, bytes) in [
            ("64MiB", 64 << 20),
            ("64M", 64 << 20),
            ("64mb", 64 << 20),
            ("64 MiB", 64 << 20),
            ("1G", 1 << 30),
            ("1GiB", 1 << 30),
            ("512K", 512 << 10),
            ("512k", 512 << 10),
            ("2T", 2 << 40),
            ("4096", 4096),
            ("4096B", 4096),
            (" 7 ", 7),
            ("0", 0),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for text in [
            "",
            "M",
            "lots",
            "-1",
            "+5",
            "1.5G",
            "64X",
            "64MiBs",
            "99999999999999999999",
        ] {
            let error = parse_size(text).unwrap_err();
            assert_eq!(error, SizeError(text.to_string()));
            assert!(error.to_string().contains("is not a size"), "{error}");
        }
        assert!(parse_size("99999999999T").is_err(), "overflow is an error");
    }
}
