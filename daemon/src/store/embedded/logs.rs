//! [`Logs`] on SQLite.

use super::*;

#[async_trait::async_trait]
impl Logs for EmbeddedStore {
    async fn append_log(&self, log: &AuthLog) -> Result<(), StoreError> {
        let log = log.clone();
        self.with(move |conn, path| {
            insert_log(conn, &log)
                .map(|_| ())
                .map_err(unavailable(path))
        })
        .await
    }

    async fn logs(&self, filter: &LogFilter) -> Result<LogPage, StoreError> {
        let f = filter.clone();
        self.read(move |conn, path| {
            let err = unavailable(path);
            let mut sql = format!("SELECT {LOG_COLUMNS} FROM auth_logs WHERE 1 = 1");
            let mut args: Vec<Value> = Vec::new();
            let mut arg = |sql: &mut String, clause: &str, v: Value| {
                args.push(v);
                sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
            };
            if let Some(u) = &f.user_id {
                arg(&mut sql, " AND user_id = ?", Value::Text(u.as_str().into()));
            }
            if let Some(a) = f.action {
                arg(&mut sql, " AND action = ?", Value::Text(a.as_str().into()));
            }
            if let Some(o) = f.outcome {
                arg(&mut sql, " AND outcome = ?", Value::Text(o.as_str().into()));
            }
            if let Some(ip) = &f.client_ip {
                arg(&mut sql, " AND client_ip = ?", Value::Text(ip.clone()));
            }
            if let Some(i) = &f.exclude_instance {
                arg(
                    &mut sql,
                    " AND (instance IS NULL OR instance != ?)",
                    Value::Text(i.clone()),
                );
            }
            if let Some(t) = f.since {
                arg(&mut sql, " AND at >= ?", Value::Integer(t));
            }
            if let Some(t) = f.until {
                arg(&mut sql, " AND at < ?", Value::Integer(t));
            }
            if let Some(c) = &f.before {
                // A well-formed id this backend did not issue (another
                // backend's, or out of range): every entry at that time.
                let id: i64 = c.id.parse().unwrap_or(i64::MAX);
                arg(&mut sql, " AND (at < ?", Value::Integer(c.at));
                arg(&mut sql, " OR (at = ?", Value::Integer(c.at));
                arg(&mut sql, " AND id < ?))", Value::Integer(id));
            }
            let limit = f.page_size();
            sql.push_str(&format!(" ORDER BY at DESC, id DESC LIMIT {}", limit + 1));
            let mut st = conn.prepare(&sql).map_err(&err)?;
            let rows = st
                .query_map(params_from_iter(args), log_from_row)
                .map_err(&err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&err)?;
            let entries = rows
                .into_iter()
                .map(to_log)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(LogPage::from_overfetch(entries, limit))
        })
        .await
    }
}
