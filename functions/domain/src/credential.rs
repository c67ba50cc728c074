//! The application's bearer credentials, named once for the components
//! (which read them as Spin variables) and for parkd (which reads them from
//! the environment and checks some routes itself).

/// A token of the application, by its variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// `admin_token` (`PARKING_ADMIN_TOKEN`): provisioning, reads that show
    /// sensors, and `/metrics`.
    Admin,
    /// `ingest_token` (`PARKING_INGEST_TOKEN`): `POST /api/v1/events` and
    /// `POST /api/v1/sweep`.
    Ingest,
}

impl Credential {
    pub const ALL: [Credential; 2] = [Credential::Admin, Credential::Ingest];

    /// The application variable (spin.toml) holding the token.
    pub fn variable(self) -> &'static str {
        match self {
            Credential::Admin => "admin_token",
            Credential::Ingest => "ingest_token",
        }
    }

    /// The environment variable parkd reads it from.
    pub fn environment(self) -> &'static str {
        match self {
            Credential::Admin => "PARKING_ADMIN_TOKEN",
            Credential::Ingest => "PARKING_INGEST_TOKEN",
        }
    }
}
