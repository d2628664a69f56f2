//! `admin routes show|push`: the routing document that routers with
//! `[routing] source = "redis"` follow (SPEC section 7). `push` validates a
//! file as a routing table, stores it as the next version in one Redis
//! transaction and publishes the version on the RabbitMQ fanout exchange;
//! `show` prints the stored version and document.

use std::path::Path;

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

/// Validates `file` and stores it as the next version.
pub async fn push(config: &Config, target: &Target, file: &Path) -> Result<Pushed, ControlError> {
    let at = target.resolve(config);
    let text = std::fs::read_to_string(file)
        .map_err(|e| ControlError::Failed(format!("cannot read {}: {e}", file.display())))?;
    let origin = file.display().to_string();
    let pushed = store::push(&at.redis, &at.amqp, &at.prefix, &text, &origin)
        .await
        .map_err(|e| ControlError::Failed(e.to_string()))?;
    Ok(Pushed {
        summary: format!(
            "pushed {} as version {} to {}",
            file.display(),
            pushed.version,
            store::document_key(&at.prefix)
        ),
        warning: pushed.notice.err().map(|e| {
            format!("the change notice was not published ({e}); routers pick the change up at their next poll")
        }),
    })
}
