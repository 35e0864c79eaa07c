//! The one way duet takes a lock.
//!
//! Poison policy: a mutex is poisoned when a thread panicked while holding it. Every critical
//! section in duet leaves its data consistent at each step (a map entry is inserted or not, a
//! counter moved or not), and `panic = "unwind"` exists so that one bad connection ends
//! alone: so a poisoned lock is taken over and used, never passed on as a second panic that
//! would take every other connection down with it.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, carrying on after a panic elsewhere (see the module docs).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
