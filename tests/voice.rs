//! `duet voice`: speech from espeak-ng through a real relay, compared byte for byte.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;

const FRAME_BYTES: usize = 640;

/// Speech as raw 16 kHz 16-bit mono PCM, `times` sentences long.
fn speech(dir: &Path, times: usize) -> Vec<u8> {
    let raw = dir.join("speech.raw");
    let text = "Hello from duet. This is a voice test over a relay. ".repeat(times);
    speak(dir, &text, &[(&raw, "raw")]);
    std::fs::read(raw).unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("duet-voice-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn voice(duet: &Duet, token: &str, capture: &str, playback: &str, extra: &[&str]) -> Child {
    let mut args = vec![
        "voice",
        token,
        "--stats",
        "--capture",
        capture,
        "--playback",
        playback,
    ];
    args.extend_from_slice(extra);
    let mut cmd = duet.client_command(&args);
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    cmd.spawn().unwrap()
}

/// Waits for exit; returns the `--stats` lines.
fn finish(child: &mut Child) -> Vec<String> {
    let status = wait_child(child, TIMEOUT * 3, "duet voice to exit");
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "duet voice: {status:?}\n{err}");
    err.lines().map(str::to_string).collect()
}

/// The number after `name` in the last stats line.
fn stat(lines: &[String], name: &str) -> u64 {
    let last = lines.last().expect("no stats");
    let mut words = last.split_whitespace();
    while let Some(w) = words.next() {
        if w == name {
            return words.next().unwrap().parse().unwrap();
        }
    }
    panic!("no {name} in {last}");
}

#[test]
#[ignore = "needs espeak-ng, sox (make test runs it)"]
fn speech_arrives_unchanged_when_nothing_is_dropped() {
    let dir = temp_dir("clean");
    let sent = speech(&dir, 1);
    let duet = Duet::start(&[]);
    let out = dir.join("out.raw");
    let mut listener = voice(
        &duet,
        "talk",
        "cat /dev/null",
        &format!("cat > {}", out.display()),
        // A deep buffer: this test is about bytes, not latency, on a busy machine.
        &["--jitter", "300", "--max-delay", "3000"],
    );
    let mut speaker = voice(
        &duet,
        "talk",
        &format!("cat {}", dir.join("speech.raw").display()),
        "cat > /dev/null",
        &["--jitter", "300", "--max-delay", "3000"],
    );
    let spoke = finish(&mut speaker);
    let heard = finish(&mut listener);
    let frames = sent.len().div_ceil(FRAME_BYTES) as u64;
    assert_eq!(stat(&spoke, "sent"), frames, "{spoke:?}");
    assert_eq!(stat(&heard, "received"), frames, "{heard:?}");
    assert_eq!(stat(&heard, "missing"), 0, "{heard:?}");
    let got = std::fs::read(&out).unwrap();
    assert!(
        got == sent,
        "audio differs: {} bytes sent, {} played",
        sent.len(),
        got.len()
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The listener stops for 2 s mid-speech: the speaker drops frames instead of queueing
/// them, the listener's buffer never holds more than --max-delay, and what follows the
/// stall plays intact.
#[test]
#[ignore = "needs espeak-ng, sox (make test runs it)"]
fn a_stalled_listener_costs_frames_not_latency() {
    let dir = temp_dir("stall");
    let sent = speech(&dir, 3);
    let mut duet = Duet::start(&[]);
    let out = dir.join("out.raw");
    let mut listener = voice(
        &duet,
        "stall",
        "cat /dev/null",
        &format!("cat > {}", out.display()),
        &[],
    );
    smol::block_on(duet.wait_for_text("-> /pipe stall"));
    let mut speaker = voice(
        &duet,
        "stall",
        &format!("cat {}", dir.join("speech.raw").display()),
        "cat > /dev/null",
        &[],
    );
    smol::block_on(duet.wait_for_text("pipe stall: "));
    // Let a second of speech through, then stop the listener for two.
    std::thread::sleep(Duration::from_secs(1));
    signal(listener.id(), rustix::process::Signal::STOP);
    std::thread::sleep(Duration::from_secs(2));
    signal(listener.id(), rustix::process::Signal::CONT);
    let spoke = finish(&mut speaker);
    let heard = finish(&mut listener);
    assert!(
        stat(&spoke, "dropped") > 0,
        "the speaker dropped nothing: {spoke:?}"
    );
    let deepest = heard
        .iter()
        .filter_map(|l| l.split("buffer ").nth(1))
        .filter_map(|v| v.trim_end_matches(" ms").parse::<u64>().ok())
        .max()
        .unwrap();
    assert!(
        deepest <= 200,
        "the listener buffered {deepest} ms: {heard:?}"
    );
    let got = std::fs::read(&out).unwrap();
    assert!(got.len() < sent.len(), "nothing was lost in a 2 s stall?");
    // The last second of speech came after the stall: it plays unchanged. A frame or two
    // may still be skipped to keep the delay bounded when two busy cores starve the
    // player (drop, never drift), so: at least 45 of its 50 frames, in order, byte for byte.
    let tail = 50 * FRAME_BYTES;
    assert!(got.len() > tail, "{} bytes played", got.len());
    let heard_tail = &got[got.len().saturating_sub(2 * tail)..];
    let mut from = 0;
    let mut found = 0;
    for frame in sent[sent.len() - tail..].chunks(FRAME_BYTES) {
        if let Some(at) = heard_tail[from..]
            .windows(FRAME_BYTES)
            .position(|w| w == frame)
        {
            from += at + FRAME_BYTES;
            found += 1;
        }
    }
    assert!(
        found >= 45,
        "only {found} of the last 50 frames played unchanged"
    );
    std::fs::remove_dir_all(&dir).ok();
}
