//! The schema of each backend, embedded in the binary.

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType};

fn migration(version: i64, description: &'static str, sql: &'static str) -> Migration {
    Migration::new(
        version,
        description.into(),
        MigrationType::Simple,
        sql.into_sql_str(),
        false,
    )
}

pub(super) fn sqlite() -> Vec<Migration> {
    vec![
        migration(
            1,
            "sync",
            include_str!("../../migrations/sqlite/0001_sync.sql"),
        ),
        migration(
            2,
            "projections",
            include_str!("../../migrations/sqlite/0002_projections.sql"),
        ),
        migration(
            3,
            "identity",
            include_str!("../../migrations/sqlite/0003_identity.sql"),
        ),
        migration(
            4,
            "web",
            include_str!("../../migrations/sqlite/0004_web.sql"),
        ),
        migration(
            5,
            "catalog",
            include_str!("../../migrations/sqlite/0005_catalog.sql"),
        ),
        migration(
            6,
            "refusals",
            include_str!("../../migrations/sqlite/0006_refusals.sql"),
        ),
        migration(
            7,
            "residents",
            include_str!("../../migrations/sqlite/0007_residents.sql"),
        ),
        migration(
            8,
            "exports",
            include_str!("../../migrations/sqlite/0008_exports.sql"),
        ),
        migration(
            9,
            "closures",
            include_str!("../../migrations/sqlite/0009_closures.sql"),
        ),
        migration(
            10,
            "access log",
            include_str!("../../migrations/sqlite/0010_access_log.sql"),
        ),
        migration(
            11,
            "erasures",
            include_str!("../../migrations/sqlite/0011_erasures.sql"),
        ),
        migration(
            12,
            "hubs",
            include_str!("../../migrations/sqlite/0012_hubs.sql"),
        ),
        migration(
            13,
            "hub side",
            include_str!("../../migrations/sqlite/0013_hub_side.sql"),
        ),
        migration(
            14,
            "hub backlog",
            include_str!("../../migrations/sqlite/0014_hub_backlog.sql"),
        ),
        migration(
            15,
            "hub enrolment",
            include_str!("../../migrations/sqlite/0015_hub_enrolment.sql"),
        ),
    ]
}

pub(super) fn postgres() -> Vec<Migration> {
    vec![
        migration(
            1,
            "sync",
            include_str!("../../migrations/postgres/0001_sync.sql"),
        ),
        migration(
            2,
            "projections",
            include_str!("../../migrations/postgres/0002_projections.sql"),
        ),
        migration(
            3,
            "identity",
            include_str!("../../migrations/postgres/0003_identity.sql"),
        ),
        migration(
            4,
            "web",
            include_str!("../../migrations/postgres/0004_web.sql"),
        ),
        migration(
            5,
            "catalog",
            include_str!("../../migrations/postgres/0005_catalog.sql"),
        ),
        migration(
            6,
            "refusals",
            include_str!("../../migrations/postgres/0006_refusals.sql"),
        ),
        migration(
            7,
            "residents",
            include_str!("../../migrations/postgres/0007_residents.sql"),
        ),
        migration(
            8,
            "exports",
            include_str!("../../migrations/postgres/0008_exports.sql"),
        ),
        migration(
            9,
            "closures",
            include_str!("../../migrations/postgres/0009_closures.sql"),
        ),
        migration(
            10,
            "access log",
            include_str!("../../migrations/postgres/0010_access_log.sql"),
        ),
        migration(
            11,
            "erasures",
            include_str!("../../migrations/postgres/0011_erasures.sql"),
        ),
        migration(
            12,
            "hubs",
            include_str!("../../migrations/postgres/0012_hubs.sql"),
        ),
        migration(
            13,
            "hub side",
            include_str!("../../migrations/postgres/0013_hub_side.sql"),
        ),
        migration(
            14,
            "hub backlog",
            include_str!("../../migrations/postgres/0014_hub_backlog.sql"),
        ),
        migration(
            15,
            "hub enrolment",
            include_str!("../../migrations/postgres/0015_hub_enrolment.sql"),
        ),
    ]
}
