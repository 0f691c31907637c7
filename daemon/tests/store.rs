//! The storage contract, run against the embedded SQLite store always and
//! against MongoDB whenever `ARCLOCK_TEST_MONGODB_URI` is set (`make test` starts
//! the nx-27017 wire-protocol server and sets it; with
//! `ARCLOCK_TEST_MONGODB_REQUIRED=1` a missing URI fails instead of skipping).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use std::path::PathBuf;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arclock_hsm::WrappedKey;
use arclockd::identity::{Email, Name, UserId};
use arclockd::store::prelude::*;
use arclockd::store::{
    Action, AuthLog, Credentials, EmailKey, EmbeddedStore, FailureOutcome, LockPolicy, LogCursor,
    LogFilter, MongoStore, NewFamily, NewUser, Outcome, Reservation, Rotate, Rotation,
    RotationSync, Store, StoreError, StoredChallenge, StoredInvite, StoredKey, Subject, Template,
    User, UserStatus,
};
use common::{contains_window, mongo_uri};

const NOW: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;

static DB_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh database of each backend for one test.
enum Backend {
    Embedded(tempfile::TempDir),
    Mongo(String),
}

async fn open(backend: &Backend) -> Arc<dyn Store> {
    match backend {
        Backend::Embedded(dir) => Arc::new(EmbeddedStore::open(&dir.path().join("a.db")).unwrap()),
        Backend::Mongo(db) => Arc::new(MongoStore::open(&mongo_uri().unwrap(), db).await.unwrap()),
    }
}

fn fresh_mongo_db(test: &str) -> String {
    format!(
        "t{}_{}_{}",
        std::process::id(),
        DB_SEQ.fetch_add(1, Ordering::Relaxed),
        &test[..test.len().min(20)]
    )
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod on_embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let b = super::Backend::Embedded(tempfile::tempdir().unwrap());
                    super::$case(&b, super::open(&b).await).await;
                }
            )*
        }
        mod on_mongodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if super::mongo_uri().is_none() {
                        return;
                    }
                    let b = super::Backend::Mongo(super::fresh_mongo_db(stringify!($case)));
                    super::$case(&b, super::open(&b).await).await;
                }
            )*
        }
    };
}

contract!(
    registration_round_trip,
    unique_email_under_concurrent_registration,
    lockout_counts_locks_and_expires,
    concurrent_failures_are_all_counted,
    reservations_hold_the_limit_under_concurrency,
    a_sign_in_reserves_and_settles_its_subjects_at_once,
    instances_announce_themselves_and_age_out,
    logs_name_their_instance_and_leave_one_out,
    refresh_rotation_race_revokes_the_family,
    a_rotation_checks_its_claims_and_logs_in_the_same_call,
    deletion_shreds_everything_but_an_anonymous_log,
    logs_page_newest_first_and_filter,
    nothing_plaintext_reaches_the_store,
    challenges_are_single_use_and_expire,
    invites_are_single_use_and_expire,
    audit_chain_links_concurrent_appends,
);

/// The audit chain under concurrency: sixteen appends at once (several
/// daemons on one database) get the numbers 1..=16, each linked to the one
/// before; a seal is kept once.
async fn audit_chain_links_concurrent_appends(_: &Backend, s: Arc<dyn Store>) {
    use arclockd::store::audit::{GENESIS, chain_hash};
    use arclockd::store::{AuditEvent, AuditSeal};
    assert_eq!(s.audit_head().await.unwrap(), None);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.append_audit(&AuditEvent {
                at: NOW + i,
                kind: "operator".into(),
                actor: format!("operator uid {i}"),
                subject: (i % 2 == 0).then(|| format!("u-{i}")),
                detail: "disable account: success".into(),
            })
            .await
            .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = s.audit_entries(0, 100).await.unwrap();
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=16).collect::<Vec<u64>>());
    let mut prev = GENESIS;
    for e in &all {
        assert_eq!(
            e.hash,
            chain_hash(&prev, e.seq, &e.event),
            "entry {}",
            e.seq
        );
        prev = e.hash;
    }
    assert_eq!(s.audit_head().await.unwrap().as_ref(), all.last());
    assert_eq!(s.audit_entries(10, 3).await.unwrap(), all[10..13].to_vec());
    let seal = AuditSeal {
        seq: 16,
        hash: prev,
        at: NOW,
        kid: "k1".into(),
        signature: vec![1, 2, 3],
    };
    s.put_audit_seal(&seal).await.unwrap();
    s.put_audit_seal(&seal).await.unwrap();
    assert_eq!(s.audit_seals().await.unwrap(), vec![seal]);
}

/// An invitation is taken once: of eight concurrent takes exactly one gets
/// it; one given back can be taken again; expired ones are purged.
async fn invites_are_single_use_and_expire(_: &Backend, s: Arc<dyn Store>) {
    let invite = |n: u8, email: Option<&str>, expires_at: i64| StoredInvite {
        code_hash: [n; 32],
        email: email.map(str::to_string),
        created_at: NOW,
        expires_at,
    };
    let live = invite(1, Some("ada@example.org"), NOW + MIN);
    s.put_invite(&live).await.unwrap();
    s.put_invite(&invite(2, None, NOW - 1)).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.take_invite(&[1; 32]).await.unwrap()
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        won.extend(t.await.unwrap());
    }
    assert_eq!(won, vec![live.clone()]);
    s.put_invite(&live).await.unwrap();
    assert_eq!(s.take_invite(&[1; 32]).await.unwrap(), Some(live));
    assert!(s.purge_expired(NOW).await.unwrap() >= 1);
    assert_eq!(s.take_invite(&[2; 32]).await.unwrap(), None, "purged");
}

/// A liveness challenge is answered once: of eight concurrent takes exactly
/// one gets it (several daemons on one database share it), and the expired
/// ones are purged.
async fn challenges_are_single_use_and_expire(_: &Backend, s: Arc<dyn Store>) {
    use arclock_face::liveness::Step;
    let challenge = |n: u8, expires_at: i64| StoredChallenge {
        id_hash: [n; 32],
        subject: "a1b2".into(),
        client_ip: n.is_multiple_of(2).then(|| "192.0.2.7".to_string()),
        steps: vec![Step::Front, Step::Left, Step::Right],
        expires_at,
    };
    let live = challenge(1, NOW + MIN);
    s.put_challenge(&live).await.unwrap();
    assert!(s.put_challenge(&live).await.is_err(), "an id stored twice");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(
            async move { s.take_challenge(&[1; 32]).await },
        ));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.extend(t.await.unwrap().unwrap());
    }
    assert_eq!(got, vec![live], "exactly one take gets it, intact");
    assert_eq!(s.take_challenge(&[1; 32]).await.unwrap(), None);

    s.put_challenge(&challenge(2, NOW - 1)).await.unwrap();
    s.put_challenge(&challenge(3, NOW + MIN)).await.unwrap();
    assert!(s.purge_expired(NOW).await.unwrap() >= 1);
    assert_eq!(s.take_challenge(&[2; 32]).await.unwrap(), None);
    assert_eq!(
        s.take_challenge(&[3; 32]).await.unwrap(),
        Some(challenge(3, NOW + MIN))
    );
}

fn user(email: &str) -> NewUser {
    let id = UserId::generate();
    NewUser {
        user: User {
            id,
            name: Name::parse("Ada Lovelace").unwrap(),
            email: Email::parse(email).unwrap(),
            status: UserStatus::Active,
            created_at: NOW,
        },
        credentials: Credentials {
            template: Template {
                model_id: "arcface_mobileface_128".into(),
                ciphertext: rand::random::<[u8; 32]>().repeat(20),
            },
            key: StoredKey {
                wrapped: WrappedKey {
                    binding: arclock_hsm::Binding::Credentials,
                    kek_version: 1,
                    nonce: rand::random(),
                    ciphertext: rand::random::<[u8; 48]>().to_vec(),
                },
                public_key: rand::random::<[u8; 33]>().to_vec(),
            },
        },
    }
}

fn log(user: Option<&UserId>, at: i64, outcome: Outcome) -> AuthLog {
    AuthLog {
        id: String::new(),
        at,
        user_id: user.cloned(),
        action: Action::Login,
        outcome,
        reason: (outcome != Outcome::Success).then(|| "no match".to_string()),
        similarity_bucket: Some(3),
        client_ip: Some("192.0.2.7".into()),
        user_agent: Some("ArcLockApp/1.0".into()),
        instance: None,
    }
}

async fn registration_round_trip(_: &Backend, s: Arc<dyn Store>) {
    s.health().await.unwrap();
    let new = user("Ada@Example.org");
    s.register(&new).await.unwrap();
    let by_email = s
        .user_by_email(&Email::parse("ada@example.org").unwrap())
        .await
        .unwrap();
    assert_eq!(by_email.as_ref(), Some(&new.user));
    assert_eq!(
        s.user_by_id(&new.user.id).await.unwrap(),
        Some(new.user.clone())
    );
    assert_eq!(
        s.credentials(&new.user.id).await.unwrap(),
        Some(new.credentials.clone())
    );
    assert_eq!(
        s.user_by_email(&Email::parse("bob@example.org").unwrap())
            .await
            .unwrap(),
        None
    );

    let renamed = s
        .update_name(&new.user.id, &Name::parse("Ada King").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.name.as_str(), "Ada King");
    assert!(
        s.set_status(&new.user.id, UserStatus::Disabled)
            .await
            .unwrap()
    );
    assert_eq!(
        s.user_by_id(&new.user.id).await.unwrap().unwrap().status,
        UserStatus::Disabled
    );
    let mut key = new.credentials.key.clone();
    key.wrapped.kek_version = 2;
    assert!(s.replace_key(&new.user.id, &key).await.unwrap());
    assert_eq!(s.credentials(&new.user.id).await.unwrap().unwrap().key, key);

    let other = user("bob@example.org");
    s.register(&other).await.unwrap();
    let all = s.list_users(None, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    let after = s.list_users(Some(&all[0].id), 10).await.unwrap();
    assert_eq!(after, vec![all[1].clone()]);
}

/// One account per address, and per look-alike of an address (a Cyrillic
/// `а` for a Latin `a`, `rn` for `m`), also when both race.
async fn unique_email_under_concurrent_registration(_: &Backend, s: Arc<dyn Store>) {
    for round in 0..6 {
        let email = format!("race{round}@example.org");
        let twin = match round % 3 {
            0 => email.clone(),
            1 => email.replacen('a', "\u{0430}", 1),
            _ => format!("rnrace{round}@example.org"),
        };
        let first = if round % 3 == 2 {
            format!("mrace{round}@example.org")
        } else {
            email.clone()
        };
        let (a, b) = (user(&first), user(&twin));
        let (ra, rb) = tokio::join!(s.register(&a), s.register(&b));
        let wins = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {ra:?} {rb:?}");
        let loser = if ra.is_ok() { (&b, rb) } else { (&a, ra) };
        assert!(
            matches!(loser.1, Err(StoreError::EmailTaken)),
            "{:?}",
            loser.1
        );
        assert_eq!(
            s.credentials(&loser.0.user.id).await.unwrap(),
            None,
            "loser left credentials"
        );
    }
}

/// One attempt that fails: reserved (it must be granted), then failed.
async fn record_failure(
    s: &Arc<dyn Store>,
    subject: &Subject,
    at: i64,
    p: &LockPolicy,
) -> FailureOutcome {
    assert_eq!(
        s.reserve_attempt(subject, at, p).await.unwrap(),
        Reservation::Granted
    );
    s.fail_attempt(subject, at, p).await.unwrap()
}

/// Of 16 concurrent attempts at most `max_failures` are let through; a
/// released one gives its place back; when the reserved ones fail the
/// subject locks and every reservation is refused until then.
async fn reservations_hold_the_limit_under_concurrency(_: &Backend, s: Arc<dyn Store>) {
    let p = LockPolicy {
        max_failures: 5,
        window: 15 * MIN,
        lock_for: 15 * MIN,
    };
    let subject = Subject::Account(EmailKey::from_mac(&rand::random::<[u8; 16]>()));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (s, subject) = (s.clone(), subject.clone());
        tasks.push(tokio::spawn(async move {
            s.reserve_attempt(&subject, NOW, &p).await.unwrap()
        }));
    }
    let mut granted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Reservation::Granted => granted += 1,
            Reservation::Refused { until } => assert_eq!(until, NOW + 15 * MIN),
        }
    }
    assert_eq!(granted, 5);
    // One of them did not reach a comparison: its place goes back.
    s.release_attempt(&subject).await.unwrap();
    assert_eq!(
        s.reserve_attempt(&subject, NOW + 1, &p).await.unwrap(),
        Reservation::Granted
    );
    for i in 1..5 {
        assert_eq!(
            s.fail_attempt(&subject, NOW + 2, &p).await.unwrap(),
            FailureOutcome::Counted(i)
        );
    }
    assert_eq!(
        s.fail_attempt(&subject, NOW + 2, &p).await.unwrap(),
        FailureOutcome::LockedUntil(NOW + 2 + 15 * MIN)
    );
    assert_eq!(
        s.reserve_attempt(&subject, NOW + 3, &p).await.unwrap(),
        Reservation::Refused {
            until: NOW + 2 + 15 * MIN
        }
    );
}

/// One sign-in's subjects (its account, its address) are reserved all or
/// none: a refusal by the account leaves the address's place free. A
/// success settles them with its log entry: the account's failures are
/// forgotten, the address's place comes back, the entry is stored.
async fn a_sign_in_reserves_and_settles_its_subjects_at_once(_: &Backend, s: Arc<dyn Store>) {
    let small = |max_failures| LockPolicy {
        max_failures,
        window: 15 * MIN,
        lock_for: 15 * MIN,
    };
    let ip = Subject::Ip("192.0.2.77".into());
    let account = Subject::Account(EmailKey::from_mac(&rand::random::<[u8; 16]>()));
    // The account's two places are taken by attempts still running.
    for _ in 0..2 {
        assert_eq!(
            s.reserve_attempt(&account, NOW, &small(2)).await.unwrap(),
            Reservation::Granted
        );
    }
    let asks = [(ip.clone(), small(1)), (account.clone(), small(2))];
    assert_eq!(
        s.reserve_attempts(&asks, NOW).await.unwrap(),
        Reservation::Refused {
            until: NOW + 15 * MIN
        }
    );
    // The address (asked first) kept its one place.
    assert_eq!(
        s.reserve_attempt(&ip, NOW, &small(1)).await.unwrap(),
        Reservation::Granted
    );
    s.release_attempt(&ip).await.unwrap();

    // A fresh account with one failure on record signs in.
    let account = Subject::Account(EmailKey::from_mac(&rand::random::<[u8; 16]>()));
    assert_eq!(
        record_failure(&s, &account, NOW, &small(3)).await,
        FailureOutcome::Counted(1)
    );
    let asks = [(account.clone(), small(3)), (ip.clone(), small(1))];
    assert_eq!(
        s.reserve_attempts(&asks, NOW + 1).await.unwrap(),
        Reservation::Granted
    );
    assert!(
        matches!(
            s.reserve_attempt(&ip, NOW + 1, &small(1)).await.unwrap(),
            Reservation::Refused { .. }
        ),
        "the batch took the address's place"
    );
    let user = UserId::generate();
    let entry = log(Some(&user), NOW + 2, Outcome::Success);
    s.settle_success(&[account.clone(), ip.clone()], &entry)
        .await
        .unwrap();
    // Failures forgotten: the full budget of three is there again.
    for _ in 0..3 {
        assert_eq!(
            s.reserve_attempt(&account, NOW + 3, &small(3))
                .await
                .unwrap(),
            Reservation::Granted
        );
    }
    assert_eq!(
        s.reserve_attempt(&ip, NOW + 3, &small(1)).await.unwrap(),
        Reservation::Granted
    );
    let page = s
        .logs(&LogFilter {
            user_id: Some(user),
            limit: 10,
            ..LogFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].outcome, Outcome::Success);
}

/// Heartbeats: a second beat moves `seen_at` (not the start) and carries
/// the instance's newest counters, a listing keeps only instances seen since
/// its bound, and a week-old one is gone.
async fn instances_announce_themselves_and_age_out(_: &Backend, s: Arc<dyn Store>) {
    let beat = |id: &str, started_at, seen_at| arclockd::store::InstanceBeat {
        id: id.into(),
        host: "node1".into(),
        pid: 4242,
        version: "0.1.0".into(),
        started_at,
        seen_at,
        load: arclockd::store::Load {
            requests: u64::try_from(seen_at - started_at).unwrap_or(0),
            server_errors: 1,
            accepts: 2,
            rejects: 3,
            locked: 4,
            lockouts: 5,
        },
        kek: (id == "a").then_some(7),
    };
    s.heartbeat(&beat(
        "old",
        NOW - 9 * 24 * 3600 * 1000,
        NOW - 8 * 24 * 3600 * 1000,
    ))
    .await
    .unwrap();
    s.heartbeat(&beat("a", NOW, NOW)).await.unwrap();
    s.heartbeat(&beat("b", NOW + 1, NOW + 1)).await.unwrap();
    s.heartbeat(&beat("a", NOW, NOW + 5000)).await.unwrap();
    let all = s.instances(0).await.unwrap();
    assert_eq!(
        all.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"],
        "the week-old instance is forgotten"
    );
    assert_eq!(all[0], beat("a", NOW, NOW + 5000), "the newest counters");
    assert_eq!(all[0].load.requests, 5000);
    let recent = s.instances(NOW + 2).await.unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].id, "a");
}

/// Each entry keeps the instance that wrote it, and a listing can leave one
/// instance out (the live log's look at what the others wrote); entries
/// from before instances were recorded are never left out.
async fn logs_name_their_instance_and_leave_one_out(_: &Backend, s: Arc<dyn Store>) {
    let by = |instance: Option<&str>, at| AuthLog {
        instance: instance.map(str::to_string),
        ..log(None, at, Outcome::Failure)
    };
    for (i, instance) in [Some("aaaa"), Some("bbbb"), None, Some("aaaa")]
        .into_iter()
        .enumerate()
    {
        s.append_log(&by(instance, NOW + i as i64)).await.unwrap();
    }
    let all = s
        .logs(&LogFilter {
            since: Some(NOW),
            limit: 10,
            ..LogFilter::default()
        })
        .await
        .unwrap();
    let writers = |p: &arclockd::store::LogPage| {
        p.entries
            .iter()
            .map(|l| l.instance.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        writers(&all),
        [
            Some("aaaa".into()),
            None,
            Some("bbbb".into()),
            Some("aaaa".into())
        ]
    );
    let others = s
        .logs(&LogFilter {
            since: Some(NOW),
            exclude_instance: Some("aaaa".into()),
            limit: 10,
            ..LogFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(writers(&others), [None, Some("bbbb".into())]);
}

async fn lockout_counts_locks_and_expires(_: &Backend, s: Arc<dyn Store>) {
    let p = LockPolicy {
        max_failures: 5,
        window: 15 * MIN,
        lock_for: 15 * MIN,
    };
    let acct = Subject::Account(EmailKey::from_mac(&rand::random::<[u8; 16]>()));
    for i in 1..5 {
        assert_eq!(
            record_failure(&s, &acct, NOW + i, &p).await,
            FailureOutcome::Counted(i as u32)
        );
    }
    assert_eq!(s.locked_until(&acct, NOW + 10).await.unwrap(), None);
    let until = NOW + 5 + 15 * MIN;
    assert_eq!(
        record_failure(&s, &acct, NOW + 5, &p).await,
        FailureOutcome::LockedUntil(until)
    );
    assert_eq!(s.locked_until(&acct, NOW + 6).await.unwrap(), Some(until));
    assert_eq!(
        s.lockouts(NOW + 6).await.unwrap(),
        vec![(acct.clone(), until)]
    );
    // Expiry: after `until` the account is free again, with a fresh count.
    assert_eq!(s.locked_until(&acct, until).await.unwrap(), None);
    assert!(s.lockouts(until + 1).await.unwrap().is_empty());
    assert_eq!(
        record_failure(&s, &acct, until + 1, &p).await,
        FailureOutcome::Counted(1)
    );

    // Failures spread wider than the window never lock.
    let ip = Subject::Ip("198.51.100.9".into());
    for i in 0..8 {
        let out = record_failure(&s, &ip, NOW + i * 16 * MIN, &p).await;
        assert_eq!(out, FailureOutcome::Counted(1));
    }
    // An operator unlock lifts a lockout; a success clears the count.
    for i in 0..5 {
        record_failure(&s, &ip, NOW + 200 * MIN + i, &p).await;
    }
    assert!(
        s.locked_until(&ip, NOW + 200 * MIN + 10)
            .await
            .unwrap()
            .is_some()
    );
    assert!(s.unlock(&ip).await.unwrap());
    assert_eq!(
        s.locked_until(&ip, NOW + 200 * MIN + 10).await.unwrap(),
        None
    );
    assert!(!s.unlock(&ip).await.unwrap());
    record_failure(&s, &acct, until + 2, &p).await;
    s.clear_failures(&acct).await.unwrap();
    assert_eq!(
        record_failure(&s, &acct, until + 3, &p).await,
        FailureOutcome::Counted(1)
    );
    // Expired state is purged.
    assert!(s.purge_expired(NOW + 10_000 * MIN).await.unwrap() >= 1);
}

async fn concurrent_failures_are_all_counted(_: &Backend, s: Arc<dyn Store>) {
    let p = LockPolicy {
        max_failures: 1000,
        window: 15 * MIN,
        lock_for: MIN,
    };
    let subject = Subject::Account(EmailKey::from_mac(&rand::random::<[u8; 16]>()));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (s, subject) = (s.clone(), subject.clone());
        tasks.push(tokio::spawn(async move {
            record_failure(&s, &subject, NOW + i, &p).await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        record_failure(&s, &subject, NOW + 20, &p).await,
        FailureOutcome::Counted(11)
    );
}

async fn refresh_rotation_race_revokes_the_family(_: &Backend, s: Arc<dyn Store>) {
    let u = user("refresh@example.org");
    s.register(&u).await.unwrap();
    let family = |id: &str, h: [u8; 32], exp: i64| NewFamily {
        id: id.into(),
        user_id: u.user.id.clone(),
        token_hash: h,
        created_at: NOW,
        expires_at: exp,
    };
    // Normal rotation: h0 -> h1 -> h2.
    s.create_family(&family("fam-a", [0; 32], NOW + 7 * 24 * 60 * MIN))
        .await
        .unwrap();
    assert!(matches!(
        s.rotate_refresh(Rotate::new(&[0; 32], &[1; 32], NOW))
            .await
            .unwrap(),
        Rotation::Rotated { .. }
    ));
    assert!(matches!(
        s.rotate_refresh(Rotate::new(&[1; 32], &[2; 32], NOW))
            .await
            .unwrap(),
        Rotation::Rotated { .. }
    ));
    // Replaying h0 is reuse: the family dies, h2 with it.
    match s
        .rotate_refresh(Rotate::new(&[0; 32], &[3; 32], NOW))
        .await
        .unwrap()
    {
        Rotation::Reused { user_id, family_id } => {
            assert_eq!((user_id, family_id.as_str()), (u.user.id.clone(), "fam-a"));
        }
        other => panic!("replay gave {other:?}"),
    }
    assert_eq!(
        s.rotate_refresh(Rotate::new(&[2; 32], &[4; 32], NOW))
            .await
            .unwrap(),
        Rotation::Invalid
    );
    assert_eq!(
        s.rotate_refresh(Rotate::new(&[9; 32], &[5; 32], NOW))
            .await
            .unwrap(),
        Rotation::Invalid
    );

    // Two concurrent uses of one token: one rotates, the other revokes.
    for round in 0..5u8 {
        let h0 = [10 + round; 32];
        s.create_family(&family(&format!("race-{round}"), h0, NOW + MIN))
            .await
            .unwrap();
        let (n1, n2) = ([100 + round; 32], [200 + round; 32]);
        let (a, b) = tokio::join!(
            s.rotate_refresh(Rotate::new(&h0, &n1, NOW)),
            s.rotate_refresh(Rotate::new(&h0, &n2, NOW))
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let rotated = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Rotation::Rotated { .. }))
            .count();
        let reused = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Rotation::Reused { .. }))
            .count();
        assert_eq!((rotated, reused), (1, 1), "round {round}: {a:?} {b:?}");
        for next in [[100 + round; 32], [200 + round; 32]] {
            assert_eq!(
                s.rotate_refresh(Rotate::new(&next, &[250; 32], NOW))
                    .await
                    .unwrap(),
                Rotation::Invalid,
                "the family is revoked after reuse"
            );
        }
    }

    // Disabling the account revokes its families; enabling revives none.
    s.create_family(&family("fam-disabled", [70; 32], NOW + MIN))
        .await
        .unwrap();
    assert!(s.family_live("fam-disabled", NOW).await.unwrap());
    assert!(
        s.set_status(&u.user.id, UserStatus::Disabled)
            .await
            .unwrap()
    );
    assert!(s.set_status(&u.user.id, UserStatus::Active).await.unwrap());
    assert!(!s.family_live("fam-disabled", NOW).await.unwrap());
    assert_eq!(
        s.rotate_refresh(Rotate::new(&[70; 32], &[71; 32], NOW))
            .await
            .unwrap(),
        Rotation::Invalid
    );

    // Expiry and logout.
    s.create_family(&family("fam-b", [30; 32], NOW + MIN))
        .await
        .unwrap();
    assert_eq!(
        s.rotate_refresh(Rotate::new(&[30; 32], &[31; 32], NOW + MIN))
            .await
            .unwrap(),
        Rotation::Invalid
    );
    s.create_family(&family("fam-c", [40; 32], NOW + MIN))
        .await
        .unwrap();
    assert!(s.family_live("fam-c", NOW).await.unwrap());
    assert!(!s.family_live("fam-c", NOW + MIN).await.unwrap(), "expired");
    assert!(s.revoke_family_of(&[40; 32]).await.unwrap());
    assert!(!s.revoke_family_of(&[40; 32]).await.unwrap());
    assert!(!s.family_live("fam-c", NOW).await.unwrap(), "revoked");
    s.create_family(&family("fam-d", [50; 32], NOW + MIN))
        .await
        .unwrap();
    assert!(s.revoke_family("fam-d").await.unwrap());
    assert!(!s.revoke_family("fam-d").await.unwrap());
    assert!(!s.family_live("fam-d", NOW).await.unwrap());
    assert!(!s.family_live("no-such-family", NOW).await.unwrap());
    assert_eq!(
        s.rotate_refresh(Rotate::new(&[50; 32], &[51; 32], NOW))
            .await
            .unwrap(),
        Rotation::Invalid
    );
    assert_eq!(
        s.rotate_refresh(Rotate::new(&[40; 32], &[41; 32], NOW))
            .await
            .unwrap(),
        Rotation::Invalid
    );
    assert!(s.purge_expired(NOW + 2 * MIN).await.unwrap() >= 1);
}

/// What the daemon's refresh asks of one store call: a row that names
/// another user or family than the token claims rotates nothing and logs
/// nothing; a rotation commits its log entry with it, reuse and refusals
/// none; a family whose account is no longer active is revoked, not rotated.
async fn a_rotation_checks_its_claims_and_logs_in_the_same_call(_: &Backend, s: Arc<dyn Store>) {
    let u = user("claims@example.org");
    let other = user("other@example.org");
    s.register(&u).await.unwrap();
    s.register(&other).await.unwrap();
    let family = |id: &str, owner: &UserId, h: [u8; 32]| NewFamily {
        id: id.into(),
        user_id: owner.clone(),
        token_hash: h,
        created_at: NOW,
        expires_at: NOW + MIN,
    };
    let mut entry = log(Some(&u.user.id), NOW, Outcome::Success);
    entry.action = Action::Refresh;
    let refreshes = || async {
        s.logs(&LogFilter {
            action: Some(Action::Refresh),
            limit: 100,
            ..LogFilter::default()
        })
        .await
        .unwrap()
        .entries
        .len()
    };
    // A presentation of `presented` claiming `claims`, logging `entry`.
    let rotate = |presented: [u8; 32], next: [u8; 32], claims: (&UserId, &str)| {
        let (s, entry) = (&s, &entry);
        let claims = (claims.0.clone(), claims.1.to_string());
        async move {
            s.rotate_refresh(Rotate {
                claims: Some((&claims.0, &claims.1)),
                entry: Some(entry),
                ..Rotate::new(&presented, &next, NOW)
            })
            .await
            .unwrap()
        }
    };
    s.create_family(&family("fam-u", &u.user.id, [1; 32]))
        .await
        .unwrap();

    // Claims of another user, then of another family: nothing moves.
    for claims in [(&other.user.id, "fam-u"), (&u.user.id, "fam-elsewhere")] {
        let r = rotate([1; 32], [2; 32], claims).await;
        assert_eq!(
            r,
            Rotation::Mismatch {
                user_id: u.user.id.clone(),
                family_id: "fam-u".into()
            }
        );
    }
    assert_eq!(refreshes().await, 0, "a mismatch logs nothing");
    assert!(
        s.family_live("fam-u", NOW).await.unwrap(),
        "a mismatch revokes nothing"
    );

    // The right claims rotate, and the entry is there with the rotation.
    let right = (&u.user.id, "fam-u");
    let r = rotate([1; 32], [2; 32], right).await;
    assert!(matches!(r, Rotation::Rotated { .. }), "{r:?}");
    assert_eq!(refreshes().await, 1);
    // Reuse revokes and logs nothing of its own here (the daemon logs it).
    let r = rotate([1; 32], [3; 32], right).await;
    assert!(matches!(r, Rotation::Reused { .. }), "{r:?}");
    assert_eq!(refreshes().await, 1);

    // A live family of an account disabled meanwhile: revoked, not rotated.
    assert!(
        s.set_status(&u.user.id, UserStatus::Disabled)
            .await
            .unwrap()
    );
    s.create_family(&family("fam-late", &u.user.id, [5; 32]))
        .await
        .unwrap();
    assert!(s.family_live("fam-late", NOW).await.unwrap());
    let r = rotate([5; 32], [6; 32], (&u.user.id, "fam-late")).await;
    assert_eq!(r, Rotation::Invalid);
    assert!(!s.family_live("fam-late", NOW).await.unwrap(), "revoked");
    assert_eq!(refreshes().await, 1, "a refusal logs nothing");
}

async fn deletion_shreds_everything_but_an_anonymous_log(b: &Backend, s: Arc<dyn Store>) {
    let u = user("gone@example.org");
    let keep = user("stays@example.org");
    s.register(&u).await.unwrap();
    s.register(&keep).await.unwrap();
    s.create_family(&NewFamily {
        id: "fam-gone".into(),
        user_id: u.user.id.clone(),
        token_hash: [7; 32],
        created_at: NOW,
        expires_at: NOW + MIN,
    })
    .await
    .unwrap();
    for i in 0..3 {
        s.append_log(&log(Some(&u.user.id), NOW + i, Outcome::Success))
            .await
            .unwrap();
    }
    s.append_log(&log(Some(&keep.user.id), NOW, Outcome::Success))
        .await
        .unwrap();
    let mut deletion = log(Some(&u.user.id), NOW + 10, Outcome::Success);
    deletion.action = Action::DeleteAccount;
    assert!(s.delete_user(&u.user.id, &deletion).await.unwrap());

    assert_eq!(s.user_by_id(&u.user.id).await.unwrap(), None);
    assert_eq!(s.user_by_email(&u.user.email).await.unwrap(), None);
    assert_eq!(s.credentials(&u.user.id).await.unwrap(), None);
    assert_eq!(
        s.rotate_refresh(Rotate::new(&[7; 32], &[8; 32], NOW))
            .await
            .unwrap(),
        Rotation::Invalid
    );
    assert!(!s.family_live("fam-gone", NOW).await.unwrap());
    let mine = s
        .logs(&LogFilter {
            user_id: Some(u.user.id.clone()),
            limit: 100,
            ..LogFilter::default()
        })
        .await
        .unwrap();
    assert!(
        mine.entries.is_empty(),
        "log entries still name the deleted user"
    );
    let all = s
        .logs(&LogFilter {
            limit: 100,
            ..LogFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.entries.len(), 5);
    let del: Vec<_> = all
        .entries
        .iter()
        .filter(|l| l.action == Action::DeleteAccount)
        .collect();
    assert_eq!(del.len(), 1);
    assert_eq!(del[0].user_id, None);
    // The other account is untouched; deleting twice is a no-op.
    assert!(s.credentials(&keep.user.id).await.unwrap().is_some());
    assert!(!s.delete_user(&u.user.id, &deletion).await.unwrap());

    // Nothing of the deleted user's template or key is left in the storage.
    let secrets = [
        u.credentials.template.ciphertext.clone(),
        u.credentials.key.wrapped.ciphertext.clone(),
        u.credentials.key.public_key.clone(),
    ];
    let dump = dump(b, &s).await;
    for secret in &secrets {
        assert!(
            !contains_window(&dump, secret, 16),
            "deleted data still on disk"
        );
    }
    assert!(
        contains_window(&dump, &keep.credentials.template.ciphertext, 16),
        "the scan must see live data (positive control)"
    );
}

async fn logs_page_newest_first_and_filter(_: &Backend, s: Arc<dyn Store>) {
    let (a, b) = (UserId::generate(), UserId::generate());
    for i in 0..25 {
        let outcome = if i % 5 == 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        s.append_log(&log(Some(&a), NOW + i * MIN, outcome))
            .await
            .unwrap();
    }
    // Two entries at the same millisecond: the cursor must not skip or repeat.
    s.append_log(&log(Some(&a), NOW + 24 * MIN, Outcome::Success))
        .await
        .unwrap();
    for i in 0..5 {
        let mut l = log(Some(&b), NOW + i, Outcome::Failure);
        l.client_ip = Some("203.0.113.5".into());
        s.append_log(&l).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut filter = LogFilter {
        user_id: Some(a.clone()),
        limit: 10,
        ..LogFilter::default()
    };
    loop {
        let page = s.logs(&filter).await.unwrap();
        seen.extend(page.entries.iter().map(|l| (l.at, l.id.clone())));
        match page.next {
            Some(c) => filter.before = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 26);
    let mut sorted = seen.clone();
    sorted.sort_by(|x, y| y.cmp(x));
    sorted.dedup();
    assert_eq!(sorted.len(), 26, "no entry repeated");
    assert!(seen.windows(2).all(|w| w[0].0 >= w[1].0), "newest first");

    let failures = s
        .logs(&LogFilter {
            user_id: Some(a.clone()),
            outcome: Some(Outcome::Failure),
            since: Some(NOW + 6 * MIN),
            limit: 100,
            ..LogFilter::default()
        })
        .await
        .unwrap();
    let ats: Vec<i64> = failures
        .entries
        .iter()
        .map(|l| (l.at - NOW) / MIN)
        .collect();
    assert_eq!(ats, vec![20, 15, 10]);
    let by_ip = s
        .logs(&LogFilter {
            client_ip: Some("203.0.113.5".into()),
            limit: 100,
            ..LogFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(by_ip.entries.len(), 5);
    assert!(by_ip.entries.iter().all(|l| l.user_id.as_ref() == Some(&b)));
    assert_eq!(by_ip.entries[0].similarity_bucket, Some(3));

    // A well-formed cursor this backend never issued (the other backend's id
    // shape) pages from its time, never fails.
    for id in ["ffffffffffffffffffffffff", "999"] {
        let foreign = s
            .logs(&LogFilter {
                user_id: Some(a.clone()),
                before: LogCursor::decode(&format!("{}.{id}", NOW + 20 * MIN)),
                limit: 100,
                ..LogFilter::default()
            })
            .await
            .unwrap();
        assert!(foreign.entries.iter().all(|l| l.at <= NOW + 20 * MIN));
        assert!(foreign.entries.len() >= 20, "{}", foreign.entries.len());
    }
    assert!(LogCursor::decode("5742.R9").is_none());
}

/// What an encrypted registration hands the store is only ciphertext: scan the
/// stored bytes for the plaintext embedding, the plaintext private key and the
/// photo, with the ciphertext itself as the positive control.
async fn nothing_plaintext_reaches_the_store(b: &Backend, s: Arc<dyn Store>) {
    let photo = common::lfw("Aaron_Peirsol", 1);
    let embedding: Vec<u8> = (0..128)
        .flat_map(|i| ((i as f32 * 0.37).sin() / 8.0).to_le_bytes())
        .collect();
    let private_key: [u8; 32] = rand::random();
    let mut u = user("scan@example.org");
    u.credentials.template.ciphertext = seal(&embedding);
    u.credentials.key.wrapped.ciphertext = seal(&private_key);
    s.register(&u).await.unwrap();
    s.append_log(&log(Some(&u.user.id), NOW, Outcome::Success))
        .await
        .unwrap();

    let dump = dump(b, &s).await;
    assert!(contains_window(
        &dump,
        &u.credentials.template.ciphertext,
        16
    ));
    assert!(
        !contains_window(&dump, &embedding, 16),
        "plaintext embedding at rest"
    );
    assert!(
        !contains_window(&dump, &private_key, 16),
        "plaintext private key at rest"
    );
    assert!(!contains_window(&dump, &photo, 64), "photo bytes at rest");
}

// ---- crash safety ------------------------------------------------------------

/// Child half of the crash test: registers users until killed. Not a test
/// of its own (ignored, so it never passes vacuously): the crash tests run
/// it in a child process with `--ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child half of the crash tests, which run it with --ignored"]
async fn crash_child() {
    let spec = std::env::var("ARCLOCK_TEST_CRASH_CHILD")
        .expect("run by the crash tests, with ARCLOCK_TEST_CRASH_CHILD set");
    let store: Arc<dyn Store> = match spec.split_once('=') {
        Some(("embedded", path)) => Arc::new(EmbeddedStore::open(&PathBuf::from(path)).unwrap()),
        Some(("mongodb", db)) => {
            Arc::new(MongoStore::open(&mongo_uri().unwrap(), db).await.unwrap())
        }
        _ => panic!("bad ARCLOCK_TEST_CRASH_CHILD {spec}"),
    };
    println!("child ready");
    for i in 0.. {
        store
            .register(&user(&format!("crash{i}@example.org")))
            .await
            .unwrap();
    }
}

/// Kills a registering process with SIGKILL mid-stream, several times, and
/// checks after each restart that every user exists completely or not at all.
async fn crash_during_registration(target: &str, reopen: impl AsyncFn() -> Arc<dyn Store>) {
    use std::process::{Command, Stdio};
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("ARCLOCK_TEST_CRASH_CHILD", target)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(700 + 150 * round)).await;
        // SIGKILL: no destructor, no flush, no commit.
        child.kill().unwrap();
        child.wait().unwrap();

        let s = reopen().await;
        let users = s.list_users(None, 100_000).await.unwrap();
        assert!(
            !users.is_empty(),
            "round {round}: the child registered nobody"
        );
        for u in &users {
            assert!(
                s.credentials(&u.id).await.unwrap().is_some(),
                "round {round}: user {} without template or key",
                u.id
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_survives_sigkill_during_registration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let target = format!("embedded={}", path.display());
    let p2 = path.clone();
    crash_during_registration(&target, async || {
        Arc::new(EmbeddedStore::open(&p2).unwrap()) as Arc<dyn Store>
    })
    .await;
    // No orphans either: every template and key belongs to a user.
    let conn = rusqlite::Connection::open(&path).unwrap();
    for table in ["templates", "wrapped_keys"] {
        let orphans: i64 = conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM {table} WHERE user_id NOT IN (SELECT id FROM users)"
                ),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(orphans, 0, "{table}");
    }
}

/// A refresh rotation is answered before its commit is fsynced (the default,
/// `RotationSync::Deferred`), and the checkpoint thread fsyncs it within its
/// quarter second; a revocation, and any other write, is on disk when it is
/// answered. "On disk": no page of the write-ahead log is dirty or under
/// writeback in the page cache (cachestat(2)), so a power cut loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_rotations_are_fsynced_within_the_interval_and_revocations_at_once() {
    let Some((_dir, path, wal, s, u)) = watched_store("sync").await else {
        return;
    };
    let family = NewFamily {
        id: "fam-sync".into(),
        user_id: u.user.id.clone(),
        token_hash: [0; 32],
        created_at: NOW,
        expires_at: NOW + MIN,
    };
    s.create_family(&family).await.unwrap();
    let on_disk = |what: &str| assert_on_disk(&wal, what);
    on_disk("a new session's commit");
    let mut current = 0u8;
    // Rotates the current token; whether the log was left unsynced by it.
    let rotate = async |current: &mut u8| {
        let next = *current + 1;
        assert!(matches!(
            s.rotate_refresh(Rotate::new(&[*current; 32], &[next; 32], NOW))
                .await
                .unwrap(),
            Rotation::Rotated { .. }
        ));
        *current = next;
        unsynced_pages(&wal).unwrap() > 0
    };
    // A read transaction left open keeps the checkpoint from copying the
    // rotations into the database, and so from fsyncing the log on its
    // way: what makes them durable below is the thread's fsync of owed
    // commits, whatever readers do.
    let pin = pinned_snapshot(&path);
    // Deferred: the checkpoint thread may fsync between two rotations, so
    // one rotation in five answered with the log unsynced is enough.
    let mut deferred = 0;
    for _ in 0..5 {
        deferred += usize::from(rotate(&mut current).await);
    }
    assert!(deferred > 0, "every rotation waited for its fsync");
    let started = std::time::Instant::now();
    while unsynced_pages(&wal).unwrap() > 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "rotations still not on disk after 5 s (the checkpoint thread fsyncs every 250 ms)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    eprintln!("rotations on disk {:?} after the last", started.elapsed());
    drop(pin);
    // The next write of any other kind fsyncs, the deferred rotation with it;
    // then a replay revokes the family, on disk before it is answered.
    let mut checked = [false; 2];
    for _ in 0..20 {
        if !rotate(&mut current).await {
            continue;
        }
        if !checked[0] {
            s.append_log(&log(Some(&u.user.id), NOW, Outcome::Success))
                .await
                .unwrap();
            on_disk("a log entry after a deferred rotation");
            checked[0] = true;
            continue;
        }
        assert!(matches!(
            s.rotate_refresh(Rotate::new(&[0; 32], &[200; 32], NOW))
                .await
                .unwrap(),
            Rotation::Reused { .. }
        ));
        on_disk("a replay's revocation");
        checked[1] = true;
        break;
    }
    assert_eq!(checked, [true; 2], "no rotation left the log unsynced");
    assert_eq!(
        s.rotate_refresh(Rotate::new(&[current; 32], &[201; 32], NOW))
            .await
            .unwrap(),
        Rotation::Invalid,
        "the replayed family is revoked"
    );

    // `rotation_sync = "commit"`: every rotation on disk when answered.
    drop(s);
    let s = EmbeddedStore::open(&path)
        .unwrap()
        .rotation_sync(RotationSync::Commit);
    s.create_family(&NewFamily {
        id: "fam-commit".into(),
        token_hash: [100; 32],
        ..family
    })
    .await
    .unwrap();
    for i in 100..110u8 {
        s.rotate_refresh(Rotate::new(&[i; 32], &[i + 1; 32], NOW))
            .await
            .unwrap();
        on_disk(r#"with rotation_sync = "commit", a rotation"#);
    }
}

/// A reservation is answered before its fsync (nothing answered rests on it
/// alone), and every answer to its attempt, a failure, a success with its
/// session or a release, fsyncs it along with itself; with `rotation_sync =
/// "commit"` it is on disk when granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_reservations_reach_the_disk_with_their_attempts_answer() {
    let Some((_dir, path, wal, s, u)) = watched_store("reserve").await else {
        return;
    };
    let on_disk = |what: &str| assert_on_disk(&wal, what);
    let p = LockPolicy {
        max_failures: 1000,
        window: 15 * MIN,
        lock_for: 15 * MIN,
    };
    let subject = Subject::Account(EmailKey::from_mac(&rand::random::<[u8; 16]>()));
    let asks = [(subject.clone(), p), (Subject::Ip("192.0.2.9".into()), p)];
    let subjects: Vec<Subject> = asks.iter().map(|(s, _)| s.clone()).collect();
    let pin = pinned_snapshot(&path);
    let mut deferred = 0;
    for i in 0..12i64 {
        assert_eq!(
            s.reserve_attempts(&asks, NOW + i).await.unwrap(),
            Reservation::Granted
        );
        deferred += usize::from(unsynced_pages(&wal).unwrap() > 0);
        match i % 3 {
            0 => {
                s.fail_attempt(&subject, NOW + i, &p).await.unwrap();
                on_disk("a failure after its reservation");
            }
            1 => {
                let family = NewFamily {
                    id: format!("fam-reserve-{i}"),
                    user_id: u.user.id.clone(),
                    token_hash: [i as u8; 32],
                    created_at: NOW,
                    expires_at: NOW + MIN,
                };
                let entry = log(Some(&u.user.id), NOW + i, Outcome::Success);
                s.settle_sign_in(&subjects, &entry, &family).await.unwrap();
                on_disk("a success and its session after their reservation");
            }
            _ => {
                for subject in &subjects {
                    s.release_attempt(subject).await.unwrap();
                }
                on_disk("a release after its reservation");
            }
        }
    }
    assert!(deferred > 0, "every reservation waited for its fsync");
    drop(pin);

    drop(s);
    let s = EmbeddedStore::open(&path)
        .unwrap()
        .rotation_sync(RotationSync::Commit);
    for i in 0..5 {
        s.reserve_attempts(&asks, NOW + 100 + i).await.unwrap();
        on_disk(r#"with rotation_sync = "commit", a reservation"#);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_survives_sigkill_during_registration() {
    if mongo_uri().is_none() {
        return;
    }
    let db = fresh_mongo_db("crash");
    let target = format!("mongodb={db}");
    let db2 = db.clone();
    crash_during_registration(&target, async || {
        Arc::new(MongoStore::open(&mongo_uri().unwrap(), &db2).await.unwrap()) as Arc<dyn Store>
    })
    .await;
    // After `open` swept them, no template or key is without its user.
    let store = MongoStore::open(&mongo_uri().unwrap(), &db).await.unwrap();
    let users = store.list_users(None, 100_000).await.unwrap().len();
    for c in ["templates", "wrapped_keys"] {
        let n = store
            .database()
            .collection::<mongodb::bson::Document>(c)
            .count_documents(mongodb::bson::doc! {})
            .await
            .unwrap() as usize;
        assert_eq!(n, users, "{c}");
    }
}

// ---- helpers -----------------------------------------------------------------

/// An embedded store in a temporary directory with one account, its file
/// and its log's; `None` (SKIPPED) on a kernel without cachestat(2), which
/// [`assert_on_disk`] reads.
async fn watched_store(
    name: &str,
) -> Option<(tempfile::TempDir, PathBuf, PathBuf, EmbeddedStore, NewUser)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.db"));
    let wal = dir.path().join(format!("{name}.db-wal"));
    let s = EmbeddedStore::open(&path).unwrap();
    let u = user(&format!("{name}@example.org"));
    s.register(&u).await.unwrap();
    if unsynced_pages(&wal).is_none() {
        eprintln!("SKIPPED: this kernel has no cachestat(2) (Linux 6.5+)");
        return None;
    }
    Some((dir, path, wal, s, u))
}

/// Fails unless every page of the log `wal` is on the disk.
fn assert_on_disk(wal: &std::path::Path, what: &str) {
    assert_eq!(
        unsynced_pages(wal),
        Some(0),
        "{what} was answered before its fsync"
    );
}

/// A read transaction held open on the database at `path`: it keeps the
/// checkpoint thread from copying commits into the database, and so from
/// fsyncing the log on its way, so that what makes them durable is the
/// fsync under test.
fn pinned_snapshot(path: &std::path::Path) -> rusqlite::Connection {
    let pin = rusqlite::Connection::open(path).unwrap();
    pin.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        .unwrap();
    pin.execute_batch("BEGIN").unwrap();
    pin.query_row("SELECT count(*) FROM users", [], |_| Ok(()))
        .unwrap();
    pin
}

/// Pages of `file` in the page cache that are dirty or under writeback, so
/// not yet on the disk (cachestat(2)); `None` on a kernel without it.
#[allow(unsafe_code)] // one system call that libc does not wrap
fn unsynced_pages(file: &std::path::Path) -> Option<u64> {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        cache: u64,
        dirty: u64,
        writeback: u64,
        evicted: u64,
        recently_evicted: u64,
    }
    const SYS_CACHESTAT: libc::c_long = 451;
    let f = std::fs::File::open(file).unwrap();
    let range = Range { off: 0, len: 0 }; // to the end of the file
    let mut stat = Stat::default();
    // SAFETY: `range` and `stat` are live, `#[repr(C)]` and laid out as the
    // kernel's `struct cachestat_range` and `struct cachestat`; `f` is open.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            f.as_raw_fd(),
            &range as *const Range,
            &mut stat as *mut Stat,
            0u32,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSYS), "cachestat: {e}");
        return None;
    }
    Some(stat.dirty + stat.writeback)
}

/// AES-256-GCM under a throwaway key: stands in for ECIES / the HSM here.
fn seal(plain: &[u8]) -> Vec<u8> {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &rand::random::<[u8; 32]>()).unwrap());
    let mut buf = plain.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key([0; 12]),
        Aad::empty(),
        &mut buf,
    )
    .unwrap();
    buf
}

/// Every byte the backend stored: the SQLite files (database + WAL), or every
/// document of every collection as raw BSON.
async fn dump(b: &Backend, s: &Arc<dyn Store>) -> Vec<u8> {
    s.health().await.unwrap();
    match b {
        Backend::Embedded(dir) => {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                out.extend(std::fs::read(entry.unwrap().path()).unwrap());
            }
            out
        }
        Backend::Mongo(db) => common::mongo_documents(&mongo_uri().unwrap(), db)
            .await
            .into_iter()
            .flat_map(|(_, bytes)| bytes)
            .collect(),
    }
}
