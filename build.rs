//! Compiles the BM-SC gRPC contract with a pure-Rust protobuf compiler (protox), so a
//! build needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["proto/bmsc.proto"], ["proto"])?;
    tonic_prost_build::configure()
        // `Msk` carries key bytes: its Debug is written by hand and redacts them.
        .skip_debug([".mbms.bmsc.v1.Msk"])
        .compile_fds(fds)?;
    Ok(())
}
