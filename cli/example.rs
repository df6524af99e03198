//! The example store `cfgstore init --example` builds, and `data-example/`
//! holds: a CNC shop's ERP configuration with a little history.
//!
//! It is built through the ordinary store API, one step per write, so the
//! history it shows is real: snapshots, a branch cut for a release, a file
//! removed, a change rolled back.

use cfgstore::ops::{self, Actor};
use cfgstore::store::{BranchName, FilePath, OwnerName, ProjectRef, Store};

const OPERATIONS_V1: &str = r#"{
  "site": "cluj-plant-2",
  "timezone": "Europe/Bucharest",
  "shifts": [
    { "name": "early", "start": "06:00", "end": "14:00" },
    { "name": "late", "start": "14:00", "end": "22:00" }
  ],
  "maxParallelJobs": 12,
  "qualityGate": { "sampleEvery": 25, "toleranceMm": 0.02 }
}
"#;

const OPERATIONS_V2: &str = r#"{
  "site": "cluj-plant-2",
  "timezone": "Europe/Bucharest",
  "shifts": [
    { "name": "early", "start": "06:00", "end": "14:00" },
    { "name": "late", "start": "14:00", "end": "22:00" },
    { "name": "night", "start": "22:00", "end": "06:00" }
  ],
  "maxParallelJobs": 16,
  "qualityGate": { "sampleEvery": 25, "toleranceMm": 0.02 }
}
"#;

const CONNECTION: &str = "\
# How the ERP reaches the shop-floor systems.
mes:
  url: https://mes.plant2.internal/api
  timeoutSeconds: 10
  retries: 3
warehouse:
  url: https://wms.plant2.internal
  pollIntervalSeconds: 60
";

const SYNC_SCHEDULE: &str = "\
jobs:
  - name: bom-expansion
    cron: \"*/15 * * * *\"
  - name: price-refresh
    cron: \"0 5 * * *\"
  - name: kpi-rollup
    cron: \"30 23 * * *\"
";

const PRICE_LISTS: &str = r#"{
  "currency": "EUR",
  "lists": [
    { "id": "std-2026", "validFrom": "2026-01-01", "markupPercent": 18 },
    { "id": "oem-2026", "validFrom": "2026-01-01", "markupPercent": 9 }
  ]
}
"#;

const DISCOUNTS_V1: &str = "\
volume:
  - minQty: 100
    percent: 3
  - minQty: 1000
    percent: 7
";

const DISCOUNTS_V2: &str = "\
volume:
  - minQty: 100
    percent: 3
  - minQty: 500
    percent: 5
  - minQty: 1000
    percent: 8
";

const CATEGORIES: &str = r#"{
  "categories": [
    { "code": "MIL", "name": "Milled parts" },
    { "code": "TRN", "name": "Turned parts" },
    { "code": "ASM", "name": "Assemblies" }
  ]
}
"#;

const UNITS_DE: &str = "\
# Maßeinheiten für die Werkstatt in Stuttgart
länge: mm
gewicht: kg
drehmoment: Nm
";

const BOM_RULES: &str = "\
expandPhantoms: true
maxDepth: 8
scrapFactorPercent:
  MIL: 2.5
  TRN: 1.5
";

const CNC_MILLS: &str = r#"{
  "machines": [
    { "id": "DMU-50-01", "axes": 5, "spindleRpm": 18000 },
    { "id": "DMU-50-02", "axes": 5, "spindleRpm": 18000 },
    { "id": "VF-2-01", "axes": 3, "spindleRpm": 8100 }
  ]
}
"#;

const LATHES: &str = r#"{
  "machines": [
    { "id": "NLX-2500-01", "maxDiameterMm": 366, "barFeeder": true }
  ]
}
"#;

const FEATURE_FLAGS: &str = r#"{
  "newScheduler": false,
  "liveOeeDashboard": true,
  "autoReorderConsumables": false
}
"#;

const FEATURE_FLAGS_ON: &str = r#"{
  "newScheduler": true,
  "liveOeeDashboard": true,
  "autoReorderConsumables": false
}
"#;

const KPI: &str = r#"{
  "oeeTargetPercent": 78,
  "scrapAlertPercent": 3.5,
  "onTimeDeliveryTargetPercent": 95
}
"#;

const LEGACY_EXPORT: &str = r#"{ "format": "csv", "target": "//fileserver/exports" }
"#;

const PUBLIC_UNITS: &str = "\
# Shared unit conversions, readable by every project.
mm_per_inch: 25.4
kg_per_lb: 0.45359237
";

/// Builds the example into `store`. Fails if the project exists already.
pub fn create(store: &Store, actor: &Actor) -> anyhow::Result<()> {
    let demo = OwnerName::parse("demo")?;
    let info = ops::content::create_project(store, actor, &demo, "b2b-cnc", "erp-config")?;
    let project = info.project_ref();
    let main = BranchName::parse("main")?;

    let initial = files(&[
        ("operations.config.json", OPERATIONS_V1),
        ("erp/connection.yaml", CONNECTION),
        ("erp/sync-schedule.yaml", SYNC_SCHEDULE),
        ("config/pricing/price-lists.json", PRICE_LISTS),
        ("config/pricing/discounts.yaml", DISCOUNTS_V1),
        ("config/taxonomy/categories.json", CATEGORIES),
        ("config/bom/expansion-rules.yaml", BOM_RULES),
        ("config/machines/cnc-mills.json", CNC_MILLS),
        ("config/machines/lathes.json", LATHES),
        ("features/feature flags.json", FEATURE_FLAGS),
        ("locales/de/maßeinheiten.yaml", UNITS_DE),
        ("reporting/kpi-thresholds.json", KPI),
        ("legacy/old-export.json", LEGACY_EXPORT),
    ])?;
    ops::content::import(
        store,
        actor,
        &project,
        &main,
        initial,
        false,
        ops::content::Validation::Check,
    )?;
    put(
        store,
        &project,
        &main,
        "config/pricing/discounts.yaml",
        DISCOUNTS_V2,
        actor,
    )?;
    let release = BranchName::parse("release/2026.1")?;
    ops::content::create_branch(store, actor, &project, &release, Some(&main))?;
    put(
        store,
        &project,
        &main,
        "operations.config.json",
        OPERATIONS_V2,
        actor,
    )?;
    ops::content::delete_file(
        store,
        actor,
        &project,
        &main,
        &FilePath::parse("legacy/old-export.json")?,
        None,
    )?;
    put(
        store,
        &project,
        &main,
        "features/feature flags.json",
        FEATURE_FLAGS_ON,
        actor,
    )?;
    // The new scheduler was switched on too early: roll that back.
    let before_flag = store.history(&project, &main)?[1].version;
    ops::content::rollback(store, actor, &project, &main, before_flag)?;

    let public = OwnerName::parse(OwnerName::PUBLIC)?;
    let shared =
        ops::content::create_project(store, actor, &public, "units", "erp-config")?.project_ref();
    put(store, &shared, &main, "units.yaml", PUBLIC_UNITS, actor)?;

    println!("created example projects {project} (branches main, {release}) and {shared}");
    Ok(())
}

fn put(
    store: &Store,
    project: &ProjectRef,
    branch: &BranchName,
    path: &str,
    content: &str,
    actor: &Actor,
) -> anyhow::Result<()> {
    let path = FilePath::parse(path)?;
    let write = ops::content::FileWrite {
        project,
        branch,
        path: &path,
        bytes: content.as_bytes(),
    };
    ops::content::put_file(store, actor, write, None, ops::content::Validation::Check)?;
    Ok(())
}

fn files(list: &[(&str, &str)]) -> anyhow::Result<Vec<(FilePath, Vec<u8>)>> {
    list.iter()
        .map(|(p, c)| Ok((FilePath::parse(p)?, c.as_bytes().to_vec())))
        .collect()
}
