//! The tamper-evident audit trail (`crate::audit`) from the console: check
//! it end to end, or seal its head now (before a backup, a hand-over).

use super::{Answer, Operator, ok, operator_event};
use crate::App;
use crate::audit;

/// `GET /v1/audit/verify`: the whole chain recomputed and every seal checked
/// against the token's keys; `broken` names the first entry that does not
/// hold (200 either way: the verdict is the answer).
pub async fn verify(app: &App) -> Answer {
    let verdict = audit::verify(app).await?;
    let message = if verdict.broken.is_some() {
        "audit trail BROKEN"
    } else {
        "audit trail intact"
    };
    Ok(ok(message, verdict))
}

/// `POST /v1/audit/seal`: signs the current head in the HSM now.
pub async fn seal(app: &App, op: Operator) -> Answer {
    operator_event(app, op, None, "seal audit trail", None).await;
    let sealed = audit::seal(app).await?;
    Ok(ok(
        "audit trail sealed",
        arclock_proto::Sealed {
            sealed_through: sealed.map(|s| s.seq),
        },
    ))
}
