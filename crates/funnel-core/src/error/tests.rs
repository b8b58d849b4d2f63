use super::*;

#[test]
fn a_connector_error_keeps_its_source_and_its_class() {
    let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
    let e = ConnectorError::fatal(io).context("file source");
    assert_eq!(e.to_string(), "file source: denied");
    assert_eq!((e.kind(), e.retry()), (ErrorKind::External, Retry::Fatal));
    let source = std::error::Error::source(&e).expect("the io error is kept");
    let io = source
        .downcast_ref::<std::io::Error>()
        .expect("the source is the io::Error itself");
    assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
}

#[test]
fn a_close_error_keeps_every_cause_and_is_fatal_when_one_is() {
    let teardown = |task: &str, source: ConnectorError| Error::Teardown {
        task: task.into(),
        source,
    };
    let close = Error::Close(vec![
        teardown("src", ConnectorError::transient("connection reset")),
        teardown("dst", ConnectorError::internal("teardown twice")),
    ]);
    assert_eq!(
        close.to_string(),
        "task src failed to tear down: connection reset; \
         task dst failed to tear down: teardown twice"
    );
    assert!(close.is_fatal());
    let Error::Close(causes) = &close else {
        unreachable!()
    };
    assert_eq!(causes.len(), 2);
}

#[test]
fn an_ack_protocol_violation_is_a_fatal_internal_error() {
    let e = Error::AckProtocol {
        task: "p:dest".into(),
        message: "received 3 acks, but expected at most 2".into(),
    };
    assert_eq!((e.kind(), e.retry()), (ErrorKind::Internal, Retry::Fatal));
    assert!(e.to_string().contains("p:dest"));
}

#[test]
fn engine_errors_take_the_class_of_their_connector_error() {
    let e = Error::Read {
        task: "s".into(),
        source: ConnectorError::config("no such table"),
    };
    assert_eq!((e.kind(), e.retry()), (ErrorKind::Config, Retry::Fatal));
    let e = Error::Write {
        task: "d".into(),
        count: 3,
        source: ConnectorError::transient("timeout"),
    };
    assert_eq!(
        (e.kind(), e.retry()),
        (ErrorKind::External, Retry::Transient)
    );
}

/// An error whose text leaves its cause out, as a client library's errors do.
#[derive(Debug)]
struct Outer(std::io::Error);

impl fmt::Display for Outer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("error sending request")
    }
}

impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn an_error_chain_names_every_cause_from_the_outermost_in() {
    let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
    assert_eq!(
        error_chain(&Outer(refused)),
        "error sending request: connection refused"
    );
    assert_eq!(error_chain(&std::io::Error::other("no cause")), "no cause");
}
