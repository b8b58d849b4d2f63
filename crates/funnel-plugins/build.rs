//! Generates the gRPC code of the plugin protocol from `proto/`, with a protobuf
//! compiler written in Rust (protox), so building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "connector/v2/specifier.proto",
        "connector/v2/source.proto",
        "connector/v2/destination.proto",
        "connutils/v1/schema.proto",
        "plugin/go_plugin.proto",
        "grpc/health/v1/health.proto",
    ];
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // The module tree of every package, included as `pb`.
        .include_file("protocol.rs")
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
