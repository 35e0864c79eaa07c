//! The container: what the Containerfile promises, checked without a container engine
//! (none runs here) — the static binary it copies serving from a root directory that holds
//! nothing else, as the user it names, with its state in the volume.

mod common;

use std::process::{Command, Stdio};

use common::*;

const STATIC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/target/x86_64-unknown-linux-musl/release/duet"
);

/// The Containerfile's instructions: (instruction, arguments), comments left out.
fn containerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Containerfile"))
        .expect("the Containerfile");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .map(|(i, rest)| (i.to_string(), rest.trim().to_string()))
        .collect()
}

/// A JSON array of strings, as ENTRYPOINT and CMD take them.
fn words(array: &str) -> Vec<String> {
    serde_json::from_str(array).expect("an exec-form array")
}

#[test]
#[ignore = "needs `make release` and root for chroot (make test runs it)"]
fn the_image_is_the_static_binary_serving_from_an_empty_root() {
    let file = containerfile();
    let get = |name: &str| {
        let found = file.iter().find(|(i, _)| i == name);
        found.map(|(_, v)| v.clone()).unwrap_or_default()
    };
    assert_eq!(get("FROM"), "scratch");
    assert!(get("COPY").starts_with("target/x86_64-unknown-linux-musl/release/duet /duet"));
    let user = get("USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid.parse::<u32>().is_ok_and(|uid| uid != 0), "USER {user}");
    assert_eq!(get("VOLUME"), "/state");
    let size = std::fs::metadata(STATIC)
        .unwrap_or_else(|e| panic!("{STATIC}: {e}: run `make release`"))
        .len();
    assert!(size < 10 << 20, "the image would be {size} bytes");

    // The root: the binary and the state directory, nothing else.
    let root = std::env::temp_dir().join(format!("duet-root-{}", std::process::id()));
    std::fs::create_dir_all(root.join("state")).unwrap();
    std::fs::copy(STATIC, root.join("duet")).unwrap();
    rustix::fs::chown(
        root.join("state"),
        Some(rustix::fs::Uid::from_raw(65534)),
        Some(rustix::fs::Gid::from_raw(65534)),
    )
    .unwrap();
    let mut argv = words(&get("ENTRYPOINT"));
    argv.extend(words(&get("CMD")));
    argv.extend(["-p", "0", "-b", "127.0.0.1"].map(String::from));
    let mut cmd = Command::new("chroot");
    cmd.arg(format!("--userspec={user}"))
        .arg(&root)
        .args(&argv)
        .stderr(Stdio::inherit());
    let mut duet = Duet::spawn(cmd);
    smol::block_on(async {
        let mut client = duet.greeted().await;
        client.say("from an empty root").await;
        duet.wait_for_text("-> from an empty root").await;
    });
    let (status, _) = duet.stop();
    assert!(status.success(), "{status}");
    let state = std::fs::metadata(root.join("state/wormhole.state"));
    assert!(state.is_ok(), "no state file written into the volume");
    std::fs::remove_dir_all(&root).ok();
}
