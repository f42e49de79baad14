//! RBAC for the stand-in: which verbs on which resources its one user (the daemon's service
//! account) is granted, and the 403 a real API server answers when a request is not.
use axum::response::Response;
use serde_json::json;

use super::faults;

/// The user every request is authorized as (upstream's DaemonSet runs as this account).
pub const USER: &str = "system:serviceaccount:kube-system:multus";

/// One ClusterRole rule: these verbs on these resources (`pods/status` names a subresource) of
/// these API groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub groups: Vec<&'static str>,
    pub resources: Vec<&'static str>,
    pub verbs: Vec<&'static str>,
}

impl Rule {
    fn new(groups: &[&'static str], resources: &[&'static str], verbs: &[&'static str]) -> Self {
        Self {
            groups: groups.to_vec(),
            resources: resources.to_vec(),
            verbs: verbs.to_vec(),
        }
    }

    fn grants(&self, a: &Attributes<'_>) -> bool {
        let any = |list: &[&str], want: &str| list.iter().any(|x| *x == "*" || *x == want);
        any(&self.groups, a.group) && any(&self.resources, a.resource) && any(&self.verbs, a.verb)
    }
}

/// What the stand-in authorizes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Rbac {
    /// Every request (the default: tests about other things need no RBAC).
    #[default]
    AllowAll,
    /// Only what one of these rules grants.
    Rules(Vec<Rule>),
}

impl Rbac {
    /// Upstream's thick ClusterRole `multus` (deployments/multus-daemonset-thick.yml, v4.3):
    /// pods and pods/status get/list/update/watch, no patch.
    pub fn upstream() -> Self {
        Self::Rules(vec![
            Rule::new(&["k8s.cni.cncf.io"], &["*"], &["*"]),
            Rule::new(
                &[""],
                &["pods", "pods/status"],
                &["get", "list", "update", "watch"],
            ),
            Rule::new(
                &["", "events.k8s.io"],
                &["events"],
                &["create", "patch", "update"],
            ),
        ])
    }

    /// This project's chart ClusterRole (charts/multus-rs/templates/clusterrole.yaml, without
    /// perNodeCertificate): patch on pods, no update of pods/status.
    pub fn chart() -> Self {
        Self::Rules(vec![
            Rule::new(&[""], &["pods"], &["get", "list", "watch", "patch"]),
            Rule::new(
                &["k8s.cni.cncf.io"],
                &["network-attachment-definitions"],
                &["get", "list", "watch"],
            ),
            Rule::new(&["", "events.k8s.io"], &["events"], &["create", "patch"]),
            Rule::new(&["resource.k8s.io"], &["resourceclaims"], &["get"]),
            Rule::new(
                &["resource.k8s.io"],
                &["resourceslices"],
                &["list", "watch"],
            ),
        ])
    }

    /// Upstream's thick ClusterRole since its DRA support (master after v4.3): [`Rbac::upstream`]
    /// plus `get`, `list` (no `watch`) on resourceclaims, resourceclaims/status, resourceslices.
    pub fn upstream_with_dra() -> Self {
        let Self::Rules(mut rules) = Self::upstream() else {
            return Self::upstream();
        };
        rules.push(Rule::new(
            &["resource.k8s.io"],
            &["resourceclaims", "resourceclaims/status", "resourceslices"],
            &["get", "list"],
        ));
        Self::Rules(rules)
    }

    /// The 403 response when the request is not granted.
    pub fn check(&self, a: &Attributes<'_>) -> Option<Response> {
        match self {
            Rbac::AllowAll => None,
            Rbac::Rules(rules) if rules.iter().any(|r| r.grants(a)) => None,
            Rbac::Rules(_) => Some(forbidden(a)),
        }
    }
}

/// A resource request as the authorizer sees it.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    /// `pods`, or `pods/status` for the subresource.
    pub resource: &'a str,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// The real server's words (apiserver `forbiddenMessage` inside `NewForbidden`), e.g.
/// `pods "x" is forbidden: User "..." cannot patch resource "pods" in API group "" in the
/// namespace "default"`.
fn forbidden(a: &Attributes<'_>) -> Response {
    let base = a.resource.split('/').next().unwrap_or(a.resource);
    let qualified = if a.group.is_empty() {
        base.to_owned()
    } else {
        format!("{base}.{}", a.group)
    };
    let object = match a.name {
        Some(name) => format!("{qualified} \"{name}\""),
        None => qualified.clone(),
    };
    let scope = match a.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_owned(),
    };
    let message = format!(
        "{object} is forbidden: User \"{USER}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
        a.verb, a.resource, a.group
    );
    let mut details = json!({"kind": base});
    if let Some(name) = a.name {
        details["name"] = json!(name);
    }
    if !a.group.is_empty() {
        details["group"] = json!(a.group);
    }
    faults::status_with(403, "Forbidden", &message, Some(details))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs<'a>(verb: &'a str, resource: &'a str) -> Attributes<'a> {
        Attributes {
            verb,
            group: "",
            resource,
            namespace: Some("default"),
            name: Some("x"),
        }
    }

    #[test]
    fn upstream_grants_update_of_pod_status_but_no_patch() {
        let up = Rbac::upstream();
        assert!(up.check(&attrs("update", "pods/status")).is_none());
        assert!(up.check(&attrs("get", "pods")).is_none());
        assert!(up.check(&attrs("patch", "pods")).is_some());
        let chart = Rbac::chart();
        assert!(chart.check(&attrs("patch", "pods")).is_none());
        assert!(chart.check(&attrs("update", "pods/status")).is_some());
        assert!(Rbac::AllowAll.check(&attrs("delete", "pods")).is_none());
    }
}
