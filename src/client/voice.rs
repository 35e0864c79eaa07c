//! `duet voice TOKEN`: live two-way audio through a pipe, with latency bounded.
//!
//! Audio comes from a capture command that writes raw PCM (16-bit little-endian mono at
//! 16 kHz, e.g. `arecord`) and goes to a playback command that reads it (e.g. `aplay`), so
//! the binary needs no audio library. The sender cuts the capture into 20 ms frames and paces
//! them in real time; the receiver plays them from a small jitter buffer on its own 20 ms
//! clock.
//!
//! Latency stays bounded however slow the path is. The receiver acknowledges what it gets;
//! the sender keeps at most `max-delay` worth of frames unacknowledged and drops newer frames
//! beyond that (counted), so buffers along the way never fill with old audio. The receiver
//! plays silence for a frame that has not arrived in time, throws away frames that come too
//! late, and skips ahead when its buffer holds more than `max-delay`.
//!
//! Messages, both ways: `kind u8, seq u32, time_ms u32, ack u32, len u16` (big-endian), then
//! `len` bytes of PCM. Kinds: 0 audio, 1 acknowledgement only, 2 end of audio (the capture
//! ended; acknowledgements may still follow).

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read, Write};
use std::net::Shutdown;

use crate::socket::Stream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::client;

/// 16 kHz, 16-bit mono: the PCM format of the default commands.
pub const SAMPLE_RATE: u32 = 16_000;
pub const FRAME_MS: u32 = 20;
pub const FRAME_BYTES: usize = (SAMPLE_RATE * FRAME_MS / 1000 * 2) as usize;
pub const DEFAULT_CAPTURE: &str = "arecord -q -f S16_LE -r 16000 -c 1";
pub const DEFAULT_PLAYBACK: &str = "aplay -q -f S16_LE -r 16000 -c 1";
/// Default `--jitter`: audio the receiver collects before it starts playing, in ms.
pub const JITTER_MS: u32 = 60;
/// Default `--max-delay`: the most audio in flight or buffered, in ms.
pub const MAX_DELAY_MS: u32 = 200;

const HEADER_BYTES: usize = 15;
const AUDIO: u8 = 0;
const ACK: u8 = 1;
const END: u8 = 2;
/// Frames waiting between the capture and the socket writer.
const SEND_QUEUE_FRAMES: usize = 2;
/// After our side is done, how long to wait for the peer to close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct Options {
    pub relay: client::Relay,
    pub token: String,
    pub capture: String,
    pub playback: String,
    pub jitter_ms: u32,
    pub max_delay_ms: u32,
    pub stats: bool,
}

/// Counters, printed once a second with `--stats`.
#[derive(Debug, Default)]
struct Stats {
    sent: AtomicU64,
    received: AtomicU64,
    /// Not sent: too much unacknowledged, or the writer was behind.
    dropped: AtomicU64,
    /// Arrived after their time to play.
    late: AtomicU64,
    /// Played as silence: not there in time.
    missing: AtomicU64,
    /// Thrown away to catch up when the buffer held too much.
    skipped: AtomicU64,
    depth_ms: AtomicU64,
}

impl Stats {
    fn line(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "voice: sent {} received {} dropped {} late {} missing {} skipped {} buffer {} ms",
            get(&self.sent),
            get(&self.received),
            get(&self.dropped),
            get(&self.late),
            get(&self.missing),
            get(&self.skipped),
            get(&self.depth_ms),
        )
    }
}

/// What goes out on the socket.
enum Out {
    Audio {
        seq: u32,
        time_ms: u32,
        pcm: Vec<u8>,
    },
    /// Send the current acknowledgement now.
    Ack,
    End,
    /// Our side is finished: the writer stops after what is queued.
    Stop,
}

impl Jitter {
    /// Too much waiting: skips ahead to the newest `max_frames` of audio; how many frames
    /// were dropped.
    fn skip_to_newest(&mut self, max_frames: u32) -> u64 {
        let Some(&newest) = self.frames.keys().next_back() else {
            return 0;
        };
        if newest.saturating_sub(self.next) < max_frames {
            return 0;
        }
        let keep_from = newest + 1 - max_frames;
        let old: Vec<u32> = self.frames.range(..keep_from).map(|(s, _)| *s).collect();
        for s in &old {
            self.frames.remove(s);
        }
        self.next = keep_from;
        old.len() as u64
    }
}

/// Received audio waiting to be played.
#[derive(Default)]
struct Jitter {
    frames: BTreeMap<u32, Vec<u8>>,
    /// The next sequence number to play; frames below it are late.
    next: u32,
    started: bool,
    /// The peer will send no more audio (END or end of stream).
    ended: bool,
}

#[derive(Default)]
struct Shared {
    jitter: Mutex<Jitter>,
    arrived: Condvar,
    stats: Stats,
    /// One more than the highest sequence number received from the peer (0: none yet).
    ack_out: AtomicU32,
    /// The same from the peer: how much of our audio it has received.
    acked: AtomicU32,
    peer_gone: AtomicBool,
}

pub fn run(options: &Options) -> io::Result<()> {
    let (stream, leftover) = client::open_pipe(&options.relay, &options.token, client::Role::Any)?;
    // Small kernel buffers: they would only hold audio that is getting old.
    rustix::net::sockopt::set_socket_send_buffer_size(&stream, 16 * 1024).ok();
    let shared = Arc::new(Shared::default());
    let max_in_flight = (options.max_delay_ms / FRAME_MS).max(2);

    let mut capture = spawn(&options.capture, Stdio::null(), Stdio::piped())?;
    let mut playback = spawn(&options.playback, Stdio::piped(), Stdio::inherit())?;
    let (outbox, outgoing) = mpsc::sync_channel::<Out>(SEND_QUEUE_FRAMES);

    let capture_out = capture
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no capture"))?;
    let capturing = {
        let (outbox, shared) = (outbox.clone(), shared.clone());
        thread::spawn(move || capture_frames(capture_out, &outbox, &shared, max_in_flight))
    };
    let writing = {
        let (stream, shared) = (stream.try_clone()?, shared.clone());
        thread::spawn(move || write_messages(stream, outgoing, &shared))
    };
    let receiving = {
        let (stream, shared, outbox) = (stream.try_clone()?, shared.clone(), outbox.clone());
        thread::spawn(move || receive(leftover, stream, outbox, &shared))
    };
    if options.stats {
        let shared = shared.clone();
        thread::spawn(move || report_every_second(&shared));
    }
    let player = playback
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("no playback"))?;
    let played = play(player, &shared, options);

    // The peer is done and everything it sent is played. Stop capturing if the peer hung
    // up; otherwise let our capture finish.
    if shared.peer_gone.load(Ordering::Acquire) {
        capture.kill().ok();
    }
    capturing.join().ok();
    // END is queued by now; the writer sends it and stops, then the peer sees our EOF.
    outbox.send(Out::Stop).ok();
    let written = writing
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("writer panicked")));
    stream.shutdown(Shutdown::Write).ok();
    stream.set_read_timeout(Some(CLOSE_WAIT)).ok();
    receiving.join().ok();
    capture.wait().ok();
    playback.wait().ok();
    if options.stats {
        eprintln!("{}", shared.stats.line());
    }
    played?;
    written
}

/// `--stats`: the figures on stderr once a second, for as long as the call lasts.
fn report_every_second(shared: &Shared) {
    loop {
        thread::sleep(Duration::from_secs(1));
        eprintln!("{}", shared.stats.line());
    }
}

fn spawn(command: &str, stdin: Stdio, stdout: Stdio) -> io::Result<Child> {
    Command::new("sh")
        .args(["-c", command])
        .stdin(stdin)
        .stdout(stdout)
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {command:?}: {e}")))
}

/// Cuts the capture into frames, paced in real time, and queues them for sending; drops
/// (and counts) a frame when too much is unacknowledged or the writer is behind.
fn capture_frames(
    mut capture: impl Read,
    outbox: &SyncSender<Out>,
    shared: &Shared,
    max_in_flight: u32,
) {
    let start = Instant::now();
    let mut seq: u32 = 0;
    let mut sent_upto: u32 = 0;
    loop {
        let mut pcm = vec![0u8; FRAME_BYTES];
        let n = read_full(&mut capture, &mut pcm);
        if n == 0 {
            break;
        }
        pcm.truncate(n);
        let time_ms = seq * FRAME_MS;
        // A file plays like a microphone: no frame leaves before its time.
        let due = start + Duration::from_millis(u64::from(time_ms));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        // Frames sent and not yet acknowledged (dropped ones never count).
        let in_flight = sent_upto.saturating_sub(shared.acked.load(Ordering::Acquire));
        let queued = if in_flight >= max_in_flight {
            false
        } else {
            match outbox.try_send(Out::Audio { seq, time_ms, pcm }) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => false,
                Err(TrySendError::Disconnected(_)) => return,
            }
        };
        if queued {
            sent_upto = seq + 1;
        } else {
            shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        seq += 1;
        if n < FRAME_BYTES {
            break;
        }
    }
    outbox.send(Out::End).ok();
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(from: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match from.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

/// The only writer of the socket: audio frames, acknowledgements, the end marker.
fn write_messages(mut stream: Stream, outgoing: Receiver<Out>, shared: &Shared) -> io::Result<()> {
    let mut last_ack = u32::MAX;
    let mut ended = false;
    loop {
        let out = match outgoing.recv_timeout(Duration::from_millis(u64::from(FRAME_MS) * 5)) {
            Ok(out) => Some(out),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        let ack = shared.ack_out.load(Ordering::Acquire);
        let (kind, seq, time_ms, pcm) = match out {
            Some(Out::Audio { seq, time_ms, pcm }) => (AUDIO, seq, time_ms, pcm),
            Some(Out::End) if !ended => {
                ended = true;
                (END, 0, 0, Vec::new())
            }
            Some(Out::Stop) => return Ok(()),
            Some(Out::Ack | Out::End) | None if ack != last_ack => (ACK, 0, 0, Vec::new()),
            _ => continue,
        };
        let mut message = Vec::with_capacity(HEADER_BYTES + pcm.len());
        message.push(kind);
        message.extend_from_slice(&seq.to_be_bytes());
        message.extend_from_slice(&time_ms.to_be_bytes());
        message.extend_from_slice(&ack.to_be_bytes());
        message.extend_from_slice(&(pcm.len() as u16).to_be_bytes());
        message.extend_from_slice(&pcm);
        if let Err(e) = stream.write_all(&message) {
            if shared.peer_gone.load(Ordering::Acquire) {
                return Ok(());
            }
            return Err(e);
        }
        last_ack = ack;
        if kind == AUDIO {
            shared.stats.sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Reads messages into the jitter buffer and acknowledges them, until the peer's stream ends.
fn receive(leftover: Vec<u8>, stream: Stream, outbox: SyncSender<Out>, shared: &Shared) {
    let mut reader = BufReader::new(io::Cursor::new(leftover).chain(stream));
    let mut header = [0u8; HEADER_BYTES];
    loop {
        if reader.read_exact(&mut header).is_err() {
            break;
        }
        let kind = header[0];
        let seq = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let ack = u32::from_be_bytes([header[9], header[10], header[11], header[12]]);
        let len = usize::from(u16::from_be_bytes([header[13], header[14]]));
        let mut pcm = vec![0u8; len];
        if reader.read_exact(&mut pcm).is_err() {
            break;
        }
        shared.acked.fetch_max(ack, Ordering::AcqRel);
        match kind {
            AUDIO => {
                shared.stats.received.fetch_add(1, Ordering::Relaxed);
                shared
                    .ack_out
                    .fetch_max(seq.wrapping_add(1), Ordering::AcqRel);
                let mut jitter = lock(&shared.jitter);
                if jitter.started && seq < jitter.next {
                    shared.stats.late.fetch_add(1, Ordering::Relaxed);
                } else {
                    jitter.frames.insert(seq, pcm);
                }
                drop(jitter);
                shared.arrived.notify_all();
                // Never blocks the reader: a full queue means an ack goes out soon anyway.
                outbox.try_send(Out::Ack).ok();
            }
            END => {
                lock(&shared.jitter).ended = true;
                shared.arrived.notify_all();
            }
            _ => {}
        }
    }
    // End of stream without END: the peer hung up.
    let mut jitter = lock(&shared.jitter);
    if !jitter.ended {
        shared.peer_gone.store(true, Ordering::Release);
    }
    jitter.ended = true;
    drop(jitter);
    shared.arrived.notify_all();
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Plays the jitter buffer on a 20 ms clock until the peer's audio has ended and been played.
fn play(mut player: ChildStdin, shared: &Shared, options: &Options) -> io::Result<()> {
    let frame = Duration::from_millis(u64::from(FRAME_MS));
    let prebuffer = (options.jitter_ms / FRAME_MS).max(1) as usize;
    let max_frames = (options.max_delay_ms / FRAME_MS).max(prebuffer as u32 + 1);
    let silence = vec![0u8; FRAME_BYTES];
    // Wait for the first frames (or the end).
    {
        let mut jitter = lock(&shared.jitter);
        while jitter.frames.len() < prebuffer && !jitter.ended {
            jitter = shared
                .arrived
                .wait(jitter)
                .unwrap_or_else(|p| p.into_inner());
        }
        jitter.next = jitter.frames.keys().next().copied().unwrap_or(0);
        jitter.started = true;
    }
    let mut tick = Instant::now();
    loop {
        let pcm = {
            let mut jitter = lock(&shared.jitter);
            if jitter.ended && jitter.frames.is_empty() {
                return Ok(());
            }
            let skipped = jitter.skip_to_newest(max_frames);
            (shared.stats.skipped).fetch_add(skipped, Ordering::Relaxed);
            let next = jitter.next;
            jitter.next += 1;
            let depth = jitter.frames.len() as u64 * u64::from(FRAME_MS);
            shared.stats.depth_ms.store(depth, Ordering::Relaxed);
            match jitter.frames.remove(&next) {
                Some(pcm) => Some(pcm),
                // The peer has ended and this frame never came: move on without a gap.
                None if jitter.ended => continue,
                None => None,
            }
        };
        let pcm = pcm.unwrap_or_else(|| {
            shared.stats.missing.fetch_add(1, Ordering::Relaxed);
            silence.clone()
        });
        player.write_all(&pcm)?;
        tick += frame;
        match tick.checked_duration_since(Instant::now()) {
            Some(wait) => thread::sleep(wait),
            // Far behind (we were stopped, or the player blocked): restart the clock rather
            // than rush out the backlog.
            None if Instant::now() - tick > frame * 2 => tick = Instant::now(),
            None => {}
        }
    }
}
