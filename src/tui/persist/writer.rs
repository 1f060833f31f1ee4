//! The session writer: a thread that serialises and writes the app's session snapshots, so that no file write
//! (and no serialisation of a session that may hold megabytes of evidence) runs in `update`.
//!
//! The UI sends whole snapshots; the writer keeps only the newest of those queued, skips one that equals what is
//! on disk, and writes through the session store (temp file, fsync, rename). Dropping the writer closes its
//! queue and waits until everything queued is on disk: quitting never loses the last edit.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::session::{self, store, Session};

/// One snapshot to write.
struct Job {
    seq: u64,
    session: Session,
    /// Write even when it equals the file (`:save`).
    force: bool,
}

/// What the writer reports back: how far it got, and the outcome of its last write.
#[derive(Debug, Default)]
struct Progress {
    /// The sequence number of the last job handled (written, skipped or failed).
    done: u64,
    /// The last write's error, until a write succeeds.
    error: Option<String>,
    /// Whether the last handled job was written (false: unchanged, skipped).
    wrote: bool,
    /// The writer thread has ended (its queue closed, or it panicked).
    stopped: bool,
}

type Shared = Arc<(Mutex<Progress>, Condvar)>;

/// The outcome of a waited-for save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    /// The snapshot was written to the file.
    Written,
    /// Nothing was written: the snapshot equalled what the file already holds.
    Unchanged,
    /// The write failed (or the writer thread stopped); the message says why.
    Failed(String),
}

/// The handle the app keeps; dropping it flushes and joins the thread.
pub struct SessionWriter {
    tx: Option<Sender<Job>>,
    shared: Shared,
    handle: Option<JoinHandle<()>>,
    next_seq: u64,
    /// The last error already shown to the user, so that it is reported once.
    reported: Option<String>,
}

impl SessionWriter {
    /// Starts the writer for `path`. `on_disk` is the session as the file holds it now (or, for a session not yet
    /// written, as it would be written: the first write happens on the first change).
    pub fn spawn(path: PathBuf, on_disk: &Session) -> std::io::Result<SessionWriter> {
        let (tx, rx) = mpsc::channel::<Job>();
        let shared: Shared = Arc::new((Mutex::new(Progress::default()), Condvar::new()));
        let state = WriterState {
            path,
            last_json: on_disk.to_json(),
            last_modified: on_disk.modified.clone(),
        };
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("circuitscope-session".into())
            .spawn(move || {
                // Marks the writer stopped however the thread ends, so that a waiter never waits forever.
                struct Stopped(Shared);
                impl Drop for Stopped {
                    fn drop(&mut self) {
                        let (lock, cvar) = &*self.0;
                        lock.lock().unwrap_or_else(PoisonError::into_inner).stopped = true;
                        cvar.notify_all();
                    }
                }
                let _stopped = Stopped(thread_shared.clone());
                state.run(rx, &thread_shared);
            })?;
        Ok(SessionWriter {
            tx: Some(tx),
            shared,
            handle: Some(handle),
            next_seq: 0,
            reported: None,
        })
    }

    /// Queues a snapshot; returns at once.
    pub fn send(&mut self, session: Session, force: bool) -> u64 {
        self.next_seq += 1;
        let job = Job {
            seq: self.next_seq,
            session,
            force,
        };
        if let Some(tx) = &self.tx {
            // A send fails only when the thread has gone; `wait` then reports it stopped.
            let _ = tx.send(job);
        }
        self.next_seq
    }

    /// Blocks until the writer has handled job `seq` (and everything before it).
    pub fn wait(&self, seq: u64) -> SaveOutcome {
        let (lock, cvar) = &*self.shared;
        let mut p = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while p.done < seq && !p.stopped {
            p = cvar.wait(p).unwrap_or_else(PoisonError::into_inner);
        }
        match (&p.error, p.done >= seq) {
            (Some(e), _) => SaveOutcome::Failed(e.clone()),
            (None, false) => SaveOutcome::Failed("the session writer stopped".into()),
            (None, true) if p.wrote => SaveOutcome::Written,
            (None, true) => SaveOutcome::Unchanged,
        }
    }

    /// Blocks until every queued snapshot is handled.
    pub fn wait_all(&self) -> SaveOutcome {
        self.wait(self.next_seq)
    }

    /// A write error not yet reported (each error once; a later success clears it).
    pub fn take_new_error(&mut self) -> Option<String> {
        let err = {
            let (lock, _) = &*self.shared;
            lock.lock().unwrap_or_else(PoisonError::into_inner).error.clone()
        };
        if err == self.reported {
            return None;
        }
        self.reported = err.clone();
        err
    }
}

impl Drop for SessionWriter {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has written what is queued.
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The writer thread's own state.
struct WriterState {
    path: PathBuf,
    /// The file's JSON as last written (or read).
    last_json: String,
    /// The `modified` stamp of that JSON: snapshots carry the app's older stamp, so it is put back before
    /// comparing, and only a real change gets a new one.
    last_modified: String,
}

impl WriterState {
    fn run(mut self, rx: Receiver<Job>, shared: &Shared) {
        while let Ok(mut job) = rx.recv() {
            // Snapshots queued meanwhile supersede this one: only the newest is written.
            while let Ok(next) = rx.try_recv() {
                job = Job {
                    force: job.force || next.force,
                    ..next
                };
            }
            let result = self.write(job.session, job.force);
            let (lock, cvar) = &**shared;
            let mut p = lock.lock().unwrap_or_else(PoisonError::into_inner);
            p.done = job.seq;
            match result {
                Ok(wrote) => {
                    p.wrote = wrote;
                    p.error = None;
                }
                Err(e) => {
                    p.wrote = false;
                    p.error = Some(e);
                }
            }
            cvar.notify_all();
        }
    }

    /// Writes `s` when it differs from the file (or `force`). Ok(false): unchanged, nothing written.
    fn write(&mut self, mut s: Session, force: bool) -> Result<bool, String> {
        s.modified = self.last_modified.clone();
        let unchanged = s.to_json();
        if !force && unchanged == self.last_json {
            return Ok(false);
        }
        s.modified = session::now_rfc3339();
        match store::save(&self.path, &s) {
            Ok(()) => {
                self.last_json = s.to_json();
                self.last_modified = s.modified;
                Ok(true)
            }
            Err(e) => {
                // Remembered as written, so that the same failing content is not retried on every change; the
                // next real change tries again.
                self.last_json = unchanged;
                Err(format!("session not saved: {e}"))
            }
        }
    }
}
