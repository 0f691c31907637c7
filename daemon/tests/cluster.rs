//! Several arclockd on one MongoDB, as instances behind a balancer: three
//! daemons share one token (one provisioning), one certificate and one
//! database (the nx-27017 stand-in that `make test` starts). What one of
//! them decides the others hold to: a lockout, a refresh family revoked on
//! reuse, every account and session acknowledged before one of them is
//! SIGKILLed, a KEK rotated on one of them; each lists all three from
//! their heartbeats, and one console follows the log and the counters of
//! all three. Rate limits are per instance by design (`daemon/README.md`,
//! "Several daemons"): the test states the division it checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Daemon, Instance, lfw_base64 as photo};
use serde_json::{Value, json};

/// A provisioned instance whose daemons all use `database` on the MongoDB
/// stand-in, or `None` (and a visible skip) when it is not running.
fn cluster(database: &str) -> Option<(Instance, Vec<(String, String)>)> {
    let uri = common::mongo_uri()?;
    let inst = Instance::new();
    inst.provision();
    let uri_file = inst.path("mongodb.uri");
    std::fs::write(&uri_file, uri).unwrap();
    std::fs::set_permissions(&uri_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = [
        ("ARCLOCK_STORE_BACKEND", "mongodb".to_string()),
        (
            "ARCLOCK_STORE_MONGODB_URI_FILE",
            uri_file.to_string_lossy().into_owned(),
        ),
        (
            "ARCLOCK_STORE_MONGODB_DATABASE",
            format!("{database}{}", std::process::id()),
        ),
        ("ARCLOCK_AUTH_MAX_FAILURES", "3".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Some((inst, env))
}

/// Daemon `name` of the cluster, with its own admin socket.
fn start(inst: &Instance, env: &[(String, String)], name: &str, extra: &[(&str, &str)]) -> Daemon {
    let socket = inst.path(&format!("admin-{name}.sock"));
    let socket = socket.to_string_lossy();
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.push(("ARCLOCK_ADMIN_SOCKET", &socket));
    all.extend_from_slice(extra);
    inst.start_with(&all)
}

async fn register(d: &Daemon, email: &str, person: &str) -> (u16, Value) {
    d.post(
        "/api/auth/register",
        &json!({"name": person, "email": email, "imageBase64": photo(person, 1)}),
    )
    .await
}

async fn sign_in(d: &Daemon, email: &str, person: &str, n: u32) -> (u16, Value) {
    d.post(
        "/api/auth/login",
        &json!({"email": email, "imageBase64": photo(person, n)}),
    )
    .await
}

async fn rotate(d: &Daemon, refresh: &str) -> (u16, Value) {
    d.post("/api/auth/refresh-token", &json!({"refreshToken": refresh}))
        .await
}

fn refresh_of(body: &Value) -> String {
    common::tokens(body).refresh
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockout_and_a_replayed_refresh_token_hold_on_every_instance() {
    let Some((inst, env)) = cluster("cluster_hold") else {
        return;
    };
    let [a, b, c] = ["a", "b", "c"].map(|n| start(&inst, &env, n, &[]));

    // Each lists all three from their heartbeats (the first is written at
    // start; the console's `instances` shows the same list).
    let pids: std::collections::BTreeSet<u32> = [&a, &b, &c].iter().map(|d| d.child.id()).collect();
    for name in ["a", "b", "c"] {
        let admin = arclock_console::Client::new(inst.path(&format!("admin-{name}.sock")));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let listed = loop {
            let list = admin.instances().await.unwrap();
            let alive: std::collections::BTreeSet<u32> =
                list.iter().filter(|i| i.alive).map(|i| i.pid).collect();
            if alive == pids || std::time::Instant::now() > deadline {
                break list;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        let alive: std::collections::BTreeSet<u32> =
            listed.iter().filter(|i| i.alive).map(|i| i.pid).collect();
        assert_eq!(alive, pids, "instance {name} lists {listed:?}");
        assert_eq!(listed.iter().filter(|i| i.this).count(), 1);
    }

    // A lockout earned on A.
    let (s, body) = register(&a, "ada@example.org", "Aaron_Peirsol").await;
    assert_eq!(s, 201, "{body}");
    for _ in 0..3 {
        let (s, _) = sign_in(&a, "ada@example.org", "Adam_Sandler", 1).await;
        assert_eq!(s, 401);
    }
    for d in [&b, &c] {
        let (s, body) = sign_in(d, "ada@example.org", "Aaron_Peirsol", 2).await;
        assert_eq!(s, 429, "the right face got through elsewhere: {body}");
    }

    // A refresh token rotated on A and replayed on B: the family is revoked
    // everywhere, so the token A handed out next is dead on C too.
    let (s, body) = register(&b, "bob@example.org", "Al_Pacino").await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = sign_in(&c, "bob@example.org", "Al_Pacino", 2).await;
    assert_eq!(s, 200, "{body}");
    let first = refresh_of(&body);
    let (s, body) = rotate(&a, &first).await;
    assert_eq!(s, 200, "{body}");
    let second = refresh_of(&body);
    let (s, _) = rotate(&b, &first).await;
    assert_eq!(s, 401, "a reused refresh token was accepted");
    let (s, _) = rotate(&c, &second).await;
    assert_eq!(s, 401, "the family outlived the reuse on another instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_under_load_loses_no_account_and_no_session() {
    let Some((inst, env)) = cluster("cluster_kill") else {
        return;
    };
    let daemons: Vec<std::sync::Arc<Daemon>> = ["a", "b", "c"]
        .map(|n| std::sync::Arc::new(start(&inst, &env, n, &[])))
        .into();
    let people = common::people(27);
    let b_pid = daemons[1].child.id();
    let b_acks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));

    // Each instance registers and signs in its nine people one after the
    // other; B is killed (SIGKILL) once it has acknowledged two, with its
    // third in flight.
    let mut tasks = Vec::new();
    for (n, d) in daemons.iter().enumerate() {
        let d = std::sync::Arc::clone(d);
        let mine: Vec<String> = people.iter().skip(n).step_by(3).cloned().collect();
        let acks = std::sync::Arc::clone(&b_acks);
        tasks.push(tokio::spawn(async move {
            let (mut acknowledged, mut failed) = (Vec::new(), 0);
            for person in mine {
                let email = format!("{}@example.org", person.to_lowercase());
                // The enrolment photo for both: some second photos fail the
                // pose gate, which is not what this test is about.
                let body =
                    json!({"name": person, "email": email, "imageBase64": photo(&person, 1)});
                let post = |path: &str, body: Value| {
                    let r = d.client.post(format!("{}{path}", d.url)).json(&body).send();
                    async move { r.await.ok()?.json::<Value>().await.ok() }
                };
                let Some(reg) = post("/api/auth/register", body).await else {
                    failed += 1;
                    continue;
                };
                if reg["success"] != true {
                    continue; // refused (a photo the PAD gate doubts): not acknowledged
                }
                if n == 1 {
                    acks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                let body = json!({"email": email, "imageBase64": photo(&person, 1)});
                let session = post("/api/auth/login", body).await.map(|a| refresh_of(&a));
                acknowledged.push((email, person, session));
            }
            (acknowledged, failed)
        }));
    }
    while b_acks.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    nix_kill(b_pid);
    let mut acknowledged = Vec::new();
    let mut failed_on_b = 0;
    for (n, t) in tasks.into_iter().enumerate() {
        let (acked, failed) = t.await.unwrap();
        assert!(n == 1 || failed == 0, "a survivor failed a request");
        if n == 1 {
            failed_on_b = failed;
        }
        acknowledged.extend(acked);
    }
    assert!(failed_on_b > 0, "B was not killed under load");
    assert!(acknowledged.len() >= 12, "{}", acknowledged.len());
    // Every account acknowledged signs in on a survivor, and every session
    // handed out rotates there.
    let (a, c) = (&daemons[0], &daemons[2]);
    for (email, person, session) in &acknowledged {
        let (s, body) = sign_in(a, email, person, 1).await;
        assert_eq!(s, 200, "{email} lost: {body}");
        if let Some(refresh) = session {
            let (s, body) = rotate(c, refresh).await;
            assert_eq!(s, 200, "{email}'s session lost: {body}");
        }
    }
}

/// SIGKILL, as a crash or the OOM killer would.
fn nix_kill(pid: u32) {
    let out = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(out.success());
}

/// The console on one instance sees the whole service: the live log follows
/// what every daemon writes (each entry once, naming its writer), and the
/// instance list carries each daemon's counters, which the console sums.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_console_follows_the_log_and_the_counters_of_every_instance() {
    use std::time::{Duration, Instant};
    let Some((inst, env)) = cluster("cluster_console") else {
        return;
    };
    let [a, b, c] = ["a", "b", "c"].map(|n| start(&inst, &env, n, &[]));
    let admin = arclock_console::Client::new(inst.path("admin-a.sock"));
    // Which instance id each daemon is, from the list (the first heartbeat is
    // written at start).
    let deadline = Instant::now() + Duration::from_secs(10);
    let ids = loop {
        let list = admin.instances().await.unwrap();
        let id_of = |d: &Daemon| {
            list.iter()
                .find(|i| i.pid == d.child.id())
                .map(|i| i.id.clone())
        };
        if let [Some(ia), Some(ib), Some(ic)] = [&a, &b, &c].map(id_of) {
            break [ia, ib, ic];
        }
        assert!(Instant::now() < deadline, "not all three listed: {list:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let mut live = admin
        .stream(&arclock_console::LogQuery::default())
        .await
        .unwrap();
    let (s, body) = register(&b, "eve@example.org", "Al_Pacino").await;
    assert_eq!(s, 201, "{body}");
    let (s, _) = sign_in(&c, "eve@example.org", "Adam_Sandler", 1).await;
    assert_eq!(s, 401);
    let (s, body) = sign_in(&a, "eve@example.org", "Al_Pacino", 2).await;
    assert_eq!(s, 200, "{body}");

    // What A's stream shows within a few seconds: A's own entry at once, B's
    // and C's from the store.
    let want = [
        ("register", "success", &ids[1]),
        ("login", "failure", &ids[2]),
        ("login", "success", &ids[0]),
    ];
    let mut seen = Vec::new();
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(500), live.next()).await
        else {
            continue;
        };
        if let arclock_console::model::StreamEvent::Log { entry } = ev.unwrap() {
            seen.push((
                entry.action.clone(),
                entry.outcome.clone(),
                entry.instance.clone().unwrap_or_default(),
                entry.id.clone(),
            ));
        }
    }
    for (action, outcome, instance) in want {
        let n = seen
            .iter()
            .filter(|(a, o, i, _)| a == action && o == outcome && i == instance)
            .count();
        assert_eq!(n, 1, "{action} {outcome} by {instance}: {seen:?}");
    }
    assert_eq!(seen.len(), 3, "nothing else, nothing twice: {seen:?}");

    // The counters: B's and C's from their heartbeats (every 5 s), A's own
    // now; the console's sum is over the three.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = admin.instances().await.unwrap();
        let load = |id: &str| {
            list.iter()
                .find(|i| i.id == id)
                .map(|i| i.load)
                .unwrap_or_default()
        };
        let (la, lb, lc) = (load(&ids[0]), load(&ids[1]), load(&ids[2]));
        if la.accepts == 1 && lc.rejects == 1 && lb.requests >= 1 {
            assert_eq!((la.rejects, lb.accepts + lb.rejects, lc.accepts), (0, 0, 0));
            let total: u64 = list.iter().map(|i| i.load.accepts + i.load.rejects).sum();
            assert_eq!(total, 2, "{list:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counters not carried by the heartbeats: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_each_instances_own_share() {
    let Some((inst, env)) = cluster("cluster_rate") else {
        return;
    };
    // `[limits] auth = 4` on each: one address gets 4 a window from each
    // instance, 12 from three (the documented division: configure the
    // cluster's quota divided by the number of instances).
    let limit = [("ARCLOCK_LIMITS_AUTH", "4")];
    let [a, b, c] = ["a", "b", "c"].map(|n| start(&inst, &env, n, &limit));
    let mut passed = 0;
    for d in [&a, &b, &c] {
        for i in 0..6 {
            let (s, _) = rotate(d, "not-a-token").await;
            if s == 429 {
                assert!(i >= 4, "refused before the instance's share was used");
            } else {
                passed += 1;
            }
        }
    }
    assert_eq!(passed, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_on_one_instance_reaches_the_others_within_the_cache_time() {
    let Some((inst, env)) = cluster("cluster_kek") else {
        return;
    };
    let database = env
        .iter()
        .find(|(k, _)| k == "ARCLOCK_STORE_MONGODB_DATABASE")
        .map(|(_, v)| v.clone())
        .unwrap();
    let [a, b, c] = ["a", "b", "c"].map(|n| start(&inst, &env, n, &[]));
    let keys = mongodb::Client::with_uri_str(common::mongo_uri().unwrap())
        .await
        .unwrap()
        .database(&database)
        .collection::<mongodb::bson::Document>("wrapped_keys");
    let version_of = |id: String| {
        let keys = keys.clone();
        async move {
            let doc = keys
                .find_one(mongodb::bson::doc! {"_id": id})
                .await
                .unwrap()
                .unwrap();
            match doc.get("kek_version") {
                Some(mongodb::bson::Bson::Int64(v)) => *v,
                Some(mongodb::bson::Bson::Int32(v)) => i64::from(*v),
                other => panic!("kek_version is {other:?}"),
            }
        }
    };
    let mut people = common::people(40).into_iter();
    let mut enrolled = Vec::new();
    let mut enrol = async |d: &Daemon| loop {
        let person = people.next().expect("enough people");
        let email = format!("{}@example.org", person.to_lowercase());
        let (s, body) = register(d, &email, &person).await;
        if s == 201 {
            enrolled.push((email, person));
            break body["data"]["user"]["id"].as_str().unwrap().to_string();
        }
    };
    // B and C wrap with v1 and have cached it.
    assert_eq!(version_of(enrol(&b).await).await, 1);
    assert_eq!(version_of(enrol(&c).await).await, 1);

    let admin = arclock_console::Client::new(inst.path("admin-a.sock"));
    let rotation = admin.rotate_kek().await.unwrap();
    assert_eq!(rotation.version, 2);
    assert_eq!(
        version_of(enrol(&a).await).await,
        2,
        "A wraps with its own new KEK"
    );
    let rotated = std::time::Instant::now();
    for d in [&b, &c] {
        loop {
            if version_of(enrol(d).await).await == 2 {
                break;
            }
            assert!(
                rotated.elapsed() < std::time::Duration::from_secs(15),
                "another instance still wraps with the old KEK after 15 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
    eprintln!(
        "B and C wrap with v2 {:?} after the rotation",
        rotated.elapsed()
    );
    // The console on A sees it too: each heartbeat (every 5 s) names the
    // version its instance wraps with.
    let seen_by_all = std::time::Instant::now();
    loop {
        let list = admin.instances().await.unwrap();
        let keks: Vec<Option<u32>> = list.iter().filter(|i| i.alive).map(|i| i.kek).collect();
        if keks == [Some(2); 3] {
            break;
        }
        assert!(
            seen_by_all.elapsed() < std::time::Duration::from_secs(12),
            "the instance list does not show v2 everywhere: {list:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    // Retirement on A: it waits out the other instances' cache, moves
    // every key (whoever wrapped it) to v3 and destroys v1 and v2; every
    // account still signs in on B and C, whose cached handles went stale.
    let retired = admin.retire_keks().await.unwrap();
    assert_eq!((retired.version, retired.destroyed), (3, vec![1, 2]));
    assert_eq!(retired.tally.failed, 0);
    assert_eq!(admin.health().await.unwrap().keys.kek_versions, vec![3]);
    assert_eq!(version_of(enrol(&b).await).await, 3);
    for (i, (email, person)) in enrolled.iter().enumerate() {
        let d = if i % 2 == 0 { &b } else { &c };
        assert_eq!(sign_in(d, email, person, 1).await.0, 200, "{email}");
    }
}
