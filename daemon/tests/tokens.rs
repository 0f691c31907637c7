//! The daemon's whole life on a PKCS#11 token other than the default
//! SoftHSM2: provisioned, a user registered and signed in, a session
//! refreshed, old KEKs retired. `make test` runs it on a software TPM 2.0
//! (`scripts/with-tpm.sh`), `make hsm-matrix` once per token
//! (`scripts/hsm-matrix.sh`), putting the outcome in the table.
//!
//! `ARCLOCK_TEST_PKCS11_MODULE` names the module; `ARCLOCK_TEST_PKCS11_PASS`
//! lists the variables the module reads (`KRYOPTIC_CONF`, ...), passed on
//! to the daemon from this process's environment. A token the script had to
//! initialise itself (opencryptoki: its PIN rules) comes with its user PIN
//! in `ARCLOCK_TEST_PKCS11_PIN` (a file) and perhaps its slot in
//! `ARCLOCK_TEST_PKCS11_SLOT`; the daemon then finds it instead of making one.
//!
//! The switch from RS256 to ES256 runs on the default SoftHSM2 token in
//! every `make test`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Daemon, Instance, lfw_base64 as photo};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_lives_on_the_token_named_by_the_environment() {
    let Ok(module) = std::env::var("ARCLOCK_TEST_PKCS11_MODULE") else {
        assert!(
            std::env::var_os("ARCLOCK_TEST_PKCS11_REQUIRED").is_none(),
            "ARCLOCK_TEST_PKCS11_REQUIRED is set but no token is named"
        );
        eprintln!(
            "SKIPPED: ARCLOCK_TEST_PKCS11_MODULE names no token (make test names a TPM \
             through scripts/with-tpm.sh, make hsm-matrix each of its tokens)"
        );
        return;
    };
    let passed: Vec<(String, String)> = std::env::var("ARCLOCK_TEST_PKCS11_PASS")
        .unwrap_or_default()
        .split(',')
        .filter(|n| !n.is_empty())
        .map(|n| (n.to_string(), std::env::var(n).unwrap_or_default()))
        .collect();
    let mut env: Vec<(&str, &str)> = passed
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.push(("ARCLOCK_HSM_MODULE", &module));
    let slot = std::env::var("ARCLOCK_TEST_PKCS11_SLOT").unwrap_or_default();
    if !slot.is_empty() {
        env.push(("ARCLOCK_HSM_SLOT", &slot));
    }
    let label = std::env::var("ARCLOCK_TEST_PKCS11_LABEL").unwrap_or_default();
    if !label.is_empty() {
        env.push(("ARCLOCK_HSM_TOKEN_LABEL", &label));
    }

    let inst = Instance::new();
    if let Ok(pin) = std::env::var("ARCLOCK_TEST_PKCS11_PIN") {
        std::fs::create_dir_all(inst.path("hsm")).unwrap();
        std::fs::copy(pin, inst.path("hsm/user.pin")).unwrap();
    }
    let out = inst
        .command()
        .envs(env.iter().copied())
        .arg("provision")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{}{err}", String::from_utf8_lossy(&out.stdout));
    // The first line of the panic is the matrix's cell: the error itself.
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(out.status.success(), "provision: {last}");
    let d = inst.start_with(&env);

    let (sign_in, body) = enrol_and_sign_in(&d).await;
    let refresh = body["data"]["tokens"]["refreshToken"].as_str().unwrap();
    let (s, body) = d
        .post("/api/auth/refresh-token", &json!({"refreshToken": refresh}))
        .await;
    assert_eq!(s, 200, "refresh: {body}");

    let admin = arclock_console::Client::new(inst.path("admin.sock"));
    // The token may hold keys from an earlier run (make test's TPM serves
    // the contract suite first): every older version goes.
    let older = admin.health().await.unwrap().keys.kek_versions;
    let retired = admin.retire_keks().await.expect("retire");
    assert_eq!(retired.destroyed, older, "retire");
    let (s, body) = d.post("/api/auth/login", &sign_in).await;
    assert_eq!(s, 200, "sign-in after retirement: {body}");
    let health = admin.health().await.unwrap();
    assert_eq!(health.public.dependencies["hsm"].status, "ok", "{health:?}");
    assert_eq!(
        health.keys.kek_versions,
        vec![older.last().unwrap() + 1],
        "{health:?}"
    );
    eprintln!(
        "signed in on {} {} (KEK versions {:?})",
        health.keys.manufacturer.as_deref().unwrap_or("?"),
        health.keys.model.as_deref().unwrap_or("?"),
        health.keys.kek_versions
    );
}

/// Registers Ada and signs her in with another photo: the sign-in request
/// (to send again) and its answer.
async fn enrol_and_sign_in(d: &Daemon) -> (serde_json::Value, serde_json::Value) {
    let email = "ada@example.org";
    let (s, body) = d
        .post(
            "/api/auth/register",
            &json!({"name": "Ada", "email": email, "imageBase64": photo("Aaron_Peirsol", 1)}),
        )
        .await;
    assert_eq!(s, 201, "register: {body}");
    let sign_in = json!({"email": email, "imageBase64": photo("Aaron_Peirsol", 2)});
    let (s, body) = d.post("/api/auth/login", &sign_in).await;
    assert_eq!(s, 200, "sign-in: {body}");
    (sign_in, body)
}

/// The JWS header of a token.
fn header(token: &str) -> serde_json::Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap()
}

/// An operator switches a running installation from RS256 to ES256: sets
/// `jwt_algorithm = "ES256"`, runs `arclockd provision` and restarts. Tokens
/// and sessions from before keep working (both keys are in the JWKS), new
/// ones are ES256, and the audit trail holds seals of both kinds, each
/// verified with its own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_to_es256_keeps_sessions_and_seals() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start();
    let (sign_in, body) = enrol_and_sign_in(&d).await;
    let common::Pair {
        access: before,
        refresh,
    } = common::tokens(&body);
    assert_eq!(header(&before)["alg"], "RS256");
    let admin = arclock_console::Client::new(inst.path("admin.sock"));
    admin.audit_seal().await.unwrap().expect("sealed");
    drop(d);

    let es256 = [("ARCLOCK_HSM_JWT_ALGORITHM", "ES256")];
    let out = inst
        .command()
        .envs(es256)
        .arg("provision")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("signing: ES256"),
        "{said}"
    );
    let d = inst.start_with(&es256);
    let (_, _, _, jwks) = d.get("/.well-known/jwks.json").await;
    let kinds: Vec<(&str, &str)> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["kty"].as_str().unwrap(), k["alg"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("RSA", "RS256"), ("EC", "ES256")], "{jwks}");
    assert_eq!(jwks["keys"][1]["crv"], "P-256");

    assert_eq!(
        d.profile_status(&before).await,
        200,
        "a token from before the switch"
    );
    let (s, body) = d.post("/api/auth/login", &sign_in).await;
    assert_eq!(s, 200, "sign-in: {body}");
    let after = common::tokens(&body).access;
    assert_eq!(header(&after)["alg"], "ES256");
    assert_eq!(header(&after)["kid"], jwks["keys"][1]["kid"]);
    assert_eq!(d.profile_status(&after).await, 200);
    let (s, body) = d
        .post("/api/auth/refresh-token", &json!({"refreshToken": refresh}))
        .await;
    assert_eq!(s, 200, "a session from before the switch: {body}");
    let refreshed = common::tokens(&body).access;
    assert_eq!(header(&refreshed)["alg"], "ES256");

    let admin = arclock_console::Client::new(inst.path("admin.sock"));
    admin.audit_seal().await.unwrap().expect("sealed");
    let v = admin.audit_verify().await.unwrap();
    assert_eq!((v.seals_verified, v.seals_unverifiable), (2, 0), "{v:?}");
    assert!(v.broken.is_none(), "{v:?}");
    let health = admin.health().await.unwrap();
    assert_eq!(health.keys.jwt_kids.len(), 2, "{health:?}");
    assert_eq!(health.keys.signing.as_deref(), Some("ES256"), "{health:?}");
}
