//! Admission: one request at a time per container id, and at most `delegateConcurrency` plugin
//! execs on the node. Both waits are bounded by `admissionTimeoutSeconds` and fail with a
//! try-again error (CNI code 11) instead of queueing without end (upstream's OOM loops under
//! bursts come from unbounded concurrent delegates).
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use multus_common::code;
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use super::error::CniCode;

/// A wait for admission ran out; the runtime should retry (CNI code 11).
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error(
        "container {container_id}: another request for it is still running after {waited_ms} ms"
    )]
    ContainerBusy {
        container_id: String,
        waited_ms: u64,
    },
    #[error("no delegate slot free after {waited_ms} ms ({limit} plugins already running)")]
    NoDelegateSlot { limit: usize, waited_ms: u64 },
    #[error("the delegate slots are closed (daemon shutting down)")]
    Closed,
}

impl CniCode for AdmissionError {
    fn cni_code(&self) -> u32 {
        code::TRY_AGAIN_LATER
    }
}

type LockMap = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

/// Per-container locks and the node-wide delegate semaphore.
#[derive(Debug)]
pub struct Admission {
    containers: Arc<LockMap>,
    slots: Arc<Semaphore>,
    limit: usize,
    timeout: Duration,
}

/// Held while a request works on a container; the lock entry goes away with the last user.
#[derive(Debug)]
pub struct ContainerGuard {
    // Declared first so it is dropped before `_entry` looks at the reference count.
    _lock: OwnedMutexGuard<()>,
    _entry: Entry,
}

/// A counted reference to one container's lock; removes the map entry when nobody else has one.
#[derive(Debug)]
struct Entry {
    map: Arc<LockMap>,
    id: String,
    lock: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        drop(self.lock.take());
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        // Clones are only made under the map lock, so a count of 1 (the map's own) means no
        // holder and no waiter is left.
        if map.get(&self.id).is_some_and(|l| Arc::strong_count(l) == 1) {
            map.remove(&self.id);
        }
    }
}

impl Admission {
    pub fn new(delegate_concurrency: usize, timeout: Duration) -> Self {
        let limit = delegate_concurrency.max(1);
        Self {
            containers: Arc::default(),
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            timeout,
        }
    }

    /// Waits for exclusive use of `container_id`; returns the guard and how long it waited.
    pub async fn lock_container(
        &self,
        container_id: &str,
    ) -> Result<(ContainerGuard, Duration), AdmissionError> {
        let started = Instant::now();
        let lock = {
            let mut map = self
                .containers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            map.entry(container_id.to_owned()).or_default().clone()
        };
        let entry = Entry {
            map: self.containers.clone(),
            id: container_id.to_owned(),
            lock: Some(lock.clone()),
        };
        match tokio::time::timeout(self.timeout, lock.lock_owned()).await {
            Ok(guard) => Ok((
                ContainerGuard {
                    _lock: guard,
                    _entry: entry,
                },
                started.elapsed(),
            )),
            Err(_) => Err(AdmissionError::ContainerBusy {
                container_id: container_id.to_owned(),
                waited_ms: started.elapsed().as_millis() as u64,
            }),
        }
    }

    /// Waits for one of the node's delegate exec slots; returns the permit and the wait.
    pub async fn delegate_slot(&self) -> Result<(OwnedSemaphorePermit, Duration), AdmissionError> {
        let started = Instant::now();
        match tokio::time::timeout(self.timeout, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok((permit, started.elapsed())),
            Ok(Err(_)) => Err(AdmissionError::Closed),
            Err(_) => Err(AdmissionError::NoDelegateSlot {
                limit: self.limit,
                waited_ms: started.elapsed().as_millis() as u64,
            }),
        }
    }

    /// How many containers have a lock entry (held or awaited); for tests and metrics.
    #[cfg(test)]
    pub fn tracked_containers(&self) -> usize {
        self.containers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn third_delegate_waiter_gets_try_again() {
        let a = Admission::new(2, SHORT);
        let (p1, _) = a.delegate_slot().await.unwrap();
        let (_p2, _) = a.delegate_slot().await.unwrap();
        let err = a.delegate_slot().await.unwrap_err();
        assert!(
            matches!(err, AdmissionError::NoDelegateSlot { limit: 2, .. }),
            "{err}"
        );
        drop(p1);
        assert!(a.delegate_slot().await.is_ok());
    }

    #[tokio::test]
    async fn same_container_is_serialized_and_others_are_not() {
        let a = Admission::new(1, SHORT);
        let (g, _) = a.lock_container("c1").await.unwrap();
        let busy = a.lock_container("c1").await.unwrap_err();
        assert!(
            matches!(busy, AdmissionError::ContainerBusy { .. }),
            "{busy}"
        );
        let (_other, _) = a.lock_container("c2").await.unwrap();
        drop(g);
        assert!(a.lock_container("c1").await.is_ok());
    }

    #[tokio::test]
    async fn lock_map_forgets_unheld_containers() {
        let a = Arc::new(Admission::new(1, Duration::from_secs(5)));
        let (g, _) = a.lock_container("c1").await.unwrap();
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.lock_container("c1").await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        drop(g);
        waiter.await.unwrap().unwrap();
        for i in 0..10 {
            drop(a.lock_container(&format!("x{i}")).await.unwrap());
        }
        assert_eq!(a.tracked_containers(), 0);
        // A waiter that timed out must not leave its entry behind either.
        let short = Admission::new(1, SHORT);
        let (g, _) = short.lock_container("c").await.unwrap();
        assert!(short.lock_container("c").await.is_err());
        drop(g);
        assert_eq!(short.tracked_containers(), 0);
    }
}
