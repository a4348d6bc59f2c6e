//! Search page keys (`start_key`, `--cursor`): tapelog's `tl1.` keys and upstream's bare
//! checkpoints.
//!
//! The first byte chooses the input's form:
//! - even: the rest is a key as a client sends it. `StartKey::parse` never panics; a `tl1.`
//!   key it reads encodes to a key that reads back to the same position and checkpoint; a bare
//!   checkpoint is the text itself.
//! - odd: the rest makes a key (time, session hash, index, offset in fixed-size fields, then
//!   the file and the checkpoint separated by a zero byte). Its encoding is read back to
//!   the same key exactly when the key is one a search can hand out (a `server/file` path, a
//!   checkpoint, at most `MAX_KEY_LEN` characters), and refused otherwise.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tapelog_core::audit::key::{KEY_PREFIX, MAX_KEY_LEN, PageKey, Position, StartKey};

fn int<const N: usize>(rest: &mut &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    let n = rest.len().min(N);
    a[..n].copy_from_slice(&rest[..n]);
    *rest = &rest[n..];
    a
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        match StartKey::parse(text) {
            Ok(StartKey::Beginning) => assert!(text.is_empty()),
            Ok(StartKey::After(k)) => {
                assert!(text.starts_with(KEY_PREFIX));
                assert_eq!(StartKey::parse(&k.encode()), Ok(StartKey::After(k)));
            }
            Ok(StartKey::Checkpoint(c)) => {
                assert_eq!(c, text);
                assert!(!c.starts_with(KEY_PREFIX));
            }
            Err(e) => assert!(e.to_string().starts_with("malformed page key")),
        }
        return;
    }
    let seconds = i64::from_le_bytes(int(&mut rest));
    let nanos = u32::from_le_bytes(int(&mut rest)) % 1_000_000_000;
    let sid_hash = u64::from_le_bytes(int(&mut rest));
    let index = i64::from_le_bytes(int(&mut rest));
    let offset = u64::from_le_bytes(int(&mut rest));
    let text = String::from_utf8_lossy(rest);
    let (file, checkpoint) = text.split_once('\0').unwrap_or((&text, "x"));
    let key = PageKey {
        position: Position {
            seconds,
            nanos,
            sid_hash,
            index,
            file: file.to_string(),
            offset,
        },
        checkpoint: checkpoint.to_string(),
    };
    let encoded = key.encode();
    let valid = !file.is_empty()
        && !file
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        && !checkpoint.is_empty()
        && encoded.len() <= MAX_KEY_LEN;
    match StartKey::parse(&encoded) {
        Ok(got) => {
            assert!(valid, "{key:?} was accepted");
            assert_eq!(got, StartKey::After(key));
        }
        Err(e) => assert!(!valid, "{key:?} was refused: {e}"),
    }
});
