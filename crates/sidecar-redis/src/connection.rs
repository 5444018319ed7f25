//! Connections to the Redis server of one component.

use crate::settings::RedisSettings;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo,
};
use sidecar_core::resources::{ComponentSpec, ResourceError};
use std::time::Duration;
use tokio::sync::OnceCell;

/// Opens connections for one component; the shared connection is created on first use.
#[derive(Debug)]
pub struct Connector {
    client: Client,
    settings: RedisSettings,
    shared: OnceCell<ConnectionManager>,
}

impl Connector {
    /// Builds the client (no I/O).
    pub fn new(settings: &RedisSettings) -> redis::RedisResult<Self> {
        let mut redis_info = RedisConnectionInfo::default().set_db(settings.db);
        if let Some(user) = &settings.username {
            redis_info = redis_info.set_username(user);
        }
        if let Some(password) = &settings.password {
            redis_info = redis_info.set_password(password);
        }
        let info = ConnectionAddr::Tcp(settings.host.clone(), settings.port)
            .into_connection_info()?
            .set_redis_settings(redis_info);
        Ok(Self {
            client: Client::open(info)?,
            settings: settings.clone(),
            shared: OnceCell::new(),
        })
    }

    /// The connector of component `spec`, checked against the server (errors name the file).
    pub fn for_component(
        spec: &ComponentSpec,
        settings: &RedisSettings,
    ) -> Result<Self, ResourceError> {
        let field_error = |message: String| ResourceError::Field {
            file: spec.source.clone(),
            kind: "Component".into(),
            name: spec.name.clone(),
            field: "spec.metadata.redisHost".into(),
            message,
        };
        let connector = Self::new(settings).map_err(|e| field_error(e.to_string()))?;
        connector.check_reachable().map_err(field_error)?;
        Ok(connector)
    }

    /// The shared, self-reconnecting connection (cheap to clone).
    pub async fn shared(&self) -> redis::RedisResult<ConnectionManager> {
        let s = &self.settings;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(s.dial_timeout))
            .set_response_timeout(Some(s.read_timeout))
            .set_number_of_retries(s.max_retries)
            .set_min_delay(s.min_retry_interval.max(Duration::from_millis(1)))
            .set_max_delay(s.max_retry_interval.max(s.min_retry_interval));
        self.shared
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .cloned()
    }

    /// A connection of its own, for blocking commands; `block` is the longest server-side wait
    /// the caller will ask for.
    pub async fn dedicated(&self, block: Duration) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.settings.dial_timeout))
            .set_response_timeout(Some(block + self.settings.read_timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Connects, authenticates and pings once, like daprd does when the component initialises
    /// (it refuses to start otherwise). Blocking, bounded by `dialTimeout` and `readTimeout`.
    pub fn check_reachable(&self) -> Result<(), String> {
        let addr = self.settings.address();
        let failed = |e: redis::RedisError| format!("error connecting to redis at {addr}: {e}");
        let mut con = self
            .client
            .get_connection_with_timeout(self.settings.dial_timeout)
            .map_err(failed)?;
        con.set_read_timeout(Some(self.settings.read_timeout))
            .map_err(failed)?;
        redis::cmd("PING")
            .query::<String>(&mut con)
            .map_err(failed)?;
        Ok(())
    }
}
