//! The page's WebAssembly (`web/pkg/`, kept in git) must be built from the protocol code in
//! this checkout: `web/pkg/SOURCES` lists the SHA-256 of every file it was built from
//! (`make wasm` writes it), and a change to any of them without `make wasm` fails here.

use std::collections::BTreeSet;
use std::path::Path;

use ring::digest::{digest, SHA256};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The files `make wasm` builds from: every `.rs` under transfer/src and web/src (but the
/// tests), both manifests and the build's flags (`.cargo/config.toml`).
fn inputs() -> BTreeSet<String> {
    let mut files = BTreeSet::from([
        "transfer/Cargo.toml".to_string(),
        "web/Cargo.toml".into(),
        ".cargo/config.toml".into(),
    ]);
    let mut dirs = vec![root().join("transfer/src"), root().join("web/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                dirs.push(path);
            } else if name.ends_with(".rs") && name != "tests.rs" {
                let rel = path.strip_prefix(root()).unwrap();
                files.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    files
}

#[test]
fn the_checked_in_webassembly_is_built_from_this_protocol_code() {
    let listed = std::fs::read_to_string(root().join("web/pkg/SOURCES")).unwrap();
    let mut seen = BTreeSet::new();
    for line in listed.lines() {
        let (sum, file) = line.split_once("  ").expect("sha256sum's format");
        let bytes = std::fs::read(root().join(file)).unwrap_or_default();
        let now = data_encoding::HEXLOWER.encode(digest(&SHA256, &bytes).as_ref());
        assert_eq!(
            now, sum,
            "{file} changed since web/pkg/ was built: run `make wasm`"
        );
        seen.insert(file.to_string());
    }
    assert_eq!(
        seen,
        inputs(),
        "files were added or removed since web/pkg/ was built: run `make wasm`"
    );
    for built in ["web/pkg/duet_web_bg.wasm", "web/pkg/duet_web.js"] {
        assert!(
            root().join(built).metadata().unwrap().len() > 1000,
            "{built}"
        );
    }
}
