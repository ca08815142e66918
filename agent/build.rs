//! Links the agent with `link/cold-webrtc.ld`: the WebRTC stack's code kept
//! apart from the recording path's (see the script for why).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = format!("{dir}/link/cold-webrtc.ld");
    println!("cargo:rerun-if-changed={script}");
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{script}");
}
