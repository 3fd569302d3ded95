//! Bytes → text: UTF-8 (a byte-order mark is dropped), or UTF-16 as YAML allows it (with a
//! byte-order mark, as Windows PowerShell's `>` writes files, or recognised by the zero bytes of
//! its ASCII first characters). Anything else is a located problem (file left for the caller).

use crate::diagnostic::{Diagnostic, Pos};

const HINT: &str = "save the manifest as UTF-8";

pub fn text(bytes: &[u8]) -> Result<String, Diagnostic> {
    if bytes.starts_with(&[0, 0, 0xFE, 0xFF]) || bytes.starts_with(&[0xFF, 0xFE, 0, 0]) {
        return Err(Diagnostic::new("", Pos { line: 1, column: 1 }, "", "UTF-32 text is not supported").with_hint(HINT));
    }
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => utf8(rest),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
        _ if ascii_as_utf16(bytes, 0) => guess_utf16(bytes, u16::from_be_bytes),
        _ if ascii_as_utf16(bytes, 1) => guess_utf16(bytes, u16::from_le_bytes),
        _ => utf8(bytes),
    }
}

/// Whether the first characters read as ASCII in UTF-16 without a mark: a zero byte (at
/// `zero` = 0 big-endian, 1 little-endian) beside a non-zero one, for up to four characters.
fn ascii_as_utf16(bytes: &[u8], zero: usize) -> bool {
    let head = &bytes[..bytes.len().min(8) & !1];
    !head.is_empty() && head.chunks(2).all(|c| c[zero] == 0 && c[1 - zero] != 0)
}

/// Without a byte-order mark, UTF-16 only if it decodes to text without NUL characters;
/// otherwise the bytes are what they say (and the YAML parser locates the NUL).
fn guess_utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Result<String, Diagnostic> {
    match utf16(bytes, unit) {
        Ok(text) if !text.contains('\0') => Ok(text),
        _ => utf8(bytes),
    }
}

fn utf8(bytes: &[u8]) -> Result<String, Diagnostic> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => {
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            Err(invalid(valid, &format!("invalid UTF-8 (byte 0x{:02X})", bytes[e.valid_up_to()])))
        }
    }
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Result<String, Diagnostic> {
    let units = bytes.chunks(2).map(|c| match c {
        [a, b] => Ok(unit([*a, *b])),
        _ => Err(()),
    });
    let mut out = String::with_capacity(bytes.len() / 2);
    for c in char::decode_utf16(units.map_while(Result::ok)) {
        match c {
            Ok(c) => out.push(c),
            Err(e) => {
                return Err(invalid(
                    &out,
                    &format!("invalid UTF-16 (unpaired surrogate 0x{:04X})", e.unpaired_surrogate()),
                ));
            }
        }
    }
    if bytes.len() % 2 == 1 {
        return Err(invalid(&out, "invalid UTF-16 (an odd number of bytes)"));
    }
    Ok(out)
}

/// A problem at the character after `valid`, the text decoded so far.
fn invalid(valid: &str, message: &str) -> Diagnostic {
    let line = valid.matches('\n').count() as u64 + 1;
    let column = valid.rsplit('\n').next().unwrap_or("").chars().count() as u64 + 1;
    Diagnostic::new("", Pos { line, column }, "", message).with_hint(HINT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16le(s: &str, bom: bool) -> Vec<u8> {
        let mut out = if bom { vec![0xFF, 0xFE] } else { vec![] };
        out.extend(s.encode_utf16().flat_map(|u| u.to_le_bytes()));
        out
    }

    #[test]
    fn utf8_with_or_without_a_byte_order_mark() {
        assert_eq!(text(b"kind: SftpService\n").unwrap(), "kind: SftpService\n");
        assert_eq!(text(b"\xEF\xBB\xBFkind: x").unwrap(), "kind: x");
    }

    #[test]
    fn utf16_in_both_byte_orders_with_and_without_a_mark() {
        let s = "kind: SftpService\nname: caf\u{e9} \u{1F600}\n";
        assert_eq!(text(&utf16le(s, true)).unwrap(), s);
        assert_eq!(text(&utf16le(s, false)).unwrap(), s);
        let mut be = vec![0xFE, 0xFF];
        be.extend(s.encode_utf16().flat_map(|u| u.to_be_bytes()));
        assert_eq!(text(&be).unwrap(), s);
    }

    #[test]
    fn invalid_utf8_is_located_at_the_first_bad_byte() {
        let d = text(b"kind: x\nname: ab\xC3\x28\n").unwrap_err();
        assert_eq!(d.pos, Pos { line: 2, column: 9 });
        assert_eq!(d.message, "invalid UTF-8 (byte 0xC3)");
        // Columns count characters, not bytes.
        assert_eq!(text(b"a: \xC3\xA9\xC3\xA9\xFF").unwrap_err().pos, Pos { line: 1, column: 6 });
    }

    #[test]
    fn broken_utf16_is_located() {
        let mut bytes = utf16le("a: 1\nb: ", true);
        bytes.extend(0xD800u16.to_le_bytes());
        bytes.extend(utf16le("x", false));
        let d = text(&bytes).unwrap_err();
        assert_eq!(
            (d.pos, d.message.as_str()),
            (Pos { line: 2, column: 4 }, "invalid UTF-16 (unpaired surrogate 0xD800)")
        );
        let mut odd = utf16le("a: 1", true);
        odd.push(b'x');
        assert_eq!(text(&odd).unwrap_err().pos, Pos { line: 1, column: 5 });
    }

    #[test]
    fn a_nul_byte_is_not_taken_for_utf16() {
        assert_eq!(text(b"\0a: 1\n").unwrap(), "\0a: 1\n");
        assert_eq!(text(b"a\0: 1\n").unwrap(), "a\0: 1\n");
    }

    #[test]
    fn utf32_is_refused() {
        assert!(text(&[0xFF, 0xFE, 0, 0, b'a', 0, 0, 0]).unwrap_err().message.contains("UTF-32"));
    }
}
