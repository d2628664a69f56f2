//! Jobs on RabbitMQ: the durable queue `<key_prefix>.jobs`, persistent JSON
//! messages, and a dead-letter queue `<key_prefix>.jobs.dead` (through the
//! exchange of the same name) for messages that are not jobs at all.

use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, BasicQosOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use super::JobMessage;
use crate::control::ControlError;

/// How long connecting to RabbitMQ may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The jobs queue of `prefix`.
pub fn queue_name(prefix: &str) -> String {
    format!("{prefix}.jobs")
}

/// Where messages that are not jobs go.
pub fn dead_letter_name(prefix: &str) -> String {
    format!("{prefix}.jobs.dead")
}

fn failed(url: &str, e: impl std::fmt::Display) -> ControlError {
    // the URL may hold a password: name the host only
    let host = url.rsplit('@').next().unwrap_or(url);
    ControlError::Failed(format!("RabbitMQ at {host}: {e}"))
}

/// A connection and a channel with the jobs queue declared.
pub struct Jobs {
    pub connection: Connection,
    pub channel: Channel,
    pub queue: String,
    url: String,
}

impl Jobs {
    /// Connects and declares the queue (durable, dead-lettering to
    /// `<prefix>.jobs.dead`); fails within a few seconds when RabbitMQ is down.
    pub async fn connect(url: &str, prefix: &str) -> Result<Jobs, ControlError> {
        let connection = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect(url, ConnectionProperties::default()),
        )
        .await
        .map_err(|_| failed(url, "no connection within 5 s (is RabbitMQ running?)"))?
        .map_err(|e| failed(url, e))?;
        let queue = queue_name(prefix);
        let dead = dead_letter_name(prefix);
        let declared = async {
            let channel = connection.create_channel().await?;
            channel
                .exchange_declare(
                    &dead,
                    ExchangeKind::Fanout,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            let durable = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            channel
                .queue_declare(&dead, durable, FieldTable::default())
                .await?;
            channel
                .queue_bind(
                    &dead,
                    &dead,
                    "",
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            let mut arguments = FieldTable::default();
            arguments.insert(
                ShortString::from("x-dead-letter-exchange"),
                AMQPValue::LongString(dead.clone().into()),
            );
            channel.queue_declare(&queue, durable, arguments).await?;
            Ok::<_, lapin::Error>(channel)
        }
        .await;
        match declared {
            Ok(channel) => Ok(Jobs {
                connection,
                channel,
                queue,
                url: url.to_string(),
            }),
            Err(e) => {
                let _ = connection.close(200, "bye").await;
                Err(failed(url, e))
            }
        }
    }

    /// Publishes `job` as a persistent message and waits for RabbitMQ's confirm.
    pub async fn publish(&self, job: &JobMessage) -> Result<(), ControlError> {
        let body = serde_json::to_vec(job).map_err(|e| failed(&self.url, e))?;
        self.publish_raw(&body).await
    }

    /// Publishes any bytes on the jobs queue (tests publish malformed ones).
    pub async fn publish_raw(&self, body: &[u8]) -> Result<(), ControlError> {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        self.channel
            .confirm_select(Default::default())
            .await
            .map_err(|e| failed(&self.url, e))?;
        self.channel
            .basic_publish(
                "",
                &self.queue,
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .map_err(|e| failed(&self.url, e))?
            .await
            .map_err(|e| failed(&self.url, e))?;
        Ok(())
    }

    /// One unacknowledged message at a time for this channel's consumers.
    pub async fn prefetch_one(&self) -> Result<(), ControlError> {
        self.channel
            .basic_qos(1, BasicQosOptions::default())
            .await
            .map_err(|e| failed(&self.url, e))
    }

    pub async fn close(self) {
        let _ = self.channel.close(200, "bye").await;
        let _ = self.connection.close(200, "bye").await;
    }
}
