//! The mailbox state's semantics, limits and journal, without a network.

use super::journal::Write;
use super::*;

fn listener(id: u64) -> (Listener, Hear) {
    let (tx, rx) = listener_queue();
    ((id, tx), rx)
}

fn me() -> Who {
    "127.0.0.1".parse().unwrap()
}

fn message(side: &str, phase: &str) -> Message {
    Message {
        side: side.into(),
        phase: phase.into(),
        body: "00".into(),
        server_rx: now(),
        id: serde_json::Value::Null,
    }
}

#[test]
fn the_reference_semantics() {
    let w = Wormhole::new(Settings::default());
    let name = w.allocate("app", "a", me()).unwrap();
    assert_eq!(name.len(), 1, "the shortest free nameplate");
    assert_eq!(w.nameplates("app"), vec![name.clone()]);
    let mailbox = w.claim("app", &name, "b", me()).unwrap();
    assert_eq!(w.claim("app", &name, "c", me()), Err(MailboxError::Crowded));
    let (l, rx) = listener(1);
    assert!(w.open("app", &mailbox, "a", me(), l).unwrap().is_empty());
    w.add("app", &mailbox, message("a", "pake"), me()).unwrap();
    assert_eq!(rx.try_recv().unwrap().phase, "pake");
    // A side that opens late gets what came before.
    let (l2, _rx2) = listener(2);
    assert_eq!(w.open("app", &mailbox, "b", me(), l2).unwrap().len(), 1);
    w.release("app", &name, "a");
    assert_eq!(
        w.claim("app", &name, "a", me()),
        Err(MailboxError::Reclaimed)
    );
    w.release("app", &name, "b");
    assert!(w.nameplates("app").is_empty(), "released by both sides");
    assert!(w
        .close("app", &mailbox, "a", Some("happy".into()))
        .is_none());
    let closed = w.close("app", &mailbox, "b", Some("happy".into())).unwrap();
    assert_eq!(closed.result, "happy");
    assert_eq!(w.count(), (0, 0));
}

#[test]
fn allocations_at_once_never_share_a_nameplate() {
    let w = Arc::new(Wormhole::new(Settings::default()));
    let names: Vec<String> = (0..8)
        .map(|t| {
            let w = w.clone();
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| {
                        w.allocate(
                            "app",
                            &format!("{t}-{i}"),
                            format!("10.0.{t}.{i}").parse().unwrap(),
                        )
                        .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let unique: std::collections::HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), 800);
}

/// A state file in a folder of its own, for a test.
fn state_file(name: &str) -> (std::path::PathBuf, Settings) {
    let dir = std::env::temp_dir().join(format!("duet-wh-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.json");
    let settings = Settings {
        state: Some(path.clone()),
        ..Settings::default()
    };
    (path, settings)
}

fn save(w: &Wormhole, path: &Path) -> Option<Write> {
    let write = w.to_write()?;
    super::write(path, &write).unwrap();
    Some(write)
}

#[test]
fn the_state_survives_a_restart() {
    let (path, settings) = state_file("restart");
    let w = Wormhole::new(settings.clone());
    let name = w.allocate("app", "a", me()).unwrap();
    let mailbox = w.claim("app", &name, "a", me()).unwrap();
    assert!(
        matches!(save(&w, &path), Some(Write::Replace(_))),
        "first: a snapshot"
    );
    w.add("app", &mailbox, message("a", "pake"), me()).unwrap();
    assert!(
        matches!(save(&w, &path), Some(Write::Append(_))),
        "then changes"
    );
    // A mailbox gone, and one made again under the same id, starts empty.
    let (l, _rx) = listener(9);
    w.open("app", "made-up", "x", me(), l).unwrap();
    w.add("app", "made-up", message("x", "1"), me()).unwrap();
    save(&w, &path);
    w.close("app", "made-up", "x", None).unwrap();
    let (l, _rx) = listener(10);
    w.open("app", "made-up", "y", me(), l).unwrap();
    save(&w, &path);
    assert!(save(&w, &path).is_none(), "nothing changed");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // A write cut by a crash: half a line at the end.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"change\":\"mess"))
        .unwrap();
    let again = Wormhole::new(settings);
    assert_eq!(again.load(&path).unwrap(), 1, "the cut line is skipped");
    assert_eq!(again.claim("app", &name, "b", me()).unwrap(), mailbox);
    let (l, _rx) = listener(1);
    assert_eq!(again.open("app", &mailbox, "b", me(), l).unwrap().len(), 1);
    let (l, _rx) = listener(2);
    assert!(again
        .open("app", "made-up", "z", me(), l)
        .unwrap()
        .is_empty());
    assert_eq!(again.bytes(), w.bytes());
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}

#[test]
fn changes_cost_their_own_size_and_the_file_stays_small() {
    let (path, settings) = state_file("small");
    let w = Wormhole::new(settings);
    let (l, _rx) = listener(1);
    w.open("app", "big", "a", me(), l).unwrap();
    for i in 0..50 {
        let mut m = message("a", &i.to_string());
        m.body = "ab".repeat(2000);
        w.add("app", "big", m, me()).unwrap();
    }
    save(&w, &path);
    let mut largest = 0;
    for i in 0..2000 {
        let (l, _rx) = listener(i + 2);
        w.open("app", &format!("m{i}"), "a", "10.9.9.9".parse().unwrap(), l)
            .ok();
        if let Some(Write::Append(lines)) = save(&w, &path) {
            largest = largest.max(lines.len());
        }
    }
    assert!(largest < 1024, "one change wrote {largest} bytes");
    let file = std::fs::metadata(&path).unwrap().len();
    assert!(file < 3 * (1 << 20), "{file} bytes");
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}

#[test]
fn one_address_holds_only_its_share() {
    let w = Wormhole::new(Settings {
        max_per_address: 3,
        mailbox_bytes: 4000,
        address_bytes: 6000,
        max_bytes: 7000,
        ..Settings::default()
    });
    let (bad, good): (Who, Who) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
    for i in 0..3 {
        let (l, _rx) = listener(i);
        w.open("app", &format!("x{i}"), "a", bad, l).unwrap();
    }
    let (l, _rx) = listener(3);
    let refused = w.open("app", "x3", "a", bad, l).unwrap_err().to_string();
    assert!(refused.contains("--wormhole-per-address"), "{refused}");
    assert!(w.allocate("app", "a", bad).is_err(), "allocate counts too");
    assert!(w.claim("app", "77", "a", bad).is_err(), "claim counts too");
    // Someone else is not affected.
    let name = w.allocate("app", "b", good).unwrap();
    w.claim("app", &name, "c", bad).unwrap_err();
    let big = |side: &str| Message {
        body: "0".repeat(1800),
        ..message(side, "p")
    };
    w.add("app", "x0", big("a"), bad).unwrap();
    w.add("app", "x0", big("a"), bad).unwrap();
    let refused = w.add("app", "x0", big("a"), bad).unwrap_err().to_string();
    assert!(refused.contains("--wormhole-mailbox-bytes"), "{refused}");
    w.add("app", "x1", big("a"), bad).unwrap();
    let refused = w.add("app", "x2", big("a"), bad).unwrap_err().to_string();
    assert!(refused.contains("--wormhole-address-bytes"), "{refused}");
    // Closing gives it all back.
    let closed = w.close("app", "x0", "a", None);
    assert!(closed.is_some());
    w.add("app", "x2", big("a"), bad).unwrap();
    let (l, _rx) = listener(4);
    w.open("app", "x3", "a", bad, l).unwrap();
    let mailbox = w.claim("app", &name, "b", good).unwrap();
    let (l, _rx) = listener(5);
    w.open("app", &mailbox, "b", good, l).unwrap();
    w.add("app", &mailbox, big("b"), good).unwrap();
    let refused = w
        .add("app", &mailbox, big("b"), good)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("--wormhole-max-bytes"), "{refused}");
}

#[test]
fn a_listener_that_does_not_read_is_dropped_past_its_queue() {
    let w = Wormhole::new(Settings::default());
    let name = w.allocate("app", "a", me()).unwrap();
    let mailbox = w.claim("app", &name, "b", me()).unwrap();
    let (l, rx) = listener(1);
    w.open("app", &mailbox, "a", me(), l).unwrap();
    for i in 0..LISTENER_QUEUE {
        w.add("app", &mailbox, message("b", &i.to_string()), me())
            .unwrap();
    }
    assert_eq!(rx.len(), LISTENER_QUEUE);
    assert!(!rx.is_closed(), "a full queue is still heard");
    w.add("app", &mailbox, message("b", "one more"), me())
        .unwrap();
    assert_eq!(rx.len(), LISTENER_QUEUE, "nothing past the queue");
    assert!(rx.is_closed(), "the listener was dropped");
}
