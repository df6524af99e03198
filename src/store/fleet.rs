//! The fleet view as stored: per project, which read clients (token,
//! `X-Instance-Id`) hold which state of which branch. The daemon keeps it
//! in memory (`crate::fleet`) and writes it here every few seconds and at
//! shutdown; `cfgstore fleet` reads it. Telemetry: written atomically but
//! not part of backups, and a missing or unreadable file is an empty fleet.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Store;
use crate::error::Result;
use crate::names::ProjectRef;

/// One client of a project as last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetClient {
    pub token_id: String,
    /// The label of the `X-Instance-Id` it sent
    /// (`ServerKey::instance_label`; the id itself is never stored);
    /// empty when it sent none.
    pub instance_id: String,
    /// Unix seconds of its last read of the project.
    pub last_seen: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Per branch: the state it last received.
    pub branches: BTreeMap<String, Received>,
}

/// A branch state a client received, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    pub short_id: String,
    /// Unix seconds.
    pub at: i64,
}

#[derive(Serialize, Deserialize)]
struct FleetFile {
    clients: Vec<FleetClient>,
}

impl Store {
    /// The fleet of a project as last written (empty when none was, or
    /// when it cannot be read: telemetry).
    pub fn read_fleet(&self, project: &ProjectRef) -> Vec<FleetClient> {
        match self.backend.fleet(project) {
            Ok(Some(bytes)) => match serde_json::from_slice::<FleetFile>(&bytes) {
                Ok(file) => file.clients,
                Err(e) => {
                    tracing::warn!(project = %project, error = %e, "fleet record unreadable; starting empty");
                    Vec::new()
                }
            },
            Ok(None) | Err(_) => Vec::new(),
        }
    }

    /// Replaces the fleet record of a project (atomically).
    pub fn write_fleet(&self, project: &ProjectRef, clients: Vec<FleetClient>) -> Result<()> {
        let bytes = serde_json::to_vec(&FleetFile { clients }).expect("fleet serialises");
        self.backend.put_fleet(project, &bytes)
    }
}
