//! The backend seam's promises, checked the same way on both backends:
//! the file backend on a data directory, PostgreSQL on a throwaway server.
//! Two instances of a backend on one store stand for two processes (or
//! two nodes): what one changes, the other sees; their writers are
//! serialised; a failed change leaves nothing behind.

use std::sync::Arc;

use cfgstore::names::ProjectRef;
use cfgstore::store::backend::files::{Disk, Files};
use cfgstore::store::backend::postgres::Postgres;
use cfgstore::store::backend::{Backend, Durability, Records};
use cfgstore::store::layout::Layout;
use cfgstore::store::Store;
use cfgstore::Error;

use super::PgServer;
use crate::util::TestDir;

/// Everything below, on two instances `a` and `b` of one store.
fn the_seam_keeps_its_promises(a: Arc<dyn Backend>, b: Arc<dyn Backend>) {
    // Records: absent, written, seen by the other instance, listed.
    assert_eq!(a.record(Records::Tokens, "t1").unwrap(), None);
    a.change(Records::Tokens, |t| {
        t.put("t1", b"one", Durability::Durable)
    })
    .unwrap();
    assert_eq!(
        b.record(Records::Tokens, "t1").unwrap().as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(
        b.record(Records::Users, "t1").unwrap(),
        None,
        "kinds are apart"
    );
    b.change(Records::Users, |u| u.put("alice", b"{}", Durability::Lazy))
        .unwrap();
    assert_eq!(
        a.records(Records::Users).unwrap(),
        vec![("alice".to_string(), b"{}".to_vec())]
    );

    // A failed change: nothing of it in force, on either instance.
    let failed = a.change(Records::Tokens, |t| {
        t.put("t1", b"changed", Durability::Durable)?;
        t.put("t2", b"new", Durability::Durable)?;
        assert_eq!(
            t.get("t2")?.as_deref(),
            Some(&b"new"[..]),
            "a change reads its own writes"
        );
        Err::<(), _>(Error::Conflict("refused".into()))
    });
    assert!(matches!(failed, Err(Error::Conflict(_))), "{failed:?}");
    for backend in [&a, &b] {
        assert_eq!(
            backend.record(Records::Tokens, "t1").unwrap().as_deref(),
            Some(&b"one"[..])
        );
        assert_eq!(backend.record(Records::Tokens, "t2").unwrap(), None);
    }

    // Writers on both instances are serialised: 4 threads on each add 1
    // to one counter 10 times, reading and writing inside a change.
    a.change(Records::Sessions, |s| s.put("n", b"0", Durability::Durable))
        .unwrap();
    std::thread::scope(|scope| {
        for i in 0..8 {
            let backend = if i % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            scope.spawn(move || {
                for _ in 0..10 {
                    backend
                        .change(Records::Sessions, |s| {
                            let n: u64 = std::str::from_utf8(&s.get("n")?.unwrap())
                                .unwrap()
                                .parse()
                                .unwrap();
                            s.put("n", (n + 1).to_string().as_bytes(), Durability::Durable)
                        })
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(
        b.record(Records::Sessions, "n").unwrap().as_deref(),
        Some(&b"80"[..])
    );
    b.change(Records::Sessions, |s| {
        s.remove("n")?;
        s.remove("never-there")
    })
    .unwrap();
    assert_eq!(a.record(Records::Sessions, "n").unwrap(), None);

    // The audit trail: appended by both, read back oldest first.
    a.append_audit(br#"{"n":1}"#, true).unwrap();
    b.append_audit(br#"{"n":2}"#, false).unwrap();
    a.append_audit(br#"{"n":3}"#, true).unwrap();
    let mut lines = Vec::new();
    b.audit_lines(&mut |line| lines.push(line.to_vec()))
        .unwrap();
    assert_eq!(lines, [&br#"{"n":1}"#[..], br#"{"n":2}"#, br#"{"n":3}"#]);

    // The fleet view: per project, replaced whole.
    let project = ProjectRef::parse("acme/app.cfg").unwrap();
    assert_eq!(a.fleet(&project).unwrap(), None);
    a.put_fleet(&project, b"first").unwrap();
    b.put_fleet(&project, b"second").unwrap();
    assert_eq!(a.fleet(&project).unwrap().as_deref(), Some(&b"second"[..]));

    // The change signal: a watch on one instance sees each change the
    // other announces (it may hand on an unchanged marker too: the read
    // cache compares).
    let watch = b.watch_changes();
    let check = || {
        let mut seen = Vec::new();
        watch.check(&mut |m| seen.push(m.to_vec())).unwrap();
        seen
    };
    let first = check();
    assert_eq!(first.len(), 1, "the first check reads the marker");
    assert!(check().iter().all(|m| *m == first[0]));
    a.announce_change(b"m1").unwrap();
    assert_eq!(check(), [b"m1"]);
    b.announce_change(b"m2").unwrap();
    assert_eq!(check(), [b"m2"]);

    // Exact under load: a check that begins after a change was announced
    // sees it (or a later one), whatever other checks are under way.
    // `cached` stands for a read cache: the last marker handed on.
    a.announce_change(b"0").unwrap();
    let announced = std::sync::atomic::AtomicU64::new(0);
    let cached = std::sync::Mutex::new(0u64);
    let watch = b.watch_changes();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for n in 1..=40u64 {
                a.announce_change(n.to_string().as_bytes()).unwrap();
                announced.store(n, std::sync::atomic::Ordering::SeqCst);
            }
        });
        for _ in 0..6 {
            scope.spawn(|| {
                for _ in 0..60 {
                    let at_arrival = announced.load(std::sync::atomic::Ordering::SeqCst);
                    let mut handed = None;
                    watch
                        .check(&mut |m| {
                            let n: u64 = std::str::from_utf8(m).unwrap().parse().unwrap();
                            *cached.lock().unwrap() = n;
                            handed = Some(n);
                        })
                        .unwrap();
                    // Not handed on: unchanged since the last one handed on.
                    let now = handed.unwrap_or_else(|| *cached.lock().unwrap());
                    assert!(
                        now >= at_arrival,
                        "saw {now} after {at_arrival} was announced"
                    );
                }
            });
        }
    });
}

#[test]
fn file_backend_keeps_the_seams_promises() {
    let dir = TestDir::new("seam-files");
    Store::init(&dir.data()).unwrap();
    let files = || -> Arc<dyn Backend> {
        Arc::new(Files::new(Arc::new(Disk::new(Layout::new(dir.data())))))
    };
    the_seam_keeps_its_promises(files(), files());
}

#[test]
fn postgres_backend_keeps_the_seams_promises() {
    let Some(pg) = PgServer::start("postgres::records::postgres_backend_keeps_the_seams_promises")
    else {
        return;
    };
    let (a, created) = Postgres::init(&pg.url()).unwrap();
    assert!(created, "a fresh database gets the schema");
    let b = Postgres::open(&pg.url()).unwrap();
    the_seam_keeps_its_promises(Arc::new(a), Arc::new(b));
}

/// The schema: `init` creates it once; `open` refuses a database without
/// one (naming the way out) and never shows a password; a schema newer
/// than this build is refused, not written over; an older one is migrated
/// forward.
#[test]
fn postgres_schema_is_created_once_and_checked() {
    let Some(pg) =
        PgServer::start("postgres::records::postgres_schema_is_created_once_and_checked")
    else {
        return;
    };
    let with_password = pg.url().replace("cfgstore@", "cfgstore:s3cret@");
    let missing = Postgres::open(&with_password).unwrap_err();
    assert!(
        matches!(&missing, Error::NotFound { .. }) && missing.to_string().contains("init"),
        "{missing}"
    );
    assert!(!missing.to_string().contains("s3cret"), "{missing}");
    let (_, created) = Postgres::init(&pg.url()).unwrap();
    assert!(created);
    let (_, created) = Postgres::init(&pg.url()).unwrap();
    assert!(!created, "a second init finds the schema in place");
    Postgres::open(&pg.url()).unwrap();

    let status = std::process::Command::new("psql")
        .args([
            &pg.url(),
            "-qc",
            "UPDATE cfgstore.meta SET value = '999' WHERE key = 'schema'",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    for attempt in [
        Postgres::open(&pg.url()).map(drop),
        Postgres::init(&pg.url()).map(drop),
    ] {
        let err = attempt.unwrap_err();
        assert!(
            matches!(&err, Error::Invalid(m) if m.contains("999") && m.contains("newer")),
            "{err}"
        );
    }

    // An older schema (as the first cfgstore with this backend left it:
    // records only, schema 1) is migrated forward on open, its records
    // kept, and the content tables made.
    let older = std::process::Command::new("psql")
        .args([
            &pg.url(),
            "-qc",
            "UPDATE cfgstore.meta SET value = '1' WHERE key = 'schema';
             DROP TABLE cfgstore.objects, cfgstore.generations, cfgstore.branches, cfgstore.projects;",
        ])
        .status()
        .unwrap();
    assert!(older.success());
    let migrated = Postgres::open(&pg.url()).unwrap();
    let backend: &dyn Backend = &migrated;
    assert!(
        backend.projects(None).unwrap().is_empty(),
        "the content tables exist"
    );
    let version = std::process::Command::new("psql")
        .args([
            &pg.url(),
            "-Atc",
            "SELECT value FROM cfgstore.meta WHERE key = 'schema'",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        cfgstore::store::backend::postgres::schema::CURRENT.to_string()
    );

    let bad = Postgres::open("postgres://cfgstore@127.0.0.1:notaport/x").unwrap_err();
    assert!(matches!(bad, Error::Invalid(_)), "{bad}");
}

/// An unreachable database is `Unavailable` (the API's 503), naming where
/// it is, soon (not a hang), and the backend works once it is back.
#[test]
fn postgres_backend_reports_an_unreachable_database_and_recovers() {
    let Some(pg) = PgServer::start(
        "postgres::records::postgres_backend_reports_an_unreachable_database_and_recovers",
    ) else {
        return;
    };
    let (backend, _) = Postgres::init(&pg.url()).unwrap();
    let backend: &dyn Backend = &backend;
    backend
        .change(Records::Tokens, |t| t.put("k", b"v", Durability::Durable))
        .unwrap();
    pg.stop();
    let started = std::time::Instant::now();
    let err = backend.record(Records::Tokens, "k").unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let err = backend
        .change(Records::Tokens, |t| t.put("k", b"w", Durability::Durable))
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    pg.start_again();
    assert_eq!(
        backend.record(Records::Tokens, "k").unwrap().as_deref(),
        Some(&b"v"[..])
    );
    backend
        .change(Records::Tokens, |t| t.put("k", b"w", Durability::Durable))
        .unwrap();
    assert_eq!(
        backend.record(Records::Tokens, "k").unwrap().as_deref(),
        Some(&b"w"[..])
    );
}
