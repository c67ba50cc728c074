//! The database's own error codes, which the host appends to each error
//! message (`(SQLSTATE 40P01)` for PostgreSQL, `(SQLite code 5)` for
//! SQLite): what a failure is comes from its code, never from its wording.

/// What a failed statement means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Busy, locked, deadlocked, timed out, connection lost: a retry can cure it.
    Transient,
    /// A uniqueness rule was violated.
    UniqueViolation,
    /// Anything else (or no code given).
    Other,
}

/// The SQLSTATE in a PostgreSQL error message: parkd's `(SQLSTATE 40P01)`,
/// or the `SqlState(E40P01)` of the Spin runtime's error text.
pub fn sqlstate(message: &str) -> Option<&str> {
    let code = match message.rfind("(SQLSTATE ") {
        Some(at) => &message[at + "(SQLSTATE ".len()..],
        None => &message[message.rfind("SqlState(E")? + "SqlState(E".len()..],
    };
    let code = code.get(..5)?;
    code.bytes().all(|b| b.is_ascii_alphanumeric()).then_some(code)
}

/// What a PostgreSQL error is, by its SQLSTATE.
pub fn postgres_kind(message: &str) -> Kind {
    match sqlstate(message) {
        Some("23505") => Kind::UniqueViolation,
        // serialization_failure, deadlock_detected, lock_not_available,
        // query_canceled (statement_timeout), idle_in_transaction_session_timeout,
        // admin/crash shutdown, cannot_connect_now.
        Some("40001" | "40P01" | "55P03" | "57014" | "25P03" | "57P01" | "57P02" | "57P03") => {
            Kind::Transient
        }
        // connection_exception (08) and insufficient_resources (53) classes.
        Some(code) if code.starts_with("08") || code.starts_with("53") => Kind::Transient,
        _ => Kind::Other,
    }
}

/// The (extended) result code in a SQLite error message: `(SQLite code 2067)`.
pub fn sqlite_code(message: &str) -> Option<i64> {
    let rest = &message[message.rfind("(SQLite code ")? + "(SQLite code ".len()..];
    rest.split(')').next()?.trim().parse().ok()
}

/// What a SQLite error is, by its result code.
pub fn sqlite_kind(message: &str) -> Kind {
    const BUSY: i64 = 5;
    const LOCKED: i64 = 6;
    const CONSTRAINT_PRIMARYKEY: i64 = 1555;
    const CONSTRAINT_UNIQUE: i64 = 2067;
    match sqlite_code(message) {
        Some(CONSTRAINT_UNIQUE | CONSTRAINT_PRIMARYKEY) => Kind::UniqueViolation,
        Some(code) if code & 0xff == BUSY || code & 0xff == LOCKED => Kind::Transient,
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_errors_are_classified_by_sqlstate() {
        let unique = "duplicate key value violates unique constraint \"bays_sensor_key\" (SQLSTATE 23505)";
        assert_eq!(postgres_kind(unique), Kind::UniqueViolation);
        assert_eq!(postgres_kind("deadlock detected (SQLSTATE 40P01)"), Kind::Transient);
        assert_eq!(
            postgres_kind("canceling statement due to statement timeout (SQLSTATE 57014)"),
            Kind::Transient
        );
        assert_eq!(postgres_kind("too many connections (SQLSTATE 53300)"), Kind::Transient);
        assert_eq!(postgres_kind("db error: DbError { code: SqlState(E40001), .. }"), Kind::Transient);
        // The wording alone decides nothing.
        assert_eq!(postgres_kind("connection timed out deadlock pool"), Kind::Other);
        assert_eq!(postgres_kind("syntax error at or near \"SELEC\" (SQLSTATE 42601)"), Kind::Other);
    }

    #[test]
    fn sqlite_errors_are_classified_by_result_code() {
        assert_eq!(
            sqlite_kind("UNIQUE constraint failed: bays.sensor (SQLite code 2067)"),
            Kind::UniqueViolation
        );
        assert_eq!(sqlite_kind("database is locked (SQLite code 5)"), Kind::Transient);
        assert_eq!(sqlite_kind("database table is locked (SQLite code 262)"), Kind::Transient);
        assert_eq!(sqlite_kind("database is locked"), Kind::Other);
        assert_eq!(sqlite_kind("no such table: x (SQLite code 1)"), Kind::Other);
    }
}
