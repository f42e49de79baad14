//! ADD with `default-route` and AddedInterface events over fake plugins: a default route that
//! cannot be set rolls everything back like a delegate failure; a successful ADD posts one event
//! per delegate with a result, and a failed one none.
use super::*;

/// `sec1` selected with a `default-route`; `sec2` plain.
fn mem_with_default_route() -> Mem {
    let mut m = mem();
    let selection = json!([{"name": "sec1", "default-route": ["10.9.0.1"]}, {"name": "sec2"}]);
    m.pods[0]
        .annotations
        .insert("k8s.v1.cni.cncf.io/networks".into(), selection.to_string());
    m
}

/// Waits for the detached event task (bounded: a broken build fails, it does not hang).
async fn events_after_add(source: &Mem, want: usize) -> Vec<(String, String)> {
    for _ in 0..500 {
        if source.events.lock().unwrap().len() >= want {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    source.events.lock().unwrap().clone()
}

#[tokio::test]
async fn default_route_failure_rolls_back_everything() {
    let f = fixture(mem_with_default_route(), |_| {});
    // The fake plugins create no interface: setting the route on `net1` fails.
    let add = call(Command::Add, "c1");
    let netns = add.netns.clone();
    let err = f.engine.add(add).await.unwrap_err();
    assert!(matches!(err.cause(), EngineError::DefaultRoute(_)), "{err}");
    assert!(err.to_string().contains(&netns), "{err}");
    let dels = dels(&f);
    assert_eq!(
        dels,
        ["DEL third net2", "DEL second net1", "DEL first eth0"]
    );
    assert!(record(&f, "c1").is_none());
    assert!(f.source.statuses.lock().unwrap().is_empty());
    // A spawned event task would run at the first yields of this single-threaded runtime.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(f.source.events.lock().unwrap().is_empty());
}

/// The route fails after every delegate ran, before the record's final write: when a DEL of
/// the rollback fails too, the record kept for the runtime's DEL is the one in memory, the last
/// delegate added and with its result (DEL's prevResult).
#[tokio::test]
async fn a_failed_rollback_after_the_last_delegate_keeps_its_result() {
    let f = fixture(mem_with_default_route(), |_| {});
    f.plugins.add(
        "first",
        &format!("[ \"$CNI_COMMAND\" = DEL ] && exit 1\n{ECHO_RESULT}"),
    );
    let err = f.engine.add(call(Command::Add, "c1")).await.unwrap_err();
    assert!(matches!(err.cause(), EngineError::DefaultRoute(_)), "{err}");
    let rec = record(&f, "c1").expect("record kept after a failed rollback");
    assert_eq!(rec.delegates.len(), 3);
    for en in &rec.delegates {
        assert_eq!(en.state, State::Added, "{}", en.delegate.name);
        assert!(en.result.is_some(), "{} has no result", en.delegate.name);
    }
}

#[tokio::test]
async fn added_interface_events_follow_a_successful_add() {
    let f = fixture(mem(), |_| {});
    f.engine.add(call(Command::Add, "c1")).await.unwrap();
    let events = events_after_add(&f.source, 3).await;
    let reasons: Vec<_> = events.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(reasons, ["AddedInterface"; 3]);
    let messages: Vec<_> = events.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(
        messages[0], "Add eth0 [10.9.0.1/24] from cluster",
        "{messages:?}"
    );
    assert!(messages[1].starts_with("Add net1 [10.9.0."), "{messages:?}");
    assert!(messages[2].ends_with("] from app/sec2"), "{messages:?}");
}
