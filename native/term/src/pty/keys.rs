//! [`KeyDecoder`]: the keys a player understands, from the bytes a terminal in raw mode sends.

/// A key the player acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// Space: pause or resume.
    Space,
    /// Right arrow: seek forward.
    Right,
    /// Left arrow: seek back.
    Left,
    /// `q`, `Q` or Ctrl-C: quit.
    Quit,
}

/// Decodes keys from raw terminal input; escape sequences may be split across reads (at most
/// 2 bytes are carried). Bytes that are not a key above are ignored.
#[derive(Debug, Default)]
pub struct KeyDecoder {
    carry: Vec<u8>,
}

impl KeyDecoder {
    /// A decoder with nothing carried.
    pub fn new() -> KeyDecoder {
        KeyDecoder::default()
    }

    /// The keys in `bytes` (after what was carried), in order.
    pub fn decode(&mut self, bytes: &[u8]) -> Vec<Key> {
        let mut input = std::mem::take(&mut self.carry);
        input.extend_from_slice(bytes);
        let mut keys = Vec::new();
        let mut i = 0;
        while i < input.len() {
            match input[i] {
                b' ' => keys.push(Key::Space),
                b'q' | b'Q' | 0x03 => keys.push(Key::Quit),
                0x1b => {
                    // CSI (ESC [) or SS3 (ESC O, application cursor mode) arrows.
                    let rest = &input[i + 1..];
                    match rest {
                        [] | [b'[' | b'O'] => {
                            self.carry = input[i..].to_vec();
                            return keys;
                        }
                        [b'[' | b'O', b'C', ..] => {
                            keys.push(Key::Right);
                            i += 2;
                        }
                        [b'[' | b'O', b'D', ..] => {
                            keys.push(Key::Left);
                            i += 2;
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
            i += 1;
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_split_sequences() {
        let mut d = KeyDecoder::new();
        assert_eq!(
            d.decode(b" q\x1b[C\x1bOD\x03x"),
            vec![Key::Space, Key::Quit, Key::Right, Key::Left, Key::Quit]
        );
        assert_eq!(d.decode(b"\x1b"), vec![]);
        assert_eq!(d.decode(b"["), vec![]);
        assert_eq!(d.decode(b"D "), vec![Key::Left, Key::Space]);
        // Other sequences are ignored.
        assert_eq!(d.decode(b"\x1b[A\x1b[B\x1bx"), vec![]);
    }
}
