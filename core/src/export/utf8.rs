//! [`Utf8Decoder`]: terminal bytes into text, one chunk at a time.

/// Decodes a byte stream cut into arbitrary chunks as UTF-8: a character split across chunks
/// is carried to the next one; invalid bytes become U+FFFD, one per maximal invalid sequence
/// (the rule of [`String::from_utf8_lossy`] and of Python's `errors="replace"`); an incomplete
/// sequence left at the end becomes one U+FFFD in [`finish`](Self::finish). Carries at most
/// 3 bytes.
#[derive(Debug, Default, Clone)]
pub struct Utf8Decoder {
    carry: Vec<u8>,
}

impl Utf8Decoder {
    /// A decoder with nothing carried.
    pub fn new() -> Utf8Decoder {
        Utf8Decoder::default()
    }

    /// Bytes of an incomplete character waiting for the next chunk.
    pub fn carried(&self) -> usize {
        self.carry.len()
    }

    /// Appends the text of `bytes` (after what was carried) to `out`.
    pub fn decode(&mut self, bytes: &[u8], out: &mut String) {
        if self.carry.is_empty() {
            self.decode_from(bytes, out);
            return;
        }
        // Complete the carried character with at most 3 more bytes, then go on from there.
        let mut head = std::mem::take(&mut self.carry);
        let take = bytes.len().min(4 - head.len());
        head.extend_from_slice(&bytes[..take]);
        let used_before = head.len() - take;
        let consumed = match std::str::from_utf8(&head) {
            Ok(s) => {
                out.push_str(s);
                head.len()
            }
            Err(e) if e.valid_up_to() > 0 => {
                // The carried character completed: valid_up_to covers it.
                let ok = e.valid_up_to();
                out.push_str(std::str::from_utf8(&head[..ok]).unwrap_or_default());
                ok
            }
            Err(e) => match e.error_len() {
                // Still incomplete: every byte so far belongs to the character.
                None => {
                    self.carry = head;
                    return;
                }
                Some(n) => {
                    out.push(char::REPLACEMENT_CHARACTER);
                    n
                }
            },
        };
        // `consumed` counts from the start of `head`; the carried bytes come first.
        let from_bytes = consumed.saturating_sub(used_before);
        self.decode_from(&bytes[from_bytes..], out);
    }

    fn decode_from(&mut self, mut bytes: &[u8], out: &mut String) {
        loop {
            match std::str::from_utf8(bytes) {
                Ok(s) => {
                    out.push_str(s);
                    return;
                }
                Err(e) => {
                    let ok = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&bytes[..ok]).unwrap_or_default());
                    match e.error_len() {
                        None => {
                            self.carry = bytes[ok..].to_vec();
                            return;
                        }
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            bytes = &bytes[ok + n..];
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: an incomplete character still carried becomes U+FFFD.
    pub fn finish(&mut self, out: &mut String) {
        if !self.carry.is_empty() {
            self.carry.clear();
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(bytes: &[u8], cuts: &[usize]) -> String {
        let mut d = Utf8Decoder::new();
        let mut out = String::new();
        let mut at = 0;
        for &c in cuts {
            d.decode(&bytes[at..c], &mut out);
            at = c;
        }
        d.decode(&bytes[at..], &mut out);
        d.finish(&mut out);
        out
    }

    #[test]
    fn every_cut_of_valid_text_gives_the_text() {
        let text = "aé€😀b\r\nß";
        let bytes = text.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                assert_eq!(decode_in_pieces(bytes, &[i, j]), text, "cuts {i} {j}");
            }
        }
        // One byte at a time.
        let cuts: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(decode_in_pieces(bytes, &cuts), text);
    }

    #[test]
    fn invalid_bytes_are_replaced_as_from_utf8_lossy() {
        let cases: &[&[u8]] = &[
            b"a\xffb",
            b"\xe2\x82",
            b"\xe2\x82x",
            b"\xf0\x9f\x98",
            b"\xc0\xaf",
            b"\xed\xa0\x80",
            b"ok\xf0\x9f\x98\x80\xff\xfe\xe2",
            b"\x80\x80\x80\x80",
        ];
        for bytes in cases {
            let want = String::from_utf8_lossy(bytes);
            for i in 0..=bytes.len() {
                for j in i..=bytes.len() {
                    assert_eq!(
                        decode_in_pieces(bytes, &[i, j]),
                        want,
                        "{bytes:x?} cut at {i} {j}"
                    );
                }
            }
        }
    }

    #[test]
    fn carries_at_most_three_bytes() {
        let mut d = Utf8Decoder::new();
        let mut out = String::new();
        d.decode(b"x\xf0\x9f\x98", &mut out);
        assert_eq!((out.as_str(), d.carried()), ("x", 3));
        d.decode(b"\x80", &mut out);
        assert_eq!((out.as_str(), d.carried()), ("x😀", 0));
    }
}
