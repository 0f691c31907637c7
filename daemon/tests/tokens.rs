//! The daemon's whole life on a PKCS#11 token other than the default
//! SoftHSM2: provisioned, a user registered and signed in, a session
//! refreshed, old KEKs retired. `make hsm-matrix` runs it once per token
//! (`scripts/hsm-matrix.sh`) and puts the outcome in the table; in
//! `make test` no token is named and it says so.
//!
//! `ARCLOCK_TEST_PKCS11_MODULE` names the module; `ARCLOCK_TEST_PKCS11_PASS`
//! lists the variables the module reads (`KRYOPTIC_CONF`, ...), passed on
//! to the daemon from this process's environment. A token the script had to
//! initialise itself (opencryptoki: its PIN rules) comes with its user PIN
//! in `ARCLOCK_TEST_PKCS11_PIN` (a file) and perhaps its slot in
//! `ARCLOCK_TEST_PKCS11_SLOT`; the daemon then finds it instead of making one.

mod common;

use common::{Instance, lfw_base64 as photo};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_lives_on_the_token_named_by_the_environment() {
    let Ok(module) = std::env::var("ARCLOCK_TEST_PKCS11_MODULE") else {
        eprintln!("SKIPPED: ARCLOCK_TEST_PKCS11_MODULE names no token (make hsm-matrix does)");
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
    let refresh = body["data"]["tokens"]["refreshToken"].as_str().unwrap();
    let (s, body) = d
        .post("/api/auth/refresh-token", &json!({"refreshToken": refresh}))
        .await;
    assert_eq!(s, 200, "refresh: {body}");

    let admin = arclock_console::Client::new(inst.path("admin.sock"));
    let retired = admin.retire_keks().await.expect("retire");
    assert_eq!(retired.destroyed, vec![1], "retire");
    let (s, body) = d.post("/api/auth/login", &sign_in).await;
    assert_eq!(s, 200, "sign-in after retirement: {body}");
    let health = admin.health().await.unwrap();
    assert_eq!(health.dependencies["hsm"].status, "ok", "{health:?}");
    assert_eq!(health.keys.kek_versions, vec![2], "{health:?}");
    eprintln!(
        "signed in on {} {} (KEK versions {:?})",
        health.keys.manufacturer.as_deref().unwrap_or("?"),
        health.keys.model.as_deref().unwrap_or("?"),
        health.keys.kek_versions
    );
}
