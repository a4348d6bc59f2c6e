//! Writes fuzz seeds: every test vector (whole), and JSON lines of random events of every kind.
use std::path::PathBuf;

use tapelog_core::event::{AuditEvent, EVENT_KINDS};
use tapelog_core::random::Rng;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    for t in ["read_whole", "read_split"] {
        std::fs::create_dir_all(root.join(t))?;
        for v in tapelog_core::vectors::all() {
            let bytes = if v.bytes.len() > 200_000 {
                v.bytes[..200_000].to_vec()
            } else {
                v.bytes.clone()
            };
            std::fs::write(root.join(t).join(format!("vector-{}", v.name)), bytes)?;
        }
    }
    let dir = root.join("json_event");
    std::fs::create_dir_all(&dir)?;
    let mut r = Rng::new(7);
    for &(field, name) in EVENT_KINDS {
        if let Some(e) = AuditEvent::random_of(field, &mut r) {
            std::fs::write(dir.join(format!("kind-{name}")), e.to_json())?;
        }
    }
    Ok(())
}
