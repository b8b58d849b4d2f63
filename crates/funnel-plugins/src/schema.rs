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

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

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

/// The schemas registered by plugins, kept for the life of the process.
#[derive(Debug, Default)]
struct Registry {
    /// Per subject, its schemas by version (1, 2, ...): (content ID, bytes).
    subjects: BTreeMap<String, Vec<(i32, Vec<u8>)>>,
    /// Content IDs by content.
    ids: BTreeMap<Vec<u8>, i32>,
}

/// The schema service.
#[derive(Clone, Debug)]
pub struct SchemaServer {
    tokens: Tokens,
    registry: Arc<Mutex<Registry>>,
}

impl SchemaServer {
    /// A service accepting the connector tokens in `tokens`.
    pub fn new(tokens: Tokens) -> Self {
        Self {
            tokens,
            registry: Arc::default(),
        }
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
        let mut registry = lock(&self.registry);
        let next_id = i32::try_from(registry.ids.len() + 1).unwrap_or(i32::MAX);
        let id = *registry.ids.entry(request.bytes.clone()).or_insert(next_id);
        let versions = registry
            .subjects
            .entry(request.subject.clone())
            .or_default();
        let version = match versions.iter().position(|(known, _)| *known == id) {
            Some(index) => index + 1,
            None => {
                versions.push((id, request.bytes.clone()));
                versions.len()
            }
        };
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

    fn with_token<T>(message: T, token: &str) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert(TOKEN_METADATA, token.parse().unwrap());
        request
    }

    #[tokio::test]
    async fn schemas_get_versions_and_ids_as_in_the_confluent_registry_for_known_tokens_only() {
        let tokens = Tokens::default();
        lock(&tokens).insert("good".to_owned());
        let address = SchemaServer::new(Arc::clone(&tokens))
            .serve()
            .await
            .unwrap();
        let mut client = SchemaServiceClient::connect(format!("http://{address}"))
            .await
            .unwrap();
        let create = |subject: &str, bytes: &str| CreateSchemaRequest {
            subject: subject.to_owned(),
            r#type: schema::Type::Avro as i32,
            bytes: bytes.as_bytes().to_vec(),
        };
        let refused = client
            .create_schema(with_token(create("s", "\"int\""), "bad"))
            .await
            .unwrap_err();
        assert_eq!(refused.message(), "\"bad\": invalid token");
        let first = client
            .create_schema(with_token(create("p:src:users.payload", "\"int\""), "good"))
            .await
            .unwrap()
            .into_inner()
            .schema
            .unwrap();
        assert_eq!((first.version, first.id), (1, 1));
        let again = client
            .create_schema(with_token(create("p:src:users.payload", "\"int\""), "good"))
            .await
            .unwrap()
            .into_inner()
            .schema
            .unwrap();
        assert_eq!((again.version, again.id), (1, 1));
        let second = client
            .create_schema(with_token(
                create("p:src:users.payload", "\"long\""),
                "good",
            ))
            .await
            .unwrap()
            .into_inner()
            .schema
            .unwrap();
        assert_eq!((second.version, second.id), (2, 2));
        let other = client
            .create_schema(with_token(create("other", "\"int\""), "good"))
            .await
            .unwrap()
            .into_inner()
            .schema
            .unwrap();
        assert_eq!((other.version, other.id), (1, 1));
        let invalid = client
            .create_schema(with_token(create("s", "{not json"), "good"))
            .await
            .unwrap_err();
        assert_eq!(invalid.message(), "invalid schema");
        let got = client
            .get_schema(with_token(
                GetSchemaRequest {
                    subject: "p:src:users.payload".to_owned(),
                    version: 2,
                },
                "good",
            ))
            .await
            .unwrap()
            .into_inner()
            .schema
            .unwrap();
        assert_eq!(got.bytes, b"\"long\"");
        let get = |subject: &str, version: i32| {
            with_token(
                GetSchemaRequest {
                    subject: subject.to_owned(),
                    version,
                },
                "good",
            )
        };
        let missing = client.get_schema(get("nope", 1)).await.unwrap_err();
        assert_eq!(missing.message(), "schema subject not found");
        let missing = client.get_schema(get("other", 7)).await.unwrap_err();
        assert_eq!(missing.message(), "schema version not found");
    }
}
