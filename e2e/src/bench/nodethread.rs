//! A thread living in a node's network namespace, running jobs sent to it: what a runtime on that
//! node is when it execs plugins itself (a namespace is per thread, and a child inherits the
//! forking thread's). Jobs time themselves, so the hop to this thread is never counted.
use std::{fs, sync::mpsc, thread};

use anyhow::{Context, Result, anyhow};
use nix::sched::CloneFlags;

use crate::netns::Netns;

type Job = Box<dyn FnOnce() + Send>;

pub struct NodeThread {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl NodeThread {
    pub fn start(node: &Netns) -> Result<Self> {
        let ns = fs::File::open(node.path()).context("opening the node namespace")?;
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("bench-node".into())
            .spawn(move || {
                let joined = nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| anyhow!("setns into the node namespace: {e}"));
                let ok = joined.is_ok();
                let _ = ready_tx.send(joined);
                if ok {
                    for job in rx {
                        job();
                    }
                }
            })?;
        ready_rx
            .recv()
            .context("node thread ended before it started")??;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `f` on the node thread and waits for its result.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .as_ref()
            .context("node thread stopped")?
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| anyhow!("node thread stopped"))?;
        rx.recv().map_err(|_| anyhow!("node thread dropped a job"))
    }
}

impl Drop for NodeThread {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
