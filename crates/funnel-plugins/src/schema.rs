//! The schema service plugins call back into (`connutils.v1.SchemaService`), as
//! Conduit serves it: a plaintext gRPC server on loopback whose address every plugin
//! gets in `CONDUIT_CONNECTOR_UTILITIES_GRPC_TARGET`.
//!
//! Every call must carry the metadata `conduit-connector-token` with the token of a
//! running connector. Schemas follow the Confluent registry's rules: registering the
//! same schema under a subject again gives its existing version, a new one the next
//! version; the ID identifies the schema's content across subjects. Errors carry
//! Conduit's exact texts (`schema subject not found`, `schema version not found`,
//! `invalid schema`), which Go connectors match.
//!
//! Once a store is attached ([`SchemaServer::attach`]), the schemas it holds are
//! served and every new one is written to it before it is answered, so they survive
//! a restart.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use funnel_store::{Store, StoreError};

use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::pb::connutils::v1::schema_service_server::{SchemaService, SchemaServiceServer};
use crate::pb::connutils::v1::{
    CreateSchemaRequest, CreateSchemaResponse, GetSchemaRequest, GetSchemaResponse,
};
use crate::pb::schema::v1::{Schema, schema};
use crate::process::{Tokens, lock};

/// The metadata key of the connector token.
pub const TOKEN_METADATA: &str = "conduit-connector-token";

/// The store kind of the schemas: `<subject>\x01<version, 10 digits>` to the schema
/// as a JSON object `{"id": …, "schema": "…"}`.
pub const SCHEMAS: &str = "plugins.schemas";

/// The schemas registered by plugins.
#[derive(Debug, Default)]
struct Registry {
    /// Per subject, its schemas by version (1, 2, ...): (content ID, bytes).
    subjects: BTreeMap<String, Vec<(i32, Vec<u8>)>>,
    /// Content IDs by content.
    ids: BTreeMap<Vec<u8>, i32>,
}

impl Registry {
    /// Registers `bytes` under `subject`: its version and content ID, and whether it
    /// is new (to be stored).
    fn register(&mut self, subject: &str, bytes: &[u8]) -> (usize, i32, bool) {
        let next_id = self.ids.values().max().map_or(1, |id| id.saturating_add(1));
        let id = *self.ids.entry(bytes.to_vec()).or_insert(next_id);
        let versions = self.subjects.entry(subject.to_owned()).or_default();
        match versions.iter().position(|(known, _)| *known == id) {
            Some(index) => (index + 1, id, false),
            None => {
                versions.push((id, bytes.to_vec()));
                (versions.len(), id, true)
            }
        }
    }

    /// Forgets version `version` of `subject`, the last one (a write that failed).
    fn unregister(&mut self, subject: &str, version: usize) {
        if let Some(versions) = self.subjects.get_mut(subject)
            && versions.len() == version
        {
            versions.pop();
        }
    }
}

/// The key of a schema in the store.
fn store_key(subject: &str, version: usize) -> String {
    format!("{subject}\u{1}{version:010}")
}

/// The schema service.
#[derive(Clone)]
pub struct SchemaServer {
    tokens: Tokens,
    registry: Arc<Mutex<Registry>>,
    store: Arc<OnceLock<Arc<dyn Store>>>,
}

impl std::fmt::Debug for SchemaServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaServer")
            .field("registry", &self.registry)
            .field("stored", &self.store.get().is_some())
            .finish_non_exhaustive()
    }
}

impl SchemaServer {
    /// A service accepting the connector tokens in `tokens`, keeping its schemas in
    /// memory until a store is attached.
    pub fn new(tokens: Tokens) -> Self {
        Self {
            tokens,
            registry: Arc::default(),
            store: Arc::default(),
        }
    }

    /// Keeps the schemas in `store` from now on: those it holds are served (by
    /// subject and version, with their IDs), and every new one is written to it.
    /// Only the first store attached counts.
    ///
    /// # Errors
    ///
    /// When the store cannot be read or holds a schema that cannot be read.
    pub async fn attach(&self, store: Arc<dyn Store>) -> Result<(), StoreError> {
        let stored = store.entries(SCHEMAS).await?;
        let mut loaded = Registry::default();
        for (key, value) in stored {
            let subject = key.rsplit_once('\u{1}').map_or(key.as_str(), |(s, _)| s);
            let schema: serde_json::Value = serde_json::from_slice(&value).unwrap_or_default();
            let (Some(id), Some(text)) = (
                schema["id"].as_i64().and_then(|id| i32::try_from(id).ok()),
                schema["schema"].as_str(),
            ) else {
                return Err(StoreError::Database {
                    store: format!("entry {key:?} of {SCHEMAS}"),
                    detail: "not a schema (a JSON object with an id and a schema)".to_owned(),
                });
            };
            loaded.ids.insert(text.as_bytes().to_vec(), id);
            loaded
                .subjects
                .entry(subject.to_owned())
                .or_default()
                .push((id, text.as_bytes().to_vec()));
        }
        if self.store.set(store).is_ok() {
            *lock(&self.registry) = loaded;
        }
        Ok(())
    }

    /// Serves on `127.0.0.1` at a free port, in a task of its own; returns the address.
    ///
    /// # Errors
    ///
    /// When no port can be bound.
    pub async fn serve(self) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(SchemaServiceServer::new(self))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
            if let Err(e) = served {
                tracing::error!("the schema service for standalone connectors stopped: {e}");
            }
        });
        Ok(address)
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let token = request
            .metadata()
            .get(TOKEN_METADATA)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if lock(&self.tokens).contains(token) {
            Ok(())
        } else {
            Err(Status::unknown(format!("{token:?}: invalid token")))
        }
    }
}

fn schema_of(subject: &str, version: usize, id: i32, bytes: &[u8]) -> Schema {
    Schema {
        subject: subject.to_owned(),
        version: i32::try_from(version).unwrap_or(i32::MAX),
        id,
        r#type: schema::Type::Avro as i32,
        bytes: bytes.to_vec(),
    }
}

#[tonic::async_trait]
impl SchemaService for SchemaServer {
    async fn create_schema(
        &self,
        request: Request<CreateSchemaRequest>,
    ) -> Result<Response<CreateSchemaResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        if request.r#type != schema::Type::Avro as i32
            || request.subject.is_empty()
            || serde_json::from_slice::<serde_json::Value>(&request.bytes).is_err()
        {
            return Err(Status::unknown("invalid schema"));
        }
        let (version, id, new) = lock(&self.registry).register(&request.subject, &request.bytes);
        if new && let Some(store) = self.store.get() {
            let value = serde_json::json!({
                "id": id,
                "schema": String::from_utf8_lossy(&request.bytes),
            });
            let key = store_key(&request.subject, version);
            if let Err(e) = store
                .set_entry(SCHEMAS, &key, value.to_string().as_bytes())
                .await
            {
                lock(&self.registry).unregister(&request.subject, version);
                return Err(Status::unknown(format!("could not store the schema: {e}")));
            }
        }
        Ok(Response::new(CreateSchemaResponse {
            schema: Some(schema_of(&request.subject, version, id, &request.bytes)),
        }))
    }

    async fn get_schema(
        &self,
        request: Request<GetSchemaRequest>,
    ) -> Result<Response<GetSchemaResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        let registry = lock(&self.registry);
        let Some(versions) = registry.subjects.get(&request.subject) else {
            return Err(Status::unknown("schema subject not found"));
        };
        let index = if request.version == -1 {
            versions.len()
        } else {
            usize::try_from(request.version).unwrap_or(0)
        };
        let Some((id, bytes)) = index.checked_sub(1).and_then(|i| versions.get(i)) else {
            return Err(Status::unknown("schema version not found"));
        };
        Ok(Response::new(GetSchemaResponse {
            schema: Some(schema_of(&request.subject, index, *id, bytes)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::connutils::v1::schema_service_client::SchemaServiceClient;
    use tonic::transport::Channel;

    type Client = SchemaServiceClient<Channel>;

    fn with_token<T>(message: T, token: &str) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert(TOKEN_METADATA, token.parse().unwrap());
        request
    }

    /// A server accepting the token `good`, with `store` attached when given, and a
    /// client of it.
    async fn serve(store: Option<Arc<dyn Store>>) -> Client {
        let tokens = Tokens::default();
        lock(&tokens).insert("good".to_owned());
        let server = SchemaServer::new(Arc::clone(&tokens));
        if let Some(store) = store {
            server.attach(store).await.unwrap();
        }
        let address = server.serve().await.unwrap();
        SchemaServiceClient::connect(format!("http://{address}"))
            .await
            .unwrap()
    }

    async fn create(client: &mut Client, subject: &str, bytes: &str) -> Result<Schema, Status> {
        let request = CreateSchemaRequest {
            subject: subject.to_owned(),
            r#type: schema::Type::Avro as i32,
            bytes: bytes.as_bytes().to_vec(),
        };
        let answer = client.create_schema(with_token(request, "good")).await?;
        Ok(answer.into_inner().schema.unwrap())
    }

    async fn get(client: &mut Client, subject: &str, version: i32) -> Result<Schema, Status> {
        let request = GetSchemaRequest {
            subject: subject.to_owned(),
            version,
        };
        let answer = client.get_schema(with_token(request, "good")).await?;
        Ok(answer.into_inner().schema.unwrap())
    }

    #[tokio::test]
    async fn schemas_get_versions_and_ids_as_in_the_confluent_registry_for_known_tokens_only() {
        let mut client = serve(None).await;
        let request = CreateSchemaRequest {
            subject: "s".to_owned(),
            r#type: schema::Type::Avro as i32,
            bytes: b"\"int\"".to_vec(),
        };
        let refused = client
            .create_schema(with_token(request, "bad"))
            .await
            .unwrap_err();
        assert_eq!(refused.message(), "\"bad\": invalid token");
        let subject = "p:src:users.payload";
        let first = create(&mut client, subject, "\"int\"").await.unwrap();
        assert_eq!((first.version, first.id), (1, 1));
        let again = create(&mut client, subject, "\"int\"").await.unwrap();
        assert_eq!((again.version, again.id), (1, 1));
        let second = create(&mut client, subject, "\"long\"").await.unwrap();
        assert_eq!((second.version, second.id), (2, 2));
        let other = create(&mut client, "other", "\"int\"").await.unwrap();
        assert_eq!((other.version, other.id), (1, 1));
        let invalid = create(&mut client, "s", "{not json").await.unwrap_err();
        assert_eq!(invalid.message(), "invalid schema");
        let got = get(&mut client, subject, 2).await.unwrap();
        assert_eq!(got.bytes, b"\"long\"");
        let latest = get(&mut client, subject, -1).await.unwrap();
        assert_eq!((latest.version, latest.id), (2, 2));
        let missing = get(&mut client, "nope", 1).await.unwrap_err();
        assert_eq!(missing.message(), "schema subject not found");
        let missing = get(&mut client, "other", 7).await.unwrap_err();
        assert_eq!(missing.message(), "schema version not found");
    }

    #[tokio::test]
    async fn schemas_kept_in_the_store_are_served_with_their_versions_and_ids_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("funnel.db");
        {
            let store: Arc<dyn Store> = Arc::new(funnel_store::RedbStore::open(&path).unwrap());
            let mut client = serve(Some(store)).await;
            create(&mut client, "users", "\"int\"").await.unwrap();
            create(&mut client, "users", "\"long\"").await.unwrap();
            create(&mut client, "orders", "\"long\"").await.unwrap();
        }
        // The file as a restarted funnel finds it (the first server still holds it).
        let copy = dir.path().join("restarted.db");
        std::fs::copy(&path, &copy).unwrap();
        let store: Arc<dyn Store> = Arc::new(funnel_store::RedbStore::open(&copy).unwrap());
        assert_eq!(store.entries(SCHEMAS).await.unwrap().len(), 3);
        let mut client = serve(Some(store)).await;
        let users = get(&mut client, "users", -1).await.unwrap();
        assert_eq!((users.version, users.id), (2, 2));
        assert_eq!(users.bytes, b"\"long\"");
        let orders = get(&mut client, "orders", 1).await.unwrap();
        assert_eq!(
            (orders.version, orders.id, orders.bytes),
            (1, 2, b"\"long\"".to_vec())
        );
        // Registering again gives what was kept; a new schema the next ID.
        let again = create(&mut client, "users", "\"int\"").await.unwrap();
        assert_eq!((again.version, again.id), (1, 1));
        let new = create(&mut client, "users", "\"string\"").await.unwrap();
        assert_eq!((new.version, new.id), (3, 3));
    }
}
