//! Writes the example recordings shipped in `examples/` (checked by a test to be current).
fn main() -> std::io::Result<()> {
    let root = tapelog_tests::repo_root().join("examples");
    std::fs::create_dir_all(&root)?;
    std::fs::write(
        root.join("legacy-session.tar"),
        tapelog_core::vectors::legacy_tar(20),
    )
}
