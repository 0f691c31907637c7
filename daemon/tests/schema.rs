//! The live daemon attacked from its own `/openapi.json` by schemathesis
//! (PyPI, hash-pinned, installed by `make setup`): generated valid and invalid
//! requests for every operation, over TLS on loopback, with a real bearer
//! token. Passes only with zero server errors and zero departures from the
//! document (statuses, headers, bodies, content types, auth).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use std::process::Command;

use common::{Instance, installed, lfw_base64};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing() {
    let st = installed().join("opt/schemathesis/bin/schemathesis");
    assert!(st.exists(), "{} is missing: run make setup", st.display());
    let inst = Instance::new();
    inst.provision();
    let d = inst.start();
    // A real account, so the authenticated routes are exercised past the 401.
    let r = d
        .client
        .post(format!("{}/api/auth/register", d.url))
        .json(&serde_json::json!({
            "name": "Schema", "email": "schema@example.org",
            "imageBase64": lfw_base64("Aaron_Peirsol", 1),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: serde_json::Value = r.json().await.unwrap();
    let token = body["data"]["tokens"]["accessToken"]
        .as_str()
        .unwrap()
        .to_string();

    let report = inst.path("schemathesis");
    let out = tokio::task::spawn_blocking({
        let st = st.clone();
        let url = format!("{}/openapi.json", d.url);
        let cert = inst.path("tls/cert.pem");
        let report = report.clone();
        move || {
            std::fs::create_dir_all(&report).unwrap();
            Command::new(st)
                .arg("--config-file")
                .arg(common::root().join("daemon/tests/schemathesis.toml"))
                .arg("run")
                .arg(url)
                .arg("--tls-verify")
                .arg(cert)
                .args(["--checks", "all"])
                // Deletion would end the session half-way; it is covered by tests/api.rs.
                .args(["--exclude-method", "DELETE"])
                .args(["--phases", "examples,coverage,fuzzing"])
                .args([
                    "--max-examples",
                    "40",
                    "--seed",
                    "20261125",
                    "--workers",
                    "1",
                ])
                .args(["--header", &format!("Authorization: Bearer {token}")])
                .args(["--report", "junit", "--report-dir"])
                .arg(&report)
                .current_dir(&report)
                .env("NO_COLOR", "1")
                .env("SCHEMATHESIS_HOOKS", "")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("generated") || l.contains("Tested:"))
        .collect();
    eprintln!("schemathesis: {}", summary.join(" | "));
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    let (status, _, _, _) = d.get("/health").await;
    assert_eq!(status, 200, "the daemon is not healthy after the attack");
}
