//! Each library crate's declared `rust-version` is true of what it builds: at least the
//! `rust-version` of every crate in its normal and build dependency closure, as locked in
//! `Cargo.lock`, with every feature on, for Linux targets.
//!
//! The closure comes from `cargo metadata --locked`, whose resolve unites the features of
//! the whole workspace: it may hold a crate that one library alone would not build, so the
//! check errs on the strict side. Dev-dependencies are not followed: they build the
//! library's tests, not the library.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The Linux targets the crates are built for.
const TARGETS: [&str; 2] = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"];

/// `1.85` or `1.71.1` as (major, minor, patch).
fn version(text: &str) -> (u64, u64, u64) {
    let mut parts = text.split('.').map(|part| {
        part.parse::<u64>()
            .unwrap_or_else(|_| panic!("rust-version {text:?} is not a version"))
    });
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    let patch = parts.next().unwrap_or(0);
    (major, minor, patch)
}

fn metadata(target: &str) -> Value {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--locked",
            "--format-version",
            "1",
            "--all-features",
        ])
        .args(["--filter-platform", target])
        .args(["--manifest-path", &format!("{ROOT}/Cargo.toml")])
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {value}"))
}

fn array<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value[key].as_array().map_or(&[], |items| items.as_slice())
}

/// For one target: how many library crates the workspace has, and for each the crates of
/// its closure whose `rust-version` is above its own, with how each is reached.
fn violations(target: &str) -> (usize, Vec<String>) {
    let metadata = metadata(target);
    let packages: HashMap<&str, &Value> = array(&metadata, "packages")
        .iter()
        .map(|package| (text(package, "id"), package))
        .collect();
    let nodes: HashMap<&str, &Value> = array(&metadata["resolve"], "nodes")
        .iter()
        .map(|node| (text(node, "id"), node))
        .collect();
    let name = |id: &str| {
        format!(
            "{} {}",
            text(packages[id], "name"),
            text(packages[id], "version")
        )
    };

    let mut checked = 0;
    let mut problems = Vec::new();
    for member in array(&metadata, "workspace_members") {
        let member = member.as_str().expect("member id");
        let package = packages[member];
        let is_library = array(package, "targets").iter().any(|t| {
            array(t, "kind")
                .iter()
                .any(|kind| matches!(kind.as_str(), Some("lib" | "rlib" | "proc-macro")))
        });
        if !is_library {
            continue;
        }
        checked += 1;
        let declared = package["rust_version"].as_str().unwrap_or_else(|| {
            panic!("{} declares no rust-version", name(member));
        });

        // Breadth first over normal and build edges; `via` remembers a shortest path.
        let mut via: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = vec![member];
        while let Some(id) = queue.pop() {
            for dep in array(nodes[id], "deps") {
                let normal_or_build = array(dep, "dep_kinds")
                    .iter()
                    .any(|kind| matches!(kind["kind"].as_str(), None | Some("build")));
                let dep_id = text(dep, "pkg");
                if normal_or_build && dep_id != member && !via.contains_key(dep_id) {
                    via.insert(dep_id, id);
                    queue.insert(0, dep_id);
                }
            }
        }
        assert!(!via.is_empty(), "{} has no dependencies?", name(member));

        for &dep in via.keys() {
            let Some(needed) = packages[dep]["rust_version"].as_str() else {
                continue;
            };
            if version(needed) > version(declared) {
                let mut path = vec![name(dep)];
                let mut at = dep;
                while let Some(&parent) = via.get(at) {
                    if parent == member {
                        break;
                    }
                    path.push(name(parent));
                    at = parent;
                }
                path.reverse();
                problems.push(format!(
                    "{} declares rust-version {declared}, but {} declares {needed} ({})",
                    name(member),
                    name(dep),
                    path.join(" -> ")
                ));
            }
        }
    }
    (checked, problems)
}

#[test]
fn each_library_declares_the_rust_version_of_its_dependencies() {
    // Each problem once, with the targets it was found for.
    let mut problems: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for target in TARGETS {
        let (checked, found) = violations(target);
        assert!(checked >= 2, "{target}: found {checked} library crates");
        for problem in found {
            problems.entry(problem).or_default().push(target);
        }
    }
    let report: Vec<String> = problems
        .iter()
        .map(|(problem, targets)| format!("{problem} on {}", targets.join(", ")))
        .collect();
    assert!(
        report.is_empty(),
        "rust-version below a dependency's (raise [workspace.package] rust-version):\n{}",
        report.join("\n")
    );
}

#[test]
fn versions_compare_numerically() {
    assert!(version("1.90") > version("1.85.1"));
    assert!(version("1.100") > version("1.90"));
    assert_eq!(version("1.85"), version("1.85.0"));
}
