//! Compiles the wire contract with protox (pure Rust: no system `protoc` needed) and keeps the
//! file descriptor set so the daemon can serve gRPC reflection.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/multus/cni/v1/cni.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out.join("multus_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // Default stubs (UNIMPLEMENTED) let a server written before an RPC was added keep compiling
    // and answer it as an older daemon would.
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .generate_default_stubs(true)
        .compile_fds(fds)?;
    // The kubelet's PodResources API (a client in the daemon, a stand-in kubelet in tests); kept
    // out of the descriptor set above, which is what the daemon serves through reflection.
    let kubelet = "proto/k8s/podresources/v1/api.proto";
    println!("cargo:rerun-if-changed={kubelet}");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(protox::compile([kubelet], ["proto"])?)?;
    // The CRI v1 API (k8s.io/cri-api), client only: the e2e suite drives containerd with it as
    // the kubelet does. Behind the `cri` feature so the shim and daemon builds never compile it;
    // kept out of the reflection descriptor set too.
    if env::var_os("CARGO_FEATURE_CRI").is_some() {
        let cri = "proto/k8s/cri/v1/api.proto";
        println!("cargo:rerun-if-changed={cri}");
        tonic_prost_build::configure()
            .build_server(false)
            .build_client(true)
            .compile_fds(protox::compile([cri], ["proto"])?)?;
    }
    Ok(())
}
