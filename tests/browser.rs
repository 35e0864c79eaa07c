//! The web page in a real browser: headless Chromium (Debian's) driven by puppeteer-core
//! (`tests/browser/drive.cjs`), beside real `nc`, `curl` and `duet voice`. `make test`
//! installs Chromium, Node and puppeteer-core.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::browser::*;
use common::*;

/// A browser and an `nc` client chat in one room, both ways; nicks, the member list and the
/// server log agree; markup from either side shows as text and runs nothing.
#[test]
#[ignore = "needs chromium, nc, node (make test runs it)"]
fn a_browser_and_nc_chat_in_one_room() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let mut duet = server(&[]);
        let mut browser = drive(&duet, "chat", &[]);
        browser.expect("step joined").await;
        let mut nc = duet.greeted().await;
        nc.say("/nick netcat").await;
        nc.say("/join lobby").await;
        nc.expect_containing("you joined room lobby (here: webby)")
            .await;
        nc.expect_containing("<webby> hi from the browser").await;
        nc.say("hi from nc").await;
        nc.say("<img src=x onerror=alert(1)>").await;
        browser.expect("step xss-sent").await;
        nc.expect_containing("<webby> <b>bold?</b> <img src=x onerror=alert(2)>")
            .await;
        let json = result(&mut browser).await;
        assert!(json.contains("\"images\":0"), "markup was rendered: {json}");
        assert!(json.contains("here: webby, netcat"), "{json}");
        assert!(
            json.contains("<netcat> <img src=x onerror=alert(1)>"),
            "{json}"
        );
        assert!(json.contains("* error: bad nickname"), "{json}");
        // Both lines are logged; which first depends on the printer's queue.
        let wanted = ["-> hi from the browser", "-> hi from nc"];
        let first = duet
            .wait_for("a chat line", |l| wanted.iter().any(|w| l.contains(w)))
            .await;
        let other = wanted.iter().find(|w| !first.contains(*w)).unwrap();
        duet.wait_for_text(other).await;
    });
}

/// 50 MiB from the page to `curl`, and from `nc` to the page: byte for byte, progress at
/// 100%, the file saved under its name.
#[test]
#[ignore = "needs chromium, curl, nc, node, sha256sum (make test runs it)"]
fn files_between_the_browser_curl_and_nc() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let dir = Dir::new("browser-files");
        let src = dir.path().join("fifty.bin");
        std::fs::write(&src, payload(50 << 20, 50)).unwrap();

        let mut browser = drive(&duet, "send-file", &["bf1", src.to_str().unwrap()]);
        browser.expect("step waiting").await;
        need("curl");
        let out = dir.path().join("got.bin");
        let url = format!("http://127.0.0.1:{}/bf1", duet.port);
        let curl = Command::new("curl")
            .args(["-sS", "--max-time", "120", "-D", "-", "-o"])
            .arg(&out)
            .arg(&url)
            .output()
            .unwrap();
        let head = String::from_utf8_lossy(&curl.stdout);
        assert!(curl.status.success(), "{head}");
        assert!(head.contains("filename=\"fifty.bin\""), "{head}");
        assert_eq!(sha256(&out), sha256(&src));
        let json = result(&mut browser).await;
        assert!(json.contains("\"progress\":1"), "{json}");
        assert!(json.contains("sent 50.0 MiB: fifty.bin"), "{json}");

        let mut browser = drive(&duet, "receive-file", &["bf2"]);
        browser.expect("step waiting").await;
        let mut nc = duet.silent("bf2").await;
        nc.send(std::fs::read(&src).unwrap()).await;
        nc.shutdown_write();
        let json = result(&mut browser).await;
        let want = format!("\"sha256\":\"{}\"", sha256(&src));
        assert!(json.contains(&want), "{json}");
        assert!(json.contains("\"progress\":1"), "{json}");
        assert!(json.contains("\"save\":\"bf2\""), "{json}");
    });
}

/// Speech made by espeak-ng: a 16 kHz mono 16-bit WAV (for Chromium's fake microphone) and
/// the same samples raw (what `duet voice` sends and plays).
fn speech(dir: &Path) -> (PathBuf, Vec<u8>) {
    let wav = dir.join("speech.wav");
    let raw = dir.join("speech.raw");
    let text = "Hello from duet. This is a voice test through a browser.";
    speak(dir, text, &[(&wav, "wav"), (&raw, "raw")]);
    (wav, std::fs::read(raw).unwrap())
}

/// The loudness of each 20 ms of 16-bit little-endian PCM.
fn envelope(pcm: &[u8]) -> Vec<f64> {
    pcm.chunks(640)
        .map(|frame| {
            let samples: Vec<f64> = frame
                .chunks_exact(2)
                .map(|s| f64::from(i16::from_le_bytes([s[0], s[1]])))
                .collect();
            (samples.iter().map(|s| s * s).sum::<f64>() / samples.len().max(1) as f64).sqrt()
        })
        .collect()
}

/// How much `heard` sounds like `said`: `said` is cut into seconds, each second finds the
/// alignment in `heard` where their loudness envelopes correlate best, and the score is the
/// median over the seconds (1.0: the same syllables and pauses; speech against silence or
/// noise stays near 0). Seconds are aligned on their own so that a frame dropped on a busy
/// machine shifts what follows without spoiling the measure.
fn likeness(said: &[f64], heard: &[f64]) -> f64 {
    let mut scores: Vec<f64> = said
        .chunks(50)
        .filter(|second| second.len() == 50)
        .filter_map(|second| {
            (0..heard.len().saturating_sub(second.len()))
                .filter_map(|lag| correlation(second, &heard[lag..lag + second.len()]))
                .reduce(f64::max)
        })
        .collect();
    scores.sort_by(f64::total_cmp);
    scores.get(scores.len() / 2).copied().unwrap_or(0.0)
}

/// Pearson's correlation of two series of one length; `None` when either is flat.
fn correlation(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

/// The page talks (Chromium's fake microphone plays the speech) to `duet voice`, which
/// plays it into a file: the speech is there. The browser's audio path (capture at the
/// device's rate, resampling to 16 kHz, floats) does not keep bytes, so the measure is the
/// loudness envelope: syllables and pauses where the speech has them.
#[test]
#[ignore = "needs chromium, espeak-ng, node, sox (make test runs it)"]
fn the_browser_talks_to_duet_voice() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let dir = Dir::new("browser-talk");
        let (wav, said) = speech(dir.path());
        let out = dir.path().join("heard.raw");
        let mut listener = duet.client_command(&[
            "voice",
            "bv1",
            "--capture",
            "cat /dev/null",
            "--playback",
            &format!("cat > {}", out.display()),
            "--jitter",
            "300",
            "--max-delay",
            "3000",
        ]);
        let mut listener = listener
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let seconds = (said.len() / 32000 + 2).to_string();
        let mut browser = drive(&duet, "talk", &["bv1", wav.to_str().unwrap(), &seconds]);
        let json = result(&mut browser).await;
        assert!(json.contains("call ended"), "{json}");
        let status = wait_child(&mut listener, TIMEOUT, "duet voice to finish");
        assert!(status.success(), "duet voice: {status:?}");
        let heard = std::fs::read(&out).unwrap();
        let score = likeness(&envelope(&said), &envelope(&heard));
        println!(
            "likeness {score:.3}, {} bytes heard of {} said",
            heard.len(),
            said.len()
        );
        assert!(
            score > 0.7,
            "the speech is not in what duet voice played (likeness {score:.2}, {} bytes): {json}",
            heard.len()
        );
        // The measure tells speech from what is not: the speech against itself reversed.
        let reversed: Vec<f64> = envelope(&said).into_iter().rev().collect();
        let against = likeness(&envelope(&said), &reversed);
        println!("likeness of the speech to itself reversed: {against:.3}");
        assert!(against < score, "the measure tells nothing");
    });
}

/// `duet voice` talks to the page: the frames it received are the speech's, byte for byte
/// and in order (the measure of tests/voice.rs).
#[test]
#[ignore = "needs chromium, espeak-ng, node, sox (make test runs it)"]
fn duet_voice_talks_to_the_browser() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let dir = Dir::new("browser-listen");
        let (_, said) = speech(dir.path());
        let raw = dir.path().join("speech.raw");
        let heard = dir.path().join("heard.raw");
        let mut browser = drive(&duet, "listen", &["bv2", heard.to_str().unwrap()]);
        browser.expect("step waiting").await;
        let mut speaker = duet.client_command(&[
            "voice",
            "bv2",
            "--capture",
            &format!("cat {}", raw.display()),
            "--playback",
            "cat > /dev/null",
            "--jitter",
            "300",
            "--max-delay",
            "3000",
        ]);
        let mut speaker = speaker
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let json = result(&mut browser).await;
        let status = wait_child(&mut speaker, TIMEOUT, "duet voice to finish");
        assert!(status.success(), "duet voice: {status:?}");
        // Every frame the page heard is a frame of the speech, unchanged and in order; a
        // speaker whose writer falls behind on two busy cores drops a frame rather than
        // delay the rest (duet voice's policy), so at least 95% of them, not all.
        let got = std::fs::read(&heard).unwrap();
        let frames: Vec<&[u8]> = said.chunks(640).collect();
        let mut at = 0;
        for frame in got.chunks(640) {
            let found = frames[at..].iter().position(|f| *f == frame);
            let Some(skip) = found else {
                panic!("the page heard a frame that was not said (after frame {at}): {json}");
            };
            at += skip + 1;
        }
        let heard_frames = got.len().div_ceil(640);
        assert!(
            heard_frames * 100 >= frames.len() * 95,
            "the page heard {heard_frames} of {} frames: {json}",
            frames.len()
        );
    });
}

/// The page over HTTPS (`--tls-self-signed`): the chat runs on `wss://`, and the browser,
/// which opens connections ahead of need, is served HTTP on all of them at the default
/// `--greet-wait` (it agreed on HTTP/1.1 in the TLS handshake).
#[test]
#[ignore = "needs chromium, nc, node (make test runs it)"]
fn the_page_over_https_chats_on_wss() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = Duet::start(&["--tls-self-signed"]);
        let url = format!("https://127.0.0.1:{}", duet.port);
        let mut browser = drive_at(&url, "chat", &[]);
        browser.expect("step joined").await;
        let mut nc = duet.greeted().await;
        nc.say("/nick netcat").await;
        nc.say("/join lobby").await;
        nc.expect_containing("<webby> hi from the browser").await;
        nc.say("hi from nc").await;
        nc.say("<img src=x onerror=alert(1)>").await;
        browser.expect("step xss-sent").await;
        let json = result(&mut browser).await;
        assert!(json.contains("<netcat> hi from nc"), "{json}");
    });
}

/// A page of another origin cannot use the server's WebSockets: the browser sees a close
/// with the reason.
#[test]
#[ignore = "needs chromium, node (make test runs it)"]
fn pages_of_other_origins_are_refused() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let mut browser = drive(&duet, "foreign-origin", &[]);
        let json = result(&mut browser).await;
        assert!(json.contains("\"code\":1008"), "{json}");
        assert!(
            json.contains("may not use this server (see --allow-origin)"),
            "{json}"
        );
    });
}

/// Pipe downloads opened as pages run nothing on the relay's origin: HTML and SVG from a
/// sender are downloads, and markup a sender calls `text/plain` stays text, in a sandbox.
#[test]
#[ignore = "needs chromium, curl, node (make test runs it)"]
fn a_senders_html_or_svg_runs_nothing() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let dir = Dir::new("hostile-pipes");
        let html = "<html><head><title>no</title></head><body><script>document.title='ran'</script></body></html>";
        let svg =
            "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>document.title='ran'</script></svg>";
        let senders: Vec<std::process::Child> = [
            ("html", "text/html", html),
            ("svg", "image/svg+xml", svg),
            ("plain", "text/plain", html),
        ]
        .iter()
        .map(|(token, kind, body)| {
            let file = dir.file(token);
            std::fs::write(&file, body).unwrap();
            Command::new("curl")
                .args(["-sS", "--max-time", "60", "-T"])
                .arg(&file)
                .args(["-H", &format!("Content-Type: {kind}")])
                .arg(format!("http://127.0.0.1:{}/{token}", duet.port))
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
        let mut browser = drive(&duet, "hostile-pipes", &["html", "svg", "plain"]);
        let json = result(&mut browser).await;
        assert!(
            !json.contains("\"ran\":true"),
            "a sender's script ran: {json}"
        );
        assert!(json.contains("\"html\":{\"navigated\":false"), "{json}");
        assert!(json.contains("\"svg\":{\"navigated\":false"), "{json}");
        // Shown as text, in an opaque origin: never the relay's.
        assert!(
            json.contains("\"plain\":{\"navigated\":true,\"ran\":false,\"origin\":\"null\""),
            "{json}"
        );
        for mut sender in senders {
            wait_child(&mut sender, TIMEOUT, "curl sender");
        }
    });
}

/// A chat dropped by the server (here by --idle-timeout) reconnects and joins its room again.
#[test]
#[ignore = "needs chromium, node (make test runs it)"]
fn the_chat_reconnects_after_a_drop() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let mut duet = server(&["--idle-timeout", "2"]);
        let mut browser = drive(&duet, "reconnect", &[]);
        let json = result(&mut browser).await;
        assert!(json.contains("idle timeout"), "{json}");
        duet.wait_for_text("-> /join back").await;
        duet.wait_for_text("-> /join back").await;
    });
}
