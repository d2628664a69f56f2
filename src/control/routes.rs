//! `admin routes show|push`: the routing document that routers with
//! `[routing] source = "redis"` follow (SPEC section 7). `push` validates a
//! file as a routing table, stores it as the next version in one Redis
//! transaction and publishes the version on the RabbitMQ fanout exchange;
//! `show` prints the stored version and document.
//!
//! A routing change must never hide history: before storing, `push` looks
//! at what the clusters hold now and appends to the document a `[[move]]`
//! for each measurement that would live on a cluster the new rules no
//! longer give it to (keeping the state the stored document had for it), so
//! the old owner stays its read source until `admin rebalance` has moved
//! it. A cluster that the new table drops while it still holds data is
//! refused. `--skip-moves` stores the file as it is.

use std::path::Path;

use super::moves::{self, Move};
use super::ControlError;
use crate::config::Config;
use crate::routing::source::redis as store;

/// Where the routing document lives: flags, else the configuration's `[routing]`.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub redis: Option<String>,
    pub amqp: Option<String>,
    pub key_prefix: Option<String>,
}

/// [`Target`] with the configuration's defaults filled in.
#[derive(Debug, Clone)]
struct Resolved {
    redis: String,
    amqp: String,
    prefix: String,
}

impl Target {
    fn resolve(&self, config: &Config) -> Resolved {
        let routing = &config.routing;
        Resolved {
            redis: self
                .redis
                .clone()
                .unwrap_or_else(|| routing.redis_url.clone()),
            amqp: self
                .amqp
                .clone()
                .unwrap_or_else(|| routing.amqp_url.clone()),
            prefix: self
                .key_prefix
                .clone()
                .unwrap_or_else(|| routing.key_prefix.clone()),
        }
    }
}

/// The stored document, with a first line `# version: N`.
pub async fn show(config: &Config, target: &Target) -> Result<String, ControlError> {
    let at = target.resolve(config);
    match store::show(&at.redis, &at.prefix).await {
        Ok(Some((version, document))) => {
            let mut text = format!("# version: {version}\n{document}");
            if !text.ends_with('\n') {
                text.push('\n');
            }
            Ok(text)
        }
        Ok(None) => Err(ControlError::Failed(format!(
            "no routing document at {}",
            store::document_key(&at.prefix)
        ))),
        Err(e) => Err(ControlError::Failed(e.to_string())),
    }
}

/// What a push did: the version stored, and a warning when the change
/// notice could not be published (routers then see it at their next poll).
#[derive(Debug)]
pub struct Pushed {
    pub summary: String,
    pub warning: Option<String>,
}

/// Validates `file` and stores it as the next version, with the moves it
/// implies when `with_moves`.
pub async fn push(
    config: &Config,
    target: &Target,
    file: &Path,
    with_moves: bool,
) -> Result<Pushed, ControlError> {
    let at = target.resolve(config);
    let mut text = std::fs::read_to_string(file)
        .map_err(|e| ControlError::Failed(format!("cannot read {}: {e}", file.display())))?;
    let origin = file.display().to_string();
    let mut recorded = 0;
    let mut unread = Vec::new();
    if with_moves {
        let new = store::validate(&text, &origin).map_err(|errors| {
            ControlError::Failed(store::RoutesError::Invalid(errors).to_string())
        })?;
        let previous = match store::show(&at.redis, &at.prefix).await {
            Ok(Some((version, document))) => {
                store::validate(&document, &format!("stored version {version}")).ok()
            }
            Ok(None) => None,
            Err(e) => return Err(ControlError::Failed(e.to_string())),
        };
        let implied = implied_moves(&new, previous.as_ref(), &mut unread).await?;
        if let Some(with) = moves::add(&text, &new, &implied, previous.as_ref()) {
            recorded = implied
                .iter()
                .filter(|m| !new.moves.iter().any(|e| m.is(e)))
                .count();
            text = with;
        }
    }
    let pushed = store::push(&at.redis, &at.amqp, &at.prefix, &text, &origin)
        .await
        .map_err(|e| ControlError::Failed(e.to_string()))?;
    let moves_note = match recorded {
        0 => String::new(),
        n => format!(
            "; recorded {n} move(s) of data still held by its old cluster (run `admin rebalance`)"
        ),
    };
    Ok(Pushed {
        summary: format!(
            "pushed {} as version {} to {}{moves_note}",
            file.display(),
            pushed.version,
            store::document_key(&at.prefix)
        ),
        warning: {
            let mut warnings: Vec<String> = unread
                .iter()
                .map(|e| format!("no moves recorded for what it holds: {e}"))
                .collect();
            if let Err(e) = pushed.notice {
                warnings.push(format!("the change notice was not published ({e}); routers pick the change up at their next poll"));
            }
            (!warnings.is_empty()).then(|| warnings.join("\n"))
        },
    })
}

/// The moves `new` implies for what the clusters hold now. The clusters
/// `previous` (the stored table) has are read; a cluster only `new` has is
/// new and holds nothing yet. A cluster `new` drops that still holds data
/// is an error. A cluster that cannot be read (its nodes are down or not
/// there yet) is skipped and named in `unread`: it serves no reads either.
async fn implied_moves(
    new: &Config,
    previous: Option<&Config>,
    unread: &mut Vec<String>,
) -> Result<Vec<Move>, ControlError> {
    let mut implied = Vec::new();
    if let Some(previous) = previous {
        for cluster in &previous.clusters {
            if new.clusters.iter().any(|c| c.name == cluster.name) {
                continue;
            }
            let held = match moves::holdings(previous, cluster, &[], None).await {
                Ok(held) => held,
                Err(e) => {
                    unread.push(e.to_string());
                    continue;
                }
            };
            if let Some((db, measurements)) = held.databases.first() {
                return Err(ControlError::Failed(format!(
                    "the new table drops cluster {:?}, which still holds data (database {db:?}: {}); \
                     keep it in the table until `admin rebalance` has moved its data",
                    cluster.name,
                    measurements.join(", ")
                )));
            }
        }
    }
    let known = new
        .clusters
        .iter()
        .filter(|c| previous.map_or(true, |p| p.clusters.iter().any(|o| o.name == c.name)));
    for cluster in known {
        match moves::plan_cluster(new, cluster, &[], None).await {
            Ok(found) => implied.extend(found),
            Err(e) => unread.push(e.to_string()),
        }
    }
    Ok(implied)
}
