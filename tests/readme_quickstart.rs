//! The README's Quick start program is `examples/quickstart.rs`, word for word, so that
//! `cargo run --example quickstart` runs what a newcomer pastes.

use llm_span_testkit::shipped;

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
    let readme = shipped::read("README.md");
    let example = shipped::read("examples/quickstart.rs");
    assert_eq!(
        quick_start_block(&readme),
        example,
        "the README's Quick start and examples/quickstart.rs differ"
    );
}
