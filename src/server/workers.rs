//! Executor threads that run only while they help: two while a core is idle, one when the
//! machine is full, more while the ones running are busy and a core is idle.
//!
//! Why: every thread that runs the executor is a thread a scheduled task may wake.
//! async-executor wakes a sleeping thread whenever a task is scheduled, and most of the time
//! the thread that scheduled it runs it first, so the woken one finds nothing and sleeps
//! again: a futex call and two context switches per event, and a multi-threaded process
//! also pays atomics on every file descriptor it uses. Measured on two cores (2026-12-01):
//! a 1 GiB magic-wormhole transfer through the transit relay cost the server 0.23–0.46
//! CPU-seconds on two threads and 0.10–0.26 on one; 1,000 rooms of two, 0.150 s per 10k
//! round trips on two threads, 0.118 on one, at a higher rate: there the cores are taken
//! (by the clients), and the threads wait for them.
//!
//! A second thread has its use even when one could carry the load: while a core is idle,
//! a quiet connection's message reaches a thread that is awake more often (on this VM a
//! halted vCPU takes tens of microseconds to wake). Pipe ping-pong, 10,000 round trips
//! (`duet-load chat --mode pipe`): p50 94–102 µs on two threads, 150–161 µs on one, for
//! the same server CPU (63–74 ticks). So the rule is about cores, not only load.
//!
//! A governor task samples, every [`TICK`], the CPU time of the executor threads (from
//! `/proc/self/task`) and the machine's idle time (`/proc/stat`). While at least
//! [`IDLE_CORES`] of a core is idle, [`LATENCY_THREADS`] run whatever the load, and another
//! joins when the running ones used at least [`BUSY_SHARE`] of their time. Past that floor
//! (one thread, on a machine without a core to spare) one parks when either the rest could
//! have carried the load at half their time, or the machine was full (less than
//! [`FULL_IDLE_CORES`] idle) while the running threads used less than [`CONTENDED_SHARE`]
//! of their time: they wait for cores that other programs (on a small machine, the
//! clients) use, and one thread fewer wastes less. That one parks at the first tick; the
//! other changes need their condition for [`STEADY_TICKS`] ticks in a row (a burst of
//! connections is not enough). `--threads` is
//! the most that may run. Parked threads wait on a condition variable, outside the
//! executor, so nothing wakes them. Elsewhere than Linux (no `/proc`) every thread runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use event_listener::{listener, Event};
use smol::Executor;

use crate::lock::lock;

/// How often the governor looks.
pub const TICK: Duration = Duration::from_millis(100);
/// The share of their time the running threads must have used for another to join.
pub const BUSY_SHARE: f64 = 0.9;
/// Idle cores (over the last tick, the whole machine) needed for another thread to join.
pub const IDLE_CORES: f64 = 0.9;
/// Below this many idle cores the machine is full.
pub const FULL_IDLE_CORES: f64 = 0.25;
/// On a full machine, running threads that use less than this share of their time park one.
pub const CONTENDED_SHARE: f64 = 0.75;
/// Threads that run while the machine has a core to spare, however light the load.
pub const LATENCY_THREADS: usize = 2;
/// Ticks in a row a condition must hold before a thread joins, or parks on a quiet machine
/// (a full one parks a thread at the first tick: the thread only costs there).
pub const STEADY_TICKS: u32 = 3;

/// The executor threads: how many may run, how many run now.
#[derive(Debug)]
pub struct Workers {
    most: usize,
    /// Threads inside the executor now (the first, and those not yet parked).
    inside: AtomicUsize,
    state: Mutex<State>,
    /// Parked threads wait on this for a change.
    changed: Condvar,
    /// Running threads watch this for a change (inside the executor).
    event: Event,
}

#[derive(Debug)]
struct State {
    running: usize,
    stopped: bool,
    /// Kernel thread ids of the executor threads, for their CPU times.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    threads: Vec<i32>,
}

impl Workers {
    /// `most` executor threads at most (at least one), [`LATENCY_THREADS`] running to begin
    /// with (on a full machine the governor parks one at its first look); every one where
    /// their load cannot be measured.
    pub fn new(most: usize) -> Workers {
        let most = most.max(1);
        let running = match cfg!(target_os = "linux") {
            true => most.min(LATENCY_THREADS),
            false => most,
        };
        Workers {
            most,
            inside: AtomicUsize::new(1),
            state: Mutex::new(State {
                running,
                stopped: false,
                threads: Vec::new(),
            }),
            changed: Condvar::new(),
            event: Event::new(),
        }
    }

    /// The most threads that may run (`--threads`).
    pub fn most(&self) -> usize {
        self.most
    }

    /// Threads running the executor now.
    pub fn running(&self) -> usize {
        self.inside.load(Ordering::Relaxed)
    }

    /// Executor thread `index` (1, 2, …; the caller's thread is 0): runs the executor while
    /// the governor wants it to, parked outside it otherwise, until the server stops.
    pub fn work(&self, ex: &Executor, index: usize) {
        self.enlist();
        while self.wait_turn(index) {
            self.inside.fetch_add(1, Ordering::Relaxed);
            // smol::block_on (async-io's), not futures-lite's: a running thread waits in the
            // reactor itself when it has nothing to do, so an event wakes the thread that
            // runs its task instead of going through async-io's fallback thread first.
            // Tasks queued on this thread when it parks go back to the shared queue.
            smol::block_on(ex.run(self.parked(index)));
            self.inside.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Called by each executor thread when it starts, so that its CPU time is counted.
    pub fn enlist(&self) {
        #[cfg(target_os = "linux")]
        lock(&self.state)
            .threads
            .push(rustix::thread::gettid().as_raw_nonzero().get());
    }

    /// For thread `index`: blocks until it may run. False once the server stops.
    fn wait_turn(&self, index: usize) -> bool {
        let mut state = lock(&self.state);
        while state.running <= index && !state.stopped {
            state = self
                .changed
                .wait(state)
                .expect("no thread panics holding it");
        }
        !state.stopped
    }

    /// For thread `index`, inside the executor: completes when it is to park (or stop).
    async fn parked(&self, index: usize) {
        loop {
            listener!(self.event => changed);
            let park = {
                let state = lock(&self.state);
                state.running <= index || state.stopped
            };
            if park {
                return;
            }
            changed.await;
        }
    }

    /// Lets every thread go: parked ones return from [`Workers::wait_turn`], running ones
    /// from the executor.
    pub fn stop(&self) {
        lock(&self.state).stopped = true;
        self.changed.notify_all();
        self.event.notify(usize::MAX);
    }

    /// Calls [`Workers::stop`] when dropped: however a scope that runs the threads ends (an
    /// error, a panic), they go, or the scope would wait for them forever.
    pub fn stop_on_drop(&self) -> StopOnDrop<'_> {
        StopOnDrop(self)
    }

    fn set_running(&self, running: usize) {
        lock(&self.state).running = running;
        self.changed.notify_all();
        self.event.notify(usize::MAX);
    }

    /// Adds and parks threads by the load, for as long as the server runs.
    #[cfg(target_os = "linux")]
    pub async fn govern(&self) {
        let mut last: Option<load::Sample> = None;
        self.govern_by(TICK, |threads| {
            let now = load::Sample::take(threads);
            let load = match (&last, &now) {
                (Some(before), Some(after)) => Some(after.since(before)),
                _ => None,
            };
            last = now;
            load
        })
        .await
    }

    /// Every `tick`, asks `measure` (given the executor threads' ids) for the cores' worth of
    /// CPU they used and of the machine left idle since it was last asked, and follows the
    /// [`Governor`]'s decision. A tick without a measure changes nothing.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    async fn govern_by(
        &self,
        tick: Duration,
        mut measure: impl FnMut(&[i32]) -> Option<(f64, f64)>,
    ) {
        let mut governor = Governor::default();
        loop {
            smol::Timer::after(tick).await;
            let (running, threads) = {
                let state = lock(&self.state);
                (state.running, state.threads.clone())
            };
            let Some((busy, idle)) = measure(&threads) else {
                continue;
            };
            let next = governor.decide(running, self.most, busy, idle);
            if next != running {
                self.set_running(next);
            }
        }
    }

    /// Without `/proc` every thread runs from the start; nothing to govern.
    #[cfg(not(target_os = "linux"))]
    pub async fn govern(&self) {
        std::future::pending::<()>().await
    }
}

/// See [`Workers::stop_on_drop`].
pub struct StopOnDrop<'a>(&'a Workers);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The decision, apart from how the load is measured.
#[derive(Debug, Default)]
pub struct Governor {
    /// Ticks in a row in which another thread would have helped.
    hot: u32,
    /// Ticks in a row in which one thread fewer would have done.
    cool: u32,
}

impl Governor {
    /// How many threads should run, given `running` of at most `most`, the cores' worth of
    /// CPU the executor threads used over the last tick (`busy`) and the machine's idle
    /// cores over it (`idle`).
    pub fn decide(&mut self, running: usize, most: usize, busy: f64, idle: f64) -> usize {
        let threads = running as f64;
        // With a core to spare, a second thread costs little and cuts the wake-ups a quiet
        // connection waits for (see the module's doc): it runs whatever the load.
        let spare = idle >= IDLE_CORES;
        let floor = if spare { most.min(LATENCY_THREADS) } else { 1 };
        let saturated = busy >= threads * BUSY_SHARE;
        let hot = running < most && (running < floor || (saturated && spare));
        let quiet = busy < (threads - 1.0) * 0.5;
        let contended = idle < FULL_IDLE_CORES && busy < threads * CONTENDED_SHARE;
        self.hot = if hot { self.hot + 1 } else { 0 };
        self.cool = if running > floor && quiet {
            self.cool + 1
        } else {
            0
        };
        if self.hot >= STEADY_TICKS {
            self.hot = 0;
            return running + 1;
        }
        if running > floor && (contended || self.cool >= STEADY_TICKS) {
            (self.hot, self.cool) = (0, 0);
            return running - 1;
        }
        running
    }
}

#[cfg(target_os = "linux")]
mod load {
    //! CPU time from `/proc`: the executor threads' own, and the machine's idle time.

    use std::time::Instant;

    /// One look at the counters.
    pub struct Sample {
        at: Instant,
        /// The executor threads' user and system time, in clock ticks.
        busy_ticks: u64,
        /// The machine's idle and I/O-wait time, all cores, in clock ticks.
        idle_ticks: u64,
    }

    impl Sample {
        /// None if `/proc` cannot be read (then nothing changes).
        pub fn take(threads: &[i32]) -> Option<Sample> {
            let mut busy_ticks = 0;
            for tid in threads {
                let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
                busy_ticks += thread_ticks(&stat)?;
            }
            let stat = std::fs::read_to_string("/proc/stat").ok()?;
            Some(Sample {
                at: Instant::now(),
                busy_ticks,
                idle_ticks: idle_ticks(&stat)?,
            })
        }

        /// Cores' worth of executor CPU, and of idle machine, from `before` to this one.
        pub fn since(&self, before: &Sample) -> (f64, f64) {
            let hz = rustix::param::clock_ticks_per_second() as f64;
            let secs = self.at.duration_since(before.at).as_secs_f64().max(1e-3);
            let busy = self.busy_ticks.saturating_sub(before.busy_ticks) as f64;
            let idle = self.idle_ticks.saturating_sub(before.idle_ticks) as f64;
            (busy / hz / secs, idle / hz / secs)
        }
    }

    /// utime + stime of one thread's `stat` (fields 14 and 15; the name before them, in
    /// parentheses, may hold spaces).
    pub fn thread_ticks(stat: &str) -> Option<u64> {
        let (_, rest) = stat.rsplit_once(')')?;
        let mut fields = rest.split_whitespace().skip(11);
        let user: u64 = fields.next()?.parse().ok()?;
        let system: u64 = fields.next()?.parse().ok()?;
        Some(user + system)
    }

    /// idle + iowait of `/proc/stat`'s first line (`cpu  user nice system idle iowait …`).
    pub fn idle_ticks(stat: &str) -> Option<u64> {
        let mut fields = stat.lines().next()?.split_whitespace();
        (fields.next()? == "cpu").then_some(())?;
        let mut fields = fields.skip(3);
        let idle: u64 = fields.next()?.parse().ok()?;
        let iowait: u64 = fields.next()?.parse().ok()?;
        Some(idle + iowait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;
    use std::sync::Arc;

    /// The governor's decisions over ticks of the same load, from `running` threads of `most`.
    fn ticks(g: &mut Governor, ticks: u32, running: usize, most: usize, load: (f64, f64)) -> usize {
        (0..ticks).fold(running, |running, _| {
            g.decide(running, most, load.0, load.1)
        })
    }

    #[test]
    fn two_threads_run_while_a_core_is_idle_and_more_join_while_they_are_busy() {
        let mut g = Governor::default();
        let steady = STEADY_TICKS;
        // No core to spare (the clients use it), busy or not: one.
        assert_eq!(ticks(&mut g, 10, 1, 4, (1.0, 0.3)), 1);
        assert_eq!(ticks(&mut g, 10, 1, 4, (0.1, 0.5)), 1);
        // A core idle for a moment (a lull): still one; steadily: the second joins, however
        // light the load, and no more.
        assert_eq!(ticks(&mut g, steady - 1, 1, 4, (0.1, 1.5)), 1);
        assert_eq!(ticks(&mut g, 1, 1, 4, (0.1, 0.5)), 1);
        assert_eq!(ticks(&mut g, steady, 1, 4, (0.1, 1.5)), 2);
        assert_eq!(ticks(&mut g, 10, 2, 4, (0.1, 1.5)), 2);
        // Busy and a core idle, steadily: one more each time.
        assert_eq!(ticks(&mut g, steady - 1, 2, 4, (1.9, 2.0)), 2);
        assert_eq!(ticks(&mut g, 1, 2, 4, (1.9, 2.0)), 3);
        assert_eq!(ticks(&mut g, steady, 3, 4, (2.9, 1.0)), 4);
        // Never past the most, nor two where one is the most.
        assert_eq!(ticks(&mut g, 10, 4, 4, (4.0, 4.0)), 4);
        assert_eq!(ticks(&mut g, 10, 1, 1, (1.0, 4.0)), 1);
    }

    #[test]
    fn a_thread_parks_when_one_fewer_would_do_or_the_machine_is_full() {
        let mut g = Governor::default();
        let steady = STEADY_TICKS;
        // Past the two of a machine with a core to spare, a quiet one parks, steadily.
        assert_eq!(ticks(&mut g, steady - 1, 3, 4, (0.2, 1.5)), 3);
        assert_eq!(ticks(&mut g, 1, 3, 4, (0.2, 1.5)), 2);
        // Without a core to spare, the second too (a busy tick in between starts the
        // count again).
        assert_eq!(ticks(&mut g, steady - 1, 2, 2, (0.2, 0.5)), 2);
        assert_eq!(ticks(&mut g, 1, 2, 2, (1.9, 0.3)), 2);
        assert_eq!(ticks(&mut g, steady - 1, 2, 2, (0.2, 0.5)), 2);
        assert_eq!(ticks(&mut g, 1, 2, 2, (0.2, 0.5)), 1);
        // Full machine, threads that wait for cores more than they run: one parks at once.
        assert_eq!(ticks(&mut g, 1, 2, 2, (1.2, 0.05)), 1);
        // Full machine, threads that run all the time (a server of its own): all stay.
        assert_eq!(ticks(&mut g, 10, 8, 8, (7.6, 0.1)), 8);
        // The first thread never parks.
        assert_eq!(ticks(&mut g, 10, 1, 2, (0.0, 0.0)), 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn proc_counters_are_read_past_names_with_spaces() {
        let stat = "42 (duet worker) S 1 42 42 0 -1 4194368 100 0 0 0 17 5 0 0 20 0 3 0";
        assert_eq!(load::thread_ticks(stat), Some(22));
        let machine = "cpu  10 0 20 300 7 0 1 0 0 0\ncpu0 5 0 10 150 3 0 0 0 0 0\n";
        assert_eq!(load::idle_ticks(machine), Some(307));
        assert_eq!(load::idle_ticks("intr 1 2 3"), None);
        // And this process's own counters parse.
        let tid = rustix::thread::gettid().as_raw_nonzero().get();
        assert!(load::Sample::take(&[tid]).is_some());
    }

    /// Whether two threads run `ex`'s tasks: a task blocks its thread for up to `wait`
    /// until a second task, spawned meanwhile, runs; only another thread can run it then.
    async fn two_at_once(ex: &Arc<Executor<'static>>, wait: Duration) -> bool {
        let spawner = ex.clone();
        ex.spawn(async move {
            let (tx, rx) = std::sync::mpsc::channel();
            let other = spawner.spawn(async move {
                tx.send(()).ok();
            });
            let ran = rx.recv_timeout(wait).is_ok();
            // If nobody else ran it, this thread will, now that it stops blocking.
            other.await;
            ran
        })
        .await
    }

    /// Waits (up to ten seconds) until `done` holds.
    async fn until(done: impl Fn() -> bool, what: &str) {
        let wait = async {
            while !done() {
                smol::Timer::after(Duration::from_millis(5)).await;
            }
        };
        future::or(wait, async {
            smol::Timer::after(Duration::from_secs(10)).await;
            panic!("{what}: not within ten seconds");
        })
        .await
    }

    #[test]
    fn threads_join_the_executor_and_park_as_the_governor_decides() {
        let load = Mutex::new((0.1, 2.0));
        let workers = Workers::new(2);
        let ex = Arc::new(Executor::new());
        let short = Duration::from_millis(200);
        std::thread::scope(|scope| {
            let (workers, ex) = (&workers, &ex);
            let _stop = workers.stop_on_drop();
            scope.spawn(move || workers.work(ex, 1));
            workers.enlist();
            let governor = workers.govern_by(Duration::from_millis(5), |_| Some(*lock(&load)));
            smol::block_on(ex.run(future::or(governor, async {
                // Two run from the start, and stay while a core is idle.
                until(|| workers.running() == 2, "the second thread starts").await;
                assert!(two_at_once(ex, Duration::from_secs(10)).await);
                // No core to spare, and quiet: one parks, and tasks wait for the other.
                *lock(&load) = (0.1, 0.5);
                until(|| workers.running() == 1, "a thread parks").await;
                assert!(!two_at_once(ex, short).await);
                // A core idle: the second joins again and runs tasks.
                *lock(&load) = (0.1, 2.0);
                until(|| workers.running() == 2, "a thread joins").await;
                assert!(two_at_once(ex, Duration::from_secs(10)).await);
            })));
        });
        assert_eq!(workers.running(), 1);
    }
}
