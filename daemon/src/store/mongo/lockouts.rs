//! [`Lockouts`] on MongoDB.

use super::*;

#[async_trait::async_trait]
impl Lockouts for MongoStore {
    async fn reserve_attempt(
        &self,
        subject: &Subject,
        now: Millis,
        p: &LockPolicy,
    ) -> Result<Reservation, StoreError> {
        if let Some(until) = self.locked_until(subject, now).await? {
            return Ok(Reservation::Refused { until });
        }
        let key = subject.key();
        let attempts = self.open_window(&key, now, p).await?;
        // The gate: one conditional increment. Of any number of concurrent
        // reservations exactly `max_failures - count` match the filter.
        let granted = attempts
            .find_one_and_update(
                doc! {"_id": &key, "count": {"$lt": i64::from(p.max_failures)}},
                doc! {"$inc": {"count": 1_i64}},
            )
            .await
            .map_err(down)?;
        if granted.is_some() {
            return Ok(Reservation::Granted);
        }
        let start = match attempts.find_one(doc! {"_id": &key}).await.map_err(down)? {
            Some(d) => get_i64(&d, "window_start")?,
            None => now,
        };
        Ok(Reservation::Refused {
            until: start + p.window,
        })
    }

    async fn fail_attempt(
        &self,
        subject: &Subject,
        now: Millis,
        p: &LockPolicy,
    ) -> Result<FailureOutcome, StoreError> {
        let key = subject.key();
        let attempts = self.coll("failed_attempts");
        // The reservation becomes a failure (`count` already holds it).
        let current = attempts
            .find_one_and_update(
                doc! {"_id": &key, "window_start": {"$gt": now - p.window}},
                doc! {"$inc": {"failed": 1_i64}},
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(down)?;
        let failed = match current {
            Some(d) => get_i64(&d, "failed")?,
            // Cleared by a success, or the window ran out: count it afresh.
            None => {
                let attempts = self.open_window(&key, now, p).await?;
                let counted = attempts
                    .find_one_and_update(
                        doc! {"_id": &key},
                        doc! {"$inc": {"count": 1_i64, "failed": 1_i64}},
                    )
                    .return_document(ReturnDocument::After)
                    .await
                    .map_err(down)?
                    .ok_or_else(|| corrupt("failed_attempts counter vanished"))?;
                get_i64(&counted, "failed")?
            }
        };
        if failed < i64::from(p.max_failures) {
            return Ok(FailureOutcome::Counted(failed as u32));
        }
        let until = now + p.lock_for;
        self.coll("lockouts")
            .update_one(
                doc! {"_id": &key},
                doc! {"$max": {"until": until, "expires_at": date(until)}},
            )
            .upsert(true)
            .await
            .map_err(down)?;
        attempts
            .delete_one(doc! {"_id": &key})
            .await
            .map_err(down)?;
        Ok(FailureOutcome::LockedUntil(until))
    }

    async fn release_attempt(&self, subject: &Subject) -> Result<(), StoreError> {
        self.coll("failed_attempts")
            .update_one(
                // Only a running attempt's place: never below the failures.
                doc! {"_id": subject.key(), "$expr": {"$gt": ["$count", "$failed"]}},
                doc! {"$inc": {"count": -1_i64}},
            )
            .await
            .map_err(down)?;
        Ok(())
    }

    async fn locked_until(
        &self,
        subject: &Subject,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let d = self
            .coll("lockouts")
            .find_one(doc! {"_id": subject.key(), "until": {"$gt": now}})
            .await
            .map_err(down)?;
        d.map(|d| get_i64(&d, "until")).transpose()
    }

    async fn clear_failures(&self, subject: &Subject) -> Result<(), StoreError> {
        self.coll("failed_attempts")
            .delete_one(doc! {"_id": subject.key()})
            .await
            .map_err(down)?;
        Ok(())
    }

    async fn unlock(&self, subject: &Subject) -> Result<bool, StoreError> {
        let r = self
            .coll("lockouts")
            .delete_one(doc! {"_id": subject.key()})
            .await
            .map_err(down)?;
        self.clear_failures(subject).await?;
        Ok(r.deleted_count > 0)
    }

    async fn lockouts(&self, now: Millis) -> Result<Vec<(Subject, Millis)>, StoreError> {
        let docs = self
            .all(
                "lockouts",
                doc! {"until": {"$gt": now}},
                doc! {"until": 1},
                None,
            )
            .await?;
        docs.iter()
            .map(|d| {
                Ok((
                    Subject::from_key(&get_str(d, "_id")?)?,
                    get_i64(d, "until")?,
                ))
            })
            .collect()
    }
}
