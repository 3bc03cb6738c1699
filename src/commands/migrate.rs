use crate::cli::MigrateArgs;
use crate::commands::NegativeOutcome;
use crate::store::{self, Location, PostgresUrl, SchemaStatus as Status};

pub fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let location = match &args.database_url {
        Some(url) => Location::Postgres(Box::new(PostgresUrl::parse(url)?)),
        None => Location::Sqlite {
            data_dir: args.data_dir.data_dir.clone(),
        },
    };
    let target = store::schema_target(&location);
    if args.check {
        return match store::schema_status(&location)? {
            Some(Status::Current(v)) => {
                println!("database is up to date (schema version {v})");
                Ok(())
            }
            None | Some(Status::Empty) => Err(NegativeOutcome(format!(
                "no database yet at {location}; `secure-api migrate` creates it at schema version {target}"
            ))
            .into()),
            Some(Status::Behind { found, target }) => Err(NegativeOutcome(format!(
                "migration pending: schema version {found}, this binary needs {target}"
            ))
            .into()),
            Some(status) => Err(store::schema_refusal(status).into()),
        };
    }
    if let Location::Sqlite { data_dir } = &location {
        crate::files::ensure_private_dir(data_dir)?;
    }
    let outcome = store::migrate(&location)?;
    if outcome.from == outcome.to {
        println!("database is up to date (schema version {})", outcome.to);
    } else {
        println!(
            "migrated {location} from schema version {} to {}",
            outcome.from, outcome.to
        );
    }
    Ok(())
}
