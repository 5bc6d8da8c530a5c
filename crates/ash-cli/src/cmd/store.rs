//! `ash store migrate`: bring a store's schema to this build's version.

use anyhow::{Context as _, bail};
use ash_store::{Durability, PostgresStore, SqliteStore};

use crate::cli::{StoreCommand, StoreMigrateArgs};
use crate::cmd::Outcome;
use crate::cmd::start::runtime;
use crate::{config, output};

pub(crate) fn run(command: StoreCommand) -> anyhow::Result<Outcome> {
    match command {
        StoreCommand::Migrate(args) => migrate(&args),
    }
}

fn migrate(args: &StoreMigrateArgs) -> anyhow::Result<Outcome> {
    let Some(store) =
        args.store.clone().or_else(|| config::var("ASH_STORE").filter(|v| !v.is_empty()))
    else {
        bail!("name the store: `ash store migrate --store PATH|postgres://…` (or set ASH_STORE)");
    };
    let (described, from, to) = if ash_store::is_postgres_url(&store) {
        let migrated = runtime()?.block_on(PostgresStore::migrate(&store))?;
        (format!("postgres {}", ash_store::describe_url(&store)), migrated.from, migrated.to)
    } else {
        let path = std::path::PathBuf::from(&store);
        if !path.exists() {
            bail!("there is no store at {}; `ash start --store {0}` creates one", path.display());
        }
        let from = SqliteStore::version_of(&path)?;
        drop(
            SqliteStore::open(&path, Durability::Full)
                .with_context(|| format!("migrating {}", path.display()))?,
        );
        (format!("sqlite {}", path.display()), from, ash_store::SCHEMA_VERSION)
    };
    if args.json {
        output::json(&serde_json::json!({ "store": described, "from": from, "to": to }))?;
    } else if from == to {
        output::note(&format!("the store {described} is at schema version {to}: nothing to do"));
    } else {
        output::note(&format!("migrated the store {described} from schema version {from} to {to}"));
    }
    Ok(Outcome::Success)
}
