//! Embedded store throughput: registrations/s (each an fsync'd transaction),
//! verification reads/s (user by e-mail + credentials), and the log queries
//! behind the API and the console at 1M log rows.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use arclock_hsm::WrappedKey;
use arclockd::identity::{Email, Name, UserId};
use arclockd::store::prelude::*;
use arclockd::store::{
    Action, AuthLog, Checkpoints, Credentials, EmailKey, EmbeddedStore, LockPolicy, LogFilter,
    NewFamily, NewUser, Outcome, StoredKey, Subject, Template, User, UserStatus,
};

use crate::report::{Report, Samples, num};

const NOW: i64 = 1_800_000_000_000;
const HOUR: i64 = 3_600_000;

fn new_user(i: usize) -> Result<NewUser> {
    Ok(NewUser {
        user: User {
            id: UserId::generate(),
            name: Name::parse("Bench User").map_err(anyhow::Error::msg)?,
            email: Email::parse(&format!("user{i}@bench.example")).map_err(anyhow::Error::msg)?,
            status: UserStatus::Active,
            created_at: NOW,
        },
        credentials: Credentials {
            // Sizes of the real thing: ECIES over a 128-d f32 template, a
            // GCM-wrapped 32-byte key, a compressed secp256k1 public key.
            template: Template {
                model_id: "arcface_mobileface_128".into(),
                ciphertext: vec![0xA5; 65 + 16 + 16 + 512],
            },
            key: StoredKey {
                wrapped: WrappedKey {
                    binding: arclock_hsm::Binding::Credentials,
                    kek_version: 1,
                    nonce: [7; 12],
                    ciphertext: vec![0x5A; 48],
                },
                public_key: vec![2; 33],
            },
        },
    })
}

async fn timed<F, Fut>(n: usize, f: F) -> Result<(f64, Samples)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut s = Samples::default();
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        f(i).await?;
        s.push(t.elapsed());
    }
    Ok((n as f64 / start.elapsed().as_secs_f64(), s))
}

pub async fn run(report: &mut Report, dir: &Path, log_rows: usize) -> Result<()> {
    let path = dir.join("bench.db");
    let store = Arc::new(EmbeddedStore::open(&path)?);
    let users = 2000;
    report.table(
        "Embedded store (SQLite WAL, synchronous=FULL)",
        &format!(
            "On the machine's disk under a temporary directory; one caller at a time. \
             Log queries run after bulk-loading {log_rows} auth log rows over 10,000 users \
             and one year."
        ),
        &["operation", "ops/s", "median ms", "p95 ms"],
    );
    let mut ids = Vec::new();
    let (rate, s) = {
        let made: Vec<NewUser> = (0..users).map(new_user).collect::<Result<_>>()?;
        ids.extend(
            made.iter()
                .map(|u| (u.user.id.clone(), u.user.email.clone())),
        );
        let store = store.clone();
        timed(users, |i| {
            let (store, u) = (store.clone(), made[i].clone());
            async move { Ok(store.register(&u).await?) }
        })
        .await?
    };
    report.row(&[
        "registration (user + template + key, fsync'd)".into(),
        num(rate),
        num(s.median_ms()),
        num(s.p95_ms()),
    ]);
    let (rate, s) = timed(5000, |i| {
        let (store, (_, email)) = (store.clone(), ids[(i * 7919) % ids.len()].clone());
        async move {
            let u = store
                .user_by_email(&email)
                .await?
                .ok_or_else(|| anyhow::anyhow!("missing"))?;
            store
                .credentials(&u.id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("missing"))?;
            Ok(())
        }
    })
    .await?;
    report.row(&[
        "verification read (user by e-mail + credentials)".into(),
        num(rate),
        num(s.median_ms()),
        num(s.p95_ms()),
    ]);

    // Bulk-load the log table directly (one transaction), as a year of traffic.
    let load = Instant::now();
    let log_users: Vec<String> = (0..10_000)
        .map(|_| UserId::generate().to_string())
        .collect();
    {
        let mut conn = rusqlite::Connection::open(&path)?;
        let tx = conn.transaction()?;
        {
            let mut st = tx.prepare(
                "INSERT INTO auth_logs (at, user_id, action, outcome, reason, similarity_bucket, client_ip, user_agent)
                 VALUES (?1, ?2, 'login', ?3, NULL, 7, ?4, 'ArcLockApp/1.0')",
            )?;
            for i in 0..log_rows {
                let at = NOW - (i as i64 * 365 * 24 * HOUR / log_rows as i64);
                let outcome = if i % 10 == 0 { "failure" } else { "success" };
                let ip = format!("10.{}.{}.{}", i % 7, i % 13, i % 251);
                st.execute(rusqlite::params![
                    at,
                    log_users[(i * 31) % log_users.len()],
                    outcome,
                    ip
                ])?;
            }
        }
        tx.commit()?;
    }
    let load_s = load.elapsed().as_secs_f64();
    let queries: [(&str, LogFilter); 3] = [
        (
            "last 100 log entries of a user",
            LogFilter {
                user_id: None,
                limit: 100,
                ..LogFilter::default()
            },
        ),
        (
            "a user's failures in the last hour",
            LogFilter {
                outcome: Some(Outcome::Failure),
                since: Some(NOW - HOUR),
                limit: 100,
                ..LogFilter::default()
            },
        ),
        (
            "all failures in the last hour (console)",
            LogFilter {
                outcome: Some(Outcome::Failure),
                since: Some(NOW - HOUR),
                limit: 100,
                ..LogFilter::default()
            },
        ),
    ];
    for (qi, (name, filter)) in queries.into_iter().enumerate() {
        let (rate, s) = timed(500, |i| {
            let mut f = filter.clone();
            if qi < 2 {
                f.user_id = UserId::parse(&log_users[(i * 7) % log_users.len()]);
            }
            let store = store.clone();
            async move {
                store.logs(&f).await?;
                Ok(())
            }
        })
        .await?;
        report.row(&[
            format!("{name} ({log_rows} rows)"),
            num(rate),
            num(s.median_ms()),
            num(s.p95_ms()),
        ]);
    }
    report.end_table();
    report.para(&format!(
        "Bulk load of {log_rows} log rows took {load_s:.1} s. Registration cost is the fsync of \
         each commit: the figure is the disk's, not SQLite's. Database file: {:.1} MiB.",
        std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0
    ));
    drop(store);
    signin_writes(report, dir).await
}

/// The store's part of one successful sign-in, as the daemon asks for it:
/// both reservations (e-mail, address) in one commit, the account and its
/// credentials, then the settlement of both with the log entry and the new
/// refresh family in one commit (two commits).
async fn signin_sequence(store: &EmbeddedStore, user: &NewUser, i: usize) -> Result<()> {
    let policy = LockPolicy {
        max_failures: 1_000_000,
        window: 15 * 60 * 1000,
        lock_for: 15 * 60 * 1000,
    };
    let email = Subject::Account(EmailKey::from_mac(&<sha2::Sha256 as sha2::Digest>::digest(
        UserId::generate().as_str(),
    )));
    let ip = Subject::Ip(format!("10.0.{}.{}", i % 200, i % 250));
    store
        .reserve_attempts(&[(email.clone(), policy), (ip.clone(), policy)], NOW)
        .await?;
    store.user_by_email(&user.user.email).await?;
    store.credentials(&user.user.id).await?;
    let mut hash = [0u8; 32];
    hash[..8].copy_from_slice(&(i as u64).to_le_bytes());
    store
        .settle_sign_in(
            &[email, ip],
            &AuthLog {
                id: String::new(),
                at: NOW,
                user_id: Some(user.user.id.clone()),
                action: Action::VerifyFace,
                outcome: Outcome::Success,
                reason: None,
                similarity_bucket: Some(8),
                client_ip: Some("10.0.0.1".into()),
                user_agent: Some("ArcLockApp/1.0".into()),
                instance: None,
            },
            &NewFamily {
                id: format!("fam-{i}"),
                user_id: user.user.id.clone(),
                token_hash: hash,
                created_at: NOW,
                expires_at: NOW + HOUR,
            },
        )
        .await?;
    Ok(())
}

/// Issue 22: the tail of a sign-in's store work with SQLite's own
/// checkpoints (inside the commit that fills the log) against arclockd's
/// checkpoint thread, on the same disk in the same run.
async fn signin_writes(report: &mut Report, dir: &Path) -> Result<()> {
    const N: usize = 2000;
    report.table(
        "A successful sign-in's store work (SQLite WAL, synchronous=FULL)",
        &format!(
            "{N} sequences of what one successful sign-in asks of the embedded store (both \
             reservations in one commit, two reads, both settlements with the log entry and \
             the new refresh family in one: two fsync'd commits), one caller, a fresh database \
             each. `inline` is SQLite's default: the commit that takes the write-ahead \
             log past 1000 pages copies it into the database and fsyncs it, and its \
             request waits. `background` is \
             arclockd's: a thread of its own checkpoints four times a second."
        ),
        &[
            "checkpoints",
            "sequences/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "p99/p50",
        ],
    );
    let mut tails = Vec::new();
    for (label, mode) in [
        ("inline (SQLite's default)", Checkpoints::Inline),
        ("background (arclockd)", Checkpoints::Background),
    ] {
        let path = dir.join(format!("signin-{mode:?}.db"));
        let store = EmbeddedStore::open_with(&path, mode)?;
        let user = new_user(0)?;
        store.register(&user).await?;
        let (rate, s) = timed(N, |i| {
            let (store, user) = (&store, &user);
            async move { signin_sequence(store, user, i).await }
        })
        .await?;
        let ratio = s.quantile_ms(0.99) / s.median_ms();
        tails.push(s.quantile_ms(0.99));
        report.row(&[
            label.into(),
            num(rate),
            num(s.median_ms()),
            num(s.p95_ms()),
            num(s.quantile_ms(0.99)),
            num(s.quantile_ms(1.0)),
            num(ratio),
        ]);
        drop(store);
        let _ = std::fs::remove_file(&path);
    }
    report.end_table();
    report.para(&format!(
        "p99 of a sign-in's store work: background checkpoints = **{}x** inline ones.",
        num(tails[1] / tails[0])
    ));
    Ok(())
}
