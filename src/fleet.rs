//! The fleet view: for every read client of a project — a token, and the
//! `X-Instance-Id` it sends — when it was last seen, from where, with what
//! user agent, and the `short_id` it last received per branch (from the
//! branches listing as from file reads). Answers "has every site picked up
//! the change?" and "who is behind, since when?".
//!
//! The daemon notes each read in memory ([`Fleet::note`], a short-held
//! lock and no allocation for a client already known) and writes each
//! project's record every few seconds and at shutdown, coalesced like
//! token `last_used_at` (`App::flush`). Bounded: at most
//! [`MAX_CLIENTS`] clients per project, the longest unseen dropped first.
//! [`view`] turns the records into rows against the branches' live states
//! and histories, for `GET …/projects/{id}/fleet` and `cfgstore fleet`.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use crate::error::Result;
use crate::names::{BranchName, ProjectRef};
use crate::store::fleet::{FleetClient, Received};
use crate::store::{format_time, Store};

/// The maps updated on every read (see Cargo.toml on foldhash).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Clients remembered per project; when full, the tenth longest unseen
/// goes at once (one scan per thousand new clients, not one per client).
pub const MAX_CLIENTS: usize = 10_000;
/// Instances remembered per token and project: a token sending a new
/// `X-Instance-Id` with every request pushes out only its own instances.
pub const MAX_INSTANCES_PER_TOKEN: usize = 1_000;
/// Longest `X-Instance-Id` labelled and user agent kept (characters).
const MAX_INSTANCE_ID: usize = 128;
const MAX_USER_AGENT: usize = 256;

/// One read as the fleet sees it.
pub struct Visit<'a> {
    pub token_id: &'a str,
    pub instance_id: &'a str,
    pub address: Option<IpAddr>,
    pub user_agent: Option<&'a str>,
    /// Unix seconds.
    pub now: i64,
}

/// Slots of [`Fleet::noted`].
const NOTED_SLOTS: usize = 4096;

/// The daemon's in-memory fleet: project → token → instance label →
/// client.
pub struct Fleet {
    projects: Mutex<FastMap<ProjectRef, Clients>>,
    /// `X-Instance-Id` → its label (`ServerKey::instance_label`), so a
    /// known instance costs a lookup, not a MAC. In memory only.
    labels: Mutex<HashMap<String, String>>,
    /// Visits already noted this second: a slot per hash of a visit
    /// (everything [`Fleet::note`] records), holding the hash's top 40
    /// bits and the second's low 24. `last_seen` counts seconds, so a
    /// visit identical to one noted in the same second changes nothing
    /// and is skipped without a lock. Cleared when a client is evicted.
    noted: Box<[AtomicU64]>,
    hasher: foldhash::fast::RandomState,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            projects: Mutex::default(),
            labels: Mutex::default(),
            noted: (0..NOTED_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

#[derive(Default)]
struct Clients {
    by_token: FastMap<String, FastMap<String, Client>>,
    count: usize,
    /// Changed since last written.
    dirty: bool,
}

struct Client {
    last_seen: i64,
    address: Option<IpAddr>,
    user_agent: Option<String>,
    branches: BTreeMap<String, Received>,
}

impl Fleet {
    /// Notes that a client read `project` and received `states` (branch,
    /// `short_id`) — none for reads by blob id. The project's record is
    /// loaded from the store the first time it is touched. (`S`: borrowed
    /// by a handler, owned by an answer given again, `api::replay`.)
    pub fn note<S: AsRef<str> + std::hash::Hash>(
        &self,
        store: &Store,
        project: &ProjectRef,
        visit: &Visit,
        states: &[(S, S)],
    ) {
        let hash = self.hasher.hash_one((
            project,
            visit.token_id,
            visit.instance_id,
            visit.address,
            visit.user_agent,
            states,
        ));
        let slot = &self.noted[(hash as usize) % NOTED_SLOTS];
        let stamp = (hash & !0xff_ffff) | (visit.now as u64 & 0xff_ffff);
        if slot.load(Ordering::Relaxed) == stamp {
            return;
        }
        self.note_now(store, project, visit, states);
        slot.store(stamp, Ordering::Relaxed);
    }

    fn note_now<S: AsRef<str>>(
        &self,
        store: &Store,
        project: &ProjectRef,
        visit: &Visit,
        states: &[(S, S)],
    ) {
        let Some(label) = self.label(store, visit.instance_id) else {
            return;
        };
        let instance = label.as_str();
        let mut projects = self.projects.lock().expect("fleet");
        let clients = match projects.get_mut(project) {
            Some(clients) => clients,
            None => {
                // Once per project and process: its record from disk.
                drop(projects);
                let loaded = load(store.read_fleet(project));
                projects = self.projects.lock().expect("fleet");
                projects.entry(project.clone()).or_insert(loaded)
            }
        };
        clients.dirty = true;
        let known = clients
            .by_token
            .get_mut(visit.token_id)
            .and_then(|instances| instances.get_mut(instance));
        let client = match known {
            Some(client) => client,
            None => {
                let of_token = clients.by_token.get(visit.token_id).map_or(0, |i| i.len());
                if of_token >= MAX_INSTANCES_PER_TOKEN {
                    clients.evict_longest_unseen_of(visit.token_id);
                    self.forget_noted();
                } else if clients.count >= MAX_CLIENTS {
                    clients.evict_longest_unseen(MAX_CLIENTS / 10);
                    self.forget_noted();
                }
                clients.count += 1;
                clients
                    .by_token
                    .entry(visit.token_id.to_string())
                    .or_default()
                    .entry(instance.to_string())
                    .or_insert(Client {
                        last_seen: visit.now,
                        address: None,
                        user_agent: None,
                        branches: BTreeMap::new(),
                    })
            }
        };
        client.last_seen = visit.now;
        if visit.address.is_some() {
            client.address = visit.address;
        }
        if let Some(agent) = visit.user_agent.map(|a| clip(a, MAX_USER_AGENT)) {
            if client.user_agent.as_deref() != Some(agent) {
                client.user_agent = Some(agent.to_string());
            }
        }
        for (branch, short_id) in states {
            let (branch, short_id) = (branch.as_ref(), short_id.as_ref());
            match client.branches.get_mut(branch) {
                Some(seen) => {
                    if seen.short_id != short_id {
                        seen.short_id = short_id.to_string();
                    }
                    seen.at = visit.now;
                }
                None => {
                    client.branches.insert(
                        branch.to_string(),
                        Received {
                            short_id: short_id.to_string(),
                            at: visit.now,
                        },
                    );
                }
            }
        }
    }

    /// After an eviction: the next visit of an evicted client must be
    /// noted again, even within the same second.
    fn forget_noted(&self) {
        for slot in self.noted.iter() {
            slot.store(0, Ordering::Relaxed);
        }
    }

    /// The label of an instance id ("" for none); `None` without a
    /// server key (a store that cannot serve reads anyway).
    fn label(&self, store: &Store, instance_id: &str) -> Option<String> {
        if instance_id.is_empty() {
            return Some(String::new());
        }
        let instance_id = clip(instance_id, MAX_INSTANCE_ID);
        if let Some(label) = self.labels.lock().expect("fleet").get(instance_id) {
            return Some(label.clone());
        }
        let label = label_of(store, instance_id).ok()?;
        let mut labels = self.labels.lock().expect("fleet");
        // Bounded like the clients: a flood of made-up ids starts it over.
        if labels.len() >= 2 * MAX_CLIENTS {
            labels.clear();
        }
        labels.insert(instance_id.to_string(), label.clone());
        Some(label)
    }

    /// The clients of a project: those in memory, else those on disk.
    pub fn clients(&self, store: &Store, project: &ProjectRef) -> Vec<FleetClient> {
        if let Some(clients) = self.projects.lock().expect("fleet").get(project) {
            return clients.records();
        }
        // Not under the lock: every read's `note` takes it.
        store.read_fleet(project)
    }

    /// Writes the record of every project read since the last flush.
    pub fn flush(&self, store: &Store) -> Result<()> {
        let changed: Vec<(ProjectRef, Vec<FleetClient>)> = {
            let mut projects = self.projects.lock().expect("fleet");
            projects
                .iter_mut()
                .filter(|(_, c)| c.dirty)
                .map(|(p, c)| {
                    c.dirty = false;
                    (p.clone(), c.records())
                })
                .collect()
        };
        for (project, records) in changed {
            store.write_fleet(&project, records)?;
        }
        Ok(())
    }
}

impl Clients {
    fn records(&self) -> Vec<FleetClient> {
        let mut out: Vec<FleetClient> = self
            .by_token
            .iter()
            .flat_map(|(token, instances)| {
                instances.iter().map(move |(instance, c)| FleetClient {
                    token_id: token.clone(),
                    instance_id: instance.clone(),
                    last_seen: c.last_seen,
                    address: c.address.map(|ip| ip.to_string()),
                    user_agent: c.user_agent.clone(),
                    branches: c.branches.clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.token_id, &a.instance_id).cmp(&(&b.token_id, &b.instance_id)));
        out
    }

    /// Drops the `n` clients seen longest ago.
    fn evict_longest_unseen(&mut self, n: usize) {
        let mut all: Vec<(i64, String, String)> = self
            .by_token
            .iter()
            .flat_map(|(t, instances)| {
                instances
                    .iter()
                    .map(move |(i, c)| (c.last_seen, t.clone(), i.clone()))
            })
            .collect();
        let n = n.clamp(1, all.len().max(1)).min(all.len());
        if n == 0 {
            return;
        }
        all.select_nth_unstable(n - 1);
        for (_, token, instance) in all.into_iter().take(n) {
            self.remove(&token, &instance);
        }
    }

    /// Drops the instance of `token` seen longest ago.
    fn evict_longest_unseen_of(&mut self, token: &str) {
        let oldest = self.by_token.get(token).and_then(|instances| {
            instances
                .iter()
                .min_by_key(|(_, c)| c.last_seen)
                .map(|(i, _)| i.clone())
        });
        if let Some(instance) = oldest {
            self.remove(token, &instance);
        }
    }

    fn remove(&mut self, token: &str, instance: &str) {
        if let Some(instances) = self.by_token.get_mut(token) {
            if instances.remove(instance).is_some() {
                self.count -= 1;
            }
            if instances.is_empty() {
                self.by_token.remove(token);
            }
        }
    }
}

fn load(records: Vec<FleetClient>) -> Clients {
    let mut clients = Clients::default();
    for r in records.into_iter().take(MAX_CLIENTS) {
        clients.count += 1;
        clients.by_token.entry(r.token_id).or_default().insert(
            r.instance_id,
            Client {
                last_seen: r.last_seen,
                address: r.address.and_then(|a| a.parse().ok()),
                user_agent: r.user_agent,
                branches: r.branches,
            },
        );
    }
    clients
}

/// The label the fleet shows for an `X-Instance-Id` (the id as the daemon
/// reads it: its first 128 characters).
pub fn label_of(store: &Store, instance_id: &str) -> Result<String> {
    Ok(store
        .server_key()?
        .instance_label(clip(instance_id, MAX_INSTANCE_ID)))
}

/// At most `max` characters of `s`.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s; // no more bytes, so no more characters
    }
    match s.char_indices().nth(max) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

/// One client on one branch, against the branch's live state.
#[derive(Debug, Serialize)]
pub struct Row {
    pub branch: String,
    pub token_id: String,
    /// The token's name and owner; absent once the token is gone.
    pub token_name: Option<String>,
    pub token_owner: Option<String>,
    /// The label of its `X-Instance-Id` (`i-…`, never the id itself);
    /// absent when the client sends none.
    pub instance_id: Option<String>,
    /// The state it last received.
    pub short_id: String,
    /// When it received it (its last read of this branch).
    pub last_seen: String,
    /// The branch's live state now; absent when the branch is gone.
    pub live_short_id: Option<String>,
    pub current: bool,
    /// When the branch moved past the client's state (the version after
    /// it was written); absent when current, or when its state is no
    /// longer in the branch's history.
    pub behind_since: Option<String>,
    pub address: Option<String>,
    pub user_agent: Option<String>,
}

/// The rows of a project's fleet: behind first, per branch.
pub fn view(store: &Store, project: &ProjectRef, clients: &[FleetClient]) -> Result<Vec<Row>> {
    let mut branches: HashMap<String, Option<BranchState>> = HashMap::new();
    let mut names: HashMap<String, (Option<String>, Option<String>)> = HashMap::new();
    let mut rows = Vec::new();
    for client in clients {
        let (token_name, token_owner) = names
            .entry(client.token_id.clone())
            .or_insert_with(|| match store.token(&client.token_id) {
                Ok(t) => (Some(t.name), Some(t.owner.to_string())),
                Err(_) => (None, None),
            })
            .clone();
        for (branch, received) in &client.branches {
            let state = match branches.get(branch) {
                Some(state) => state,
                None => {
                    let state = BranchState::read(store, project, branch)?;
                    branches.entry(branch.clone()).or_insert(state)
                }
            };
            let live = state.as_ref().map(|s| s.live.clone());
            let current = live.as_deref() == Some(received.short_id.as_str());
            let behind_since = match (current, state) {
                (false, Some(s)) => s.superseded.get(&received.short_id).cloned(),
                _ => None,
            };
            rows.push(Row {
                branch: branch.clone(),
                token_id: client.token_id.clone(),
                token_name: token_name.clone(),
                token_owner: token_owner.clone(),
                instance_id: (!client.instance_id.is_empty()).then(|| client.instance_id.clone()),
                short_id: received.short_id.clone(),
                last_seen: unix_time(received.at),
                live_short_id: live,
                current,
                behind_since,
                address: client.address.clone(),
                user_agent: client.user_agent.clone(),
            });
        }
    }
    rows.sort_by(|a, b| {
        (&a.branch, a.current, &a.token_name, &a.instance_id).cmp(&(
            &b.branch,
            b.current,
            &b.token_name,
            &b.instance_id,
        ))
    });
    Ok(rows)
}

/// A branch's live `short_id`, and for every earlier state when the
/// branch last moved past it.
struct BranchState {
    live: String,
    superseded: HashMap<String, String>,
}

impl BranchState {
    fn read(store: &Store, project: &ProjectRef, branch: &str) -> Result<Option<BranchState>> {
        let Ok(name) = BranchName::parse(branch) else {
            return Ok(None);
        };
        let history = match store.history(project, &name) {
            Ok(history) => history,
            Err(crate::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut superseded = HashMap::new();
        // Newest first: a state that recurs (a rollback) is behind since
        // the branch last left it.
        for pair in history.windows(2) {
            let (newer, older) = (&pair[0], &pair[1]);
            if newer.short_id != older.short_id {
                superseded
                    .entry(older.short_id.clone())
                    .or_insert_with(|| newer.created_at.clone());
            }
        }
        Ok(history.first().map(|live| BranchState {
            live: live.short_id.clone(),
            superseded,
        }))
    }
}

fn unix_time(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .map(format_time)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client flooding new instance ids cannot grow the fleet past
    /// `MAX_CLIENTS`: the longest unseen go first, the others stay.
    #[test]
    fn the_fleet_of_a_project_is_bounded() {
        let dir = std::env::temp_dir().join(format!("cfgstore-fleet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = Store::init(&dir).unwrap();
        let project = ProjectRef::parse("acme/shop.cfg").unwrap();
        let fleet = Fleet::default();
        let key = store.server_key().unwrap();
        let note = |token: &str, instance: &str, now: i64| {
            let visit = Visit {
                token_id: token,
                instance_id: instance,
                address: None,
                user_agent: Some("x"),
                now,
            };
            fleet.note(&store, &project, &visit, &[("main", "abcd1234")]);
        };
        let labels = |token: &str| -> std::collections::HashSet<String> {
            fleet
                .clients(&store, &project)
                .into_iter()
                .filter(|c| c.token_id == token)
                .map(|c| c.instance_id)
                .collect()
        };
        // One token sending a new instance id each time pushes out only
        // its own oldest instances.
        note("other", "steady", 0);
        for i in 0..MAX_INSTANCES_PER_TOKEN + 5 {
            note("flood", &format!("f-{i}"), 1 + i as i64);
        }
        let flood = labels("flood");
        assert_eq!(flood.len(), MAX_INSTANCES_PER_TOKEN);
        for i in 0..5 {
            assert!(
                !flood.contains(&key.instance_label(&format!("f-{i}"))),
                "f-{i}"
            );
        }
        assert!(flood.contains(&key.instance_label(&format!("f-{}", MAX_INSTANCES_PER_TOKEN + 4))));
        assert_eq!(labels("other").len(), 1, "another token's instance stays");
        // Many tokens: the project never holds more than MAX_CLIENTS, and
        // the longest unseen go first.
        let mut now = 10_000;
        for t in 0..12 {
            for i in 0..MAX_INSTANCES_PER_TOKEN - 1 {
                now += 1;
                note(&format!("t{t}"), &format!("s-{i}"), now);
            }
        }
        let clients = fleet.clients(&store, &project);
        assert!(clients.len() <= MAX_CLIENTS, "{}", clients.len());
        assert!(
            labels("t11").len() == MAX_INSTANCES_PER_TOKEN - 1,
            "the newest token stays whole"
        );
        assert!(
            labels("t0").is_empty() && labels("other").is_empty(),
            "the oldest went first"
        );
        // A known client is updated in place, not added.
        let count = clients.len();
        let visit = Visit {
            token_id: "t11",
            instance_id: "s-900",
            address: Some("10.0.0.7".parse().unwrap()),
            user_agent: Some(&"u".repeat(1000)),
            now: 1_000_000,
        };
        fleet.note(&store, &project, &visit, &[("main", "ffff0000")]);
        let clients = fleet.clients(&store, &project);
        assert_eq!(clients.len(), count);
        let label = key.instance_label("s-900");
        let c = clients
            .iter()
            .find(|c| c.token_id == "t11" && c.instance_id == label)
            .unwrap();
        assert_eq!(c.address.as_deref(), Some("10.0.0.7"));
        assert_eq!(c.user_agent.as_ref().unwrap().len(), MAX_USER_AGENT);
        assert_eq!(c.branches["main"].short_id, "ffff0000");
        // Written and read back whole.
        fleet.flush(&store).unwrap();
        assert_eq!(store.read_fleet(&project), clients);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A visit identical to one noted in the same second is skipped
    /// without changing what the fleet shows; anything different, a new
    /// second, or an eviction in between is noted.
    #[test]
    fn a_repeated_visit_in_the_same_second_changes_nothing() {
        let dir = std::env::temp_dir().join(format!("cfgstore-fleet-s-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = Store::init(&dir).unwrap();
        let project = ProjectRef::parse("acme/shop.cfg").unwrap();
        let fleet = Fleet::default();
        let note = |token: &str, now: i64, short_id: &str| {
            let visit = Visit {
                token_id: token,
                instance_id: "",
                address: None,
                user_agent: Some("erp"),
                now,
            };
            fleet.note(&store, &project, &visit, &[("main", short_id)]);
        };
        let seen = |token: &str| {
            fleet
                .clients(&store, &project)
                .into_iter()
                .find(|c| c.token_id == token)
                .map(|c| (c.last_seen, c.branches["main"].short_id.clone()))
        };
        note("a", 100, "aaaa0001");
        note("a", 100, "aaaa0001");
        assert_eq!(seen("a"), Some((100, "aaaa0001".to_string())));
        note("a", 100, "aaaa0002");
        assert_eq!(
            seen("a"),
            Some((100, "aaaa0002".to_string())),
            "a new state"
        );
        note("a", 101, "aaaa0002");
        assert_eq!(
            seen("a"),
            Some((101, "aaaa0002".to_string())),
            "a new second"
        );
        // Evicted, then the same visit again in the same second: noted.
        fleet
            .projects
            .lock()
            .unwrap()
            .get_mut(&project)
            .unwrap()
            .remove("a", "");
        fleet.forget_noted();
        note("a", 101, "aaaa0002");
        assert_eq!(
            seen("a"),
            Some((101, "aaaa0002".to_string())),
            "after eviction"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn clipping_keeps_whole_characters() {
        assert_eq!(clip("abc", 2), "ab");
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("ééé", 2), "éé");
        assert_eq!(clip("", 2), "");
    }
}
