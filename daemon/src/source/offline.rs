//! The source of a daemon run that serves no pods: the operator's `--reconcile-once`, whose
//! teardowns work from the cache records alone (as DEL does). It connects to nothing, and a
//! lookup or write is an error that says so.
use async_trait::async_trait;

use super::{ClusterSource, NadInfo, PodInfo, SourceError};

#[derive(Debug, Default)]
pub struct Offline;

fn refused(what: String) -> SourceError {
    SourceError::Unavailable {
        what,
        reason: "this multus-daemon run (--reconcile-once) does not connect to the cluster".into(),
    }
}

#[async_trait]
impl ClusterSource for Offline {
    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodInfo>, SourceError> {
        Err(refused(format!("getting pod {namespace}/{name}")))
    }

    async fn nad(&self, namespace: &str, name: &str) -> Result<Option<NadInfo>, SourceError> {
        Err(refused(format!(
            "getting network-attachment-definition {namespace}/{name}"
        )))
    }

    async fn set_network_status(&self, pod: &PodInfo, _: &str) -> Result<bool, SourceError> {
        Err(refused(format!(
            "setting network-status of pod {}/{}",
            pod.namespace, pod.name
        )))
    }
}
