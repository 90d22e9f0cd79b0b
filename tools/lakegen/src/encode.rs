//! Byte-level writers for the values the bronze files hold: integers, money,
//! identifiers, CSV fields.
//!
//! Lines are assembled by appending to a `Vec<u8>` instead of going through
//! `write!`: the formatting machinery costs more than the rest of a row's
//! generation. JSON strings need no escaping because every string the
//! generator puts in JSON comes from a fixed ASCII vocabulary (statuses,
//! channels, pages, formatted timestamps); [`push_csv_field`] quotes the one
//! place where free text appears (names).

pub fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

pub fn push_i64(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    push_u64(buf, v.unsigned_abs());
}

/// Cents as a decimal with exactly two places: `1234` -> `12.34`.
pub fn push_money(buf: &mut Vec<u8>, cents: u64) {
    push_u64(buf, cents / 100);
    let c = (cents % 100) as u8;
    buf.push(b'.');
    buf.push(b'0' + c / 10);
    buf.push(b'0' + c % 10);
}

/// A field of a CSV row, quoted (RFC 4180) when it holds a comma, a quote or
/// a line break.
pub fn push_csv_field(buf: &mut Vec<u8>, field: &str) {
    if field.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        buf.push(b'"');
        for b in field.bytes() {
            if b == b'"' {
                buf.push(b'"');
            }
            buf.push(b);
        }
        buf.push(b'"');
    } else {
        buf.extend_from_slice(field.as_bytes());
    }
}

/// 64 bits as 16 lowercase hex digits.
pub fn push_hex(buf: &mut Vec<u8>, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..16).rev() {
        buf.push(HEX[(v >> (4 * i) & 0xf) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut buf = Vec::new();
        f(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn numbers_and_money() {
        assert_eq!(text(|b| push_u64(b, 0)), "0");
        assert_eq!(text(|b| push_u64(b, u64::MAX)), u64::MAX.to_string());
        assert_eq!(text(|b| push_i64(b, -3)), "-3");
        assert_eq!(text(|b| push_money(b, 1234)), "12.34");
        assert_eq!(text(|b| push_money(b, 700)), "7.00");
        assert_eq!(text(|b| push_money(b, 5)), "0.05");
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(text(|b| push_csv_field(b, "Zoé")), "Zoé");
        assert_eq!(text(|b| push_csv_field(b, "Mug, pack of 2")), "\"Mug, pack of 2\"");
        assert_eq!(text(|b| push_csv_field(b, "Lamp \"Paris\"")), "\"Lamp \"\"Paris\"\"\"");
    }

    #[test]
    fn hex_is_zero_padded() {
        assert_eq!(text(|b| push_hex(b, 0x0123_4567_89ab_cdef)), "0123456789abcdef");
        assert_eq!(text(|b| push_hex(b, 10)), "000000000000000a");
    }
}
