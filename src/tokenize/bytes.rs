//! The GPT-2 / tiktoken `data_gym` byte alphabet.
//!
//! Every byte `b` is given a printable stand-in character. The 188 "printable"
//! bytes (`chr(b).isprintable() and b != 0x20` in Python: 33..=126, 161..=172,
//! 174..=255) stand for themselves; the other 68 bytes, in increasing order,
//! are written as `chr(256 + n)` where `n` is their order among them (so the
//! space 0x20 is `Ġ` and the newline 0x0A is `Ċ`).
//!
//! The same order also gives the ranks of the single-byte tokens: rank 0..=187
//! are the printable bytes in increasing order, rank 188..=255 the others.

use std::sync::OnceLock;

/// Whether `b` stands for itself in the data_gym / GPT-2 byte alphabet.
pub fn is_printable_byte(b: u8) -> bool {
    matches!(b, 33..=126 | 161..=172 | 174..=255)
}

struct Tables {
    /// `rank_to_byte[r]` is the byte of the single-byte token of rank `r`.
    rank_to_byte: [u8; 256],
    /// `byte_to_char[b]` is the stand-in character of byte `b`.
    byte_to_char: [char; 256],
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut rank_to_byte = [0u8; 256];
        let mut byte_to_char = ['\0'; 256];
        let mut r = 0;
        for b in 0..=255u8 {
            if is_printable_byte(b) {
                rank_to_byte[r] = b;
                byte_to_char[b as usize] = char::from(b);
                r += 1;
            }
        }
        let mut n = 0u32;
        for b in 0..=255u8 {
            if !is_printable_byte(b) {
                rank_to_byte[r] = b;
                byte_to_char[b as usize] = char::from_u32(256 + n).expect("valid char");
                r += 1;
                n += 1;
            }
        }
        debug_assert_eq!(r, 256);
        Tables {
            rank_to_byte,
            byte_to_char,
        }
    })
}

/// The byte of the single-byte token of rank `rank` (0..=255).
pub fn rank_to_byte(rank: u8) -> u8 {
    tables().rank_to_byte[rank as usize]
}

/// The stand-in character of byte `b`.
pub fn byte_to_char(b: u8) -> char {
    tables().byte_to_char[b as usize]
}

/// The byte a stand-in character stands for, if it is one.
pub fn char_to_byte(c: char) -> Option<u8> {
    let c = c as u32;
    if c < 256 {
        let b = c as u8;
        is_printable_byte(b).then_some(b)
    } else if (256..256 + 68).contains(&c) {
        Some(tables().rank_to_byte[188 + (c - 256) as usize])
    } else {
        None
    }
}

/// Encodes raw bytes as a string of stand-in characters.
pub fn bytes_to_symbols(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| byte_to_char(b)).collect()
}

/// Decodes a string of stand-in characters to raw bytes; `None` if some
/// character is not in the alphabet.
pub fn symbols_to_bytes(symbols: &str) -> Option<Vec<u8>> {
    symbols.chars().map(char_to_byte).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_matches_spec() {
        assert_eq!(rank_to_byte(0), b'!');
        assert_eq!(rank_to_byte(187), 0xFF);
        assert_eq!(rank_to_byte(188), 0x00);
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        let printable = (0..=255u8).filter(|&b| is_printable_byte(b)).count();
        assert_eq!(printable, 188);
    }
}
