//! The README's Quick start program is `examples/quickstart.rs`, word for word, so that
//! `cargo run --example quickstart` runs what a newcomer pastes.

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The first `rust` code block after the Quick start heading.
fn quick_start_block(readme: &str) -> &str {
    let start = readme
        .find("## Quick start\n")
        .expect("Quick start section");
    let section = &readme[start..];
    let fence = section.find("```rust").expect("a rust block");
    let body = &section[fence..];
    let body = &body[body.find('\n').expect("fence line") + 1..];
    &body[..body.find("```\n").expect("closing fence")]
}

#[test]
fn quick_start_is_the_quickstart_example() {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).expect("README.md");
    let example =
        std::fs::read_to_string(format!("{ROOT}/examples/quickstart.rs")).expect("quickstart.rs");
    assert_eq!(
        quick_start_block(&readme),
        example,
        "the README's Quick start and examples/quickstart.rs differ"
    );
}
