//! Bounded retries of one API call: each attempt has its own timeout, the whole loop a budget,
//! and transient answers (409, 429, 5xx, transport errors, timeouts) are retried with back-off or
//! after the server's Retry-After. Upstream polls with hard-coded 50 ms/250 ms/2.5 s; these are
//! configurable instead.
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::source::SourceError;

/// First pause between attempts when the server gave no Retry-After.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between attempts when the server gave no Retry-After.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How long one call and the whole retry loop may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub per_call: Duration,
    pub total: Duration,
}

/// Why a retried call ended without a value.
#[derive(Debug)]
pub enum Failure {
    /// The object does not exist (404): an answer, not an error.
    NotFound,
    /// 403: the daemon's RBAC does not grant this verb (a caller may have another way).
    Forbidden(SourceError),
    /// 409 from [`until_conflict`]: the write was based on a stale resourceVersion.
    Conflict(SourceError),
    /// Anything else, already mapped to the source's error.
    Failed(SourceError),
}

impl Failure {
    /// The source's error; `None` for a 404.
    pub fn into_error(self) -> Option<SourceError> {
        match self {
            Failure::NotFound => None,
            Failure::Forbidden(e) | Failure::Conflict(e) | Failure::Failed(e) => Some(e),
        }
    }
}

/// A 404 as `None`, every other failure as the source's error.
pub fn found<T>(r: Result<T, Failure>) -> Result<Option<T>, SourceError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(f) => f.into_error().map_or(Ok(None), Err),
    }
}

/// What one failed attempt means for the loop.
#[derive(Debug, PartialEq)]
enum Verdict {
    NotFound,
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// 409: retried like `Retry`, unless the caller wants conflicts back.
    Conflict {
        reason: String,
        after: Option<Duration>,
    },
    Forbidden(String),
    Unavailable(String),
    Invalid(String),
}

fn classify(err: &::kube::Error) -> Verdict {
    use ::kube::Error as E;
    match err {
        E::Api(status) => classify_status(
            status.code,
            &status.reason,
            &status.message,
            status.details.as_ref(),
        ),
        E::HyperError(_) | E::Service(_) | E::ReadEvents(_) => Verdict::Retry {
            reason: err.to_string(),
            after: None,
        },
        E::SerdeError(e) => Verdict::Invalid(e.to_string()),
        other => Verdict::Unavailable(other.to_string()),
    }
}

fn classify_status(
    code: u16,
    reason: &str,
    message: &str,
    details: Option<&::kube::core::response::StatusDetails>,
) -> Verdict {
    let text = format!("{code} {reason}: {message}");
    let after = details
        .map(|d| d.retry_after_seconds)
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(u64::from(s)));
    match code {
        404 => Verdict::NotFound,
        403 => Verdict::Forbidden(text),
        409 => Verdict::Conflict {
            reason: text,
            after,
        },
        429 | 500..=599 => Verdict::Retry {
            reason: text,
            after,
        },
        _ => Verdict::Unavailable(text),
    }
}

/// Runs `op` until it succeeds, fails for good, or the budget is spent.
pub async fn with_retries<T, F, Fut>(what: &str, budget: Budget, op: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ::kube::Error>>,
{
    run(what, budget, false, op).await
}

/// As [`with_retries`], but a 409 ends the loop with [`Failure::Conflict`]: a write carrying a
/// resourceVersion must read the object again, not be resent as it was.
pub async fn until_conflict<T, F, Fut>(what: &str, budget: Budget, op: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ::kube::Error>>,
{
    run(what, budget, true, op).await
}

async fn run<T, F, Fut>(
    what: &str,
    budget: Budget,
    conflict_ends: bool,
    mut op: F,
) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ::kube::Error>>,
{
    let deadline = Instant::now() + budget.total;
    let mut backoff = FIRST_BACKOFF;
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let verdict = match tokio::time::timeout(budget.per_call.min(remaining), op()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(err)) => classify(&err),
            Err(_) => Verdict::Retry {
                reason: format!("no answer within {:?}", budget.per_call.min(remaining)),
                after: None,
            },
        };
        let (reason, pause) = match verdict {
            Verdict::NotFound => return Err(Failure::NotFound),
            Verdict::Invalid(reason) => {
                return Err(Failure::Failed(SourceError::Invalid {
                    what: what.into(),
                    reason,
                }));
            }
            Verdict::Unavailable(reason) => return Err(Failure::Failed(unavailable(what, reason))),
            Verdict::Forbidden(reason) => {
                return Err(Failure::Forbidden(unavailable(what, reason)));
            }
            Verdict::Conflict { reason, .. } if conflict_ends => {
                return Err(Failure::Conflict(unavailable(what, reason)));
            }
            Verdict::Retry { reason, after } | Verdict::Conflict { reason, after } => {
                (reason, after.unwrap_or(backoff))
            }
        };
        if Instant::now() + pause >= deadline {
            let reason = format!(
                "gave up after {attempt} attempt(s) within {:?}; last: {reason}",
                budget.total
            );
            return Err(Failure::Failed(unavailable(what, reason)));
        }
        tracing::debug!(what, attempt, pause_ms = pause.as_millis() as u64, reason = %reason, "retrying Kubernetes API call");
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn unavailable(what: &str, reason: String) -> SourceError {
    SourceError::Unavailable {
        what: what.into(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::kube::core::response::StatusDetails;

    fn details(retry_after_seconds: u32) -> StatusDetails {
        StatusDetails {
            name: String::new(),
            group: String::new(),
            kind: String::new(),
            uid: String::new(),
            causes: Vec::new(),
            retry_after_seconds,
        }
    }

    #[test]
    fn statuses_are_classified() {
        let d = details(3);
        let cases: &[(u16, Option<&StatusDetails>, &str)] = &[
            (404, None, "notfound"),
            (409, None, "conflict"),
            (429, Some(&d), "retry3"),
            (500, None, "retry"),
            (503, None, "retry"),
            (403, None, "forbidden"),
            (401, None, "unavailable"),
        ];
        for (code, details, want) in cases {
            let got = match classify_status(*code, "R", "m", *details) {
                Verdict::NotFound => "notfound",
                Verdict::Retry { after: Some(a), .. } if a == Duration::from_secs(3) => "retry3",
                Verdict::Retry { after: None, .. } => "retry",
                Verdict::Retry { .. } => "retry-other",
                Verdict::Conflict { .. } => "conflict",
                Verdict::Forbidden(_) => "forbidden",
                Verdict::Unavailable(_) => "unavailable",
                Verdict::Invalid(_) => "invalid",
            };
            assert_eq!(got, *want, "code {code}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_when_the_budget_is_spent() {
        let budget = Budget {
            per_call: Duration::from_secs(1),
            total: Duration::from_secs(3),
        };
        let mut calls = 0;
        let out: Result<(), _> = with_retries("x", budget, || {
            calls += 1;
            async {
                Err(::kube::Error::Api(
                    ::kube::core::Status::failure("boom", "InternalError")
                        .with_code(500)
                        .boxed(),
                ))
            }
        })
        .await;
        assert!(matches!(
            out,
            Err(Failure::Failed(SourceError::Unavailable { .. }))
        ));
        assert!(calls > 1, "retried before giving up");
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_error_then_success_returns_the_value() {
        let budget = Budget {
            per_call: Duration::from_secs(1),
            total: Duration::from_secs(3),
        };
        let mut calls = 0;
        let out = with_retries("x", budget, || {
            calls += 1;
            let n = calls;
            async move {
                if n == 1 {
                    Err(::kube::Error::Api(
                        ::kube::core::Status::failure("c", "Conflict")
                            .with_code(409)
                            .boxed(),
                    ))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(out.ok(), Some(2));
    }

    fn conflict() -> ::kube::Error {
        ::kube::Error::Api(
            ::kube::core::Status::failure("modified", "Conflict")
                .with_code(409)
                .boxed(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn until_conflict_hands_a_409_back_at_once() {
        let budget = Budget {
            per_call: Duration::from_secs(1),
            total: Duration::from_secs(3),
        };
        let mut calls = 0;
        let out: Result<(), _> = until_conflict("x", budget, || {
            calls += 1;
            async { Err(conflict()) }
        })
        .await;
        assert!(matches!(out, Err(Failure::Conflict(_))), "{out:?}");
        assert_eq!(calls, 1);
        let mut calls = 0;
        let out: Result<(), _> = with_retries("x", budget, || {
            calls += 1;
            async { Err(conflict()) }
        })
        .await;
        assert!(matches!(out, Err(Failure::Failed(_))), "{out:?}");
        assert!(calls > 1, "with_retries retries a 409");
    }
}
