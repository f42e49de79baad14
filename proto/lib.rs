//! The multus-rs wire contract: generated gRPC types for `multus.cni.v1`, the descriptor set
//! the daemon serves through gRPC reflection, and the unix-socket channel both ends use.
#![forbid(unsafe_code)]

pub mod channel;

/// Generated code for `proto/multus/cni/v1/cni.proto`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("multus.cni.v1");
}

/// Generated code for the kubelet's PodResources API (`proto/k8s/podresources/v1/api.proto`,
/// package `v1`): the device IDs the kubelet assigned to a pod's containers.
pub mod podresources {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("v1");
    }
}

/// Generated client for the Container Runtime Interface v1 (`proto/k8s/cri/v1/api.proto`, package
/// `runtime.v1`), vendored from k8s.io/cri-api; only with the `cri` feature (the e2e suite).
#[cfg(feature = "cri")]
pub mod cri {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("runtime.v1");
    }
}

/// The protocol version this build speaks (see the compatibility rule in the proto file).
pub const PROTOCOL_VERSION: u32 = 1;

/// Encoded `FileDescriptorSet` of the contract, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/multus_descriptor.bin"));

/// Encodes a message of the contract (re-exported so users need no direct `prost` dependency).
pub fn encode<M: prost::Message>(msg: &M) -> Vec<u8> {
    msg.encode_to_vec()
}

/// Decodes a message of the contract; `None` when the bytes are not that message.
pub fn decode<M: prost::Message + Default>(bytes: &[u8]) -> Option<M> {
    M::decode(bytes).ok()
}
